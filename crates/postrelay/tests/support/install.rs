//! Installing `sendmail` and a setgid `postrelay-postdrop` the way an
//! administrator would, for tests that submit mail through them, and
//! what those tests look at (the daemon, maildrop/, the queue).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::daemon::{Daemon, Options, bin};

/// The small `sendmail` program (it runs `postrelay sendmail`, beside it,
/// for all but submitting to a running daemon).
pub const SENDMAIL: &str = env!("CARGO_BIN_EXE_postrelay-sendmail");

/// The programs under test, installed as an administrator would.
pub struct Install {
    /// Where sendmail, mailq and postdrop are installed.
    pub dir: TempDir,
}

impl Install {
    /// `None` (after saying why) when not root outside CI.
    pub fn new() -> Option<Install> {
        if !super::peers::require_root("installing postdrop setgid and switching users") {
            return None;
        }
        if nix::unistd::Group::from_name("postdrop").unwrap().is_none() {
            let st = Command::new("groupadd")
                .args(["--system", "postdrop"])
                .status()
                .unwrap();
            assert!(st.success(), "groupadd --system postdrop failed");
        }
        let gid = nix::unistd::Group::from_name("postdrop")
            .unwrap()
            .unwrap()
            .gid;
        let dir = tempfile::Builder::new()
            .prefix("postrelay-sendmail")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let postdrop = dir.path().join("postrelay-postdrop");
        super::copy_executable(
            std::path::Path::new(env!("CARGO_BIN_EXE_postrelay-postdrop")),
            &postdrop,
        );
        nix::unistd::chown(&postdrop, Some(0.into()), Some(gid)).unwrap();
        std::fs::set_permissions(&postdrop, PermissionsExt::from_mode(0o2755)).unwrap();
        std::os::unix::fs::symlink(SENDMAIL, dir.path().join("sendmail")).unwrap();
        std::os::unix::fs::symlink(bin(), dir.path().join("mailq")).unwrap();
        Some(Install { dir })
    }

    pub fn sendmail(&self) -> PathBuf {
        self.dir.path().join("sendmail")
    }

    pub fn postdrop(&self) -> PathBuf {
        self.dir.path().join("postrelay-postdrop")
    }

    /// A command for `program` with our configuration and postdrop.
    pub fn command(&self, d: &Daemon, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env("POSTRELAY_CONFIG", &d.config)
            .env("POSTRELAY_POSTDROP", self.postdrop())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `sendmail ARGS` as root with `input` on stdin.
    pub fn sendmail_run(&self, d: &Daemon, args: &[&str], input: &[u8]) -> Output {
        run(self.command(d, &self.sendmail()).args(args), input)
    }

    /// Runs `program ARGS` as nobody (setpriv) with `input` on stdin.
    pub fn as_nobody(&self, d: &Daemon, program: &Path, args: &[&str], input: &[u8]) -> Output {
        let mut c = self.command(d, Path::new("setpriv"));
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program)
            .args(args);
        run(&mut c, input)
    }
}

/// Runs a command with `input` on stdin.
pub fn run(c: &mut Command, input: &[u8]) -> Output {
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Asserts that `out` is a success with nothing on stderr.
pub fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "unexpected stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A daemon for sendmail tests, whose files `nobody` may reach as an
/// ordinary user could: the configuration is readable, the spool keeps
/// its own modes.
pub fn daemon() -> Daemon {
    // relay.test is not a local domain, so mail to root@relay.test stays
    // queued (there is no relay) instead of reaching a local mailbox.
    let d = Daemon::start_with(Options {
        intake: "local_domains = [\"localhost\"]".into(),
        ..Options::default()
    });
    std::fs::set_permissions(d.dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&d.config, PermissionsExt::from_mode(0o644)).unwrap();
    // Set up before the daemon accepts connections: a sendmail run right
    // after the start must find maildrop/ open to the postdrop group.
    let gid = nix::unistd::Group::from_name("postdrop")
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    for (dir, mode) in [(maildrop(&d), 0o1730), (d.spool(), 0o710)] {
        let md = std::fs::metadata(&dir).unwrap();
        assert_eq!(md.mode() & 0o7777, mode, "{}", dir.display());
        assert_eq!(md.gid(), gid, "{}", dir.display());
    }
    d
}

/// Removes the daemon's submit socket, so that root's sendmail goes
/// through postdrop and pickup while the daemon runs.
pub fn without_socket(d: &Daemon) {
    std::fs::remove_file(d.spool().join("submit.sock")).unwrap();
}

/// The daemon's maildrop/.
pub fn maildrop(d: &Daemon) -> PathBuf {
    d.spool().join("maildrop")
}

/// Polls `f` (every 50 ms, 20 s at most) until it holds.
pub fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `n` messages and returns them.
pub fn queued(d: &Daemon, n: usize) -> Vec<Value> {
    let q = d.wait_queue_len(n);
    assert_eq!(q.len(), n, "queue: {q:#?}\n{}", d.stderr());
    q
}

/// The recipient addresses of a queued envelope.
pub fn recipients(env: &Value) -> Vec<String> {
    env["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect()
}

/// The queued body of `env`, checked to have CRLF line ends only.
pub fn body(d: &Daemon, env: &Value) -> String {
    let bytes = d.body(env["id"].as_str().unwrap());
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    String::from_utf8(bytes).unwrap()
}
