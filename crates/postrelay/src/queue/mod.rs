//! The queue: the one owner of queued messages while the daemon runs.
//!
//! It keeps an in-memory index of live messages (no directory scan on the
//! hot path) and is the only code that changes their state: hold, release,
//! delete, flush. The spool below it is the source of truth on disk; the
//! index is rebuilt from it at start. Operations are synchronous (they do
//! file I/O); async callers run them with `spawn_blocking`.
//!
//! Delivery scheduling is not here yet: until relay delivery lands,
//! accepted mail waits in the queue.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::maillog::MailLog;
use crate::spool::{Envelope, Location, QueueId, Spool, SpoolError};

/// State of one message in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Held by the administrator: never scheduled until released.
    pub held: bool,
    /// When the next delivery attempt is due (unix ms).
    pub due_ms: u64,
}

/// Handle to the queue (cheap to clone).
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    spool: Spool,
    maillog: Arc<MailLog>,
    index: Mutex<BTreeMap<QueueId, Entry>>,
}

/// What `delete --all`, `flush` and friends report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub usize);

impl Queue {
    /// Builds the index from the spool (after recovery).
    pub fn load(spool: Spool, maillog: Arc<MailLog>) -> Result<Queue, SpoolError> {
        let mut index = BTreeMap::new();
        for (env, loc) in spool.list()? {
            index.insert(
                env.id,
                Entry {
                    held: loc == Location::Hold,
                    due_ms: env.next_attempt_ms,
                },
            );
        }
        Ok(Queue {
            inner: Arc::new(Inner {
                spool,
                maillog,
                index: Mutex::new(index),
            }),
        })
    }

    fn index(&self) -> MutexGuard<'_, BTreeMap<QueueId, Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every update is a single insert/remove), so poison is ignored.
        self.inner.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A message was committed by intake.
    pub fn accepted(&self, env: &Envelope) {
        self.index().insert(
            env.id,
            Entry {
                held: false,
                due_ms: env.next_attempt_ms,
            },
        );
    }

    /// Number of queued messages (held included).
    pub fn len(&self) -> usize {
        self.index().len()
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index entry of a message.
    pub fn entry(&self, id: &QueueId) -> Option<Entry> {
        self.index().get(id).copied()
    }

    /// Moves a message to hold/; it is not delivered until released.
    pub fn hold(&self, id: &QueueId) -> Result<(), SpoolError> {
        let mut index = self.index();
        self.inner.spool.hold(id)?;
        if let Some(e) = index.get_mut(id) {
            e.held = true;
        }
        self.inner
            .maillog
            .line("postsuper", &id.to_string(), "placed on hold");
        Ok(())
    }

    /// Returns a held message to the active queue.
    pub fn release(&self, id: &QueueId) -> Result<(), SpoolError> {
        let mut index = self.index();
        self.inner.spool.release(id)?;
        if let Some(e) = index.get_mut(id) {
            e.held = false;
        }
        self.inner
            .maillog
            .line("postsuper", &id.to_string(), "released from hold");
        Ok(())
    }

    /// Deletes one message (envelope first, then body).
    pub fn delete(&self, id: &QueueId) -> Result<(), SpoolError> {
        let mut index = self.index();
        self.inner.spool.remove(id)?;
        index.remove(id);
        self.inner.maillog.removed(&id.to_string());
        Ok(())
    }

    /// Deletes every message; returns how many.
    pub fn delete_all(&self) -> Result<Count, SpoolError> {
        let mut index = self.index();
        let mut n = 0;
        for (env, _) in self.inner.spool.list()? {
            self.inner.spool.remove(&env.id)?;
            index.remove(&env.id);
            self.inner.maillog.removed(&env.id.to_string());
            n += 1;
        }
        Ok(Count(n))
    }

    /// Makes every message that is not held due now; returns how many.
    pub fn flush(&self) -> Count {
        let now = now_ms();
        let mut n = 0;
        for e in self.index().values_mut().filter(|e| !e.held) {
            e.due_ms = now;
            n += 1;
        }
        Count(n)
    }
}

/// Milliseconds since the Unix epoch, the unit of every time in the spool.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
