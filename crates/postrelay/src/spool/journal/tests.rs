//! The commit journal: records end the scan where they are torn or stale;
//! a crash after the journal's flush (before the renames, or during a
//! checkpoint) loses nothing; stale recycled files are rewritten from the
//! records; a checkpoint retires them; removed files wait for it.
//!
//! A crash is simulated by dropping the spool (the page cache survives, so
//! what a power cut would lose is taken away by hand: files removed, cut
//! or overwritten as the disk could have left them) and opening it again.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::super::faults::{Fault, FaultyFs, Op, names, names_in};
use super::super::tests::{commit, envelope_for, remove_lazily, stage};
use super::super::*;
use super::record::{encode_header, encode_record};
use super::{Header, RECORDS_START, live_records, read_header};
use crate::spool::journal_pending;

fn open_with_ops(root: &Path, ops: Arc<dyn FileOps>) -> Spool {
    Spool::open_with(
        root,
        SpoolOptions {
            file_ops: ops,
            sync: SyncMode::Journal,
            ..SpoolOptions::default()
        },
    )
    .unwrap()
}

fn open(root: &Path) -> Spool {
    open_with_ops(root, durable::real_fs())
}

fn open_faulty(root: &Path) -> (Spool, Arc<FaultyFs>) {
    let fs = Arc::new(FaultyFs::default());
    (open_with_ops(root, fs.clone()), fs)
}

fn body_of(spool: &Spool, id: &QueueId) -> Vec<u8> {
    std::fs::read(spool.body_path(id)).unwrap()
}

/// What the disk could hold after a power cut: `path` gone.
fn lose(path: &Path) {
    std::fs::remove_file(path).unwrap();
}

/// Puts `header` into its slot of the segment image `bytes`.
fn put_header(bytes: &mut [u8], header: &Header) {
    let at = (header.generation % 2) as usize * 512;
    bytes[at..at + super::record::HEADER_LEN].copy_from_slice(&encode_header(header));
}

/// A segment image with records (id, body) of `epoch`, seq 0, 1, …, and a
/// header of generation 3 saying `epoch` with nothing covered.
fn segment(epoch: u64, bodies: &[&[u8]]) -> (Vec<u8>, Vec<QueueId>) {
    let mut bytes = vec![0; RECORDS_START as usize];
    put_header(&mut bytes, &header(3, epoch, 0));
    let mut ids = Vec::new();
    for (seq, body) in bodies.iter().enumerate() {
        let id = QueueId::generate();
        let env = envelope_for(id).to_json();
        encode_record(&mut bytes, epoch, seq as u32, &id, &env, body);
        ids.push(id);
    }
    (bytes, ids)
}

/// `result` is the failure of an `fdatasync`.
fn assert_fdatasync_failed(result: Result<QueueId, SpoolError>) {
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            SpoolError::Io {
                op: "fdatasync",
                ..
            }
        ),
        "{err}"
    );
}

fn header(generation: u64, epoch: u64, covered: u32) -> Header {
    Header {
        generation,
        epoch,
        covered,
    }
}

#[test]
fn the_scan_ends_at_a_torn_stale_or_out_of_order_record() {
    let (bytes, ids) = segment(6, &[b"one\r\n", b"two\r\n", b"three\r\n"]);
    let h = read_header(&bytes);
    assert_eq!(h, header(3, 6, 0));
    let all = live_records(&bytes, &h);
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    assert_eq!(all[1].body, b"two\r\n");
    let second = RECORDS_START as usize
        + super::record::record_len(all[0].envelope.len(), all[0].body.len());
    let third = second + super::record::record_len(all[1].envelope.len(), all[1].body.len());

    // A torn write: the second record's last byte never made it.
    let mut torn = bytes.clone();
    torn[third - 1] ^= 0xff;
    assert_eq!(live_records(&torn, &h).len(), 1, "torn");
    // Cut short inside the third record.
    assert_eq!(live_records(&bytes[..third + 10], &h).len(), 2, "short");
    // Left over from an earlier epoch: not live.
    assert_eq!(
        live_records(&bytes, &header(4, 7, 0)).len(),
        0,
        "stale epoch"
    );
    // A second copy of record 0 where record 1 should be.
    let mut repeated = bytes[..second].to_vec();
    repeated.extend_from_slice(&bytes[RECORDS_START as usize..second]);
    assert_eq!(live_records(&repeated, &h).len(), 1, "sequence");
}

#[test]
fn a_header_covers_records_and_a_torn_one_falls_back_to_the_other_slot() {
    let (mut bytes, ids) = segment(6, &[b"one\r\n", b"two\r\n", b"three\r\n"]);
    // A later checkpoint covered the first two.
    put_header(&mut bytes, &header(4, 6, 2));
    let h = read_header(&bytes);
    assert_eq!(h, header(4, 6, 2));
    let live = live_records(&bytes, &h);
    assert_eq!(live.iter().map(|r| r.id).collect::<Vec<_>>(), ids[2..]);
    // That header torn: the older one counts, and more is replayed.
    bytes[20] ^= 1;
    let h = read_header(&bytes);
    assert_eq!(h, header(3, 6, 0));
    assert_eq!(live_records(&bytes, &h).len(), 3);
    // Both torn: nothing is live.
    bytes[512 + 20] ^= 1;
    assert_eq!(read_header(&bytes), Header::default());
}

#[test]
fn a_crash_after_the_journal_flush_before_the_rename_keeps_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, fs) = open_faulty(dir.path());
    let staged = stage(&spool, b"Subject: kept\r\n\r\nhello\r\n").unwrap();
    let id = staged.id;
    fs.arm(Fault::crash(Op::Rename, "queue/"));
    let crashed = catch_unwind(AssertUnwindSafe(|| spool.commit_batch(vec![staged])));
    assert!(crashed.is_err(), "the rename was reached");
    drop(spool);
    // The unwinding removed the staged files: only the journal has it.
    assert!(!names_in(dir.path(), "queue").contains(&id.body_name()));

    let spool = open(dir.path());
    let report = spool.recover().unwrap();
    assert_eq!((report.journal_records, report.journal_rewritten), (1, 1));
    assert_eq!(report.messages, 1, "{report:?}");
    assert!(report.corrupt.is_empty(), "{report:?}");
    let (env, loc) = spool.read(&id).unwrap();
    assert_eq!((env.id, loc), (id, Location::Queue));
    assert_eq!(body_of(&spool, &id), b"Subject: kept\r\n\r\nhello\r\n");
}

#[test]
fn stale_or_missing_files_of_a_journaled_message_are_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = open(root);
    let a = commit(&spool, b"AAAAAAAA\r\n").unwrap();
    let b = commit(&spool, b"BBBBBBBB\r\n").unwrap();
    let c = commit(&spool, b"CCCCCCCC\r\n").unwrap();
    let queue = root.join("queue");
    drop(spool);
    // a: recycled files whose new content never reached the disk: the
    // body holds another message's bytes (same length), the envelope is
    // another message's.
    std::fs::write(queue.join(a.body_name()), b"ZZZZZZZZ\r\n").unwrap();
    let other = envelope_for(QueueId::generate()).to_json();
    std::fs::write(queue.join(a.envelope_name()), other).unwrap();
    // b: the rename into queue/ was lost, and the body is cut short.
    lose(&queue.join(b.envelope_name()));
    std::fs::write(queue.join(b.body_name()), b"BBB").unwrap();
    // c: intact.

    let spool = open(root);
    let report = spool.recover().unwrap();
    assert_eq!((report.journal_records, report.journal_rewritten), (3, 2));
    assert!(report.corrupt.is_empty(), "{report:?}");
    assert_eq!(report.messages, 3);
    for (id, body) in [
        (a, b"AAAAAAAA\r\n"),
        (b, b"BBBBBBBB\r\n"),
        (c, b"CCCCCCCC\r\n"),
    ] {
        assert_eq!(spool.read(&id).unwrap().0.id, id);
        assert_eq!(body_of(&spool, &id), body);
    }
}

#[test]
fn a_crash_during_a_checkpoint_loses_nothing() {
    // Before the syncfs, and after it but before the header is written.
    for fault in [
        Fault::crash(Op::SyncFs, ""),
        Fault::crash(Op::Write, "journal"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (spool, fs) = open_faulty(root);
        let a = commit(&spool, b"first\r\n").unwrap();
        let b = commit(&spool, b"second\r\n").unwrap();
        fs.arm(fault.clone());
        let crashed = catch_unwind(AssertUnwindSafe(|| spool.reap_removed()));
        assert!(crashed.is_err(), "{fault:?} reached");
        drop(spool);
        if fault.op == Op::SyncFs {
            // Nothing of the batch's files had reached the disk.
            lose(&root.join("queue").join(a.envelope_name()));
            lose(&root.join("queue").join(b.body_name()));
        }
        let spool = open(root);
        let report = spool.recover().unwrap();
        assert_eq!(report.journal_records, 2, "{fault:?}");
        assert_eq!(report.messages, 2, "{fault:?}: {report:?}");
        assert_eq!(body_of(&spool, &a), b"first\r\n");
        assert_eq!(body_of(&spool, &b), b"second\r\n");
    }
}

#[test]
fn a_checkpoint_retires_the_records_of_delivered_messages() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = open(root);
    let delivered = commit(&spool, b"delivered\r\n").unwrap();
    spool.reap_removed();
    remove_lazily(&spool, &delivered).unwrap();
    spool.reap_removed();
    let kept = commit(&spool, b"kept\r\n").unwrap();
    drop(spool);

    let spool = open(root);
    let report = spool.recover().unwrap();
    assert_eq!(
        report.journal_records, 1,
        "only the one after the checkpoint"
    );
    assert_eq!(
        report.found.iter().map(|f| f.id).collect::<Vec<_>>(),
        vec![kept]
    );
    drop(spool);
    // Opening again replays nothing: the replay was a checkpoint too.
    let report = open(root).recover().unwrap();
    assert_eq!(report.journal_records, 0);
}

#[test]
fn removed_files_are_not_recycled_before_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (spool, fs) = open_faulty(root);
    use std::os::unix::fs::MetadataExt;
    let ino = |id: &QueueId| std::fs::metadata(spool.body_path(id)).unwrap().ino();
    let old = commit(&spool, b"old\r\n").unwrap();
    let old_body = ino(&old);
    spool.reap_removed();
    remove_lazily(&spool, &old).unwrap();
    // A journaled commit makes nothing durable in queue/: the removal
    // must wait, and the old body with it.
    let new = commit(&spool, b"new\r\n").unwrap();
    assert_ne!(ino(&new), old_body);
    assert!(names_in(root, "queue").contains(&old.body_name()));
    // Its envelope waits in free/, not yet reusable.
    assert_eq!(names_in(root, "free"), vec![old.envelope_name()]);
    // Nor while the checkpoint's syncfs has not returned.
    fs.arm(Fault::stall(Op::SyncFs, ""));
    let (queue, free) = std::thread::scope(|s| {
        let checkpoint = s.spawn(|| spool.reap_removed());
        fs.wait_stalled();
        let seen = (names_in(root, "queue"), names_in(root, "free"));
        fs.disarm();
        checkpoint.join().unwrap();
        seen
    });
    assert!(queue.contains(&old.body_name()), "{queue:?}");
    assert_eq!(free, vec![old.envelope_name()]);
    assert_eq!(body_of(&spool, &new), b"new\r\n");
    // After it, the next message takes the old body.
    let next = commit(&spool, b"next\r\n").unwrap();
    assert_eq!(ino(&next), old_body);
    assert!(!names_in(root, "queue").contains(&old.body_name()));
    assert_eq!(body_of(&spool, &next), b"next\r\n");
}

#[test]
fn a_failed_journal_flush_refuses_the_batch_and_the_next_commit_works() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (spool, fs) = open_faulty(root);
    // Two records written, not flushed; the first as long as the next
    // commit's, so that appending after it in the same epoch would make
    // the second look live again.
    let batch = vec![
        stage(&spool, b"refused 1\r\n").unwrap(),
        stage(&spool, b"refused 2\r\n").unwrap(),
    ];
    fs.arm(Fault::eio(Op::SyncData, "journal"));
    for result in spool.commit_batch(batch) {
        assert_fdatasync_failed(result);
    }
    assert!(names_in(root, "queue").is_empty());
    assert_eq!(journal_pending(root).unwrap(), vec![], "refused, not live");
    // The journal is off: with its flush still failing, the next commit
    // works (each file synced, the journal left alone).
    let ok = commit(&spool, b"accepted!\r\n").unwrap();
    assert_eq!(journal_pending(root).unwrap(), vec![]);
    fs.disarm();
    drop(spool);
    let report = open(root).recover().unwrap();
    assert_eq!(
        report.found.iter().map(|f| f.id).collect::<Vec<_>>(),
        vec![ok]
    );
}

#[test]
fn a_body_too_large_for_the_journal_is_committed_with_syncfs() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, fs) = open_faulty(dir.path());
    fs.arm(Fault::eio(Op::SyncFs, ""));
    let large = vec![b'x'; MAX_JOURNALED_BODY + 1];
    let mut w = spool.new_body().unwrap();
    w.write_all(&large).unwrap();
    let env = envelope_for(*w.id());
    let staged = spool.stage(w, &env).unwrap();
    let err = spool.commit_batch(vec![staged]).pop().unwrap().unwrap_err();
    assert!(matches!(err, SpoolError::Io { op: "syncfs", .. }), "{err}");
    // A small one does not need it.
    commit(&spool, b"small\r\n").unwrap();
}

#[test]
fn after_a_failed_syncfs_the_journal_covers_nothing_more_and_each_file_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (spool, fs) = open_faulty(root);
    let a = commit(&spool, b"first\r\n").unwrap();
    fs.arm(Fault::eio(Op::SyncFs, ""));
    spool.reap_removed();
    fs.disarm();
    // Later syncfs calls may succeed without a's pages having reached
    // the disk: its record stays live.
    spool.reap_removed();
    spool.reap_removed();
    assert_eq!(journal_pending(root).unwrap(), vec![a]);
    // New messages: an fdatasync of their own files, not the journal.
    fs.arm(Fault::eio(Op::SyncData, "queue/"));
    assert_fdatasync_failed(commit(&spool, b"refused\r\n"));
    fs.disarm();
    fs.arm(Fault::eio(Op::SyncData, "journal"));
    let b = commit(&spool, b"second\r\n").unwrap();
    assert!(!spool.take_due_checkpoint());
    drop(spool);
    // A power cut: a's files in queue/ never reached the disk.
    lose(&root.join("queue").join(a.envelope_name()));
    lose(&root.join("queue").join(a.body_name()));
    let spool = open(root);
    let report = spool.recover().unwrap();
    assert_eq!(report.journal_records, 1, "{report:?}");
    let mut found: Vec<QueueId> = report.found.iter().map(|f| f.id).collect();
    found.sort();
    assert_eq!(found, vec![a, b]);
    assert_eq!(body_of(&spool, &a), b"first\r\n");
}

#[test]
fn a_message_staged_before_the_journal_turned_off_is_synced_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (spool, fs) = open_faulty(root);
    commit(&spool, b"first\r\n").unwrap();
    let early = stage(&spool, b"staged early\r\n").unwrap();
    let id = early.id;
    fs.arm(Fault::eio(Op::SyncFs, ""));
    spool.reap_removed();
    fs.disarm();
    // Staged unsynced for the journal, committed without it: its files
    // are synced now, and a failure there refuses it.
    fs.arm(Fault::eio(Op::SyncData, &id.to_string()));
    assert_fdatasync_failed(spool.commit_batch(vec![early]).pop().unwrap());
    assert!(!names_in(root, "queue").contains(&id.body_name()));
    fs.disarm();
    let late = stage(&spool, b"staged early too\r\n").unwrap();
    assert!(spool.commit_batch(vec![late]).pop().unwrap().is_ok());
}

#[test]
fn a_journal_that_cannot_be_made_leaves_the_spool_syncing_each_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // A full disk (or a small tmpfs): the segment cannot be written.
    let fs = Arc::new(FaultyFs::new([Fault::enospc(Op::Write, "tmp/journal")]));
    let spool = open_with_ops(root, fs.clone());
    assert!(!spool.uses_journal());
    assert!(!names(root).iter().any(|n| n.starts_with("journal")));
    assert!(names_in(root, "tmp").is_empty());
    fs.disarm();
    // Each file is synced: a failed fdatasync of the body refuses it.
    fs.arm(Fault::eio(Op::SyncData, "queue/"));
    assert_fdatasync_failed(commit(&spool, b"refused\r\n"));
    fs.disarm();
    let id = commit(&spool, b"accepted\r\n").unwrap();
    assert_eq!(body_of(&spool, &id), b"accepted\r\n");
}

#[test]
fn the_journal_is_made_whole_and_made_again_when_it_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let journal = root.join(super::JOURNAL_FILE);
    let len = || std::fs::metadata(&journal).unwrap().len();
    drop(open(root));
    assert_eq!(len(), super::SEGMENT_LEN);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let spool = open(root);
    assert_eq!(len(), super::SEGMENT_LEN);
    assert!(names_in(root, "tmp").is_empty());
    commit(&spool, b"fits\r\n").unwrap();
}

#[test]
fn the_committer_does_not_wait_for_a_checkpoints_header_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, fs) = open_faulty(dir.path());
    commit(&spool, b"first\r\n").unwrap();
    // The checkpoint's syncfs goes through; its header's flush stalls.
    fs.arm(Fault::stall(Op::SyncData, "journal"));
    let (answered, answer) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let checkpoint = s.spawn(|| spool.reap_removed());
        fs.wait_stalled();
        // Were the committer's question to wait for that flush, it would
        // wait for ever: after 10 s the stall is released, and that said.
        let fs = &fs;
        let watchdog = s.spawn(move || {
            let stuck = answer.recv_timeout(Duration::from_secs(10)).is_err();
            fs.disarm();
            stuck
        });
        spool.take_due_checkpoint();
        let _ = answered.send(());
        let stuck = watchdog.join().unwrap();
        checkpoint.join().unwrap();
        assert!(!stuck, "take_due_checkpoint waited for the header's flush");
    });
}

#[test]
fn a_replay_retires_what_it_replayed_whatever_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = open(root);
    let id = commit(&spool, b"once\r\n").unwrap();
    drop(spool);
    // Opened in another mode, which writes nothing into the journal.
    let files = || Spool::open_with(root, SpoolOptions::default()).unwrap();
    let report = files().recover().unwrap();
    assert_eq!(report.journal_records, 1);
    assert_eq!(report.found[0].id, id);
    assert_eq!(files().recover().unwrap().journal_records, 0);
}
