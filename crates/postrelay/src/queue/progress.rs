//! Recipients delivered in the middle of an attempt, recorded at once.
//!
//! An attempt can have several steps: local mailboxes, then one SMTP
//! transaction per destination. The engine reports each step's deliveries
//! through [`Progress`] while later steps remain; [`Recorder`] marks those
//! recipients delivered in a copy of the envelope and has the spool
//! replace the envelope with it ([`Queue::record_progress`]), then writes
//! their mail log lines. A crash during the later steps (a slow second
//! destination, say) then no longer delivers them again: the duplicate
//! window shrinks from "until the attempt ends" to "until this write".
//!
//! Only deliveries are recorded here. A failed recipient needs a bounce,
//! which is queued before the envelope changes, at the end of the attempt
//! (`worker.rs`); deferred ones stay pending anyway.
//!
//! Not for: the attempt's final result (`worker.rs` records it), nor an
//! attempt of one step (its end follows its reply at once).

use std::sync::Mutex;

use super::Queue;
use super::worker::{LogLine, ReplyTexts, settle};
use crate::deliver::{Attempt, Outcome, Progress};
use crate::spool::Envelope;

/// The worker's [`Progress`]: see the module documentation.
pub(super) struct Recorder<'a> {
    queue: &'a Queue,
    started_ms: u64,
    /// The envelope at the start of the attempt.
    env: &'a Envelope,
    /// The envelope as recorded so far (copied from `env` at the first
    /// step that records: most attempts have one step and never do), and
    /// which recipients' lines were written to the mail log.
    state: Mutex<(Option<Envelope>, Vec<usize>)>,
}

impl<'a> Recorder<'a> {
    /// For an attempt of `env` started at `started_ms`.
    pub(super) fn new(queue: &'a Queue, env: &'a Envelope, started_ms: u64) -> Recorder<'a> {
        Recorder {
            queue,
            started_ms,
            env,
            state: Mutex::new((None, Vec::new())),
        }
    }

    /// The recipients whose mail log line was written here.
    pub(super) fn logged(&self) -> Vec<usize> {
        self.lock().1.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<Envelope>, Vec<usize>)> {
        // Plain data, updated in one piece: a panic cannot leave it half done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Progress for Recorder<'_> {
    async fn delivered(&self, attempt: &Attempt, from: usize) -> bool {
        let new = &attempt.outcomes[from..];
        let (env, lines) = {
            let mut state = self.lock();
            let recorded = state.0.get_or_insert_with(|| self.env.clone());
            let mut lines = Vec::new();
            let mut texts = ReplyTexts::default();
            for (index, outcome) in new {
                if !matches!(outcome, Outcome::Delivered(_)) {
                    continue;
                }
                if let Some(rcpt) = recorded.recipients.get_mut(*index) {
                    let (status, dsn, detail) = settle(rcpt, outcome, &mut texts);
                    lines.push((*index, (status, dsn.into_owned(), detail.into_owned())));
                }
            }
            (recorded.clone(), lines)
        };
        let id = env.id;
        let queue = self.queue.clone();
        let written = tokio::task::spawn_blocking(move || queue.record_progress(&env)).await;
        let recorded = match written {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(%id, error = %e, "cannot record delivered recipients now; recorded at the end of the attempt");
                false
            }
            Err(e) => {
                tracing::warn!(%id, error = %e, "progress record task failed");
                false
            }
        };
        if recorded && let Some(at) = attempt.delivered_at {
            // How long a crash would have delivered them again (debug).
            let mid_window_us = at.elapsed().as_micros();
            tracing::debug!(%id, mid_window_us, "delivered recipients recorded");
        }
        let id_text = id.to_string();
        let mut state = self.lock();
        let (copy, logged) = &mut *state;
        for (index, (status, dsn, detail)) in lines {
            let line = LogLine {
                id: &id_text,
                created_ms: self.env.created_ms,
                started_ms: self.started_ms,
                status,
                dsn: &dsn,
                detail: &detail,
            };
            if let Some(rcpt) = copy.as_ref().and_then(|e| e.recipients.get(index)) {
                line.write(self.queue.maillog(), rcpt, attempt, index);
            }
            logged.push(index);
        }
        recorded
    }
}
