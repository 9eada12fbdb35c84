//! When Redis is away: which way a request goes (Redis, or this node's
//! share), the switch logged once each way, and the limits of the share.
//!
//! While counting locally, one request per `cluster.retry` is let through
//! to Redis (the others do not wait for it); the first answer switches
//! back. `postrelay_cluster_shared` reads the mode at scrape time. Not for: talking to Redis (`shared`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::super::{Limits, Rate, Window};

/// Where one request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// To Redis (shared, or the periodic try while local).
    Redis,
    /// To this node's share.
    Local,
}

#[derive(Debug)]
struct State {
    shared: bool,
    /// While local: when Redis may be tried next.
    next_try: Instant,
    /// While local: a try is under way.
    trying: bool,
}

/// Shared or local, and when to try Redis again.
#[derive(Debug)]
pub(super) struct Mode {
    state: Mutex<State>,
    retry: Duration,
}

impl Mode {
    pub fn new(retry: Duration) -> Mode {
        Mode {
            state: Mutex::new(State {
                shared: true,
                next_try: Instant::now(),
                trying: false,
            }),
            retry,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Three plain fields, each update complete: poison is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_shared(&self) -> bool {
        self.lock().shared
    }

    /// Where the next request goes.
    pub fn route(&self) -> Route {
        let mut s = self.lock();
        if s.shared {
            return Route::Redis;
        }
        let now = Instant::now();
        if s.trying || now < s.next_try {
            return Route::Local;
        }
        s.trying = true;
        s.next_try = now + self.retry;
        Route::Redis
    }

    /// Redis answered: shared from now on.
    pub fn answered(&self, namespace: &str) {
        let mut s = self.lock();
        s.trying = false;
        if !s.shared {
            s.shared = true;
            tracing::info!(
                namespace,
                "cluster: Redis answers again; the limits are counted for the whole cluster again"
            );
        }
    }

    /// Redis failed: local from now on, until a try succeeds.
    pub fn failed(&self, namespace: &str, share: f64, why: &str) {
        let mut s = self.lock();
        s.trying = false;
        s.next_try = Instant::now() + self.retry;
        if s.shared {
            s.shared = false;
            tracing::warn!(
                namespace,
                error = why,
                "cluster: Redis unreachable; this node now counts alone, with {:.0} % of each limit, and tries Redis again every {:?}",
                share * 100.0,
                self.retry
            );
        }
    }
}

/// `limits` cut to this node's `share`: the rate slower by that factor,
/// the burst and each window's maximum rounded down, but never below 1
/// (a share of nothing would hold mail forever).
pub(super) fn scale(limits: &Limits, share: f64) -> Limits {
    let cut = |n: u32| -> u32 {
        // In [1, n]: share is in (0, 1].
        let scaled = (f64::from(n) * share).floor();
        if scaled < 1.0 { 1 } else { scaled as u32 }
    };
    Limits {
        account: limits.account.clone(),
        rate: limits.rate.map(|r| Rate {
            count: r.count,
            per: r.per.div_f64(share),
            burst: cut(r.burst.max(1)),
        }),
        windows: limits
            .windows
            .iter()
            .map(|w| Window {
                max: cut(w.max),
                ..*w
            })
            .collect(),
        recipients_per_transaction: limits.recipients_per_transaction,
    }
}
