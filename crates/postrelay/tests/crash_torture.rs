//! Crash torture: kill -9 at random moments while mail flows in from
//! clients and out to the real provider, cycle after cycle.
//!
//! After the last restart, when the queue is empty and the provider has
//! stored all it accepted:
//! - every message that got its `250` reached the provider (nothing
//!   acknowledged is lost);
//! - no message whose final dot was never sent reached it (a half-received
//!   message is never delivered);
//! - duplicates (at-least-once: a message whose provider `250` arrived but
//!   was not yet recorded goes out again) are at most `max_workers` per
//!   kill, the most messages that can sit between the provider's reply and
//!   their removal from the queue.
//!
//! The suite runs a short version. The full run, whose figures go in
//! `docs/testing.md`, is one command:
//!
//! ```sh
//! POSTRELAY_TORTURE_CYCLES=20 POSTRELAY_TORTURE_MESSAGES=1000 \
//!   cargo test -p postrelay --test crash_torture -- --nocapture
//! ```

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use support::daemon::{Daemon, Options};
use support::peers::require;
use support::provider::Provider;

/// `[delivery] max_workers` of the default configuration.
const WORKERS: usize = 20;
/// Client connections sending at once in each cycle.
const SENDERS: usize = 4;

/// What a client knows of one message when the daemon died.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fate {
    /// `250` after the final dot.
    Acked,
    /// The final dot was sent; the reply never came.
    DotSent,
    /// The final dot was never sent.
    Unfinished,
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        })
        .unwrap_or(default)
}

fn message_id(cycle: usize, sender: usize, n: usize) -> String {
    format!("<t-{cycle}-{sender}-{n}@torture.example>")
}

/// One SMTP reply's code, or `None` when the connection broke.
fn reply(r: &mut BufReader<TcpStream>) -> Option<u16> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.get(..3)?.parse().ok();
        }
    }
}

/// Sends messages on one connection until `count` are done or the daemon
/// dies; records each message's fate. Unsent messages stay `Unfinished`.
fn send_until_broken(
    port: u16,
    cycle: usize,
    sender: usize,
    count: usize,
    fates: &Mutex<HashMap<String, Fate>>,
    acked: &AtomicUsize,
) {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    if reply(&mut r) != Some(220) || w.write_all(b"EHLO torture.example\r\n").is_err() {
        return;
    }
    if reply(&mut r) != Some(250) {
        return;
    }
    for n in 0..count {
        let id = message_id(cycle, sender, n);
        let steps: [&[u8]; 3] = [
            b"MAIL FROM:<sender@example.org>\r\n",
            b"RCPT TO:<rcpt@dest.example>\r\n",
            b"DATA\r\n",
        ];
        for (step, expect) in steps.iter().zip([250, 250, 354]) {
            if w.write_all(step).is_err() || reply(&mut r) != Some(expect) {
                return;
            }
        }
        let body = format!(
            "From: sender@example.org\r\nTo: rcpt@dest.example\r\nMessage-ID: {id}\r\n\
             Subject: torture\r\n\r\ncycle {cycle}\r\n"
        );
        if w.write_all(body.as_bytes()).is_err() {
            return;
        }
        if w.write_all(b".\r\n").is_err() {
            return;
        }
        fates.lock().unwrap().insert(id.clone(), Fate::DotSent);
        match reply(&mut r) {
            Some(250) => {
                fates.lock().unwrap().insert(id, Fate::Acked);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Some(code) => panic!("message {id} refused with {code}"),
            None => return,
        }
    }
}

/// How many times each Message-ID reached the provider.
fn copies(p: &Provider) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for (_, raw) in p.delivered() {
        let text = String::from_utf8_lossy(&raw);
        if let Some(id) = text.lines().find_map(|l| l.strip_prefix("Message-ID: ")) {
            *seen.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    seen
}

/// Waits until the provider has stored everything it accepted (its log
/// has as many `status=sent` as `message-id=` lines) and returns the copies.
fn drained(p: &Provider, at_least: usize) -> HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let log = p.maillog();
        let accepted = log.matches(": message-id=").count();
        let stored = log.matches("status=sent").count();
        let seen = copies(p);
        if accepted == stored && seen.len() >= at_least {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "the provider did not drain: {accepted} accepted, {stored} stored, {} distinct",
            seen.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One cycle: senders push `messages` while delivery runs; the daemon is
/// killed once a random number of them were acknowledged, then restarted.
fn cycle(d: &mut Daemon, n: usize, messages: usize, fates: &Arc<Mutex<HashMap<String, Fate>>>) {
    let per_sender = messages / SENDERS;
    for s in 0..SENDERS {
        for m in 0..per_sender {
            fates
                .lock()
                .unwrap()
                .insert(message_id(n, s, m), Fate::Unfinished);
        }
    }
    let acked = Arc::new(AtomicUsize::new(0));
    let kill_at = rand::rng().random_range(messages / 10..messages * 9 / 10);
    let threads: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (fates, acked, port) = (fates.clone(), acked.clone(), d.port);
            std::thread::spawn(move || send_until_broken(port, n, s, per_sender, &fates, &acked))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    while acked.load(Ordering::SeqCst) < kill_at {
        assert!(Instant::now() < deadline, "cycle {n}: intake stalled");
        std::thread::sleep(Duration::from_millis(2));
    }
    d.kill9();
    for t in threads {
        t.join().expect("a sender panicked");
    }
    d.restart();
}

#[test]
fn kill_9_at_random_moments_loses_nothing_acknowledged() {
    if !(require("postfix") && require("saslpasswd2")) {
        return;
    }
    let cycles = setting("POSTRELAY_TORTURE_CYCLES", 3);
    let messages = setting("POSTRELAY_TORTURE_MESSAGES", 200);
    assert!(messages >= 4 * SENDERS, "too few messages per cycle");
    let p = Provider::start();
    let secrets = tempfile::tempdir().unwrap();
    let pw = secrets.path().join("relay-password");
    std::fs::write(&pw, format!("{}\n", p.password)).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let opts = Options {
        delivery: true,
        tail: format!(
            "[[relay]]\nname = \"provider\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = \"starttls\"\nca_file = \"{ca}\"\nusername = \"{user}\"\npassword_file = \"{pw}\"\n",
            port = p.starttls_port,
            ca = p.ca_file().display(),
            user = p.user,
            pw = pw.display(),
        ),
        ..Options::default()
    };
    let mut d = Daemon::start_with(opts);
    let fates = Arc::new(Mutex::new(HashMap::new()));
    for n in 0..cycles {
        cycle(&mut d, n, messages, &fates);
    }
    d.wait_queue_len(0);

    let fates = fates.lock().unwrap();
    let count = |f: Fate| fates.values().filter(|&&v| v == f).count();
    let seen = drained(&p, count(Fate::Acked));
    let lost: Vec<&String> = fates
        .iter()
        .filter(|(id, f)| **f == Fate::Acked && !seen.contains_key(*id))
        .map(|(id, _)| id)
        .collect();
    let phantom: Vec<&String> = fates
        .iter()
        .filter(|(id, f)| **f == Fate::Unfinished && seen.contains_key(*id))
        .map(|(id, _)| id)
        .collect();
    let dot_sent_delivered = fates
        .iter()
        .filter(|(id, f)| **f == Fate::DotSent && seen.contains_key(*id))
        .count();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "crash_torture: {cycles} cycles of {messages} messages: {} acknowledged, {} lost, \
         {} unfinished and never delivered, {dot_sent_delivered} of {} with a lost reply \
         delivered, {duplicates} duplicates",
        count(Fate::Acked),
        lost.len(),
        count(Fate::Unfinished) - phantom.len(),
        count(Fate::DotSent),
    );
    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {lost:?}"
    );
    assert!(
        phantom.is_empty(),
        "delivered though the final dot was never sent: {phantom:?}"
    );
    assert!(
        duplicates <= WORKERS * cycles,
        "{duplicates} duplicates: more than {WORKERS} per kill can be in flight"
    );
}
