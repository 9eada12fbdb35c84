//! A real, private Postfix instance playing an email provider's smart host
//! (SES / Brevo style submission endpoint), managed by `scripts/provider`.
//!
//! What the provider does (see the script's header for the details):
//! - `127.0.0.1:starttls_port`: STARTTLS required before MAIL, AUTH only
//!   after TLS; `127.0.0.1:implicit_port`: TLS from the first byte.
//! - AUTH PLAIN / LOGIN with `user` / `password` is required on both ports;
//!   an unauthenticated MAIL FROM gets `530 5.7.0 Authentication required`
//!   (as SES and Gmail answer), a bad password gets `535 5.7.8`.
//! - The certificate is for `localhost` and `127.0.0.1`, signed by a
//!   per-instance CA: verify with [`Provider::ca_file`] and the name
//!   `localhost`.
//! - Every accepted message, whatever the domains, is delivered into one
//!   Maildir, `DIR/mail/catchall/{new,cur}` ([`Provider::delivered`]).
//!   Postfix prepends `Return-Path:` (envelope sender), `X-Original-To:` /
//!   `Delivered-To:` (envelope recipient) and a `Received:` header; the rest
//!   of the file is the message as sent, with CRLF turned into LF.
//! - Simulated refusals: `RCPT TO:<fail4NN...@any>` -> `4NN 4.7.0`,
//!   `RCPT TO:<fail5NN...@any>` -> `5NN 5.7.1`, and a message with an
//!   `X-Provider-Reject:` header -> `550 5.7.1` after DATA.
//!
//! Needs root (Postfix's master) and the packages from
//! `scripts/install-test-deps`; guard tests with `peers::require("postfix")`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use tempfile::TempDir;

/// A running provider instance; stopped on drop.
pub struct Provider {
    dir: TempDir,
    pub starttls_port: u16,
    pub implicit_port: u16,
    pub user: String,
    pub password: String,
}

/// The repository root (where `scripts/` lives).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn script() -> PathBuf {
    repo_root().join("scripts/provider")
}

fn run_script(args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()))
}

fn describe(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Two distinct free loopback ports (bound together, then released).
fn two_free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

fn unique_password() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("pw{}x{nanos}", std::process::id())
}

impl Provider {
    /// Sets up and starts a fresh instance on two free loopback ports and
    /// waits until both accept connections. Panics with the script's output
    /// on failure. Takes about a second (mostly RSA key generation).
    pub fn start() -> Provider {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("postrelay-provider-")
                .tempdir()
                .expect("create provider temp dir");
            let (starttls_port, implicit_port) = two_free_ports();
            let user = "relayuser@example.net".to_string();
            let password = unique_password();
            let path = dir.path().to_str().expect("utf-8 temp dir").to_string();

            let setup = run_script(&[
                "setup",
                &path,
                "--starttls-port",
                &starttls_port.to_string(),
                "--implicit-port",
                &implicit_port.to_string(),
                "--user",
                &user,
                "--password",
                &password,
            ]);
            if !setup.status.success() {
                panic!("scripts/provider setup failed\n{}", describe(&setup));
            }
            // The watchdog stops the instance if this test process dies
            // without running Drop (panic=abort, SIGKILL, timeout).
            let pid = std::process::id().to_string();
            let start = run_script(&["start", &path, "--watch-pid", &pid]);
            if start.status.success() {
                return Provider {
                    dir,
                    starttls_port,
                    implicit_port,
                    user,
                    password,
                };
            }
            let _ = run_script(&["stop", &path]);
            let text = describe(&start);
            // Another test may have grabbed a port between release and bind.
            if attempt < ATTEMPTS && text.contains("Address already in use") {
                eprintln!("provider: port race, retrying ({text})");
                continue;
            }
            panic!("scripts/provider start failed\n{text}");
        }
        unreachable!()
    }

    /// The instance directory (layout in `scripts/provider`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate that signed the server certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    /// The catch-all Maildir every accepted message is delivered into.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail/catchall")
    }

    /// Messages delivered so far: (file name, raw message), oldest first,
    /// from the Maildir's `new/` and `cur/`.
    pub fn delivered(&self) -> Vec<(String, Vec<u8>)> {
        let mut found: Vec<(SystemTime, String, Vec<u8>)> = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir().join(sub)) else {
                continue; // not created before the first delivery
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(bytes) = std::fs::read(&path) else {
                    continue; // moved between new/ and cur/ meanwhile
                };
                let mtime = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((
                    mtime,
                    entry.file_name().to_string_lossy().into_owned(),
                    bytes,
                ));
            }
        }
        found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        found
            .into_iter()
            .map(|(_, name, bytes)| (name, bytes))
            .collect()
    }

    /// Waits until at least `n` messages have been delivered and returns
    /// them all. Panics (with the provider's mail log) after `timeout`.
    pub fn wait_delivered(&self, n: usize, timeout: Duration) -> Vec<(String, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.delivered();
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                panic!(
                    "provider: {} of {n} messages delivered after {timeout:?}\n--- provider maillog ---\n{}",
                    got.len(),
                    self.maillog()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The provider's whole mail log (`DIR/log/maillog`).
    pub fn maillog(&self) -> String {
        std::fs::read(self.dir.path().join("log/maillog"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Asserts that the provider's log shows a client that logged in as
    /// [`Provider::user`] with AUTH PLAIN. The log lines of a session are
    /// not tied to a message; tests have one client and one user.
    pub fn assert_auth_plain(&self) {
        let log = self.maillog();
        let login = format!("sasl_method=PLAIN, sasl_username={}", self.user);
        assert!(
            log.contains(&login),
            "no AUTH in the provider's log:\n{log}"
        );
    }

    /// Stops the instance (idempotent; also done on drop).
    pub fn stop(&self) {
        let out = run_script(&["stop", self.dir.path().to_str().unwrap()]);
        if !out.status.success() {
            eprintln!("scripts/provider stop failed\n{}", describe(&out));
        }
    }

    /// Starts it again after [`Provider::stop`] (same ports and data).
    pub fn restart(&self) {
        let pid = std::process::id().to_string();
        let out = run_script(&[
            "start",
            self.dir.path().to_str().unwrap(),
            "--watch-pid",
            &pid,
        ]);
        if !out.status.success() {
            panic!("scripts/provider start failed\n{}", describe(&out));
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}
