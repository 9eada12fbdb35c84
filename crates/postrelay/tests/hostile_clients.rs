//! Hostile clients against both listeners at once: many idle connections
//! from several loopback source addresses (127.0.0.2 and up, strangers as
//! `mynetworks` is narrowed to 127.0.0.1), and clients that trickle a line
//! a byte at a time, each kind on its own, and then all kinds at once
//! together with a flood of short sessions and AUTH password guessing
//! (issue 9's acceptance check). A local program on 127.0.0.1 must still
//! get its mail accepted; the limits answer with their `421` and log the
//! client.
//!
//! No assertion depends on timing: the trickling client paces itself by
//! waiting for a reply between bytes, and the tests assert the reply, the
//! close and the log line, never a duration.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::daemon::{self, Daemon, Options};
use support::smtp::{Raw, Reply};
use tempfile::TempDir;

/// Each stranger's cap on either listener, and how many strangers: their
/// sessions together (2 × 5 × 3 = 30) exceed one listener's pool (20), so
/// a pool shared by both listeners would be full.
const CAP: usize = 3;
const STRANGERS: [&str; 5] = [
    "127.0.0.2",
    "127.0.0.3",
    "127.0.0.4",
    "127.0.0.5",
    "127.0.0.6",
];
const POOL: usize = 20;

fn write_file(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A users file with one user (hash made by the binary's `hash-password`).
fn users_file(path: &Path) {
    let mut child = Command::new(daemon::bin())
        .arg("hash-password")
        .env_remove("POSTRELAY_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run postrelay hash-password");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"a password nobody guesses\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    write_file(path, &format!("alice:{}\n", hash.trim()), 0o600);
}

/// A daemon under test and what it listens on besides `d.port`.
struct Relay {
    d: Daemon,
    submission: u16,
    metrics: u16,
    _files: TempDir,
}

/// A daemon with the loopback intake and a STARTTLS submission listener,
/// each with a pool of [`POOL`] and a per-client cap of [`CAP`], and
/// metrics; `intake` adds `[intake]` lines, `submission` lines of
/// `[intake.submission]`.
fn start(intake: &str, submission_extra: &str) -> Relay {
    let files = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["relay.test".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let dir = files.path();
    write_file(&dir.join("cert.pem"), &cert.pem(), 0o644);
    write_file(&dir.join("key.pem"), &key.serialize_pem(), 0o600);
    users_file(&dir.join("users"));
    let submission = daemon::free_port();
    let metrics = daemon::free_port();
    let tail = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n[intake.submission]\nlisten = [\"127.0.0.1:{submission}\"]\n\
         cert = \"{c}\"\nkey = \"{k}\"\nusers = \"{u}\"\n\
         max_connections = {POOL}\nmax_connections_per_client = {CAP}\n{submission_extra}",
        c = dir.join("cert.pem").display(),
        k = dir.join("key.pem").display(),
        u = dir.join("users").display(),
    );
    let d = Daemon::start_with(Options {
        intake: format!("max_connections = {POOL}\nmax_connections_per_client = {CAP}\n{intake}"),
        tail,
        trust_only_localhost: true,
        ..Options::default()
    });
    Relay {
        d,
        submission,
        metrics,
        _files: files,
    }
}

/// Sends one message over `c`; the final reply.
fn send_message(c: &mut Raw) -> Reply {
    assert_eq!(c.cmd("EHLO app.localhost").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<app@relay.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<someone@example.net>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.cmd("Subject: still served\r\n\r\nHello.\r\n.")
}

/// Asserts `reply` is the per-client refusal for `ip`.
fn assert_client_cap(reply: &Reply, ip: &str, listener: &str) {
    assert_eq!(reply.code, 421, "{listener}: {reply:?}");
    assert_eq!(
        reply.text(),
        format!("4.7.0 relay.test Error: too many connections from {ip}"),
        "{listener}"
    );
}

#[test]
fn idle_strangers_on_both_listeners_leave_room_for_local_programs() {
    let Relay {
        d,
        submission,
        metrics: metrics_port,
        ..
    } = start("", "");
    // Every stranger holds its cap of idle sessions on both listeners.
    let mut idle = Vec::new();
    for ip in STRANGERS {
        for port in [d.port, submission] {
            for _ in 0..CAP {
                let (c, greeting) = Raw::connect_from(ip, port);
                assert_eq!(greeting.code, 220, "{ip} → {port}: {greeting:?}");
                idle.push(c);
            }
        }
    }
    // One more from a stranger is refused on either listener, with the
    // client named in the reply and in the log.
    for (port, listener) in [(d.port, "intake"), (submission, "submission")] {
        let (mut c, reply) = Raw::connect_from("127.0.0.2", port);
        assert_client_cap(&reply, "127.0.0.2", listener);
        assert!(c.is_closed(), "{listener}: still open after the 421");
    }
    let log = d.stderr();
    assert!(
        log.contains("too many connections from 127.0.0.2"),
        "no log line naming the client:\n{log}"
    );
    let (_, page) = support::http::get(metrics_port, "/metrics");
    assert!(
        page.contains(
            "postrelay_connections_refused_total{limit=\"max_connections_per_client\"} 2"
        ),
        "{page}"
    );
    // A local program (127.0.0.1, in mynetworks) is not held to the cap
    // and still has room: its idle sessions and then its message.
    let mut own: Vec<Raw> = (0..CAP)
        .map(|_| {
            let (c, greeting) = Raw::connect_from("127.0.0.1", d.port);
            assert_eq!(greeting.code, 220, "{greeting:?}");
            c
        })
        .collect();
    let (mut c, greeting) = Raw::connect_from("127.0.0.1", d.port);
    assert_eq!(greeting.code, 220, "local program refused: {greeting:?}");
    let reply = send_message(&mut c);
    assert_eq!(reply.code, 250, "{reply:?}");
    own.push(c);
    drop(own);
    drop(idle);
}

/// Sends `line` one byte at a time, each after waiting up to 200 ms for
/// the server to say something; stops at the first reply or close, and
/// says whether there was one. The pace comes from the wait, not from a
/// sleep; nothing is timed.
fn trickle(c: &mut Raw, line: &[u8]) -> bool {
    line.chunks(1).any(|byte| send_and_wait(c, byte))
}

/// Sends `bytes`, then waits up to 200 ms for the server to say something
/// (or close); whether it did.
fn send_and_wait(c: &mut Raw, bytes: &[u8]) -> bool {
    let s: &mut TcpStream = c.stream();
    if s.write_all(bytes).is_err() {
        return true;
    }
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut peek = [0u8; 1];
    let answered = s.peek(&mut peek).is_ok();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    answered
}

/// The timeout reply every limit on a client's pace gives.
fn assert_timeout(reply: Option<Reply>, phase: &str) {
    let reply = reply.unwrap_or_else(|| panic!("{phase}: closed without a reply"));
    assert_eq!(reply.code, 421, "{phase}: {reply:?}");
    assert_eq!(
        reply.text(),
        "4.4.2 relay.test Error: timeout exceeded",
        "{phase}"
    );
}

#[test]
fn trickling_clients_are_cut_by_the_line_deadline() {
    // Each byte arrives well within command_timeout and data_timeout
    // (1 s, restarting with every byte); the whole line cannot arrive
    // within line_timeout (2 s) at one byte per 200 ms.
    let timeouts = "command_timeout = \"1s\"\ndata_timeout = \"1s\"\nline_timeout = \"2s\"\n";
    let Relay { d, .. } = start(timeouts, "");
    let line = b"EHLO a-client-that-takes-its-time.example\r\n";

    // A command line, from a stranger.
    let (mut c, greeting) = Raw::connect_from("127.0.0.3", d.port);
    assert_eq!(greeting.code, 220);
    let _ = trickle(&mut c, line);
    assert_timeout(c.try_reply(), "command line");
    assert!(c.is_closed());

    // A line of message data, from a trusted client.
    let (mut c, greeting) = Raw::connect_from("127.0.0.1", d.port);
    assert_eq!(greeting.code, 220);
    assert_eq!(c.cmd("EHLO app.localhost").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<app@relay.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<someone@example.net>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let line = b"Subject: a header trickled one byte at a time\r\n";
    if !trickle(&mut c, line) {
        // Not cut: end the message at once, so that the server's answer
        // is the 250 of a message that should never have been accepted.
        c.send(b"\r\n.\r\n");
    }
    assert_timeout(c.try_reply(), "DATA line");
    assert!(c.is_closed());

    let log = d.stderr();
    for peer in ["127.0.0.3", "127.0.0.1"] {
        assert!(
            log.lines()
                .any(|l| l.contains("intake.line_timeout") && l.contains(peer)),
            "no line-deadline log line naming {peer}:\n{log}"
        );
    }
    // The message cut short was not queued.
    assert!(d.queue().is_empty());

    // A slow but steady client: whole lines, one per wait, for longer in
    // total than line_timeout. Each line is on time, so it is served.
    let (mut c, greeting) = Raw::connect_from("127.0.0.4", d.port);
    assert_eq!(greeting.code, 220);
    assert_eq!(c.cmd("EHLO slow.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<slow@example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<postmaster@relay.test>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let lines = (0..20).map(|i| format!("X-Line-{i}: on time\r\n"));
    let cut = std::iter::once("Subject: slow\r\n".to_owned())
        .chain(lines)
        .any(|l| send_and_wait(&mut c, l.as_bytes()));
    assert!(
        !cut,
        "a steady client was answered mid-message: {:?}",
        c.try_reply()
    );
    let reply = c.cmd("\r\nslowly.\r\n.");
    assert_eq!(reply.code, 250, "{reply:?}");
}

/// Sessions of each kind in the storm below (all bounded): the trusted
/// client sends at least the first number of messages, and goes on while
/// any stranger is still at work, up to the second.
const TRUSTED_MESSAGES: (usize, usize) = (20, 300);
const FLOOD_SESSIONS: usize = 15;
const TRICKLE_ROUNDS: usize = 3;
const GUESSES: usize = 3;

/// Issue 9's acceptance check: on both listeners at once, strangers hold
/// idle sessions (127.0.0.2–4, each at its cap), trickle command lines a
/// byte at a time (127.0.0.7), flood connect/send/quit sessions
/// (127.0.0.8, .10, .11) and guess passwords on submission (127.0.0.9),
/// while a local program on 127.0.0.1 sends its mail. Every one of its
/// messages is accepted and queued, and each limit gives its documented
/// reply. Its per-message latency is printed, never asserted.
#[test]
fn a_local_program_is_served_while_strangers_attack_both_listeners_at_once() {
    if !support::peers::require("swaks") {
        return;
    }
    // Idle sessions must outlast the test; lines must not.
    let timeouts = "command_timeout = \"60s\"\ndata_timeout = \"60s\"\nline_timeout = \"2s\"\n";
    let auth = "max_auth_failures = 3\nauth_lockout = \"15m\"\nauth_delay = \"50ms\"\n";
    let Relay { d, submission, .. } = start(timeouts, auth);
    let intake = d.port;
    let mut idle = Vec::new();
    for ip in &STRANGERS[..3] {
        for port in [intake, submission] {
            for _ in 0..CAP {
                let (c, greeting) = Raw::connect_from(ip, port);
                assert_eq!(greeting.code, 220, "{ip} → {port}: {greeting:?}");
                idle.push(c);
            }
        }
    }
    let (ids, mut latencies) = std::thread::scope(|s| {
        let tricklers = [(intake, "intake"), (submission, "submission")]
            .map(|(port, name)| s.spawn(move || trickle_rounds("127.0.0.7", port, name)));
        let floods = ["127.0.0.8", "127.0.0.10", "127.0.0.11"]
            .map(|ip| s.spawn(move || flood(ip, intake, submission)));
        let guesser = s.spawn(|| guess_passwords("127.0.0.9", submission));
        let mut ids = Vec::new();
        let mut latencies = Vec::new();
        let busy = |i: usize| {
            let strangers = tricklers.iter().chain(&floods).chain([&guesser]);
            i < TRUSTED_MESSAGES.0 || strangers.clone().any(|t| !t.is_finished())
        };
        for i in (0..TRUSTED_MESSAGES.1).take_while(|&i| busy(i)) {
            let start = std::time::Instant::now();
            let (mut c, greeting) = Raw::connect_from("127.0.0.1", intake);
            assert_eq!(greeting.code, 220, "trusted message {i}: {greeting:?}");
            let reply = send_message(&mut c);
            latencies.push(start.elapsed());
            assert_eq!(reply.code, 250, "trusted message {i}: {reply:?}");
            let text = reply.text();
            let id = text.split("queued as ").nth(1).map(str::trim);
            ids.push(
                id.unwrap_or_else(|| panic!("no queue id: {text}"))
                    .to_owned(),
            );
            assert_eq!(c.cmd("QUIT").code, 221);
            // The idle holders' cap still holds, on both listeners.
            if i == TRUSTED_MESSAGES.0 / 2 {
                for (port, listener) in [(intake, "intake"), (submission, "submission")] {
                    let (mut c, reply) = Raw::connect_from("127.0.0.2", port);
                    assert_client_cap(&reply, "127.0.0.2", listener);
                    assert!(c.is_closed(), "{listener}: still open after the 421");
                }
            }
        }
        for t in tricklers.into_iter().chain(floods).chain([guesser]) {
            t.join().expect("a stranger's thread failed");
        }
        (ids, latencies)
    });
    let queued = d.queue();
    for id in &ids {
        assert!(
            queued.iter().any(|m| m["id"] == id.as_str()),
            "{id} was acknowledged but is not in the queue"
        );
    }
    d.wait_stderr("connection from an address locked out after authentication failures");
    latencies.sort();
    println!(
        "trusted client under attack: {} messages, latency p50 {:?}, max {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    drop(idle);
}

/// Trickles an EHLO line from `ip` to `port`, [`TRICKLE_ROUNDS`] times;
/// each time the line deadline must cut it.
fn trickle_rounds(ip: &str, port: u16, listener: &str) {
    for round in 0..TRICKLE_ROUNDS {
        let (mut c, greeting) = Raw::connect_from(ip, port);
        assert_eq!(greeting.code, 220, "{listener} trickler: {greeting:?}");
        let _ = trickle(&mut c, b"EHLO a-client-that-takes-its-time.example\r\n");
        assert_timeout(c.try_reply(), &format!("{listener} trickle {round}"));
        assert!(c.is_closed(), "{listener}: still open after the timeout");
    }
}

/// [`FLOOD_SESSIONS`] sessions from `ip`, back to back: a message to the
/// postmaster on the intake, and EHLO/QUIT on submission.
fn flood(ip: &str, intake: u16, submission: u16) {
    for i in 0..FLOOD_SESSIONS {
        let (mut c, greeting) = Raw::connect_from(ip, intake);
        assert_eq!(greeting.code, 220, "flood {ip} {i}: {greeting:?}");
        assert_eq!(c.cmd("EHLO flood.example").code, 250);
        assert_eq!(c.cmd("MAIL FROM:<flood@example.org>").code, 250);
        assert_eq!(c.cmd("RCPT TO:<postmaster@relay.test>").code, 250);
        assert_eq!(c.cmd("DATA").code, 354);
        let reply = c.cmd("Subject: flood\r\n\r\nagain\r\n.");
        assert_eq!(reply.code, 250, "flood {ip} {i}: {reply:?}");
        assert_eq!(c.cmd("QUIT").code, 221);
        let (mut c, greeting) = Raw::connect_from(ip, submission);
        assert_eq!(greeting.code, 220, "flood {ip} {i}: {greeting:?}");
        assert_eq!(c.cmd("EHLO flood.example").code, 250);
        assert_eq!(c.cmd("QUIT").code, 221);
    }
}

/// [`GUESSES`] wrong passwords from `ip` over STARTTLS (swaks), each
/// refused with 535; then the address is locked out.
fn guess_passwords(ip: &str, submission: u16) {
    for i in 0..GUESSES {
        let out = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{submission}")])
            .args(["--local-interface", ip, "--timeout", "20"])
            .args([
                "--from",
                "app@client.example",
                "--to",
                "someone@example.net",
            ])
            .args(["--tls", "--auth", "PLAIN", "--auth-user", "alice"])
            .args(["--auth-password", &format!("guess {i}")])
            .output()
            .expect("run swaks");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("535 5.7.8"), "guess {i}: {text}");
    }
    let (mut c, greeting) = Raw::connect_from(ip, submission);
    assert_eq!(greeting.code, 421, "{greeting:?}");
    assert_eq!(
        greeting.text(),
        "4.7.0 Too many authentication failures; try again later"
    );
    assert!(c.is_closed());
}
