//! The file as written: serde structs in which every setting is optional.
//!
//! These types only describe syntax. Defaults, cross-field rules and
//! `$hostname` expansion live in `validate.rs`; the documentation of each
//! setting lives on [`super::Config`] and its sub-structs.
//!
//! Field order here is the order of the example file and of `render()`.

use serde::Deserialize;
use serde::de::{self, Visitor};

use super::units::{Cidr, DurationOrOff, HumanDuration, ListenAddr, Size, Word};
use super::{LogFormat, LogTarget, Security, SyncMode, TlsMode};

/// The types of the keys `sendmail` reads too, written once: the small
/// program's view of the file (`submit_view`) and the whole file read
/// each of them the same way.
pub(super) mod submit_keys {
    use super::Size;

    /// `hostname`.
    pub type Hostname = Option<String>;
    /// `spool`.
    pub type Spool = Option<String>;
    /// `intake.message_size_limit`.
    pub type MessageSizeLimit = Option<Size>;
    /// `intake.header_size_limit`.
    pub type HeaderSizeLimit = Option<Size>;
    /// `intake.line_length_limit`.
    pub type LineLengthLimit = Option<u64>;
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub hostname: submit_keys::Hostname,
    pub spool: submit_keys::Spool,
    pub control_socket: Option<String>,
    #[serde(default)]
    pub daemon: super::daemon::DaemonFile,
    #[serde(default)]
    pub intake: IntakeFile,
    #[serde(default)]
    pub queue: QueueFile,
    #[serde(default)]
    pub delivery: DeliveryFile,
    #[serde(default)]
    pub bounce: BounceFile,
    #[serde(default)]
    pub routing: RoutingFile,
    #[serde(default)]
    pub local: super::local::LocalFile,
    #[serde(default)]
    pub log: LogFile,
    #[serde(default)]
    pub metrics: MetricsFile,
    /// `[cluster]`: absent unless written (its presence is the switch).
    pub cluster: Option<super::cluster::ClusterFile>,
    /// `[[relay]]` tables, last in the file: every key after a `[[relay]]`
    /// header belongs to that relay.
    #[serde(default)]
    pub relay: Vec<RelayFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IntakeFile {
    pub listen: Option<Vec<ListenAddr>>,
    pub mynetworks: Option<Vec<Cidr>>,
    pub local_domains: Option<Vec<String>>,
    pub message_size_limit: submit_keys::MessageSizeLimit,
    pub header_size_limit: submit_keys::HeaderSizeLimit,
    pub line_length_limit: submit_keys::LineLengthLimit,
    pub command_length_limit: Option<u64>,
    pub max_recipients: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
    pub max_errors: Option<usize>,
    pub command_timeout: Option<HumanDuration>,
    pub data_timeout: Option<HumanDuration>,
    pub line_timeout: Option<HumanDuration>,
    pub session_timeout: Option<HumanDuration>,
    pub maildrop_rescan: Option<HumanDuration>,
    /// `[intake.submission]`, a sub-table, so it comes after the plain keys.
    pub submission: Option<SubmissionFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmissionFile {
    pub listen: Option<Vec<ListenAddr>>,
    pub implicit: Option<Vec<ListenAddr>>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub users: Option<String>,
    pub max_auth_failures: Option<u32>,
    pub auth_lockout: Option<HumanDuration>,
    pub auth_delay: Option<HumanDuration>,
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QueueFile {
    pub min_backoff: Option<HumanDuration>,
    pub max_backoff: Option<HumanDuration>,
    pub max_lifetime: Option<HumanDuration>,
    pub min_free_space: Option<Size>,
    pub sync: Option<SyncMode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveryFile {
    pub enabled: Option<bool>,
    pub sasl_passwd: Option<String>,
    pub max_workers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BounceFile {
    pub sender: Option<String>,
    pub postmaster: Option<String>,
    pub delay_warning: Option<DurationOrOff>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoutingFile {
    pub transport: Option<String>,
    pub aliases: Option<String>,
    pub sender_relay: Option<String>,
    pub generic: Option<String>,
    pub rewrite_senders: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RelayFile {
    pub name: Option<String>,
    pub provider: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<Word<TlsMode>>,
    pub security: Option<Word<Security>>,
    pub ca_file: Option<String>,
    pub tls_name: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub allow_plaintext_auth: Option<bool>,
    pub verbose: Option<bool>,
    pub fallbacks: Option<Vec<String>>,
    pub max_connections: Option<usize>,
    pub max_messages_per_connection: Option<u32>,
    pub idle_timeout: Option<HumanDuration>,
    /// A sub-table, so it comes after the plain keys.
    #[serde(default)]
    pub timeouts: RelayTimeoutsFile,
    /// A sub-table too.
    #[serde(default)]
    pub limits: super::relay_limits::RelayLimitsFile,
    /// `[relay.oauth]`: log in with an OAuth2 token.
    pub oauth: Option<super::oauth::OAuthFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RelayTimeoutsFile {
    pub connect: Option<HumanDuration>,
    pub greeting: Option<HumanDuration>,
    pub ehlo: Option<HumanDuration>,
    pub tls: Option<HumanDuration>,
    pub auth: Option<HumanDuration>,
    pub mail: Option<HumanDuration>,
    pub rcpt: Option<HumanDuration>,
    pub data: Option<HumanDuration>,
    pub data_end: Option<HumanDuration>,
    pub rset: Option<HumanDuration>,
    pub quit: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogFile {
    pub level: Option<String>,
    pub format: Option<LogFormat>,
    pub file: Option<String>,
    pub to: Option<LogTarget>,
    pub syslog_name: Option<String>,
    pub syslog_socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsFile {
    pub listen: Option<ListenAddr>,
}

/// The allowed keys of each table, taken from the serde structs above so
/// that the unknown-key check, the error messages and the documentation
/// test cannot disagree with what is actually deserialised.
pub(super) struct Schema {
    /// Keys of the top level, tables included.
    pub top: &'static [&'static str],
    /// Every table, in file order; a sub-table's name is dotted
    /// (`relay.timeouts`) and its key is also among its parent's keys.
    pub tables: [Table; 15],
}

/// One table of the file.
pub(super) struct Table {
    /// Dotted name, without array indices.
    pub name: &'static str,
    /// Its keys, sub-tables included.
    pub keys: &'static [&'static str],
    /// Whether it is an array of tables (`[[relay]]`), written once per item.
    pub array: bool,
}

impl Table {
    /// The header that opens it: `[intake]` or `[[relay]]`.
    pub fn header(&self) -> String {
        if self.array {
            format!("[[{}]]", self.name)
        } else {
            format!("[{}]", self.name)
        }
    }
}

impl Schema {
    pub fn get() -> Schema {
        let table = |name, keys, array| Table { name, keys, array };
        Schema {
            top: field_names::<FileConfig>(),
            tables: [
                table("daemon", field_names::<super::daemon::DaemonFile>(), false),
                table("intake", field_names::<IntakeFile>(), false),
                table("intake.submission", field_names::<SubmissionFile>(), false),
                table("queue", field_names::<QueueFile>(), false),
                table("delivery", field_names::<DeliveryFile>(), false),
                table("bounce", field_names::<BounceFile>(), false),
                table("routing", field_names::<RoutingFile>(), false),
                table("local", field_names::<super::local::LocalFile>(), false),
                table("log", field_names::<LogFile>(), false),
                table("metrics", field_names::<MetricsFile>(), false),
                table(
                    "cluster",
                    field_names::<super::cluster::ClusterFile>(),
                    false,
                ),
                table("relay", field_names::<RelayFile>(), true),
                table("relay.timeouts", field_names::<RelayTimeoutsFile>(), false),
                table(
                    "relay.limits",
                    field_names::<super::relay_limits::RelayLimitsFile>(),
                    false,
                ),
                table(
                    "relay.oauth",
                    field_names::<super::oauth::OAuthFile>(),
                    false,
                ),
            ],
        }
    }

    /// The table called `name` (dotted, no indices).
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The keys allowed in `table` ("" for the top level).
    pub fn keys(&self, table: &str) -> Option<&'static [&'static str]> {
        if table.is_empty() {
            return Some(self.top);
        }
        self.table(table).map(|t| t.keys)
    }

    /// Top-level keys that hold a plain value rather than a table.
    pub fn top_values(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.top.iter().copied().filter(|k| self.keys(k).is_none())
    }
}

/// Asks a `#[derive(Deserialize)]` struct for its field names, by offering
/// it a deserializer that records what `deserialize_struct` is told and then
/// gives up.
fn field_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("field names recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // The probe always fails by design; only the recorded names matter.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}
