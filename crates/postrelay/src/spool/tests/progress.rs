//! [`Spool::record_progress`]: its steps in order, what a crash before
//! each of them leaves after recovery (the old envelope or the new one,
//! never neither, never a broken one), and its answers for a message that
//! moved or left meanwhile.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use super::super::faults::{Fault, FaultyFs, Op, names_in};
use super::super::recording::RecordingFs;
use super::super::*;
use super::commit;

/// `env` with its first recipient delivered.
fn first_delivered(env: &Envelope) -> Envelope {
    let mut new = env.clone();
    new.recipients[0].state = RcptState::Delivered;
    new.recipients[0].last_reply = Some("250 2.0.0 Ok: queued as X".into());
    new
}

fn open_with(root: &Path, ops: Arc<dyn FileOps>) -> Spool {
    let options = SpoolOptions {
        file_ops: ops,
        ..SpoolOptions::default()
    };
    Spool::open_with(root, options).unwrap()
}

/// The temporary file's random suffix, shown as `TMP`.
fn without_suffix(step: &str) -> String {
    step.split(' ')
        .map(|word| match word.split_once("ID.env.") {
            Some((dir, _)) => format!("{dir}ID.env.TMP"),
            None => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_new_envelope_is_synced_before_it_replaces_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(RecordingFs::default());
    let spool = open_with(dir.path(), fs.clone());
    let id = commit(&spool, b"body\r\n").unwrap();
    let new = first_delivered(&spool.read(&id).unwrap().0);
    fs.clear();
    assert_eq!(spool.record_progress(&new).unwrap(), Location::Queue);
    fs.mark("returned");
    let steps: Vec<String> = fs
        .take(dir.path(), &id.to_string())
        .iter()
        .map(|s| without_suffix(s))
        .collect();
    // No directory fsync: losing the rename to a power cut repeats a
    // delivery, it loses nothing.
    assert_eq!(
        steps,
        [
            "create tmp/ID.env.TMP",
            "write tmp/ID.env.TMP",
            "fdatasync tmp/ID.env.TMP",
            "rename tmp/ID.env.TMP queue/ID.env",
            "returned",
        ]
    );
    assert_eq!(spool.read(&id).unwrap(), (new, Location::Queue));
}

#[test]
fn a_crash_before_any_step_leaves_the_old_or_the_new_envelope() {
    let crashes = [
        ("before the file exists", Some(Op::Create)),
        ("before it is written", Some(Op::Write)),
        ("before it is synced", Some(Op::SyncData)),
        ("before the rename", Some(Op::Rename)),
        ("after the rename", None),
    ];
    for (when, crash) in crashes {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FaultyFs::default());
        let spool = open_with(dir.path(), fs.clone());
        let id = commit(&spool, b"body\r\n").unwrap();
        let old = spool.read(&id).unwrap().0;
        let new = first_delivered(&old);
        let renamed = crash.is_none();
        if let Some(op) = crash {
            // Any file of this message: wherever the write goes.
            fs.arm(Fault::crash(op, &id.to_string()));
        }
        let run = catch_unwind(AssertUnwindSafe(|| spool.record_progress(&new)));
        assert_eq!(run.is_ok(), renamed, "{when}");
        drop(spool);

        // The next start.
        let spool = Spool::open(dir.path()).unwrap();
        let report = spool.recover().unwrap();
        assert!(report.corrupt.is_empty(), "{when}: {report:?}");
        assert_eq!(report.messages, 1, "{when}");
        assert!(names_in(dir.path(), "tmp").is_empty(), "{when}");
        let (env, loc) = spool.read(&id).unwrap();
        assert_eq!(loc, Location::Queue, "{when}");
        let want = if renamed { &new } else { &old };
        assert_eq!(&env, want, "{when}");
    }
}

#[test]
fn progress_follows_a_held_message_and_never_resurrects_a_deleted_one() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = commit(&spool, b"body\r\n").unwrap();
    let new = first_delivered(&spool.read(&id).unwrap().0);
    spool.hold(&id).unwrap();
    assert_eq!(spool.record_progress(&new).unwrap(), Location::Hold);
    assert_eq!(spool.read(&id).unwrap(), (new.clone(), Location::Hold));

    spool.remove(&id).unwrap();
    let err = spool.record_progress(&new).unwrap_err();
    assert!(matches!(err, SpoolError::NotFound { .. }), "{err}");
    for sub in ["queue", "hold", "tmp"] {
        assert!(names_in(dir.path(), sub).is_empty(), "{sub}/");
    }
}

#[test]
fn a_failed_step_keeps_the_old_envelope_and_leaves_no_file_behind() {
    for (what, fault) in [
        ("write", Fault::enospc(Op::Write, ".env.")),
        ("fdatasync", Fault::eio(Op::SyncData, ".env.")),
        ("rename", Fault::eio(Op::Rename, ".env.")),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FaultyFs::default());
        let spool = open_with(dir.path(), fs.clone());
        let id = commit(&spool, b"body\r\n").unwrap();
        let old = spool.read(&id).unwrap().0;
        fs.arm(fault);
        assert!(
            spool.record_progress(&first_delivered(&old)).is_err(),
            "{what}"
        );
        fs.disarm();
        assert_eq!(spool.read(&id).unwrap(), (old, Location::Queue), "{what}");
        assert!(names_in(dir.path(), "tmp").is_empty(), "{what}");
    }
}

/// Neither a progress record nor an envelope rewrite holds the spool's
/// lock while it waits for the disk: a removal at the end of another
/// delivery, which runs on the async workers, never waits behind them.
#[test]
fn envelope_replacements_wait_for_the_disk_outside_the_spool_lock() {
    // (A rewrite in queue/ has no directory fsync of its own: the
    // committer's next one covers it. In hold/ it has one.)
    let stalls = [
        (
            "record: fdatasync",
            Op::SyncData,
            ".env.",
            false,
            Location::Queue,
        ),
        (
            "rewrite: fdatasync",
            Op::SyncData,
            ".env.",
            true,
            Location::Queue,
        ),
        (
            "rewrite: directory fsync",
            Op::SyncDir,
            "/hold",
            true,
            Location::Hold,
        ),
    ];
    for (what, op, path, rewrite, at) in stalls {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FaultyFs::default());
        let spool = open_with(dir.path(), fs.clone());
        let id = commit(&spool, b"body\r\n").unwrap();
        let new = first_delivered(&spool.read(&id).unwrap().0);
        if at == Location::Hold {
            spool.hold(&id).unwrap();
        }
        fs.arm(Fault::stall(op, path));
        let writer = {
            let spool = spool.clone();
            std::thread::spawn(move || {
                if rewrite {
                    spool.rewrite_envelope_in_place(&new)
                } else {
                    spool.record_progress(&new)
                }
            })
        };
        fs.wait_stalled();
        let free = spool.inner.admin.try_lock().is_ok();
        fs.disarm();
        assert_eq!(writer.join().unwrap().unwrap(), at, "{what}");
        assert!(
            free,
            "{what}: the spool's lock is held while waiting for the disk"
        );
    }
}
