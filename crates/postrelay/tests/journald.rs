//! The mail log in a real systemd journal: `systemd-journald` runs in a
//! private mount namespace (its sockets and volatile journal on tmpfs;
//! the host's journal, if any, is untouched), the daemon runs in the same
//! namespace with `log.to = "auto"` and standard error marked as the
//! journal's (`$JOURNAL_STREAM`, as systemd sets it), and `journalctl`
//! finds each record by its queue ID with the Postfix-form message and
//! the structured fields. Root only.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options, bin, free_port};
use support::peers;
use support::smtp::Raw;

const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// journald in its own mount namespace; killed (with the namespace) on drop.
struct Journald(Child);

impl Journald {
    fn start() -> Journald {
        let script = "set -e
mkdir -p /run/systemd /run/log
mount -t tmpfs tmpfs /run/systemd
mkdir /run/systemd/journal
mount -t tmpfs tmpfs /run/log
exec /lib/systemd/systemd-journald";
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let j = Journald(child);
        let socket = format!("/proc/{}/root/run/systemd/journal/socket", j.0.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        while !Path::new(&socket).exists() {
            assert!(
                Instant::now() < deadline,
                "journald did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        j
    }

    /// A command run inside journald's mount namespace.
    fn inside(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.0.id().to_string())
            .args(["-m", "--", program]);
        c
    }
}

/// A child killed when dropped, also when the test fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn records_reach_the_journal_with_their_fields() {
    if !peers::require_root("running systemd-journald in a mount namespace") {
        return;
    }
    if !Path::new(JOURNALD).exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{JOURNALD} is missing under CI: scripts/install-test-deps installs systemd"
        );
        eprintln!("SKIP: {JOURNALD} is not installed");
        return;
    }
    let journald = Journald::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _daemon = start_daemon_beside(&journald, dir.path(), port);
    let id = send_one(port);
    let records = records_of(&journald, &id);
    let client = records
        .iter()
        .find(|r| r["SYSLOG_IDENTIFIER"] == "postrelay/smtpd")
        .unwrap_or_else(|| panic!("no smtpd record: {records:?}"));
    assert_eq!(
        client["MESSAGE"],
        format!("{id}: client=client.example[127.0.0.1]")
    );
    assert_eq!(client["SYSLOG_FACILITY"], "2");
    assert_eq!(client["PRIORITY"], "6");
    let queued = records
        .iter()
        .find(|r| r["SYSLOG_IDENTIFIER"] == "postrelay/qmgr")
        .unwrap_or_else(|| panic!("no qmgr record: {records:?}"));
    assert!(
        queued["MESSAGE"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{id}: from=<alice@example.org>, size=")),
        "{queued}"
    );
}

/// The daemon in journald's namespace, with `log.to = "auto"` (the test
/// configuration without log.file) and `$JOURNAL_STREAM` naming its
/// standard error; returns once it is ready.
fn start_daemon_beside(journald: &Journald, dir: &Path, port: u16) -> KillOnDrop {
    let config: String = Daemon::config_text(dir, port, &Options::default())
        .lines()
        .filter(|l| !l.starts_with("file = "))
        .map(|l| format!("{l}\n"))
        .collect();
    let config_path = dir.join("postrelay.toml");
    std::fs::write(&config_path, config).unwrap();
    let stderr_path = dir.join("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let meta = stderr.metadata().unwrap();
    let daemon = KillOnDrop(
        journald
            .inside(bin())
            .args(["run", "--config"])
            .arg(&config_path)
            .env_remove("POSTRELAY_CONFIG")
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&stderr_path)
        .unwrap()
        .contains("postrelay ready")
    {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

/// Sends one message over SMTP; returns its queue ID.
fn send_one(port: u16) -> String {
    let (mut c, _) = Raw::connect(port);
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<bob@example.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"Subject: journal\r\n\r\nbody\r\n");
    let reply = c.cmd(".");
    assert_eq!(reply.code, 250);
    reply.text().rsplit(' ').next().unwrap().to_string()
}

/// The journal's records for queue ID `id`, once there are at least two.
fn records_of(journald: &Journald, id: &str) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = journald
            .inside("journalctl")
            .args(["-D", "/run/log/journal", "-o", "json", "--no-pager"])
            .arg(format!("POSTRELAY_QUEUE_ID={id}"))
            .output()
            .unwrap();
        let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if records.len() >= 2 {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "no records for {id}: {records:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
