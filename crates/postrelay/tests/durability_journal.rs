//! Durability with the commit journal (`[queue] sync = "journal"`),
//! through the real binary: a daemon killed with SIGKILL right after a
//! `250` keeps every acknowledged message, whole, after a restart (which
//! replays the journal), whatever mode the restart uses.
//!
//! A SIGKILL keeps the page cache, so what it shows is the order of the
//! steps (the 250 comes after the journal's flush and the rename) and that
//! start-up with a journal left by a crash repairs, never damages, the
//! spool. What a power cut would take away is simulated in the spool's
//! unit tests (`spool/journal/tests.rs`).

mod support;

use std::collections::BTreeMap;

use support::daemon::{Daemon, Options};
use support::spool::{
    Step, assert_spool_consistent, id_of, message, queued_id, session, transaction,
};

fn options(sync: &str) -> Options {
    Options {
        queue: format!("sync = \"{sync}\""),
        ..Default::default()
    }
}

/// Sends `sizes.len()` messages on one session, marked `round-i`, and
/// kills the daemon right after the last 250; returns marker → queue id.
fn send_then_kill(d: &mut Daemon, round: usize, sizes: &[usize]) -> BTreeMap<String, String> {
    let mut acked = BTreeMap::new();
    let mut c = session(d.port);
    for (i, &size) in sizes.iter().enumerate() {
        let marker = format!("round{round}-msg{i}");
        let (step, reply) = transaction(&mut c, &message(&marker, size));
        assert_eq!(step, Step::EndOfData, "{marker}: {reply:?}");
        let id = queued_id(&reply).unwrap_or_else(|| panic!("{marker}: {reply:?}"));
        acked.insert(marker, id);
    }
    d.kill9();
    acked
}

/// Adds `sent` to `acked`; a marker sent twice would hide a message from
/// the count, so it is a mistake of the test.
fn add(acked: &mut BTreeMap<String, String>, sent: BTreeMap<String, String>) {
    for (marker, id) in sent {
        let before = acked.insert(marker.clone(), id);
        assert!(before.is_none(), "marker {marker} was sent twice");
    }
}

/// Every acknowledged message is queued under its id, its body carrying
/// its marker, and the spool is consistent.
fn assert_all_queued(d: &Daemon, acked: &BTreeMap<String, String>) {
    let q = assert_spool_consistent(d);
    let ids: Vec<String> = q.iter().map(id_of).collect();
    for (marker, id) in acked {
        assert!(
            ids.contains(id),
            "{marker} was acknowledged as {id} but is not queued after kill -9 and restart\n{}",
            d.stderr()
        );
        let body = String::from_utf8_lossy(&d.body(id)).into_owned();
        assert!(
            body.contains(&format!("X-Test-Marker: {marker}\r\n")),
            "{id} does not hold {marker}"
        );
    }
    assert_eq!(
        q.len(),
        acked.len(),
        "one queued message per acknowledged one"
    );
}

/// Rounds of: a few messages on one session (small ones through the
/// journal, and every other round one of 100 KB, committed with syncfs),
/// SIGKILL right after the last 250, restart. Everything acknowledged in
/// every round is there, once.
#[test]
fn kill_9_right_after_250_keeps_every_acknowledged_message() {
    let mut d = Daemon::start_with(options("journal"));
    let mut acked = BTreeMap::new();
    for round in 0..10 {
        let mut sizes = vec![600, 1500, 3000];
        if round % 2 == 1 {
            sizes.push(100_000);
        }
        add(&mut acked, send_then_kill(&mut d, round, &sizes));
        d.restart();
        assert_all_queued(&d, &acked);
    }
}

/// What a power cut right after the kill could take from the spool:
/// the envelope and most of the body of every message of `acked` that
/// the journal still keeps alive (its files in queue/ were not synced
/// yet). Returns how many it cut.
fn cut_what_only_the_journal_keeps(d: &Daemon, acked: &BTreeMap<String, String>) -> usize {
    let pending: Vec<String> = postrelay::spool::journal_pending(&d.spool())
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    let queue = d.spool().join("queue");
    let mut cut = 0;
    for id in acked.values().filter(|id| pending.contains(id)) {
        std::fs::remove_file(queue.join(format!("{id}.env"))).unwrap();
        let body = std::fs::OpenOptions::new()
            .write(true)
            .open(queue.join(format!("{id}.msg")))
            .unwrap();
        body.set_len(10).unwrap();
        cut += 1;
    }
    cut
}

/// In journal mode: [`send_then_kill`], then [`cut_what_only_the_journal_keeps`];
/// again (restarting in between) while a checkpoint made before the kill
/// left nothing to cut, at most 5 times. Its attempts are numbered from
/// 100 up, apart from the rounds a test sends itself, so that markers
/// (the keys of the acknowledged map) never repeat.
fn send_kill_and_cut(d: &mut Daemon, round: usize, sizes: &[usize]) -> BTreeMap<String, String> {
    let mut acked = BTreeMap::new();
    for attempt in 0..5 {
        let sent = send_then_kill(d, 100 * (round + 1) + attempt, sizes);
        add(&mut acked, sent.clone());
        if cut_what_only_the_journal_keeps(d, &sent) > 0 {
            return acked;
        }
        d.restart();
    }
    panic!("every batch was checkpointed before the kill, 5 times");
}

/// A journal left by a crash in journal mode is replayed by a daemon
/// started with `"filesystem"` too, and switching back works. Before each
/// restart the messages only the journal keeps lose their files in queue/:
/// they are back, whole, only through the replay.
#[test]
fn a_crash_journal_is_replayed_whatever_the_next_mode() {
    let mut d = Daemon::start_with(options("journal"));
    let mut acked = send_kill_and_cut(&mut d, 0, &[800, 1200]);
    d.rewrite_config(&options("filesystem"));
    d.restart();
    assert_all_queued(&d, &acked);
    let sent = send_then_kill(&mut d, 1, &[900]);
    assert_eq!(cut_what_only_the_journal_keeps(&d, &sent), 0, "filesystem");
    add(&mut acked, sent);
    d.rewrite_config(&options("journal"));
    d.restart();
    assert_all_queued(&d, &acked);
    add(&mut acked, send_kill_and_cut(&mut d, 2, &[700]));
    d.restart();
    assert_all_queued(&d, &acked);
}
