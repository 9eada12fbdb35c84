//! Prometheus metrics: counters bumped where the mail log writes the same
//! event (so `/metrics` and pflogsumm agree), gauges read from the queue at
//! scrape time, and the text encoding. Served by [`http`].
//!
//! Not a second log: no addresses or message content, and label values
//! come from a bounded set (relay host names from the configuration,
//! listener addresses, fixed reasons), never from what a client sends.

pub mod http;
mod quota;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use std::sync::RwLock;

use crate::queue::QueueStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Source {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RelayStatus {
    relay: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Relay {
    relay: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    side: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Listener {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Limit {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RelayLimit {
    relay: String,
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Namespace {
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: &'static str,
}

/// Every series the daemon exports.
pub struct Metrics {
    registry: Registry,
    accepted: Family<Source, Counter>,
    deliveries: Family<RelayStatus, Counter>,
    delay: Family<Relay, Histogram>,
    tls_failures: Family<Reason, Counter>,
    auth_failures: Family<Reason, Counter>,
    connections: Family<Listener, Counter>,
    refused: Family<Limit, Counter>,
    queue: Family<State, Gauge>,
    oldest: Gauge<f64, std::sync::atomic::AtomicU64>,
    local_helper_up: Gauge,
    maillog_dropped: Counter,
    quota_used: Family<RelayLimit, Gauge>,
    quota_limit: Family<RelayLimit, Gauge>,
    quota_frees: Family<RelayLimit, Gauge<f64, std::sync::atomic::AtomicU64>>,
    cluster_shared: Family<Namespace, Gauge>,
    /// Handles of the `deliveries` and `delay` series already made.
    delivery_counts: Kept<Counter>,
    delivery_delays: Kept<Histogram>,
}

/// Handles of series already made, found by relay host and status without
/// building a label set (a `String` and a hash of it, twice per
/// recipient). Bounded as the labels are: by the configured relays. A
/// series is still made by its family, at its first use.
type Kept<M> = RwLock<Vec<(String, &'static str, M)>>;

/// Buckets of the delivery delay, from arrival to the relay's reply:
/// 50 ms to about a day.
fn delay_histogram() -> Histogram {
    Histogram::new([
        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
        86400.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The series, registered and at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("postrelay");
        let m = Metrics {
            registry: Registry::default(),
            accepted: Family::default(),
            deliveries: Family::default(),
            delay: Family::new_with_constructor(delay_histogram),
            tls_failures: Family::default(),
            auth_failures: Family::default(),
            connections: Family::default(),
            refused: Family::default(),
            queue: Family::default(),
            oldest: Gauge::default(),
            local_helper_up: Gauge::default(),
            maillog_dropped: Counter::default(),
            quota_used: Family::default(),
            quota_limit: Family::default(),
            quota_frees: Family::default(),
            cluster_shared: Family::default(),
            delivery_counts: RwLock::default(),
            delivery_delays: RwLock::default(),
        };
        registry.register(
            "messages_accepted",
            "Messages accepted into the queue, by source (smtp, submission, pickup); what pflogsumm counts as received",
            m.accepted.clone(),
        );
        registry.register(
            "deliveries",
            "Delivery results per recipient, by relay host and status (sent, deferred, bounced); the mail log's status= lines",
            m.deliveries.clone(),
        );
        registry.register(
            "delivery_delay_seconds",
            "From arrival to delivery (status=sent), by relay host: the mail log's delay=",
            m.delay.clone(),
        );
        registry.register(
            "tls_failures",
            "TLS failures, by side (relay, submission) and reason",
            m.tls_failures.clone(),
        );
        registry.register(
            "auth_failures",
            "AUTH failures, by side (relay: our login refused; submission: a client's) and reason",
            m.auth_failures.clone(),
        );
        registry.register(
            "connections",
            "Connections accepted, by listener address",
            m.connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections or sessions refused by a limit, by limit",
            m.refused.clone(),
        );
        registry.register(
            "queue_messages",
            "Messages in the queue, by state (active, waiting, hold)",
            m.queue.clone(),
        );
        registry.register(
            "queue_oldest_message_age_seconds",
            "Age of the oldest message in the queue (0 when empty)",
            m.oldest.clone(),
        );
        registry.register(
            "local_helper_up",
            "1 while the local delivery helper (root, writes local mailboxes) runs; 0 once it has exited: local mail stays queued until postrelay is restarted",
            m.local_helper_up.clone(),
        );
        registry.register(
            "maillog_records_dropped",
            "Mail log records dropped because the log's destination did not take them (a stalled syslog daemon, a full pipe, a slow disk) while 8 MiB of records waited; the mail itself is unaffected",
            m.maillog_dropped.clone(),
        );
        registry.register(
            "quota_used",
            "Use of a relay's sending limits, by relay name and limit (rate: tokens spent; messages_per_day …; cool_down: 1 while cooling down after a throttle reply)",
            m.quota_used.clone(),
        );
        registry.register(
            "quota_limit",
            "The most a relay's sending limit allows (rate: the burst), by relay name and limit; head-room is quota_limit - quota_used",
            m.quota_limit.clone(),
        );
        registry.register(
            "quota_frees_in_seconds",
            "Seconds until the next unit of a relay's sending limit frees up (the window's oldest charge ages out, the next token, the cool-down's end); 0 when nothing is used",
            m.quota_frees.clone(),
        );
        registry.register(
            "cluster_shared",
            "Cluster mode only, by cluster.namespace: 1 while the sending limits are counted for the whole cluster in Redis, 0 while Redis is away and this node counts its local_share alone",
            m.cluster_shared.clone(),
        );
        crate::oauth::state::register_metrics(&mut registry);
        Metrics { registry, ..m }
    }

    /// The counter of dropped mail log records, for the log's writer.
    pub fn maillog_dropped(&self) -> Counter {
        self.maillog_dropped.clone()
    }

    /// Whether the local delivery helper runs.
    pub fn local_helper_up(&self, up: bool) {
        self.local_helper_up.set(i64::from(up));
    }

    /// A message was accepted (`smtp`, `submission` or `pickup`).
    pub fn accepted(&self, source: &'static str) {
        self.accepted.get_or_create(&Source { source }).inc();
    }

    /// One recipient's delivery result; `relay` is the mail log's
    /// `relay=` value (`host[ip]:port`, `none`, `local`), `status` its
    /// `status=` word, `delay` its `delay=`.
    pub fn delivery(&self, relay: &str, status: &'static str, delay: std::time::Duration) {
        let relay = relay_host(relay);
        if status == "sent" {
            let label = || Relay {
                relay: relay.to_owned(),
            };
            kept(&self.delivery_delays, relay, status, || {
                self.delay.get_or_create(&label()).clone()
            })
            .observe(delay.as_secs_f64());
        }
        let label = || RelayStatus {
            relay: relay.to_owned(),
            status,
        };
        kept(&self.delivery_counts, relay, status, || {
            self.deliveries.get_or_create(&label()).clone()
        })
        .inc();
    }

    /// A TLS failure on `side` (`relay` or `submission`).
    pub fn tls_failure(&self, side: &'static str, reason: &'static str) {
        self.tls_failures
            .get_or_create(&Reason { side, reason })
            .inc();
    }

    /// An AUTH failure on `side` (`relay` or `submission`).
    pub fn auth_failure(&self, side: &'static str, reason: &'static str) {
        self.auth_failures
            .get_or_create(&Reason { side, reason })
            .inc();
    }

    /// The counter of connections accepted on `listener`, for an accept
    /// loop to keep: counting then takes no address formatting and no
    /// lookup per connection.
    pub fn connections_on(&self, listener: &std::net::SocketAddr) -> Counter {
        self.connections
            .get_or_create(&Listener {
                listener: listener.to_string(),
            })
            .clone()
    }

    /// A connection or session refused by `limit` (e.g. `max_connections`).
    pub fn refused(&self, limit: &'static str) {
        self.refused.get_or_create(&Limit { limit }).inc();
    }

    /// The OpenMetrics text, with the queue gauges set from `stats`.
    pub fn encode(&self, stats: QueueStats, now_ms: u64) -> String {
        for (state, n) in [
            ("active", stats.active),
            ("waiting", stats.waiting),
            ("hold", stats.hold),
        ] {
            self.queue.get_or_create(&State { state }).set(n as i64);
        }
        let age = stats
            .oldest_ms
            .map(|t| now_ms.saturating_sub(t) as f64 / 1000.0)
            .unwrap_or(0.0);
        self.oldest.set(age);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The host of a `relay=` value: `smtp.example.com[192.0.2.7]:587` →
/// `smtp.example.com` (bounded by the configuration; the address is not).
fn relay_host(relay: &str) -> &str {
    relay.split('[').next().unwrap_or(relay)
}

/// The handle kept for `relay` and `status`, made by `make` the first
/// time. Handles only: a panic while holding the lock leaves them whole.
fn kept<M: Clone>(
    list: &Kept<M>,
    relay: &str,
    status: &'static str,
    make: impl FnOnce() -> M,
) -> M {
    let find = |v: &[(String, &'static str, M)]| {
        v.iter()
            .find(|(r, s, _)| r == relay && *s == status)
            .map(|(.., m)| m.clone())
    };
    if let Some(m) = find(&list.read().unwrap_or_else(|p| p.into_inner())) {
        return m;
    }
    let mut v = list.write().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = find(&v) {
        return m;
    }
    let m = make();
    v.push((relay.to_owned(), status, m.clone()));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_and_gauges_in_the_text() {
        let m = Metrics::new();
        m.accepted("smtp");
        m.accepted("pickup");
        m.accepted("pickup");
        m.delivery(
            "smtp.example.com[192.0.2.7]:587",
            "sent",
            Duration::from_millis(300),
        );
        m.delivery(
            "smtp.example.com[192.0.2.8]:587",
            "deferred",
            Duration::ZERO,
        );
        m.delivery("none", "bounced", Duration::ZERO);
        // Series made already: counted through the handles kept.
        m.delivery(
            "smtp.example.com[192.0.2.7]:587",
            "sent",
            Duration::from_millis(2_000),
        );
        m.delivery("none", "bounced", Duration::ZERO);
        m.refused("max_connections");
        m.local_helper_up(true);
        let text = m.encode(
            QueueStats {
                active: 1,
                waiting: 4,
                hold: 2,
                oldest_ms: Some(1_000),
            },
            61_000,
        );
        for want in [
            "postrelay_messages_accepted_total{source=\"pickup\"} 2\n",
            "postrelay_messages_accepted_total{source=\"smtp\"} 1\n",
            "postrelay_deliveries_total{relay=\"smtp.example.com\",status=\"sent\"} 2\n",
            "postrelay_deliveries_total{relay=\"smtp.example.com\",status=\"deferred\"} 1\n",
            "postrelay_deliveries_total{relay=\"none\",status=\"bounced\"} 2\n",
            "postrelay_delivery_delay_seconds_bucket{le=\"0.5\",relay=\"smtp.example.com\"} 1\n",
            "postrelay_delivery_delay_seconds_bucket{le=\"2.5\",relay=\"smtp.example.com\"} 2\n",
            "postrelay_delivery_delay_seconds_count{relay=\"smtp.example.com\"} 2\n",
            "postrelay_connections_refused_total{limit=\"max_connections\"} 1\n",
            "postrelay_queue_messages{state=\"waiting\"} 4\n",
            "postrelay_queue_messages{state=\"hold\"} 2\n",
            "postrelay_queue_oldest_message_age_seconds 60.0\n",
            "postrelay_local_helper_up 1\n",
            "# EOF\n",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
    }
}
