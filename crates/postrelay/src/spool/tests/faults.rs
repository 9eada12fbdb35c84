//! Fault injection: every failing step of the write path yields an error,
//! leaves no envelope in queue/ (so nothing half-committed exists) and no
//! leftovers in tmp/.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::super::faults::{Fault, FaultyFs, Op, names_in};
use super::super::*;
use super::{commit, envelope_for, remove_lazily, sample_body, stage};

fn open_faulty(root: &Path) -> (Spool, Arc<FaultyFs>) {
    open_faulty_with(root, SyncMode::Files)
}

fn open_faulty_with(root: &Path, sync: SyncMode) -> (Spool, Arc<FaultyFs>) {
    let fs = Arc::new(FaultyFs::default());
    let spool = Spool::open_with(
        root,
        SpoolOptions {
            file_ops: fs.clone(),
            sync,
            ..SpoolOptions::default()
        },
    )
    .unwrap();
    (spool, fs)
}

/// Nothing in queue/, hold/ or tmp/, and a recovery finds nothing to do.
fn assert_spool_clean(spool: &Spool, what: &str) {
    for sub in ["queue", "hold", "tmp", "corrupt"] {
        assert_eq!(
            names_in(spool.root(), sub),
            Vec::<String>::new(),
            "{what}: {sub}/"
        );
    }
    let report = spool.recover().unwrap();
    assert_eq!(report, RecoveryReport::default(), "{what}");
}

#[test]
fn each_failing_step_is_an_error_and_leaves_nothing() {
    let cases = [
        ("create body", Fault::eio(Op::Create, ".msg")),
        ("body write ENOSPC", Fault::enospc(Op::Write, ".msg")),
        ("body fdatasync", Fault::eio(Op::SyncData, ".msg")),
        ("create envelope", Fault::eio(Op::Create, ".env")),
        ("envelope write ENOSPC", Fault::enospc(Op::Write, ".env")),
        ("envelope fdatasync", Fault::eio(Op::SyncData, ".env")),
        ("envelope rename", Fault::eio(Op::Rename, ".env")),
        ("queue fsync", Fault::eio(Op::SyncDir, "/queue")),
        ("queue fsync ENOSPC", Fault::enospc(Op::SyncDir, "/queue")),
    ];
    for (what, fault) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (spool, fs) = open_faulty(dir.path());
        let no_space = fault.errno == nix::libc::ENOSPC;
        fs.arm(fault);
        let err = commit(&spool, &sample_body()).expect_err(what);
        assert!(matches!(err, SpoolError::Io { .. }), "{what}: {err}");
        assert_eq!(err.is_no_space(), no_space, "{what}: {err}");
        fs.disarm();
        assert_spool_clean(&spool, what);
        // The spool still works once the fault is gone.
        let id = commit(&spool, b"after\r\n").unwrap();
        assert_eq!(spool.read(&id).unwrap().1, Location::Queue, "{what}");
    }
}

#[test]
fn a_failed_directory_fsync_fails_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, fs) = open_faulty(dir.path());
    let batch: Vec<_> = (0..3).map(|_| stage(&spool, b"m\r\n").unwrap()).collect();
    fs.arm(Fault::eio(Op::SyncDir, "/queue"));
    let results = spool.commit_batch(batch);
    assert_eq!(results.len(), 3);
    for r in &results {
        let err = r.as_ref().unwrap_err();
        assert!(err.to_string().starts_with("fsync directory "), "{err}");
    }
    fs.disarm();
    assert_spool_clean(&spool, "batch fsync");
}

#[test]
fn one_failed_rename_does_not_sink_the_rest_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, fs) = open_faulty(dir.path());
    let batch: Vec<_> = (0..3).map(|_| stage(&spool, b"m\r\n").unwrap()).collect();
    let victim = batch[1].id;
    fs.arm(Fault::eio(Op::Rename, &victim.envelope_name()));
    let results = spool.commit_batch(batch);
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(matches!(
        &results[1],
        Err(SpoolError::Io { op: "rename", .. })
    ));
    fs.disarm();
    assert!(names_in(dir.path(), "tmp").is_empty());
    let listed: Vec<_> = spool
        .list()
        .unwrap()
        .into_iter()
        .map(|(e, _)| e.id)
        .collect();
    assert!(!listed.contains(&victim));
    assert_eq!(listed.len(), 2);
    assert!(!spool.body_path(&victim).exists());
}

#[test]
fn a_buffered_write_error_surfaces_at_stage_at_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, fs) = open_faulty(dir.path());
    let mut w = spool.new_body().unwrap();
    w.write_all(b"small, stays in the buffer").unwrap();
    fs.arm(Fault::enospc(Op::Write, ".msg"));
    let env = envelope_for(*w.id());
    let err = spool.stage(w, &env).unwrap_err();
    assert!(err.is_no_space(), "{err}");
    assert!(err.to_string().contains(".msg"), "{err}");
    fs.disarm();
    assert_spool_clean(&spool, "buffered write");
}

#[test]
fn short_writes_still_store_the_exact_body() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultyFs::new([]).with_short_writes());
    let spool = Spool::open_with(
        dir.path(),
        SpoolOptions {
            file_ops: fs,
            ..SpoolOptions::default()
        },
    )
    .unwrap();
    let body = sample_body();
    let id = commit(&spool, &body).unwrap();
    assert_eq!(std::fs::read(spool.body_path(&id)).unwrap(), body);
}

#[test]
fn failed_admin_operations_keep_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, fs) = open_faulty(dir.path());
    let id = commit(&spool, b"keep me\r\n").unwrap();
    let (env, _) = spool.read(&id).unwrap();

    fs.arm(Fault::eio(Op::Remove, ".env"));
    assert!(spool.remove(&id).is_err());
    fs.disarm();
    assert_eq!(spool.read(&id).unwrap().0, env);

    fs.arm(Fault::enospc(Op::Write, ".env"));
    let mut changed = env.clone();
    changed.attempts = 7;
    assert!(
        spool
            .rewrite_envelope_in_place(&changed)
            .unwrap_err()
            .is_no_space()
    );
    fs.disarm();
    assert_eq!(spool.read(&id).unwrap().0, env);
    assert!(names_in(dir.path(), "tmp").is_empty());

    fs.arm(Fault::eio(Op::Rename, "/hold/"));
    assert!(spool.hold(&id).is_err());
    fs.disarm();
    assert_eq!(spool.read(&id).unwrap(), (env, Location::Queue));
}

#[test]
fn with_syncfs_each_failing_step_is_an_error_and_leaves_nothing() {
    let cases = [
        ("body write ENOSPC", Fault::enospc(Op::Write, ".msg")),
        ("envelope write ENOSPC", Fault::enospc(Op::Write, ".env")),
        ("syncfs", Fault::eio(Op::SyncFs, "/lock")),
        ("envelope rename", Fault::eio(Op::Rename, ".env")),
    ];
    for (what, fault) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (spool, fs) = open_faulty_with(dir.path(), SyncMode::Filesystem);
        assert!(!spool.stage_blocks(), "no fdatasync while staging");
        fs.arm(fault);
        let err = commit(&spool, &sample_body()).expect_err(what);
        assert!(matches!(err, SpoolError::Io { .. }), "{what}: {err}");
        fs.disarm();
        assert_spool_clean(&spool, what);
        let id = commit(&spool, b"after\r\n").unwrap();
        assert_eq!(spool.read(&id).unwrap().1, Location::Queue, "{what}");
    }
}

/// The envelopes are in queue/ already (renamed there while staging):
/// a failed syncfs removes every message of the batch again.
#[test]
fn a_failed_syncfs_refuses_the_whole_batch_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, fs) = open_faulty_with(dir.path(), SyncMode::Filesystem);
    let batch: Vec<_> = (0..3).map(|_| stage(&spool, b"m\r\n").unwrap()).collect();
    fs.arm(Fault::eio(Op::SyncFs, "/lock"));
    let results = spool.commit_batch(batch);
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|r| r.is_err()));
    assert_spool_clean(&spool, "after a failed syncfs");
}

#[test]
fn a_failed_step_out_of_free_falls_back_to_a_new_file() {
    use super::free::deliver_all;
    // Birth time, not inode number: ext4 may hand the number of the free
    // file just unlinked to the file created next.
    let born = |p: &Path| std::fs::metadata(p).and_then(|m| m.created()).ok();
    // A recycled envelope is not renamed out of free/ before it is written
    // (the commit's rename takes it from there), so only a kept body's
    // rename to its new name can fail and fall back; the envelope is still
    // recycled.
    for (what, fault, env_recycled) in [
        (
            "rename of a kept body",
            Fault::eio(Op::Rename, ".msg"),
            true,
        ),
        ("reopen", Fault::eio(Op::OpenExisting, ""), false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (spool, fs) = open_faulty(root);
        let [old] = deliver_all(&spool, &[b"old\r\n"])[..] else {
            unreachable!()
        };
        assert_eq!(names_in(root, "free").len(), 1, "{what}");
        let newest_freed = [
            root.join("free").join(old.envelope_name()),
            spool.body_path(&old),
        ]
        .iter()
        .filter_map(|p| born(p))
        .max();
        std::thread::sleep(std::time::Duration::from_millis(50));
        fs.arm(fault);
        let id = commit(&spool, b"new\r\n").unwrap();
        fs.disarm();
        let env = root.join("queue").join(id.envelope_name());
        let freed = newest_freed.expect("this test needs file birth times (statx btime)");
        let body_born = born(&spool.body_path(&id)).expect("birth time");
        assert!(body_born > freed, "{what}: the body is a recycled file");
        let env_born = born(&env).expect("birth time");
        assert_eq!(env_born <= freed, env_recycled, "{what}: envelope");
        assert_eq!(std::fs::read(spool.body_path(&id)).unwrap(), b"new\r\n");
        assert_eq!(spool.read(&id).unwrap().0.size, 5, "{what}");
        // The files that could not be reused were unlinked, not leaked.
        assert!(names_in(root, "free").is_empty(), "{what}");
        assert!(names_in(root, "tmp").is_empty(), "{what}");
        assert_eq!(names_in(root, "queue").len(), 2, "{what}");
    }
}

#[test]
fn each_failing_step_on_a_recycled_file_is_an_error_and_leaves_nothing() {
    use super::free::stage_with;
    let cases = [
        ("body write ENOSPC", Fault::enospc(Op::Write, ".msg")),
        ("body truncate", Fault::eio(Op::SetLen, ".msg")),
        ("body fdatasync", Fault::eio(Op::SyncData, ".msg")),
        ("envelope write ENOSPC", Fault::enospc(Op::Write, ".env")),
        ("envelope truncate", Fault::eio(Op::SetLen, ".env")),
        ("envelope fdatasync", Fault::eio(Op::SyncData, ".env")),
    ];
    for sync in [SyncMode::Files, SyncMode::Filesystem] {
        for (what, fault) in cases.clone() {
            if sync == SyncMode::Filesystem && fault.op == Op::SyncData {
                continue;
            }
            let what = format!("{what} ({sync:?})");
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            let (spool, fs) = open_faulty_with(root, sync);
            // Long body and envelope, so that the new ones must be cut.
            let long = stage_with(&spool, &sample_body(), 40).unwrap();
            let old = spool.commit_batch(vec![long]).pop().unwrap().unwrap();
            remove_lazily(&spool, &old).unwrap();
            spool.reap_removed();
            assert_eq!(names_in(root, "free").len(), 1, "{what}");
            assert_eq!(names_in(root, "queue"), vec![old.body_name()], "{what}");
            let is_truncate = fault.op == Op::SetLen;
            fs.arm(fault);
            let err = match stage_with(&spool, b"short\r\n", 1) {
                Ok(staged) => spool.commit_batch(vec![staged]).pop().unwrap(),
                Err(e) => Err(e),
            }
            .expect_err(&what);
            fs.disarm();
            assert!(matches!(err, SpoolError::Io { .. }), "{what}: {err}");
            if is_truncate {
                assert!(err.to_string().starts_with("truncate "), "{what}: {err}");
            }
            for sub in ["queue", "hold", "tmp", "corrupt"] {
                assert!(names_in(root, sub).is_empty(), "{what}: {sub}/");
            }
            let report = spool.recover().unwrap();
            assert_eq!(
                (
                    report.tmp_removed,
                    report.orphan_bodies_removed,
                    report.messages
                ),
                (0, 0, 0),
                "{what}"
            );
            let id = commit(&spool, b"after\r\n").unwrap();
            assert_eq!(std::fs::read(spool.body_path(&id)).unwrap(), b"after\r\n");
        }
    }
}

#[test]
fn a_failed_rename_into_free_falls_back_to_unlinking() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (spool, fs) = open_faulty(root);
    let id = commit(&spool, b"m\r\n").unwrap();
    fs.arm(Fault::eio(Op::Rename, "/free/"));
    remove_lazily(&spool, &id).unwrap();
    assert!(matches!(spool.read(&id), Err(SpoolError::NotFound { .. })));
    assert_eq!(names_in(root, "queue"), vec![id.body_name()]);
    spool.reap_removed();
    fs.disarm();
    assert!(names_in(root, "free").is_empty());
    // A passing failure does not turn recycling off: the body is kept.
    assert_eq!(names_in(root, "queue"), vec![id.body_name()]);
    let [n] = super::free::deliver_all(&spool, &[b"n\r\n"])[..] else {
        unreachable!()
    };
    assert_eq!(names_in(root, "free"), vec![n.envelope_name()]);
    assert_eq!(names_in(root, "queue"), vec![n.body_name()]);
}

#[test]
fn a_file_system_without_rename_noreplace_turns_recycling_off() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (spool, fs) = open_faulty(root);
    super::free::deliver_all(&spool, &[b"one\r\n"]);
    assert_eq!(names_in(root, "free").len(), 1);
    // The first rename for reuse is the body's, within queue/.
    fs.arm(Fault {
        op: Op::Rename,
        path_contains: ".msg".into(),
        errno: nix::libc::EINVAL,
    });
    let id = commit(&spool, b"two\r\n").unwrap();
    assert!(
        names_in(root, "free").is_empty(),
        "what free/ held is unlinked"
    );
    assert_eq!(
        names_in(root, "queue"),
        vec![id.envelope_name(), id.body_name()],
        "the kept body too"
    );
    fs.disarm();
    // Off until the next start, even once renames would work.
    remove_lazily(&spool, &id).unwrap();
    spool.reap_removed();
    assert!(names_in(root, "free").is_empty());
    assert!(names_in(root, "queue").is_empty());
    let id = commit(&spool, b"three\r\n").unwrap();
    assert_eq!(std::fs::read(spool.body_path(&id)).unwrap(), b"three\r\n");
}
