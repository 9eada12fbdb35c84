//! The quota gauges: each relay's use of its sending limits, set at
//! scrape time from the quota store (`Deliverer::quota`).

use std::time::SystemTime;

use super::{Metrics, RelayLimit};
use crate::quota::Usage;

impl Metrics {
    /// Sets the quota gauges to `relays` (relay name, usage at `now`);
    /// series of relays or limits no longer configured are dropped.
    pub fn set_quota(&self, relays: &[(String, Usage)], now: SystemTime) {
        self.quota_used.clear();
        self.quota_limit.clear();
        self.quota_frees.clear();
        for (relay, usage) in relays {
            for u in &usage.limits {
                let labels = RelayLimit {
                    relay: relay.clone(),
                    limit: u.limit.label(),
                };
                let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                self.quota_used.get_or_create(&labels).set(n(u.used));
                self.quota_limit.get_or_create(&labels).set(n(u.max));
                let frees = u
                    .frees_at
                    .and_then(|t| t.duration_since(now).ok())
                    .map_or(0.0, |d| d.as_secs_f64());
                self.quota_frees.get_or_create(&labels).set(frees);
            }
        }
    }
}

impl Metrics {
    /// Sets `cluster_shared` from the store's mode (`None`: not a
    /// cluster, no series).
    pub fn set_cluster(&self, mode: Option<(&str, bool)>) {
        self.cluster_shared.clear();
        if let Some((namespace, shared)) = mode {
            let labels = super::Namespace {
                namespace: namespace.to_owned(),
            };
            self.cluster_shared
                .get_or_create(&labels)
                .set(i64::from(shared));
        }
    }
}

/// Each relay's usage from the engine in force, for [`Metrics::set_quota`];
/// sets the cluster's gauge on the way.
pub(super) async fn usage(
    metrics: &Metrics,
    deliverer: &crate::deliver::Deliverer,
    now: SystemTime,
) -> Vec<(String, Usage)> {
    let (store, relays) = deliverer.quota();
    metrics.set_cluster(store.cluster_mode());
    let mut out = Vec::new();
    for (name, limits) in relays {
        match store.usage(&limits.account, limits, now).await {
            Ok(u) => out.push((name.to_owned(), u)),
            Err(e) => tracing::warn!(relay = name, error = %e, "metrics: quota use unknown"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::quota::{Counted, Limit, LimitUse, Span, Window};

    #[test]
    fn quota_gauges_show_use_limit_and_when_it_frees() {
        let m = Metrics::new();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let window = Window {
            span: Span::Day,
            counts: Counted::Recipients,
            max: 500,
        };
        let usage = Usage {
            limits: vec![LimitUse {
                limit: Limit::Window(window),
                used: 120,
                max: 500,
                frees_at: Some(now + Duration::from_secs(90)),
            }],
        };
        m.set_quota(&[("gmail".into(), usage)], now);
        let text = m.encode(crate::queue::QueueStats::default(), 0);
        for want in [
            "postrelay_quota_used{relay=\"gmail\",limit=\"recipients_per_day\"} 120\n",
            "postrelay_quota_limit{relay=\"gmail\",limit=\"recipients_per_day\"} 500\n",
            "postrelay_quota_frees_in_seconds{relay=\"gmail\",limit=\"recipients_per_day\"} 90.0\n",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
        m.set_quota(&[], now);
        let text = m.encode(crate::queue::QueueStats::default(), 0);
        assert!(!text.contains("relay=\"gmail\""), "{text}");
    }

    #[test]
    fn the_cluster_gauge_follows_the_mode_and_is_absent_without_a_cluster() {
        let m = Metrics::new();
        let encode = || m.encode(crate::queue::QueueStats::default(), 0);
        m.set_cluster(None);
        assert!(
            !encode().contains("postrelay_cluster_shared{"),
            "{}",
            encode()
        );
        m.set_cluster(Some(("eu", true)));
        assert!(encode().contains("postrelay_cluster_shared{namespace=\"eu\"} 1\n"));
        m.set_cluster(Some(("eu", false)));
        assert!(encode().contains("postrelay_cluster_shared{namespace=\"eu\"} 0\n"));
    }
}
