//! A byte stream with a read buffer it owns and a write buffer it flushes on
//! demand. It is the only place that reads or writes a socket.
//!
//! Owning the read buffer matters for two reasons: pipelined commands that
//! arrive together are parsed from one buffer without extra reads, and before
//! a TLS upgrade the caller can check that nothing unread is buffered (bytes
//! injected after a STARTTLS reply must never be taken as protected input).
//! Replies are collected in the write buffer and sent in one `write` when the
//! session is about to wait for input, which keeps pipelined sessions to one
//! segment per round trip (no Nagle stalls: sockets also get `TCP_NODELAY`).

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Size of each read from the socket; the buffer grows only as far as the
/// caller's own limits allow (it consumes or rejects what it cannot use).
const READ_CHUNK: usize = 16 * 1024;

/// Why a read or write did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// No byte arrived, or a write did not finish, within the allowed time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The socket reported an error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A buffered stream. `S` is a TCP stream, a TLS stream, or an in-memory
/// duplex in tests.
pub struct Conn<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Wraps a stream with empty buffers.
    pub fn new(stream: S) -> Self {
        Conn {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(1024),
        }
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.rbuf
    }

    /// Drops the first `n` buffered bytes (they were parsed).
    pub fn consume(&mut self, n: usize) {
        self.rbuf.advance(n.min(self.rbuf.len()));
    }

    /// Reads at least one more byte into the buffer, waiting at most
    /// `timeout`. Pending replies are flushed first: the peer may be waiting
    /// for them before it sends anything else.
    ///
    /// Cancel safety: the only await points are the flush and one `read_buf`;
    /// `read_buf` is cancel-safe (nothing is lost if the future is dropped),
    /// so a caller may race this against a shutdown signal.
    pub async fn fill(&mut self, timeout: Duration) -> Result<usize, ConnError> {
        self.fill_up_to(READ_CHUNK, timeout).await
    }

    /// [`Conn::fill`] with room for `chunk` bytes in the one read (the
    /// DATA phase reads bigger pieces: fewer reads per message). The
    /// buffer keeps that room for the rest of the connection.
    pub async fn fill_up_to(
        &mut self,
        chunk: usize,
        timeout: Duration,
    ) -> Result<usize, ConnError> {
        self.flush(timeout).await?;
        self.rbuf.reserve(chunk);
        match tokio::time::timeout(timeout, self.stream.read_buf(&mut self.rbuf)).await {
            Err(_) => Err(ConnError::Timeout(timeout)),
            Ok(Err(e)) => Err(ConnError::Io(e)),
            Ok(Ok(0)) => Err(ConnError::Closed),
            Ok(Ok(n)) => Ok(n),
        }
    }

    /// Queues bytes to send; nothing is written until [`Conn::flush`] or
    /// the next [`Conn::fill`].
    pub fn queue(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// The buffer [`Conn::queue`] appends to, for a caller that produces
    /// its output in place (the dot-stuffer) instead of copying it in.
    pub fn send_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.wbuf
    }

    /// Whether replies are queued and not yet sent.
    pub fn has_pending_output(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// How many bytes are queued and not yet sent.
    pub fn pending_output(&self) -> usize {
        self.wbuf.len()
    }

    /// Writes everything queued, within `timeout`.
    pub async fn flush(&mut self, timeout: Duration) -> Result<(), ConnError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let write = async {
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Err(_) => Err(ConnError::Timeout(timeout)),
            Ok(Err(e)) => Err(ConnError::Io(e)),
            Ok(Ok(())) => {
                self.wbuf.clear();
                Ok(())
            }
        }
    }

    /// Flushes and closes the write side (TLS sends close_notify here).
    pub async fn shutdown(&mut self, timeout: Duration) -> Result<(), ConnError> {
        self.flush(timeout).await?;
        match tokio::time::timeout(timeout, self.stream.shutdown()).await {
            Err(_) => Err(ConnError::Timeout(timeout)),
            Ok(r) => Ok(r?),
        }
    }

    /// Gives back the stream for an upgrade (STARTTLS). Refuses when input
    /// is buffered: those bytes arrived before the handshake and must not be
    /// treated as if they had come through TLS.
    pub fn into_stream(self) -> Result<S, (Self, usize)> {
        if self.rbuf.is_empty() {
            Ok(self.stream)
        } else {
            let n = self.rbuf.len();
            Err((self, n))
        }
    }

    /// The underlying stream (for peer addresses and socket options).
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// The underlying stream, for a caller that writes past the buffers
    /// (a server's last reply, sent together with the FIN).
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn replies_are_sent_before_waiting_for_input() {
        let (a, mut b) = duplex(1024);
        let mut conn = Conn::new(a);
        conn.queue(b"220 hi\r\n");
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 8];
            b.read_exact(&mut got).await.unwrap();
            b.write_all(b"QUIT\r\n").await.unwrap();
            got
        });
        conn.fill(Duration::from_secs(5)).await.unwrap();
        assert_eq!(conn.buffered(), b"QUIT\r\n");
        assert_eq!(reader.await.unwrap(), b"220 hi\r\n");
        conn.consume(6);
        assert!(conn.buffered().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out() {
        let (a, _b) = duplex(64);
        let mut conn = Conn::new(a);
        let err = conn.fill(Duration::from_secs(300)).await.unwrap_err();
        assert!(matches!(err, ConnError::Timeout(d) if d == Duration::from_secs(300)));
    }

    #[tokio::test]
    async fn upgrade_is_refused_while_input_is_buffered() {
        let (a, mut b) = duplex(64);
        let mut conn = Conn::new(a);
        b.write_all(b"injected").await.unwrap();
        conn.fill(Duration::from_secs(5)).await.unwrap();
        let (conn, n) = conn.into_stream().expect_err("must refuse");
        assert_eq!(n, 8);
        assert_eq!(conn.buffered(), b"injected");
    }
}
