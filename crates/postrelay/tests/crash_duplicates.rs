//! kill -9 while relaying to a real provider: nothing is lost, and only
//! the messages in flight at the kill may be delivered twice.
//!
//! At-least-once is the promise (a message whose `250` from the provider
//! arrived but was not yet recorded is sent again after the restart); the
//! window between the provider's reply and the removal of the message from
//! the queue must stay narrow. The count of duplicates is printed, so the
//! figure can be compared with Postfix in the same test.

mod support;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::daemon::{Daemon, Options};
use support::peers::require;
use support::provider::Provider;
use support::smtp::Raw;

/// Messages queued before delivery starts.
const MESSAGES: usize = 600;
/// `[delivery] max_workers` of the default configuration: each worker has
/// at most one message between the provider's reply and its record.
const WORKERS: usize = 20;

/// Queues `MESSAGES` messages, each with its own Message-ID, on one
/// connection.
fn queue_all(port: u16) {
    let (mut c, greeting) = Raw::connect(port);
    assert_eq!(greeting.code, 220);
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    for i in 0..MESSAGES {
        assert_eq!(c.cmd("MAIL FROM:<sender@example.org>").code, 250);
        assert_eq!(c.cmd("RCPT TO:<rcpt@dest.example>").code, 250);
        assert_eq!(c.cmd("DATA").code, 354);
        c.send(
            format!(
                "From: sender@example.org\r\nTo: rcpt@dest.example\r\nSubject: crash {i}\r\n\
                 Message-ID: <crash-{i}@client.example>\r\n\r\nmessage {i}\r\n"
            )
            .as_bytes(),
        );
        let reply = c.cmd(".");
        assert_eq!(reply.code, 250, "message {i}: {reply:?}");
    }
    c.cmd("QUIT");
}

/// How many times each Message-ID reached the provider.
fn copies(p: &Provider) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for (_, raw) in p.delivered() {
        let text = String::from_utf8_lossy(&raw);
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .expect("every test message has a Message-ID")
            .to_string();
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

#[test]
fn kill_9_while_relaying_loses_nothing_and_repeats_only_what_was_in_flight() {
    if !(require("postfix") && require("saslpasswd2")) {
        return;
    }
    let p = Provider::start();
    let secrets = tempfile::tempdir().unwrap();
    let pw = secrets.path().join("relay-password");
    std::fs::write(&pw, format!("{}\n", p.password)).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let relay = format!(
        "[[relay]]\nname = \"provider\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         tls = \"starttls\"\nca_file = \"{ca}\"\nusername = \"{user}\"\npassword_file = \"{pw}\"\n",
        port = p.starttls_port,
        ca = p.ca_file().display(),
        user = p.user,
        pw = pw.display(),
    );
    let mut opts = Options {
        tail: relay,
        ..Options::default()
    };
    let mut d = Daemon::start_with(opts.clone());
    queue_all(d.port);
    d.wait_queue_len(MESSAGES);

    // Deliver, and kill the daemon once the provider has a sixth of the mail.
    d.stop();
    opts.delivery = true;
    d.rewrite_config(&opts);
    d.restart();
    p.wait_delivered(MESSAGES / 6, Duration::from_secs(120));
    d.kill9();
    let at_kill = p.delivered().len();
    assert!(
        at_kill < MESSAGES,
        "everything was delivered before the kill; the test proves nothing"
    );

    d.restart();
    d.wait_queue_len(0);
    // The provider queues before it delivers into the Maildir: wait until
    // it has delivered every message it accepted (its log has as many
    // `status=sent` lines as `message-id=` lines) and each one is there.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let seen = loop {
        let log = p.maillog();
        let accepted = log.matches(": message-id=").count();
        let stored = log.matches("status=sent").count();
        let seen = copies(&p);
        if (accepted == stored && seen.len() >= MESSAGES) || std::time::Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lost: Vec<usize> = (0..MESSAGES)
        .filter(|i| !seen.contains_key(&format!("<crash-{i}@client.example>")))
        .collect();
    assert!(lost.is_empty(), "messages never delivered: {lost:?}");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "crash_duplicates: {MESSAGES} messages, kill -9 after {at_kill} delivered, \
         {duplicates} delivered twice"
    );
    assert!(
        duplicates <= WORKERS,
        "{duplicates} duplicates: more than the {WORKERS} messages that can be in flight"
    );
}
