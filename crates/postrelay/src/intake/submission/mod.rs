//! The submission listeners of `[intake.submission]`: other hosts relay
//! through postrelay after authenticating, over TLS only.
//!
//! - a STARTTLS listener (587-style): the session starts in clear text,
//!   offers STARTTLS, and offers AUTH only once TLS is on;
//! - an implicit-TLS listener (465-style): the TLS handshake comes first
//!   (bounded by the command timeout), then the same session.
//!
//! Either way MAIL needs a successful AUTH, and an authenticated client may
//! relay to any domain. The SMTP dialog itself is [`super::session`]; this
//! module accepts connections, runs the implicit handshake, turns away
//! addresses locked out by the brute-force limiter ([`super::auth`]), and
//! drives the session with STARTTLS and AUTH added (`dialog`).
//!
//! Not for: the loopback listener, whose behaviour is unchanged by all of
//! this ([`super::serve`]).

use std::net::SocketAddr;
use std::sync::Arc;

use postrelay_smtp::reply::Reply;
use postrelay_smtp::sasl::SaslError;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

mod dialog;

use super::Shared;
use super::auth::{Limiter, Verifier};
use super::limits::Pool;
use super::session::Session;
use crate::net::tls_server::{self, ServerStream};

/// How a submission listener starts TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Clear text first; the client must send STARTTLS (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// What all submission sessions share: the brute-force limiter (its state
/// outlives configuration reloads) and the verification slots.
#[derive(Debug, Default)]
pub struct Service {
    /// Failed AUTH attempts per client address.
    pub limiter: Arc<Limiter>,
    /// argon2 verification on the blocking pool.
    pub verifier: Verifier,
}

impl Service {
    /// A service with an empty limiter.
    pub fn new() -> Arc<Service> {
        Arc::new(Service::default())
    }
}

/// The reply to a client whose address is locked out.
pub fn locked_out_reply() -> Reply {
    Reply::new(
        421,
        "4.7.0",
        "Too many authentication failures; try again later",
    )
}

/// Binds the listeners of `[intake.submission]` (none when it is absent).
/// A failure names the address and, for a privileged port, the reason.
pub async fn bind(config: &crate::config::Config) -> anyhow::Result<Vec<(TcpListener, Mode)>> {
    use anyhow::Context as _;
    let Some(s) = config.intake.submission.as_ref() else {
        return Ok(Vec::new());
    };
    let addrs = s
        .listen
        .iter()
        .map(|a| (*a, Mode::StartTls))
        .chain(s.implicit.iter().map(|a| (*a, Mode::Implicit)));
    let mut out = Vec::new();
    for (addr, mode) in addrs {
        let l = TcpListener::bind(addr).await.with_context(|| {
            let hint = if addr.port() < 1024 && !nix::unistd::geteuid().is_root() {
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            } else {
                ""
            };
            format!("cannot listen for submission on {addr}{hint}")
        })?;
        tracing::info!(%addr, ?mode, users = s.users.len(), "submission listener");
        out.push((l, mode));
    }
    Ok(out)
}

/// Accepts connections on one submission listener until shutdown. Sessions
/// take slots in `pool`, the submission listeners' own (so that they never
/// take the loopback intake's), within `max_connections_per_client`, and
/// run under `tracker` so that the daemon waits for them.
pub async fn serve(
    listener: TcpListener,
    mode: Mode,
    shared: Arc<Shared>,
    service: Arc<Service>,
    pool: Arc<Pool>,
    tracker: TaskTracker,
) {
    super::accept_loop(
        listener,
        super::Listener {
            shared,
            pool,
            tracker,
            busy_reply: mode == Mode::StartTls,
            per_client: submission_cap,
        },
        move |stream, peer, shared| connection(stream, peer, mode, shared, service.clone()),
    )
    .await
}

/// The per-client cap on submission: nobody is exempt, as nobody is
/// trusted before AUTH. (No submission configured: the listener serves no
/// one anyway, see [`connection`].)
fn submission_cap(config: &crate::config::Config, _ip: std::net::IpAddr) -> Option<usize> {
    let s = config.intake.submission.as_ref()?;
    Some(s.max_connections_per_client)
}

/// One accepted connection: the implicit handshake if any, the lockout
/// check, then the session.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    mode: Mode,
    shared: Arc<Shared>,
    service: Arc<Service>,
) {
    let config = shared.config();
    let Some(submission) = config.intake.submission.as_ref() else {
        // Removed by a reload: the listener stays bound until a restart,
        // but serves no one.
        tracing::info!(%peer, "submission is no longer configured; closing");
        if mode == Mode::StartTls {
            let reply = format!("421 4.3.2 {} Service not available\r\n", config.hostname);
            super::say_and_close(tcp, reply).await;
        }
        return;
    };
    let stream = match mode {
        Mode::StartTls => ServerStream::Plain(tcp),
        Mode::Implicit => {
            let timeout = config.intake.command_timeout;
            match tls_server::accept(tcp, submission.tls.config(), timeout).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::info!(%peer, error = %e, "implicit TLS handshake failed");
                    let metrics = shared.maillog.metrics();
                    metrics.tls_failure("submission", "implicit_handshake");
                    return;
                }
            }
        }
    };
    let metrics = shared.maillog.metrics().clone();
    let session = Session::for_submission(stream, peer, shared);
    if service.limiter.is_locked(peer.ip()) {
        tracing::warn!(%peer, "connection from an address locked out after authentication failures");
        metrics.refused("auth_lockout");
        session.refuse(&locked_out_reply()).await;
        return;
    }
    dialog::run(session, service).await;
}

/// Longest user name or password accepted in AUTH LOGIN (as PLAIN).
const MAX_LOGIN_FIELD: usize = 255;

/// Decodes one base64 response of AUTH LOGIN (user name or password).
pub fn decode_login(line: &str) -> Result<String, SaslError> {
    let s = line.trim();
    if s == "*" {
        return Err(SaslError::Cancelled);
    }
    if s.is_empty() || s == "=" {
        return Err(SaslError::Malformed("empty response"));
    }
    let bytes = postrelay_smtp::sasl::decode_challenge(s)?;
    if bytes.is_empty() || bytes.len() > MAX_LOGIN_FIELD || bytes.contains(&0) {
        return Err(SaslError::Malformed("empty, too long, or contains NUL"));
    }
    String::from_utf8(bytes).map_err(|_| SaslError::Utf8)
}

/// The reply to a SASL response that cannot be used.
pub fn sasl_error_reply(e: &SaslError) -> Reply {
    match e {
        SaslError::Cancelled => Reply::new(501, "5.7.0", "Authentication cancelled"),
        _ => Reply::new(501, "5.5.2", "Cannot decode response"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_responses() {
        assert_eq!(decode_login("dXNlcg=="), Ok("user".to_owned()));
        assert_eq!(decode_login(" dXNlcg "), Ok("user".to_owned()));
        assert_eq!(decode_login("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_login("%%"), Err(SaslError::Base64));
        assert!(decode_login("=").is_err());
        assert!(decode_login("AA==").is_err(), "NUL");
        assert_eq!(decode_login("/w=="), Err(SaslError::Utf8));
        let long = postrelay_smtp::sasl::login_user(&"x".repeat(256));
        assert!(decode_login(&long).is_err());
    }
}
