//! Server-side TLS for the submission listeners: building the rustls
//! server configuration from a PEM certificate chain and key, and
//! [`ServerStream`], plain TCP or TLS over TCP as one type, so that one
//! SMTP session type serves a connection before and after STARTTLS, and
//! that session's last write ([`ServerTransport::finish`]: on plain TCP
//! the last reply leaves in one segment with the FIN).
//!
//! Not for: deciding when TLS is offered or required (the intake session
//! does that), or client TLS (see [`crate::net::tls`]).
//!
//! The configuration names its crypto provider explicitly (ring, shared
//! with the client side), accepts TLS 1.2 and 1.3 only, never accepts
//! early data (0-RTT: a replayable SMTP command is not something to want),
//! and asks no client certificate.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::net::tls;

/// Builds the server configuration from the certificate chain (PEM, leaf
/// first) and its private key (PEM: PKCS#8, PKCS#1 or SEC1). The error
/// completes a sentence about the pair ("cert … and key …: <error>") and
/// never contains key material.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, String> {
    let chain = certificates(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "the key file holds no PEM private key (\"-----BEGIN PRIVATE KEY-----\", \
             \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")"
                .to_owned()
        }
        other => format!("the key file is not a valid PEM private key: {other}"),
    })?;
    let config = ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                "the private key does not belong to the first certificate of the chain; \
                 the certificate file must start with the server's own certificate"
                    .to_owned()
            }
            other => format!("the certificate or key cannot be used: {other}"),
        })?;
    Ok(Arc::new(config))
}

/// The certificates of a PEM chain, in order; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut chain = Vec::new();
    for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = cert.map_err(|e| {
            format!(
                "certificate #{} of the certificate file is not valid PEM: {e}",
                i + 1
            )
        })?;
        chain.push(cert);
    }
    if chain.is_empty() {
        return Err(
            "the certificate file holds no PEM \"-----BEGIN CERTIFICATE-----\" section".to_owned(),
        );
    }
    Ok(chain)
}

/// An accepted connection: plain TCP (the loopback listener, or a
/// submission session before STARTTLS), or server TLS over TCP.
pub type ServerStream = crate::net::stream::MaybeTls<TcpStream, TlsStream<TcpStream>>;

/// Why a server handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The client did not complete the handshake in time.
    #[error("TLS handshake timed out after {0:?}")]
    Timeout(Duration),
    /// The handshake failed (bad ClientHello, no common cipher, alert…).
    #[error("TLS handshake failed: {0}")]
    Io(#[from] io::Error),
    /// STARTTLS on a stream that already is TLS.
    #[error("TLS is already active")]
    AlreadyTls,
}

/// Runs the server side of a TLS handshake over `tcp` within `timeout`.
///
/// Cancel safety: on timeout the half-done handshake and its socket are
/// dropped together.
pub async fn accept(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> Result<ServerStream, AcceptError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Err(_) => Err(AcceptError::Timeout(timeout)),
        Ok(Err(e)) => Err(AcceptError::Io(e)),
        Ok(Ok(stream)) => Ok(ServerStream::Tls(Box::new(stream))),
    }
}

/// What the SMTP session needs of its stream beyond reading and writing:
/// whether TLS is on, and the upgrade for STARTTLS.
pub trait ServerTransport: AsyncRead + AsyncWrite + Unpin + Send + Sized {
    /// Whether TLS is up.
    fn is_tls(&self) -> bool;

    /// `"TLSv1.3 TLS13_AES_256_GCM_SHA384"` when TLS is up.
    fn tls_description(&self) -> Option<String>;

    /// Runs the server handshake on this (plain) stream. The caller must
    /// have checked that no unread input is buffered above it.
    fn start_tls(
        self,
        config: Arc<ServerConfig>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Self, AcceptError>> + Send;

    /// Sends `last` (the session's last reply) and closes the write side.
    /// On plain TCP the FIN leaves in the same segment as `last`: it is
    /// sent with `MSG_MORE`, which holds it until `shutdown` adds the FIN
    /// and pushes both, so the client takes one segment instead of two.
    fn finish(&mut self, last: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
}

impl ServerStream {
    /// The client's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            ServerStream::Plain(s) => s.peer_addr(),
            ServerStream::Tls(s) => s.get_ref().0.peer_addr(),
        }
    }
}

impl ServerTransport for ServerStream {
    fn is_tls(&self) -> bool {
        matches!(self, ServerStream::Tls(_))
    }

    fn tls_description(&self) -> Option<String> {
        match self {
            ServerStream::Plain(_) => None,
            ServerStream::Tls(s) => Some(describe(s.get_ref().1)),
        }
    }

    async fn start_tls(
        self,
        config: Arc<ServerConfig>,
        timeout: Duration,
    ) -> Result<Self, AcceptError> {
        match self {
            ServerStream::Plain(tcp) => accept(tcp, config, timeout).await,
            ServerStream::Tls(_) => Err(AcceptError::AlreadyTls),
        }
    }

    async fn finish(&mut self, last: &[u8]) -> io::Result<()> {
        if let ServerStream::Plain(tcp) = self {
            send_more(tcp, last).await?;
        } else {
            self.write_all(last).await?;
            self.flush().await?;
        }
        self.shutdown().await
    }
}

/// Writes all of `buf` with `MSG_MORE`: queued, not sent until the next
/// write without it, or the FIN.
#[cfg(target_os = "linux")]
async fn send_more(tcp: &mut TcpStream, mut buf: &[u8]) -> io::Result<()> {
    use nix::sys::socket::{MsgFlags, send};
    use std::os::fd::AsRawFd;
    // nix names no MSG_MORE; the bit is libc's.
    let flags = MsgFlags::from_bits_retain(nix::libc::MSG_MORE) | MsgFlags::MSG_NOSIGNAL;
    while !buf.is_empty() {
        tcp.writable().await?;
        let sent = tcp.try_io(tokio::io::Interest::WRITABLE, || {
            send(tcp.as_raw_fd(), buf, flags).map_err(io::Error::from)
        });
        match sent {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Without `MSG_MORE`: an ordinary write (the FIN follows separately).
#[cfg(not(target_os = "linux"))]
async fn send_more(tcp: &mut TcpStream, buf: &[u8]) -> io::Result<()> {
    tcp.write_all(buf).await
}

/// `"TLSv1.3 TLS13_AES_256_GCM_SHA384"` for an established server session.
fn describe(conn: &rustls::ServerConnection) -> String {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "TLS".to_owned(),
    };
    match conn.negotiated_cipher_suite() {
        Some(suite) => match suite.suite().as_str() {
            Some(name) => format!("{version} {name}"),
            None => format!("{version} {:?}", suite.suite()),
        },
        None => version,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A self-signed certificate for `localhost` and its key, as PEM.
    pub(crate) fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn config_errors_say_what_is_wrong() {
        let (cert, key) = self_signed();
        server_config(cert.as_bytes(), key.as_bytes()).unwrap();

        let e = server_config(b"nothing", key.as_bytes()).unwrap_err();
        assert!(e.contains("no PEM"), "{e}");
        let e = server_config(cert.as_bytes(), b"nothing").unwrap_err();
        assert!(e.contains("no PEM private key"), "{e}");
        let (_, other_key) = self_signed();
        let e = server_config(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(e.contains("does not belong"), "{e}");
        assert!(!e.contains("PRIVATE KEY-----"), "{e}");
    }

    /// The reply sent with `MSG_MORE` is held back until the shutdown adds
    /// the FIN. The kernel sends held data on its own after a timer of at
    /// least 200 ms, so a look at the client's side taken more than 100 ms
    /// after the send says nothing (a stalled thread on a loaded machine):
    /// that attempt is repeated, at most five times. Without `MSG_MORE`
    /// the reply is there at once, in every attempt.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_last_reply_leaves_with_the_fin() {
        use std::io::Read;
        use std::time::{Duration, Instant};
        for _ in 0..5 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (mut tcp, _) = listener.accept().await.unwrap();
            tcp.set_nodelay(true).unwrap();
            client.set_nonblocking(true).unwrap();
            let sent = Instant::now();
            send_more(&mut tcp, b"221 2.0.0 Bye\r\n").await.unwrap();
            let mut buf = [0u8; 64];
            let early = client.read(&mut buf).map_err(|e| e.kind());
            if sent.elapsed() > Duration::from_millis(100) {
                continue; // too late to tell
            }
            assert_eq!(early, Err(io::ErrorKind::WouldBlock), "sent before the FIN");
            ServerStream::Plain(tcp).shutdown().await.unwrap();
            client.set_nonblocking(false).unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"221 2.0.0 Bye\r\n");
            return;
        }
        panic!("five attempts stalled for more than 100 ms each: cannot tell");
    }

    #[tokio::test]
    async fn finish_sends_the_reply_then_closes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).await.unwrap();
            got
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let mut server = ServerStream::Plain(tcp);
        server
            .finish(b"421 4.4.2 Error: timeout exceeded\r\n")
            .await
            .unwrap();
        // The server is still alive here: the client sees its end of file
        // only if `finish` closed the write side.
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), client)
            .await
            .expect("no end of file within 10 s: finish did not close")
            .unwrap();
        assert_eq!(got, b"421 4.4.2 Error: timeout exceeded\r\n");
    }

    #[tokio::test]
    async fn handshake_with_our_client() {
        let (cert, key) = self_signed();
        let config = server_config(cert.as_bytes(), key.as_bytes()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut s = ServerStream::Plain(tcp)
                .start_tls(config, Duration::from_secs(10))
                .await
                .unwrap();
            assert!(s.tls_description().unwrap().starts_with("TLSv1."));
            s.write_all(b"hello").await.unwrap();
            s.shutdown().await.unwrap();
        });
        let tcp = crate::net::stream::connect(&[addr], Duration::from_secs(5))
            .await
            .unwrap();
        let mut client = crate::net::stream::handshake(
            tcp,
            tls::client_config_no_verify(),
            tls::server_name("localhost").unwrap(),
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| format!("{e:?}"))
        .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        server.await.unwrap();
    }
}
