//! A buffered SMTP connection over TCP, or TLS after STARTTLS on the
//! server side: reads command lines and replies out of one buffer, queues
//! writes and sends them in one go (one segment for a pipelined group).
//! Shared by the generator and the sink; it knows no SMTP state.

use std::sync::Arc;

use postrelay_smtp::{Line, Reply, next_line, parse_reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::error::LoadError;

/// Longest reply or command line accepted (extensions make lines long).
const MAX_LINE: usize = 4096;

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while a handshake owns the socket.
    Gone,
}

/// One SMTP connection with its read and write buffers.
pub struct Conn {
    stream: Stream,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
}

impl Conn {
    /// Wraps an accepted or connected socket (Nagle off: SMTP is chatty).
    pub fn new(tcp: TcpStream) -> Conn {
        // Best effort: a socket without it is slower, not wrong.
        let _ = tcp.set_nodelay(true);
        Conn {
            stream: Stream::Plain(tcp),
            rbuf: Vec::with_capacity(16 * 1024),
            rpos: 0,
            wbuf: Vec::with_capacity(16 * 1024),
        }
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        self.rbuf.get(self.rpos..).unwrap_or_default()
    }

    /// Drops `n` received bytes.
    pub fn consume(&mut self, n: usize) {
        self.rpos = (self.rpos + n).min(self.rbuf.len());
        if self.rpos == self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
        }
    }

    /// Reads more bytes into the buffer; the peer closing is an error.
    pub async fn fill(&mut self) -> Result<(), LoadError> {
        if self.rpos > 0 && self.rpos * 2 > self.rbuf.capacity() {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        let n = match &mut self.stream {
            Stream::Plain(s) => s.read_buf(&mut self.rbuf).await?,
            Stream::Tls(s) => s.read_buf(&mut self.rbuf).await?,
            Stream::Gone => 0,
        };
        if n == 0 {
            return Err(LoadError::Closed);
        }
        Ok(())
    }

    /// The next CRLF-terminated line, without the CRLF. A line that is not
    /// (bare CR or LF, too long) is returned as far as it goes: the sink
    /// refuses it as a command.
    pub async fn line(&mut self) -> Result<Vec<u8>, LoadError> {
        loop {
            match next_line(self.buffered(), MAX_LINE) {
                Line::Complete { line, consumed } => {
                    let line = line.to_vec();
                    self.consume(consumed);
                    return Ok(line);
                }
                Line::Incomplete => self.fill().await?,
                Line::TooLong { consumed_so_far: n }
                | Line::BareLf { consumed: n }
                | Line::BareCr { consumed: n } => {
                    let line = self.buffered().get(..n).unwrap_or_default().to_vec();
                    self.consume(n);
                    return Ok(line);
                }
            }
        }
    }

    /// The next (possibly multi-line) reply.
    pub async fn reply(&mut self) -> Result<Reply, LoadError> {
        loop {
            if let Some((reply, used)) = parse_reply(self.buffered(), MAX_LINE)? {
                self.consume(used);
                return Ok(reply);
            }
            self.fill().await?;
        }
    }

    /// The next reply, which must have the code class `class` (2 or 3).
    pub async fn expect(&mut self, command: &'static str, class: u16) -> Result<Reply, LoadError> {
        let reply = self.reply().await?;
        if reply.code / 100 != class {
            return Err(LoadError::Refused {
                command,
                expected: class,
                reply,
            });
        }
        Ok(reply)
    }

    /// Queues bytes for the next [`Conn::flush`].
    pub fn queue(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<(), LoadError> {
        match &mut self.stream {
            Stream::Plain(s) => s.write_all(&self.wbuf).await?,
            Stream::Tls(s) => {
                s.write_all(&self.wbuf).await?;
                s.flush().await?;
            }
            Stream::Gone => return Err(LoadError::Closed),
        }
        self.wbuf.clear();
        Ok(())
    }

    /// Queues and sends `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), LoadError> {
        self.queue(bytes);
        self.flush().await
    }

    /// Server side of STARTTLS, after the `220` went out. Bytes the client
    /// pipelined after STARTTLS are dropped, as RFC 3207 requires.
    pub async fn accept_tls(&mut self, config: Arc<rustls::ServerConfig>) -> Result<(), LoadError> {
        self.rbuf.clear();
        self.rpos = 0;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(LoadError::Tls("STARTTLS on a TLS session".into()));
        };
        let tls = tokio_rustls::TlsAcceptor::from(config)
            .accept(tcp)
            .await
            .map_err(|e| LoadError::Tls(e.to_string()))?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Closes the write side (best effort).
    pub async fn shutdown(&mut self) {
        let _ = match &mut self.stream {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
            Stream::Gone => Ok(()),
        };
    }
}
