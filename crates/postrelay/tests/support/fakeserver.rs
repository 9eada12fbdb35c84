//! An in-process, scripted SMTP server (tokio, 127.0.0.1:0) for client
//! tests that a real server cannot stage: a missing STARTTLS, a reply
//! injected after the STARTTLS reply, a server that never greets, a
//! connection closed mid-DATA, scripted greeting, STARTTLS and RCPT
//! replies, SIZE limits, a 354 with no recipient accepted.
//!
//! It records every byte it receives (plaintext, and decrypted after
//! STARTTLS) and every message body (as received, still dot-stuffed,
//! without the final `.CRLF`), and when each connection was accepted on a
//! clock shared by all fake servers of the test binary, so that a test can
//! tell which of two servers the client tried first. TLS uses a throwaway rcgen CA
//! ([`TestPki`]): certificate for `localhost` and `127.0.0.1`.
//!
//! Not a conformance reference: it answers just enough SMTP for the client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

mod auth;
use auth::auth;

/// What the server does. `Default` is a well-behaved ESMTP server without
/// TLS, AUTH or PIPELINING.
#[derive(Clone)]
pub struct Script {
    /// Send the greeting (false: stall forever, reading and recording).
    pub greet: bool,
    /// The greeting line (a non-220 one refuses the session; the server
    /// still answers QUIT).
    pub greeting: String,
    /// Advertise STARTTLS (before TLS).
    pub starttls: bool,
    /// The reply to STARTTLS; anything but a 220 leaves the session in
    /// plain text, as a server that refuses TLS.
    pub starttls_reply: String,
    /// Send `250 injected` in the same write as the STARTTLS 220.
    pub inject_after_starttls: bool,
    /// Run a TLS handshake after the STARTTLS 220.
    pub tls: Option<Arc<ServerConfig>>,
    /// Advertise PIPELINING.
    pub pipelining: bool,
    /// Advertise `SIZE n`.
    pub size: Option<u64>,
    /// Advertise SMTPUTF8.
    pub smtputf8: bool,
    /// Advertise 8BITMIME.
    pub eight_bit: bool,
    /// AUTH mechanisms to advertise (PLAIN and LOGIN are implemented;
    /// XOAUTH2 and OAUTHBEARER with `bearer`).
    pub auth: Vec<&'static str>,
    /// Checks the user and token of XOAUTH2 and OAUTHBEARER (whose
    /// messages must have exactly the mechanism's shape); a refusal gets
    /// the error challenge, then 535.
    pub bearer: Option<BearerCheck>,
    /// The user and password AUTH accepts.
    pub credentials: (String, String),
    /// The reply to MAIL.
    pub mail_reply: String,
    /// The replies to the first MAIL commands the server receives (over
    /// all its connections), in order; `mail_reply` after them.
    pub first_mail_replies: Vec<String>,
    /// Replies to the RCPTs of a transaction, in order; `250` past the end.
    pub rcpt_replies: Vec<String>,
    /// Answer DATA with 354 even when no RCPT was accepted.
    pub accept_data_without_rcpt: bool,
    /// Close the connection once the first body bytes arrived.
    pub close_mid_data: bool,
    /// The reply to the final dot.
    pub end_reply: String,
    /// The reply to RSET; after a 421 the server closes the connection
    /// (as one does when an idle session times out).
    pub rset_reply: String,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            greet: true,
            greeting: "220 fake.test ESMTP".into(),
            starttls: false,
            starttls_reply: "220 2.0.0 Ready to start TLS".into(),
            inject_after_starttls: false,
            tls: None,
            pipelining: false,
            size: None,
            smtputf8: false,
            eight_bit: true,
            auth: Vec::new(),
            bearer: None,
            credentials: ("user".into(), "secret".into()),
            mail_reply: "250 2.1.0 Ok".into(),
            first_mail_replies: Vec::new(),
            rcpt_replies: Vec::new(),
            accept_data_without_rcpt: false,
            close_mid_data: false,
            end_reply: "250 2.0.0 Ok: queued as FAKE".into(),
            rset_reply: "250 2.0.0 Ok".into(),
        }
    }
}

/// Whether `token` is valid for `user` (may block: it runs on a blocking
/// thread).
pub type BearerCheck = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// What the server received.
#[derive(Default)]
struct Recorded {
    bytes: Vec<u8>,
    bodies: Vec<Vec<u8>>,
    finished: usize,
    accepted: usize,
    /// The shared clock's reading at each accept.
    accept_times: Vec<usize>,
    /// Commands (upper-case verbs) that arrived with more input behind
    /// them in the same read: the client pipelined them.
    pipelined: Vec<String>,
    /// MAIL commands received.
    mails: usize,
    /// When each MAIL arrived.
    mail_times: Vec<std::time::Instant>,
}

/// Counts accepts over all fake servers: a logical clock for ordering.
static ACCEPT_CLOCK: AtomicUsize = AtomicUsize::new(0);

/// A running fake server; stopped on drop.
pub struct FakeServer {
    pub addr: SocketAddr,
    rec: Arc<Mutex<Recorded>>,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Starts listening; each connection is served by `script`.
    pub async fn start(script: Script) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rec = Arc::new(Mutex::new(Recorded::default()));
        let script = Arc::new(script);
        let task_rec = rec.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tick = ACCEPT_CLOCK.fetch_add(1, Ordering::SeqCst);
                let mut r = task_rec.lock().unwrap();
                r.accepted += 1;
                r.accept_times.push(tick);
                drop(r);
                let (script, rec) = (script.clone(), task_rec.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &script, &rec).await;
                    rec.lock().unwrap().finished += 1;
                });
            }
        });
        FakeServer { addr, rec, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every byte received so far, all connections in order.
    pub fn received(&self) -> Vec<u8> {
        self.rec.lock().unwrap().bytes.clone()
    }

    /// [`FakeServer::received`] as text (lossy).
    pub fn received_text(&self) -> String {
        String::from_utf8_lossy(&self.received()).into_owned()
    }

    /// Message bodies received (dot-stuffed, without the final `.CRLF`).
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.rec.lock().unwrap().bodies.clone()
    }

    /// MAIL commands received so far (transactions begun).
    pub fn mails(&self) -> usize {
        self.rec.lock().unwrap().mails
    }

    /// When each MAIL command arrived, in order.
    pub fn mail_times(&self) -> Vec<std::time::Instant> {
        self.rec.lock().unwrap().mail_times.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.rec.lock().unwrap().accepted
    }

    /// When each connection was accepted, on the clock shared by all fake
    /// servers: a smaller number was accepted earlier.
    pub fn accept_times(&self) -> Vec<usize> {
        self.rec.lock().unwrap().accept_times.clone()
    }

    /// Verbs of the commands that came with more input behind them.
    pub fn pipelined(&self) -> Vec<String> {
        self.rec.lock().unwrap().pipelined.clone()
    }

    /// Waits (at most `timeout`) until `n` bodies have arrived; them, or
    /// `None` (the caller says what it knows about why).
    pub async fn wait_bodies(&self, n: usize, timeout: Duration) -> Option<Vec<Vec<u8>>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let bodies = self.bodies();
            if bodies.len() >= n {
                return Some(bodies);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most `timeout`) until `n` connections have ended, so that
    /// [`FakeServer::received`] is complete. Panics on timeout.
    pub async fn wait_closed(&self, n: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.rec.lock().unwrap().finished < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fake server: {n} connections did not end within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The reply to the next MAIL (counted over all connections).
fn mail_reply(script: &Script, rec: &Mutex<Recorded>) -> String {
    let mut r = rec.lock().unwrap();
    r.mails += 1;
    r.mail_times.push(std::time::Instant::now());
    let n = r.mails - 1;
    script
        .first_mail_replies
        .get(n)
        .unwrap_or(&script.mail_reply)
        .clone()
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection: a stream, its unread input, and the recorder.
struct Peer<'a> {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    rec: &'a Mutex<Recorded>,
}

impl Peer<'_> {
    /// Reads more input; false on EOF or error.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.io.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.rec
                    .lock()
                    .unwrap()
                    .bytes
                    .extend_from_slice(&chunk[..n]);
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next line without CRLF; None on EOF.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn send(&mut self, text: &str) -> std::io::Result<()> {
        self.io.write_all(text.as_bytes()).await?;
        self.io.flush().await
    }

    async fn reply(&mut self, line: &str) -> std::io::Result<()> {
        self.send(&format!("{line}\r\n")).await
    }
}

async fn serve(stream: TcpStream, script: &Script, rec: &Mutex<Recorded>) -> std::io::Result<()> {
    let mut p = Peer {
        io: Box::new(stream),
        buf: Vec::new(),
        rec,
    };
    if !script.greet {
        while p.fill().await {}
        return Ok(());
    }
    p.reply(&script.greeting).await?;
    let mut tls = false;
    let mut rcpt_n = 0;
    let mut accepted = 0;
    while let Some(line) = p.line().await {
        let upper = line.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or_default().to_owned();
        if !p.buf.is_empty() {
            rec.lock().unwrap().pipelined.push(verb.clone());
        }
        match verb.as_str() {
            "EHLO" => p.send(&ehlo_reply(script, tls)).await?,
            "HELO" | "NOOP" => p.reply("250 2.0.0 Ok").await?,
            "STARTTLS" => {
                if starttls(&mut p, script).await? {
                    tls = true;
                }
            }
            "AUTH" => auth(&mut p, script, &line).await?,
            "MAIL" => {
                rcpt_n = 0;
                accepted = 0;
                p.reply(&mail_reply(script, p.rec)).await?;
            }
            "RCPT" => {
                let reply = script
                    .rcpt_replies
                    .get(rcpt_n)
                    .cloned()
                    .unwrap_or_else(|| "250 2.1.5 Ok".into());
                rcpt_n += 1;
                if reply.starts_with('2') {
                    accepted += 1;
                }
                p.reply(&reply).await?;
            }
            "DATA" => {
                if !data(&mut p, script, accepted).await? {
                    return Ok(());
                }
            }
            "RSET" => {
                rcpt_n = 0;
                accepted = 0;
                p.reply(&script.rset_reply).await?;
                if script.rset_reply.starts_with("421") {
                    return Ok(());
                }
            }
            "QUIT" => {
                p.reply("221 2.0.0 Bye").await?;
                return Ok(());
            }
            _ => p.reply("502 5.5.2 Error: command not recognized").await?,
        }
    }
    Ok(())
}

/// The EHLO reply: the capabilities the script advertises (STARTTLS only
/// before TLS).
fn ehlo_reply(script: &Script, tls: bool) -> String {
    let mut caps = vec!["fake.test".to_owned()];
    if script.pipelining {
        caps.push("PIPELINING".into());
    }
    if let Some(n) = script.size {
        caps.push(format!("SIZE {n}"));
    }
    if script.starttls && !tls {
        caps.push("STARTTLS".into());
    }
    if !script.auth.is_empty() {
        caps.push(format!("AUTH {}", script.auth.join(" ")));
    }
    if script.eight_bit {
        caps.push("8BITMIME".into());
    }
    if script.smtputf8 {
        caps.push("SMTPUTF8".into());
    }
    let last = caps.len() - 1;
    let mut text = String::new();
    for (i, c) in caps.iter().enumerate() {
        text.push_str(&format!("250{}{c}\r\n", if i == last { ' ' } else { '-' }));
    }
    text
}

/// STARTTLS: the scripted reply, then (after a 220, with a TLS config)
/// the handshake. True when the session is now in TLS.
async fn starttls(p: &mut Peer<'_>, script: &Script) -> std::io::Result<bool> {
    if script.inject_after_starttls {
        p.send("220 2.0.0 Ready to start TLS\r\n250 injected\r\n")
            .await?;
        return Ok(false);
    }
    p.reply(&script.starttls_reply).await?;
    if !script.starttls_reply.starts_with("220") {
        return Ok(false);
    }
    let Some(config) = script.tls.clone() else {
        return Ok(false);
    };
    assert!(p.buf.is_empty(), "client pipelined after STARTTLS");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let io = std::mem::replace(
        &mut p.io,
        Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink())),
    );
    p.io = Box::new(acceptor.accept(io).await?);
    Ok(true)
}

/// DATA: refused without an accepted recipient (unless scripted), else
/// 354, the body up to the final dot (recorded) and the scripted reply.
/// False when the connection is over.
async fn data(p: &mut Peer<'_>, script: &Script, accepted: usize) -> std::io::Result<bool> {
    if accepted == 0 && !script.accept_data_without_rcpt {
        p.reply("554 5.5.1 Error: no valid recipients").await?;
        return Ok(true);
    }
    p.reply("354 End data with <CR><LF>.<CR><LF>").await?;
    if script.close_mid_data {
        if p.buf.is_empty() {
            p.fill().await;
        }
        return Ok(false);
    }
    // Where the search for the end resumes: a large body is
    // scanned once, not again at every read.
    let mut from = 0;
    let body = loop {
        if p.buf.starts_with(b".\r\n") {
            p.buf.drain(..3);
            break Vec::new();
        }
        let end = p.buf[from..].windows(5).position(|w| w == b"\r\n.\r\n");
        if let Some(i) = end.map(|i| i + from) {
            let body = p.buf[..i + 2].to_vec();
            p.buf.drain(..i + 5);
            break body;
        }
        from = p.buf.len().saturating_sub(4);
        if !p.fill().await {
            return Ok(false);
        }
    };
    p.rec.lock().unwrap().bodies.push(body);
    p.reply(&script.end_reply).await?;
    Ok(true)
}

/// A throwaway CA and a server certificate it signed for `localhost` and
/// `127.0.0.1`.
pub struct TestPki {
    /// The CA certificate (PEM): give it to the client as its `ca_file`.
    pub ca_pem: String,
    /// A server configuration presenting the certificate.
    pub server_config: Arc<ServerConfig>,
}

impl TestPki {
    pub fn new() -> TestPki {
        Self::with_leaf(|_| {})
    }

    /// The same, but the server certificate expired in 2021.
    pub fn expired() -> TestPki {
        Self::with_leaf(|leaf| {
            leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
            leaf.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
    }

    /// A PKI whose server certificate's parameters `leaf` adjusts.
    fn with_leaf(leaf: impl FnOnce(&mut rcgen::CertificateParams)) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "postrelay fake CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        leaf(&mut params);
        let cert = params.signed_by(&key, &ca).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        TestPki {
            ca_pem: ca.pem(),
            server_config: Arc::new(config),
        }
    }
}
