//! Cluster mode (cargo feature `cluster`, `[cluster]`): the nodes that
//! send for one provider account keep their combined counts in Redis (or
//! a Redis-compatible server such as Valkey), so that together they stay
//! within the account's limits.
//!
//! - Shared counting: each [`ClusterStore::take`] is one Lua script that
//!   checks and charges the rate and every window at once (`shared`). The
//!   clock is Redis's own `TIME`, so the nodes' clock skew does not
//!   matter; the answer is a delay, turned into a time of this node's
//!   clock.
//! - Fallback: when Redis fails or does not answer within
//!   `cluster.timeout`, this node counts alone with each limit scaled to
//!   `cluster.local_share` (`fallback`), says so once in the log (and in
//!   the `postrelay_cluster_shared` gauge, read at scrape time), and tries Redis again every
//!   `cluster.retry`; the first answer switches back (logged once).
//!
//! Not for: the limits themselves ([`super::Limits`]) or what the engine
//! does with a verdict; no consensus of its own: Redis is the one place
//! the shared counts live.

mod fallback;
mod shared;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo};

use super::{Limits, LocalStore, QuotaError, Take, Usage, Verdict};
use crate::config::ClusterSettings;
use fallback::{Mode, Route};
pub use shared::Clock;
use shared::{Scripts, Shared};

/// The shared counts of a cluster, and this node's share when Redis is
/// away.
pub struct ClusterStore {
    conn: ConnectionManager,
    scripts: Scripts,
    namespace: String,
    local_share: f64,
    clock: Clock,
    mode: Mode,
    local: LocalStore,
    round_trips: AtomicU64,
}

impl std::fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No connection details: they may hold credentials.
        f.debug_struct("ClusterStore")
            .field("namespace", &self.namespace)
            .field("local_share", &self.local_share)
            .field("shared", &self.mode.is_shared())
            .finish_non_exhaustive()
    }
}

/// Why the cluster store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `cluster.url` is not a Redis address the client understands.
    #[error("cluster.url: {0}")]
    Url(String),
}

impl ClusterStore {
    /// The store for `settings`. Does not wait for Redis: a node whose
    /// Redis is down starts counting its local share, and switches to the
    /// shared counts once Redis answers.
    pub fn new(settings: &ClusterSettings) -> Result<ClusterStore, ClusterError> {
        Self::with_clock(settings, Clock::Server)
    }

    /// [`Self::new`] with a clock of the caller's choosing.
    pub fn with_clock(
        settings: &ClusterSettings,
        clock: Clock,
    ) -> Result<ClusterStore, ClusterError> {
        let info = settings
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| ClusterError::Url(e.to_string()))?;
        let mut redis = info.redis_settings().clone();
        if let Some(u) = &settings.username {
            redis = redis.set_username(u);
        }
        if let Some(p) = &settings.password {
            redis = redis.set_password(p.expose());
        }
        let client = Client::open(info.set_redis_settings(redis))
            .map_err(|e| ClusterError::Url(e.to_string()))?;
        // Every request is bounded by these: connecting, then each reply.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            // Reconnection is ours: one try per `retry` while falling back.
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| ClusterError::Url(e.to_string()))?;
        Ok(ClusterStore {
            conn,
            scripts: Scripts::new(),
            namespace: settings.namespace.clone(),
            local_share: settings.local_share.get(),
            clock,
            mode: Mode::new(settings.retry),
            local: LocalStore::default(),
            round_trips: AtomicU64::new(0),
        })
    }

    fn shared(&self) -> Shared<'_> {
        Shared {
            conn: &self.conn,
            scripts: &self.scripts,
            namespace: &self.namespace,
            clock: self.clock,
        }
    }

    /// Runs one Redis operation within the timeout, and tells the mode
    /// how it went. `None`: count locally. A connection found broken
    /// (Redis restarted: the request was never sent) is made again once
    /// before giving up; a request that timed out is not repeated, as
    /// Redis may have run it.
    async fn ask<T, F>(&self, op: impl Fn() -> F) -> Option<T>
    where
        F: Future<Output = shared::RedisResult<T>>,
    {
        if self.mode.route() == Route::Local {
            return None;
        }
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        // Bounded by the connection's own timeouts (`cluster.timeout`).
        let mut result = op().await;
        if let Err(e) = &result
            && e.is_io_error()
            && !e.is_timeout()
        {
            self.round_trips.fetch_add(1, Ordering::Relaxed);
            result = op().await;
        }
        match result {
            Ok(v) => {
                self.mode.answered(&self.namespace);
                Some(v)
            }
            Err(e) => {
                self.mode
                    .failed(&self.namespace, self.local_share, &e.to_string());
                None
            }
        }
    }

    /// See [`super::Store::take`]: shared when Redis answers, else from
    /// this node's share.
    pub async fn take(&self, take: &Take<'_>) -> Result<Verdict, QuotaError> {
        let shared = self.shared();
        match self.ask(|| shared.take(take)).await {
            Some(answer) => answer,
            None => {
                let scaled = fallback::scale(take.limits, self.local_share);
                self.local.take(&Take {
                    limits: &scaled,
                    ..*take
                })
            }
        }
    }

    /// See [`super::Store::usage`]; while Redis is away, this node's own
    /// use of its share.
    pub async fn usage(
        &self,
        account: &str,
        limits: &Limits,
        now: SystemTime,
    ) -> Result<Usage, QuotaError> {
        let shared = self.shared();
        match self.ask(|| shared.usage(account, limits, now)).await {
            Some(usage) => Ok(usage),
            None => Ok(self
                .local
                .usage(account, &fallback::scale(limits, self.local_share), now)),
        }
    }

    /// See [`super::Store::cool_down`]: kept locally too, so that it holds
    /// while Redis is away.
    pub async fn cool_down(
        &self,
        account: &str,
        until: SystemTime,
        reason: &str,
        now: SystemTime,
    ) -> Result<(), QuotaError> {
        self.local.cool_down(account, until, reason);
        let shared = self.shared();
        self.ask(|| shared.cool_down(account, until, reason, now))
            .await;
        Ok(())
    }

    /// `cluster.namespace`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether the counts are the cluster's (`false`: this node's share).
    pub fn is_shared(&self) -> bool {
        self.mode.is_shared()
    }

    /// How many Redis operations were sent (each one `EVALSHA`, one
    /// round trip unless Redis had lost the script).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
