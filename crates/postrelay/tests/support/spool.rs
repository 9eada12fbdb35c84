//! Helpers of the durability tests (`durability.rs`,
//! `durability_journal.rs`): SMTP transactions on a raw session, the queue
//! id of a 250, test messages, helper processes, and the spool invariant
//! checked from the outside.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use super::daemon::Daemon;
use super::smtp::{Raw, Reply};

/// Names of the entries of `dir` (sorted); empty if it does not exist.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// How many entries of `dir` end with `suffix` (one readdir, no parsing).
pub fn count_suffix(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(suffix))
            })
            .count()
        })
        .unwrap_or(0)
}

pub fn id_of(v: &serde_json::Value) -> String {
    v["id"]
        .as_str()
        .expect("id in queue list --json")
        .to_string()
}

/// The queue ID of a `250 2.0.0 Ok: queued as ID` reply, if it is one.
pub fn queued_id(r: &Reply) -> Option<String> {
    if r.code != 250 {
        return None;
    }
    r.text()
        .split("queued as ")
        .nth(1)
        .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
}

/// A complete message (headers, body, CRLF line ends) of roughly `size`
/// octets, carrying `marker` in an `X-Test-Marker:` header.
pub fn message(marker: &str, size: usize) -> String {
    let mut m = format!(
        "From: test@example.com\r\nTo: rcpt@example.com\r\nSubject: {marker}\r\nX-Test-Marker: {marker}\r\n\r\n"
    );
    let line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab\r\n";
    while m.len() + line.len() <= size {
        m.push_str(line);
    }
    m
}

/// Where in a transaction the server said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Mail,
    Rcpt,
    Data,
    EndOfData,
}

/// One transaction on an open, greeted session: MAIL, RCPT, DATA, the
/// message, the end of data. Returns the first reply that is not the
/// expected positive one, or the end-of-data reply.
pub fn transaction(c: &mut Raw, msg: &str) -> (Step, Reply) {
    let r = c.cmd("MAIL FROM:<test@example.com>");
    if r.code != 250 {
        return (Step::Mail, r);
    }
    let r = c.cmd("RCPT TO:<rcpt@example.com>");
    if r.code != 250 {
        // Leave the session ready for the next transaction.
        c.cmd("RSET");
        return (Step::Rcpt, r);
    }
    let r = c.cmd("DATA");
    if r.code != 354 {
        c.cmd("RSET");
        return (Step::Data, r);
    }
    c.send(msg.as_bytes());
    c.send(b".\r\n");
    (Step::EndOfData, c.reply())
}

pub fn session(port: u16) -> Raw {
    let (mut c, greeting) = Raw::connect(port);
    assert_eq!(greeting.code, 220, "{greeting:?}");
    let r = c.cmd("EHLO client.test");
    assert_eq!(r.code, 250, "{r:?}");
    c
}

/// Kills a helper process we started (by its own handle) and reaps it.
pub fn kill_child(c: &mut Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// Waits (bounded) for a helper to exit; kills it if it does not.
pub fn wait_child(c: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if c.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_child(c);
}

/// Checks the spool invariant from the outside, after a (re)start: every
/// envelope in queue/ and hold/ parses (`queue list --json` lists as many
/// messages as there are `.env` files), every listed message has its body
/// in queue/ with exactly `size` bytes, there is no body without a
/// message, tmp/ is empty and nothing is in corrupt/. Returns the list.
pub fn assert_spool_consistent(d: &Daemon) -> Vec<serde_json::Value> {
    let spool = d.spool();
    let q = d.queue();
    let envs =
        count_suffix(&spool.join("queue"), ".env") + count_suffix(&spool.join("hold"), ".env");
    assert_eq!(
        q.len(),
        envs,
        "queue list shows {} messages but queue/ and hold/ hold {envs} envelopes: some do not parse",
        q.len()
    );
    for m in &q {
        let id = id_of(m);
        let body = spool.join("queue").join(format!("{id}.msg"));
        let len = std::fs::metadata(&body)
            .unwrap_or_else(|e| panic!("{id} is listed but its body {body:?} is missing: {e}"))
            .len();
        assert_eq!(
            Some(len),
            m["size"].as_u64(),
            "{id}: body has {len} bytes, envelope says {}",
            m["size"]
        );
    }
    let bodies = count_suffix(&spool.join("queue"), ".msg");
    assert_eq!(
        bodies,
        q.len(),
        "queue/ has {bodies} bodies for {} messages",
        q.len()
    );
    assert_eq!(names(&spool.join("tmp")), Vec::<String>::new(), "tmp/");
    assert_eq!(
        names(&spool.join("corrupt")),
        Vec::<String>::new(),
        "corrupt/"
    );
    q
}
