//! The group committer: one thread that commits staged messages in batches.
//!
//! Committing costs one flush of the disk (a `syncfs`, or an `fsync` of
//! queue/, or the journal's `fdatasync`), which is the slow part of
//! accepting a message. SMTP sessions that finish at about the same time
//! hand their [`Staged`] messages to the [`Committer`]; its thread takes the
//! first one waiting, drains whatever else is already queued (up to
//! [`MAX_BATCH`]), commits them all with one
//! [`Spool::commit_batch`] and answers each session. Under load, batches
//! grow by themselves; with one client, a batch is one message and nothing
//! waits for a timer.
//!
//! With `sync = "journal"` the journal's checkpoints (`Spool::reap_removed`)
//! are made by the thread itself when idle for [`REAP_INTERVAL`], and by a
//! second thread, `spool-checkpoint`, once `spool::CHECKPOINT_INTERVAL` has
//! passed since the last while commits go on (its `syncfs` then delays no
//! batch; if it cannot be started, the spool gives the journal up and
//! syncs each file instead). At a stop, the last checkpoint is made after
//! the last batch.
//!
//! It does not stage (that is done by the session, in `spawn_blocking`)
//! and does not retry: a failure goes back to the session, which answers 4xx.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::spool::{QueueId, Spool, SpoolError, Staged};

/// Most messages committed with one flush.
pub const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<QueueId, SpoolError>>;

enum Request {
    Commit(Box<Staged>, Reply),
    /// Finish what was sent before this, then exit.
    Stop,
}

/// Counters since start, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// `commit_batch` calls (flushes, at most).
    pub batches: u64,
    /// Messages committed successfully.
    pub committed: u64,
    /// Messages whose commit failed.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    committed: AtomicU64,
    failed: AtomicU64,
}

struct Shared {
    counters: Arc<Counters>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Handle to the commit thread. Cheap to clone.
///
/// The thread ends when [`Committer::shutdown`] is called, or when every
/// clone has been dropped; either way it first commits (and answers)
/// everything submitted before.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

/// A commit in progress: a future of its result.
///
/// The commit happens whether or not this is awaited; dropping it only
/// discards the answer (the message is then queued but was never
/// acknowledged, which at worst means the client sends it again).
pub struct PendingCommit {
    id: QueueId,
    rx: oneshot::Receiver<Result<QueueId, SpoolError>>,
}

impl PendingCommit {
    /// The id of the message being committed.
    pub fn id(&self) -> &QueueId {
        &self.id
    }
}

impl Future for PendingCommit {
    type Output = Result<QueueId, SpoolError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let id = self.id;
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(SpoolError::CommitterStopped { id })))
    }
}

impl Committer {
    /// Starts the commit thread for `spool`.
    pub fn start(spool: Spool) -> Committer {
        Committer::spawn(spool, None, spawn_thread)
    }

    /// Test seam: the thread starts committing only once `gate` is opened
    /// (its sender sends or is dropped), so a test can queue work first and
    /// know exactly what the first batch will contain.
    #[cfg(test)]
    pub(crate) fn start_gated(spool: Spool) -> (Committer, mpsc::Sender<()>) {
        let (open, gate) = mpsc::channel();
        (Committer::spawn(spool, Some(gate), spawn_thread), open)
    }

    /// Test seam: [`Committer::start_gated`], where the checkpoint thread
    /// cannot be started.
    #[cfg(test)]
    pub(crate) fn start_gated_without_checkpointer(spool: Spool) -> (Committer, mpsc::Sender<()>) {
        let (open, gate) = mpsc::channel();
        let fail: SpawnFn = |_, _| Err(std::io::Error::from_raw_os_error(nix::libc::EAGAIN));
        (Committer::spawn(spool, Some(gate), fail), open)
    }

    fn spawn(spool: Spool, gate: Option<mpsc::Receiver<()>>, checkpointer: SpawnFn) -> Committer {
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        let handle = std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || {
                if let Some(gate) = gate {
                    let _ = gate.recv();
                }
                run(&spool, &rx, &thread_counters, checkpointer);
            })
            .expect("spawning the spool commit thread");
        Committer {
            tx,
            shared: Arc::new(Shared {
                counters,
                thread: Mutex::new(Some(handle)),
            }),
        }
    }

    /// Queues `staged` for commit without waiting; see [`PendingCommit`].
    pub fn submit(&self, staged: Staged) -> PendingCommit {
        let id = staged.id;
        let (reply, rx) = oneshot::channel();
        // If the thread is gone the request (and with it `reply`) is dropped,
        // so the receiver reports CommitterStopped and `staged` cleans up.
        let _ = self.tx.send(Request::Commit(Box::new(staged), reply));
        PendingCommit { id, rx }
    }

    /// Commits `staged`, sharing the flush with whatever else is
    /// being committed. Only an `Ok` may be acknowledged to the client.
    pub async fn commit(&self, staged: Staged) -> Result<QueueId, SpoolError> {
        self.submit(staged).await
    }

    /// Counters since start.
    pub fn stats(&self) -> CommitStats {
        let c = &self.shared.counters;
        CommitStats {
            batches: c.batches.load(Ordering::Relaxed),
            committed: c.committed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    /// Commits everything submitted so far, stops the thread and waits for
    /// it (blocking; at most one batch). Later submissions through other
    /// clones fail with [`SpoolError::CommitterStopped`].
    pub fn shutdown(self) {
        let _ = self.tx.send(Request::Stop);
        let handle = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("spool commit thread panicked");
        }
    }
}

/// The thread's loop: block for one request, drain the rest, commit, answer.
fn run(spool: &Spool, rx: &mpsc::Receiver<Request>, counters: &Counters, spawn: SpawnFn) {
    let checkpointer = Checkpointer::start(spool, spawn);
    let mut stopping = false;
    while !stopping {
        let first = match rx.recv_timeout(REAP_INTERVAL) {
            Ok(request) => request,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Quiet: make lazy removals durable and delete their bodies.
                spool.reap_removed();
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break, // every Committer was dropped
        };
        let mut batch = Vec::new();
        let mut replies = Vec::new();
        stopping = add(first, &mut batch, &mut replies);
        while !stopping && replies.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => stopping = add(request, &mut batch, &mut replies),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        // The batch's flush also makes lazy removals durable.
        let results = spool.commit_batch(batch);
        counters.batches.fetch_add(1, Ordering::Relaxed);
        for (result, reply) in results.into_iter().zip(replies) {
            let counter = if result.is_ok() {
                &counters.committed
            } else {
                &counters.failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if let Err(Ok(id)) = reply.send(result) {
                tracing::info!(%id, "spool: committed message whose session went away (never acknowledged)");
            }
        }
        // With the commit journal: a checkpoint, on its own thread.
        if spool.take_due_checkpoint() {
            checkpointer.request();
        }
    }
    // The last checkpoint (with the journal; else the last removals made
    // durable) comes after the last batch, and after the one the
    // checkpoint thread may be making; then the bodies kept for reuse go.
    drop(checkpointer);
    spool.reap_removed();
    spool.discard_kept_bodies();
}

/// The thread that makes the commit journal's checkpoints while the
/// committer goes on committing; started with the committer when the
/// spool uses the journal, ended (and waited for) when its loop ends.
#[derive(Default)]
struct Checkpointer {
    tx: Option<mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// How the checkpoint thread is started (a test seam).
type SpawnFn =
    fn(std::thread::Builder, Box<dyn FnOnce() + Send>) -> std::io::Result<JoinHandle<()>>;

fn spawn_thread(
    builder: std::thread::Builder,
    body: Box<dyn FnOnce() + Send>,
) -> std::io::Result<JoinHandle<()>> {
    builder.spawn(body)
}

impl Checkpointer {
    /// Starts the thread if `spool` uses the journal. If it cannot be
    /// started the spool gives the journal up (without that thread its
    /// checkpoints would wait for idle times or a full segment).
    fn start(spool: &Spool, spawn: SpawnFn) -> Checkpointer {
        if !spool.uses_journal() {
            return Checkpointer::default();
        }
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        let thread_spool = spool.clone();
        let body = Box::new(move || {
            for () in rx {
                thread_spool.reap_removed();
            }
        });
        match spawn(
            std::thread::Builder::new().name("spool-checkpoint".into()),
            body,
        ) {
            Ok(handle) => Checkpointer {
                tx: Some(tx),
                thread: Some(handle),
            },
            Err(e) => {
                spool.give_up_journal(&format!(
                    "cannot start the checkpoint thread ({e}); raise the limit on \
                     threads (ulimit -u, systemd TasksMax) and restart to use it again"
                ));
                Checkpointer::default()
            }
        }
    }

    /// Asks for a checkpoint; dropped if one is already waiting.
    fn request(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(handle) = self.thread.take()
            && handle.join().is_err()
        {
            tracing::error!("spool checkpoint thread panicked");
        }
    }
}

/// How long the thread waits for a commit before it reaps lazy removals
/// on its own (under load, every batch's fsync does it); with the commit
/// journal this idle time is also when a checkpoint is made.
const REAP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Adds a request to the batch being built; true if it was `Stop`.
fn add(request: Request, batch: &mut Vec<Staged>, replies: &mut Vec<Reply>) -> bool {
    match request {
        Request::Commit(staged, reply) => {
            batch.push(*staged);
            replies.push(reply);
            false
        }
        Request::Stop => true,
    }
}

#[cfg(test)]
mod tests {
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

    /// Bodies kept for reuse in queue/ go when the committer stops, so the
    /// next start does not find them as bodies without a message.
    #[tokio::test]
    async fn a_stop_leaves_no_kept_body_in_queue() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let committer = Committer::start(spool.clone());
        let delivered = committer.commit(stage_one(&spool, 1)).await.unwrap();
        let size = spool.read(&delivered).unwrap().0.size;
        // Staged first, so that it cannot take the delivered body.
        let next = stage_one(&spool, 2);
        spool.remove_lazily(&delivered, size).unwrap();
        let kept = committer.commit(next).await.unwrap();
        // That commit's fsync made the removal durable: the body is kept.
        let names = || crate::spool::faults::names_in(dir.path(), "queue");
        assert!(names().contains(&delivered.body_name()), "{:?}", names());
        committer.shutdown();
        assert_eq!(names(), vec![kept.envelope_name(), kept.body_name()]);
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
}
