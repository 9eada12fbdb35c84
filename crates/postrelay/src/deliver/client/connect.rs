//! From nothing to a greeted connection: TCP connect, the TLS mode, and the
//! 220 greeting.
//!
//! Detection of the mode works on evidence, never on a TLS failure alone
//! (a failed certificate check must never turn into plaintext):
//! - in plaintext, the relay sends TLS record bytes instead of a greeting,
//!   or (explicit `starttls`, and `auto` once it knows the mode) sends
//!   nothing within the greeting timeout and then answers a TLS ClientHello
//!   with a TLS record: it is an implicit-TLS port; in `auto` before the
//!   mode is known, no greeting within min(greeting, 5 s) is enough to try
//!   implicit TLS;
//! - in implicit TLS, the handshake fails and the relay's first bytes are
//!   an SMTP reply line (`220 …`): it is a plaintext (STARTTLS) port.
//!
//! Explicit modes turn evidence into a hint ([`Reason::Local`], deferred);
//! `auto` reconnects in the other mode (at most twice) and remembers what
//! worked in the target's [`super::ModeMemory`]. A remembered mode that
//! then fails after the TCP connection but before a greeting (the relay
//! closed, the handshake broke, nothing came) is forgotten, so the next
//! attempt probes both modes again instead of repeating a wrong guess
//! until a restart.
//!
//! Not for: EHLO and anything after it (see `session`).

use std::time::Duration;

use postrelay_smtp::Reply;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::Wire;
use super::{Detected, Security, Target, TlsMode};
use crate::deliver::outcome::{Phase, Reason};
use crate::net::stream::{self, HandshakeError, Stream};
use crate::net::tls;

/// Longest wait for a greeting in `auto` before trying implicit TLS.
const AUTO_PROBE: Duration = Duration::from_secs(5);

/// Where the connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Implicit,
}

impl Mode {
    fn other(self) -> Mode {
        match self {
            Mode::Plain => Mode::Implicit,
            Mode::Implicit => Mode::Plain,
        }
    }
}

/// How an attempt in one mode ended, when it did not reach a greeting.
enum Attempt {
    /// The port expects TLS from the first byte; the text says why we
    /// think so ("sent no SMTP greeting within 30 s").
    LooksImplicit(String),
    /// The port speaks plaintext; its first line.
    LooksPlaintext(String),
    /// Any other failure: final.
    Failed(Reason),
}

/// Connects, settles the TLS mode and reads the 2xx greeting into `wire`.
/// Returns whether TLS has been up since the first byte (implicit TLS).
pub(super) async fn establish(target: &Target, wire: &mut Wire) -> Result<bool, Reason> {
    let auto = target.tls == TlsMode::Auto;
    let (mut mode, known) = match target.tls {
        TlsMode::Implicit => (Mode::Implicit, true),
        TlsMode::StartTls => (Mode::Plain, true),
        TlsMode::Auto => match target.mode_memory.get() {
            Some(Detected::Implicit) => (Mode::Implicit, true),
            Some(Detected::StartTls) => (Mode::Plain, true),
            None if target.port == 465 => (Mode::Implicit, false),
            None => (Mode::Plain, false),
        },
    };
    let remembered = auto && known;
    // Only the first attempt of an undecided `auto` uses the short window.
    let mut quick_probe = auto && !known;
    for switches in 0..=2 {
        let result = match mode {
            Mode::Plain => plain(target, wire, quick_probe).await,
            Mode::Implicit => implicit(target, wire).await,
        };
        let evidence = match result {
            Ok(()) => {
                if auto {
                    target.mode_memory.set(match mode {
                        Mode::Implicit => Detected::Implicit,
                        Mode::Plain => Detected::StartTls,
                    });
                }
                return Ok(mode == Mode::Implicit);
            }
            Err(Attempt::Failed(reason)) => {
                if remembered && doubts_the_mode(&reason) {
                    target.mode_memory.clear();
                    wire.tr.note(&format!(
                        "tls = auto: {reason} with the remembered mode; \
                         the next attempt probes both modes again"
                    ));
                }
                return Err(reason);
            }
            Err(evidence) => evidence,
        };
        wire.abandon();
        if !auto {
            return Err(hint(target, evidence));
        }
        let why = match &evidence {
            Attempt::LooksImplicit(why) => format!("port {} {why}", target.port),
            Attempt::LooksPlaintext(line) => {
                format!("port {} answered in plaintext ({line:?})", target.port)
            }
            Attempt::Failed(_) => String::new(),
        };
        if switches == 2 {
            return Err(Reason::Protocol(format!(
                "cannot tell whether port {} speaks implicit TLS or plaintext SMTP: {why}",
                target.port
            )));
        }
        mode = mode.other();
        quick_probe = false;
        let next = match mode {
            Mode::Implicit => "implicit TLS",
            Mode::Plain => "plaintext (STARTTLS)",
        };
        wire.tr
            .note(&format!("{why}; tls = auto: reconnecting with {next}"));
    }
    unreachable!("the loop returns on its last round")
}

/// Whether a failure with a remembered mode casts doubt on that mode: it
/// came after the TCP connection and before any SMTP greeting. A refused
/// or timed-out connection says nothing about the mode, and a greeting
/// (even a refusal) proves it right.
fn doubts_the_mode(reason: &Reason) -> bool {
    match reason {
        Reason::Connect(_) | Reason::Dns(_) => false,
        Reason::Timeout { phase, .. } => *phase != Phase::Connect,
        Reason::Reply { phase, .. } => *phase != Phase::Greeting,
        _ => true,
    }
}

/// The hint for an explicit mode that does not match the port.
fn hint(target: &Target, evidence: Attempt) -> Reason {
    let port = target.port;
    match evidence {
        Attempt::LooksImplicit(why) => Reason::Local(format!(
            "port {port} {why}; it looks like an implicit-TLS (wrapper mode) port: \
             set tls = \"implicit\" (or \"auto\")"
        )),
        Attempt::LooksPlaintext(line) => Reason::Local(format!(
            "port {port} answered in plaintext ({line:?}); it speaks STARTTLS: \
             set tls = \"starttls\" (or \"auto\")"
        )),
        Attempt::Failed(reason) => reason,
    }
}

async fn tcp(target: &Target, wire: &mut Wire) -> Result<TcpStream, Attempt> {
    let timeout = target.timeouts.connect;
    match stream::connect(&target.addrs, timeout).await {
        Ok(tcp) => {
            if let Ok(peer) = tcp.peer_addr() {
                wire.tr.note(&format!("connected to {peer}"));
            }
            Ok(tcp)
        }
        // One address that timed out: say so plainly. Several: list each
        // address with what happened to it.
        Err(e) if e.all_timed_out && e.attempts.len() == 1 => {
            Err(Attempt::Failed(Reason::Timeout {
                phase: Phase::Connect,
                after: timeout,
            }))
        }
        Err(e) => Err(Attempt::Failed(Reason::Connect(e.to_string()))),
    }
}

/// Plaintext first: connect and wait for the greeting.
async fn plain(target: &Target, wire: &mut Wire, quick_probe: bool) -> Result<(), Attempt> {
    let tcp = tcp(target, wire).await?;
    wire.attach(Stream::Plain(tcp));
    let full = target.timeouts.greeting;
    let window = if quick_probe {
        full.min(AUTO_PROBE)
    } else {
        full
    };
    match wire.reply(Phase::Greeting, window).await {
        Ok(reply) => greeting(reply),
        Err(_) if tls::looks_like_tls_record(wire.buffered()) => Err(Attempt::LooksImplicit(
            "sent TLS data instead of an SMTP greeting".into(),
        )),
        Err(Reason::Timeout { .. }) if wire.buffered().is_empty() => {
            let why = format!("sent no SMTP greeting within {} s", window.as_secs());
            if quick_probe {
                return Err(Attempt::LooksImplicit(why));
            }
            // Nothing came at all: is the relay waiting for a ClientHello?
            let Some(Some(Stream::Plain(tcp))) = wire.detach().map(|c| c.into_stream().ok()) else {
                return Err(Attempt::Failed(Reason::Timeout {
                    phase: Phase::Greeting,
                    after: window,
                }));
            };
            if answers_client_hello(tcp, target).await {
                Err(Attempt::LooksImplicit(why))
            } else {
                Err(Attempt::Failed(Reason::Timeout {
                    phase: Phase::Greeting,
                    after: window,
                }))
            }
        }
        Err(reason) => Err(Attempt::Failed(reason)),
    }
}

/// A greeting must be 2xx (220); anything else refuses the session.
fn greeting(reply: Reply) -> Result<(), Attempt> {
    if reply.is_positive_completion() {
        Ok(())
    } else {
        Err(Attempt::Failed(Reason::Reply {
            phase: Phase::Greeting,
            reply,
        }))
    }
}

/// Sends a ClientHello on a silent connection and says whether the relay
/// answers with a TLS record, within `timeouts.tls` (at most 5 s: the
/// relay already kept us waiting for a whole greeting timeout).
async fn answers_client_hello(mut tcp: TcpStream, target: &Target) -> bool {
    let Ok(name) = tls::server_name(target.cert_name()) else {
        return false;
    };
    let Ok(hello) = tls::client_hello(name) else {
        return false;
    };
    let probe = async {
        tcp.write_all(&hello).await?;
        let mut first = [0u8; 2];
        tcp.read_exact(&mut first).await?;
        Ok::<_, std::io::Error>(first)
    };
    // Cancel safety: the probe owns the socket, which is dropped after the
    // answer or the timeout either way.
    match tokio::time::timeout(target.timeouts.tls.min(AUTO_PROBE), probe).await {
        Ok(Ok(first)) => tls::looks_like_tls_record(&first),
        _ => false,
    }
}

/// Implicit TLS: connect, handshake, then the greeting inside TLS.
async fn implicit(target: &Target, wire: &mut Wire) -> Result<(), Attempt> {
    let name =
        tls::server_name(target.cert_name()).map_err(|e| Attempt::Failed(Reason::Local(e)))?;
    let tcp = tcp(target, wire).await?;
    let config = match target.security {
        Security::Verify => target.tls_config_verify.clone(),
        Security::Encrypt | Security::May | Security::None => tls::client_config_no_verify(),
    };
    let timeout = target.timeouts.tls;
    let stream = stream::handshake(tcp, config, name, timeout)
        .await
        .map_err(|e| match e {
            HandshakeError::Plaintext(first) if looks_like_reply(&first) => {
                Attempt::LooksPlaintext(first_line(&first))
            }
            other => Attempt::Failed(handshake_reason(other, target, timeout)),
        })?;
    if let Some(desc) = stream.tls_description() {
        wire.tr.note(&format!("implicit TLS established: {desc}"));
    }
    wire.attach(stream);
    match wire.reply(Phase::Greeting, target.timeouts.greeting).await {
        Ok(reply) => greeting(reply),
        Err(reason) => Err(Attempt::Failed(reason)),
    }
}

/// The reason for a failed handshake (implicit TLS or after STARTTLS).
pub(super) fn handshake_reason(e: HandshakeError, target: &Target, timeout: Duration) -> Reason {
    let host = &target.host;
    match e {
        HandshakeError::Timeout(_) => Reason::Timeout {
            phase: Phase::Tls,
            after: timeout,
        },
        HandshakeError::Plaintext(first) => Reason::Tls(format!(
            "{host} answered the TLS handshake in plaintext ({:?})",
            first_line(&first)
        )),
        HandshakeError::Tls(e) => Reason::Tls(tls::describe_error(
            &e,
            &tls::Peer {
                host,
                cert_name: target.cert_name(),
                relay: &target.name,
            },
        )),
        HandshakeError::Io(e) => Reason::Tls(format!("TLS handshake with {host} failed: {e}")),
    }
}

/// Whether `bytes` start like an SMTP reply line (`220 `, `554-`).
fn looks_like_reply(bytes: &[u8]) -> bool {
    matches!(bytes, [a, b, c, b' ' | b'-' | b'\r', ..]
        if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit())
}

/// The first line of what a server sent, printable and short.
fn first_line(bytes: &[u8]) -> String {
    let line = bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let text: String = String::from_utf8_lossy(line)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(60).collect();
        format!("{cut}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use tokio::net::TcpListener;

    use crate::deliver::client::tests::target;
    use crate::deliver::client::{ModeMemory, transcript::Transcript};

    /// A relay remembered as STARTTLS whose one connection does `serve`;
    /// returns what the memory holds after the failed attempt.
    async fn remembered_after(serve: Option<&'static [u8]>) -> Option<Detected> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        match serve {
            Some(bytes) => {
                tokio::spawn(async move {
                    let (mut s, _) = listener.accept().await.unwrap();
                    s.write_all(bytes).await.unwrap();
                    // Closes when dropped.
                });
            }
            None => drop(listener), // refused
        }
        let memory = Arc::new(ModeMemory::new());
        memory.set(Detected::StartTls);
        let t = target(port, memory.clone());
        let mut wire = Wire::new(Transcript::new("test", false));
        assert!(establish(&t, &mut wire).await.is_err());
        memory.get()
    }

    #[tokio::test]
    async fn a_remembered_mode_that_fails_before_a_greeting_is_forgotten() {
        assert_eq!(remembered_after(Some(b"")).await, None, "closed at once");
    }

    #[tokio::test]
    async fn a_refused_connection_or_a_refusing_greeting_keeps_the_mode() {
        assert_eq!(remembered_after(None).await, Some(Detected::StartTls));
        assert_eq!(
            remembered_after(Some(b"554 5.3.2 go away\r\n")).await,
            Some(Detected::StartTls),
            "a greeting, even a refusal, proves the mode"
        );
    }

    #[test]
    fn first_line_is_short_and_printable() {
        assert_eq!(first_line(b"220 mx ESMTP\r\n250 more"), "220 mx ESMTP");
        assert_eq!(first_line(b"220 \x1b[2J"), "220 ?[2J");
        let long = format!("220 {}", "x".repeat(100));
        assert_eq!(first_line(long.as_bytes()).chars().count(), 61);
    }

    #[test]
    fn reply_lines_are_recognised() {
        assert!(looks_like_reply(b"220 mx ESMTP\r\n"));
        assert!(looks_like_reply(b"554-no\r\n"));
        assert!(!looks_like_reply(b"HTTP/1.1 400 Bad Request"));
        assert!(!looks_like_reply(b"22"));
    }
}
