//! The outbound SMTP client: one session with a smart host (the relay),
//! from the TCP connect through TLS and AUTH to one or more mail
//! transactions and QUIT.
//!
//! What it is for: turning a queued message into one [`Outcome`] per
//! recipient, or a [`Failure`] that says why the session broke. Which
//! outcome is permanent is decided by [`crate::deliver::outcome`] alone.
//!
//! Not for: choosing the relay, resolving its name, retry timing, or
//! applying outcomes to the queue (the scheduler does those), nor for
//! reading the configuration (the caller fills a [`Target`]).
//!
//! Data flow, one file each:
//! - `connect`: TCP, the TLS mode (implicit or plaintext first, detected in
//!   `tls = "auto"`), up to the greeting;
//! - `session`: EHLO, STARTTLS, EHLO again, then `auth`; RSET and QUIT;
//! - `transaction`: MAIL, RCPT, DATA (pipelined when offered), then
//!   `body`: the spool file on the wire (stuffed, or as it is);
//! - `wire`: sending commands and reading replies with deadlines, every
//!   line going through `transcript` (bounded, secrets redacted at the
//!   source).

mod auth;
mod auth_oauth;
mod body;
mod connect;
mod session;
mod transaction;
mod transcript;
mod wire;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

pub use session::Session;

use crate::deliver::outcome::Reason;

/// Where and how to deliver: one relay, as the configuration describes it.
pub struct Target {
    /// The relay's name, for logs.
    pub name: String,
    /// DNS name or IP literal: used for SNI and certificate verification
    /// unless `tls_name` is set.
    pub host: String,
    /// The name the certificate must be valid for (and SNI), when it is
    /// not `host`: a relay reached by IP address or by an alias
    /// (`[[relay]] tls_name`, Postfix's `smtp_tls_servername`).
    pub tls_name: Option<String>,
    /// The TCP port.
    pub port: u16,
    /// The relay's addresses, resolved by the caller; tried in order.
    pub addrs: Vec<SocketAddr>,
    /// Implicit TLS, STARTTLS, or detect.
    pub tls: TlsMode,
    /// What TLS must achieve.
    pub security: Security,
    /// The verifying configuration (system roots or `ca_file`), built by
    /// [`crate::net::tls::client_config`]; used with [`Security::Verify`].
    pub tls_config_verify: Arc<rustls::ClientConfig>,
    /// User name and password for AUTH.
    pub credentials: Option<(String, Secret)>,
    /// Logs in with an OAuth2 access token from this source (for its
    /// user) instead of a password.
    pub oauth: Option<Arc<crate::oauth::TokenSource>>,
    /// Allows AUTH without TLS; only honoured with [`Security::None`].
    pub allow_plaintext_auth: bool,
    /// The name we announce in EHLO.
    pub helo_name: String,
    /// Per-phase time limits.
    pub timeouts: Timeouts,
    /// Log the conversation (secrets redacted) with `tracing::info!`.
    pub verbose: bool,
    /// The TLS mode detected for this relay in `tls = "auto"`, shared by
    /// all sessions with it.
    pub mode_memory: Arc<ModeMemory>,
}

impl Target {
    /// The name the relay's certificate is verified against: `tls_name`,
    /// else `host`.
    pub fn cert_name(&self) -> &str {
        self.tls_name.as_deref().unwrap_or(&self.host)
    }
}

/// How TLS starts and what it must achieve: the configuration's types
/// (`tls = "auto" | "starttls" | "implicit"`, `security = "verify" | …`).
pub use crate::config::{Security, TlsMode};

/// A password (the configuration's type: `Debug` and `Display` print
/// `<redacted>`).
pub use crate::config::Secret;

/// A TLS mode found to work with a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// TLS from the first byte.
    Implicit,
    /// Plaintext greeting (then STARTTLS, as the security level says).
    StartTls,
}

/// Remembers, across sessions, which TLS mode worked with a relay in
/// `tls = "auto"`, so that detection happens once per relay (per process).
#[derive(Debug, Default)]
pub struct ModeMemory(AtomicU8);

impl ModeMemory {
    /// Nothing detected yet.
    pub fn new() -> ModeMemory {
        ModeMemory::default()
    }

    /// The remembered mode.
    pub fn get(&self) -> Option<Detected> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(Detected::Implicit),
            2 => Some(Detected::StartTls),
            _ => None,
        }
    }

    /// Remembers `mode`.
    pub fn set(&self, mode: Detected) {
        let v = match mode {
            Detected::Implicit => 1,
            Detected::StartTls => 2,
        };
        self.0.store(v, Ordering::Relaxed);
    }

    /// Forgets the mode (e.g. after a configuration reload).
    pub fn clear(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Per-phase time limits: the configuration's `[relay.timeouts]` type,
/// used as it is (see [`crate::config::RelayTimeouts`] for each phase and
/// its default).
pub use crate::config::RelayTimeouts as Timeouts;

/// One message to send: the envelope and the spooled body.
pub struct Message<'a> {
    /// The envelope sender; `""` is the null path `<>`.
    pub sender: &'a str,
    /// The envelope recipients, in the order outcomes are returned.
    pub recipients: &'a [String],
    /// The body file (CRLF line ends, not dot-stuffed), streamed.
    pub body: &'a Path,
    /// Its size in bytes (for `SIZE=`).
    pub size: u64,
    /// The body has 8-bit content (`BODY=8BITMIME` when offered).
    pub eight_bit: bool,
    /// The message needs SMTPUTF8 (non-ASCII addresses or headers).
    pub smtputf8: bool,
    /// The body file is its own SMTP form (`Envelope::sends_as_is`): it
    /// goes out without dot-stuffing (straight from the file over plain
    /// TCP). With `header` set it is stuffed all the same.
    pub sends_as_is: bool,
    /// A rewritten header section sent instead of the file's first bytes
    /// (sender rewriting toward a provider); `None` sends the file as is.
    pub header: Option<HeaderSwap<'a>>,
}

/// Replaces the start of a queued message while sending it; the queue file
/// itself is never changed.
#[derive(Debug, Clone, Copy)]
pub struct HeaderSwap<'a> {
    /// What to send first (CRLF lines, not dot-stuffed).
    pub bytes: &'a [u8],
    /// How many bytes at the start of the file it replaces.
    pub replaces: u64,
}

/// Why a session could not be opened or broke; the caller defers every
/// recipient not yet decided and drops the session.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong, classified by [`crate::deliver::outcome`].
    pub reason: Reason,
    /// The conversation since the last transcript was taken (redacted).
    pub transcript: Vec<String>,
    /// The relay is unreachable or refused the session (connect,
    /// greeting, EHLO, TLS, AUTH): the caller may fail over to the next
    /// relay.
    pub session_refused: bool,
    /// A reused session turned out closed (or confused) before the
    /// transaction began: its RSET failed, so the relay acted on nothing
    /// we sent after it; the message may go out on a fresh connection.
    pub stale: bool,
}

impl Failure {
    /// A failure before any conversation with the relay (no address, no
    /// quota, no relay at all): nothing to show, and the caller may try
    /// the next relay.
    pub fn before_session(reason: Reason) -> Failure {
        Failure {
            reason,
            transcript: Vec::new(),
            session_refused: true,
            stale: false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.reason.fmt(f)
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target for unit tests: the relay at 127.0.0.1:`port`, `auto`
    /// TLS, `encrypt`, no credentials.
    pub(super) fn target(port: u16, memory: Arc<ModeMemory>) -> Target {
        Target {
            name: "test".into(),
            host: "127.0.0.1".into(),
            tls_name: None,
            port,
            addrs: vec![([127, 0, 0, 1], port).into()],
            tls: TlsMode::Auto,
            security: Security::Encrypt,
            tls_config_verify: crate::net::tls::client_config_no_verify(),
            credentials: None,
            oauth: None,
            allow_plaintext_auth: false,
            helo_name: "client.test".into(),
            timeouts: Timeouts::default(),
            verbose: false,
            mode_memory: memory,
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        let creds = Some(("user".to_owned(), s.clone()));
        assert!(!format!("{creds:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn mode_memory_round_trips() {
        let m = ModeMemory::new();
        assert_eq!(m.get(), None);
        m.set(Detected::Implicit);
        assert_eq!(m.get(), Some(Detected::Implicit));
        m.set(Detected::StartTls);
        assert_eq!(m.get(), Some(Detected::StartTls));
        m.clear();
        assert_eq!(m.get(), None);
    }
}
