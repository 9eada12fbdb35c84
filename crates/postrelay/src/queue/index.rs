//! The in-memory index of live messages and their schedule, always updated
//! together. Pure data: no I/O, no locking (the queue holds it under its
//! lock for microseconds at a time). Every operation but the listing ones
//! (`ids`, `unheld`) costs O(log n) or less, so scheduling a message costs
//! the same with a thousand queued or a hundred thousand.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::spool::{Envelope, Found, Location, QueueId};

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

/// Messages by state, for the metrics endpoint (`Queue::stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Being delivered now.
    pub active: u64,
    /// Waiting for their next attempt (new mail included, for an instant).
    pub waiting: u64,
    /// Held by the administrator.
    pub hold: u64,
    /// When the oldest queued message arrived (ms since the epoch).
    pub oldest_ms: Option<u64>,
}

/// Most envelopes kept in [`Index::fresh`].
const FRESH_LIMIT: usize = 10_000;

/// The index and the schedule.
#[derive(Default)]
pub(super) struct Index {
    entries: BTreeMap<QueueId, Entry>,
    /// `(due_ms, id)` of every schedulable message.
    schedule: BTreeSet<(u64, QueueId)>,
    /// Envelopes of messages accepted by this process and not yet
    /// attempted: their first attempt needs no read of the file just
    /// written. Bounded; past the bound the file is read as usual.
    fresh: HashMap<QueueId, Envelope>,
    /// How many entries are held, and how many in flight (not held), kept
    /// with every change so that [`Index::stats`] needs no walk over the
    /// whole queue under the lock the scheduler takes.
    held: u64,
    active: u64,
}

impl Index {
    /// The index of the messages `found` on disk, none in flight.
    pub(super) fn from_found(found: impl IntoIterator<Item = Found>) -> Index {
        let mut index = Index::default();
        for f in found {
            let entry = Entry {
                held: f.location == Location::Hold,
                due_ms: f.next_attempt_ms,
                in_flight: false,
            };
            index.insert(f.id, entry);
        }
        index
    }

    pub(super) fn insert(&mut self, id: QueueId, entry: Entry) {
        self.remove(&id);
        if entry.schedulable() {
            self.schedule.insert((entry.due_ms, id));
        }
        self.tally(&entry, true);
        self.entries.insert(id, entry);
    }

    /// Counts `entry` in (or out of) the held and active totals.
    fn tally(&mut self, entry: &Entry, add: bool) {
        let counter = match (entry.held, entry.in_flight) {
            (true, _) => &mut self.held,
            (false, true) => &mut self.active,
            (false, false) => return,
        };
        *counter = if add {
            *counter + 1
        } else {
            counter.saturating_sub(1)
        };
    }

    /// A message accepted by this process: indexed, its envelope kept for
    /// its first attempt.
    pub(super) fn insert_fresh(&mut self, env: Envelope) {
        let entry = Entry {
            held: false,
            due_ms: env.next_attempt_ms,
            in_flight: false,
        };
        self.insert(env.id, entry);
        if self.fresh.len() < FRESH_LIMIT {
            self.fresh.insert(env.id, env);
        }
    }

    /// Messages by state, and the oldest's arrival (IDs sort by arrival).
    pub(super) fn stats(&self) -> QueueStats {
        let all = self.entries.len() as u64;
        QueueStats {
            active: self.active,
            waiting: all.saturating_sub(self.held + self.active),
            hold: self.held,
            oldest_ms: self.entries.keys().next().map(QueueId::created_ms),
        }
    }

    fn remove(&mut self, id: &QueueId) -> Option<Entry> {
        let old = self.entries.remove(id)?;
        self.schedule.remove(&(old.due_ms, *id));
        self.tally(&old, false);
        Some(old)
    }

    /// The message left the queue: drops its entry and cached envelope.
    /// Whether it was indexed.
    pub(super) fn forget(&mut self, id: &QueueId) -> bool {
        self.fresh.remove(id);
        self.remove(id).is_some()
    }

    /// Changes an entry (nothing if the message is not indexed).
    pub(super) fn update(&mut self, id: &QueueId, f: impl FnOnce(&mut Entry)) {
        if let Some(mut e) = self.remove(id) {
            f(&mut e);
            self.insert(*id, e);
        }
    }

    /// Drops the cached envelope (the file changed without it).
    pub(super) fn drop_fresh(&mut self, id: &QueueId) {
        self.fresh.remove(id);
    }

    pub(super) fn get(&self, id: &QueueId) -> Option<Entry> {
        self.entries.get(id).copied()
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn ids(&self) -> Vec<QueueId> {
        self.entries.keys().copied().collect()
    }

    /// Ids of the messages that are not held.
    pub(super) fn unheld(&self) -> Vec<QueueId> {
        self.entries
            .iter()
            .filter(|(_, e)| !e.held)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The earliest schedulable message, `(due_ms, id)`.
    pub(super) fn first_due(&self) -> Option<(u64, QueueId)> {
        self.schedule.first().copied()
    }

    /// Marks `id` in flight and hands over its cached envelope, if any.
    pub(super) fn take(&mut self, id: &QueueId) -> Option<Envelope> {
        self.update(id, |e| e.in_flight = true);
        self.fresh.remove(id)
    }
}

#[cfg(test)]
mod tests;
