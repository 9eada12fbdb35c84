//! Intake: the SMTP listeners on which local programs hand mail to
//! postrelay, and pickup of the mail `sendmail` leaves in maildrop/.
//!
//! - `session`: one connection's command loop;
//! - `message`: DATA bytes → spooled body, with limits;
//! - `headers`: the header section and the lines postrelay adds;
//! - `policy`: who may relay where;
//! - `recipients`: whether a local recipient exists (aliases, system users);
//! - `submission`: the optional authenticated listeners of
//!   `[intake.submission]` (STARTTLS or implicit TLS, then AUTH);
//! - `auth`: password verification and the brute-force limiter;
//! - `limits`: the connection pools, in total and per client;
//! - `pickup`: maildrop/ files → queued messages;
//! - `submit_socket`: `sendmail` straight to the running daemon.
//!
//! Intake turns a client's bytes into a body and an envelope, and hands
//! them to [`Queue::accept`], the one door into the queue; a message is
//! acknowledged only after that returns, which is after the group commit
//! made it durable. It never touches spool directories itself.

pub mod auth;
pub mod headers;
pub mod limits;
pub mod message;
pub mod pickup;
pub mod policy;
pub mod recipients;
pub mod session;
pub mod submission;
pub mod submit_socket;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::maillog::MailLog;
use crate::queue::Queue;
use limits::{Pool, Refused};

/// What every session shares.
pub struct Shared {
    /// The current configuration; each session takes a snapshot at connect.
    pub config: watch::Receiver<Arc<Config>>,
    /// The queue: the one door for new messages.
    pub queue: Queue,
    /// The operator's mail log.
    pub maillog: Arc<MailLog>,
    /// Cancelled when the daemon stops accepting.
    pub shutdown: CancellationToken,
}

impl Shared {
    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }
}

/// The reply when [`Queue::accept`] failed: try again later, `452` when
/// the disk is full.
pub(crate) fn not_queued(e: &crate::spool::SpoolError) -> postrelay_smtp::reply::Reply {
    use postrelay_smtp::reply::Reply;
    if e.is_no_space() {
        Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
    } else {
        Reply::new(451, "4.3.0", "Local error in processing, try again later")
    }
}

/// Accepts connections on one loopback listener until shutdown. Each
/// session runs as its own task under `tracker`, so the daemon can wait
/// for them.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    pool: Arc<Pool>,
    tracker: TaskTracker,
) {
    let busy_reply = true;
    accept_loop(
        listener,
        Listener {
            shared,
            pool,
            tracker,
            busy_reply,
            per_client: intake_cap,
        },
        |stream, peer, shared| async move {
            let stream = crate::net::tls_server::ServerStream::Plain(stream);
            session::Session::new(stream, peer, shared).run().await;
        },
    )
    .await
}

/// The per-client cap on the loopback intake: `mynetworks` clients (local
/// programs, all from one loopback address) are exempt.
fn intake_cap(config: &Config, ip: IpAddr) -> Option<usize> {
    let trusted = policy::is_trusted(&config.intake, ip);
    (!trusted).then_some(config.intake.max_connections_per_client)
}

/// What an accept loop needs besides its socket.
pub(crate) struct Listener {
    pub shared: Arc<Shared>,
    /// This listener kind's pool (the loopback intake's, or submission's).
    pub pool: Arc<Pool>,
    pub tracker: TaskTracker,
    /// Answer a refused client with `421` (plaintext listeners only).
    pub busy_reply: bool,
    /// The cap on one client's sessions under the configuration in force
    /// (`None`: exempt).
    pub per_client: fn(&Config, IpAddr) -> Option<usize>,
}

/// The accept loop every listener shares: accepts until shutdown, backs
/// off on accept errors (EMFILE and friends) instead of spinning, takes a
/// slot in the listener's pool, within the client's cap, and runs `handle`
/// under the tracker. A client refused a slot gets `421 4.7.0` when
/// `busy_reply` (a plaintext listener), or is simply closed (implicit TLS:
/// a reply would need the handshake there is no room for).
pub(crate) async fn accept_loop<F, Fut>(listener: TcpListener, l: Listener, handle: F)
where
    F: Fn(TcpStream, SocketAddr, Arc<Shared>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let local = listener.local_addr().ok();
    let inherited_nodelay = nodelay_for_accepted(&listener);
    let metrics = l.shared.maillog.metrics().clone();
    let accepted_here = local.map(|addr| metrics.connections_on(&addr));
    loop {
        // Cancel safety: `accept` is cancel-safe; a connection not yet
        // accepted stays in the kernel backlog and is reset at close.
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = l.shared.shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!(listener = ?local, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !inherited_nodelay {
            let _ = stream.set_nodelay(true);
        }
        if let Some(counter) = &accepted_here {
            counter.inc();
        }
        let config = l.shared.config();
        match l.pool.admit(peer.ip(), (l.per_client)(&config, peer.ip())) {
            Ok(admission) => {
                // Boxed: the task then holds a pointer, not the session's
                // 4 KB state, which spawning and completing would copy.
                let session = Box::pin(handle(stream, peer, l.shared.clone()));
                l.tracker.spawn(async move {
                    session.await;
                    drop(admission);
                });
            }
            Err(refused) => {
                metrics.refused(refused.limit_name());
                log_refused(refused, peer, local);
                if l.busy_reply {
                    let reply = busy_reply(refused, peer.ip(), &config.hostname);
                    l.tracker.spawn(say_and_close(stream, reply));
                }
            }
        }
    }
}

/// Sets `TCP_NODELAY` on the listening socket, so that the sockets it
/// accepts start with it (Linux copies it to each accepted socket) and
/// need no `setsockopt` each; whether they do. Elsewhere, or if the option
/// cannot be set, the accept loop sets it per connection as before.
fn nodelay_for_accepted(listener: &TcpListener) -> bool {
    let set = nix::sys::socket::setsockopt(listener, nix::sys::socket::sockopt::TcpNoDelay, &true);
    cfg!(target_os = "linux") && set.is_ok()
}

/// The log line that names a refused client and the limit it met.
fn log_refused(refused: Refused, peer: SocketAddr, listener: Option<SocketAddr>) {
    match refused {
        Refused::Full => {
            tracing::warn!(%peer, listener = ?listener, "too many connections; refusing")
        }
        Refused::ClientCap { limit } => tracing::warn!(
            %peer,
            listener = ?listener,
            limit,
            "too many connections from {}; refusing",
            peer.ip()
        ),
    }
}

/// The `421` for a refused connection.
fn busy_reply(refused: Refused, ip: IpAddr, host: &str) -> String {
    match refused {
        Refused::Full => {
            format!("421 4.7.0 {host} Error: too many connections, try again later\r\n")
        }
        Refused::ClientCap { .. } => {
            format!("421 4.7.0 {host} Error: too many connections from {ip}\r\n")
        }
    }
}

/// Writes `reply` (bounded in time) and closes.
pub(crate) async fn say_and_close(mut stream: TcpStream, reply: String) {
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(reply.as_bytes())).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_sockets_start_with_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        assert!(nodelay_for_accepted(&listener));
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
