//! Recipients delivered in the middle of an attempt are recorded before
//! the attempt goes on (`queue/progress.rs`), so that a crash during the
//! rest of it does not deliver them again.
//!
//! A message for two destinations: the first (`one`) accepts it, the
//! second (`two`) takes the connection and never greets. By the time
//! `two` has the connection, `one`'s delivery must be on disk: the daemon
//! is killed (SIGKILL) right then and restarted, and its next attempt,
//! which goes to `two` again, must leave `one` alone. Both servers are the
//! in-process fake (`support/fakeserver.rs`): a real one cannot stall on
//! cue, and the test needs the exact count of what `one` received at the
//! moment `two` is contacted. The real provider under kill -9 is
//! `crash_torture.rs`.

mod support;

use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options};
use support::fakeserver::{FakeServer, Script};
use support::smtp::Raw;

/// Waits (at most 30 s) until `server` has accepted `n` connections.
fn wait_connections(server: &FakeServer, n: usize, d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.connections() < n {
        assert!(
            Instant::now() < deadline,
            "no connection {n} to the second destination within 30 s:\n{}",
            d.maillog()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon that sends `one.example` to relay `one` at port `one` and
/// `two.example` to relay `two` at port `two`.
fn daemon(one: u16, two: u16) -> (Daemon, tempfile::TempDir) {
    let tables = tempfile::tempdir().unwrap();
    let transport = tables.path().join("transport");
    std::fs::write(&transport, "one.example relay:one\ntwo.example relay:two\n").unwrap();
    let relay = |name: &str, port: u16| {
        format!(
            "[[relay]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n"
        )
    };
    let d = Daemon::start_with(Options {
        delivery: true,
        tail: format!(
            "[routing]\ntransport = \"{}\"\n{}{}",
            transport.display(),
            relay("one", one),
            relay("two", two),
        ),
        ..Options::default()
    });
    (d, tables)
}

/// Queues one message for a@one.example and b@two.example.
fn send(d: &Daemon) {
    let (mut c, _) = Raw::connect(d.port);
    c.cmd("EHLO client.example");
    assert_eq!(c.cmd("MAIL FROM:<sender@example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<a@one.example>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<b@two.example>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    assert_eq!(
        c.cmd("Subject: two destinations\r\n\r\nbody\r\n.").code,
        250
    );
    c.cmd("QUIT");
}

/// The `status=sent` lines for `rcpt` in mail log `log`.
fn sent_lines(log: &str, rcpt: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(&format!("to=<{rcpt}>")) && l.contains("status=sent"))
        .count()
}

#[test]
fn a_crash_during_the_second_destination_does_not_repeat_the_first() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let one = rt.block_on(FakeServer::start(Script::default()));
    let two = rt.block_on(FakeServer::start(Script {
        greet: false,
        ..Script::default()
    }));
    let (mut d, _tables) = daemon(one.port(), two.port());
    send(&d);

    wait_connections(&two, 1, &d);
    assert_eq!(one.bodies().len(), 1, "the first destination comes first");
    // Logged when recorded, not at the end of the attempt (which a crash
    // may never reach, and this one does not: `two` never greets). The
    // log's own thread writes it a moment later.
    let log = d.wait_maillog(&["to=<a@one.example>", "status=sent"], 1);
    assert_eq!(sent_lines(&log, "a@one.example"), 1, "{log}");
    d.kill9();
    d.restart();
    // The next attempt: the first destination, were it still pending,
    // would be sent to before the second is contacted again.
    wait_connections(&two, 2, &d);
    assert_eq!(
        one.bodies().len(),
        1,
        "a@one.example was delivered again after the crash:\n{}",
        d.maillog()
    );
    let queued = d.queue();
    assert_eq!(queued.len(), 1, "{queued:?}");
    let states: Vec<(&str, &str)> = queued[0]["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["address"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("a@one.example", "delivered"), ("b@two.example", "pending")]
    );
}

/// Without a crash: each recipient is delivered and logged once, whether
/// its delivery was recorded mid-attempt or at the end.
#[test]
fn each_recipient_of_a_two_step_attempt_is_logged_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let one = rt.block_on(FakeServer::start(Script::default()));
    let two = rt.block_on(FakeServer::start(Script::default()));
    let (d, _tables) = daemon(one.port(), two.port());
    send(&d);
    d.wait_queue_len(0);
    assert_eq!((one.bodies().len(), two.bodies().len()), (1, 1));
    let log = d.wait_maillog_settled();
    for rcpt in ["a@one.example", "b@two.example"] {
        assert_eq!(sent_lines(&log, rcpt), 1, "{rcpt}:\n{log}");
    }
}
