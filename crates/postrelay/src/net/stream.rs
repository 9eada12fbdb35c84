//! The byte streams of outbound connections: TCP connects with a deadline,
//! client TLS handshakes with a deadline, and [`Stream`], plain TCP or TLS
//! over TCP as one type so that one [`crate::net::Conn`] type serves the
//! whole session, before and after STARTTLS.
//!
//! A handshake keeps the first bytes the server sent ([`Sniff`]), so that a
//! failure caused by a server that speaks plaintext (`220 …`, a STARTTLS or
//! port-25 style server) is told apart from a real TLS failure. That is
//! what lets the delivery client give a precise hint, or fall back in
//! `tls = "auto"`, without guessing.
//!
//! Not for: SMTP, timeouts of individual reads (the `Conn` does those), or
//! TLS policy (the delivery client decides which configuration to use).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::net::tls;

/// How many of the server's first bytes a handshake keeps for diagnosis.
const SNIFF_LEN: usize = 128;

/// A connection that is plain, or TLS over the plain one: one type for a
/// whole SMTP session before and after STARTTLS. `P` is the plain stream,
/// `T` the TLS stream (client or server side).
pub enum MaybeTls<P, T> {
    /// Plain TCP (before STARTTLS, or without TLS).
    Plain(P),
    /// TLS (after STARTTLS, or implicit TLS).
    Tls(Box<T>),
}

/// An outbound connection: plain TCP, or client TLS over TCP.
pub type Stream = MaybeTls<TcpStream, TlsStream<Sniff<TcpStream>>>;

impl Stream {
    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Stream::Plain(s) => s.peer_addr(),
            Stream::Tls(s) => s.get_ref().0.inner.peer_addr(),
        }
    }

    /// `"TLSv1.3 TLS13_AES_256_GCM_SHA384"` when TLS is up.
    pub fn tls_description(&self) -> Option<String> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(s) => Some(tls::describe_session(s.get_ref().1)),
        }
    }
}

impl<P, T> AsyncRead for MaybeTls<P, T>
where
    P: AsyncRead + Unpin,
    T: AsyncRead + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<P, T> AsyncWrite for MaybeTls<P, T>
where
    P: AsyncWrite + Unpin,
    T: AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A stream that remembers the first [`SNIFF_LEN`] bytes read through it
/// and is transparent otherwise.
pub struct Sniff<S> {
    inner: S,
    first: Vec<u8>,
}

impl<S> Sniff<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Sniff {
            inner,
            first: Vec::new(),
        }
    }

    /// The first bytes read so far (at most [`SNIFF_LEN`]).
    pub fn first_bytes(&self) -> &[u8] {
        &self.first
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniff<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll
            && this.first.len() < SNIFF_LEN
        {
            let new = buf.filled().get(before..).unwrap_or_default();
            let room = SNIFF_LEN - this.first.len();
            this.first
                .extend_from_slice(new.get(..room.min(new.len())).unwrap_or_default());
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniff<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Why no TCP connection could be opened to any of the addresses.
#[derive(Debug)]
pub struct ConnectError {
    /// Each address tried, with what went wrong.
    pub attempts: Vec<(SocketAddr, String)>,
    /// Whether every attempt timed out (nothing refused or unreachable).
    pub all_timed_out: bool,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.attempts.is_empty() {
            return f.write_str("no address to connect to");
        }
        for (i, (addr, why)) in self.attempts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{addr}: {why}")?;
        }
        Ok(())
    }
}

/// Connects to the first address that accepts, trying them in order, each
/// within `timeout`. The socket gets `TCP_NODELAY` (commands are written in
/// whole batches; Nagle would only delay them).
pub async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, ConnectError> {
    let mut attempts = Vec::new();
    let mut all_timed_out = true;
    for &addr in addrs {
        // Cancel safety: dropping a pending connect closes the half-open
        // socket; nothing else is held across this await.
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // Best effort: a socket without NODELAY still works.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => {
                all_timed_out = false;
                attempts.push((addr, e.to_string()));
            }
            Err(_) => attempts.push((addr, format!("timed out after {} s", timeout.as_secs()))),
        }
    }
    if attempts.is_empty() {
        all_timed_out = false;
    }
    Err(ConnectError {
        attempts,
        all_timed_out,
    })
}

/// Why a client TLS handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// The handshake did not complete in time.
    Timeout(Duration),
    /// The server answered with bytes that are not TLS (kept here, at most
    /// [`SNIFF_LEN`]): it speaks plaintext on this port.
    Plaintext(Vec<u8>),
    /// TLS itself failed: certificate verification, an alert, a protocol
    /// error.
    Tls(rustls::Error),
    /// The connection failed (reset, closed before the handshake ended).
    Io(io::Error),
}

/// Runs a client handshake over `tcp` within `timeout`, verifying the
/// server as `config` says for `name`.
pub async fn handshake(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    timeout: Duration,
) -> Result<Stream, HandshakeError> {
    let connector = tokio_rustls::TlsConnector::from(config);
    let connect = connector.connect(name, Sniff::new(tcp)).into_fallible();
    // Cancel safety: on timeout the half-done handshake and its socket are
    // dropped together; the caller gets no stream to reuse.
    match tokio::time::timeout(timeout, connect).await {
        Err(_) => Err(HandshakeError::Timeout(timeout)),
        Ok(Ok(stream)) => Ok(Stream::Tls(Box::new(stream))),
        Ok(Err((err, io))) => {
            let first = io.first_bytes();
            if !first.is_empty() && !tls::looks_like_tls_record(first) {
                return Err(HandshakeError::Plaintext(first.to_vec()));
            }
            let tls_error = err
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .cloned();
            Err(match tls_error {
                Some(e) => HandshakeError::Tls(e),
                None => HandshakeError::Io(err),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn handshake_against_a_plaintext_server_reports_its_greeting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"220 mx.example ESMTP\r\n").await.unwrap();
            let mut sink = [0u8; 1024];
            let _ = s.read(&mut sink).await;
        });
        let tcp = connect(&[addr], Duration::from_secs(5)).await.unwrap();
        let name = tls::server_name("localhost").unwrap();
        let err = handshake(
            tcp,
            tls::client_config_no_verify(),
            name,
            Duration::from_secs(5),
        )
        .await
        .err()
        .expect("must fail");
        match err {
            HandshakeError::Plaintext(first) => assert!(first.starts_with(b"220 mx"), "{first:?}"),
            other => panic!("{other:?}"),
        }
        server.abort();
    }

    #[tokio::test]
    async fn connect_reports_every_address() {
        // Bind then drop: the port is (almost certainly) closed now.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = connect(&[closed, closed], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.attempts.len(), 2);
        assert!(!err.all_timed_out);
        assert!(err.to_string().contains(&closed.to_string()), "{err}");
        let none = connect(&[], Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(none.to_string(), "no address to connect to");
    }
}
