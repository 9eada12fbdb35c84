//! The generator against the sink directly (no relay): every message is
//! counted once with its recipients, sessions and connections are what
//! was asked for, and a sink that wants STARTTLS + AUTH refuses a client
//! that does neither, which the generator counts as failures.

use postrelay_load::send::{SendArgs, run};
use postrelay_load::testing::{sink_args, spawn_sink};

fn args(server: std::net::SocketAddr, log: &std::path::Path) -> SendArgs {
    SendArgs {
        server,
        messages: 30,
        sessions: 4,
        size: 2000,
        recipients: 3,
        reuse: false,
        no_pipelining: false,
        gap_ms: 0,
        sink_log: Some(log.to_owned()),
        drain_timeout: 30,
        domain: "load.test".into(),
        max_errors: 100,
    }
}

#[test]
fn every_message_arrives_once_with_its_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("arrivals");
    let (addr, counters) = spawn_sink(sink_args(&log));
    let mut total = 0;
    for (reuse, no_pipelining) in [(false, false), (true, false), (true, true)] {
        let r = run(SendArgs {
            reuse,
            no_pipelining,
            ..args(addr, &log)
        })
        .unwrap();
        total += 30;
        assert_eq!((r.accepted, r.errors, r.missing), (30, 0, 0), "{r:?}");
        assert_eq!(r.connections, if reuse { 4 } else { 30 });
        assert_eq!(r.latency_ms.unwrap().n, 30);
        assert_eq!(r.delay_ms.unwrap().n, 30, "every arrival is matched");
        assert!(r.e2e_per_s.is_some());
        let seen = counters
            .transactions
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(seen, total);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 90);
    assert!(
        text.lines().all(|l| l.split(' ').nth(1) == Some("3")),
        "{text}"
    );
}

/// Runs five messages against a sink with `tls` and a login; the first
/// failure and the sink's count.
fn refused(tls: bool) -> (String, u64) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("arrivals");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    let (addr, counters) = spawn_sink(postrelay_load::sink::SinkArgs {
        tls,
        user: Some("u".into()),
        password_file: Some(pw),
        ..sink_args(&log)
    });
    let r = run(SendArgs {
        messages: 5,
        sessions: 1,
        drain_timeout: 1,
        ..args(addr, &log)
    })
    .unwrap();
    assert_eq!((r.accepted, r.errors), (0, 5), "{r:?}");
    let seen = counters
        .transactions
        .load(std::sync::atomic::Ordering::Relaxed);
    (r.first_error.unwrap(), seen)
}

#[test]
fn a_sink_that_wants_tls_and_auth_refuses_a_client_without() {
    let (why, seen) = refused(true);
    assert!(
        why.contains("MAIL: expected 2, got 530") && why.contains("STARTTLS"),
        "{why}"
    );
    assert_eq!(seen, 0);
    let (why, seen) = refused(false);
    assert!(
        why.contains("MAIL: expected 2, got 530") && why.contains("Authentication required"),
        "{why}"
    );
    assert_eq!(seen, 0);
}

/// Sends `line` (unless empty) and reads one reply's code.
fn exchange(
    r: &mut std::io::BufReader<std::net::TcpStream>,
    w: &mut std::net::TcpStream,
    line: &str,
) -> u16 {
    use std::io::{BufRead, Write};
    if !line.is_empty() {
        w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    }
    loop {
        let mut reply = String::new();
        assert!(
            r.read_line(&mut reply).unwrap() > 0,
            "closed after {line:?}"
        );
        if reply.as_bytes().get(3) != Some(&b'-') {
            return reply[..3].parse().unwrap();
        }
    }
}

#[test]
fn the_sink_takes_only_the_right_password() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("arrivals");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    let (addr, counters) = spawn_sink(postrelay_load::sink::SinkArgs {
        user: Some("u".into()),
        password_file: Some(pw),
        ..sink_args(&log)
    });
    let mut w = std::net::TcpStream::connect(addr).unwrap();
    w.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut r = std::io::BufReader::new(w.try_clone().unwrap());
    let plain = postrelay_smtp::sasl::plain;
    assert_eq!(exchange(&mut r, &mut w, ""), 220);
    assert_eq!(exchange(&mut r, &mut w, "EHLO c.test"), 250);
    let wrong = format!("AUTH PLAIN {}", plain("", "u", "secreT"));
    assert_eq!(exchange(&mut r, &mut w, &wrong), 535);
    assert_eq!(exchange(&mut r, &mut w, "MAIL FROM:<a@b.test>"), 530);
    let other = format!("AUTH PLAIN {}", plain("", "v", "secret"));
    assert_eq!(exchange(&mut r, &mut w, &other), 535);
    let right = format!("AUTH PLAIN {}", plain("", "u", "secret"));
    assert_eq!(exchange(&mut r, &mut w, &right), 235);
    assert_eq!(exchange(&mut r, &mut w, "MAIL FROM:<a@b.test>"), 250);
    assert_eq!(
        counters.logins.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
