//! Changes of state after acceptance: the end of a delivery attempt (and
//! the recipients it delivered on the way), and the administrator's hold, release, delete and flush.
//!
//! Each one does its file work first, outside the index lock (the spool's
//! own lock serialises file operations, so each check-then-rename there is
//! atomic), then updates the index in a few microseconds. Concurrent
//! changes of one message stay consistent because each index update only
//! touches its own fields and is a no-op for a message already forgotten:
//! a message deleted during its attempt stays deleted, a message held
//! during its attempt gets its new envelope in hold/.
//!
//! When a file operation fails halfway (a rename done, its directory fsync
//! failed), the index is re-read from what the disk says, so the two never
//! drift apart until a restart.

use super::{AfterAttempt, Queue};
use crate::spool::{Envelope, Location, QueueId, SpoolError};

/// What `delete --all`, `flush` and friends report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub usize);

impl Queue {
    /// Applies the end of an attempt: removes the message when `done`,
    /// else rewrites its envelope wherever it now is (it may have been
    /// held meanwhile) and schedules it at `env.next_attempt_ms`. When the
    /// removal fails the message is retried at `fault_retry_ms` (its
    /// envelope on disk still lists the recipients as pending, so the next
    /// attempt may deliver again: a duplicate, never a loss). Blocking
    /// when not `done` (the rewrite fsyncs).
    pub fn finish_attempt(
        &self,
        env: &Envelope,
        done: bool,
        fault_retry_ms: u64,
    ) -> Result<AfterAttempt, SpoolError> {
        let id = env.id;
        if self.index().get(&id).is_none() {
            // Deleted by the administrator during the attempt.
            return Ok(AfterAttempt::Removed);
        }
        if done {
            return match self.inner.spool.remove_lazily(&id, env.size) {
                Ok(()) => {
                    if self.index().forget(&id) {
                        self.inner.maillog.removed(&id.to_string());
                    }
                    Ok(AfterAttempt::Removed)
                }
                // Gone from disk already (deleted by hand meanwhile).
                Err(SpoolError::NotFound { .. }) => {
                    self.index().forget(&id);
                    Ok(AfterAttempt::Removed)
                }
                Err(e) => {
                    self.reschedule(&id, fault_retry_ms);
                    Err(e)
                }
            };
        }
        let written = self.inner.spool.rewrite_envelope_in_place(env);
        if let Err(SpoolError::NotFound { .. }) = written {
            self.index().forget(&id);
            return Ok(AfterAttempt::Removed);
        }
        // Whatever the rewrite did, the message is no longer in flight: a
        // failed rewrite leaves the previous envelope, which is retried.
        self.reschedule(&id, env.next_attempt_ms);
        written.map(|_| AfterAttempt::RetryAt(env.next_attempt_ms))
    }

    /// Records, in the middle of an attempt, the recipients `env` marks
    /// delivered (see `progress.rs`); the message stays in flight. A
    /// message deleted meanwhile stays deleted. Blocking.
    pub fn record_progress(&self, env: &Envelope) -> Result<(), SpoolError> {
        if self.index().get(&env.id).is_none() {
            return Ok(());
        }
        match self.inner.spool.record_progress(env) {
            Ok(_) | Err(SpoolError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Marks an attempt as over and the message due at `due_ms`.
    fn reschedule(&self, id: &QueueId, due_ms: u64) {
        self.index().update(id, |e| {
            e.in_flight = false;
            e.due_ms = due_ms;
        });
        self.inner.changed.notify_one();
    }

    /// Marks an attempt that could not even start (the envelope could not
    /// be read) as over, retrying at `due_ms`.
    pub fn abandon_attempt(&self, id: &QueueId, due_ms: u64) {
        self.reschedule(id, due_ms);
    }

    /// Moves a message to hold/; it is not delivered until released.
    /// Blocking.
    pub fn hold(&self, id: &QueueId) -> Result<(), SpoolError> {
        if let Err(e) = self.inner.spool.hold(id) {
            self.resync(id);
            return Err(e);
        }
        let mut index = self.index();
        index.drop_fresh(id);
        index.update(id, |e| e.held = true);
        drop(index);
        self.inner
            .maillog
            .line("postsuper", &id.to_string(), "placed on hold");
        Ok(())
    }

    /// Returns a held message to the active queue. Blocking.
    pub fn release(&self, id: &QueueId) -> Result<(), SpoolError> {
        if let Err(e) = self.inner.spool.release(id) {
            self.resync(id);
            return Err(e);
        }
        self.index().update(id, |e| e.held = false);
        self.inner.changed.notify_one();
        self.inner
            .maillog
            .line("postsuper", &id.to_string(), "released from hold");
        Ok(())
    }

    /// Deletes one message (envelope first, then body). Blocking.
    pub fn delete(&self, id: &QueueId) -> Result<(), SpoolError> {
        if let Err(e) = self.inner.spool.remove(id) {
            self.resync(id);
            return Err(e);
        }
        self.index().forget(id);
        self.inner.maillog.removed(&id.to_string());
        Ok(())
    }

    /// Deletes every message queued when it starts, one at a time (the
    /// index lock is taken only between files, so intake and delivery go
    /// on meanwhile); returns how many. A message that vanished meanwhile
    /// (delivered) is not counted; any other failure stops the deletion.
    /// Blocking.
    pub fn delete_all(&self) -> Result<Count, SpoolError> {
        let ids = self.index().ids();
        let mut n = 0;
        for id in ids {
            match self.delete(&id) {
                Ok(()) => n += 1,
                Err(SpoolError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Count(n))
    }

    /// Makes every message that is not held due now; returns how many.
    pub fn flush(&self) -> Count {
        let now = super::now_ms();
        let mut index = self.index();
        let ids = index.unheld();
        for id in &ids {
            index.update(id, |e| e.due_ms = e.due_ms.min(now));
        }
        drop(index);
        self.inner.changed.notify_one();
        Count(ids.len())
    }

    /// After a failed file operation: makes the index say what the disk
    /// says (held or not, or gone).
    fn resync(&self, id: &QueueId) {
        match self.inner.spool.location(id) {
            Ok(Some(loc)) => {
                let held = loc == Location::Hold;
                let mut index = self.index();
                if held {
                    index.drop_fresh(id);
                }
                index.update(id, |e| e.held = held);
                drop(index);
                self.inner.changed.notify_one();
            }
            Ok(None) => {
                self.index().forget(id);
            }
            Err(e) => {
                tracing::warn!(%id, error = %e, "cannot tell where the message is after a failed operation")
            }
        }
    }
}
