//! The benchmark's tools (`crates/postrelay-load`) through the real
//! daemon, for a handful of messages: the generator's messages are
//! accepted, relayed to the counting sink (plain, and with STARTTLS + AUTH
//! PLAIN) and matched there, so `scripts/bench` measures what it claims.
//! Counts only; the speed lives in docs/benchmarks.md.

mod support;

use std::sync::atomic::Ordering;

use postrelay_load::send::{SendArgs, run};
use postrelay_load::sink::SinkArgs;
use postrelay_load::testing::{sink_args, spawn_sink};
use support::daemon::{Daemon, Options};

fn load(port: u16, log: &std::path::Path, reuse: bool) -> SendArgs {
    SendArgs {
        server: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        messages: 8,
        sessions: 3,
        size: 1500,
        recipients: 2,
        reuse,
        no_pipelining: false,
        gap_ms: 0,
        sink_log: Some(log.to_owned()),
        drain_timeout: 60,
        domain: "load.test".into(),
        max_errors: 1,
    }
}

fn relay_daemon(sink_port: u16, upstream: &str) -> Daemon {
    Daemon::start_with(Options {
        tail: format!(
            "[[relay]]\nname = \"sink\"\nhost = \"127.0.0.1\"\nport = {sink_port}\n{upstream}\n"
        ),
        delivery: true,
        ..Options::default()
    })
}

#[test]
fn generated_load_crosses_the_daemon_to_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("arrivals");
    let (sink, counters) = spawn_sink(sink_args(&log));
    let d = relay_daemon(sink.port(), "security = \"none\"");
    for (i, reuse) in [false, true].into_iter().enumerate() {
        let r = run(load(d.port, &log, reuse)).unwrap();
        assert_eq!((r.accepted, r.errors, r.missing), (8, 0, 0), "{r:?}");
        assert_eq!(
            r.delay_ms.unwrap().n,
            8,
            "every message matched at the sink"
        );
        assert_eq!(
            counters.recipients.load(Ordering::Relaxed),
            16 * (i as u64 + 1)
        );
    }
    d.wait_queue_len(0);
}

#[test]
fn generated_load_reaches_a_sink_that_wants_starttls_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("arrivals");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "bench-secret\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (sink, counters) = spawn_sink(SinkArgs {
        tls: true,
        user: Some("bench".into()),
        password_file: Some(pw.clone()),
        ..sink_args(&log)
    });
    let d = relay_daemon(
        sink.port(),
        &format!(
            "tls = \"starttls\"\nsecurity = \"encrypt\"\nusername = \"bench\"\npassword_file = \"{}\"",
            pw.display()
        ),
    );
    let r = run(load(d.port, &log, true)).unwrap();
    assert_eq!((r.accepted, r.errors, r.missing), (8, 0, 0), "{r:?}");
    assert!(counters.tls_sessions.load(Ordering::Relaxed) >= 1);
    assert!(counters.logins.load(Ordering::Relaxed) >= 1);
    assert_eq!(counters.recipients.load(Ordering::Relaxed), 16);
}
