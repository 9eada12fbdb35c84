//! The settings of one smart host (`[[relay]]`) as the rest of the daemon
//! sees them: where it is, how TLS and AUTH are spoken, its limits and
//! timeouts. Re-exported by [`crate::config`].
//!
//! Not for: defaults and checks (those are in `config::relay`, which builds
//! these values from the file).

use std::path::PathBuf;
use std::time::Duration;

use super::Secret;

/// One smart host (`[[relay]]`). Credentials are read when the
/// configuration is loaded, so a reload picks up a changed password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Names the relay in logs and errors: `[a-z0-9_-]+`, unique.
    /// Default: none, required.
    pub name: String,
    /// The provider preset (`provider = "ses:us-east-1"`) whose host, port,
    /// TLS mode and user name fill what the relay does not set itself.
    /// Default: none.
    pub provider: Option<super::Preset>,
    /// The relay's DNS name (lower-cased) or IP address, without the
    /// brackets Postfix uses to turn off MX lookups (postrelay never does
    /// MX lookups: the name is resolved to A/AAAA records). IPv6 addresses
    /// are stored in their canonical form. Default: none, required.
    pub host: String,
    /// TCP port. Default: 465 when `tls` is `Implicit` (submissions, RFC
    /// 8314), otherwise 587 (submission, RFC 6409), the ports providers
    /// offer for authenticated relaying; port 25 is often blocked outbound.
    pub port: u16,
    /// How TLS starts on the port. Default: `Auto`.
    pub tls: TlsMode,
    /// What TLS must achieve before mail (and credentials) are sent.
    /// Default: `Verify`.
    pub security: Security,
    /// CA certificates (PEM) that alone are trusted to verify this relay's
    /// certificate, for a relay with a private CA; only with `Verify`.
    /// Checked at load time to exist and to hold a PEM certificate; the TLS
    /// code parses it. Default: none, meaning the system's trusted CAs.
    pub ca_file: Option<PathBuf>,
    /// The name the relay's certificate must be valid for (also sent as
    /// SNI), when it is not `host`: a relay reached by IP address or by an
    /// alias its certificate does not name (Postfix's
    /// `smtp_tls_servername`). Only with `Verify`. Default: none (`host`).
    pub tls_name: Option<String>,
    /// The relays tried, in order, when this one cannot be reached or
    /// refuses the session, for mail routed to this relay by name
    /// (`relay:NAME`, `sender_relay`, an `smtp:` next hop at its host and
    /// port). Names of other `[[relay]]` tables; not followed further.
    /// Default: none.
    pub fallbacks: Vec<String>,
    /// The user name and password for SMTP AUTH, from `password_file` or
    /// from `delivery.sasl_passwd`. Default: none (no AUTH).
    pub credentials: Option<Credentials>,
    /// Whether AUTH may be sent over an unencrypted session. Only accepted
    /// with `security = None` (a relay reached over a trusted path, such as
    /// a VPN or loopback). Default: `false`.
    pub allow_plaintext_auth: bool,
    /// Log in with an OAuth2 access token (XOAUTH2 or OAUTHBEARER) for
    /// `username` instead of a password (`[relay.oauth]`). Default: none.
    pub oauth: Option<super::OAuthConfig>,
    /// Log the SMTP conversation with this relay (AUTH data redacted), for
    /// debugging. Default: `false`.
    pub verbose: bool,
    /// Connections open to this relay at the same time. Providers throttle
    /// or refuse clients that open many parallel sessions; 10 keeps a
    /// provider busy without tripping such limits (Postfix allows 20 per
    /// destination). Default: `10`.
    pub max_connections: usize,
    /// Messages sent over one connection before it is closed and a new one
    /// opened: bounds a session's lifetime, so that DNS changes and rotated
    /// credentials are picked up, and stays under the per-session limits
    /// some providers enforce. Default: `100`.
    pub max_messages_per_connection: u32,
    /// How long an idle connection is kept open for the next message.
    /// Postfix keeps 2 seconds (`smtp_connection_cache_time_limit`), which
    /// suits many destinations; a null client sends bursts to one relay, and
    /// each reuse saves a TCP and TLS handshake and an AUTH exchange. 10
    /// seconds carries a burst while staying far below the idle time
    /// servers allow (5 minutes, RFC 5321 §4.5.3.2.7), so the relay is not
    /// the one to drop the connection. Default: `"10s"`.
    pub idle_timeout: Duration,
    /// How long to wait at each step of a session.
    pub timeouts: RelayTimeouts,
    /// The provider's sending limits and throttle replies
    /// (`[relay.limits]`, over the preset's published numbers).
    pub limits: RelayLimits,
}

/// A relay's sending limits (`[relay.limits]`) and what to do at them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    /// What the quota store counts: rate, windows, recipients per
    /// transaction, and the account the counts belong to. Default: the
    /// preset's published numbers (docs/config.md), else none; the
    /// account is `user@host` of the credentials, else the relay's name.
    pub quota: crate::quota::Limits,
    /// The relay that takes mail over while this one's limits leave no
    /// room (instead of the mail waiting). Default: none.
    pub spill_to: Option<String>,
    /// Reply texts (lower-case) that mean "this account is over a
    /// provider limit", in addition to the known ones
    /// (`deliver::outcome::DEFAULT_THROTTLES`). Default: none.
    pub throttle_replies: Vec<String>,
    /// How long the relay takes no mail after a throttle reply.
    /// Default: `"15m"`.
    pub cool_down: Duration,
}

impl RelayLimits {
    /// No limits, counted under `account`.
    pub fn none(account: String) -> RelayLimits {
        RelayLimits {
            quota: crate::quota::Limits {
                account,
                ..crate::quota::Limits::default()
            },
            spill_to: None,
            throttle_replies: Vec::new(),
            cool_down: super::relay_limits::COOL_DOWN,
        }
    }
}

/// How a TLS session starts on a relay's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Find out: try the mode the port usually speaks (implicit TLS on 465,
    /// STARTTLS elsewhere), fall back to the other one when the server does
    /// not answer as expected, and remember what worked. This avoids the
    /// classic trap of pointing a STARTTLS client at an implicit-TLS port
    /// (both sides wait for the other until a timeout).
    Auto,
    /// The session starts in clear text and is upgraded with STARTTLS
    /// (RFC 3207) when `security` asks for TLS.
    StartTls,
    /// The session is TLS from the first byte (RFC 8314 "implicit TLS",
    /// Postfix `smtp_tls_wrappermode = yes`).
    Implicit,
}

impl TlsMode {
    /// The spelling used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Auto => "auto",
            TlsMode::StartTls => "starttls",
            TlsMode::Implicit => "implicit",
        }
    }
}

/// What TLS must achieve with a relay, modelled on Postfix's
/// `smtp_tls_security_level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// TLS is required, and the certificate must chain to a trusted CA and
    /// match `host` (Postfix `secure`). Without it, mail is deferred.
    Verify,
    /// TLS is required, the certificate is not checked (Postfix `encrypt`):
    /// protects against eavesdroppers, not against an active attacker.
    Encrypt,
    /// TLS when the relay offers it, clear text otherwise (Postfix `may`).
    May,
    /// Never TLS (Postfix `none`).
    None,
}

impl Security {
    /// The spelling used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Verify => "verify",
            Security::Encrypt => "encrypt",
            Security::May => "may",
            Security::None => "none",
        }
    }

    /// Whether the session must not go ahead without TLS.
    pub fn requires_tls(self) -> bool {
        matches!(self, Security::Verify | Security::Encrypt)
    }
}

/// How long a relay session waits at each step before giving up on the
/// connection (the message is then retried, or tried on the next relay).
/// Modelled on Postfix's `smtp_*_timeout` and the minimums of RFC 5321
/// §4.5.3.2, except `greeting` and `tls`, which are short so that a port
/// spoken to in the wrong TLS mode is detected quickly. Each is between 1
/// second and 1 hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayTimeouts {
    /// TCP connection set-up, per address. Default: `"30s"` (Postfix
    /// `smtp_connect_timeout`): a relay that does not accept a connection
    /// within 30 seconds is down, and the next address or relay is tried.
    pub connect: Duration,
    /// The server's 220 greeting. Default: `"30s"`, not RFC 5321's 5
    /// minutes: a smart host greets at once, and a silent server usually
    /// means an implicit-TLS port spoken to in clear text.
    pub greeting: Duration,
    /// The reply to EHLO. Default: `"5m"` (Postfix `smtp_helo_timeout`).
    pub ehlo: Duration,
    /// The TLS handshake (after STARTTLS's 220, or at once with implicit
    /// TLS). Default: `"30s"`: a handshake is a few round trips, and a
    /// stalled one usually means the port does not speak TLS that way
    /// (Postfix's `smtp_starttls_timeout` of 5 minutes hides this).
    pub tls: Duration,
    /// Each step of SMTP AUTH. Default: `"1m"`: providers answer within
    /// seconds even when they check credentials remotely; Postfix has no
    /// separate limit.
    pub auth: Duration,
    /// The reply to MAIL FROM. Default: `"5m"` (RFC 5321 §4.5.3.2.2).
    pub mail: Duration,
    /// The reply to each RCPT TO. Default: `"5m"` (RFC 5321 §4.5.3.2.3).
    pub rcpt: Duration,
    /// The 354 reply to DATA, and any stall while the message is being
    /// sent. Default: `"3m"`, which covers RFC 5321's 2 minutes for the
    /// former (§4.5.3.2.4) and 3 minutes for the latter (§4.5.3.2.5).
    pub data: Duration,
    /// The reply after the final dot. Default: `"10m"` (RFC 5321
    /// §4.5.3.2.6, Postfix `smtp_data_done_timeout`): the server may be
    /// scanning the message, and giving up early delivers it twice.
    pub data_end: Duration,
    /// The reply to RSET, sent before a kept connection is reused.
    /// Default: `"20s"` (Postfix `smtp_rset_timeout`): a slow answer means
    /// the connection is not worth keeping, and a new one is opened.
    pub rset: Duration,
    /// The reply to QUIT. Default: `"10s"`: nothing depends on it (the
    /// mail is already accepted), so waiting longer (Postfix: 5 minutes)
    /// only holds a connection slot.
    pub quit: Duration,
}

impl Default for RelayTimeouts {
    /// The defaults documented on each field.
    fn default() -> Self {
        super::relay_timeouts::TIMEOUTS
    }
}

/// A user name and password for SMTP AUTH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The user name, as given to the relay.
    pub username: String,
    /// The password; printed only as `<redacted>`.
    pub password: Secret,
    /// The file the password came from: the relay's `password_file`, or
    /// `delivery.sasl_passwd`.
    pub source: PathBuf,
}
