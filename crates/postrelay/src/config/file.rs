//! The file as written: serde structs in which every setting is optional.
//!
//! These types only describe syntax. Defaults, cross-field rules and
//! `$hostname` expansion live in `validate.rs`; the documentation of each
//! setting lives on [`super::Config`] and its sub-structs.
//!
//! Field order here is the order of the example file and of `render()`.

use serde::Deserialize;
use serde::de::{self, Visitor};

use super::LogFormat;
use super::units::{Cidr, HumanDuration, ListenAddr, Size};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub hostname: Option<String>,
    pub spool: Option<String>,
    pub control_socket: Option<String>,
    #[serde(default)]
    pub intake: IntakeFile,
    #[serde(default)]
    pub queue: QueueFile,
    #[serde(default)]
    pub log: LogFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IntakeFile {
    pub listen: Option<Vec<ListenAddr>>,
    pub mynetworks: Option<Vec<Cidr>>,
    pub local_domains: Option<Vec<String>>,
    pub message_size_limit: Option<Size>,
    pub header_size_limit: Option<Size>,
    pub line_length_limit: Option<u64>,
    pub command_length_limit: Option<u64>,
    pub max_recipients: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_errors: Option<usize>,
    pub command_timeout: Option<HumanDuration>,
    pub data_timeout: Option<HumanDuration>,
    pub session_timeout: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QueueFile {
    pub min_backoff: Option<HumanDuration>,
    pub max_backoff: Option<HumanDuration>,
    pub max_lifetime: Option<HumanDuration>,
    pub min_free_space: Option<Size>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogFile {
    pub level: Option<String>,
    pub format: Option<LogFormat>,
    pub file: Option<String>,
}

/// The allowed keys of each table, taken from the serde structs above so
/// that the unknown-key check, the error messages and the documentation
/// test cannot disagree with what is actually deserialised.
pub(super) struct Schema {
    /// Keys of the top level, tables included.
    pub top: &'static [&'static str],
    /// `(table name, keys)` for every table.
    pub tables: [(&'static str, &'static [&'static str]); 3],
}

impl Schema {
    pub fn get() -> Schema {
        Schema {
            top: field_names::<FileConfig>(),
            tables: [
                ("intake", field_names::<IntakeFile>()),
                ("queue", field_names::<QueueFile>()),
                ("log", field_names::<LogFile>()),
            ],
        }
    }

    /// The keys allowed in `table` ("" for the top level).
    pub fn keys(&self, table: &str) -> Option<&'static [&'static str]> {
        if table.is_empty() {
            return Some(self.top);
        }
        self.tables
            .iter()
            .find(|(name, _)| *name == table)
            .map(|(_, keys)| *keys)
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
