//! A provider's sending limits, through the real daemon: a throttle reply
//! (Gmail's `550 5.4.5`) defers instead of bouncing and rests the relay;
//! a message with more recipients than a transaction may carry goes out
//! in several transactions on one connection, each recipient's outcome
//! kept; a daily window lets exactly its number through and keeps the
//! rest queued with the limit and the time in `queue list`; a relay at its
//! limit hands mail to its `spill_to` relay (the engine alone).
//!
//! The throttle reply comes from the in-process fake (a real Postfix
//! cannot be made to answer 5.4.5 once and then accept); the splitting and
//! the window use the real Postfix provider (`scripts/provider`). The
//! counting itself is unit-tested with an injected clock in
//! `src/quota/tests.rs`.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use postrelay::deliver::{Attempt, Deliverer, Outcome, Reason};
use postrelay::net::resolve::Resolver;

use support::daemon::{Daemon, Options};
use support::fakeserver::{FakeServer, Script};
use support::peers::require;
use support::provider::Provider;
use support::smtp::{Raw, send_one};

/// Queues one message from `app@example.org` to each of `to`.
fn send(port: u16, to: &[String]) {
    let (mut c, greeting) = Raw::connect(port);
    assert_eq!(greeting.code, 220);
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<app@example.org>").code, 250);
    for r in to {
        assert_eq!(c.cmd(&format!("RCPT TO:<{r}>")).code, 250, "{r}");
    }
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"Subject: many\r\n\r\nbody\r\n");
    assert_eq!(c.cmd(".").code, 250);
    c.cmd("QUIT");
}

/// A `[[relay]]` for the provider (STARTTLS, its CA, its user).
fn provider_relay(p: &Provider, dir: &std::path::Path, limits: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let pw = dir.join("relay-password");
    std::fs::write(&pw, format!("{}\n", p.password)).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        "[[relay]]\nname = \"provider\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"starttls\"\n\
         ca_file = \"{ca}\"\nusername = \"{user}\"\npassword_file = \"{pw}\"\n[relay.limits]\n{limits}\n",
        port = p.starttls_port,
        ca = p.ca_file().display(),
        user = p.user,
        pw = pw.display(),
    )
}

/// The provider and a daemon relaying to it with `limits`; `None`
/// without Postfix (a failure under CI=true).
fn with_provider(limits: &str) -> Option<(Provider, tempfile::TempDir, Daemon)> {
    if !(require("postfix") && require("saslpasswd2")) {
        return None;
    }
    let p = Provider::start();
    let secrets = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(Options {
        delivery: true,
        tail: provider_relay(&p, secrets.path(), limits),
        ..Options::default()
    });
    Some((p, secrets, d))
}

#[test]
fn a_daily_limit_reply_defers_cools_the_relay_down_and_mail_flows_after() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gmail = rt.block_on(FakeServer::start(Script {
        first_mail_replies: vec!["550 5.4.5 Daily user sending limit exceeded. - gsmtp".into()],
        ..Script::default()
    }));
    let d = Daemon::start_with(Options {
        delivery: true,
        tail: format!(
            "[[relay]]\nname = \"gmail\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
             [relay.limits]\ncool_down = \"4s\"\n",
            gmail.port()
        ),
        ..Options::default()
    });
    send_one(d.port, "first@dest.example", "first");
    d.wait_maillog(&["to=<first@dest.example>", "status=deferred", "5.4.5"], 1);
    send_one(d.port, "second@dest.example", "second");
    let log = d.wait_maillog(&["to=<second@dest.example>", "status=deferred"], 1);
    // The second message met the cool-down: it was not sent to the relay.
    assert_eq!(gmail.mails(), 1, "{log}");
    let second = log
        .lines()
        .find(|l| l.contains("to=<second@dest.example>"))
        .unwrap();
    assert!(
        second.contains("cool-down after \"550 5.4.5 Daily user"),
        "{second}"
    );
    let first = log
        .lines()
        .find(|l| l.contains("to=<first@dest.example>"))
        .unwrap();
    assert!(
        first.contains("dsn=4.4.5") && first.contains("cools down until"),
        "{first}"
    );
    // After the cool-down both go, and nothing bounced (a bounce would be
    // a third message to the relay).
    let log = d.wait_maillog(&["status=sent"], 2);
    assert!(!log.contains("status=bounced"), "{log}");
    d.wait_queue_len(0);
    assert_eq!(gmail.bodies().len(), 2, "{log}");
    assert_eq!(
        gmail.mails(),
        3,
        "one refused MAIL, two transactions: {log}"
    );
}

/// The provider's `nrcpt=` per queue id, in log order, and the smtpd
/// process that received each.
fn provider_transactions(log: &str) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    for line in log.lines().filter(|l| l.contains("nrcpt=")) {
        let qid = line.split(": ").nth(1).unwrap_or_default().to_owned();
        let n: usize = line
            .split("nrcpt=")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap();
        let smtpd = log
            .lines()
            .find(|l| l.contains("/smtpd[") && l.contains(&format!("{qid}: client=")))
            .and_then(|l| l.split("/smtpd[").nth(1))
            .and_then(|s| s.split(']').next())
            .unwrap_or_default()
            .to_owned();
        out.push((qid, n, smtpd));
    }
    out
}

#[test]
fn a_message_over_the_transaction_limit_goes_in_chunks_on_one_connection() {
    let Some((p, _secrets, d)) = with_provider("recipients_per_transaction = 50") else {
        return;
    };
    // 120 recipients; the 61st (in the second chunk) is refused for good.
    let to: Vec<String> = (0..120)
        .map(|i| {
            if i == 60 {
                "fail550-x@dest.example".to_owned()
            } else {
                format!("r{i}@dest.example")
            }
        })
        .collect();
    send(d.port, &to);
    let log = d.wait_maillog(&["status=sent"], 119);
    let bounced: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("status=bounced"))
        .collect();
    assert_eq!(bounced.len(), 1, "{log}");
    assert!(
        bounced[0].contains("to=<fail550-x@dest.example>"),
        "{}",
        bounced[0]
    );
    let plog = p.maillog();
    let tx = provider_transactions(&plog);
    let counts: Vec<usize> = tx.iter().take(3).map(|t| t.1).collect();
    assert_eq!(
        counts,
        [50, 49, 20],
        "transactions at the provider:\n{plog}"
    );
    let smtpd = &tx[0].2;
    assert!(
        !smtpd.is_empty() && tx[..3].iter().all(|t| &t.2 == smtpd),
        "{tx:?}"
    );
    // One connection: that smtpd did not disconnect between the chunks.
    let first = plog.find(&format!("{}: client=", tx[0].0)).unwrap();
    let last = plog.find(&format!("{}: client=", tx[2].0)).unwrap();
    let between = &plog[first..last];
    assert!(
        !between.contains(&format!("/smtpd[{smtpd}]: disconnect from")),
        "{between}"
    );
}

#[test]
fn a_daily_window_lets_exactly_its_number_through_and_the_rest_wait_visibly() {
    let Some((p, _secrets, d)) = with_provider("messages_per_day = 3") else {
        return;
    };
    let started = SystemTime::now();
    for i in 0..5 {
        send_one(d.port, &format!("w{i}@dest.example"), &format!("w{i}"));
    }
    let log = d.wait_maillog(&["status=deferred", "3 messages per day"], 2);
    assert_eq!(log.matches("status=sent").count(), 3, "{log}");
    assert!(!log.contains("status=bounced"), "{log}");
    // The mail log line comes before the envelope's new reason is on disk,
    // which `queue list` reads: wait for the reason, not only the count.
    let waiting = d.wait_queue("2 messages waiting for the daily limit", |q| {
        q.len() == 2
            && q.iter().all(|m| {
                m["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("sending limit"))
            })
    });
    let day = Duration::from_secs(86_400);
    let after_a_day = started + day - Duration::from_secs(60);
    for m in &waiting {
        let reason = m["reason"].as_str().unwrap();
        assert!(
            reason.contains(
                "has reached its sending limit (3 messages per day: 3 of 3 used); waits until"
            ),
            "{reason}"
        );
        let next =
            SystemTime::UNIX_EPOCH + Duration::from_millis(m["next_attempt_ms"].as_u64().unwrap());
        assert!(next > after_a_day, "{m:#}");
        assert_eq!(
            m["attempts"], 0,
            "a quota wait is not a failed attempt: {m:#}"
        );
    }
    let text = d.cli(&["queue", "list"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.matches("3 messages per day").count(), 2, "{text}");
    assert_eq!(p.wait_delivered(3, Duration::from_secs(30)).len(), 3);
    assert_eq!(p.delivered().len(), 3, "{}", p.maillog());
}

/// One attempt of the engine alone for a message to `rcpt@dest.example`.
async fn attempt(engine: &Deliverer) -> Attempt {
    let sp = support::client::spool(b"Subject: spill\r\n\r\nbody\r\n");
    let env = support::client::envelope(&sp);
    engine.attempt(&env, &sp.path, &[0]).await
}

#[tokio::test]
async fn a_relay_at_its_limit_spills_to_its_spill_to_relay_not_to_the_next_one() {
    let (a, b, c) = (
        FakeServer::start(Script::default()).await,
        FakeServer::start(Script::default()).await,
        FakeServer::start(Script::default()).await,
    );
    let relay = |name: &str, port: u16, limits: &str| {
        format!(
            "[[relay]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             security = \"none\"\n[relay.limits]\n{limits}\n"
        )
    };
    let text = format!(
        "hostname = \"client.test\"\n{}{}{}",
        relay("a", a.port(), "messages_per_day = 1\nspill_to = \"c\""),
        relay("b", b.port(), ""),
        relay("c", c.port(), "messages_per_day = 1"),
    );
    let config = postrelay::config::parse(&text, "test").unwrap();
    let engine = Deliverer::new(&config, None, Arc::new(Resolver::system())).unwrap();
    for _ in 0..2 {
        let done = attempt(&engine).await;
        assert!(
            matches!(&done.outcomes[..], [(0, Outcome::Delivered(_))]),
            "{:?}",
            done.outcomes
        );
    }
    assert_eq!(
        (a.bodies().len(), b.bodies().len(), c.bodies().len()),
        (1, 0, 1)
    );
    // Both used up: the mail waits (for the earlier of the two), and "b",
    // the next relay in the list, is not asked.
    let third = attempt(&engine).await;
    match &third.outcomes[..] {
        [(0, Outcome::Deferred(Reason::Quota { relay, limit, .. }))] => {
            assert_eq!(relay, "c");
            assert!(limit.starts_with("1 messages per day"), "{limit}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        third.summary().contains("has reached its sending limit"),
        "{}",
        third.summary()
    );
    assert_eq!(b.connections(), 0);
    engine.close_idle();
}
