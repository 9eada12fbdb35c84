//! Runs the real `postrelay` binary for integration tests: a private
//! directory with its own spool, control socket and mail log, and a
//! loopback port. Every wait is bounded.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_postrelay")
}

/// A free loopback port (bound and released; good enough for tests).
/// What the daemon logs once its listeners are bound.
const READY: &str = "postrelay ready";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Settings for a test daemon.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra top-level TOML lines.
    pub top: String,
    /// Extra `[intake]` lines.
    pub intake: String,
    /// Extra `[queue]` lines.
    pub queue: String,
    /// Listen address (default 127.0.0.1 with a free port).
    pub listen_ip: Option<String>,
    /// Extra mynetworks entries added to loopback.
    pub mynetworks: Vec<String>,
    /// Trust only 127.0.0.1 and ::1 instead of all of loopback, so that
    /// clients bound to 127.0.0.2 and up are strangers.
    pub trust_only_localhost: bool,
    /// Tables appended at the end of the file (`[[relay]]`, `[bounce]` …).
    pub tail: String,
    /// Deliver queued mail (`[delivery] enabled`). Off by default, so that
    /// intake tests see exactly what was queued and never write into real
    /// mailboxes; delivery tests turn it on.
    pub delivery: bool,
    /// Extra `[log]` lines.
    pub log: String,
    /// Extra `[delivery]` lines.
    pub delivery_extra: String,
    /// Extra environment variables for the daemon.
    pub env: Vec<(String, String)>,
    /// `[daemon] user`: who the daemon drops to when the test runs as
    /// root (the test directory is then given to that user). `None`:
    /// `"root"`, the explicit opt-out, so that tests of other things keep
    /// their files in a private directory.
    pub daemon_user: Option<String>,
}

/// A running (or stopped) daemon.
pub struct Daemon {
    pub dir: TempDir,
    pub port: u16,
    pub config: PathBuf,
    child: Option<Child>,
    stderr_path: PathBuf,
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts with default options.
    pub fn start() -> Daemon {
        Self::start_with(Options::default())
    }

    /// Starts with the given options and waits until it accepts connections.
    pub fn start_with(opts: Options) -> Daemon {
        let env = opts.env.clone();
        let user = opts.daemon_user.clone();
        Self::start_with_text(
            |dir, port| Self::config_text(dir, port, &opts),
            env,
            user.as_deref(),
        )
    }

    /// Starts with the configuration `text(dir, port)` returns for its
    /// private directory and listening port (which must appear in the
    /// text as `:PORT"]`, so that a taken port can be replaced). With
    /// `daemon_user`, the directory is given to that user (the text must
    /// then say `[daemon] user` to match).
    pub fn start_with_text(
        text: impl FnOnce(&Path, u16) -> String,
        env: Vec<(String, String)>,
        daemon_user: Option<&str>,
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("postrelay-test")
            .tempdir()
            .unwrap();
        let port = free_port();
        if let Some(name) = daemon_user {
            let user = nix::unistd::User::from_name(name)
                .unwrap()
                .expect("the daemon user exists");
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
        }
        let config = dir.path().join("postrelay.toml");
        std::fs::write(&config, text(dir.path(), port)).unwrap();
        let stderr_path = dir.path().join("stderr.log");
        let mut d = Daemon {
            dir,
            port,
            config,
            child: None,
            stderr_path,
            env,
        };
        d.spawn();
        d
    }

    /// The configuration file text for these options.
    pub fn config_text(dir: &Path, port: u16, opts: &Options) -> String {
        let ip = opts.listen_ip.clone().unwrap_or_else(|| "127.0.0.1".into());
        let v4 = if opts.trust_only_localhost {
            "127.0.0.1/32"
        } else {
            "127.0.0.0/8"
        };
        let mut nets = vec![format!("\"{v4}\""), "\"::1/128\"".to_string()];
        nets.extend(opts.mynetworks.iter().map(|n| format!("\"{n}\"")));
        format!(
            "hostname = \"relay.test\"\nspool = \"{spool}\"\ncontrol_socket = \"{sock}\"\n{top}\n\
             [daemon]\nuser = \"{user}\"\n\
             [intake]\nlisten = [\"{ip}:{port}\"]\nmynetworks = [{nets}]\n{intake}\n\
             [queue]\n{queue}\n[delivery]\nenabled = {delivery}\n{delivery_extra}\n\
             [log]\nfile = \"{log}\"\nlevel = \"debug\"\n{log_extra}\n{tail}\n",
            spool = dir.join("spool").display(),
            sock = dir.join("control.sock").display(),
            log = dir.join("mail.log").display(),
            top = opts.top,
            user = opts.daemon_user.as_deref().unwrap_or("root"),
            intake = opts.intake,
            queue = opts.queue,
            nets = nets.join(", "),
            tail = opts.tail,
            log_extra = opts.log,
            delivery = opts.delivery,
            delivery_extra = opts.delivery_extra,
        )
    }

    fn start_child(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .unwrap();
        let child = Command::new(bin())
            .args(["run", "--config"])
            .arg(&self.config)
            .env_remove("POSTRELAY_CONFIG")
            .env("RUST_LOG", "debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start postrelay");
        self.child = Some(child);
    }

    /// Starts the daemon and waits until *it* says it is ready (a connect
    /// probe could reach another process that took the port meanwhile).
    /// If the port was taken before the daemon could bind it, moves to
    /// another port (at most twice).
    fn spawn(&mut self) {
        for attempt in 1..=3 {
            let readies = self.stderr().matches(READY).count();
            self.start_child();
            match self.wait_ready(readies) {
                Ok(()) => return,
                Err(log) if attempt < 3 && log.contains("cannot listen on") => {
                    let old = format!(":{}\"]", self.port);
                    self.port = free_port();
                    let text = std::fs::read_to_string(&self.config).unwrap();
                    assert!(
                        text.contains(&old),
                        "listen address not in the configuration"
                    );
                    let new = format!(":{}\"]", self.port);
                    std::fs::write(&self.config, text.replace(&old, &new)).unwrap();
                    eprintln!("postrelay: port taken, retrying on {}", self.port);
                }
                Err(log) => panic!("postrelay exited during start:\n{log}"),
            }
        }
    }

    /// Waits for one more "ready" line than `readies`; `Err(log)` if the
    /// daemon exited first.
    fn wait_ready(&mut self, readies: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("({status})\n{}", self.stderr()));
            }
            if self.stderr().matches(READY).count() > readies {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "postrelay did not become ready within 20 s:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// PID of the running daemon.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Sends a signal.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (at most 30 s) for a clean exit; returns its status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "postrelay did not stop within 30 s of SIGTERM:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Rewrites the configuration file (then `signal(SIGHUP)` or restart).
    pub fn rewrite_config(&self, opts: &Options) {
        std::fs::write(
            &self.config,
            Self::config_text(self.dir.path(), self.port, opts),
        )
        .unwrap();
    }

    /// Starts again on the same directory and port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill first");
        self.spawn();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// The daemon's stderr so far (tracing output).
    pub fn stderr(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits until the daemon's log contains `needle`; returns the log.
    /// Panics (with the log) after 20 s.
    pub fn wait_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.stderr();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the daemon's log after 20 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The mail log so far.
    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mail.log")).unwrap_or_default()
    }

    /// Waits until at least `n` lines of the mail log contain every one of
    /// `needles`; returns the log. Panics (with the log) after 30 s.
    pub fn wait_maillog(&self, needles: &[&str], n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.maillog();
            let found = log
                .lines()
                .filter(|l| needles.iter().all(|w| l.contains(w)))
                .count();
            if found >= n {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{found} of {n} mail log lines with {needles:?} after 30 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every message the mail log shows queued has its
    /// `removed` line, the last one written for a message; returns the
    /// log. For use once the queue is empty: the log is written by a
    /// thread of its own, up to a few milliseconds after the queue
    /// changes, so an empty queue alone does not mean a complete log.
    /// Panics (with the log) after 30 s.
    pub fn wait_maillog_settled(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.maillog();
            let ids_with = |word: &str| -> std::collections::BTreeSet<String> {
                log.lines()
                    .filter(|l| l.contains(word))
                    .filter_map(|l| l.split("]: ").nth(1)?.split(':').next().map(str::to_owned))
                    .collect()
            };
            let queued = ids_with("(queue active)");
            let removed = ids_with(": removed");
            if !queued.is_empty() && queued.is_subset(&removed) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "after 30 s, the mail log shows {} message(s) queued, and these not removed: \
                 {:?}\n{log}",
                queued.len(),
                queued.difference(&removed).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The spool directory.
    pub fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// Runs `postrelay ARGS --config <ours>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("POSTRELAY_CONFIG")
            .output()
            .unwrap()
    }

    /// `queue list --json`, parsed.
    pub fn queue(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["queue", "list", "--json"]);
        assert!(
            out.status.success(),
            "queue list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("queue list --json")
    }

    /// The spooled body of a message.
    pub fn body(&self, id: &str) -> Vec<u8> {
        std::fs::read(self.spool().join("queue").join(format!("{id}.msg"))).unwrap()
    }

    /// Waits until the queue holds `n` messages; panics (with the queue)
    /// after 20 s.
    pub fn wait_queue_len(&self, n: usize) -> Vec<serde_json::Value> {
        self.wait_queue(&format!("{n} messages"), |q| q.len() == n)
    }

    /// Polls `queue list --json` until `done` holds (at most 20 s; the
    /// assertion names `what` and shows the last listing).
    pub fn wait_queue(
        &self,
        what: &str,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let q = self.queue();
            if done(&q) {
                return q;
            }
            assert!(
                Instant::now() < deadline,
                "the queue does not hold {what} after 20 s ({} messages): {q:#?}",
                q.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            // The test failed: show what the daemon saw (its mail log and
            // the end of its debug log), so that a failure in CI explains
            // itself.
            let stderr = self.stderr();
            let lines: Vec<&str> = stderr.lines().collect();
            let tail = lines[lines.len().saturating_sub(80)..].join("\n");
            eprintln!(
                "--- postrelay mail log ---\n{}--- postrelay log (last 80 lines) ---\n{tail}",
                self.maillog()
            );
        }
    }
}
