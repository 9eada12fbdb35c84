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
//! - `pickup`: maildrop/ files → queued messages.
//!
//! Intake turns a client's bytes into a body and an envelope, and hands
//! them to [`Queue::accept`], the one door into the queue; a message is
//! acknowledged only after that returns, which is after the group commit
//! made it durable. It never touches spool directories itself.

pub mod auth;
pub mod headers;
pub mod message;
pub mod pickup;
pub mod policy;
pub mod recipients;
pub mod session;
pub mod submission;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::maillog::MailLog;
use crate::queue::Queue;

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

/// Accepts connections on one loopback listener until shutdown. Each
/// session runs as its own task under `tracker`, so the daemon can wait
/// for them.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
) {
    let busy_reply = true;
    accept_loop(
        listener,
        shared,
        slots,
        tracker,
        busy_reply,
        |stream, peer, shared| async move {
            let stream = crate::net::tls_server::ServerStream::Plain(stream);
            session::Session::new(stream, peer, shared).run().await;
        },
    )
    .await
}

/// The accept loop every listener shares: accepts until shutdown, backs
/// off on accept errors (EMFILE and friends) instead of spinning, takes a
/// connection slot (`intake.max_connections`, shared by all listeners)
/// and runs `handle` under `tracker`. Without a free slot the client gets
/// `421 4.7.0` when `busy_reply` (a plaintext listener), or is simply
/// closed (implicit TLS: a reply would need the handshake there is no
/// room for).
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    busy_reply: bool,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Arc<Shared>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let local = listener.local_addr().ok();
    loop {
        // Cancel safety: `accept` is cancel-safe; a connection not yet
        // accepted stays in the kernel backlog and is reset at close.
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shared.shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!(listener = ?local, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let metrics = shared.maillog.metrics();
        if let Some(l) = &local {
            metrics.connection(l);
        }
        let slot = slots.clone().try_acquire_owned();
        if slot.is_err() {
            metrics.refused("max_connections");
        }
        match slot {
            Ok(permit) => {
                let session = handle(stream, peer, shared.clone());
                tracker.spawn(async move {
                    session.await;
                    drop(permit);
                });
            }
            Err(_) if busy_reply => {
                let host = shared.config().hostname.clone();
                tracker.spawn(refuse_busy(stream, peer, host));
            }
            Err(_) => tracing::warn!(%peer, "too many connections; closing"),
        }
    }
}

/// Answers a connection over the concurrency limit and closes it.
async fn refuse_busy(mut stream: TcpStream, peer: SocketAddr, host: String) {
    tracing::warn!(%peer, "too many connections; refusing");
    let reply = format!("421 4.7.0 {host} Error: too many connections, try again later\r\n");
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(reply.as_bytes())).await;
    let _ = stream.shutdown().await;
}
