//! Tests of the spool's happy paths and admin operations. By subject:
//! `faults` (the spool under injected file-system faults), `free` (reusing
//! freed files), `progress` (recipients recorded delivered mid-attempt).

mod faults;
mod free;
mod progress;

use std::io::Write;
use std::ops::ControlFlow;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::faults::names_in;
use super::*;

/// A body with CRLF line ends, a byte that is not UTF-8, and more than one
/// 64 KiB buffer of content.
pub(super) fn sample_body() -> Vec<u8> {
    let mut body = b"From: a@example.net\r\nTo: b@example.org\r\nSubject: test\r\n\r\n".to_vec();
    body.extend_from_slice(b"caf\xe9\r\n");
    for i in 0..3000 {
        body.extend_from_slice(format!("line {i:05} of a longer body\r\n").as_bytes());
    }
    body
}

pub(super) fn envelope_for(id: QueueId) -> Envelope {
    Envelope::new(
        id,
        Origin::Smtp {
            peer: "192.0.2.1:25000".into(),
            helo: "client.example.net".into(),
        },
        "a@example.net".into(),
        vec![
            Recipient::new("b@example.org"),
            Recipient::new("c@example.org"),
        ],
    )
}

/// Writes `body` into a new message and stages it.
pub(super) fn stage(spool: &Spool, body: &[u8]) -> Result<Staged, SpoolError> {
    let mut w = spool.new_body()?;
    if let Err(e) = w.write_all(body) {
        let path = spool.root().join("tmp").join(w.id().body_name());
        return Err(SpoolError::io("write", path, e));
    }
    let env = envelope_for(*w.id());
    spool.stage(w, &env)
}

/// [`Spool::remove_lazily`] with the body size the envelope records, as
/// the queue calls it.
pub(super) fn remove_lazily(spool: &Spool, id: &QueueId) -> Result<(), SpoolError> {
    let (env, _) = spool.read(id)?;
    spool.remove_lazily(id, env.size)
}

/// Stages and commits one message on its own.
pub(super) fn commit(spool: &Spool, body: &[u8]) -> Result<QueueId, SpoolError> {
    let staged = stage(spool, body)?;
    spool.commit_batch(vec![staged]).pop().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn commit_then_list_and_read_give_back_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("spool");
    let spool = Spool::open(&root).unwrap();
    let body = sample_body();
    let staged = stage(&spool, &body).unwrap();
    let id = staged.id;
    let mut expected = envelope_for(id);
    expected.size = body.len() as u64;
    expected.body_crc32 = Some(crc32fast::hash(&body));
    assert_eq!(staged.envelope(), &expected);
    assert_eq!(spool.commit_batch(vec![staged]).pop().unwrap().unwrap(), id);

    assert_eq!(
        spool.list().unwrap(),
        vec![(expected.clone(), Location::Queue)]
    );
    assert_eq!(
        spool.read(&id).unwrap(),
        (expected.clone(), Location::Queue)
    );
    assert_eq!(std::fs::read(spool.body_path(&id)).unwrap(), body);
    assert_eq!(
        names_in(&root, "queue"),
        vec![id.envelope_name(), id.body_name()]
    );
    assert!(names_in(&root, "tmp").is_empty());

    for sub in ["", "tmp", "queue", "hold", "corrupt"] {
        assert_eq!(mode(&root.join(sub)), 0o700, "{sub}");
    }
    assert_eq!(mode(&spool.body_path(&id)), 0o600);
    assert_eq!(mode(&root.join("queue").join(id.envelope_name())), 0o600);
    assert_eq!(mode(&root.join("lock")), 0o600);

    // mailq's view agrees, while the daemon holds the lock.
    let reader = Spool::open_readonly(&root).unwrap();
    assert_eq!(reader.list().unwrap(), vec![(expected, Location::Queue)]);
    assert_eq!(reader.body_path(&id), spool.body_path(&id));
}

#[test]
fn list_is_sorted_by_id_across_queue_and_hold() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let staged: Vec<_> = (0..5).map(|_| stage(&spool, b"x\r\n").unwrap()).collect();
    let mut ids: Vec<_> = spool
        .commit_batch(staged)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    spool.hold(&ids[2]).unwrap();
    ids.sort();
    let listed: Vec<_> = spool
        .list()
        .unwrap()
        .into_iter()
        .map(|(e, _)| e.id)
        .collect();
    assert_eq!(listed, ids);

    // One at a time, whole or the listed part: the same order, and a walk
    // stops where it is told to.
    let reader = Spool::open_readonly(dir.path()).unwrap();
    let first_three = |seen: &mut Vec<QueueId>, id: QueueId| {
        seen.push(id);
        if seen.len() == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let (mut whole, mut part) = (Vec::new(), Vec::new());
    reader.visit(|e, _| first_three(&mut whole, e.id)).unwrap();
    reader
        .visit_listed(|l, _| first_three(&mut part, l.id))
        .unwrap();
    assert_eq!(whole, ids[..3]);
    assert_eq!(part, ids[..3]);
}

#[test]
fn empty_body_is_a_valid_message() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = commit(&spool, b"").unwrap();
    assert_eq!(spool.read(&id).unwrap().0.size, 0);
}

#[test]
fn stage_sets_size_and_refuses_a_foreign_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let mut w = spool.new_body().unwrap();
    w.write_all(b"hello\r\n").unwrap();
    assert_eq!(w.len(), 7);
    let other = QueueId::generate();
    let err = spool.stage(w, &envelope_for(other)).unwrap_err();
    assert!(matches!(err, SpoolError::IdMismatch { envelope, .. } if envelope == other));
    assert!(
        names_in(dir.path(), "tmp").is_empty(),
        "the body was dropped"
    );

    let mut w = spool.new_body().unwrap();
    w.write_all(b"hello\r\n").unwrap();
    let mut env = envelope_for(*w.id());
    env.size = 999;
    let staged = spool.stage(w, &env).unwrap();
    assert_eq!(staged.envelope().size, 7);
}

/// Bytes made in place in the write buffer (`append_with`, as the
/// intake's DATA receiver makes them) and written through `Write` end up
/// in the file in order; `make_room` writes the buffer out before it
/// would grow past 64 KiB, so the body is in the file, not in memory.
#[test]
fn a_body_made_in_place_is_written_whole_and_in_bounded_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let mut w = spool.new_body().unwrap();
    let path = dir.path().join("queue").join(w.id().body_name());
    let on_disk = || std::fs::metadata(&path).unwrap().len();
    let body = sample_body();
    let mut want = Vec::new();
    for (i, piece) in body.chunks(20_000).enumerate() {
        if i % 2 == 0 {
            w.make_room(piece.len()).unwrap();
            w.append_with(|buf| buf.extend_from_slice(piece));
        } else {
            w.write_all(piece).unwrap();
        }
        want.extend_from_slice(piece);
        assert_eq!(w.len(), want.len() as u64);
        let buffered = want.len() as u64 - on_disk();
        assert!(buffered <= 64 * 1024, "{buffered} bytes held in memory");
    }
    assert!(on_disk() > 0, "nothing written before the end");
    let env = envelope_for(*w.id());
    let id = spool.commit_batch(vec![spool.stage(w, &env).unwrap()]);
    let id = id.into_iter().next().unwrap().unwrap();
    assert_eq!(
        std::fs::read(id.path_in(&dir.path().join("queue"), FileKind::Body)).unwrap(),
        want
    );
}

#[test]
fn abandoned_messages_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let mut w = spool.new_body().unwrap();
    w.write_all(b"partial").unwrap();
    // The body is written in place; without an envelope it is no message.
    assert_eq!(names_in(dir.path(), "queue"), vec![w.id().body_name()]);
    assert!(spool.list().unwrap().is_empty());
    w.abort();
    assert!(names_in(dir.path(), "queue").is_empty());

    let mut w = spool.new_body().unwrap();
    w.write_all(&sample_body()).unwrap();
    drop(w);
    assert!(names_in(dir.path(), "queue").is_empty());

    let staged = stage(&spool, b"x").unwrap();
    assert_eq!(
        names_in(dir.path(), "tmp").len(),
        1,
        "the envelope waits in tmp/"
    );
    assert_eq!(
        names_in(dir.path(), "queue").len(),
        1,
        "the body is in place"
    );
    drop(staged);
    assert!(names_in(dir.path(), "tmp").is_empty());
    assert!(names_in(dir.path(), "queue").is_empty());
}

#[test]
fn hold_release_remove_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = commit(&spool, b"body\r\n").unwrap();
    let unknown = QueueId::generate();

    spool.hold(&id).unwrap();
    assert_eq!(spool.read(&id).unwrap().1, Location::Hold);
    assert_eq!(names_in(dir.path(), "hold"), vec![id.envelope_name()]);
    assert_eq!(names_in(dir.path(), "queue"), vec![id.body_name()]);
    assert!(matches!(spool.hold(&id), Err(SpoolError::AlreadyHeld { id: x }) if x == id));

    spool.release(&id).unwrap();
    assert_eq!(spool.read(&id).unwrap().1, Location::Queue);
    assert!(matches!(spool.release(&id), Err(SpoolError::NotHeld { id: x }) if x == id));

    for result in [
        spool.hold(&unknown),
        spool.release(&unknown),
        spool.remove(&unknown),
        spool.read(&unknown).map(drop),
        spool.reader().read(&unknown).map(drop),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(err, SpoolError::NotFound { id: x } if x == unknown),
            "{err}"
        );
        assert!(err.to_string().contains(&unknown.to_string()));
    }

    spool.remove(&id).unwrap();
    assert!(matches!(spool.read(&id), Err(SpoolError::NotFound { .. })));
    assert!(names_in(dir.path(), "queue").is_empty());

    // Removing a held message takes its body from queue/ too.
    let held = commit(&spool, b"held\r\n").unwrap();
    spool.hold(&held).unwrap();
    spool.remove(&held).unwrap();
    assert!(names_in(dir.path(), "queue").is_empty());
    assert!(names_in(dir.path(), "hold").is_empty());
}

#[test]
fn rewrite_envelope_replaces_in_place_and_never_resurrects() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let id = commit(&spool, b"body\r\n").unwrap();
    let (mut env, loc) = spool.read(&id).unwrap();
    env.attempts = 3;
    env.next_attempt_ms += 60_000;
    env.reason = Some("451 4.4.1 connection timed out".into());
    env.recipients[0].state = RcptState::Delivered;
    assert_eq!(loc, Location::Queue);
    assert_eq!(
        spool.rewrite_envelope_in_place(&env).unwrap(),
        Location::Queue
    );
    assert_eq!(spool.read(&id).unwrap(), (env.clone(), Location::Queue));
    assert!(names_in(dir.path(), "tmp").is_empty());

    // Held meanwhile: the rewrite follows it to hold/.
    spool.hold(&id).unwrap();
    env.attempts = 4;
    assert_eq!(
        spool.rewrite_envelope_in_place(&env).unwrap(),
        Location::Hold
    );
    assert_eq!(spool.read(&id).unwrap(), (env.clone(), Location::Hold));
    assert_eq!(spool.location(&id).unwrap(), Some(Location::Hold));

    // Deleted meanwhile: never written back.
    spool.remove(&id).unwrap();
    let err = spool.rewrite_envelope_in_place(&env).unwrap_err();
    assert!(matches!(err, SpoolError::NotFound { .. }), "{err}");
    assert_eq!(spool.location(&id).unwrap(), None);
    assert!(names_in(dir.path(), "hold").is_empty());
    assert!(names_in(dir.path(), "queue").is_empty());
}

#[test]
fn list_skips_unreadable_envelopes_and_read_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let good = commit(&spool, b"ok\r\n").unwrap();
    let bad = QueueId::generate();
    let bad_path = dir.path().join("queue").join(bad.envelope_name());
    std::fs::write(&bad_path, b"{ not json").unwrap();
    std::fs::write(dir.path().join("queue").join("notes.txt"), b"hi").unwrap();
    let listed: Vec<_> = spool
        .list()
        .unwrap()
        .into_iter()
        .map(|(e, _)| e.id)
        .collect();
    assert_eq!(listed, vec![good]);
    match spool.read(&bad).unwrap_err() {
        SpoolError::Corrupt { path, .. } => assert_eq!(path, bad_path),
        other => panic!("expected Corrupt, got {other}"),
    }
}

#[test]
fn second_open_is_locked_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let clone = spool.clone();
    match Spool::open(dir.path()).unwrap_err() {
        SpoolError::Locked { path } => assert_eq!(path, dir.path().join("lock")),
        other => panic!("expected Locked, got {other}"),
    }
    drop(spool);
    assert!(
        matches!(Spool::open(dir.path()), Err(SpoolError::Locked { .. })),
        "a clone still holds it"
    );
    drop(clone);
    let again = Spool::open(dir.path()).unwrap();
    let pid = std::fs::read_to_string(dir.path().join("lock")).unwrap();
    assert_eq!(pid.trim(), std::process::id().to_string());
    drop(again);
}

#[test]
fn open_readonly_needs_an_existing_spool_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nope");
    let err = Spool::open_readonly(&root).unwrap_err();
    assert!(
        err.to_string().contains(&root.display().to_string()),
        "{err}"
    );
    assert!(!root.exists());
}

#[test]
fn open_refuses_a_file_where_a_directory_should_be() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("queue"), b"").unwrap();
    let err = Spool::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("queue"), "{err}");
}

#[test]
fn health_reports_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let relaxed = HealthOptions {
        min_free_bytes: 0,
        min_free_percent: 0,
        min_free_inodes: 0,
        ..HealthOptions::default()
    };
    let spool = Spool::open_with(
        dir.path(),
        SpoolOptions {
            health: relaxed.clone(),
            ..SpoolOptions::default()
        },
    )
    .unwrap();
    assert_eq!(spool.health(), Health::Ok);
    assert_eq!(spool.sample_health(), Health::Ok);
    drop(spool);

    let strict = HealthOptions {
        min_free_bytes: u64::MAX,
        ..relaxed
    };
    let spool = Spool::open_with(
        dir.path(),
        SpoolOptions {
            health: strict,
            ..SpoolOptions::default()
        },
    )
    .unwrap();
    assert!(matches!(spool.health(), Health::Low { reason } if reason.contains("MiB free")));
}

#[test]
fn now_ms_is_after_2024() {
    assert!(now_ms() > 1_704_067_200_000);
}

/// A body too large to keep for reuse is unlinked, after the fsync.
#[test]
fn lazy_removal_deletes_the_body_only_after_the_next_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let large = vec![b'x'; super::free::MAX_KEPT_BODY as usize + 1];
    let id = commit(&spool, &large).unwrap();
    remove_lazily(&spool, &id).unwrap();
    assert!(
        matches!(spool.read(&id), Err(SpoolError::NotFound { .. })),
        "gone at once"
    );
    assert_eq!(
        names_in(dir.path(), "queue"),
        vec![id.body_name()],
        "the body waits for the fsync"
    );
    // The next commit's fsync makes the unlink durable, then the body goes.
    let other = commit(&spool, &large).unwrap();
    assert_eq!(
        names_in(dir.path(), "queue"),
        vec![other.envelope_name(), other.body_name()]
    );
    // Without commits, reaping does it.
    remove_lazily(&spool, &other).unwrap();
    spool.reap_removed();
    assert!(names_in(dir.path(), "queue").is_empty());
}

/// A delivery attempt's rewrite in queue/ is made durable by the next
/// `fsync` of queue/ (the idle reap's) or the next commit's `syncfs`, not
/// by one of its own; in hold/ at once.
#[test]
fn a_rewrite_in_queue_is_synced_by_the_next_fsync_of_queue() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(recording::RecordingFs::default());
    let options = SpoolOptions {
        file_ops: fs.clone(),
        sync: SyncMode::Filesystem,
        ..SpoolOptions::default()
    };
    let spool = Spool::open_with(dir.path(), options).unwrap();
    let id = commit(&spool, b"body\r\n").unwrap();
    let (mut env, _) = spool.read(&id).unwrap();
    env.attempts = 1;
    let taken = || fs.take(spool.root(), &id.to_string());
    taken();
    spool.rewrite_envelope_in_place(&env).unwrap();
    let ops = taken();
    assert!(ops.iter().any(|e| e.starts_with("fdatasync ")), "{ops:?}");
    assert!(ops.iter().all(|e| !e.starts_with("fsync")), "{ops:?}");
    spool.reap_removed();
    assert_eq!(taken(), ["fsync queue"]);
    spool.reap_removed();
    assert_eq!(taken(), Vec::<String>::new(), "nothing left to sync");

    // A commit's syncfs covers it as well.
    spool.rewrite_envelope_in_place(&env).unwrap();
    commit(&spool, b"other\r\n").unwrap();
    taken();
    spool.reap_removed();
    assert_eq!(taken(), Vec::<String>::new(), "covered by the commit");

    // hold/: synced at once.
    spool.hold(&id).unwrap();
    taken();
    spool.rewrite_envelope_in_place(&env).unwrap();
    assert!(taken().contains(&"fsync hold".to_string()));
}
