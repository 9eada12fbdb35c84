//! The submission listeners of `[intake.submission]` with real clients:
//! swaks (STARTTLS and implicit TLS, AUTH PLAIN and LOGIN), `openssl
//! s_client`, and a raw socket for what clients normally do not do (AUTH
//! before TLS, commands pipelined after STARTTLS). The users file holds a
//! hash made by the binary's own `hash-password`; the certificate is made
//! with rcgen. No assertion depends on timing.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::daemon::{self, Daemon, Options};
use support::peers;
use support::smtp::Raw;
use tempfile::TempDir;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";

/// `postrelay hash-password` with `input` on stdin: (status, stdout, stderr).
fn hash_password(input: &str) -> (bool, String, String) {
    let mut child = Command::new(daemon::bin())
        .arg("hash-password")
        .env_remove("POSTRELAY_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run postrelay hash-password");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_file(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A daemon with both submission listeners, and the files they use.
struct Submission {
    d: Daemon,
    /// The STARTTLS port.
    starttls: u16,
    /// The implicit-TLS port.
    implicit: u16,
    _files: TempDir,
    cert: PathBuf,
}

impl Submission {
    fn start(max_auth_failures: u32) -> Submission {
        let files = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "relay.test".to_owned()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let cert_path = files.path().join("cert.pem");
        let key_path = files.path().join("key.pem");
        let users_path = files.path().join("users");
        write_file(&cert_path, &cert.pem(), 0o644);
        write_file(&key_path, &key.serialize_pem(), 0o600);
        let (ok, hash, err) = hash_password(&format!("{PASSWORD}\n"));
        assert!(ok, "hash-password failed: {err}");
        write_file(
            &users_path,
            &format!("# submission users\n{USER}:{}\n", hash.trim()),
            0o600,
        );
        let starttls = daemon::free_port();
        let implicit = daemon::free_port();
        let tail = format!(
            "[intake.submission]\nlisten = [\"127.0.0.1:{starttls}\"]\nimplicit = [\"127.0.0.1:{implicit}\"]\n\
             cert = \"{}\"\nkey = \"{}\"\nusers = \"{}\"\nmax_auth_failures = {max_auth_failures}\n\
             auth_lockout = \"15m\"\nauth_delay = \"50ms\"\n",
            cert_path.display(),
            key_path.display(),
            users_path.display()
        );
        let d = Daemon::start_with(Options {
            tail,
            ..Options::default()
        });
        Submission {
            d,
            starttls,
            implicit,
            _files: files,
            cert: cert_path,
        }
    }

    /// Runs swaks against `port` with `args`: (exit code, transcript).
    fn swaks(&self, port: u16, args: &[&str]) -> (i32, String) {
        let out = Command::new("swaks")
            .args([
                "--server",
                &format!("127.0.0.1:{port}"),
                "--helo",
                "client.example",
                "--timeout",
                "20",
                "--from",
                "app@client.example",
                "--to",
                "someone@example.net",
            ])
            .args(args)
            .output()
            .expect("run swaks");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    /// swaks with AUTH over STARTTLS.
    fn submit(&self, mechanism: &str, password: &str) -> (i32, String) {
        self.swaks(
            self.starttls,
            &[
                "--tls",
                "--auth",
                mechanism,
                "--auth-user",
                USER,
                "--auth-password",
                password,
            ],
        )
    }

    /// `openssl s_client` to `port` (`starttls`: with `-starttls smtp`),
    /// sending `lines` (LF-terminated: `-crlf` adds the CRs); returns
    /// everything it printed.
    fn openssl(&self, port: u16, starttls: bool, lines: &str) -> String {
        // Bounded: with -ign_eof, s_client ends only when the daemon closes.
        let mut cmd = Command::new("timeout");
        cmd.args(["60", "openssl", "s_client", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-servername", "localhost", "-CAfile"])
            .arg(&self.cert)
            .args(["-verify_return_error", "-crlf", "-ign_eof"]);
        if starttls {
            cmd.args(["-starttls", "smtp"]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run openssl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// The spooled body of the only queued message.
    fn only_body(&self) -> String {
        let q = self.d.wait_queue_len(1);
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(q[0]["sender"], "app@client.example");
        let id = q[0]["id"].as_str().unwrap().to_owned();
        String::from_utf8(self.d.body(&id)).unwrap()
    }
}

fn has_peers(programs: &[&str]) -> bool {
    programs.iter().all(|p| peers::require(p))
}

#[test]
fn hash_password_reads_stdin() {
    let (ok, out, err) = hash_password("s3cret\n");
    assert!(ok, "{err}");
    let hash = out.trim();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!out.contains("s3cret") && !err.contains("s3cret"));
    // A different salt every time.
    assert_ne!(hash_password("s3cret").1.trim(), hash);

    for (input, why) in [
        ("", "empty"),
        ("\n", "empty"),
        ("a\nb\n", "more than one line"),
    ] {
        let (ok, _, err) = hash_password(input);
        assert!(!ok, "{input:?} accepted");
        assert!(err.contains(why), "{input:?}: {err}");
    }
    let (ok, _, err) = hash_password(&"x".repeat(256));
    assert!(!ok && err.contains("longer than 255"), "{err}");
}

#[test]
fn starttls_with_auth_plain_and_login_is_queued() {
    if !has_peers(&["swaks"]) {
        return;
    }
    let s = Submission::start(5);
    let (rc, out) = s.submit("PLAIN", PASSWORD);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("235 2.7.0 Authentication successful"), "{out}");
    let body = s.only_body();
    let head = "Received: from client.example ([127.0.0.1])\r\n\t(Authenticated sender: alice)\r\n\tby relay.test (postrelay) with ESMTPSA id ";
    assert!(body.starts_with(head), "{body}");

    let (rc, out) = s.submit("LOGIN", PASSWORD);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("334 VXNlcm5hbWU6"), "{out}");
    assert_eq!(s.d.wait_queue_len(2).len(), 2);

    // The log names the user, never the password; the mail log in
    // Postfix's words, once per message with its mechanism (written by
    // the log's own thread, a moment after the queue changes).
    for method in ["PLAIN", "LOGIN"] {
        let line = format!("[127.0.0.1], sasl_method={method}, sasl_username=alice\n");
        let maillog = s.d.wait_maillog(&[&format!("sasl_method={method},")], 1);
        assert!(maillog.contains(&line), "{maillog}");
    }
    let logs = s.d.stderr() + &s.d.maillog();
    assert!(logs.contains("authenticated"), "{logs}");
    support::secrets::assert_absent("the daemon's debug log and mail log", &logs, USER, PASSWORD);
}

#[test]
fn implicit_tls_with_swaks_tlsc() {
    if !has_peers(&["swaks"]) {
        return;
    }
    let s = Submission::start(5);
    let (rc, out) = s.swaks(
        s.implicit,
        &[
            "--tlsc",
            "--auth",
            "LOGIN",
            "--auth-user",
            USER,
            "--auth-password",
            PASSWORD,
        ],
    );
    assert_eq!(rc, 0, "{out}");
    let body = s.only_body();
    assert!(body.contains("(Authenticated sender: alice)"), "{body}");
}

#[test]
fn openssl_sees_the_certificate_and_auth_only_after_tls() {
    if !has_peers(&["openssl"]) {
        return;
    }
    let s = Submission::start(5);
    for (port, starttls) in [(s.starttls, true), (s.implicit, false)] {
        let out = s.openssl(port, starttls, "EHLO client.example\nQUIT\n");
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        // What s_client prints is the dialog over TLS only.
        assert!(out.contains("250-AUTH PLAIN LOGIN"), "{out}");
        assert!(!out.contains("STARTTLS"), "{out}");
        assert!(out.contains("221 2.0.0 Bye"), "{out}");
    }
}

#[test]
fn no_auth_before_tls_and_no_mail_before_auth() {
    if !has_peers(&["swaks"]) {
        return;
    }
    let s = Submission::start(5);
    let (mut c, greeting) = Raw::connect(s.starttls);
    assert_eq!(greeting.code, 220);
    let ehlo = c.cmd("EHLO client.example");
    assert_eq!(ehlo.code, 250);
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    assert!(
        !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
        "{ehlo:?}"
    );
    let plain = "AGFsaWNlAGNvcnJlY3QgaG9yc2UgYmF0dGVyeSBzdGFwbGU=";
    let auth = c.cmd(&format!("AUTH PLAIN {plain}"));
    assert_eq!(auth.code, 538, "{auth:?}");
    assert_eq!(
        auth.text(),
        "5.7.11 Encryption required for requested authentication mechanism"
    );
    let mail = c.cmd("MAIL FROM:<app@client.example>");
    assert_eq!(
        (mail.code, mail.text().as_str()),
        (530, "5.7.0 Authentication required")
    );
    assert_eq!(c.cmd("QUIT").code, 221);

    // Over TLS, without AUTH: still 530.
    let (rc, out) = s.swaks(s.starttls, &["--tls"]);
    assert_ne!(rc, 0, "{out}");
    assert!(out.contains("530 5.7.0 Authentication required"), "{out}");
    assert!(s.d.queue().is_empty(), "nothing may be queued");

    // The loopback listener is unchanged: no STARTTLS, no AUTH there.
    let (mut c, _) = Raw::connect(s.d.port);
    let ehlo = c.cmd("EHLO client.example");
    assert!(!ehlo.text().contains("STARTTLS") && !ehlo.text().contains("AUTH"));
    assert_eq!(c.cmd("STARTTLS").code, 502);
    assert_eq!(c.cmd(&format!("AUTH PLAIN {plain}")).code, 502);
}

#[test]
fn wrong_password_and_unknown_user_get_535() {
    if !has_peers(&["swaks"]) {
        return;
    }
    let s = Submission::start(5);
    let (rc, out) = s.submit("PLAIN", "not the password");
    assert_ne!(rc, 0, "{out}");
    assert!(
        out.contains("535 5.7.8 Authentication credentials invalid"),
        "{out}"
    );
    let (rc, out) = s.swaks(
        s.starttls,
        &[
            "--tls",
            "--auth",
            "LOGIN",
            "--auth-user",
            "mallory",
            "--auth-password",
            PASSWORD,
        ],
    );
    assert_ne!(rc, 0, "{out}");
    assert!(out.contains("535 5.7.8"), "{out}");
    assert!(s.d.queue().is_empty());
    let logs = s.d.stderr();
    assert!(logs.contains("authentication failed"), "{logs}");
    assert!(
        logs.contains("mallory"),
        "the failed name is logged: {logs}"
    );
    let logs = logs + &s.d.maillog();
    support::secrets::assert_absent("the logs", &logs, USER, "not the password");
    support::secrets::assert_absent("the logs", &logs, "mallory", PASSWORD);
}

#[test]
fn brute_force_locks_the_address_out() {
    if !has_peers(&["swaks"]) {
        return;
    }
    let s = Submission::start(3);
    for i in 0..3 {
        let (_, out) = s.submit("PLAIN", &format!("guess {i}"));
        assert!(out.contains("535 5.7.8"), "attempt {i}: {out}");
    }
    // The next connection is turned away at once, on both listeners, even
    // with the right password.
    let (mut c, greeting) = Raw::connect(s.starttls);
    assert_eq!(greeting.code, 421, "{greeting:?}");
    assert_eq!(
        greeting.text(),
        "4.7.0 Too many authentication failures; try again later"
    );
    assert!(c.is_closed());
    s.d.wait_stderr("connection from an address locked out after authentication failures");
    let (rc, out) = s.submit("PLAIN", PASSWORD);
    assert_ne!(rc, 0, "{out}");
    assert!(
        out.contains("421 4.7.0 Too many authentication failures"),
        "{out}"
    );
    let (_, out) = s.swaks(
        s.implicit,
        &[
            "--tlsc",
            "--auth",
            "PLAIN",
            "--auth-user",
            USER,
            "--auth-password",
            PASSWORD,
        ],
    );
    assert!(out.contains("421 4.7.0"), "{out}");
    assert!(s.d.queue().is_empty());
    // The loopback listener does not use the limiter.
    let (_, greeting) = Raw::connect(s.d.port);
    assert_eq!(greeting.code, 220);
}

#[test]
fn input_pipelined_after_starttls_drops_the_connection() {
    let s = Submission::start(5);
    let (mut c, _) = Raw::connect(s.starttls);
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    // One write: STARTTLS and a command that an attacker on the path
    // could have injected before the handshake.
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n");
    let ready = c.reply();
    assert_eq!(
        (ready.code, ready.text().as_str()),
        (220, "2.0.0 Ready to start TLS")
    );
    assert!(c.is_closed(), "the server must drop the connection");
    s.d.wait_stderr("input pipelined after STARTTLS; dropping the connection");
    assert!(s.d.queue().is_empty());
}

#[test]
fn starttls_twice_and_unknown_mechanisms() {
    if !has_peers(&["openssl"]) {
        return;
    }
    let s = Submission::start(5);
    let out = s.openssl(
        s.starttls,
        true,
        "EHLO client.example\nSTARTTLS\nAUTH CRAM-MD5\nMAIL FROM:<a@b.example>\nQUIT\n",
    );
    assert!(out.contains("503 5.5.1 Error: TLS already active"), "{out}");
    assert!(
        out.contains("504 5.5.4 Unrecognized authentication type"),
        "{out}"
    );
    assert!(out.contains("530 5.7.0 Authentication required"), "{out}");
}

/// The test's own base64 (support/secrets.rs), which the redaction checks
/// rely on, against RFC 4648's vectors.
#[test]
fn secret_encodings_are_right() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(support::secrets::base64(plain.as_bytes()), encoded);
    }
    assert_eq!(
        support::secrets::base64(b"\0user\0secret"),
        "AHVzZXIAc2VjcmV0"
    );
}
