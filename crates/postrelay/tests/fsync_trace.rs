//! The system calls behind "durably on disk", seen from outside: the real
//! daemon runs under strace, takes one message and defers it (its relay
//! refuses connections), and the trace must show the calls that make each
//! step survive a power cut. At intake: the envelope's rename into
//! `queue/`, then a `syncfs` of the spool's file system (body, envelope
//! and its name at once). At the deferral: an `fdatasync` of the new
//! envelope, then an `fsync` of `queue/` or a `syncfs` (for its rename
//! over the old one; the committer's next one, here the one it makes when
//! idle or stopping).
//!
//! With `sync = "journal"`, the journal's `fdatasync` comes between the
//! message's data and the `250`.
//!
//! kill -9 cannot show a missing fsync (the page cache survives a process
//! crash), and the recording file system of the unit tests records the
//! calls it is asked to make, not the ones the kernel receives: only this
//! test fails when the real file system's sync functions do nothing.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::{self, Daemon, Options};
use support::peers;
use support::smtp::Raw;

/// Polls `what` every 50 ms until it returns `Some`, at most `limit`.
fn wait_for<T>(limit: Duration, mut what: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = what() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The daemon process strace started (its only child).
fn traced_pid(strace: &Child) -> i32 {
    let path = format!("/proc/{0}/task/{0}/children", strace.id());
    let found = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&path).ok()?;
        text.split_whitespace().next()?.parse::<i32>().ok()
    });
    found.expect("strace started no daemon")
}

/// Sends one message and returns the queue ID of the `250` reply.
fn send(port: u16) -> String {
    let (mut c, greeting) = Raw::connect(port);
    assert_eq!(greeting.code, 220);
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<app@example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<someone@example.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"Subject: synced\r\n\r\nkept through a power cut\r\n");
    let reply = c.cmd(".");
    assert_eq!(reply.code, 250, "{reply:?}");
    c.cmd("QUIT");
    let text = reply.text();
    let id = text.split("queued as ").nth(1).expect("a queue ID");
    id.split_whitespace().next().unwrap().to_owned()
}

#[test]
fn a_queued_message_is_synced_through_the_kernel() {
    if !peers::require("strace") {
        return;
    }
    let (dir, id, calls) =
        trace_one_message("", ",read,recvfrom,write,writev,sendto,sendmsg,rename");
    assert_synced(&calls, dir.path(), &id);
    // After the message's data was read and before the 250 naming it was
    // written: its envelope renamed into queue/, then the syncfs that
    // makes body, envelope and name durable (on the commit thread).
    let (data, reply) = data_and_reply(&calls, &id);
    let lines: Vec<&str> = calls.lines().collect();
    let in_queue = format!("queue/{id}.env\"");
    let Some(renamed) =
        (data..reply).find(|&i| succeeded_before(&lines, i, reply, "rename", &in_queue))
    else {
        panic!("no rename into {in_queue} before the 250:\n{calls}");
    };
    let synced = (renamed..reply).any(|i| succeeded_before(&lines, i, reply, "syncfs", "lock>"));
    assert!(
        synced,
        "no syncfs after the rename and before the 250:\n{calls}"
    );
}

/// With `sync = "journal"`: the journal's `fdatasync` succeeds after the
/// message's data is read and before the `250` naming it is written to
/// the client.
#[test]
fn a_journaled_message_is_flushed_before_its_250() {
    if !peers::require("strace") {
        return;
    }
    let (dir, id, calls) = trace_one_message(
        "sync = \"journal\"",
        ",read,recvfrom,write,writev,sendto,sendmsg",
    );
    let journal = format!("<{}>", dir.path().join("spool/journal").display());
    let (data, reply) = data_and_reply(&calls, &id);
    let lines: Vec<&str> = calls.lines().collect();
    let flushed = (data..reply).any(|i| succeeded_before(&lines, i, reply, "fdatasync", &journal));
    assert!(
        flushed,
        "no fdatasync of {journal} between the data and the 250:\n{calls}"
    );
}

/// The lines of the trace where the message's data was read and where
/// the `250` naming `id` was written.
fn data_and_reply(calls: &str, id: &str) -> (usize, usize) {
    let lines: Vec<&str> = calls.lines().collect();
    let Some(reply) = lines
        .iter()
        .position(|l| l.contains(&format!("queued as {id}")))
    else {
        panic!("no 250 for {id} in the trace:\n{calls}");
    };
    let Some(data) = lines
        .iter()
        .position(|l| l.contains("kept through a power cut"))
    else {
        panic!("the message's data is not in the trace:\n{calls}");
    };
    (data, reply)
}

/// Whether line `at` is a `call` (`fdatasync`, `fsync`, `syncfs`) of
/// `file` that returned 0 before line `end`: on that line, or, when
/// another thread's call cut it in two (`<unfinished ...>`), on its
/// `resumed` line of the same thread.
fn succeeded_before(lines: &[&str], at: usize, end: usize, call: &str, file: &str) -> bool {
    let l = lines[at];
    if !(l.contains(&format!(" {call}(")) && l.contains(file)) {
        return false;
    }
    if l.ends_with("= 0") {
        return true;
    }
    let Some(pid) = l
        .split_whitespace()
        .next()
        .filter(|_| l.ends_with("<unfinished ...>"))
    else {
        return false;
    };
    lines[at + 1..end].iter().any(|r| {
        r.split_whitespace().next() == Some(pid)
            && r.contains(&format!("<... {call} resumed>"))
            && r.ends_with("= 0")
    })
}

/// Runs the daemon under strace (`fsync,fdatasync,syncfs` and
/// `more_calls`) with `[queue]` lines `queue`, sends one message and waits
/// for its deferral; returns the directory, the queue id and the trace.
fn trace_one_message(queue: &str, more_calls: &str) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = daemon::free_port();
    let config = dir.path().join("postrelay.toml");
    // A relay on a port nobody listens on: the attempt fails at once.
    let closed = daemon::free_port();
    let opts = Options {
        delivery: true,
        tail: format!(
            "[[relay]]\nname = \"closed\"\nhost = \"127.0.0.1\"\nport = {closed}\nsecurity = \"none\"\n"
        ),
        queue: queue.to_owned(),
        ..Options::default()
    };
    let text = Daemon::config_text(dir.path(), port, &opts);
    std::fs::write(&config, text).unwrap();
    let trace = dir.path().join("trace.txt");
    let stderr = dir.path().join("stderr.log");
    let mut strace = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-y",
            "-s",
            "80",
            "-e",
            &format!("trace=fsync,fdatasync,syncfs{more_calls}"),
            "-o",
        ])
        .arg(&trace)
        .arg(daemon::bin())
        .arg("-c")
        .arg(&config)
        .arg("run")
        .env_remove("POSTRELAY_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("run strace");
    let ready = wait_for(Duration::from_secs(30), || {
        let log = std::fs::read_to_string(&stderr).ok()?;
        log.contains("postrelay ready").then_some(())
    });
    assert!(
        ready.is_some(),
        "{}",
        std::fs::read_to_string(&stderr).unwrap()
    );
    let id = send(port);
    let deferred = wait_for(Duration::from_secs(30), || {
        let log = std::fs::read_to_string(dir.path().join("mail.log")).ok()?;
        log.lines()
            .any(|l| l.contains("status=deferred"))
            .then_some(())
    });
    assert!(deferred.is_some(), "the message was not deferred");

    // Stop the daemon; strace ends with it and its output is complete.
    let pid = nix::unistd::Pid::from_raw(traced_pid(&strace));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exited = wait_for(Duration::from_secs(30), || strace.try_wait().unwrap());
    if exited.is_none() {
        let _ = strace.kill();
        panic!("the traced daemon did not stop");
    }
    let calls = std::fs::read_to_string(&trace).unwrap();
    (dir, id, calls)
}

/// Intake's `syncfs`; the deferral's `fdatasync` of the envelope, then a
/// sync that covers its rename over the old one: an `fsync(queue/)` (the
/// committer's when idle or stopping) or a `syncfs`.
fn assert_synced(calls: &str, top: &Path, id: &str) {
    let queue_dir = format!("<{}>", top.join("spool/queue").display());
    let ok = |l: &&str| l.ends_with("= 0");
    let joined = joined(calls);
    let lines: Vec<&str> = joined.iter().map(String::as_str).filter(ok).collect();
    let Some(syncfs) = lines.iter().position(|l| l.contains(" syncfs(")) else {
        panic!("no syncfs of the spool at intake:\n{calls}");
    };
    let envelope = lines[syncfs..]
        .iter()
        .position(|l| l.contains(" fdatasync(") && l.contains(&format!("{id}.env")));
    let Some(envelope) = envelope else {
        panic!("no fdatasync of {id}'s rewritten envelope:\n{calls}");
    };
    let covered = lines[syncfs + envelope..]
        .iter()
        .any(|l| (l.contains(" fsync(") && l.contains(&queue_dir)) || l.contains(" syncfs("));
    assert!(
        covered,
        "no fsync of {queue_dir} nor syncfs after the envelope's rewrite:\n{calls}"
    );
}

/// The trace with each call that another thread's call cut in two
/// (`... <unfinished ...>`, then `PID <... call resumed> ... = 0`) made one
/// line again, where it started.
fn joined(calls: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut open = std::collections::HashMap::new();
    for line in calls.lines() {
        let pid = line.split_whitespace().next().unwrap_or_default();
        if let Some(start) = line.strip_suffix(" <unfinished ...>") {
            open.insert(pid.to_string(), out.len());
            out.push(start.to_string());
        } else if let Some((_, rest)) = line.split_once(" resumed>")
            && let Some(at) = open.remove(pid)
        {
            out[at].push_str(rest);
        } else {
            out.push(line.to_string());
        }
    }
    out
}
