//! Recycling: the envelopes of delivered messages go to free/, their
//! bodies stay in queue/ under their old names, new messages reuse both
//! (same inodes), and what is read back is exactly the new message.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::super::faults::names_in;
use super::super::free::{MAX_KEPT_BODY, MAX_PER_KIND};
use super::super::*;
use super::{commit, envelope_for, remove_lazily, stage};

pub(super) fn ino(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// The bodies in queue/ that belong to no message (kept for reuse, or
/// orphans), by name.
pub(super) fn kept_bodies(root: &Path) -> Vec<String> {
    let queue = names_in(root, "queue");
    let held = names_in(root, "hold");
    queue
        .iter()
        .filter(|name| {
            name.strip_suffix(".msg").is_some_and(|stem| {
                let env = format!("{stem}.env");
                !queue.contains(&env) && !held.contains(&env)
            })
        })
        .cloned()
        .collect()
}

/// Inode number → name of every file kept for reuse: envelopes in free/,
/// bodies without a message in queue/.
pub(super) fn free_inodes(root: &Path) -> HashMap<u64, String> {
    let free = names_in(root, "free").into_iter().map(|n| ("free", n));
    let kept = kept_bodies(root).into_iter().map(|n| ("queue", n));
    free.chain(kept)
        .map(|(dir, name)| (ino(&root.join(dir).join(&name)), name))
        .collect()
}

/// Commits one message per body, removes them all lazily and reaps, which
/// makes their files reusable (envelopes in free/, bodies in queue/).
pub(super) fn deliver_all(spool: &Spool, bodies: &[&[u8]]) -> Vec<QueueId> {
    let ids: Vec<QueueId> = bodies.iter().map(|b| commit(spool, b).unwrap()).collect();
    for id in &ids {
        remove_lazily(spool, id).unwrap();
    }
    spool.reap_removed();
    ids
}

/// Stages `body` with an envelope of `rcpts` recipients (a longer envelope
/// for more).
pub(super) fn stage_with(spool: &Spool, body: &[u8], rcpts: usize) -> Result<Staged, SpoolError> {
    let mut w = spool.new_body()?;
    w.write_all(body).unwrap();
    let mut env = envelope_for(*w.id());
    env.recipients = (0..rcpts)
        .map(|i| Recipient::new(format!("recipient-{i:04}@example.org")))
        .collect();
    spool.stage(w, &env)
}

fn open(root: &Path, sync: SyncMode) -> Spool {
    Spool::open_with(
        root,
        SpoolOptions {
            sync,
            ..SpoolOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn delivered_files_are_kept_and_reused_by_new_messages() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = Spool::open(root).unwrap();
    assert_eq!(
        std::fs::metadata(root.join("free"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let ids = deliver_all(&spool, &[b"one\r\n", b"two\r\n", b"three\r\n"]);
    let names = |f: fn(&QueueId) -> String| {
        let mut v: Vec<String> = ids.iter().map(f).collect();
        v.sort();
        v
    };
    // Envelopes in free/; bodies where they were, belonging to no message.
    assert_eq!(names_in(root, "free"), names(QueueId::envelope_name));
    assert_eq!(names_in(root, "queue"), names(QueueId::body_name));
    assert!(spool.list().unwrap().is_empty());

    let freed = free_inodes(root);
    let staged = stage(&spool, b"four\r\n").unwrap();
    let body_ino = ino(&spool.body_path(&staged.id));
    let env_ino = ino(staged.env_tmp());
    let was = |i: u64| freed.get(&i).cloned().unwrap_or_default();
    assert!(
        was(body_ino).ends_with(".msg"),
        "body is a new inode: {freed:?}"
    );
    assert!(
        was(env_ino).ends_with(".env"),
        "envelope is a new inode: {freed:?}"
    );
    // The body was renamed within queue/; the envelope is written where it
    // lies in free/, to be renamed straight into queue/.
    assert_eq!(kept_bodies(root).len(), 3, "two kept, one being written");
    assert!(!kept_bodies(root).contains(&was(body_ino)));
    assert_eq!(names_in(root, "free").len(), 3);
    assert_eq!(staged.env_tmp().parent(), Some(root.join("free").as_path()));

    let id = spool.commit_batch(vec![staged]).pop().unwrap().unwrap();
    assert_eq!(names_in(root, "free").len(), 2, "one envelope taken");
    assert_eq!(kept_bodies(root).len(), 2, "one body taken");
    assert_eq!(ino(&root.join("queue").join(id.envelope_name())), env_ino);
    assert_eq!(std::fs::read(spool.body_path(&id)).unwrap(), b"four\r\n");
    let mut env = envelope_for(id);
    env.size = 6;
    env.body_crc32 = Some(crc32fast::hash(b"four\r\n"));
    assert_eq!(spool.read(&id).unwrap(), (env, Location::Queue));
    assert_eq!(mode_of(&spool.body_path(&id)), 0o600);
    assert_eq!(mode_of(&root.join("queue").join(id.envelope_name())), 0o600);
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_recycled_body_holds_exactly_the_new_message() {
    for sync in [SyncMode::Files, SyncMode::Filesystem] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let spool = open(root, sync);
        let long = super::sample_body();
        assert!(long.len() as u64 <= MAX_KEPT_BODY);

        // Long, then short: the old tail is cut off.
        let [old] = deliver_all(&spool, &[&long])[..] else {
            unreachable!()
        };
        let old_body = ino(&spool.body_path(&old));
        let id = commit(&spool, b"short\r\n").unwrap();
        let body = spool.body_path(&id);
        assert_eq!(ino(&body), old_body, "{sync:?}: reused");
        assert_eq!(std::fs::metadata(&body).unwrap().len(), 7, "{sync:?}");
        assert_eq!(std::fs::read(&body).unwrap(), b"short\r\n", "{sync:?}");

        // Short, then long: the file grows.
        remove_lazily(&spool, &id).unwrap();
        spool.reap_removed();
        let id = commit(&spool, &long).unwrap();
        assert_eq!(
            ino(&spool.body_path(&id)),
            old_body,
            "{sync:?}: reused again"
        );
        assert_eq!(
            std::fs::read(spool.body_path(&id)).unwrap(),
            long,
            "{sync:?}"
        );

        // Recovery finds a sound message.
        let report = spool.recover().unwrap();
        assert_eq!((report.messages, report.corrupt.len()), (1, 0), "{sync:?}");
    }
}

#[test]
fn a_recycled_envelope_file_parses_as_what_was_staged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = Spool::open(root).unwrap();
    let big = spool.commit_batch(vec![stage_with(&spool, b"x\r\n", 40).unwrap()]);
    let big = *big[0].as_ref().unwrap();
    let big_len = std::fs::metadata(root.join("queue").join(big.envelope_name()))
        .unwrap()
        .len();
    remove_lazily(&spool, &big).unwrap();
    spool.reap_removed();
    let old_env = ino(&root.join("free").join(big.envelope_name()));

    let staged = stage_with(&spool, b"y\r\n", 1).unwrap();
    let tmp = staged.env_tmp().to_path_buf();
    assert_eq!(tmp, root.join("free").join(big.envelope_name()), "in place");
    assert_eq!(ino(&tmp), old_env, "reused");
    let bytes = std::fs::read(&tmp).unwrap();
    assert!((bytes.len() as u64) < big_len, "cut to length");
    assert_eq!(bytes, staged.envelope().to_json());
    assert_eq!(&Envelope::from_json(&bytes).unwrap(), staged.envelope());

    let expected = staged.envelope().clone();
    let id = spool.commit_batch(vec![staged]).pop().unwrap().unwrap();
    assert_eq!(spool.read(&id).unwrap(), (expected, Location::Queue));
}

#[test]
fn files_are_reused_only_after_the_fsync_that_removed_their_message() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = Spool::open(root).unwrap();
    let a = commit(&spool, b"a\r\n").unwrap();
    let a_env = ino(&root.join("queue").join(a.envelope_name()));
    let a_body = ino(&spool.body_path(&a));
    remove_lazily(&spool, &a).unwrap();
    // The envelope left queue/ at once; the body waits for the fsync.
    assert!(matches!(spool.read(&a), Err(SpoolError::NotFound { .. })));
    assert_eq!(names_in(root, "free"), vec![a.envelope_name()]);
    assert_eq!(names_in(root, "queue"), vec![a.body_name()]);

    // Until that fsync nothing of `a` is reused.
    let b = stage(&spool, b"b\r\n").unwrap();
    assert_ne!(ino(b.env_tmp()), a_env);
    assert_ne!(ino(&spool.body_path(&b.id)), a_body);
    assert_eq!(names_in(root, "free"), vec![a.envelope_name()]);

    // Committing `b` fsyncs queue/: now both files of `a` are free, the
    // body where it was.
    spool.commit_batch(vec![b]).pop().unwrap().unwrap();
    assert_eq!(names_in(root, "free"), vec![a.envelope_name()]);
    assert_eq!(kept_bodies(root), vec![a.body_name()]);
    let c = stage(&spool, b"c\r\n").unwrap();
    assert_eq!(ino(c.env_tmp()), a_env);
    assert_eq!(ino(&spool.body_path(&c.id)), a_body);
    // c's envelope is being written where it lay; a's body has c's name.
    assert_eq!(names_in(root, "free"), vec![a.envelope_name()]);
    assert_eq!(kept_bodies(root), vec![c.id.body_name()]);

    // Aborting a message with recycled files unlinks them.
    drop(c);
    assert!(names_in(root, "tmp").is_empty());
    assert!(names_in(root, "free").is_empty());
    assert_eq!(names_in(root, "queue").len(), 2, "only b's files");
}

#[test]
fn free_is_bounded_and_large_bodies_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = open(root, SyncMode::Filesystem);
    let n = MAX_PER_KIND + 3;
    let batch: Vec<_> = (0..n).map(|_| stage(&spool, b"m\r\n").unwrap()).collect();
    let ids: Vec<QueueId> = spool
        .commit_batch(batch)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for id in &ids {
        remove_lazily(&spool, id).unwrap();
    }
    spool.reap_removed();
    assert_eq!(names_in(root, "free").len(), MAX_PER_KIND, "envelopes");
    assert_eq!(kept_bodies(root).len(), MAX_PER_KIND, "bodies");
    assert_eq!(
        names_in(root, "queue").len(),
        MAX_PER_KIND,
        "the rest was unlinked"
    );

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = Spool::open(root).unwrap();
    let large = vec![b'x'; MAX_KEPT_BODY as usize + 1];
    let [id] = deliver_all(&spool, &[&large])[..] else {
        unreachable!()
    };
    assert_eq!(names_in(root, "free"), vec![id.envelope_name()]);
    assert!(
        names_in(root, "queue").is_empty(),
        "the large body is unlinked"
    );
}

#[test]
fn a_file_with_another_name_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = Spool::open(root).unwrap();
    let [old] = deliver_all(&spool, &[b"keep this\r\n"])[..] else {
        unreachable!()
    };
    let saved = root.join("saved");
    std::fs::hard_link(spool.body_path(&old), &saved).unwrap();

    let id = commit(&spool, b"new\r\n").unwrap();
    assert_ne!(ino(&spool.body_path(&id)), ino(&saved));
    assert_eq!(std::fs::read(&saved).unwrap(), b"keep this\r\n");
    assert_eq!(
        std::fs::metadata(&saved).unwrap().nlink(),
        1,
        "our name is gone"
    );
    assert_eq!(std::fs::read(spool.body_path(&id)).unwrap(), b"new\r\n");
    assert!(
        names_in(root, "free").is_empty(),
        "the envelope file was reused"
    );
}

#[test]
fn recovery_empties_free_and_the_spool_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = Spool::open(root).unwrap();
    deliver_all(&spool, &[b"one\r\n", b"two\r\n"]);
    // Strays: a bigger file than any message, and a directory.
    std::fs::write(root.join("free").join("stray"), vec![b'z'; 1 << 20]).unwrap();
    std::fs::create_dir(root.join("free").join("subdir")).unwrap();

    // With the daemon's list still holding the files recovery removes
    // (envelopes from free/; bodies from queue/, as bodies of no message).
    let report = spool.recover().unwrap();
    assert_eq!((report.free_removed, report.orphan_bodies_removed), (3, 2));
    assert!(names_in(root, "queue").is_empty());
    assert_eq!(report.unknown, vec![root.join("free").join("subdir")]);
    assert_eq!(names_in(root, "free"), vec!["subdir".to_string()]);
    let body = super::sample_body();
    let id = commit(&spool, &body).unwrap();
    assert_eq!(std::fs::read(spool.body_path(&id)).unwrap(), body);

    // Recycling works again afterwards.
    remove_lazily(&spool, &id).unwrap();
    spool.reap_removed();
    let freed = free_inodes(root);
    let again = commit(&spool, b"again\r\n").unwrap();
    assert!(freed.contains_key(&ino(&spool.body_path(&again))));
    assert_eq!(
        std::fs::read(spool.body_path(&again)).unwrap(),
        b"again\r\n"
    );
    drop(spool);

    // A fresh start with leftovers in free/.
    std::fs::write(root.join("free").join("stray"), vec![b'z'; 1 << 20]).unwrap();
    std::fs::write(
        root.join("free").join(QueueId::generate().body_name()),
        b"old",
    )
    .unwrap();
    let spool = Spool::open(root).unwrap();
    let report = spool.recover().unwrap();
    assert_eq!((report.free_removed, report.messages), (2, 1));
    assert_eq!(names_in(root, "free"), vec!["subdir".to_string()]);
    let id = commit(&spool, b"after restart\r\n").unwrap();
    assert_eq!(
        std::fs::read(spool.body_path(&id)).unwrap(),
        b"after restart\r\n"
    );
    assert_eq!(spool.list().unwrap().len(), 2);
}

/// A spool at `root` whose file operations are recorded.
fn open_recorded(
    root: &Path,
    sync: SyncMode,
) -> (Spool, Arc<super::super::recording::RecordingFs>) {
    let fs = Arc::new(super::super::recording::RecordingFs::default());
    let options = SpoolOptions {
        file_ops: fs.clone(),
        sync,
        ..SpoolOptions::default()
    };
    (Spool::open_with(root, options).unwrap(), fs)
}

/// A message on recycled files costs three renames from staging to its
/// files' return to the free list: body from its old name in queue/ to its
/// new one, envelope from free/ straight into queue/, envelope out (it was
/// five with both files through free/ and the envelope through tmp/).
#[test]
fn a_recycled_message_costs_three_renames() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (spool, fs) = open_recorded(root, SyncMode::Files);
    let old = deliver_all(&spool, &[b"old\r\n"])[0];
    fs.clear();
    let id = deliver_all(&spool, &[b"new\r\n"])[0];
    let events = fs.take(root, &id.to_string());
    let renames: Vec<&String> = events.iter().filter(|e| e.starts_with("rename")).collect();
    // (The recording names the new message "ID".)
    assert_eq!(
        renames,
        [
            &format!("rename queue/{old}.msg queue/ID.msg"),
            &format!("rename free/{old}.env queue/ID.env"),
            &"rename queue/ID.env free/ID.env".to_string(),
        ],
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| e.starts_with("create")),
        "both files recycled: {events:#?}"
    );
}

/// With `sync = "filesystem"` (the daemon's default) a recycled envelope
/// goes from free/ straight into queue/ while the message is staged, so
/// its commit is one `syncfs` and nothing else: no rename and no `fsync`
/// of queue/ after it (the `syncfs` makes the name durable too, and the
/// removals made before it: their files are reusable afterwards).
#[test]
fn with_syncfs_a_recycled_message_is_in_queue_before_its_one_syncfs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (spool, fs) = open_recorded(root, SyncMode::Filesystem);
    let removed = commit(&spool, b"removed\r\n").unwrap();
    let old = deliver_all(&spool, &[b"old\r\n"])[0];
    remove_lazily(&spool, &removed).unwrap();
    fs.clear();
    let staged = stage(&spool, b"new\r\n").unwrap();
    let id = staged.id;
    assert_eq!(
        staged.env_tmp(),
        root.join("queue").join(id.envelope_name()).as_path()
    );
    fs.mark("staged");
    assert_eq!(spool.commit_batch(vec![staged]).pop().unwrap().unwrap(), id);
    let events = fs.take(root, &id.to_string());
    let at = events.iter().position(|e| e == "staged").unwrap();
    assert!(
        events[..at].contains(&format!("rename free/{old}.env queue/ID.env")),
        "{events:#?}"
    );
    assert_eq!(events[at + 1..], ["syncfs lock"], "{events:#?}");
    assert!(
        kept_bodies(root).contains(&removed.body_name()),
        "the removal before the syncfs is durable: its body is kept for reuse"
    );
    assert_eq!(std::fs::read(spool.body_path(&id)).unwrap(), b"new\r\n");
    assert_eq!(spool.read(&id).unwrap().0.size, 5);
}

/// A kept body is no message: it is not listed, it goes at a clean stop
/// (`discard_kept_bodies`), and one left by a crash is removed at the
/// next start like any body without an envelope.
#[test]
fn kept_bodies_are_no_messages_and_do_not_outlive_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = Spool::open(root).unwrap();
    let live = commit(&spool, b"live\r\n").unwrap();
    let gone = deliver_all(&spool, &[b"one\r\n", b"two\r\n"]);
    assert_eq!(kept_bodies(root).len(), 2);
    let listed: Vec<QueueId> = spool.list().unwrap().iter().map(|(e, _)| e.id).collect();
    assert_eq!(listed, vec![live]);
    for id in &gone {
        assert!(matches!(spool.read(id), Err(SpoolError::NotFound { .. })));
        assert!(matches!(spool.hold(id), Err(SpoolError::NotFound { .. })));
        assert!(matches!(spool.remove(id), Err(SpoolError::NotFound { .. })));
    }
    assert_eq!(kept_bodies(root).len(), 2, "still kept");

    // A crash: the next start removes them and finds the one message.
    drop(spool);
    let spool = Spool::open(root).unwrap();
    let report = spool.recover().unwrap();
    assert_eq!((report.orphan_bodies_removed, report.messages), (2, 1));
    assert!(report.corrupt.is_empty(), "{report:?}");
    assert!(kept_bodies(root).is_empty());

    // A clean stop unlinks them, and nothing is reused afterwards.
    deliver_all(&spool, &[b"three\r\n"]);
    assert_eq!(kept_bodies(root).len(), 1);
    spool.discard_kept_bodies();
    assert!(kept_bodies(root).is_empty());
    let freed = free_inodes(root);
    let id = commit(&spool, b"four\r\n").unwrap();
    assert!(!freed.contains_key(&ino(&spool.body_path(&id))));
    assert_eq!(std::fs::read(spool.body_path(&id)).unwrap(), b"four\r\n");
}

/// A message held during its delivery attempt is removed from hold/ by
/// unlinking (synced at once), never recycled; one already gone is
/// `NotFound`. The removal has no `stat` of its own: the failed rename
/// out of queue/ is what sends it to hold/.
#[test]
fn a_held_message_removed_lazily_is_unlinked_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = Spool::open(root).unwrap();
    let id = commit(&spool, b"held\r\n").unwrap();
    spool.hold(&id).unwrap();
    remove_lazily(&spool, &id).unwrap_or_else(|e| panic!("{e}"));
    for sub in ["queue", "hold", "free"] {
        assert!(names_in(root, sub).is_empty(), "{sub}/");
    }
    spool.reap_removed();
    assert!(names_in(root, "queue").is_empty());
    let err = spool.remove_lazily(&id, 6).unwrap_err();
    assert!(matches!(err, SpoolError::NotFound { .. }), "{err}");
    let fresh = commit(&spool, b"next\r\n").unwrap();
    assert_eq!(std::fs::read(spool.body_path(&fresh)).unwrap(), b"next\r\n");
}
