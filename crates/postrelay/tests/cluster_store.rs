//! Cluster mode's store against a real redis-server: several stores (as
//! several nodes would hold) share one account's counts, all or nothing,
//! from many tasks at once; the counts outlive a store and a Redis
//! restart; a dead or hung Redis leaves each node its local share, logged
//! once, and shared counting resumes when Redis answers again.
#![cfg(feature = "cluster")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use postrelay::config::{ClusterSettings, Share};
use postrelay::quota::cluster::{Clock, ClusterStore};
use postrelay::quota::{Counted, Limit, Limits, QuotaError, Rate, Span, Take, Verdict, Window};
use support::redis::Redis;

fn settings(redis: &Redis, namespace: &str) -> ClusterSettings {
    ClusterSettings {
        url: redis.url(),
        username: None,
        password: None,
        password_file: None,
        namespace: namespace.into(),
        local_share: Share::new(1.0 / 3.0).unwrap(),
        timeout: Duration::from_millis(500),
        retry: Duration::from_millis(100),
    }
}

fn store(redis: &Redis, namespace: &str) -> ClusterStore {
    ClusterStore::with_clock(&settings(redis, namespace), Clock::Caller).unwrap()
}

fn window(span: Span, counts: Counted, max: u32) -> Window {
    Window { span, counts, max }
}

fn limits(windows: Vec<Window>) -> Limits {
    Limits {
        account: "acct".into(),
        rate: None,
        windows,
        recipients_per_transaction: None,
    }
}

/// A fixed point of the tests' clock, on a bucket boundary of both spans.
/// One charge: `account` takes `messages` and `recipients` at `now`.
fn charge<'a>(
    account: &'a str,
    limits: &'a Limits,
    messages: u32,
    recipients: u32,
    now: SystemTime,
) -> Take<'a> {
    Take {
        account,
        limits,
        messages,
        recipients,
        now,
    }
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 / 86_400 * 86_400)
}

fn granted(v: &Verdict) -> bool {
    *v == Verdict::Granted
}

fn wait_of(v: Verdict) -> (SystemTime, Limit) {
    match v {
        Verdict::Wait { until, limit } => (until, limit),
        Verdict::Granted => panic!("granted where a wait was expected"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_share_one_window_and_a_refusal_charges_nothing() {
    let Some(redis) = Redis::start_private() else {
        return;
    };
    let (a, b) = (store(&redis, "t"), store(&redis, "t"));
    let msgs = window(Span::Hour, Counted::Messages, 10);
    let rcpts = window(Span::Hour, Counted::Recipients, 15);
    let l = limits(vec![msgs, rcpts]);
    // 10 recipients fit; the next 10 do not, and that refusal charges
    // neither window: 5 more recipients still fit, on the other node.
    assert!(granted(
        &a.take(&charge("acct", &l, 1, 10, t0())).await.unwrap()
    ));
    let (until, limit) = wait_of(b.take(&charge("acct", &l, 1, 10, t0())).await.unwrap());
    assert_eq!(limit, Limit::Window(rcpts));
    // Frees one hour after the charge, at most one bucket (1/120) later.
    let hour = Duration::from_secs(3600);
    assert!(
        until >= t0() + hour && until <= t0() + hour + hour / 120,
        "{until:?}"
    );
    assert!(granted(
        &b.take(&charge("acct", &l, 1, 5, t0())).await.unwrap()
    ));
    let usage = a.usage("acct", &l, t0()).await.unwrap();
    let used: Vec<u64> = usage.limits.iter().map(|u| u.used).collect();
    assert_eq!(used, [2, 15]);
    // Messages alone: 8 more across both nodes, then a wait.
    let mut n = 0;
    for i in 0..20 {
        let node = if i % 2 == 0 { &a } else { &b };
        if granted(
            &node
                .take(&charge("acct", &limits(vec![msgs]), 1, 0, t0()))
                .await
                .unwrap(),
        ) {
            n += 1;
        }
    }
    assert_eq!(n, 8);
    // Another namespace and another account count apart.
    assert!(granted(
        &store(&redis, "u")
            .take(&charge("acct", &l, 1, 15, t0()))
            .await
            .unwrap()
    ));
    assert!(granted(
        &a.take(&charge("other", &l, 1, 15, t0())).await.unwrap()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_on_three_nodes_never_exceed_a_window() {
    let Some(redis) = Redis::start_private() else {
        return;
    };
    let nodes: Vec<Arc<ClusterStore>> = (0..3).map(|_| Arc::new(store(&redis, "t"))).collect();
    let l = Arc::new(limits(vec![window(Span::Day, Counted::Recipients, 100)]));
    let mut tasks = Vec::new();
    for i in 0..150 {
        let (node, l) = (nodes[i % 3].clone(), l.clone());
        tasks.push(tokio::spawn(async move {
            node.take(&charge("acct", &l, 1, 1, t0())).await.unwrap()
        }));
    }
    let mut granted_count = 0;
    for t in tasks {
        if granted(&t.await.unwrap()) {
            granted_count += 1;
        }
    }
    assert_eq!(granted_count, 100);
    assert!(nodes.iter().all(|n| n.is_shared()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_is_one_bucket_for_all_nodes() {
    let Some(redis) = Redis::start_private() else {
        return;
    };
    let (a, b) = (store(&redis, "t"), store(&redis, "t"));
    let rate = Rate {
        count: 10,
        per: Duration::from_secs(1),
        burst: 2,
    };
    let l = Limits {
        rate: Some(rate),
        ..limits(vec![])
    };
    assert!(granted(
        &a.take(&charge("acct", &l, 1, 1, t0())).await.unwrap()
    ));
    assert!(granted(
        &b.take(&charge("acct", &l, 1, 1, t0())).await.unwrap()
    ));
    // The burst is spent: the next token is back 100 ms later.
    let (until, limit) = wait_of(a.take(&charge("acct", &l, 1, 1, t0())).await.unwrap());
    assert_eq!(limit, Limit::Rate(rate));
    assert_eq!(until, t0() + Duration::from_millis(100));
    let later = t0() + Duration::from_millis(100);
    assert!(granted(
        &b.take(&charge("acct", &l, 1, 1, later)).await.unwrap()
    ));
    // More than the burst at once can never go.
    let err = a.take(&charge("acct", &l, 3, 3, later)).await.unwrap_err();
    assert!(
        matches!(err, QuotaError::NeverFits { asked: 3, .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_window_frees_after_a_day_and_never_more_than_a_bucket_late() {
    let Some(redis) = Redis::start_private() else {
        return;
    };
    let s = store(&redis, "t");
    let day = Duration::from_secs(86_400);
    let w = window(Span::Day, Counted::Messages, 3);
    let l = limits(vec![w]);
    // Three charges over the day: at 0, 6 h and 12 h (plus a minute).
    for h in [0, 6, 12] {
        let at = t0() + Duration::from_secs(h * 3600 + 60);
        assert!(granted(
            &s.take(&charge("acct", &l, 1, 0, at)).await.unwrap()
        ));
    }
    // Just before a day has passed since the first (its bucket is then
    // 120 buckets old), nothing fits, and the wait ends within one bucket
    // (12 min) after that day.
    let first = t0() + Duration::from_secs(60);
    let almost = first + day - Duration::from_secs(1);
    let (until, _) = wait_of(s.take(&charge("acct", &l, 1, 0, almost)).await.unwrap());
    assert!(
        until >= first + day && until <= first + day + day / 120,
        "{until:?}"
    );
    assert!(granted(
        &s.take(&charge("acct", &l, 1, 0, until)).await.unwrap()
    ));
    // The other two still count until their own day is over.
    let (until, _) = wait_of(s.take(&charge("acct", &l, 1, 0, until)).await.unwrap());
    assert!(
        until >= first + day + Duration::from_secs(6 * 3600),
        "{until:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_outlive_the_node_and_a_redis_restart_and_keys_expire() {
    let Some(mut redis) = Redis::start_private() else {
        return;
    };
    let w = window(Span::Hour, Counted::Messages, 4);
    let l = limits(vec![w]);
    let odd = "a:b{c}";
    {
        let node = store(&redis, "t");
        for _ in 0..3 {
            assert!(granted(
                &node.take(&charge(odd, &l, 1, 0, t0())).await.unwrap()
            ));
        }
    }
    // The key is the escaped account in the namespace's hash tag, and it
    // expires: one hour and two buckets after the charge.
    let key = "postrelay:{t}:a%3Ab%7Bc%7D:messages_per_hour";
    let ttl: u64 = redis.cli(&["PTTL", key]).parse().unwrap();
    assert!(ttl > 3_600_000 && ttl <= 3_660_000, "PTTL {ttl}");
    let survivor = store(&redis, "t");
    assert_eq!(
        survivor.usage(odd, &l, t0()).await.unwrap().limits[0].used,
        3
    );
    redis.kill();
    redis.restart();
    // A new node (a restarted one) sees the three: one more fits.
    let node = store(&redis, "t");
    assert!(granted(
        &node.take(&charge(odd, &l, 1, 0, t0())).await.unwrap()
    ));
    // A node that stayed up finds its connection broken, makes it again
    // and goes on sharing: the window is full.
    assert!(!granted(
        &survivor.take(&charge(odd, &l, 1, 0, t0())).await.unwrap()
    ));
    assert!(survivor.is_shared());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_trip_per_take() {
    let Some(redis) = Redis::start_private() else {
        return;
    };
    let s = store(&redis, "t");
    let l = Limits {
        rate: Some(Rate {
            count: 1000,
            per: Duration::from_secs(1),
            burst: 1000,
        }),
        ..limits(vec![
            window(Span::Hour, Counted::Messages, 10_000),
            window(Span::Day, Counted::Recipients, 10_000),
        ])
    };
    // The first take connects (the client names itself) and finds no
    // script (SCRIPT LOAD, EVALSHA again): counted apart.
    assert!(granted(
        &s.take(&charge("acct", &l, 1, 1, t0())).await.unwrap()
    ));
    let before = redis.command_calls();
    for _ in 0..100 {
        assert!(granted(
            &s.take(&charge("acct", &l, 1, 1, t0())).await.unwrap()
        ));
    }
    let after = redis.command_calls();
    // What came over the connection: the commands the scripts run
    // themselves are counted too, and left out here.
    let inside = [
        "get", "set", "hmget", "hgetall", "hdel", "hincrby", "pexpire", "time",
    ];
    let mut sent: Vec<(String, u64)> = after
        .into_iter()
        .filter(|(c, _)| !inside.contains(&c.as_str()))
        .map(|(c, n)| {
            let was = before.iter().find(|(b, _)| *b == c).map_or(0, |b| b.1);
            (c, n - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    sent.sort();
    // One EVALSHA per take; the INFO is the first command_calls'.
    assert_eq!(sent, [("evalsha".to_owned(), 100), ("info".to_owned(), 1)]);
    assert_eq!(s.round_trips(), 101);
}

/// Log lines of the store, collected for the test.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_node_has_its_share_logged_once_then_shares_again() {
    let Some(mut redis) = Redis::start_private() else {
        return;
    };
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let s = store(&redis, "t");
    let l = limits(vec![window(Span::Hour, Counted::Messages, 9)]);
    assert!(granted(
        &s.take(&charge("acct", &l, 1, 0, t0())).await.unwrap()
    ));
    redis.kill();
    // A third of 9: three from this node alone (its own count starts at
    // zero), then a wait; the switch is logged once, not per request.
    let mut n = 0;
    for _ in 0..10 {
        if granted(&s.take(&charge("acct", &l, 1, 0, t0())).await.unwrap()) {
            n += 1;
        }
    }
    assert_eq!(n, 3);
    assert!(!s.is_shared());
    assert_eq!(lines.count("Redis unreachable"), 1);
    redis.restart();
    // Tried again every 100 ms: wait (bounded) for the switch back.
    let mut back = false;
    for _ in 0..100 {
        let v = s.take(&charge("acct", &l, 1, 0, t0())).await.unwrap();
        if s.is_shared() {
            // The shared count had 1 (AOF): this one was the second.
            assert!(granted(&v));
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(back, "shared counting did not resume within 2 s");
    assert_eq!(lines.count("Redis answers again"), 1);
    let usage = s.usage("acct", &l, t0()).await.unwrap();
    assert_eq!(usage.limits[0].used, 2);
    assert_eq!(lines.count("Redis unreachable"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_is_given_up_after_the_timeout() {
    let Some(redis) = Redis::start_private() else {
        return;
    };
    let s = store(&redis, "t");
    let l = limits(vec![window(Span::Hour, Counted::Messages, 9)]);
    assert!(granted(
        &s.take(&charge("acct", &l, 1, 0, t0())).await.unwrap()
    ));
    redis.pause(true);
    // The request does not hang with Redis: bounded by the test's own
    // limit, far above the store's 500 ms.
    let v = tokio::time::timeout(
        Duration::from_secs(30),
        s.take(&charge("acct", &l, 1, 0, t0())),
    )
    .await
    .expect("take hung with Redis")
    .unwrap();
    assert!(granted(&v));
    assert!(!s.is_shared());
    redis.pause(false);
}
