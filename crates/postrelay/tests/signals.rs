//! Signals and the spool lock, through the real binary: SIGTERM finishes
//! the message being received and tells idle clients 421, SIGHUP re-reads
//! the configuration (and keeps the running one when the file is bad), and
//! a second daemon cannot take a spool that is in use.

mod support;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal::{SIGHUP, SIGTERM};
use support::daemon::{Daemon, Options, bin};
use support::smtp::{Raw, Reply};

fn session(port: u16) -> (Raw, Reply) {
    let (mut c, greeting) = Raw::connect(port);
    assert_eq!(greeting.code, 220, "{greeting:?}");
    let ehlo = c.cmd("EHLO client.test");
    assert_eq!(ehlo.code, 250, "{ehlo:?}");
    (c, ehlo)
}

/// The value of the EHLO `SIZE` keyword.
fn ehlo_size(ehlo: &Reply) -> u64 {
    ehlo.lines
        .iter()
        .find_map(|l| l.strip_prefix("SIZE "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no SIZE in {ehlo:?}"))
}

fn queued_id(r: &Reply) -> String {
    assert_eq!(r.code, 250, "{r:?}");
    r.text()
        .split("queued as ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no queue id in {r:?}"))
        .to_string()
}

/// MAIL, RCPT, DATA; the session is then in DATA.
fn start_data(c: &mut Raw) {
    assert_eq!(c.cmd("MAIL FROM:<sender@example.com>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<rcpt@example.com>").code, 250);
    let r = c.cmd("DATA");
    assert_eq!(r.code, 354, "{r:?}");
}

/// Sends one whole message on a greeted session; returns the reply.
fn send_message(c: &mut Raw, subject: &str) -> Reply {
    start_data(c);
    c.send(format!("Subject: {subject}\r\n\r\nhello\r\n.\r\n").as_bytes());
    c.reply()
}

/// Polls `cond` every 20 ms for at most `limit`; returns whether it held.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the daemon still accepts connections on its port.
fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Waits (bounded) for the daemon to exit by itself after SIGTERM, then
/// returns its exit status (already reaped, so `stop` sends nothing that
/// matters and only hands over the status).
fn wait_exit(d: &mut Daemon) -> std::process::ExitStatus {
    assert!(
        eventually(Duration::from_secs(30), || !d.is_running()),
        "the daemon did not exit within 30 s of SIGTERM:\n{}",
        d.stderr()
    );
    d.stop()
}

/// SIGTERM while a client is half way through DATA: the daemon stops
/// accepting connections and answers the idle client `421 4.3.2`, but does
/// not exit; the client sends the rest of the message and gets `250`; then
/// the daemon exits 0 by itself, and after a restart the whole message is
/// in the queue.
#[test]
fn sigterm_finishes_the_message_being_received() {
    let mut d = Daemon::start();
    let (mut idle, _) = session(d.port);
    let (mut c, _) = session(d.port);
    start_data(&mut c);
    let first_half: String = std::iter::once("Subject: sent across SIGTERM\r\n\r\n".to_string())
        .chain((0..500).map(|n| format!("first half, line {n}\r\n")))
        .collect();
    c.send(first_half.as_bytes());

    d.signal(SIGTERM);
    // The signal was handled: the idle session is told to go away...
    let r = idle.reply();
    assert_eq!(
        (r.code, r.text().starts_with("4.3.2")),
        (421, true),
        "idle client on SIGTERM: {r:?}"
    );
    assert!(idle.is_closed(), "the idle session is closed after 421");
    // ...and new connections are no longer accepted.
    assert!(
        eventually(Duration::from_secs(10), || !accepts(d.port)),
        "still accepting connections after SIGTERM"
    );
    assert!(
        d.is_running(),
        "the daemon exited with a message half received:\n{}",
        d.stderr()
    );

    let second_half: String = (0..500)
        .map(|n| format!("second half, line {n}\r\n"))
        .chain(std::iter::once(".\r\n".to_string()))
        .collect();
    c.send(second_half.as_bytes());
    let r = c.reply();
    let id = queued_id(&r);
    // The session ends now: at most a 421 (or QUIT's 221), then close.
    if let Some(r) = c.try_reply() {
        assert_eq!(r.code, 421, "{r:?}");
    }
    assert!(c.is_closed());

    let status = wait_exit(&mut d);
    assert!(status.success(), "exit status after SIGTERM: {status}");

    d.restart();
    let q = d.queue();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["id"].as_str(), Some(id.as_str()));
    let body = String::from_utf8(d.body(&id)).unwrap();
    assert!(body.contains("first half, line 0\r\n"), "{body}");
    assert!(
        body.ends_with("second half, line 499\r\n"),
        "whole body spooled"
    );
}

/// SIGTERM with only an idle client: it gets `421 4.3.2`, and the daemon
/// exits 0 without waiting for anything else.
#[test]
fn sigterm_tells_idle_clients_421_and_exits_0() {
    let mut d = Daemon::start();
    let (mut c, _) = session(d.port);
    let id = queued_id(&send_message(&mut c, "before SIGTERM"));
    d.signal(SIGTERM);
    let r = c.reply();
    assert_eq!(
        (r.code, r.text().starts_with("4.3.2")),
        (421, true),
        "{r:?}"
    );
    assert!(c.is_closed());
    let status = wait_exit(&mut d);
    assert!(status.success(), "{status}");
    assert!(
        !d.dir.path().join("control.sock").exists(),
        "control socket removed at exit"
    );
    d.restart();
    let q = d.queue();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["id"].as_str(), Some(id.as_str()));
}

fn options(size_limit: &str, extra_intake: &str) -> Options {
    Options {
        intake: format!("message_size_limit = \"{size_limit}\"\n{extra_intake}"),
        ..Default::default()
    }
}

/// SIGHUP with a changed, valid file: a session opened afterwards announces
/// the new `SIZE`; a session opened before keeps the settings it started
/// with.
#[test]
fn sighup_applies_a_changed_valid_config_to_new_sessions() {
    let d = Daemon::start_with(options("10 MiB", ""));
    let (mut before, ehlo) = session(d.port);
    assert_eq!(ehlo_size(&ehlo), 10 * 1024 * 1024);

    std::fs::write(
        &d.config,
        Daemon::config_text(d.dir.path(), d.port, &options("20 MiB", "")),
    )
    .unwrap();
    d.signal(SIGHUP);
    let mut last = 0;
    let applied = eventually(Duration::from_secs(10), || {
        last = ehlo_size(&session(d.port).1);
        last == 20 * 1024 * 1024
    });
    assert!(
        applied,
        "new sessions still announce SIZE {last} after SIGHUP:\n{}",
        d.stderr()
    );
    assert!(
        d.stderr().contains("configuration reloaded"),
        "{}",
        d.stderr()
    );
    // The log goes to a file here (as to journald under systemd): plain
    // text, no terminal colour codes.
    assert!(!d.stderr().contains('\x1b'), "{:?}", d.stderr());
    let again = before.cmd("EHLO client.test");
    assert_eq!(
        ehlo_size(&again),
        10 * 1024 * 1024,
        "a session keeps the configuration it started with"
    );
    assert_eq!(before.cmd("QUIT").code, 221);
}

/// SIGHUP with a file that has an unknown key: the daemon keeps running
/// with the old settings, says on stderr why (naming the key), and the
/// next session still works.
#[test]
fn sighup_with_a_broken_config_keeps_the_running_one() {
    let mut d = Daemon::start_with(options("10 MiB", ""));
    std::fs::write(
        &d.config,
        Daemon::config_text(
            d.dir.path(),
            d.port,
            &options("20 MiB", "no_such_setting = 1"),
        ),
    )
    .unwrap();
    d.signal(SIGHUP);
    let logged = eventually(Duration::from_secs(10), || {
        d.stderr().contains("configuration reload failed")
    });
    let err = d.stderr();
    assert!(logged, "no reload failure logged:\n{err}");
    let line = err
        .lines()
        .find(|l| l.contains("configuration reload failed"))
        .unwrap();
    assert!(
        line.contains("no_such_setting"),
        "the log names the bad key: {line}"
    );
    assert!(d.is_running(), "the daemon died on a bad reload:\n{err}");

    let (mut c, ehlo) = session(d.port);
    assert_eq!(ehlo_size(&ehlo), 10 * 1024 * 1024, "old settings kept");
    let id = queued_id(&send_message(&mut c, "after a failed reload"));
    // (`queue list` would read the broken file too; look at the spool.)
    assert!(d.spool().join("queue").join(format!("{id}.env")).exists());
}

/// A second `postrelay run` on the same configuration (same spool) exits
/// non-zero at once, saying the spool is locked by a running daemon; the
/// first daemon keeps working, its control socket included (the second
/// must not have replaced it).
#[test]
fn a_second_daemon_on_the_same_spool_refuses_to_start() {
    let d = Daemon::start();
    let mut second = Command::new(bin())
        .args(["run", "--config"])
        .arg(&d.config)
        .env_remove("POSTRELAY_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = eventually(Duration::from_secs(20), || {
        second.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = second.kill();
        let _ = second.wait();
        panic!("a second daemon on the same spool kept running");
    }
    let out = second.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "second daemon: {}", out.status);
    assert!(
        err.contains("another postrelay daemon is running on this spool")
            && err.contains(&d.spool().join("lock").display().to_string()),
        "the refusal names the lock: {err}"
    );

    // The first one is untouched: SMTP and the control socket both work.
    let (mut c, _) = session(d.port);
    let id = queued_id(&send_message(&mut c, "after the second start"));
    let out = d.cli(&["queue", "hold", &id]);
    assert!(
        out.status.success(),
        "hold through the first daemon's socket: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.spool().join("hold").join(format!("{id}.env")).exists());
}

/// SIGHUP with a changed `queue.min_free_space`: the daemon applies it
/// (it is not among the settings that need a restart) — starting with a
/// floor above any disk (MAIL gets 452 4.3.1) and reloading the default,
/// a new session's MAIL is accepted (bounded wait: the free-space verdict
/// is cached for about a second).
#[test]
fn sighup_applies_a_changed_free_space_floor() {
    let floor = |v: &str| Options {
        queue: format!("min_free_space = \"{v}\""),
        ..Default::default()
    };
    let d = Daemon::start_with(floor("1000 TiB"));
    let (mut c, _) = session(d.port);
    let r = c.cmd("MAIL FROM:<sender@example.com>");
    assert_eq!(
        (r.code, r.text().starts_with("4.3.1")),
        (452, true),
        "{r:?}"
    );

    std::fs::write(
        &d.config,
        Daemon::config_text(d.dir.path(), d.port, &floor("100 MiB")),
    )
    .unwrap();
    d.signal(SIGHUP);
    assert!(
        eventually(Duration::from_secs(10), || d
            .stderr()
            .contains("configuration reloaded")),
        "{}",
        d.stderr()
    );
    let mut last = None;
    let accepted = eventually(Duration::from_secs(10), || {
        let (mut c, _) = session(d.port);
        let r = c.cmd("MAIL FROM:<sender@example.com>");
        let ok = r.code == 250;
        last = Some(r);
        ok
    });
    assert!(
        accepted,
        "queue.min_free_space lowered from 1000 TiB to 100 MiB by SIGHUP, but MAIL still gets {last:?}"
    );
}

/// A second SIGTERM ends every wait, the grace for deliveries in progress
/// (30 s) included: here a delivery hangs on a relay that never greets.
#[test]
fn a_second_sigterm_does_not_wait_for_deliveries() {
    let stall = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stall.local_addr().unwrap().port();
    let mut d = Daemon::start_with(Options {
        delivery: true,
        tail: format!(
            "[[relay]]\nname = \"stall\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n"
        ),
        ..Options::default()
    });
    let (mut c, _) = session(d.port);
    assert_eq!(send_message(&mut c, "stuck").code, 250);
    // The delivery attempt is connected and waits for a greeting.
    let (_held, _) = stall.accept().unwrap();
    d.signal(SIGTERM);
    // The first signal was taken as a stop: only now is a second one a
    // second (two sent together may arrive as one).
    d.wait_stderr("stopping: no new connections");
    assert!(d.is_running(), "the daemon did not wait for its delivery");
    d.signal(SIGTERM);
    let exited = eventually(Duration::from_secs(10), || !d.is_running());
    assert!(
        exited,
        "still running 10 s after the second SIGTERM:\n{}",
        d.stderr()
    );
    assert!(d.stderr().contains("second stop signal"), "{}", d.stderr());
}
