//! The counting sink that plays the smart host in the benchmark: accepts
//! every transaction, keeps nothing, and appends one line per transaction
//! to its arrival log (`<X-Load-Id> <recipients> <unix-ns>`, see
//! [`crate::stats`]). With `--tls` it offers STARTTLS (a self-signed
//! certificate made at start) and refuses MAIL before it; with `--user` it
//! requires AUTH PLAIN, as a provider's submission port does. All sessions
//! run on one thread.
//!
//! Not a mail server: nothing is stored or forwarded, and only PLAIN is
//! offered. The arrival log is a local file appended with one write per
//! transaction from the sink's own thread (no lock, nothing else waits).

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use postrelay_smtp::DataReceiver;
use tokio::net::TcpListener;

use crate::conn::Conn;
use crate::error::LoadError;
use crate::send::now_ns;

mod session;

/// How the sink behaves.
#[derive(clap::Args, Debug, Clone)]
pub struct SinkArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub listen: SocketAddr,
    /// Offer STARTTLS and require it before MAIL.
    #[arg(long)]
    pub tls: bool,
    /// Require AUTH PLAIN as this user (after STARTTLS when `--tls`).
    #[arg(long, requires = "password_file")]
    pub user: Option<String>,
    /// The file holding the password for `--user`.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// The arrival log to append to.
    #[arg(long)]
    pub log: Option<PathBuf>,
}

/// What the sink has seen so far (shared with whoever started it).
#[derive(Debug, Default)]
pub struct Counters {
    /// Transactions accepted (one per `.`).
    pub transactions: AtomicU64,
    /// Recipients over all transactions.
    pub recipients: AtomicU64,
    /// Sessions that upgraded to TLS.
    pub tls_sessions: AtomicU64,
    /// Successful AUTH exchanges.
    pub logins: AtomicU64,
}

/// A bound sink, ready to serve.
pub struct Sink {
    listener: TcpListener,
    config: Rc<Config>,
    counters: Arc<Counters>,
}

struct Config {
    tls: Option<Arc<rustls::ServerConfig>>,
    login: Option<(String, String)>,
    log: Option<RefCell<std::fs::File>>,
    counters: Arc<Counters>,
}

impl Sink {
    /// Binds the listener, makes the certificate and opens the log.
    pub async fn bind(args: &SinkArgs) -> Result<Sink, LoadError> {
        let login = match (&args.user, &args.password_file) {
            (Some(u), Some(f)) => {
                let p = std::fs::read_to_string(f)?;
                let p = p.strip_suffix('\n').unwrap_or(&p).to_owned();
                Some((u.clone(), p))
            }
            _ => None,
        };
        let log = match &args.log {
            Some(path) => Some(RefCell::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
            None => None,
        };
        let counters = Arc::new(Counters::default());
        let config = Config {
            tls: if args.tls { Some(tls_config()?) } else { None },
            login,
            log,
            counters: counters.clone(),
        };
        Ok(Sink {
            listener: TcpListener::bind(args.listen).await?,
            config: Rc::new(config),
            counters,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, LoadError> {
        Ok(self.listener.local_addr()?)
    }

    /// Its counters.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Serves sessions until the process ends; call inside a `LocalSet`.
    pub async fn serve(self) -> Result<(), LoadError> {
        loop {
            let (tcp, _) = self.listener.accept().await?;
            let config = self.config.clone();
            tokio::task::spawn_local(async move {
                // A session that breaks is the client's business.
                let _ = session::run(Conn::new(tcp), &config).await;
            });
        }
    }
}

/// Runs a sink on a single-threaded runtime until the process is killed.
pub fn run(args: &SinkArgs) -> Result<(), LoadError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let sink = Sink::bind(args).await?;
        eprintln!("postrelay-load sink listening on {}", sink.local_addr()?);
        sink.serve().await
    })
}

/// A server configuration with a fresh self-signed certificate for
/// `localhost` and `127.0.0.1` (clients of the benchmark do not verify it).
fn tls_config() -> Result<Arc<rustls::ServerConfig>, LoadError> {
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let tls = |e: &dyn std::fmt::Display| LoadError::Tls(e.to_string());
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .map_err(|e| tls(&e))?;
    Ok(Arc::new(config))
}

/// The `X-Load-Id` of a message, from its header section.
pub fn load_id(message: &[u8]) -> Option<&str> {
    const NAME: &[u8] = b"x-load-id:";
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        if line.len() > NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            let v = std::str::from_utf8(&line[NAME.len()..]).ok()?.trim();
            return (!v.is_empty() && !v.contains(' ')).then_some(v);
        }
    }
    None
}

/// Reads the data after `354` to its end; the message's load id.
async fn receive(c: &mut Conn) -> Result<Option<String>, LoadError> {
    let mut rx = DataReceiver::with_max_line(0);
    let mut head = Vec::new();
    let mut id: Option<Option<String>> = None;
    loop {
        let p = rx.ingest(c.buffered(), &mut head);
        c.consume(p.consumed);
        if id.is_none() && (p.done || head.windows(4).any(|w| w == b"\r\n\r\n")) {
            id = Some(load_id(&head).map(str::to_owned));
        }
        if id.is_some() {
            // Only the header section is of interest.
            head.clear();
        }
        if p.done {
            return Ok(id.flatten());
        }
        c.fill().await?;
    }
}

impl Config {
    fn note(&self, id: Option<&str>, rcpts: u32) -> Result<(), LoadError> {
        self.counters.transactions.fetch_add(1, Ordering::Relaxed);
        self.counters
            .recipients
            .fetch_add(u64::from(rcpts), Ordering::Relaxed);
        if let Some(log) = &self.log {
            let line = format!("{} {rcpts} {}\n", id.unwrap_or("-"), now_ns());
            log.borrow_mut().write_all(line.as_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
