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
//! With `POSTRELAY_TORTURE_DESTINATIONS=2` (the default; 1 sends each
//! message to one destination) every message also goes to a
//! second destination (the transport map sends `other.example` through a
//! second relay, the provider's implicit-TLS port), so each attempt has
//! two steps and the first step's deliveries are recorded mid-attempt
//! (`queue/progress.rs`). Copies are counted per message and recipient.
//! The run also prints how long after the provider's reply the queue
//! recorded each delivery (the daemon's debug lines), and how many
//! recipients our own mail log shows delivered twice: a duplicate our log
//! saw coming was recorded too late; one it did not was lost with the
//! provider's reply (the kill came between its commit and our reading of
//! the `250`, which no client can close).
//!
//! The suite runs a short version. The full run, whose figures go in
//! `docs/testing.md`, is one command:
//!
//! ```sh
//! POSTRELAY_TORTURE_CYCLES=20 POSTRELAY_TORTURE_MESSAGES=1000 \
//!   POSTRELAY_TORTURE_DESTINATIONS=1 \
//!   cargo test -p postrelay --test crash_torture -- --nocapture
//! ```

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use support::daemon::{Daemon, Options};
use support::peers::require;
use support::provider::Provider;

/// The recipient of every message at each destination.
const RECIPIENTS: [&str; 2] = ["rcpt@dest.example", "rcpt@other.example"];

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
    (cycle, sender, count, dests): (usize, usize, usize, usize),
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
        let mut steps = vec![("MAIL FROM:<sender@example.org>\r\n".to_string(), 250)];
        for rcpt in &RECIPIENTS[..dests] {
            steps.push((format!("RCPT TO:<{rcpt}>\r\n"), 250));
        }
        steps.push(("DATA\r\n".into(), 354));
        for (step, expect) in steps {
            if w.write_all(step.as_bytes()).is_err() || reply(&mut r) != Some(expect) {
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

/// How many times each message reached the provider, by Message-ID and
/// recipient (the provider's `Received:` line names it: "for <…>").
fn copies(p: &Provider) -> HashMap<(String, String), usize> {
    let mut seen = HashMap::new();
    for (_, raw) in p.delivered() {
        let text = String::from_utf8_lossy(&raw);
        let id = text.lines().find_map(|l| l.strip_prefix("Message-ID: "));
        let rcpt = text
            .split_once("for <")
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(rcpt, _)| rcpt);
        if let (Some(id), Some(rcpt)) = (id, rcpt) {
            *seen.entry((id.to_string(), rcpt.to_string())).or_insert(0) += 1;
        }
    }
    seen
}

/// Waits until the provider has stored everything it accepted (its log
/// has as many `status=sent` as `message-id=` lines) and returns the copies.
fn drained(p: &Provider, at_least: usize) -> HashMap<(String, String), usize> {
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

/// The daemon's debug lines "delivered recipients recorded": for each
/// attempt, microseconds from the earliest delivery's reply to the queue's
/// record of it, sorted; summarised as `median/p99/max µs over n`.
fn windows(stderr: &str, key: &str) -> String {
    let mut us: Vec<u64> = stderr
        .lines()
        .filter_map(|l| l.split(key).nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    us.sort_unstable();
    let at = |q: f64| {
        us.get(((us.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    format!("{}/{}/{} µs over {}", at(0.5), at(0.99), at(1.0), us.len())
}

/// One cycle: senders push `messages` while delivery runs; the daemon is
/// killed once a random number of them were acknowledged, then restarted.
fn cycle(
    d: &mut Daemon,
    (n, messages, dests): (usize, usize, usize),
    fates: &Arc<Mutex<HashMap<String, Fate>>>,
) {
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
            let what = (n, s, per_sender, dests);
            std::thread::spawn(move || send_until_broken(port, what, &fates, &acked))
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

/// The daemon's configuration: the provider's STARTTLS port as the relay
/// and, for a second destination, its implicit-TLS port as another.
fn options(p: &Provider, pw: &Path, tables: &Path, dests: usize) -> Options {
    let relay = |name: &str, port: u16, tls: &str| {
        format!(
            "[[relay]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = \"{tls}\"\nca_file = \"{ca}\"\nusername = \"{user}\"\npassword_file = \"{pw}\"\n",
            ca = p.ca_file().display(),
            user = p.user,
            pw = pw.display(),
        )
    };
    let mut tail = String::new();
    if dests > 1 {
        let transport = tables.join("transport");
        std::fs::write(&transport, "other.example relay:second\n").unwrap();
        tail = format!("[routing]\ntransport = \"{}\"\n", transport.display());
        tail.push_str(&relay("second", p.implicit_port, "implicit"));
    }
    tail.insert_str(0, &relay("provider", p.starttls_port, "starttls"));
    Options {
        delivery: true,
        tail,
        ..Options::default()
    }
}

/// Recipients (message, address) our mail log shows delivered more than
/// once: duplicates the queue knew of before the kill.
fn sent_twice_in_our_log(d: &Daemon) -> usize {
    let mut sent: HashMap<(String, String), usize> = HashMap::new();
    for l in d.maillog().lines().filter(|l| l.contains("status=sent")) {
        let Some((head, rest)) = l.split_once(": to=<") else {
            continue;
        };
        let id = head.rsplit(' ').next().unwrap_or_default();
        let rcpt = rest.split('>').next().unwrap_or_default();
        *sent.entry((id.into(), rcpt.into())).or_insert(0) += 1;
    }
    sent.values().filter(|&&n| n > 1).count()
}

#[test]
fn kill_9_at_random_moments_loses_nothing_acknowledged() {
    if !(require("postfix") && require("saslpasswd2")) {
        return;
    }
    let cycles = setting("POSTRELAY_TORTURE_CYCLES", 3);
    let messages = setting("POSTRELAY_TORTURE_MESSAGES", 200);
    let dests = setting("POSTRELAY_TORTURE_DESTINATIONS", 2);
    assert!(messages >= 4 * SENDERS, "too few messages per cycle");
    assert!((1..=2).contains(&dests), "1 or 2 destinations");
    let p = Provider::start();
    let secrets = tempfile::tempdir().unwrap();
    let pw = secrets.path().join("relay-password");
    std::fs::write(&pw, format!("{}\n", p.password)).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut d = Daemon::start_with(options(&p, &pw, secrets.path(), dests));
    let fates = Arc::new(Mutex::new(HashMap::new()));
    for n in 0..cycles {
        cycle(&mut d, (n, messages, dests), &fates);
    }
    d.wait_queue_len(0);

    let fates = fates.lock().unwrap();
    let count = |f: Fate| fates.values().filter(|&&v| v == f).count();
    let seen = drained(&p, count(Fate::Acked) * dests);
    let got = |id: &String, rcpt: &str| seen.contains_key(&(id.clone(), rcpt.to_string()));
    let any = |id: &String| RECIPIENTS[..dests].iter().any(|r| got(id, r));
    let lost: Vec<(&String, &str)> = fates
        .iter()
        .filter(|(_, f)| **f == Fate::Acked)
        .flat_map(|(id, _)| RECIPIENTS[..dests].iter().map(move |r| (id, *r)))
        .filter(|(id, r)| !got(id, r))
        .collect();
    let phantom: Vec<&String> = fates
        .iter()
        .filter(|(id, f)| **f == Fate::Unfinished && any(id))
        .map(|(id, _)| id)
        .collect();
    let dot_sent_delivered = fates
        .iter()
        .filter(|(id, f)| **f == Fate::DotSent && any(id))
        .count();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    let log = d.stderr();
    eprintln!(
        "crash_torture: {cycles} cycles of {messages} messages to {dests} destination(s): \
         {} acknowledged, {} lost, {} unfinished and never delivered, \
         {dot_sent_delivered} of {} with a lost reply delivered, {duplicates} duplicates \
         ({} seen coming in our log); reply-to-record window median/p99/max: \
         mid-attempt {}, end of attempt {}",
        count(Fate::Acked),
        lost.len(),
        count(Fate::Unfinished) - phantom.len(),
        count(Fate::DotSent),
        sent_twice_in_our_log(&d),
        windows(&log, "mid_window_us="),
        windows(&log, "end_window_us="),
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
