//! What became of a message, remembered in memory for `postrelay
//! send-test`: the last attempt's result of recently attempted messages
//! (the relay session's facts, the provider's reply, or the step that
//! failed and why).
//!
//! Bounded ([`CAPACITY`] messages, oldest forgotten first), in memory
//! only: a restart forgets it, and the lock is held only to copy a record
//! in or out, never across I/O.
//!
//! Not for: the durable state of a message (the spool and its envelope),
//! nor the mail log.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::deliver::{Attempt, Outcome, Reason, SessionFacts};
use crate::spool::QueueId;

/// How many messages' results are remembered.
pub const CAPACITY: usize = 1000;

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackState {
    /// In the queue, not attempted yet (or attempted before the daemon
    /// started).
    Queued,
    /// Being attempted now.
    InFlight,
    /// The last attempt left it waiting.
    Deferred,
    /// Every recipient accepted.
    Delivered,
    /// Refused for good (a bounce is on its way to the sender).
    Bounced,
    /// Neither in the queue nor remembered.
    Unknown,
}

/// A message's state and what its last attempt said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    /// Where it stands.
    pub state: TrackState,
    /// The connection that carried the last transaction, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionFacts>,
    /// The provider's reply to the message (with its queue id), when it
    /// took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// The step that failed (`connect`, `TLS`, `AUTH`, `RCPT TO` …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Tracked {
    /// A state with nothing more to say.
    pub fn bare(state: TrackState) -> Tracked {
        Tracked {
            state,
            session: None,
            reply: None,
            step: None,
            reason: None,
        }
    }

    /// The result of one attempt: deferred when any recipient waits,
    /// bounced when any was refused for good, else delivered.
    pub fn of(attempt: &Attempt) -> Tracked {
        let mut t = Tracked::bare(TrackState::Delivered);
        t.session = attempt.session.clone();
        let failure = |want: fn(&Outcome) -> Option<&Reason>| {
            attempt.outcomes.iter().find_map(|(_, o)| want(o))
        };
        let deferred = failure(|o| match o {
            Outcome::Deferred(r) => Some(r),
            _ => None,
        });
        let failed = failure(|o| match o {
            Outcome::Failed(r) => Some(r),
            _ => None,
        });
        if let Some((state, reason)) = deferred
            .map(|r| (TrackState::Deferred, r))
            .or(failed.map(|r| (TrackState::Bounced, r)))
        {
            t.state = state;
            t.step = Some(step(reason));
            t.reason = Some(reason.to_string());
        }
        if attempt.outcomes.is_empty() {
            t.state = TrackState::Deferred;
            t.reason = Some(attempt.summary());
        }
        t.reply = attempt.outcomes.iter().find_map(|(_, o)| match o {
            Outcome::Delivered(reply) => Some(reply.to_string()),
            _ => None,
        });
        t
    }
}

/// The step of the delivery that `reason` stopped.
pub fn step(reason: &Reason) -> String {
    match reason {
        Reason::Dns(_) => "DNS".into(),
        Reason::Connect(_) => "connect".into(),
        Reason::Tls(_) => "TLS".into(),
        Reason::Auth(_) => "AUTH".into(),
        Reason::Reply { phase, .. }
        | Reason::Timeout { phase, .. }
        | Reason::Throttled { phase, .. } => phase.to_string(),
        Reason::Quota { .. } => "sending limit".into(),
        Reason::Protocol(_) => "protocol".into(),
        Reason::Local(_) => "local".into(),
        Reason::Unsendable { .. } => "message".into(),
        Reason::Expired { .. } => "lifetime".into(),
        Reason::Policy { .. } => "transport map".into(),
        Reason::Unavailable(_) | Reason::UnknownUser(_) | Reason::MailboxFull(_) => {
            "local delivery".into()
        }
    }
}

/// The remembered results (see the module documentation).
#[derive(Debug, Default)]
pub struct Tracker {
    inner: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    order: VecDeque<QueueId>,
    by_id: HashMap<QueueId, Tracked>,
}

impl Tracker {
    /// Remembers `tracked` as `id`'s latest result, forgetting the oldest
    /// message beyond [`CAPACITY`].
    pub fn record(&self, id: QueueId, tracked: Tracked) {
        let mut r = self.lock();
        if r.by_id.insert(id, tracked).is_none() {
            r.order.push_back(id);
        }
        while r.order.len() > CAPACITY {
            if let Some(old) = r.order.pop_front() {
                r.by_id.remove(&old);
            }
        }
    }

    /// `id`'s latest remembered result.
    pub fn get(&self, id: &QueueId) -> Option<Tracked> {
        self.lock().by_id.get(id).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, Remembered> {
        // Plain maps updated in one piece: poison is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests;
