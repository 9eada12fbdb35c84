//! One session with a relay: opening it (connect, greeting, EHLO, STARTTLS,
//! EHLO again, AUTH), resetting it between messages, and closing it.
//!
//! Security rules enforced here:
//! - with `security = "verify"` or `"encrypt"`, nothing but QUIT is sent in
//!   plaintext: no AUTH, no MAIL, when STARTTLS is missing or refused;
//! - bytes the relay sent after its STARTTLS reply and before the handshake
//!   (response injection) end the session;
//! - everything learned before TLS (the EHLO capabilities) is forgotten
//!   after it: EHLO is sent again.
//!
//! Not for: the mail transaction (`transaction`) or AUTH details (`auth`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use postrelay_smtp::{Capabilities, Command};

use super::connect::{self, handshake_reason};
use super::transcript::Transcript;
use super::wire::Wire;
use super::{Failure, Security, Target, Timeouts, auth};
use crate::deliver::outcome::{Phase, Reason};
use crate::net::stream::{self, Stream};
use crate::net::tls;

/// Where the session stands between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Ready for MAIL.
    Ready,
    /// A transaction may be open: RSET before the next MAIL.
    NeedsReset,
    /// The connection is gone or unusable.
    Dead,
}

/// An open, greeted, (TLS-protected,) authenticated session with a relay.
pub struct Session {
    pub(super) wire: Wire,
    pub(super) caps: Capabilities,
    pub(super) name: String,
    pub(super) timeouts: Timeouts,
    pub(super) state: State,
    pub(super) messages_sent: u32,
    peer: SocketAddr,
    tls: Option<String>,
    /// How the session logged in (`PLAIN as user U`), if it did.
    auth: Option<String>,
    /// The names the relay's certificate is for, read once at the
    /// handshake (not per message); empty without TLS.
    cert_names: Vec<String>,
    opened_at: Instant,
    /// Where the body is read from the spool file, kept for the
    /// session's next message (allocated at the first one).
    pub(super) body_chunk: Vec<u8>,
}

impl Session {
    /// Connect → greeting → EHLO → STARTTLS → EHLO → AUTH. Every failure
    /// here refuses the session (`session_refused`): the caller may fail
    /// over to the next relay.
    pub async fn open(target: &Target) -> Result<Session, Failure> {
        let mut wire = Wire::new(Transcript::new(&target.name, target.verbose));
        match open_on(target, &mut wire).await {
            Ok((caps, tls, auth)) => {
                let peer = wire
                    .stream()
                    .and_then(|s| s.peer_addr().ok())
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], target.port)));
                let cert_names = leaf_names(&wire);
                Ok(Session {
                    wire,
                    cert_names,
                    caps,
                    name: target.name.clone(),
                    timeouts: target.timeouts,
                    state: State::Ready,
                    messages_sent: 0,
                    peer,
                    tls,
                    auth,
                    opened_at: Instant::now(),
                    body_chunk: Vec::new(),
                })
            }
            Err(reason) => {
                // A relay that answered sanely gets a QUIT; otherwise (and
                // always after an injection) the socket is just closed.
                if !matches!(
                    reason,
                    Reason::Timeout { .. } | Reason::Protocol(_) | Reason::Connect(_)
                ) {
                    say_goodbye(&mut wire, target.timeouts.quit).await;
                }
                wire.abandon();
                Err(Failure {
                    reason,
                    transcript: wire.tr.take(),
                    session_refused: true,
                    stale: false,
                })
            }
        }
    }

    /// RSET before reusing the session for the next message (expects 250).
    pub async fn reset(&mut self) -> Result<(), Failure> {
        if self.state == State::Dead || !self.wire.is_open() {
            self.state = State::Dead;
            return Err(self.failure(Reason::Protocol(
                "the session was closed; it cannot be reused".into(),
            )));
        }
        self.wire.command(&Command::Rset);
        match self.wire.reply(Phase::Rset, self.timeouts.rset).await {
            Ok(reply) if reply.is_positive_completion() => {
                self.state = State::Ready;
                Ok(())
            }
            Ok(reply) => {
                self.state = State::Dead;
                Err(self.failure(Reason::Reply {
                    phase: Phase::Rset,
                    reply,
                }))
            }
            Err(reason) => {
                self.state = State::Dead;
                Err(self.failure(reason))
            }
        }
    }

    /// QUIT, then TLS close_notify, all within `timeouts.quit`; errors are
    /// ignored (a relay closing without close_notify after 221 is normal).
    pub async fn quit(mut self) {
        if self.state != State::Dead {
            say_goodbye(&mut self.wire, self.timeouts.quit).await;
        }
        self.wire.abandon();
    }

    /// The relay's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The TLS version and cipher suite, when TLS is up.
    pub fn tls(&self) -> Option<&str> {
        self.tls.as_deref()
    }

    /// How the session logged in (`PLAIN as user U`; never the
    /// password), or `None` when it did not (no credentials, no AUTH).
    pub fn auth(&self) -> Option<&str> {
        self.auth.as_deref()
    }

    /// The relay's EHLO capabilities (after TLS, when TLS is up).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The names the relay's certificate is for (subjectAltName, else the
    /// subject's common name); empty without TLS.
    pub fn cert_names(&self) -> &[String] {
        &self.cert_names
    }

    /// The certificate chain the relay presented (leaf first), when TLS is
    /// up; for `postrelay doctor`'s expiry and name report.
    pub fn peer_certificates(&self) -> Vec<Vec<u8>> {
        match self.wire.stream() {
            Some(Stream::Tls(s)) => s
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|d| d.to_vec()).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Transactions that reached the end of data on this session.
    pub fn messages_sent(&self) -> u32 {
        self.messages_sent
    }

    /// When the session was opened.
    pub fn opened_at(&self) -> Instant {
        self.opened_at
    }

    /// The conversation since the last call (redacted, bounded).
    pub fn take_transcript(&mut self) -> Vec<String> {
        self.wire.tr.take()
    }

    /// Forgets the conversation so far (nobody needs it: the transaction
    /// went well), keeping the line buffers for the next one.
    pub fn clear_transcript(&mut self) {
        self.wire.tr.clear()
    }

    /// A failure of this (established) session, with its transcript.
    pub(super) fn failure(&mut self, reason: Reason) -> Failure {
        Failure {
            reason,
            transcript: self.wire.tr.take(),
            session_refused: false,
            stale: false,
        }
    }

    /// A reused session that failed its RSET: dead, and [`Failure::stale`].
    pub(super) fn stale(&mut self, reason: Reason) -> Failure {
        self.state = State::Dead;
        self.wire.abandon();
        Failure {
            stale: true,
            ..self.failure(reason)
        }
    }

    /// Whether the pool may lend this session for another message.
    pub fn is_reusable(&self) -> bool {
        self.state != State::Dead && self.wire.is_open()
    }
}

/// QUIT, its reply, and a clean close, bounded by `timeout` altogether.
async fn say_goodbye(wire: &mut Wire, timeout: Duration) {
    if !wire.is_open() {
        return;
    }
    let bye = async {
        wire.command(&Command::Quit);
        let _ = wire.reply(Phase::Quit, timeout).await;
        wire.close(timeout).await;
    };
    // Cancel safety: dropping `bye` drops nothing the caller still needs;
    // the connection is abandoned right after.
    let _ = tokio::time::timeout(timeout, bye).await;
}

/// Everything up to an authenticated session; returns the capabilities
/// (as announced after TLS), the TLS description and how it logged in.
async fn open_on(
    target: &Target,
    wire: &mut Wire,
) -> Result<(Capabilities, Option<String>, Option<String>), Reason> {
    let implicit = connect::establish(target, wire).await?;
    let mut caps = ehlo(target, wire).await?;
    let mut tls_up = implicit;
    if !tls_up && target.security != Security::None {
        if caps.starttls {
            if starttls(target, wire).await? {
                tls_up = true;
                // RFC 3207 §4.2: forget what was learned before TLS.
                caps = ehlo(target, wire).await?;
            }
        } else if target.security.requires_tls() {
            return Err(Reason::Tls(format!(
                "relay {} does not offer STARTTLS and TLS is required (security = \"{}\")",
                target.name,
                target.security.as_str()
            )));
        } else {
            wire.tr.note(
                "the relay does not offer STARTTLS; continuing without TLS (security = \"may\")",
            );
        }
    }
    let auth = auth::authenticate(target, wire, &caps, tls_up).await?;
    let desc = if tls_up {
        wire.stream().and_then(Stream::tls_description)
    } else {
        None
    };
    Ok((caps, desc, auth))
}

/// EHLO, or HELO when the relay refuses EHLO permanently (no extensions).
async fn ehlo(target: &Target, wire: &mut Wire) -> Result<Capabilities, Reason> {
    let timeout = target.timeouts.ehlo;
    wire.command(&Command::Ehlo(target.helo_name.clone()));
    let reply = wire.reply(Phase::Ehlo, timeout).await?;
    if reply.is_positive_completion() {
        return Ok(Capabilities::from_ehlo_reply(&reply));
    }
    if !reply.is_permanent() {
        return Err(Reason::Reply {
            phase: Phase::Ehlo,
            reply,
        });
    }
    wire.command(&Command::Helo(target.helo_name.clone()));
    let reply = wire.reply(Phase::Ehlo, timeout).await?;
    if reply.is_positive_completion() {
        Ok(Capabilities::default())
    } else {
        Err(Reason::Reply {
            phase: Phase::Ehlo,
            reply,
        })
    }
}

/// STARTTLS and the handshake. `Ok(false)`: the relay refused STARTTLS and
/// TLS is optional (`may`), the session goes on in plaintext.
async fn starttls(target: &Target, wire: &mut Wire) -> Result<bool, Reason> {
    let timeout = target.timeouts.tls;
    wire.command(&Command::StartTls);
    let reply = wire.reply(Phase::Tls, timeout).await?;
    if reply.code != 220 {
        if target.security.requires_tls() {
            return Err(Reason::Tls(format!(
                "relay {} refused STARTTLS ({reply}) and TLS is required (security = \"{}\")",
                target.name,
                target.security.as_str()
            )));
        }
        wire.tr
            .note("the relay refused STARTTLS; continuing without TLS (security = \"may\")");
        return Ok(false);
    }
    let name = tls::server_name(target.cert_name()).map_err(Reason::Local)?;
    let Some(conn) = wire.detach() else {
        return Err(Reason::Protocol(
            "the connection to the relay is closed".into(),
        ));
    };
    let tcp = match conn.into_stream() {
        Ok(Stream::Plain(tcp)) => tcp,
        Ok(Stream::Tls(_)) => {
            return Err(Reason::Protocol("STARTTLS inside TLS".into()));
        }
        Err((_conn, n)) => {
            // `_conn` is dropped here: the socket closes without another
            // byte from us.
            wire.tr.note(&format!(
                "{n} bytes arrived after the STARTTLS reply, before the TLS handshake"
            ));
            return Err(Reason::Tls(
                "the relay sent data after its STARTTLS reply (response injection); \
                 refusing to continue"
                    .into(),
            ));
        }
    };
    let config = match target.security {
        Security::Verify => target.tls_config_verify.clone(),
        Security::Encrypt | Security::May | Security::None => tls::client_config_no_verify(),
    };
    let stream = stream::handshake(tcp, config, name, timeout)
        .await
        .map_err(|e| handshake_reason(e, target, timeout))?;
    if let Some(desc) = stream.tls_description() {
        wire.tr.note(&format!("STARTTLS: {desc}"));
    }
    wire.attach(stream);
    Ok(true)
}

/// The names of the leaf certificate the relay presented on `wire`.
fn leaf_names(wire: &Wire) -> Vec<String> {
    let Some(Stream::Tls(s)) = wire.stream() else {
        return Vec::new();
    };
    s.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| crate::net::cert::parse(leaf).ok())
        .map(|c| c.names)
        .unwrap_or_default()
}
