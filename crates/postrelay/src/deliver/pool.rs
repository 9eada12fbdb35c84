//! Connections to one relay, reused across messages.
//!
//! Opening a session to a provider costs a TCP handshake, a TLS handshake
//! and an AUTH exchange; reusing it for the next message costs one RSET,
//! which the transaction pipelines with its MAIL (no round trip of its
//! own). Should that RSET fail, the session was stale and the caller asks
//! for a fresh one (`reuse = false`).
//! The pool keeps idle sessions for `idle_timeout`, retires a session after
//! `max_messages` messages, and never has more than `max_connections`
//! sessions open (idle or busy) to the relay.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::client::{Failure, Session};

/// How long QUIT may take when a session is retired.
const QUIT_BUDGET: Duration = Duration::from_secs(10);

struct Idle {
    session: Session,
    since: Instant,
    permit: OwnedSemaphorePermit,
}

/// A session lent to one delivery; give it back with [`Pool::checkin`].
pub struct Lease {
    /// The session (open, greeted, authenticated).
    pub session: Session,
    permit: OwnedSemaphorePermit,
    /// Whether it was reused (no connection setup this time).
    pub reused: bool,
}

/// The pool of one relay.
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    slots: Arc<Semaphore>,
    returned: Notify,
    idle_timeout: Duration,
    max_messages: u32,
}

impl Pool {
    /// An empty pool.
    pub fn new(max_connections: usize, idle_timeout: Duration, max_messages: u32) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            returned: Notify::new(),
            idle_timeout,
            max_messages: max_messages.max(1),
        }
    }

    fn pop_idle(&self) -> Option<Idle> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// A session for one message: with `reuse`, an idle one (the
    /// transaction resets it), else a new one from `open` when the
    /// connection limit allows; otherwise waits for either. Without
    /// `reuse` always a new one, closing an idle session to make room.
    pub async fn checkout<F, Fut>(&self, reuse: bool, open: F) -> Result<Lease, Failure>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Session, Failure>>,
    {
        loop {
            while reuse && let Some(idle) = self.pop_idle() {
                if idle.since.elapsed() > self.idle_timeout || !idle.session.is_reusable() {
                    retire(idle.session);
                    continue;
                }
                return Ok(Lease {
                    session: idle.session,
                    permit: idle.permit,
                    reused: true,
                });
            }
            let permit = match self.slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) if !reuse && let Some(idle) = self.pop_idle() => {
                    retire(idle.session);
                    idle.permit
                }
                Err(_) => {
                    // Cancel safety: both branches are cancel-safe; a
                    // permit acquired here is used below, a notification
                    // only means "look at the idle list again".
                    tokio::select! {
                        p = self.slots.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => continue,
                        },
                        _ = self.returned.notified() => continue,
                    }
                }
            };
            let session = open().await?;
            return Ok(Lease {
                session,
                permit,
                reused: false,
            });
        }
    }

    /// Returns a healthy session after a message; it is kept for the next
    /// one unless it has carried `max_messages` already.
    pub fn checkin(&self, lease: Lease) {
        // A session that ended (a 421, a drop mid-DATA) or has carried its
        // share gives its slot back now, not at the next checkout.
        if !lease.session.is_reusable() || lease.session.messages_sent() >= self.max_messages {
            retire(lease.session);
            drop(lease.permit);
            self.returned.notify_one();
            return;
        }
        let idle = Idle {
            session: lease.session,
            since: Instant::now(),
            permit: lease.permit,
        };
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(idle);
        self.returned.notify_one();
    }

    /// Closes sessions idle for longer than `idle_timeout`.
    pub fn reap(&self) {
        let expired: Vec<Idle> = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let (old, keep): (Vec<Idle>, Vec<Idle>) = idle
                .drain(..)
                .partition(|i| i.since.elapsed() > self.idle_timeout);
            *idle = keep;
            old
        };
        for i in expired {
            retire(i.session);
        }
    }

    /// Closes every idle session (shutdown, reload).
    pub fn close_all(&self) {
        let all: Vec<Idle> = self
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for i in all {
            retire(i.session);
        }
    }

    /// Number of idle sessions (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Says QUIT in the background, bounded.
fn retire(session: Session) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(QUIT_BUDGET, session.quit()).await;
    });
}
