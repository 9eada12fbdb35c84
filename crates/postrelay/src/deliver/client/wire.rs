//! Commands out, replies in: the client's use of the buffered connection,
//! with a deadline on every wait and every line recorded in the transcript.
//! I/O problems become [`Reason`]s here, once, for the whole client.
//!
//! Not for: deciding what a reply means for the session or a recipient
//! (`session`, `auth`, `transaction` do that).

use std::time::Duration;

use postrelay_smtp::{Command, DotStuffer, Reply, parse_reply};
use tokio::time::Instant;

use super::transcript::Transcript;
use crate::deliver::outcome::{Phase, Reason};
use crate::net::stream::Stream;
use crate::net::{Conn, ConnError};

/// Longest reply line accepted (RFC 5321 allows 512; real servers are
/// sometimes chattier, hostile ones are cut off here).
const MAX_REPLY_LINE: usize = 4096;

/// The connection (absent before connecting, during a TLS upgrade, and
/// after it was abandoned) and the transcript.
pub(super) struct Wire {
    conn: Option<Conn<Stream>>,
    pub(super) tr: Transcript,
}

impl Wire {
    pub(super) fn new(tr: Transcript) -> Wire {
        Wire { conn: None, tr }
    }

    /// Installs a (new) stream with empty buffers.
    pub(super) fn attach(&mut self, stream: Stream) {
        self.conn = Some(Conn::new(stream));
    }

    /// Takes the connection out (for STARTTLS), leaving none.
    pub(super) fn detach(&mut self) -> Option<Conn<Stream>> {
        self.conn.take()
    }

    /// Drops the connection without a word (the socket closes). Used when
    /// anything more we sent could be misread (mid-DATA, after injection).
    pub(super) fn abandon(&mut self) {
        self.conn = None;
    }

    /// Whether a connection is attached.
    pub(super) fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    /// The attached stream.
    pub(super) fn stream(&self) -> Option<&Stream> {
        self.conn.as_ref().map(Conn::stream)
    }

    /// Unconsumed input (what the relay sent beyond the replies read).
    pub(super) fn buffered(&self) -> &[u8] {
        self.conn.as_ref().map(Conn::buffered).unwrap_or_default()
    }

    fn conn(&mut self) -> Result<&mut Conn<Stream>, Reason> {
        self.conn.as_mut().ok_or_else(no_connection)
    }

    /// Queues a command (encoded straight into the send buffer) and
    /// records it.
    pub(super) fn command(&mut self, cmd: &Command) {
        let mut unsent = Vec::new();
        let buf = match self.conn.as_mut() {
            Some(c) => c.send_buffer(),
            None => &mut unsent,
        };
        let start = buf.len();
        cmd.encode_into(buf);
        let line = buf.get(start..buf.len() - 2).unwrap_or_default();
        self.tr.client(&String::from_utf8_lossy(line));
    }

    /// Queues a line that carries a credential; the transcript gets `shown`.
    pub(super) fn secret_line(&mut self, bytes: &[u8], shown: &str) {
        self.tr.client(shown);
        if let Some(c) = self.conn.as_mut() {
            c.queue(bytes);
        }
    }

    /// Queues bytes of the message body, dot-stuffed by `stuffer` straight
    /// into the send buffer (not recorded line by line).
    pub(super) fn body(&mut self, stuffer: &mut DotStuffer, bytes: &[u8]) {
        if let Some(c) = self.conn.as_mut() {
            stuffer.stuff(bytes, c.send_buffer());
        }
    }

    /// Queues bytes of a message body that are already in their SMTP
    /// form (no line starts with a dot, CRLF line ends only).
    pub(super) fn body_as_is(&mut self, bytes: &[u8]) {
        if let Some(c) = self.conn.as_mut() {
            c.queue(bytes);
        }
    }

    /// Queues the end of the body: the last line ended, then `.CRLF`.
    pub(super) fn end_body(&mut self, stuffer: &mut DotStuffer) {
        if let Some(c) = self.conn.as_mut() {
            stuffer.finish(c.send_buffer());
        }
    }

    /// How many bytes are queued and not yet sent.
    pub(super) fn pending(&self) -> usize {
        self.conn.as_ref().map_or(0, Conn::pending_output)
    }

    /// Sends everything queued within `timeout`.
    pub(super) async fn flush(&mut self, phase: Phase, timeout: Duration) -> Result<(), Reason> {
        let conn = self.conn()?;
        // Cancel safety: not raced against anything; a timeout ends the
        // session (the caller drops the connection).
        conn.flush(timeout)
            .await
            .map_err(|e| io_reason(e, phase, timeout))
    }

    /// Flushes what is queued and reads one reply, all within `timeout`
    /// (a deadline for the whole reply, so that a relay trickling bytes
    /// cannot stretch it).
    pub(super) async fn reply(&mut self, phase: Phase, timeout: Duration) -> Result<Reply, Reason> {
        let deadline = Instant::now() + timeout;
        loop {
            // The field, not self.conn(): the transcript is borrowed too.
            let conn = self.conn.as_mut().ok_or_else(no_connection)?;
            match parse_reply(conn.buffered(), MAX_REPLY_LINE) {
                Ok(Some((reply, used))) => {
                    let raw = conn.buffered().get(..used).unwrap_or_default();
                    for line in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        self.tr.server(&String::from_utf8_lossy(line));
                    }
                    conn.consume(used);
                    return Ok(reply);
                }
                Ok(None) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Reason::Timeout {
                            phase,
                            after: timeout,
                        });
                    }
                    // Cancel safety: `fill` only awaits a flush and one
                    // cancel-safe read; the deadline is ours, nothing else
                    // races it.
                    conn.fill(left)
                        .await
                        .map_err(|e| io_reason(e, phase, timeout))?;
                }
                Err(e) => {
                    let start = conn.buffered();
                    let shown = String::from_utf8_lossy(
                        start.get(..start.len().min(60)).unwrap_or_default(),
                    )
                    .escape_default()
                    .to_string();
                    return Err(Reason::Protocol(format!(
                        "unparseable reply while {phase}: {e} (\"{shown}\")"
                    )));
                }
            }
        }
    }

    /// Flushes and closes the write side (TLS: close_notify), within
    /// `timeout`; errors are ignored (the session is over anyway).
    pub(super) async fn close(&mut self, timeout: Duration) {
        if let Some(mut conn) = self.conn.take() {
            // Cancel safety: bounded by `timeout`; the connection is
            // dropped afterwards whatever happened.
            let _ = conn.shutdown(timeout).await;
        }
    }
}

/// The reason for a failed read or write while in `phase`.
pub(super) fn io_reason(e: ConnError, phase: Phase, timeout: Duration) -> Reason {
    match e {
        ConnError::Timeout(_) => Reason::Timeout {
            phase,
            after: timeout,
        },
        ConnError::Closed => closed(phase),
        ConnError::Io(e) => {
            if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Reason::Tls(format!("TLS error while {phase}: {tls}"));
            }
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                // rustls: the peer closed without close_notify.
                return closed(phase);
            }
            Reason::Connect(format!("connection lost while {phase}: {e}"))
        }
    }
}

fn no_connection() -> Reason {
    Reason::Protocol("the connection to the relay is closed".into())
}

fn closed(phase: Phase) -> Reason {
    Reason::Protocol(format!("the relay closed the connection while {phase}"))
}
