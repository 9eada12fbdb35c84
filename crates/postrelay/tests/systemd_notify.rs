//! The daemon speaks systemd's notify protocol as a `Type=notify` unit
//! needs: `READY=1` only once SMTP is answered, watchdog keep-alives,
//! `RELOADING=1`/`READY=1` around SIGHUP, `STOPPING=1` on SIGTERM. The
//! test plays systemd: it binds the datagram socket and names it in
//! `$NOTIFY_SOCKET`.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options, bin, free_port};

/// systemd's end of the socket.
struct Manager {
    sock: UnixDatagram,
    path: std::path::PathBuf,
}

impl Manager {
    fn bind(dir: &std::path::Path) -> Manager {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        Manager { sock, path }
    }

    /// The next message, within `limit`.
    fn recv(&self, limit: Duration) -> String {
        self.sock.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 1024];
        let n = self
            .sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification within {limit:?}: {e}"));
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// Messages until one starts with `prefix` (which is returned); every
    /// other message must be a watchdog ping.
    fn wait_for(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {prefix} within 20 s");
            let m = self.recv(left);
            if m.starts_with(prefix) {
                return m;
            }
            assert_eq!(m, "WATCHDOG=1", "unexpected notification before {prefix}");
        }
    }
}

#[test]
fn ready_is_sent_only_once_smtp_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::bind(dir.path());
    let port = free_port();
    let config = dir.path().join("postrelay.toml");
    std::fs::write(
        &config,
        Daemon::config_text(dir.path(), port, &Options::default()),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("POSTRELAY_CONFIG")
        .env("NOTIFY_SOCKET", &manager.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = manager.recv(Duration::from_secs(20));
    // At once, without any retry: the listener must already be bound.
    let greeting = TcpStream::connect(("127.0.0.1", port)).map(|s| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ready.starts_with("READY=1\nSTATUS=ready; listening on 127.0.0.1:"),
        "{ready:?}"
    );
    let greeting = greeting.expect("connect right after READY=1");
    assert!(greeting.starts_with("220 "), "{greeting:?}");
}

#[test]
fn watchdog_reload_and_stop_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::bind(dir.path());
    let mut d = Daemon::start_with(Options {
        env: vec![
            ("NOTIFY_SOCKET".into(), manager.path.display().to_string()),
            ("WATCHDOG_USEC".into(), "200000".into()),
        ],
        ..Options::default()
    });
    manager.wait_for("READY=1");
    // 0.2 s asked: a ping every 0.1 s; three in a row must come quickly.
    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(manager.recv(Duration::from_secs(5)), "WATCHDOG=1");
    }
    assert!(start.elapsed() < Duration::from_secs(5));

    d.signal(nix::sys::signal::Signal::SIGHUP);
    let reloading = manager.wait_for("RELOADING=1");
    assert!(reloading.contains("\nMONOTONIC_USEC="), "{reloading:?}");
    let ready = manager.wait_for("READY=1");
    assert!(ready.contains("reloaded"), "{ready:?}");

    let status = d.stop();
    assert!(status.success());
    manager.wait_for("STOPPING=1");
}
