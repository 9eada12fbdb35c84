//! The scheduler: one task that owns "what to attempt next". It sleeps
//! until the earliest message is due or the queue changes (a message
//! arrives, is released or flushed), then hands due messages to delivery
//! workers, at most `max_workers` at a time.
//!
//! It takes a worker slot *before* taking a message, so a message is only
//! marked in flight when a worker will start on it at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Queue, now_ms, worker};

/// The longest single sleep: the wall clock may jump, and due times are
/// wall-clock times (they survive restarts), so look again at least this
/// often.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Runs until `shutdown`; spawned attempts are tracked by `tracker` so the
/// daemon can wait for them (or abandon them: an interrupted attempt
/// changes nothing on disk and is simply repeated after a restart).
pub async fn run(
    queue: Queue,
    ctx: Arc<worker::Context>,
    max_workers: usize,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(max_workers.max(1)));
    loop {
        // Cancel safety: acquiring a permit and waiting on Notify or a
        // sleep are all cancel-safe; nothing was taken from the queue yet.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let (id, fresh) = loop {
            let enabled = ctx.config.borrow().delivery.enabled;
            if enabled && let Some(due) = queue.take_due(now_ms()) {
                break due;
            }
            // With delivery off, a due message is no reason to wake: only
            // a change (a reload turning delivery on wakes the queue) is.
            let wait = match queue.next_due() {
                Some(due) if enabled => Duration::from_millis(due.saturating_sub(now_ms())),
                _ => MAX_SLEEP,
            }
            .min(MAX_SLEEP);
            tokio::select! {
                _ = queue.changed() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
        };
        let ctx = ctx.clone();
        // Boxed: the attempt's state is about 9 KB. Unboxed, spawning
        // copied it into the task's cell and completing wrote the cell's
        // stage over it, per message; the task now holds a pointer.
        let attempt = Box::pin(async move {
            worker::attempt(&ctx, id, fresh).await;
        });
        tracker.spawn(async move {
            attempt.await;
            drop(permit);
        });
    }
}
