//! Notices postrelay writes itself, with a relay that is down: the
//! "delayed" warning (once) and the bounce when a message expires.
//! No peer needed: the relay is a loopback port held closed.

mod support;

use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options};
use support::deadport::DeadPort;
use support::smtp::Raw;

/// A relay that is down, and its section; keep the port for the test.
fn dead_relay() -> (DeadPort, String) {
    let dead = DeadPort::new();
    let section = format!(
        "[[relay]]\nname = \"down\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n",
        dead.port()
    );
    (dead, section)
}

fn send(port: u16) -> String {
    let (mut c, _) = Raw::connect(port);
    c.cmd("EHLO client.example");
    c.cmd("MAIL FROM:<sender@example.org>");
    c.cmd("RCPT TO:<rcpt@dest.example>");
    c.cmd("DATA");
    let reply = c.cmd("Subject: waiting\r\n\r\nbody\r\n.");
    assert_eq!(reply.code, 250);
    c.cmd("QUIT");
    reply.text().rsplit(' ').next().unwrap().to_string()
}

/// Flushes until `f(queue)` holds (bounded).
fn flush_until(
    d: &Daemon,
    what: &str,
    f: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(d.cli(&["queue", "flush"]).status.success());
        std::thread::sleep(Duration::from_millis(300));
        let q = d.queue();
        if f(&q) {
            return q;
        }
        assert!(
            Instant::now() < deadline,
            "waited 30 s for {what}: {q:#?}\n{}",
            d.maillog()
        );
    }
}

fn notices(q: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    q.iter()
        .filter(|m| m["origin"]["kind"] == "bounce")
        .collect()
}

#[test]
fn a_delayed_message_warns_its_sender_once() {
    let (_dead, relay) = dead_relay();
    let d = Daemon::start_with(Options {
        tail: format!("{relay}\n[bounce]\ndelay_warning = \"1s\"\n"),
        delivery: true,
        ..Options::default()
    });
    let id = send(d.port);
    let q = flush_until(&d, "a delay notice", |q| !notices(q).is_empty());
    let notice = notices(&q)[0];
    assert_eq!(
        notice["sender"], "",
        "notices use the null sender by default"
    );
    assert_eq!(notice["recipients"][0]["address"], "sender@example.org");
    let body = String::from_utf8(d.body(notice["id"].as_str().unwrap())).unwrap();
    assert!(body.contains("Action: delayed"), "{body}");
    assert!(
        body.contains("Final-Recipient: rfc822; rcpt@dest.example"),
        "{body}"
    );
    assert!(
        q.iter().any(|m| m["id"] == id.as_str()),
        "the original still waits"
    );
    d.wait_maillog(&["sender delay notification"], 1);
    // More attempts do not warn again. An attempt decides on the warning
    // before it records itself in the envelope (`attempts`), so once the
    // count went up the attempt has had its chance to warn.
    let attempts = |q: &[serde_json::Value]| {
        q.iter()
            .find(|m| m["id"] == id.as_str())
            .and_then(|m| m["attempts"].as_u64())
            .unwrap_or_else(|| panic!("{id} is not queued: {q:#?}"))
    };
    let mut seen = attempts(&q);
    for _ in 0..3 {
        let q = flush_until(&d, "another attempt", |q| attempts(q) > seen);
        seen = attempts(&q);
        assert_eq!(notices(&q).len(), 1, "one warning per message: {q:#?}");
    }
}

#[test]
fn an_expired_message_bounces_to_its_sender() {
    let (_dead, relay) = dead_relay();
    let d = Daemon::start_with(Options {
        queue: "max_lifetime = \"2s\"\nmin_backoff = \"1s\"\nmax_backoff = \"1s\"\n".into(),
        tail: relay,
        delivery: true,
        ..Options::default()
    });
    let id = send(d.port);
    let q = flush_until(&d, "the expiry bounce", |q| {
        !q.iter().any(|m| m["id"] == id.as_str())
    });
    let notice = notices(&q)[0];
    assert_eq!(notice["recipients"][0]["address"], "sender@example.org");
    let body = String::from_utf8(d.body(notice["id"].as_str().unwrap())).unwrap();
    assert!(
        body.contains("Action: failed") && body.contains("Status: 4.4.7"),
        "{body}"
    );
    d.wait_maillog(&["status=expired, returned to sender"], 1);
    d.wait_maillog(&["sender non-delivery notification"], 1);
}
