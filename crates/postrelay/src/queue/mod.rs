//! The queue: the one owner of queued messages while the daemon runs, and
//! the one door through which a new message enters.
//!
//! - [`Queue::accept`] (`accept.rs`) is how every message gets queued:
//!   SMTP intake, submission, pickup of the sendmail drop, and the notices
//!   the daemon writes itself. It expands aliases, stages, group-commits
//!   (`commit.rs`) and indexes; the caller acknowledges only after it
//!   returns.
//! - The index and schedule (`index.rs`) say what exists and what is due;
//!   the scheduler (`scheduler.rs`) asks for due messages with
//!   [`Queue::take_due`] and sleeps on [`Queue::changed`] otherwise.
//! - A delivery attempt (`worker.rs`) ends in [`Queue::finish_attempt`];
//!   its notices are built in `notice.rs`; every retry time comes from
//!   `backoff.rs`.
//! - The administrator's hold, release, delete and flush are in `admin.rs`.
//!
//! The spool below is the source of truth on disk; the index is rebuilt
//! from it at start. **No disk I/O runs under the index lock**: file work
//! happens first (the spool's own lock serialises it), then the index is
//! updated in a few microseconds, so intake's `250` and the scheduler never
//! wait behind an fsync. Operations that touch files are synchronous;
//! async callers run them with `spawn_blocking`.
//!
//! Not for: talking SMTP, deciding where mail goes (the router decides;
//! the queue only applies its alias expansion), or delivering.

mod accept;
mod admin;
pub mod backoff;
pub mod commit;
mod index;
mod notice;
mod progress;
pub mod scheduler;
pub mod track;
pub mod worker;

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::Notify;

use crate::maillog::MailLog;
use crate::route::Router;
pub use crate::spool::now_ms;
use crate::spool::{Found, QueueId, Spool, SpoolError};
pub use admin::Count;
use commit::Committer;
use index::Index;
pub use index::{Entry, QueueStats};

/// Handle to the queue (cheap to clone).
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    spool: Spool,
    maillog: Arc<MailLog>,
    /// Makes accepted messages durable, many per flush.
    committer: Committer,
    /// The routing of the configuration in force, for alias expansion at
    /// acceptance (replaced on reload).
    router: RwLock<Arc<Router>>,
    index: Mutex<Index>,
    changed: Notify,
    /// Recent attempts' results, for `postrelay send-test`.
    tracker: track::Tracker,
}

/// What the end of a delivery attempt does to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    /// Some recipients wait: try again at this time (unix ms).
    RetryAt(u64),
    /// Every recipient is done: the message was removed from the spool.
    Removed,
}

impl Queue {
    /// Builds the index by reading every envelope of the spool and starts
    /// the group committer; `router` expands aliases of accepted messages.
    /// (The daemon, which has just recovered the spool, uses
    /// [`Queue::load_recovered`] instead: recovery read them already.)
    pub fn load(
        spool: Spool,
        maillog: Arc<MailLog>,
        router: Arc<Router>,
    ) -> Result<Queue, SpoolError> {
        let found = spool.list()?.into_iter().map(|(env, loc)| Found {
            id: env.id,
            location: loc,
            next_attempt_ms: env.next_attempt_ms,
        });
        Ok(Queue::with_index(
            spool,
            Index::from_found(found),
            maillog,
            router,
        ))
    }

    /// Builds the index from what [`Spool::recover`] found (its
    /// `RecoveryReport::found`), without reading the envelopes again, and
    /// starts the group committer. Call it right after recovery, before
    /// anything is accepted.
    pub fn load_recovered(
        spool: Spool,
        found: Vec<Found>,
        maillog: Arc<MailLog>,
        router: Arc<Router>,
    ) -> Queue {
        Queue::with_index(spool, Index::from_found(found), maillog, router)
    }

    fn with_index(spool: Spool, index: Index, maillog: Arc<MailLog>, router: Arc<Router>) -> Queue {
        let inner = Inner {
            committer: Committer::start(spool.clone()),
            spool,
            maillog,
            router: RwLock::new(router),
            index: Mutex::new(index),
            changed: Notify::new(),
            tracker: track::Tracker::default(),
        };
        Queue {
            inner: Arc::new(inner),
        }
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the lock cannot leave the two maps out of
        // step (every update goes through Index's insert/remove), so
        // poison is ignored.
        self.inner.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The spool under the queue (for reading: listing, envelopes, bodies).
    pub fn spool(&self) -> &Spool {
        &self.inner.spool
    }

    /// The mail log.
    pub fn maillog(&self) -> &Arc<MailLog> {
        &self.inner.maillog
    }

    /// The router in force.
    pub fn router(&self) -> Arc<Router> {
        self.inner
            .router
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the router (configuration reloaded): messages accepted from
    /// now on are expanded with the new aliases.
    pub fn set_router(&self, router: Arc<Router>) {
        *self.inner.router.write().unwrap_or_else(|p| p.into_inner()) = router;
    }

    /// Commits what was submitted and stops the committer (daemon stop).
    /// Blocking; later acceptances fail with `CommitterStopped`.
    pub fn shutdown(&self) {
        self.inner.committer.clone().shutdown();
    }

    /// Number of queued messages (held included).
    pub fn len(&self) -> usize {
        self.index().len()
    }

    /// What the metrics endpoint reports: messages by state and the
    /// arrival time of the oldest.
    pub fn stats(&self) -> QueueStats {
        self.index().stats()
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index entry of a message.
    pub fn entry(&self, id: &QueueId) -> Option<Entry> {
        self.index().get(id)
    }

    /// Remembers the result of an attempt of `id` for [`Queue::track`].
    pub fn note_attempt(&self, id: QueueId, attempt: &crate::deliver::Attempt) {
        self.inner.tracker.record(id, track::Tracked::of(attempt));
    }

    /// Where message `id` stands and what its last attempt said (the
    /// control socket's `track` request, for `postrelay send-test`).
    pub fn track(&self, id: &QueueId) -> track::Tracked {
        use track::{TrackState, Tracked};
        let entry = self.entry(id);
        let remembered = self.inner.tracker.get(id);
        match (entry, remembered) {
            (Some(e), Some(mut t)) if e.in_flight => {
                t.state = TrackState::InFlight;
                t
            }
            (_, Some(t)) => t,
            (Some(e), None) if e.in_flight => Tracked::bare(TrackState::InFlight),
            (Some(_), None) => Tracked::bare(TrackState::Queued),
            (None, None) => Tracked::bare(TrackState::Unknown),
        }
    }

    /// Takes the earliest message due at `now_ms`, marking it in flight.
    /// The envelope comes along when this process accepted the message and
    /// it was not attempted yet (otherwise the worker reads the file).
    pub fn take_due(&self, now_ms: u64) -> Option<(QueueId, Option<crate::spool::Envelope>)> {
        let mut index = self.index();
        let (due, id) = index.first_due()?;
        if due > now_ms {
            return None;
        }
        let fresh = index.take(&id);
        Some((id, fresh))
    }

    /// When the earliest schedulable message is due, if any.
    pub fn next_due(&self) -> Option<u64> {
        self.index().first_due().map(|(due, _)| due)
    }

    /// Wakes the scheduler to look again (configuration reloaded).
    pub fn wake(&self) {
        self.inner.changed.notify_one();
    }

    /// Resolves when the schedule may have changed (a message arrived, was
    /// released or flushed). Cancel-safe (`Notify::notified`).
    pub async fn changed(&self) {
        self.inner.changed.notified().await
    }
}

#[cfg(test)]
mod tests;
