//! The queue: the one owner of queued messages while the daemon runs.
//!
//! It keeps an in-memory index of live messages and a schedule ordered by
//! due time (no directory scan on the hot path), and it is the only code
//! that changes their state: accept, hold, release, delete, flush, and the
//! outcome of a delivery attempt. The spool below it is the source of truth
//! on disk; the index is rebuilt from it at start.
//!
//! Operations that touch files are synchronous; async callers run them with
//! `spawn_blocking`. The scheduler (`scheduler`) asks for due messages with
//! [`Queue::take_due`] and sleeps on [`Queue::changed`] otherwise.

pub mod backoff;
pub mod scheduler;
pub mod worker;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::maillog::MailLog;
pub use crate::spool::now_ms;
use crate::spool::{Envelope, Location, QueueId, Spool, SpoolError};

/// State of one message in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Held by the administrator: never scheduled until released.
    pub held: bool,
    /// When the next delivery attempt is due (unix ms).
    pub due_ms: u64,
    /// A delivery attempt is running; not scheduled again until it ends.
    pub in_flight: bool,
}

impl Entry {
    fn schedulable(&self) -> bool {
        !self.held && !self.in_flight
    }
}

/// Handle to the queue (cheap to clone).
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    spool: Spool,
    maillog: Arc<MailLog>,
    state: Mutex<State>,
    changed: Notify,
}

/// The index and the schedule, always updated together under one lock.
#[derive(Default)]
struct State {
    index: BTreeMap<QueueId, Entry>,
    /// `(due_ms, id)` of every schedulable message.
    schedule: BTreeSet<(u64, QueueId)>,
    /// Envelopes of messages accepted by this process and not yet
    /// attempted: their first attempt needs no read of the file just
    /// written. Bounded; past the bound the file is read as usual.
    fresh: HashMap<QueueId, Envelope>,
}

/// Most envelopes kept in [`State::fresh`].
const FRESH_LIMIT: usize = 10_000;

impl State {
    fn insert(&mut self, id: QueueId, entry: Entry) {
        self.remove(&id);
        if entry.schedulable() {
            self.schedule.insert((entry.due_ms, id));
        }
        self.index.insert(id, entry);
    }

    fn remove(&mut self, id: &QueueId) -> Option<Entry> {
        let old = self.index.remove(id)?;
        self.schedule.remove(&(old.due_ms, *id));
        Some(old)
    }

    /// The message left the queue: drops its entry and cached envelope.
    fn forget(&mut self, id: &QueueId) {
        self.fresh.remove(id);
        self.remove(id);
    }

    fn update(&mut self, id: &QueueId, f: impl FnOnce(&mut Entry)) {
        if let Some(mut e) = self.remove(id) {
            f(&mut e);
            self.insert(*id, e);
        }
    }
}

/// What `delete --all`, `flush` and friends report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub usize);

/// What the end of a delivery attempt does to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    /// Some recipients wait: try again at this time (unix ms).
    RetryAt(u64),
    /// Every recipient is done: the message was removed from the spool.
    Removed,
}

impl Queue {
    /// Builds the index from the spool (after recovery).
    pub fn load(spool: Spool, maillog: Arc<MailLog>) -> Result<Queue, SpoolError> {
        let mut state = State::default();
        for (env, loc) in spool.list()? {
            let entry = Entry {
                held: loc == Location::Hold,
                due_ms: env.next_attempt_ms,
                in_flight: false,
            };
            state.insert(env.id, entry);
        }
        let inner = Inner {
            spool,
            maillog,
            state: Mutex::new(state),
            changed: Notify::new(),
        };
        Ok(Queue {
            inner: Arc::new(inner),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the two maps out of
        // step (every update goes through State's insert/remove), so
        // poison is ignored.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The spool under the queue.
    pub fn spool(&self) -> &Spool {
        &self.inner.spool
    }

    /// The mail log.
    pub fn maillog(&self) -> &Arc<MailLog> {
        &self.inner.maillog
    }

    /// A message was committed (by intake, or a bounce we generated).
    pub fn accepted(&self, env: &Envelope) {
        let entry = Entry {
            held: false,
            due_ms: env.next_attempt_ms,
            in_flight: false,
        };
        let mut state = self.state();
        state.insert(env.id, entry);
        if state.fresh.len() < FRESH_LIMIT {
            state.fresh.insert(env.id, env.clone());
        }
        drop(state);
        self.inner.changed.notify_one();
    }

    /// Number of queued messages (held included).
    pub fn len(&self) -> usize {
        self.state().index.len()
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index entry of a message.
    pub fn entry(&self, id: &QueueId) -> Option<Entry> {
        self.state().index.get(id).copied()
    }

    /// Takes the earliest message due at `now_ms`, marking it in flight.
    /// The envelope comes along when this process accepted the message and
    /// it was not attempted yet (otherwise the worker reads the file).
    pub fn take_due(&self, now_ms: u64) -> Option<(QueueId, Option<Envelope>)> {
        let mut state = self.state();
        let &(due, id) = state.schedule.first()?;
        if due > now_ms {
            return None;
        }
        state.update(&id, |e| e.in_flight = true);
        let fresh = state.fresh.remove(&id);
        Some((id, fresh))
    }

    /// When the earliest schedulable message is due, if any.
    pub fn next_due(&self) -> Option<u64> {
        self.state().schedule.first().map(|&(due, _)| due)
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

    /// Applies the end of an attempt: rewrites the envelope (where the
    /// message now is: it may have been held meanwhile) or removes the
    /// message, and reschedules it. Runs under the queue lock, so an
    /// administrator's hold or delete cannot interleave with it. A message
    /// deleted during the attempt stays deleted.
    pub fn finish_attempt(&self, env: &Envelope, done: bool) -> Result<AfterAttempt, SpoolError> {
        let mut state = self.state();
        let Some(entry) = state.index.get(&env.id).copied() else {
            return Ok(AfterAttempt::Removed);
        };
        if done {
            match self.inner.spool.remove_lazily(&env.id) {
                // Gone from disk already (deleted by hand, or a removal
                // that failed halfway): nothing left to retry.
                Ok(()) | Err(SpoolError::NotFound { .. }) => {}
                Err(e) => {
                    // Still queued on disk: schedule it again instead of
                    // leaving it in flight until a restart. Its envelope on
                    // disk still lists the recipients as pending, so the next
                    // attempt may deliver again: a duplicate, never a loss.
                    state.update(&env.id, |e| {
                        e.in_flight = false;
                        e.due_ms = now_ms().saturating_add(60_000);
                    });
                    return Err(e);
                }
            }
            state.forget(&env.id);
            self.inner.maillog.removed(&env.id.to_string());
            return Ok(AfterAttempt::Removed);
        }
        let loc = if entry.held {
            Location::Hold
        } else {
            Location::Queue
        };
        let result = self.inner.spool.rewrite_envelope(env, loc);
        // Whatever the rewrite did, the message is no longer in flight: a
        // failed rewrite leaves the previous envelope, which is retried.
        state.update(&env.id, |e| {
            e.in_flight = false;
            e.due_ms = env.next_attempt_ms;
        });
        drop(state);
        self.inner.changed.notify_one();
        result.map(|()| AfterAttempt::RetryAt(env.next_attempt_ms))
    }

    /// Marks an attempt that could not even start (the envelope could not
    /// be read) as over, retrying at `due_ms`.
    pub fn abandon_attempt(&self, id: &QueueId, due_ms: u64) {
        self.state().update(id, |e| {
            e.in_flight = false;
            e.due_ms = due_ms;
        });
        self.inner.changed.notify_one();
    }

    /// Moves a message to hold/; it is not delivered until released.
    pub fn hold(&self, id: &QueueId) -> Result<(), SpoolError> {
        let mut state = self.state();
        self.inner.spool.hold(id)?;
        state.fresh.remove(id);
        state.update(id, |e| e.held = true);
        self.inner
            .maillog
            .line("postsuper", &id.to_string(), "placed on hold");
        Ok(())
    }

    /// Returns a held message to the active queue.
    pub fn release(&self, id: &QueueId) -> Result<(), SpoolError> {
        let mut state = self.state();
        self.inner.spool.release(id)?;
        state.update(id, |e| e.held = false);
        drop(state);
        self.inner.changed.notify_one();
        self.inner
            .maillog
            .line("postsuper", &id.to_string(), "released from hold");
        Ok(())
    }

    /// Deletes one message (envelope first, then body).
    pub fn delete(&self, id: &QueueId) -> Result<(), SpoolError> {
        let mut state = self.state();
        self.inner.spool.remove(id)?;
        state.forget(id);
        self.inner.maillog.removed(&id.to_string());
        Ok(())
    }

    /// Deletes every message; returns how many.
    pub fn delete_all(&self) -> Result<Count, SpoolError> {
        let mut state = self.state();
        let mut n = 0;
        for (env, _) in self.inner.spool.list()? {
            self.inner.spool.remove(&env.id)?;
            state.forget(&env.id);
            self.inner.maillog.removed(&env.id.to_string());
            n += 1;
        }
        Ok(Count(n))
    }

    /// Makes every message that is not held due now; returns how many.
    pub fn flush(&self) -> Count {
        let now = now_ms();
        let mut state = self.state();
        let ids: Vec<QueueId> = state
            .index
            .iter()
            .filter(|(_, e)| !e.held)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            state.update(id, |e| e.due_ms = e.due_ms.min(now));
        }
        drop(state);
        self.inner.changed.notify_one();
        Count(ids.len())
    }
}

#[cfg(test)]
mod tests;
