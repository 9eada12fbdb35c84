//! A message's body after the relay's 354: the spool file's bytes on the
//! wire, then the final dot. Bytes of the file are touched as few times
//! as the message allows:
//!
//! - a body the intake found to be its own SMTP form
//!   (`Envelope::sends_as_is`: no line starts with a dot, CRLF line ends
//!   only) goes out without the dot-stuffer's pass, and over a plain
//!   connection, when it is at least [`BODY_CHUNK`] long, straight from
//!   the file (`sendfile(2)`: no copy through this process);
//! - any other body (or one whose header section is swapped) goes
//!   through the dot-stuffer, which also turns bare CR or LF into CRLF.
//!
//! Not for: the envelope's commands or the replies (`transaction`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use postrelay_smtp::DotStuffer;
use tokio::io::Interest;

use super::wire::io_reason;
use super::{Message, Session};
use crate::deliver::outcome::{Phase, Reason};
use crate::net::ConnError;
use crate::net::stream::Stream;

/// Bytes read from the spool file at a time, and queued for the relay
/// before they are sent.
const BODY_CHUNK: usize = 64 * 1024;

/// Most bytes one `sendfile` may send (each within the data timeout).
const SENDFILE_CHUNK: usize = 1024 * 1024;

/// Why the body could not be sent.
pub(super) enum BodyError {
    /// Reading the spool file failed, or it ended early.
    Read(std::io::Error),
    /// Writing to the relay failed.
    Net(Reason),
}

/// How the file's bytes become wire bytes.
enum Form {
    /// Through the dot-stuffer.
    Stuffed(DotStuffer),
    /// As they are.
    AsIs,
}

impl Session {
    /// Sends the spool file (`msg.size` bytes), or the swapped header
    /// section and the rest of it, and queues the terminator. Bytes go out
    /// once [`BODY_CHUNK`] of them are queued; the rest leaves with the
    /// terminator when the final reply is awaited, so a small message is
    /// one write (one TLS record). The read buffer is the session's, kept
    /// from one message to the next.
    pub(super) async fn body(
        &mut self,
        mut file: File,
        msg: &Message<'_>,
    ) -> Result<(), BodyError> {
        let mut form = if msg.sends_as_is && msg.header.is_none() {
            Form::AsIs
        } else {
            Form::Stuffed(DotStuffer::new())
        };
        let mut total: u64 = 0;
        let mut rest = msg.size;
        if let (Some(swap), Form::Stuffed(stuffer)) = (msg.header, &mut form) {
            file.seek(SeekFrom::Start(swap.replaces))
                .map_err(BodyError::Read)?;
            self.wire.body(stuffer, swap.bytes);
            total += swap.bytes.len() as u64;
            rest = msg.size.saturating_sub(swap.replaces);
        }
        let sent = match form {
            Form::AsIs if rest >= BODY_CHUNK as u64 && self.is_plain() => {
                self.send_file(&file, rest).await?
            }
            _ => None,
        };
        let sent = match sent {
            Some(sent) => sent,
            None => {
                let mut chunk = std::mem::take(&mut self.body_chunk);
                chunk.resize(BODY_CHUNK, 0);
                let sent = self
                    .stream_file(&mut file, rest, &mut chunk, &mut form)
                    .await;
                self.body_chunk = chunk;
                sent?
            }
        };
        total += sent;
        match &mut form {
            Form::Stuffed(stuffer) => self.wire.end_body(stuffer),
            // At a line's start: the file ends with CRLF, or is empty.
            Form::AsIs => self.wire.end_body(&mut DotStuffer::new()),
        }
        self.wire.tr.client(&format!("<message: {total} bytes>"));
        self.wire.tr.client(".");
        Ok(())
    }

    /// Whether the session runs over plain TCP (no TLS).
    fn is_plain(&self) -> bool {
        matches!(self.wire.stream(), Some(Stream::Plain(_)))
    }

    /// Sends the next `len` bytes of `file` in `form`, reading into
    /// `chunk`; returns the bytes read. It reads no further than that (a
    /// 1 KiB message is one `read`, with no second one to see the end of
    /// the file): a queue file is never rewritten, and its size is the
    /// envelope's, checked at every start. One that ends early is an
    /// error, so a cut body is never sent as if it were whole.
    async fn stream_file(
        &mut self,
        file: &mut File,
        len: u64,
        chunk: &mut [u8],
        form: &mut Form,
    ) -> Result<u64, BodyError> {
        let mut total = 0;
        while total < len {
            let want = usize::try_from(len - total).map_or(chunk.len(), |r| r.min(chunk.len()));
            let n = match file.read(chunk.get_mut(..want).unwrap_or_default()) {
                Ok(0) => return Err(ended_early(total, len)),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(BodyError::Read(e)),
            };
            total += n as u64;
            let bytes = chunk.get(..n).unwrap_or_default();
            match form {
                Form::Stuffed(stuffer) => self.wire.body(stuffer, bytes),
                Form::AsIs => self.wire.body_as_is(bytes),
            }
            if self.wire.pending() >= BODY_CHUNK {
                self.wire
                    .flush(Phase::DataEnd, self.timeouts.data)
                    .await
                    .map_err(BodyError::Net)?;
            }
        }
        Ok(total)
    }

    /// Sends the first `len` bytes of `file` over the plain connection
    /// with `sendfile(2)`, after what is queued; returns the bytes sent,
    /// or `None` when the spool's file system cannot (`EINVAL`, `ENOSYS`
    /// at the first call: nothing was sent, the caller reads the file
    /// instead). Each call may take up to the data timeout.
    async fn send_file(&mut self, file: &File, len: u64) -> Result<Option<u64>, BodyError> {
        let timeout = self.timeouts.data;
        self.wire
            .flush(Phase::DataEnd, timeout)
            .await
            .map_err(BodyError::Net)?;
        let Some(Stream::Plain(tcp)) = self.wire.stream() else {
            return Err(BodyError::Net(Reason::Protocol(
                "the connection to the relay is closed".into(),
            )));
        };
        let net = |e: ConnError| BodyError::Net(io_reason(e, Phase::DataEnd, timeout));
        let mut offset: nix::libc::off_t = 0;
        let mut total: u64 = 0;
        while total < len {
            let want =
                usize::try_from(len - total).map_or(SENDFILE_CHUNK, |r| r.min(SENDFILE_CHUNK));
            // Cancel safety: not raced against anything; a timeout ends
            // the session (the caller drops the connection).
            let sent = tokio::time::timeout(
                timeout,
                tcp.async_io(Interest::WRITABLE, || {
                    nix::sys::sendfile::sendfile(tcp, file, Some(&mut offset), want)
                        .map_err(std::io::Error::from)
                }),
            )
            .await;
            match sent {
                Err(_) => return Err(net(ConnError::Timeout(timeout))),
                Ok(Err(e)) if total == 0 && cannot_send_file(&e) => return Ok(None),
                Ok(Err(e)) => return Err(net(ConnError::Io(e))),
                Ok(Ok(0)) => return Err(ended_early(total, len)),
                Ok(Ok(n)) => total += n as u64,
            }
        }
        Ok(Some(total))
    }
}

/// `sendfile(2)` is not possible here (the file's file system cannot
/// splice), as opposed to a failed connection.
fn cannot_send_file(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EINVAL | nix::libc::ENOSYS | nix::libc::EOPNOTSUPP)
    )
}

fn ended_early(total: u64, len: u64) -> BodyError {
    BodyError::Read(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("the file ends after {total} of the {len} bytes to send"),
    ))
}
