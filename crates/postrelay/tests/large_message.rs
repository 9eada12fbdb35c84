//! A 50 MB message through the whole daemon: Python's `smtplib` hands it
//! to the intake, the daemon queues it and relays it to an SMTP server
//! (the in-process fake server), and the daemon's peak memory (`VmHWM`)
//! grows by a small fraction of the message: intake, spool and relay
//! client stream the body in bounded buffers, none holds a copy. A 20 MB
//! message into the spool alone is held to a fixed bound (8 MiB).

mod support;

use std::process::Command;
use std::time::Duration;

use support::daemon::{Daemon, Options};
use support::fakeserver::{FakeServer, Script};
use support::peers;
use support::spool::{message, queued_id, session, transaction};

/// The message's size, roughly.
const BIG: usize = 50 * 1024 * 1024;

/// Sends a message of about `size` octets whose last line is `last`.
const PY_SEND: &str = r#"
import smtplib, sys
port, size, last = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
line = b"x" * 76 + b"\r\n"
head = b"From: big@example.org\r\nTo: rcpt@dest.example\r\nSubject: big\r\n\r\n"
msg = head + line * (size // len(line)) + last + b"\r\n"
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=300)
s.sendmail("big@example.org", ["rcpt@dest.example"], msg)
s.quit()
"#;

fn send(port: u16, size: usize, last: &str) {
    let out = Command::new("python3")
        .args(["-c", PY_SEND, &port.to_string(), &size.to_string(), last])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The daemon's peak resident memory so far, in bytes.
fn peak_rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// Waits (at most 120 s) until `server` has `n` bodies.
async fn delivered(server: &FakeServer, n: usize, d: &Daemon) -> Vec<Vec<u8>> {
    match server.wait_bodies(n, Duration::from_secs(120)).await {
        Some(bodies) => bodies,
        None => panic!("not delivered within 120 s:\n{}", d.stderr()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_through_with_flat_memory() {
    if !peers::require("python3") {
        return;
    }
    let server = FakeServer::start(Script::default()).await;
    let d = Daemon::start_with(Options {
        intake: "message_size_limit = \"60 MiB\"".into(),
        tail: format!(
            "[[relay]]\nname = \"fake\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"starttls\"\nsecurity = \"none\"\n",
            server.port()
        ),
        delivery: true,
        ..Options::default()
    });
    // A small message first, so that every path (intake, spool, relay
    // session) has run once and the baseline includes their fixed costs.
    let port = d.port;
    tokio::task::spawn_blocking(move || send(port, 1000, "small"))
        .await
        .unwrap();
    delivered(&server, 1, &d).await;
    let before = peak_rss(d.pid());

    tokio::task::spawn_blocking(move || send(port, BIG, "the end of the big one"))
        .await
        .unwrap();
    let bodies = delivered(&server, 2, &d).await;
    d.wait_queue_len(0);
    let after = peak_rss(d.pid());

    let body = &bodies[1];
    assert!(body.len() > BIG, "{} octets delivered", body.len());
    assert!(
        body.ends_with(b"the end of the big one\r\n"),
        "the body arrived whole"
    );
    let grew = after.saturating_sub(before);
    eprintln!("daemon peak memory: {before} octets after a small message, {after} after {BIG}");
    assert!(
        grew < (BIG / 4) as u64,
        "peak memory grew by {grew} octets (from {before} to {after}) for a {BIG}-octet message"
    );
}

/// A 20 MB message streams to the spool: the daemon's peak RSS grows by
/// far less than the message (< 8 MiB), so memory does not scale with
/// message size.
#[test]
fn large_message_streams_with_bounded_memory() {
    const SIZE: usize = 20_000_000;
    let d = Daemon::start_with(Options {
        intake: "message_size_limit = \"64 MiB\"".into(),
        ..Default::default()
    });
    // Warm up: a session and a 1 MB message, so that thread stacks, the
    // runtime and buffers are already counted.
    let mut c = session(d.port);
    let (_, r) = transaction(&mut c, &message("warm-up", 1_000_000));
    assert!(queued_id(&r).is_some(), "{r:?}");
    let before = peak_rss(d.pid());

    let msg = message("large", SIZE);
    let (step, r) = transaction(&mut c, &msg);
    let id = queued_id(&r).unwrap_or_else(|| panic!("{step:?}: {r:?}"));
    let after = peak_rss(d.pid());
    let body = d.body(&id);
    assert!(body.len() >= SIZE, "spooled {} bytes", body.len());
    let growth = after.saturating_sub(before);
    eprintln!("VmHWM before {before} after {after} growth {growth} for a {SIZE}-byte message");
    assert!(
        growth < 8 * 1024 * 1024,
        "peak RSS grew by {growth} bytes for a {SIZE}-byte message (from {before} to {after})"
    );
}
