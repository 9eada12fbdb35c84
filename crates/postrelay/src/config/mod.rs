//! The configuration: one TOML file, read and validated up front.
//!
//! **For:** turning `/etc/postrelay/postrelay.toml` (or the built-in
//! defaults) into a plain [`Config`] in which every setting has its final
//! value, so that the rest of the daemon never deals with missing values,
//! units or syntax; and rendering a [`Config`] back to TOML for
//! `postrelay check-config`.
//!
//! **Not for:** acting on the settings. Binding sockets, creating the spool,
//! enforcing limits and deciding what to re-apply on SIGHUP belong to the
//! modules that own those things ([`Config::restart_required`] only says
//! which changed settings cannot be applied without a restart).
//!
//! The file is strict: an unknown key, a value of the wrong type or an
//! unreasonable value is a [`ConfigError`] naming the file, the line, the key
//! and what would be accepted. `postrelay.example.toml` at the repository
//! root lists every key with its default; `docs/config.md` explains the
//! value syntaxes, the relay policy and reload semantics.

mod cluster;
mod credentials;
mod daemon;
mod delivery;
mod file;
mod hops;
mod limits;
mod local;
mod oauth;
mod presets;
mod relay;
mod relay_limits;
mod relay_settings;
mod relay_timeouts;
mod render;
mod resolve;
mod routing;
mod sasl_passwd;
mod secrets;
mod submission;
mod submit_view;
#[cfg(test)]
mod tests;
pub(crate) mod units;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use cluster::{ClusterSettings, Share};
pub use daemon::DEFAULT_USER;
pub use local::MailboxFormat;
pub use oauth::{OAuthConfig, OAuthFlow, OAuthProvider, check_endpoint as check_oauth_endpoint};
pub use presets::{Preset, known_list as known_providers, lookup as provider_preset};
pub use relay_limits::PresetLimits;
pub use relay_settings::{Credentials, RelayConfig, RelayLimits, RelayTimeouts, Security, TlsMode};
pub(crate) use sasl_passwd::fuzz_check as fuzz_sasl_passwd;
pub use secrets::{Secret, read_secret_file};
pub use submission::{ServerTls, Submission, User};
pub use submit_view::SubmitSettings;
pub(crate) use units::format_duration;
pub use units::{Cidr, CidrError};

pub use crate::route::RoutingSettings;

/// The validated configuration, with every default applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This host's name: the EHLO name, the "by" of Received headers, and
    /// what `$hostname` in `intake.local_domains` stands for. Lower-cased;
    /// must be a domain name in ASCII (A-label) form. Receivers commonly
    /// refuse an EHLO name without a dot, so set a fully-qualified name when
    /// the system's name is a bare one.
    /// Default: the system host name (gethostname(2)), used as is.
    pub hostname: String,
    /// The queue directory, owned by postrelay. A relative path is relative
    /// to the daemon's working directory (systemd starts services in `/`).
    /// Default: `/var/spool/postrelay` with a file; `./postrelay-spool`
    /// with the built-in defaults, so a first run needs no privileges.
    pub spool: PathBuf,
    /// The Unix socket that `postrelay queue …` and `mailq` talk to. It sits
    /// in the spool by default so that it shares the spool's permissions.
    /// Default: `<spool>/control.sock`.
    pub control_socket: PathBuf,
    /// Who the daemon runs as once its sockets are bound (`[daemon]`).
    pub daemon: DaemonSettings,
    /// The SMTP listener: where it listens, whom it serves, and its limits.
    pub intake: Intake,
    /// Retry schedule and disk-space floor of the queue.
    pub queue: QueueSettings,
    /// Where and how the daemon logs.
    pub log: LogSettings,
    /// The Prometheus endpoint (`[metrics]`).
    pub metrics: MetricsSettings,
    /// The smart hosts mail is relayed through, in the order they are
    /// tried: a message goes to the first relay that can be reached and
    /// accepts the session, the next ones are fallbacks. postrelay never
    /// looks up MX records; it delivers through these relays only.
    /// Default: none (`[[relay]]` tables are written one per relay).
    pub relays: Vec<RelayConfig>,
    /// The relays of the transport map's `smtp:[host]:port` next hops that
    /// no `[[relay]]` stands for (see `hops`): the defaults of a relay,
    /// `security = "verify"`, and the `delivery.sasl_passwd` entry for
    /// their host and port. Never used for mail without a transport entry.
    pub next_hops: Vec<RelayConfig>,
    /// Settings shared by all deliveries.
    pub delivery: DeliverySettings,
    /// How bounces (delivery status notifications) are sent.
    pub bounce: BounceSettings,
    /// Which way recipients go (local delivery, a relay, a host, refusal)
    /// and what senders a relay sees; the tables, read at load.
    pub routing: RoutingSettings,
    /// How mail for local users is stored.
    pub local: LocalConfig,
    /// `[cluster]`: provider limits counted for several nodes in Redis.
    /// Default: none (each node counts alone).
    pub cluster: Option<ClusterSettings>,
}

/// `[daemon]`: the unprivileged user the daemon runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSettings {
    /// The user the daemon drops to after binding its sockets, when it is
    /// started as root; its primary group too, plus the `postdrop` group.
    /// `"root"` keeps root (an explicit opt-out, warned about at start).
    /// Ignored when not started as root. Default: `"postrelay"`.
    /// With the built-in default configuration (no file), a missing
    /// `postrelay` user falls back to `nobody`, with a warning.
    pub user: String,
}

/// `[local]`: local delivery (recipients in `intake.local_domains`, or
/// routed `local:` by the transport map).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalConfig {
    /// `"maildir"` (one file per message in the user's home) or `"mbox"`
    /// (one file per user in `mbox_dir`). Default: `"maildir"`.
    pub mailbox: MailboxFormat,
    /// The Maildir, relative to the user's home. Default: `"Maildir/"`.
    pub maildir: String,
    /// Where mbox files live (`<mbox_dir>/<user>`). Default: `"/var/mail"`.
    pub mbox_dir: PathBuf,
    /// Characters that separate an address extension (`user+tag`): each
    /// one is a delimiter; empty for none. Default: `"+"`.
    pub recipient_delimiter: String,
    /// The local user who gets mail for unknown local recipients
    /// (Postfix's `luser_relay`); then every local recipient is accepted
    /// at RCPT. Default: none (unknown local recipients are refused).
    pub catch_all: Option<String>,
    /// How long one local delivery may take before the helper kills it
    /// and the message is deferred. Default: 5 minutes.
    pub delivery_timeout: std::time::Duration,
}

/// Settings of the SMTP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intake {
    /// Addresses to accept SMTP connections on. IP addresses only, so that
    /// what is bound does not depend on name resolution at start time.
    /// Default: `["127.0.0.1:25"]` with a file (a null client serves local
    /// programs); `["127.0.0.1:2525"]` with the built-in defaults, which
    /// needs no privilege to bind.
    pub listen: Vec<SocketAddr>,
    /// Clients that may relay to any domain. Everyone else may only send to
    /// `local_domains`. A network that (alone or together with others)
    /// covers a whole address family is refused: that is an open relay.
    /// Default: `["127.0.0.0/8", "::1/128"]`, the loopback networks.
    pub mynetworks: Vec<Cidr>,
    /// Domains whose mail is delivered on this host; any client may send to
    /// them (so that bounces and replies to local mailboxes arrive). Exact
    /// names, lower-cased; `"$hostname"` stands for `hostname`.
    /// Default: `["localhost", "$hostname"]`.
    pub local_domains: Vec<String>,
    /// Largest message accepted, in bytes, announced as EHLO `SIZE`. Larger
    /// than Postfix's 10240000 because today's attachments are; 0 ("no
    /// limit" in Postfix) is refused, since a relay must bound its disk use.
    /// Default: `"25 MiB"`.
    pub message_size_limit: u64,
    /// Largest total size of a message's header section, in bytes: bounds
    /// the memory spent on header processing.
    /// Default: `"100 KiB"` (102400, as Postfix's `header_size_limit`).
    pub header_size_limit: u64,
    /// Longest line of message content, in octets excluding CRLF. At least
    /// 998, the limit RFC 5322 §2.1.1 allows senders (RFC 5321 §4.5.3.1.6).
    /// Default: `998`.
    pub line_length_limit: u64,
    /// Longest SMTP command line, in octets including CRLF. RFC 5321
    /// §4.5.3.1.4 sets 512 as the minimum; parameters of extensions
    /// (SMTPUTF8 addresses, ORCPT, AUTH=) legitimately exceed it, so the
    /// default leaves room while still bounding per-session memory.
    /// Default: `2048`.
    pub command_length_limit: u64,
    /// Recipients per message; more get 452 4.5.3 and the client sends them
    /// in another transaction. At least 100 (RFC 5321 §4.5.3.1.8).
    /// Default: `1000`.
    pub max_recipients: usize,
    /// Concurrent SMTP sessions on the `listen` addresses; the next one
    /// gets 421 4.7.0. Bounds file descriptors and memory. The submission
    /// listeners have a pool of their own, so the network cannot take
    /// these slots from local programs. Default: `100`.
    pub max_connections: usize,
    /// Concurrent sessions from one client address (IPv6: its /64) on the
    /// `listen` addresses; the next one gets `421 4.7.0 … too many
    /// connections from <ip>`. Clients in `mynetworks` are exempt (local
    /// programs all come from the same loopback address). Default: `10`.
    pub max_connections_per_client: usize,
    /// Protocol errors (bad commands, refused recipients) tolerated in one
    /// session before it is ended with 421; stops clients that loop.
    /// Default: `20`.
    pub max_errors: usize,
    /// How long to wait for the next command (RFC 5321 §4.5.3.2.7: at
    /// least 5 minutes). Default: `"5m"`.
    pub command_timeout: Duration,
    /// How long to wait for the next chunk of message data during DATA.
    /// Clients give up after 3 minutes without progress on their side
    /// (§4.5.3.2.5), so 5 minutes never cuts off a live client.
    /// Default: `"5m"`.
    pub data_timeout: Duration,
    /// Longest time one command line, or one line of message data, may
    /// take to arrive, however steadily its bytes trickle in (the
    /// per-read timeouts restart with each byte). Counted from the line's
    /// first byte. Default: `"60s"`.
    pub line_timeout: Duration,
    /// Longest total session, whatever the activity: ends sessions that
    /// trickle bytes to defeat the per-read timeouts. Must not be shorter
    /// than the other two timeouts. Default: `"1h"`.
    pub session_timeout: Duration,
    /// How often maildrop/ (mail from `sendmail`) is listed in full. A file
    /// postdrop finishes wakes pickup at once (inotify); this listing is
    /// the safety net, and the only trigger (every second) where change
    /// notification is unavailable. Default: `"30s"`.
    pub maildrop_rescan: Duration,
    /// The authenticated submission listeners (`[intake.submission]`), for
    /// other hosts that relay through this one with a user name and
    /// password over TLS. Default: none (no submission listener).
    pub submission: Option<Submission>,
}

/// Settings of the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    /// Shortest wait before retrying a deferred message.
    /// Default: `"300s"` (Postfix `minimal_backoff_time`).
    pub min_backoff: Duration,
    /// Longest wait between retries; the wait doubles from `min_backoff` up
    /// to this. Default: `"4000s"` (Postfix `maximal_backoff_time`).
    pub max_backoff: Duration,
    /// How long a message is retried before it is bounced.
    /// Default: `"5d"` (Postfix `maximal_queue_lifetime`).
    pub max_lifetime: Duration,
    /// Free space the spool's file system must keep; below it, intake
    /// answers 452 4.3.1 instead of accepting mail. 0 disables the check;
    /// otherwise it must be at least `intake.message_size_limit`, so that
    /// one accepted message cannot fill the disk. Default: `"100 MiB"`.
    pub min_free_space: u64,
    /// How a batch of accepted messages is made durable before the 250.
    /// Default: `"filesystem"`.
    pub sync: SyncMode,
}

/// How the spool makes a batch of accepted messages durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// One `syncfs(2)` of the spool's file system per batch, and nothing
    /// else: each envelope is renamed into queue/ while it is staged, and
    /// carries checksums of itself and of its body that recovery checks,
    /// so a commit a power cut interrupted is told from a complete one.
    /// The fewest device flushes and system calls. It also flushes other
    /// programs' pending writes on that file system, so a spool sharing a
    /// disk with a busy database may see longer commit times; use `files`
    /// there, or give the spool its own file system.
    Filesystem,
    /// `fdatasync(2)` of each body and envelope (as Postfix does), then
    /// the renames and one directory fsync per batch: isolated from other
    /// writers, at more CPU per message.
    Files,
    /// One record per message (envelope and body, up to 64 KiB) in a
    /// preallocated commit journal and one `fdatasync(2)` of it per batch,
    /// then the renames with no sync: the data-only flush needs no
    /// file-system commit, so the 250 comes sooner. `syncfs(2)` runs off
    /// the reply's path, at checkpoints (every 25 ms while busy, after
    /// 200 ms idle); after a crash the spool is repaired from the journal.
    /// Larger messages are committed as with `filesystem`.
    Journal,
}

impl SyncMode {
    /// The spelling used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Filesystem => "filesystem",
            SyncMode::Files => "files",
            SyncMode::Journal => "journal",
        }
    }
}

/// Settings of logging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// Least severe level logged: `error`, `warn`, `info`, `debug` or
    /// `trace` (lower-cased). `info` logs one line per message and delivery
    /// attempt, as Postfix does. Default: `"info"`.
    pub level: String,
    /// Line format. Default: `"postfix"`, so existing log tooling works.
    pub format: LogFormat,
    /// File to append log lines to. Default: none, meaning standard error
    /// (which journald or the supervisor collects).
    pub file: Option<PathBuf>,
    /// Where the mail log goes. Default: [`LogTarget::Auto`].
    pub to: LogTarget,
    /// The program name in syslog and journal records and in Postfix-form
    /// lines (`NAME/smtp[pid]`); `"postfix"` lets pflogsumm read the log
    /// without `--syslog-name`. Default: `"postrelay"`.
    pub syslog_name: String,
    /// The syslog daemon's socket. Default: `/dev/log`.
    pub syslog_socket: PathBuf,
}

/// Where the mail log goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// `file` if set; else the journal when standard error is connected to
    /// it (started by systemd); else syslog when its socket exists; else
    /// standard error.
    Auto,
    /// The systemd journal, as structured records.
    Journal,
    /// Syslog, facility `mail`.
    Syslog,
    /// Standard error.
    Stderr,
    /// The file named by `file` (required).
    File,
}

impl LogTarget {
    /// The name in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogTarget::Auto => "auto",
            LogTarget::Journal => "journal",
            LogTarget::Syslog => "syslog",
            LogTarget::Stderr => "stderr",
            LogTarget::File => "file",
        }
    }
}

/// The Prometheus endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Address of the HTTP listener serving `/metrics` and `/healthz`.
    /// Default: none (no listener). Needs a restart to change.
    pub listen: Option<SocketAddr>,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text lines in the style of Postfix's maillog (`queue-id: to=<…>,
    /// relay=…, status=sent`), which pflogsumm-like tools understand.
    Postfix,
    /// One JSON object per line, for log pipelines.
    Json,
}

impl LogFormat {
    /// The spelling used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Postfix => "postfix",
            LogFormat::Json => "json",
        }
    }
}

/// Settings of the delivery side as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliverySettings {
    /// Whether queued mail is delivered. `false` keeps accepting and
    /// queueing mail but attempts no delivery (maintenance, a migration
    /// being tested); set it back and reload. Default: `true`.
    pub enabled: bool,
    /// A file in Postfix's `sasl_passwd` format (`[host]:port user:password`
    /// per line), consulted for a relay that has no `password_file`, so a
    /// Postfix installation's file can be reused. It must be protected like
    /// a password file. Default: none.
    pub sasl_passwd: Option<PathBuf>,
    /// Messages being delivered at the same time, over all relays. Each
    /// delivery holds at most one connection, so this bounds outbound
    /// sessions and memory. 20 is twice a relay's default
    /// `max_connections`: the first relay can be kept busy while deliveries
    /// that failed over use the next one. Default: `20`.
    pub max_workers: usize,
}

/// How bounces (delivery status notifications, RFC 3464) are sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BounceSettings {
    /// Envelope sender of bounces; empty means the null sender `<>`, as RFC
    /// 5321 §4.5.5 requires so that bounces never bounce back in a loop.
    /// Some providers (Amazon SES) refuse `MAIL FROM:<>`: there, set an
    /// address of a domain the provider accepts. Default: `""`.
    pub sender: String,
    /// Where a bounce that cannot be delivered (a double bounce) goes, as a
    /// complete address: a bare local part in the file is completed with
    /// `@hostname`. Default: `"postmaster"`, i.e. `postmaster@<hostname>`.
    pub postmaster: String,
    /// After how long a still-queued message earns its sender a "delayed"
    /// notice; `None` sends none. Default: `"off"` (as Postfix's
    /// `delay_warning_time`): most senders of a null client are programs,
    /// which do not read such notices.
    pub delay_warning: Option<Duration>,
}

/// Why a configuration could not be loaded. The `Display` form starts with
/// `origin:line:` so that editors can jump to the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the configuration: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin}:{line}:{column}: {message}")]
    Parse {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// The file is TOML, but a key or value is not acceptable. `key` is the
    /// dotted key (`intake.message_size_limit`); `line` is where it is
    /// written, or `None` when the offending value is a default.
    #[error("{origin}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        origin: String,
        key: String,
        line: Option<usize>,
        message: String,
    },
}

/// Reads, parses and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Checks a secret file's type, owner and mode as loading does, without
/// reading it (for `postrelay doctor`); `daemon_user` is `[daemon] user` as
/// written, which decides the owner as at load. The error names what is
/// wrong and ends with `: run <commands>` that fix it.
pub fn check_secret_file(path: &Path, daemon_user: Option<&str>) -> Result<(), String> {
    let owner = daemon::secret_owner_for(daemon_user);
    secrets::with_owner(owner, || {
        let file = secrets::open(path)?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot be examined: {e}"))?;
        secrets::check_protected(path, &meta, owner)
    })
}

/// Parses and validates configuration text; `origin` names it in errors.
/// Settings absent from the text get their file defaults.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    validate::parse(text, origin, validate::Flavor::File)
}

/// The configuration used when no file is given: listens on
/// 127.0.0.1:2525 and spools to `./postrelay-spool`, so that a first
/// `postrelay run` works unprivileged; everything else as in a file.
/// If the system host name is not a valid domain name, `localhost` is used.
pub fn builtin_default() -> Config {
    validate::parse("", "built-in defaults", validate::Flavor::Builtin)
        .expect("the built-in defaults are valid (tested)")
}

impl Config {
    /// The effective settings as TOML that [`parse`] reads back to an equal
    /// `Config`; what `postrelay check-config` prints.
    pub fn render(&self) -> String {
        render::render(self)
    }

    /// Dotted keys of settings that differ between `self` (running) and
    /// `new` (just re-read on SIGHUP) but only take effect on a restart:
    /// sockets already bound, the spool in use, the connection limit sized
    /// at start, and logging (the subscriber is installed once). The daemon
    /// applies the rest and should log these as ignored until a restart.
    pub fn restart_required(&self, new: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.intake, &new.intake);
        let changed = [
            ("spool", self.spool != new.spool),
            ("control_socket", self.control_socket != new.control_socket),
            ("daemon.user", self.daemon.user != new.daemon.user),
            // The local delivery helper is started with these.
            ("local.mailbox", self.local.mailbox != new.local.mailbox),
            ("local.maildir", self.local.maildir != new.local.maildir),
            ("local.mbox_dir", self.local.mbox_dir != new.local.mbox_dir),
            (
                "local.delivery_timeout",
                self.local.delivery_timeout != new.local.delivery_timeout,
            ),
            ("intake.listen", a.listen != b.listen),
            (
                "intake.submission.listen",
                a.submission.as_ref().map(|s| &s.listen)
                    != b.submission.as_ref().map(|s| &s.listen),
            ),
            (
                "intake.submission.implicit",
                a.submission.as_ref().map(|s| &s.implicit)
                    != b.submission.as_ref().map(|s| &s.implicit),
            ),
            (
                "intake.max_connections",
                a.max_connections != b.max_connections,
            ),
            (
                // Adding or removing the table is a change of listen.
                "intake.submission.max_connections",
                matches!((&a.submission, &b.submission),
                    (Some(x), Some(y)) if x.max_connections != y.max_connections),
            ),
            ("queue.sync", self.queue.sync != new.queue.sync),
            ("log.level", self.log.level != new.log.level),
            ("log.format", self.log.format != new.log.format),
            ("log.file", self.log.file != new.log.file),
            ("log.to", self.log.to != new.log.to),
            (
                "log.syslog_name",
                self.log.syslog_name != new.log.syslog_name,
            ),
            (
                "log.syslog_socket",
                self.log.syslog_socket != new.log.syslog_socket,
            ),
            ("metrics.listen", self.metrics.listen != new.metrics.listen),
            // The shared store is made once, at start.
            ("cluster", self.cluster != new.cluster),
        ];
        changed
            .into_iter()
            .filter_map(|(key, differs)| differs.then_some(key))
            .collect()
    }
}
