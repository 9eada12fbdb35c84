//! A full spool file system, through the real binary: the promise under
//! test (README, "Guarantees") is that a full or nearly full spool
//! answers `452 4.3.1`, never `250`, that what was acknowledged before
//! stays queued, and that mail is accepted again once there is room.
//! Each test mounts a small tmpfs of its own for the spool. (Crashes and
//! recovery are in `durability.rs`.)

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options};
use support::smtp::{Raw, Reply};
use support::spool::{Step, id_of, message, names, queued_id, session, transaction};

/// A tmpfs mounted for the test; lazily unmounted on drop (the daemon may
/// still have it open when a failing test unwinds).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(at)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs on {at:?} failed");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Bytes available to root... and to us: what statvfs says is free.
fn free_bytes(dir: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(dir).unwrap();
    st.blocks_available() * st.fragment_size()
}

/// A daemon with `message_size_limit` and `min_free_space` whose spool
/// is a fresh 2 MiB tmpfs (it is started, stopped, given the tmpfs and
/// restarted). The tmpfs is unmounted when the returned guard drops,
/// which the caller's `let (d, _mount)` does before the daemon's.
fn on_small_tmpfs(message_size_limit: &str, min_free_space: &str) -> (Daemon, Tmpfs) {
    let mut d = Daemon::start_with(Options {
        intake: format!("message_size_limit = \"{message_size_limit}\""),
        queue: format!("min_free_space = \"{min_free_space}\""),
        ..Default::default()
    });
    assert!(d.stop().success());
    std::fs::remove_dir_all(d.spool()).unwrap();
    let m = Tmpfs::mount(&d.spool(), "2m");
    d.restart();
    (d, m)
}

/// Sends messages until the server refuses one; at most `max`. Returns the
/// IDs acknowledged and the refusal.
fn fill(c: &mut Raw, size: usize, max: usize) -> (Vec<String>, Option<(Step, Reply)>) {
    let mut ids = Vec::new();
    for n in 0..max {
        let (step, r) = transaction(c, &message(&format!("fill {n}"), size));
        match queued_id(&r) {
            Some(id) if step == Step::EndOfData => ids.push(id),
            _ => return (ids, Some((step, r))),
        }
    }
    (ids, None)
}

/// Every acknowledged ID is queued, with its full body.
fn assert_acknowledged_are_queued(d: &Daemon, ids: &[String]) {
    let q: BTreeMap<String, serde_json::Value> =
        d.queue().into_iter().map(|m| (id_of(&m), m)).collect();
    for id in ids {
        let m = q
            .get(id)
            .unwrap_or_else(|| panic!("{id} got 250 but is not in the queue"));
        assert_eq!(d.body(id).len() as u64, m["size"].as_u64().unwrap(), "{id}");
    }
}

/// After space was freed, a new message is accepted: retries for a bounded
/// time because the free-space verdict is cached (about a second); every
/// refusal meanwhile must still be 452 4.3.1.
fn assert_accepts_again(d: &Daemon) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut c = session(d.port);
    loop {
        let (step, r) = transaction(&mut c, &message("after freeing space", 2000));
        if let Some(id) = queued_id(&r) {
            return id;
        }
        assert!(
            r.code == 452 && r.text().starts_with("4.3.1"),
            "at {step:?} after freeing space: {r:?}"
        );
        assert!(
            Instant::now() < deadline,
            "still refused 15 s after freeing space: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A 2 MiB spool with `queue.min_free_space = 64 KiB` is filled by
/// sending 40 KB messages one after the other: it takes many of them, the
/// first refusal is `452 4.3.1` (at MAIL, DATA or end of data, whichever
/// notices first), every 250 named a message that is queued, and a failed
/// write leaves nothing in tmp/. Then the spool is brought to the edge
/// (256 KiB free, above the threshold) and eight sessions that all passed
/// MAIL and DATA send 60 KB each: the file system runs out (ENOSPC) under
/// some of them, and those must get `452 4.3.1`, never `250`. After
/// `queue delete --all`, a new message is accepted again.
#[test]
fn full_spool_answers_452_never_250() {
    if !support::peers::require_root("mounting a small tmpfs") {
        return;
    }
    let (d, _mount) = on_small_tmpfs("64 KiB", "64 KiB");
    let spool = d.spool();

    // 1. Fill by sending, one message at a time.
    let mut c = session(d.port);
    let (ids, refusal) = fill(&mut c, 40_000, 200);
    let (step, r) = refusal.expect("a 2 MiB spool cannot take 200 messages of 40 KB");
    assert!(
        ids.len() >= 20,
        "a 2 MiB spool with min_free_space = 64 KiB refused message {} already ({step:?}: {r:?}); \
         free now: {} bytes. Is queue.min_free_space applied?",
        ids.len() + 1,
        free_bytes(&spool)
    );
    assert_eq!(
        (r.code, r.text().starts_with("4.3.1")),
        (452, true),
        "refusal at {step:?}: {r:?}"
    );
    eprintln!(
        "full spool, one at a time: {} messages accepted, then at {step:?}: {r:?}",
        ids.len()
    );
    assert_acknowledged_are_queued(&d, &ids);
    assert_eq!(
        names(&spool.join("tmp")),
        Vec::<String>::new(),
        "tmp/ after the refusal"
    );
    assert_eq!(
        d.queue().len(),
        ids.len(),
        "only acknowledged messages are queued"
    );
    drop(c);

    let out = d.cli(&["queue", "delete", "--all"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(d.queue().len(), 0);
    let after = assert_accepts_again(&d);
    assert_eq!(
        d.cli(&["queue", "delete", after.as_str()]).status.code(),
        Some(0)
    );

    // 2. Run the file system out of space after DATA.
    run_out_of_space_after_data(&d);
}

/// Runs the file system out of space under eight sessions that passed the
/// free-space check: each gets 250 (queued) or 452 4.3.1, both happen.
fn run_out_of_space_after_data(d: &Daemon) {
    let spool = d.spool();
    let mut sessions = admit_sessions_at_the_edge(d, 8);
    for (n, s) in sessions.iter_mut().enumerate() {
        s.send(message(&format!("overcommit {n}"), 60_000).as_bytes());
        s.send(b".\r\n");
    }
    let (acked, refused) = end_of_data_replies(d, &mut sessions);
    assert!(
        refused >= 1 && !acked.is_empty(),
        "8 × 60 KB into 256 KiB: expected some 250s and some 452s, got {} and {refused}",
        acked.len()
    );
    eprintln!(
        "full spool, 8 sessions over 256 KiB: {} accepted, {refused} refused with 452 4.3.1",
        acked.len()
    );
    assert_acknowledged_are_queued(d, &acked);
    assert_eq!(
        d.queue().len(),
        acked.len(),
        "only acknowledged messages are queued"
    );
    assert_eq!(
        names(&spool.join("tmp")),
        Vec::<String>::new(),
        "failed writes leave nothing in tmp/ (or the spool stays full)"
    );
    drop(sessions);

    let out = d.cli(&["queue", "delete", "--all"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("{} message(s) deleted", acked.len())),
        "{out:?}"
    );
    assert_accepts_again(d);
}

/// A filler leaves 256 KiB free (more than the 64 KiB threshold), then
/// `n` sessions are admitted: MAIL, RCPT and DATA all accepted.
fn admit_sessions_at_the_edge(d: &Daemon, n: usize) -> Vec<Raw> {
    let spool = d.spool();
    let filler_len = free_bytes(&spool).saturating_sub(256 * 1024);
    std::fs::write(spool.join("filler"), vec![0u8; filler_len as usize]).unwrap();
    let mut sessions: Vec<Raw> = Vec::new();
    let admit_deadline = Instant::now() + Duration::from_secs(15);
    while sessions.len() < n {
        let mut s = session(d.port);
        let r = s.cmd("MAIL FROM:<test@example.com>");
        if r.code == 452 {
            // The cached verdict from the end of phase 1; wait for a fresh one.
            assert!(Instant::now() < admit_deadline, "MAIL still refused: {r:?}");
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        assert_eq!(r.code, 250, "{r:?}");
        assert_eq!(s.cmd("RCPT TO:<rcpt@example.com>").code, 250);
        let r = s.cmd("DATA");
        assert_eq!(
            r.code,
            354,
            "DATA with {} bytes free: {r:?}",
            free_bytes(&spool)
        );
        sessions.push(s);
    }
    sessions
}

/// Each session's end-of-data reply: a 250 names a queued message with
/// its marker, else 452 4.3.1. Returns the IDs acknowledged, the refusals.
fn end_of_data_replies(d: &Daemon, sessions: &mut [Raw]) -> (Vec<String>, usize) {
    let mut acked = Vec::new();
    let mut refused = 0;
    for (n, s) in sessions.iter_mut().enumerate() {
        let r = s.reply();
        match queued_id(&r) {
            Some(id) => {
                let body = d.body(&id);
                let marker = format!("X-Test-Marker: overcommit {n}\r\n");
                assert!(
                    body.windows(marker.len()).any(|w| w == marker.as_bytes()),
                    "{id} holds session {n}'s message"
                );
                acked.push(id);
            }
            None => {
                assert!(
                    r.code == 452 && r.text().starts_with("4.3.1"),
                    "session {n} at end of data on a full spool: {r:?}"
                );
                refused += 1;
            }
        }
    }
    (acked, refused)
}

/// With `queue.min_free_space` larger than the spool's whole file system,
/// MAIL is answered `452 4.3.1` at once (before the client sends data),
/// and the session stays usable. Needs no root: the threshold is simply
/// set above what any disk has.
#[test]
fn free_space_threshold_refuses_mail_up_front() {
    let d = Daemon::start_with(Options {
        queue: "min_free_space = \"1000 TiB\"".into(),
        ..Default::default()
    });
    let mut c = mail_refused_for_space(&d);
    assert_eq!(c.cmd("NOOP").code, 250, "session still usable");
}

/// Opens a session to `d` whose MAIL is answered `452 4.3.1`, with
/// nothing queued; returns the session.
fn mail_refused_for_space(d: &Daemon) -> Raw {
    let mut c = session(d.port);
    let r = c.cmd("MAIL FROM:<test@example.com>");
    assert_eq!(
        (r.code, r.text().starts_with("4.3.1")),
        (452, true),
        "MAIL: {r:?}"
    );
    assert!(d.queue().is_empty());
    c
}

/// The same on a small tmpfs (root only): a 2 MiB spool with
/// `min_free_space = 4 MiB` refuses MAIL with 452 4.3.1.
#[test]
fn free_space_threshold_on_a_small_file_system() {
    if !support::peers::require_root("mounting a small tmpfs") {
        return;
    }
    let (d, _mount) = on_small_tmpfs("1 MiB", "4 MiB");
    mail_refused_for_space(&d);
}
