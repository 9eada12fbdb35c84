//! What one delivery attempt did for each recipient, and why.
//!
//! Permanence is decided in one place, [`Reason::is_permanent`]: every
//! caller asks it, nobody inspects reply codes on their own. A failure the
//! sender can fix (a refused recipient, a message too big) bounces; a
//! failure the operator or time can fix (the provider down, a wrong
//! password, a TLS problem) waits in the queue.

use std::fmt;
use std::time::{Duration, SystemTime};

use postrelay_smtp::reply::Reply;

/// A step of the client conversation, for timeouts and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Resolving the relay's host name.
    Resolve,
    /// Opening the TCP connection.
    Connect,
    /// Waiting for the 220 greeting.
    Greeting,
    /// EHLO (or HELO).
    Ehlo,
    /// STARTTLS and the TLS handshake (or the implicit-TLS handshake).
    Tls,
    /// AUTH.
    Auth,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// DATA (until the 354).
    Data,
    /// Sending the body and waiting for the reply to the final dot.
    DataEnd,
    /// RSET between messages on a reused connection.
    Rset,
    /// QUIT.
    Quit,
}

impl Phase {
    /// The name used in logs and `queue show` (`"RCPT TO"`, `"end of data"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolving the relay",
            Phase::Connect => "connecting",
            Phase::Greeting => "waiting for the greeting",
            Phase::Ehlo => "EHLO",
            Phase::Tls => "TLS handshake",
            Phase::Auth => "AUTH",
            Phase::Mail => "MAIL FROM",
            Phase::Rcpt => "RCPT TO",
            Phase::Data => "DATA",
            Phase::DataEnd => "end of data",
            Phase::Rset => "RSET",
            Phase::Quit => "QUIT",
        }
    }
}

impl Phase {
    /// What was awaited when this phase timed out, in plain words
    /// ("the reply to EHLO", "the TLS handshake").
    pub fn awaited(self) -> &'static str {
        match self {
            Phase::Resolve => "the relay's address from DNS",
            Phase::Connect => "the TCP connection",
            Phase::Greeting => "the SMTP greeting",
            Phase::Ehlo => "the reply to EHLO",
            Phase::Tls => "the TLS handshake",
            Phase::Auth => "the reply to AUTH",
            Phase::Mail => "the reply to MAIL FROM",
            Phase::Rcpt => "the reply to RCPT TO",
            Phase::Data => "the reply to DATA",
            Phase::DataEnd => "the reply to the end of the message data",
            Phase::Rset => "the reply to RSET",
            Phase::Quit => "the reply to QUIT",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a recipient was not delivered (or, for [`Reason::Reply`] with a
/// 2xx, the reply that accepted it is not a reason; see [`Outcome`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The relay's name did not resolve.
    Dns(String),
    /// TCP connection refused, unreachable, reset.
    Connect(String),
    /// TLS could not be established, or was required and not offered.
    Tls(String),
    /// The relay refused our credentials, or offers no usable mechanism.
    Auth(String),
    /// The relay answered a command with a negative reply.
    Reply {
        /// The command (phase) the reply answered.
        phase: Phase,
        /// The reply as received.
        reply: Reply,
    },
    /// No answer within the phase's time limit.
    Timeout {
        /// The phase that timed out.
        phase: Phase,
        /// How long we waited.
        after: Duration,
    },
    /// The relay broke the protocol (garbage reply, closed mid-session).
    Protocol(String),
    /// A local problem: reading the queue file, a configuration error,
    /// the wrong TLS mode (with a hint).
    Local(String),
    /// The message cannot be sent to this relay as it is (needs SMTPUTF8
    /// the relay lacks, or is bigger than the relay's SIZE).
    Unsendable {
        /// Enhanced status code to report (5.6.7, 5.3.4 …).
        status: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The message stayed in the queue longer than `max_lifetime`.
    Expired {
        /// The last reason it was deferred, if any.
        last: Option<String>,
    },
    /// Refused by postrelay's own routing (a transport map `error:` entry).
    Policy {
        /// The enhanced status code of the entry (`5.7.1`, `4.3.0` …).
        status: String,
        /// Its text.
        text: String,
    },
    /// Delivery of this recipient is not available yet (kept queued).
    Unavailable(String),
    /// Local delivery: no such user on this host (bounces, 5.1.1).
    UnknownUser(String),
    /// Local delivery: the mailbox's file system is full or the user is
    /// over quota (kept queued, 4.2.2).
    MailboxFull(String),
    /// The relay's sending limits (`[relay.limits]`, or a cool-down after
    /// a throttle reply) leave no room now: not attempted, kept queued
    /// until `until` (4.4.5).
    Quota {
        /// The relay.
        relay: String,
        /// The limit that binds, in words.
        limit: String,
        /// When everything asked for fits.
        until: SystemTime,
    },
    /// The relay answered with a throttle reply (one of its
    /// `throttle_replies`, see [`throttled`]): whatever its code, the
    /// recipient waits, and the relay cools down until `until`.
    Throttled {
        /// The relay.
        relay: String,
        /// The command the reply answered.
        phase: Phase,
        /// The reply.
        reply: Reply,
        /// The end of the cool-down.
        until: SystemTime,
    },
}

impl Reason {
    /// Whether this reason bounces the recipient now (true) or leaves it
    /// queued for a later attempt (false). The one place that decides.
    pub fn is_permanent(&self) -> bool {
        match self {
            Reason::Reply { reply, phase } => match phase {
                // A refused session or AUTH is the operator's to fix: the
                // sender's mail waits instead of bouncing.
                Phase::Greeting
                | Phase::Ehlo
                | Phase::Tls
                | Phase::Auth
                | Phase::Rset
                | Phase::Quit => false,
                // So is a relay that wants us authenticated ("530 5.7.0
                // Authentication required" to MAIL, "Relay access
                // denied"): no sender can fix that.
                Phase::Mail | Phase::Rcpt | Phase::Data | Phase::DataEnd => {
                    reply.is_permanent() && !wants_authentication(*phase, reply)
                }
                Phase::Resolve | Phase::Connect => false,
            },
            Reason::Unsendable { .. } | Reason::Expired { .. } | Reason::UnknownUser(_) => true,
            Reason::Policy { status, .. } => status.starts_with('5'),
            Reason::Dns(_)
            | Reason::Connect(_)
            | Reason::Tls(_)
            | Reason::Auth(_)
            | Reason::Timeout { .. }
            | Reason::Protocol(_)
            | Reason::Local(_)
            | Reason::Unavailable(_)
            | Reason::MailboxFull(_)
            | Reason::Quota { .. }
            | Reason::Throttled { .. } => false,
        }
    }

    /// When a recipient deferred for this reason may go (a quota wait or a
    /// cool-down); `None` for every other reason. A wait for quota is not
    /// a failed attempt: the queue neither lengthens the back-off for it
    /// nor counts it toward the message's lifetime.
    pub fn quota_until(&self) -> Option<SystemTime> {
        match self {
            Reason::Quota { until, .. } | Reason::Throttled { until, .. } => Some(*until),
            _ => None,
        }
    }

    /// The enhanced status code for logs and DSNs (`dsn=` in the mail log).
    pub fn status(&self) -> String {
        match self {
            Reason::Reply { reply, .. } => match &reply.enhanced {
                Some(e) => e.to_string(),
                None if reply.is_permanent() => "5.0.0".into(),
                None => "4.0.0".into(),
            },
            Reason::Unsendable { status, .. } => (*status).to_string(),
            Reason::Policy { status, .. } => status.clone(),
            Reason::Expired { .. } => "4.4.7".into(),
            Reason::Dns(_) => "4.4.3".into(),
            Reason::Connect(_) | Reason::Timeout { .. } => "4.4.1".into(),
            Reason::Tls(_) => "4.7.5".into(),
            Reason::Auth(_) => "4.7.8".into(),
            Reason::Protocol(_) => "4.4.2".into(),
            Reason::Local(_) | Reason::Unavailable(_) => "4.3.0".into(),
            Reason::UnknownUser(_) => "5.1.1".into(),
            Reason::MailboxFull(_) => "4.2.2".into(),
            Reason::Quota { .. } => "4.4.5".into(),
            Reason::Throttled { reply, .. } => match &reply.enhanced {
                // Deferred, so a temporary status whatever the reply said.
                Some(e) => format!("4.{}.{}", e.subject, e.detail),
                None => "4.4.5".into(),
            },
        }
    }
}

/// Reply texts that say the *sending account* is over a provider's limit
/// (not that a recipient or the message is refused), matched without
/// regard to case in the reply as printed (`550 5.4.5 Daily user sending
/// limit exceeded`). A relay's `throttle_replies` add to these; the
/// sources are listed in docs/config.md.
pub const DEFAULT_THROTTLES: &[&str] = &[
    // Gmail / Google Workspace: 550 5.4.5 Daily user sending limit
    // exceeded; 550 5.4.5 Daily sending quota exceeded; 550 5.4.5 Daily
    // SMTP relay limit exceeded for user; 450 4.2.1 Peak SMTP relay limit
    // exceeded for this customer.
    "sending limit exceeded",
    "sending quota exceeded",
    "relay limit exceeded",
    // Gmail: 421 4.7.0 Try again later, closing connection.
    "421 4.7.0 try again later",
    // Amazon SES: 454 Throttling failure: Maximum sending rate exceeded /
    // Daily message quota exceeded.
    "throttling failure",
    "maximum sending rate exceeded",
    // Microsoft 365: 554 5.2.0 STOREDRV.Submission.Exception:
    // SubmissionQuotaExceededException; 432 4.3.2 Concurrent connections
    // limit exceeded; Exchange's 4.4.2 Message submission rate for this
    // client has exceeded the configured limit.
    "submissionquotaexceeded",
    "concurrent connections limit exceeded",
    "message submission rate",
];

/// Whether `reply` is a throttle reply: it contains one of
/// [`DEFAULT_THROTTLES`] or of the relay's own `patterns` (lower-case).
pub fn throttled(reply: &Reply, patterns: &[String]) -> bool {
    if reply.is_positive_completion() {
        return false;
    }
    let printed = reply.to_string().to_ascii_lowercase();
    DEFAULT_THROTTLES.iter().any(|p| printed.contains(p))
        || patterns.iter().any(|p| printed.contains(p.as_str()))
}

/// A relay's throttle reply turned into a cool-down: `reason` becomes
/// [`Reason::Throttled`] (kept queued) when it is a reply from `relay`
/// that [`throttled`] recognises; otherwise it is returned unchanged.
pub fn throttle(reason: Reason, relay: &str, patterns: &[String], until: SystemTime) -> Reason {
    match reason {
        Reason::Reply { phase, reply } if throttled(&reply, patterns) => Reason::Throttled {
            relay: relay.to_owned(),
            phase,
            reply,
            until,
        },
        other => other,
    }
}

/// Whether a relay's refusal says that *we* are not authorised to send
/// through it (as opposed to refusing this sender, recipient or message):
/// code 530 (RFC 4954 "authentication required") at any phase, or, to MAIL
/// or RCPT, one of the texts relays use for it (Postfix's "Relay access
/// denied" and "not logged in", Sendmail's "Relaying denied", Exim's "relay
/// not permitted", "Must issue a STARTTLS command first"). The operator
/// fixes these (credentials, the route), so the mail waits. Texts about the
/// sender's own authentication (SPF, DKIM, DMARC: "unauthenticated email")
/// are not among them: those refusals stand.
pub fn wants_authentication(phase: Phase, reply: &Reply) -> bool {
    const TEXTS: [&str; 10] = [
        "authentication required",
        "authentication is required",
        "must authenticate",
        "must be authenticated",
        "relay access denied",
        "relaying denied",
        "relay not permitted",
        "relaying not allowed",
        "not logged in",
        "must issue a starttls",
    ];
    if reply.code == 530 {
        return true;
    }
    if !matches!(phase, Phase::Mail | Phase::Rcpt) {
        return false;
    }
    let text = reply.text().to_ascii_lowercase();
    TEXTS.iter().any(|t| text.contains(t))
}

/// What to do about a refusal [`wants_authentication`] recognises.
const AUTH_FIX: &str = "the relay wants this client authenticated: give the route a relay \
     with username and password_file (or a sasl_passwd entry for its host and port), \
     and check it with `postrelay check-config`; the mail waits until then";

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Dns(s) => write!(f, "cannot resolve the relay: {s}"),
            Reason::Connect(s) => write!(f, "cannot connect: {s}"),
            Reason::Tls(s) => write!(f, "TLS: {s}"),
            Reason::Auth(s) => write!(f, "authentication: {s}"),
            Reason::Reply { phase, reply } if wants_authentication(*phase, reply) => {
                write!(f, "relay answered {phase} with {reply}; {AUTH_FIX}")
            }
            Reason::Reply { phase, reply } => write!(f, "relay answered {phase} with {reply}"),
            Reason::Timeout { phase, after } => write!(
                f,
                "timed out after {} waiting for {}",
                seconds(*after),
                phase.awaited()
            ),
            Reason::Protocol(s) => write!(f, "protocol error: {s}"),
            Reason::Local(s) => write!(f, "{s}"),
            Reason::Unsendable { detail, .. } => write!(f, "{detail}"),
            Reason::Policy { status, text } => {
                write!(f, "refused by the transport map: {status} {text}")
            }
            Reason::Expired { last: Some(l) } => {
                write!(f, "message expired in the queue; last problem: {l}")
            }
            Reason::Expired { last: None } => write!(f, "message expired in the queue"),
            Reason::Unavailable(s) | Reason::UnknownUser(s) | Reason::MailboxFull(s) => {
                write!(f, "{s}")
            }
            Reason::Quota {
                relay,
                limit,
                until,
            } => write!(
                f,
                "relay \"{relay}\" has reached its sending limit ({limit}); waits until {}",
                crate::maillog::utc(*until)
            ),
            Reason::Throttled {
                relay,
                phase,
                reply,
                until,
            } => write!(
                f,
                "relay answered {phase} with {reply}: the provider's sending limit; relay \"{relay}\" cools down until {}",
                crate::maillog::utc(*until)
            ),
        }
    }
}

/// A duration as people say it: "10 s", "1.5 s", "2 min".
fn seconds(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 120_000 && ms.is_multiple_of(60_000) {
        format!("{} min", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The result of one attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the next hop; the reply to the final dot.
    Delivered(Reply),
    /// Not delivered; try again later.
    Deferred(Reason),
    /// Not delivered, and never will be: bounce.
    Failed(Reason),
}

impl Outcome {
    /// Classifies a reason as deferred or failed.
    pub fn from_reason(reason: Reason) -> Outcome {
        if reason.is_permanent() {
            Outcome::Failed(reason)
        } else {
            Outcome::Deferred(reason)
        }
    }
}

#[cfg(test)]
mod tests;
