//! Intake: the SMTP listeners on which local programs hand mail to
//! postrelay, and the path from an accepted DATA to a committed queue file.
//!
//! - `session`: one connection's command loop;
//! - `message`: DATA bytes → spooled body, with limits;
//! - `headers`: the header section and the lines postrelay adds;
//! - `policy`: who may relay where;
//! - `submission`: the optional authenticated listeners of
//!   `[intake.submission]` (STARTTLS or implicit TLS, then AUTH);
//! - `auth`: password verification and the brute-force limiter.
//!
//! A message is acknowledged only after [`Shared::accept`] returns, which
//! is after the group commit made it durable.

pub mod auth;
pub mod headers;
pub mod message;
pub mod pickup;
pub mod policy;
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
use crate::deliver::Deliverer;
use crate::maillog::MailLog;
use crate::queue::Queue;
use crate::spool::{BodyWriter, Committer, Envelope, Recipient, Spool, SpoolError};

/// What every session shares.
pub struct Shared {
    /// The current configuration; each session takes a snapshot at connect.
    pub config: watch::Receiver<Arc<Config>>,
    /// The spool (sessions create bodies in its tmp/).
    pub spool: Spool,
    /// The group committer that makes messages durable.
    pub committer: Committer,
    /// The owner of queued messages.
    pub queue: Queue,
    /// The operator's mail log.
    pub maillog: Arc<MailLog>,
    /// Cancelled when the daemon stops accepting.
    pub shutdown: CancellationToken,
    /// The delivery engine in force; its router expands aliases here.
    pub deliverer: watch::Receiver<Arc<Deliverer>>,
}

impl Shared {
    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// Expands aliases (`[routing] aliases`): each recipient becomes its
    /// final addresses, which remember the address the client gave.
    /// Doing it at acceptance (as Postfix's cleanup does for virtual
    /// aliases) keeps one state per final recipient, and `queue list`
    /// shows where mail will really go.
    fn expand_aliases(&self, envelope: &mut Envelope) {
        let engine = self.deliverer.borrow().clone();
        let router = engine.router();
        let mut expanded: Vec<Recipient> = Vec::with_capacity(envelope.recipients.len());
        for r in envelope.recipients.drain(..) {
            for routed in router.route(&r.address) {
                if let Some(w) = &routed.warning {
                    tracing::warn!(recipient = %r.address, warning = %w, "alias expansion");
                }
                if expanded
                    .iter()
                    .any(|e| e.address.eq_ignore_ascii_case(&routed.address))
                {
                    continue;
                }
                let mut rcpt = r.clone();
                if !routed.address.eq_ignore_ascii_case(&r.address) {
                    rcpt.original = Some(r.original.clone().unwrap_or_else(|| r.address.clone()));
                    rcpt.address = routed.address;
                }
                expanded.push(rcpt);
            }
        }
        envelope.recipients = expanded;
    }

    /// Makes a received message durable and queues it. Returns only after
    /// the body and envelope are on disk and the queue directory is synced:
    /// the caller may then acknowledge.
    pub async fn accept(
        &self,
        body: BodyWriter,
        envelope: Envelope,
    ) -> Result<Envelope, SpoolError> {
        let mut envelope = envelope;
        self.expand_aliases(&mut envelope);
        let staged = if self.spool.stage_blocks() {
            // fdatasync blocks; keep it off the reactor threads.
            let spool = self.spool.clone();
            let env = envelope.clone();
            tokio::task::spawn_blocking(move || spool.stage(body, &env))
                .await
                .map_err(|e| SpoolError::Io {
                    op: "stage (task panicked)",
                    path: self.spool.root().to_path_buf(),
                    source: std::io::Error::other(e.to_string()),
                })??
        } else {
            // Without per-file syncs staging is a flush and a small write
            // to the page cache (microseconds); the committer's syncfs
            // does the waiting, on its own thread.
            self.spool.stage(body, &envelope)?
        };
        // The staged envelope carries the size of the body as written.
        let envelope = staged.envelope().clone();
        self.committer.commit(staged).await?;
        self.queue.accepted(&envelope);
        Ok(envelope)
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
        match slots.clone().try_acquire_owned() {
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
