//! Cluster mode through real daemons: three postrelay nodes on loopback
//! relay for one provider account to one sink (the in-process fake
//! server, which notes when each MAIL arrives), their counts in a real
//! redis-server. Together they keep the account's rate and stop at its
//! daily cap; with Redis killed mid-run each keeps to its local share,
//! nothing is lost or bounced, and shared counting resumes when Redis
//! is back.
#![cfg(feature = "cluster")]

mod support;

use support::daemon::{Daemon, Options};
use support::fakeserver::{FakeServer, Script};
use support::redis::Redis;
use support::smtp::send_one;

/// A node relaying to `sink` with `limits`, its counts in `redis`.
fn node(redis: &Redis, sink: u16, limits: &str) -> Daemon {
    Daemon::start_with(Options {
        delivery: true,
        tail: format!(
            "[cluster]\nurl = \"{url}\"\nnamespace = \"test\"\nlocal_share = 0.34\nretry = \"200ms\"\n\n\
             [[relay]]\nname = \"sink\"\nhost = \"127.0.0.1\"\nport = {sink}\nsecurity = \"none\"\n\
             [relay.limits]\naccount = \"acct@provider\"\n{limits}\n",
            url = redis.url(),
        ),
        ..Options::default()
    })
}

/// Lines of `d`'s mail log with every one of `words`.
fn count(d: &Daemon, words: &[&str]) -> usize {
    d.maillog()
        .lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .count()
}

#[test]
fn three_nodes_keep_the_shared_rate_and_stop_together_at_the_daily_cap() {
    let Some(redis) = Redis::start_private() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = rt.block_on(FakeServer::start(Script::default()));
    let (rate, cap, per_node) = (10.0, 45, 20);
    let limits = format!("rate = \"{rate}/s\"\nburst = 1\nmessages_per_day = {cap}");
    let nodes: Vec<Daemon> = (0..3).map(|_| node(&redis, sink.port(), &limits)).collect();
    for (i, n) in nodes.iter().enumerate() {
        for m in 0..per_node {
            send_one(n.port, &format!("r{i}-{m}@dest.example"), "cluster");
        }
    }
    // Wait (bounded) until every message of every node is sent or waits
    // for the day: the cap stopped all three.
    let day_waits = |n: &Daemon| {
        n.queue()
            .iter()
            .filter(|m| {
                m["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains(&format!("{cap} messages per day")))
            })
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let settled = |n: &Daemon| count(n, &["status=sent"]) + day_waits(n) == per_node;
    while !nodes.iter().all(settled) {
        assert!(
            std::time::Instant::now() < deadline,
            "not settled within 90 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let sent: Vec<usize> = nodes.iter().map(|n| count(n, &["status=sent"])).collect();
    // The cap, exactly, across the three; each of the rest waits for it.
    assert_eq!(sent.iter().sum::<usize>(), cap, "{sent:?}");
    assert_eq!(sink.mails(), cap);
    for (n, s) in nodes.iter().zip(&sent) {
        assert_eq!(n.queue().len(), per_node - s);
        assert_eq!(count(n, &["status=bounced"]), 0, "{}", n.maillog());
    }
    // The combined rate, measured at the sink: never above N (5 % for the
    // sink's own timing); how close to N it comes is printed, not asserted.
    let times = sink.mail_times();
    let span = (times[cap - 1] - times[0]).as_secs_f64();
    let measured = (cap - 1) as f64 / span;
    eprintln!(
        "cluster: {cap} messages from 3 nodes in {span:.2} s: {measured:.2}/s for a limit of {rate}/s; per node {sent:?}"
    );
    assert!(measured <= rate * 1.05, "{measured:.2}/s is over {rate}/s");
}

#[test]
fn with_redis_killed_each_node_keeps_its_share_and_shares_again_after() {
    let Some(mut redis) = Redis::start_private() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = rt.block_on(FakeServer::start(Script::default()));
    // 30 an hour for the account: 10 (a third, rounded down from 10.2)
    // for each node alone.
    let nodes: Vec<Daemon> = (0..3)
        .map(|_| node(&redis, sink.port(), "messages_per_hour = 30"))
        .collect();
    let send = |tag: &str, k: usize| {
        for (i, n) in nodes.iter().enumerate() {
            for m in 0..k {
                send_one(n.port, &format!("{tag}{i}-{m}@dest.example"), tag);
            }
        }
    };
    send("a", 3);
    for n in &nodes {
        n.wait_maillog(&["to=<a", "status=sent"], 3);
    }
    redis.kill();
    // 12 each: 10 go (the share, counted from zero), 2 wait; none bounce.
    send("b", 12);
    for n in &nodes {
        n.wait_stderr("cluster: Redis unreachable");
        n.wait_maillog(&["to=<b", "status=sent"], 10);
        n.wait_maillog(&["to=<b", "status=deferred", "messages per hour"], 2);
    }
    for n in &nodes {
        assert_eq!(count(n, &["to=<b", "status=sent"]), 10, "{}", n.maillog());
        assert_eq!(count(n, &["status=bounced"]), 0, "{}", n.maillog());
        assert_eq!(n.queue().len(), 2);
        assert_eq!(n.stderr().matches("cluster: Redis unreachable").count(), 1);
    }
    assert_eq!(sink.mails(), 9 + 30);
    // Redis is back with its 9 (AOF). The next message of each node tries
    // it (every 200 ms) and is counted there again.
    redis.restart();
    std::thread::sleep(std::time::Duration::from_millis(250));
    send("c", 1);
    for n in &nodes {
        n.wait_stderr("cluster: Redis answers again");
        n.wait_maillog(&["to=<c", "status=sent"], 1);
    }
    let key = "postrelay:{test}:acct@provider:messages_per_hour";
    let shared: u64 = redis
        .cli(&["HVALS", key])
        .lines()
        .map(|v| v.trim().parse::<u64>().unwrap())
        .sum();
    assert_eq!(shared, 9 + 3);
    for n in &nodes {
        assert_eq!(n.queue().len(), 2, "the waiting two are still queued");
    }
}
