//! The engine's side of provider limits: how many recipients one
//! transaction may carry, the charge to a relay's quota before a
//! transaction, the spill-over relay, and the cool-down that a throttle
//! reply starts.
//!
//! Not for: counting (`quota`) or recognising a throttle reply
//! (`deliver::outcome::throttle`, the one classifier); this module only
//! acts on their answers.

use std::time::{Duration, SystemTime};

use std::sync::Arc;

use super::{Deliverer, Destination, EngineError, Relay};
use crate::deliver::client::Failure;
use crate::deliver::outcome::{self, Outcome, Reason};
use crate::quota::{Store, Take, Verdict};

/// A wait for quota this short is waited out in the attempt (a rate's
/// next token); a longer one sends the message back to the queue.
const SHORT_WAIT: Duration = Duration::from_secs(2);

/// How many short waits one transaction waits out before it goes back to
/// the queue (other workers may take the tokens first).
const SHORT_WAITS: u32 = 5;

impl Deliverer {
    /// How many recipients for `dest` one transaction carries: the least
    /// that any relay which may carry them (spill-over relays included)
    /// allows.
    pub(super) fn chunk_size(&self, dest: &Destination) -> usize {
        let Ok(relays) = self.relays_for(dest) else {
            return usize::MAX;
        };
        relays
            .iter()
            .flat_map(|r| std::iter::once(*r).chain(self.spill_of(r)))
            .map(|r| r.config.limits.quota.chunk_size())
            .min()
            .unwrap_or(usize::MAX)
    }

    /// The relay that takes `relay`'s mail while its limits leave no room.
    pub(super) fn spill_of(&self, relay: &Relay) -> Option<&Relay> {
        let name = relay.config.limits.spill_to.as_deref()?;
        self.relays
            .iter()
            .find(|r| !r.next_hop && r.config.name == name)
    }

    /// Charges one transaction of `recipients` to `relay`'s account, all
    /// or nothing: `None` when it may go, else why it waits.
    /// A wait of at most [`SHORT_WAIT`] (the rate's next token) is waited
    /// out here, up to [`SHORT_WAITS`] times, rather than sending the
    /// message back to the queue.
    pub(super) async fn charge(&self, relay: &Relay, recipients: usize) -> Option<Reason> {
        let limits = &relay.config.limits.quota;
        let n = u32::try_from(recipients).unwrap_or(u32::MAX);
        let name = &relay.config.name;
        let mut waits = 0;
        let verdict = loop {
            let now = SystemTime::now();
            let take = Take {
                account: &limits.account,
                limits,
                messages: 1,
                recipients: n,
                now,
            };
            let verdict = self.quota.take(&take).await;
            if let Ok(Verdict::Wait { until, .. }) = &verdict
                && let Ok(short) = until.duration_since(now)
                && short <= SHORT_WAIT
                && waits < SHORT_WAITS
            {
                waits += 1;
                tokio::time::sleep(short).await;
                continue;
            }
            break verdict;
        };
        match verdict {
            Ok(Verdict::Granted) => None,
            Ok(Verdict::Wait { until, limit }) => Some(Reason::Quota {
                relay: name.clone(),
                limit: self.described(relay, &limit).await,
                until,
            }),
            Err(e) => Some(Reason::Local(format!(
                "relay \"{name}\": its sending limits could not be checked: {e}"
            ))),
        }
    }

    /// `limit` with its use now, for the mail log and `queue list`:
    /// `500 recipients per day: 498 used`.
    async fn described(&self, relay: &Relay, limit: &crate::quota::Limit) -> String {
        let limits = &relay.config.limits.quota;
        let usage = self
            .quota
            .usage(&limits.account, limits, SystemTime::now())
            .await;
        let used = usage
            .ok()
            .and_then(|u| u.limits.into_iter().find(|u| &u.limit == limit))
            .filter(|u| !matches!(u.limit, crate::quota::Limit::CoolDown { .. }));
        match used {
            Some(u) => format!("{limit}: {} of {} used", u.used, u.max),
            None => limit.to_string(),
        }
    }

    /// Outcomes of a transaction on `relay` after the throttle check: a
    /// throttle reply defers its recipient and starts the relay's
    /// cool-down.
    pub(super) async fn throttled_outcomes(
        &self,
        relay: &Relay,
        outcomes: Vec<Outcome>,
    ) -> Vec<Outcome> {
        let until = SystemTime::now() + relay.config.limits.cool_down;
        let mut cooling: Option<String> = None;
        let outcomes = outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Delivered(r) => Outcome::Delivered(r),
                Outcome::Deferred(r) | Outcome::Failed(r) => {
                    let r = self.throttle(relay, r, until);
                    if let Reason::Throttled { reply, .. } = &r {
                        cooling.get_or_insert_with(|| reply.to_string());
                    }
                    Outcome::from_reason(r)
                }
            })
            .collect();
        if let Some(reply) = cooling {
            self.cool_down(relay, until, &reply).await;
        }
        outcomes
    }

    /// A failed session or transaction on `relay` after the throttle
    /// check (a `421 4.7.0` greeting, a throttle reply that closed the
    /// session): the same cool-down.
    pub(super) async fn throttled_failure(&self, relay: &Relay, f: &mut Failure) {
        let until = SystemTime::now() + relay.config.limits.cool_down;
        let reason = std::mem::replace(&mut f.reason, Reason::Local(String::new()));
        f.reason = self.throttle(relay, reason, until);
        if let Reason::Throttled { reply, .. } = &f.reason {
            let reply = reply.to_string();
            self.cool_down(relay, until, &reply).await;
        }
    }

    fn throttle(&self, relay: &Relay, reason: Reason, until: SystemTime) -> Reason {
        let patterns = &relay.config.limits.throttle_replies;
        outcome::throttle(reason, &relay.config.name, patterns, until)
    }

    async fn cool_down(&self, relay: &Relay, until: SystemTime, reply: &str) {
        let account = &relay.config.limits.quota.account;
        if let Err(e) = self.quota.cool_down(account, until, reply).await {
            tracing::warn!(relay = %relay.config.name, error = %e, "cannot record the cool-down");
        }
        tracing::warn!(
            relay = %relay.config.name, %reply,
            until = %crate::maillog::utc(until),
            "throttle reply: the relay cools down"
        );
    }
}

/// The daemon's one quota store (`[cluster]`'s, else this node's), made
/// with its first engine; later engines keep it.
pub(super) fn store(config: &crate::config::Config) -> Result<Arc<Store>, EngineError> {
    let store = Store::for_config(config).map_err(|e| EngineError {
        part: "[cluster]".into(),
        message: e.to_string(),
    })?;
    Ok(Arc::new(store))
}
