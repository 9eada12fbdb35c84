//! A private `redis-server` for the cluster tests: on a Unix socket in
//! its own directory (no port to race for, the same address after a
//! restart), appending every write to its AOF so that a restart keeps
//! the counts, as a production server set up for postrelay would.
//!
//! Not for: talking Redis beyond what the tests check ([`Redis::cli`]
//! runs `redis-cli`).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::io::{Read, Write};

/// A running (or stopped) private redis-server.
pub struct Redis {
    dir: PathBuf,
    child: Option<Child>,
    /// The directory, when the server made its own.
    _tmp: Option<tempfile::TempDir>,
}

impl Redis {
    /// Starts one in `dir` (created if missing). `None` when redis-server
    /// is not installed outside CI (see `peers::require`).
    pub fn start(dir: &Path) -> Option<Redis> {
        if !super::peers::require("redis-server") {
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let mut r = Redis {
            dir: dir.to_owned(),
            child: None,
            _tmp: None,
        };
        r.restart();
        Some(r)
    }

    /// [`Self::start`] in a temporary directory of its own, removed on drop.
    pub fn start_private() -> Option<Redis> {
        let tmp = tempfile::tempdir().unwrap();
        let mut r = Redis::start(tmp.path())?;
        r._tmp = Some(tmp);
        Some(r)
    }

    /// The socket's path.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// The URL postrelay is given.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Starts the server again (after [`Self::kill`]), on the same socket
    /// and with the same data; returns once it answers PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(&self.dir)
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--daemonize", "no", "--logfile"])
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within 20 s; its log: {}",
                std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it answers PING now.
    pub fn answers(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(self.socket()) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) it: a server that hangs.
    pub fn pause(&self, stopped: bool) {
        let pid = self.child.as_ref().expect("redis-server runs").id();
        let sig = if stopped {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
    }

    /// `redis-cli ARGS` against it: its standard output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// How many times the server ran each command (`INFO
    /// commandstats`; commands run by scripts included), lower case.
    pub fn command_calls(&self) -> Vec<(String, u64)> {
        let stats = self.cli(&["INFO", "commandstats"]);
        stats
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
                let calls = rest.split(',').next()?.parse().ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A paused server would not die of SIGKILL's wait otherwise.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
        self.kill();
    }
}
