use super::*;
use crate::spool::{Envelope, Origin, Recipient};
use std::io::Write;

fn stage_one(spool: &Spool, n: usize) -> Staged {
    let mut body = spool.new_body().unwrap();
    write!(body, "Subject: {n}\r\n\r\nbody {n}\r\n").unwrap();
    let env = Envelope::new(
        *body.id(),
        Origin::Local {
            uid: 0,
            user: "root".into(),
        },
        "a@example.net".into(),
        vec![Recipient::new("b@example.org")],
    );
    spool.stage(body, &env).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let (committer, gate) = Committer::start_gated(spool.clone());
    // One more than a batch holds: a batch that took one too many
    // would make it one batch.
    let pending: Vec<_> = (0..=MAX_BATCH)
        .map(|n| committer.submit(stage_one(&spool, n)))
        .collect();
    gate.send(()).unwrap();
    let mut ids = Vec::new();
    for p in pending {
        ids.push(p.await.unwrap());
    }
    // Everything was queued before the thread started: one full batch
    // and the one left over.
    assert_eq!(
        committer.stats(),
        CommitStats {
            batches: 2,
            committed: MAX_BATCH as u64 + 1,
            failed: 0
        }
    );
    let listed: Vec<_> = spool
        .list()
        .unwrap()
        .into_iter()
        .map(|(e, _)| e.id)
        .collect();
    ids.sort();
    assert_eq!(listed, ids);
    committer.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_commit_and_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let committer = Committer::start(spool.clone());
    let mut tasks = Vec::new();
    for n in 0..50 {
        let (spool, committer) = (spool.clone(), committer.clone());
        tasks.push(tokio::spawn(async move {
            let staged = tokio::task::spawn_blocking(move || stage_one(&spool, n))
                .await
                .unwrap();
            committer.commit(staged).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let stats = committer.stats();
    assert_eq!(stats.committed, 50);
    assert!(stats.batches >= 1 && stats.batches <= 50, "{stats:?}");
    assert_eq!(spool.list().unwrap().len(), 50);
    committer.shutdown();
}

#[tokio::test]
async fn shutdown_finishes_queued_work_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let (committer, gate) = Committer::start_gated(spool.clone());
    let other = committer.clone();
    let before = committer.submit(stage_one(&spool, 1));
    drop(gate); // opens the gate too
    committer.shutdown();
    assert!(before.await.is_ok());
    let late = stage_one(&spool, 2);
    let err = other.commit(late).await.unwrap_err();
    assert!(matches!(err, SpoolError::CommitterStopped { .. }), "{err}");
    assert_eq!(spool.list().unwrap().len(), 1);
    assert_eq!(
        crate::spool::faults::names_in(dir.path(), "tmp"),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn dropping_every_handle_still_commits_queued_work() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let (committer, gate) = Committer::start_gated(spool.clone());
    let pending = committer.submit(stage_one(&spool, 1));
    let handle = committer.shared.thread.lock().unwrap().take().unwrap();
    drop(committer);
    gate.send(()).unwrap();
    handle.join().unwrap();
    assert!(pending.await.is_ok());
    assert_eq!(spool.list().unwrap().len(), 1);
}

fn open_journaled(root: &std::path::Path) -> Spool {
    let options = crate::spool::SpoolOptions {
        sync: crate::spool::SyncMode::Journal,
        ..Default::default()
    };
    Spool::open_with(root, options).unwrap()
}

#[tokio::test]
async fn the_last_checkpoint_comes_after_the_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_journaled(dir.path());
    let (committer, gate) = Committer::start_gated(spool.clone());
    let pending = committer.submit(stage_one(&spool, 1));
    // The stop comes in the same batch as the last message.
    committer.tx.send(Request::Stop).unwrap();
    let handle = committer.shared.thread.lock().unwrap().take().unwrap();
    // A checkpoint counted as started just now, so that the batch is
    // most likely not due one of its own (25 ms later) on the
    // checkpoint thread: only the last one can cover it.
    spool
        .commit_batch(vec![stage_one(&spool, 2)])
        .pop()
        .unwrap()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !spool.take_due_checkpoint() {
        assert!(std::time::Instant::now() < deadline, "never due");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    gate.send(()).unwrap();
    handle.join().unwrap();
    assert!(pending.await.is_ok());
    assert_eq!(crate::spool::journal_pending(dir.path()).unwrap(), vec![]);
}

#[tokio::test]
async fn without_its_checkpoint_thread_the_spool_gives_up_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_journaled(dir.path());
    assert!(spool.uses_journal());
    let (committer, gate) = Committer::start_gated_without_checkpointer(spool.clone());
    let pending = committer.submit(stage_one(&spool, 1));
    drop(gate);
    let id = pending.await.unwrap();
    assert!(!spool.uses_journal());
    assert!(spool.stage_blocks(), "files synced while staging");
    committer.shutdown();
    assert_eq!(crate::spool::journal_pending(dir.path()).unwrap(), vec![]);
    assert_eq!(spool.list().unwrap()[0].0.id, id);
}

/// A spool whose syncs record the thread that made them.
fn recorded_spool(dir: &std::path::Path) -> (Spool, Arc<crate::spool::recording::RecordingFs>) {
    let fs = Arc::new(crate::spool::recording::RecordingFs::default());
    let options = crate::spool::SpoolOptions {
        file_ops: fs.clone(),
        sync: crate::spool::SyncMode::Filesystem,
        ..crate::spool::SpoolOptions::default()
    };
    (Spool::open_with(dir, options).unwrap(), fs)
}

/// A lone session's commit (nothing queued, nothing being committed) is
/// made on the session's own thread: no hand-off to the commit thread and
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_commit_is_made_on_the_callers_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, fs) = recorded_spool(dir.path());
    let committer = Committer::start(spool.clone());
    let id = committer.commit(stage_one(&spool, 1)).await.unwrap();
    let threads = fs.sync_threads();
    assert!(!threads.is_empty(), "the commit synced nothing");
    assert!(
        threads.iter().all(|t| t != "spool-commit"),
        "committed by the commit thread: {threads:?}"
    );
    assert_eq!(spool.list().unwrap()[0].0.id, id);
    assert_eq!(
        committer.stats(),
        CommitStats {
            batches: 1,
            committed: 1,
            failed: 0
        }
    );
    committer.shutdown();
}

/// While the thread has work queued, a session does not commit on its
/// own: it queues too, and its message joins the thread's next batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_join_the_threads_batch_while_it_has_work() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let (committer, gate) = Committer::start_gated(spool.clone());
    let first = committer.submit(stage_one(&spool, 1));
    let second = {
        let (committer, staged) = (committer.clone(), stage_one(&spool, 2));
        tokio::spawn(async move { committer.commit(staged).await })
    };
    // Bounded: the second is queued behind the first (an inline commit
    // would never queue).
    let queued = || committer.shared.queued.load(Ordering::SeqCst);
    for _ in 0..500 {
        if queued() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        queued(),
        2,
        "the second commit did not queue for the thread"
    );
    gate.send(()).unwrap();
    first.await.unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(
        committer.stats(),
        CommitStats {
            batches: 1,
            committed: 2,
            failed: 0
        }
    );
    committer.shutdown();
}

/// After shutdown nothing is committed, inline or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_inline_commit_after_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let committer = Committer::start(spool.clone());
    let other = committer.clone();
    committer.shutdown();
    let err = other.commit(stage_one(&spool, 1)).await.unwrap_err();
    assert!(matches!(err, SpoolError::CommitterStopped { .. }), "{err}");
    assert!(spool.list().unwrap().is_empty());
}
