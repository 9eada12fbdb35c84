//! No disk I/O under the queue's lock: intake's `250` never waits for an
//! administrator's bulk operation. 10,000 messages (from smtp-source, a
//! real client) are queued, `postrelay queue delete --all` starts deleting
//! them (one fsync each), and a message sent meanwhile is acknowledged
//! while most of the old ones are still on disk. When the deletion held
//! the index lock throughout, the `250` could only come after the last
//! old message was gone.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options, bin};
use support::peers::require;
use support::smtp::Raw;

const MESSAGES: usize = 10_000;

/// Envelope files in queue/ (one per queued message).
fn queued_on_disk(d: &Daemon) -> usize {
    std::fs::read_dir(d.spool().join("queue"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".env"))
        .count()
}

/// Polls `f` every 10 ms for at most `limit`; panics with `what` after.
fn wait(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn intake_keeps_acknowledging_during_a_bulk_delete() {
    if !require("smtp-source") {
        return;
    }
    let d = Daemon::start_with(Options {
        intake: "max_connections = 100".into(),
        ..Options::default()
    });
    let st = Command::new("smtp-source")
        .args(["-s", "20", "-m", &MESSAGES.to_string(), "-l", "512"])
        .args(["-f", "load@example.com", "-t", "rcpt@example.com"])
        .arg(format!("127.0.0.1:{}", d.port))
        .stdin(Stdio::null())
        .status()
        .expect("run smtp-source");
    assert!(st.success(), "smtp-source failed");
    wait("every message queued", Duration::from_secs(60), || {
        queued_on_disk(&d) == MESSAGES
    });

    let mut delete = Command::new(bin())
        .arg("--config")
        .arg(&d.config)
        .args(["queue", "delete", "--all"])
        .env_remove("POSTRELAY_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start queue delete --all");
    // The deletion has begun once files go away.
    wait("the deletion to start", Duration::from_secs(60), || {
        queued_on_disk(&d) < MESSAGES
    });

    let (mut c, _) = Raw::connect(d.port);
    c.cmd("EHLO admin.example");
    assert_eq!(c.cmd("MAIL FROM:<cron@example.com>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<ops@example.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let reply = c.cmd("Subject: during the delete\r\n\r\nstill here\r\n.");
    // Counted the moment the 250 is read: the old messages still there.
    let left_at_ack = queued_on_disk(&d);
    let still_deleting = delete.try_wait().unwrap().is_none();
    assert_eq!(reply.code, 250, "{}", reply.text());
    c.cmd("QUIT");
    assert!(
        still_deleting && left_at_ack > MESSAGES / 2,
        "the 250 waited for the deletion: {left_at_ack} of {MESSAGES} old messages \
         were left when it came (deletion still running: {still_deleting})"
    );

    let out = delete.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("{MESSAGES} message(s) deleted")),
        "{said}"
    );
    // The message accepted during the deletion was not part of it.
    let id = reply.text().rsplit(' ').next().unwrap().to_string();
    let q = d.queue();
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!(q[0]["id"], id.as_str());
}
