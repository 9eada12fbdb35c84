//! The group committer: one thread that commits staged messages in batches.
//!
//! Committing costs one `fsync` of queue/, which is the slow part of
//! accepting a message. SMTP sessions that finish at about the same time
//! hand their [`Staged`] messages to the [`Committer`]; its thread takes the
//! first one waiting, drains whatever else is already queued (up to
//! [`MAX_BATCH`]), commits them all with one
//! [`Spool::commit_batch`] and answers each session. Under load, batches
//! grow by themselves; with one client, a batch is one message and nothing
//! waits for a timer.
//!
//! A session that finds the committer idle (nothing queued for it, no
//! batch being committed) commits its message itself, on its own worker
//! thread: the same `commit_batch`, under the same lock, without the two
//! thread hand-offs (to the committer and back) that a lone session would
//! otherwise wait for. That worker is blocked for the commit's flush; only
//! on a runtime with at least two workers, so the others go on with every
//! other task meanwhile. Once one commit is under way, the next sessions
//! queue for the thread and are batched as before, and no async task ever
//! waits for the lock (it is only tried).
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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::spool::{QueueId, Spool, SpoolError, Staged};

/// Most messages committed with one directory `fsync`.
pub const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<QueueId, SpoolError>>;

enum Request {
    Commit(Box<Staged>, Reply),
    /// A session committed inline and a journal checkpoint is due.
    Checkpoint,
    /// Finish what was sent before this, then exit.
    Stop,
}

/// Counters since start, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// `commit_batch` calls (directory `fsync`s, at most).
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
    /// Held while a batch is committed (by the thread, or by a session
    /// inline) and while the thread reaps: one commit at a time.
    lock: Arc<Mutex<()>>,
    /// Requests sent to the thread that it has not taken yet.
    queued: Arc<AtomicUsize>,
    /// Set by [`Committer::shutdown`]: no more inline commits.
    stopped: AtomicBool,
    spool: Spool,
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
        let lock = Arc::new(Mutex::new(()));
        let queued = Arc::new(AtomicUsize::new(0));
        let thread = Thread {
            spool: spool.clone(),
            counters: counters.clone(),
            lock: lock.clone(),
            queued: queued.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || {
                if let Some(gate) = gate {
                    let _ = gate.recv();
                }
                thread.run(&rx, checkpointer);
            })
            .expect("spawning the spool commit thread");
        Committer {
            tx,
            shared: Arc::new(Shared {
                counters,
                thread: Mutex::new(Some(handle)),
                lock,
                queued,
                stopped: AtomicBool::new(false),
                spool,
            }),
        }
    }

    /// Queues `staged` for commit by the thread without waiting; see
    /// [`PendingCommit`].
    pub fn submit(&self, staged: Staged) -> PendingCommit {
        let id = staged.id;
        let (reply, rx) = oneshot::channel();
        // If the thread is gone the request (and with it `reply`) is dropped,
        // so the receiver reports CommitterStopped and `staged` cleans up.
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        if self
            .tx
            .send(Request::Commit(Box::new(staged), reply))
            .is_err()
        {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
        }
        PendingCommit { id, rx }
    }

    /// Commits `staged`, sharing the directory `fsync` with whatever else is
    /// being committed; when nothing else is, commits it on this thread
    /// (see the module documentation). Only an `Ok` may be acknowledged to
    /// the client.
    pub async fn commit(&self, staged: Staged) -> Result<QueueId, SpoolError> {
        match self.commit_inline(staged) {
            Ok(result) => result,
            Err(staged) => self.submit(*staged).await,
        }
    }

    /// Commits `staged` on the calling worker thread if the committer is
    /// idle and the runtime has other workers to go on with its tasks
    /// meanwhile; else gives it back.
    fn commit_inline(&self, staged: Staged) -> Result<Result<QueueId, SpoolError>, Box<Staged>> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let shared = &self.shared;
        let multi_thread = Handle::try_current().is_ok_and(|h| {
            h.runtime_flavor() == RuntimeFlavor::MultiThread && h.metrics().num_workers() >= 2
        });
        if !multi_thread || shared.queued.load(Ordering::SeqCst) != 0 {
            return Err(Box::new(staged));
        }
        let guard = match shared.lock.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(Box::new(staged)),
        };
        // Checked under the lock: shutdown takes it after setting this.
        if shared.stopped.load(Ordering::SeqCst) {
            return Err(Box::new(staged));
        }
        let result = shared.spool.commit_batch(vec![staged]).pop();
        drop(guard);
        let result = result.expect("one result per staged message");
        count(&shared.counters, std::slice::from_ref(&result));
        if shared.spool.take_due_checkpoint() {
            let _ = self.tx.send(Request::Checkpoint);
        }
        Ok(result)
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
        self.shared.stopped.store(true, Ordering::SeqCst);
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
        // An inline commit that began before `stopped` was set ends first.
        drop(self.shared.lock.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Adds `results` to the counters.
fn count(counters: &Counters, results: &[Result<QueueId, SpoolError>]) {
    counters.batches.fetch_add(1, Ordering::Relaxed);
    for result in results {
        let counter = if result.is_ok() {
            &counters.committed
        } else {
            &counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the commit thread works with.
struct Thread {
    spool: Spool,
    counters: Arc<Counters>,
    lock: Arc<Mutex<()>>,
    queued: Arc<AtomicUsize>,
}

impl Thread {
    /// The thread's loop: block for one request, drain the rest, commit, answer.
    fn run(&self, rx: &mpsc::Receiver<Request>, spawn: SpawnFn) {
        let spool = &self.spool;
        let checkpointer = Checkpointer::start(spool, spawn);
        let mut stopping = false;
        while !stopping {
            let first = match rx.recv_timeout(REAP_INTERVAL) {
                Ok(request) => request,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Quiet: make lazy removals durable and delete their bodies.
                    let _commit = self.lock();
                    spool.reap_removed();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break, // every Committer was dropped
            };
            let mut batch = Vec::new();
            let mut replies = Vec::new();
            let mut checkpoint = false;
            stopping = self.add(first, &mut batch, &mut replies, &mut checkpoint);
            while !stopping && replies.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(request) => {
                        stopping = self.add(request, &mut batch, &mut replies, &mut checkpoint)
                    }
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                // The batch's directory fsync also makes lazy removals durable.
                let results = {
                    let _commit = self.lock();
                    spool.commit_batch(batch)
                };
                count(&self.counters, &results);
                for (result, reply) in results.into_iter().zip(replies) {
                    if let Err(Ok(id)) = reply.send(result) {
                        tracing::info!(%id, "spool: committed message whose session went away (never acknowledged)");
                    }
                }
                checkpoint |= spool.take_due_checkpoint();
            }
            // With the commit journal: a checkpoint, on its own thread.
            if checkpoint {
                checkpointer.request();
            }
        }
        // The last checkpoint (with the journal; else the last removals made
        // durable) comes after the last batch, and after the one the
        // checkpoint thread may be making.
        drop(checkpointer);
        let _commit = self.lock();
        spool.reap_removed();
    }

    /// The commit lock (a panic while it was held leaves nothing to
    /// repair: a failed commit removes its own files).
    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a request to the batch being built; true if it was `Stop`.
    fn add(
        &self,
        request: Request,
        batch: &mut Vec<Staged>,
        replies: &mut Vec<Reply>,
        checkpoint: &mut bool,
    ) -> bool {
        match request {
            Request::Commit(staged, reply) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                batch.push(*staged);
                replies.push(reply);
                false
            }
            Request::Checkpoint => {
                *checkpoint = true;
                false
            }
            Request::Stop => true,
        }
    }
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

#[cfg(test)]
mod tests;
