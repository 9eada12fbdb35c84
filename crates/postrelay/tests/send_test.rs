//! `postrelay send-test --to ADDR` against real peers: the private
//! provider (`scripts/provider`: Postfix with STARTTLS + AUTH and its own
//! CA) and a running daemon. Each step the command prints is checked
//! against what the provider itself logged. Each run's time is printed
//! (measured, never asserted).

mod support;

use std::process::Output;

use support::daemon::{Daemon, Options};
use support::doctor::{ROUTING, password_file, provider, relay};
use support::peers;

fn peers_present() -> bool {
    peers::require_root("the private provider (Postfix)") && peers::require("postfix")
}

/// A delivering daemon whose only relay is the provider's STARTTLS port,
/// logging in with `password`.
fn daemon_with_password(password: &str) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path(), "pw", password);
    let port = provider().starttls_port;
    let d = Daemon::start_with(Options {
        delivery: true,
        tail: format!(
            "{}{ROUTING}",
            relay("submission", port, "starttls", &pw, "")
        ),
        ..Options::default()
    });
    (dir, d)
}

fn send_test(d: &Daemon) -> (Output, String) {
    let started = std::time::Instant::now();
    let out = d.cli(&[
        "send-test",
        "--to",
        "rcpt@dest.example",
        "--from",
        "cron@relay.test",
        "--timeout",
        "30s",
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Measured, never asserted.
    let ms = started.elapsed().as_millis();
    eprintln!("send-test took {ms} ms and said:\n{text}");
    (out, text)
}

fn line_with<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{text}"))
}

#[test]
fn a_delivery_over_starttls_and_auth_is_reported_step_by_step() {
    if !peers_present() {
        return;
    }
    let p = provider();
    let (_dir, d) = daemon_with_password(&p.password);
    let (out, text) = send_test(&d);
    assert!(out.status.success(), "{text}");
    let queued = line_with(&text, "queued as ");
    let id = queued["queued as ".len()..].split(' ').next().unwrap();
    d.wait_maillog(&[id], 1);
    let port = p.starttls_port;
    assert_eq!(
        line_with(&text, "connected to "),
        format!("connected to 127.0.0.1[127.0.0.1]:{port} (relay submission)")
    );
    let tls = line_with(&text, "TLS: ");
    assert!(tls.starts_with("TLS: TLSv1."), "{tls}");
    assert!(
        tls.ends_with("certificate for localhost, 127.0.0.1"),
        "{tls}"
    );
    assert_eq!(
        line_with(&text, "AUTH: "),
        format!("AUTH: PLAIN as user {}", p.user)
    );
    p.assert_auth_plain();
    // The provider's queue id, as the provider logged it for this message.
    let accepted = line_with(&text, "accepted: ");
    let provider_id = accepted
        .rsplit("queued as ")
        .next()
        .filter(|_| accepted.contains("queued as "))
        .unwrap_or_else(|| panic!("no provider queue id: {accepted}"))
        .trim();
    let log = p.maillog();
    assert!(
        log.contains(&format!("{provider_id}: from=<alerts@example.test>")),
        "the provider did not log {provider_id} from the rewritten sender:\n{log}"
    );
    assert!(d.queue().is_empty(), "{:?}", d.queue());
}

#[test]
fn a_wrong_password_names_the_auth_step_and_keeps_the_mail() {
    if !peers_present() {
        return;
    }
    let (_dir, d) = daemon_with_password("not the password");
    let (out, text) = send_test(&d);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let failed = line_with(&text, "failed at ");
    assert!(failed.starts_with("failed at AUTH: "), "{failed}");
    assert!(failed.contains("535"), "the provider's reply: {failed}");
    assert!(failed.contains(&provider().user), "{failed}");
    assert!(failed.ends_with("the message stays queued and will be retried"));
    let queue = d.queue();
    assert_eq!(queue.len(), 1, "{queue:#?}");
    let id = line_with(&text, "queued as ")["queued as ".len()..]
        .split(' ')
        .next()
        .unwrap();
    assert_eq!(queue[0]["id"], id);
}

#[test]
fn without_a_running_daemon_it_says_so() {
    let mut d = Daemon::start();
    d.stop();
    let (out, text) = send_test(&d);
    assert_eq!(out.status.code(), Some(69), "{text}");
    assert!(
        text.contains("the postrelay daemon is not running (nothing answers on ")
            && text.contains("start it"),
        "{text}"
    );
    assert!(!text.contains("queued as"), "{text}");
}
