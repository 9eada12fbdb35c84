//! One delivery attempt for one queued message, from reading its envelope
//! to writing the result back: the outcome per recipient, the retry time or
//! expiry, the mail log lines. Notices for failed or delayed recipients are
//! built and queued by `notice.rs`.
//!
//! Ordering that keeps the promise "nothing accepted is ever lost": a
//! bounce is committed to the queue *before* the original message's state
//! changes on disk; the original's envelope is rewritten (or the message
//! removed) last. A crash in between can repeat an attempt or a bounce,
//! never lose either. The one change made earlier, while the attempt goes
//! on (`progress.rs`), marks recipients *delivered*, which needs no
//! bounce; failed and deferred ones stay pending on disk until the end.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use postrelay_smtp::reply::Reply;

use tokio::sync::watch;

use super::backoff::{Backoff, NextStep};
use super::notice::{self, Failure};
use super::progress::Recorder;
use super::{AfterAttempt, Queue, now_ms};
use crate::bounce::Action;
use crate::config::Config;
use crate::deliver::{Attempt, Deliverer, Outcome, Reason};
use crate::maillog::{Delays, Delivery, DeliveryStatus, MailLog};
use crate::spool::{Envelope, Origin, QueueId, RcptState, Recipient, SpoolError};

/// What every attempt needs.
pub struct Context {
    /// The queue (and through it the spool and the mail log).
    pub queue: Queue,
    /// The configuration in force (reloaded on SIGHUP).
    pub config: watch::Receiver<Arc<Config>>,
    /// The delivery engine for that configuration (rebuilt on reload).
    pub deliverer: watch::Receiver<Arc<Deliverer>>,
}

/// Runs one attempt for message `id` (already marked in flight); `fresh`
/// is its envelope when the queue still had it in memory.
pub async fn attempt(ctx: &Context, id: QueueId, fresh: Option<Envelope>) {
    let config = ctx.config.borrow().clone();
    let deliverer = ctx.deliverer.borrow().clone();
    let backoff = Backoff::from_settings(&config.queue);
    let Some(mut env) = read_envelope(ctx, &backoff, id, fresh).await else {
        return;
    };
    let pending: Vec<usize> = (0..env.recipients.len())
        .filter(|&i| env.recipients[i].state == RcptState::Pending)
        .collect();
    let started_ms = now_ms();
    let recorder = Recorder::new(&ctx.queue, &env, started_ms);
    let result = if pending.is_empty() {
        Attempt::nothing()
    } else {
        let body = ctx.queue.spool().body_path(&id);
        deliverer
            .attempt_with(&env, &body, &pending, &recorder)
            .await
    };
    let logged = recorder.logged();
    let mut failed = Vec::new();
    let deferred = apply_outcomes(ctx, &mut env, &result, started_ms, &mut failed, &logged);
    ctx.queue.note_attempt(id, &result);
    let mut done = schedule_next(ctx, &backoff, &mut env, deferred, &result, &mut failed);
    if !failed.is_empty() && !notice::send(&ctx.queue, &config, &env, &failed, Action::Failed).await
    {
        // The notice could not be queued (disk full…): keep those
        // recipients waiting rather than drop the message silently; the
        // next attempt decides them again and bounces then.
        for f in &failed {
            if let Some(r) = env.recipients.get_mut(f.index) {
                r.state = RcptState::Pending;
            }
        }
        env.next_attempt_ms = backoff.after_fault(now_ms(), &mut rand::rng());
        env.reason = Some("the bounce could not be queued; will retry".into());
        done = false;
    }
    if !done {
        notice::maybe_warn_delay(&ctx.queue, &config, &mut env).await;
    }
    record(ctx, &backoff, env, done).await;
    if let Some(at) = result.delivered_at {
        // How long a crash would have delivered them again (debug; the
        // crash torture reports it).
        let end_window_us = at.elapsed().as_micros();
        tracing::debug!(%id, end_window_us, "delivered recipients recorded");
    }
}

/// The envelope of the message to attempt: from memory, else from the
/// file. `None` when there is nothing to attempt (deleted meanwhile, or
/// unreadable: then it is rescheduled).
async fn read_envelope(
    ctx: &Context,
    backoff: &Backoff,
    id: QueueId,
    fresh: Option<Envelope>,
) -> Option<Envelope> {
    if let Some(env) = fresh {
        return Some(env);
    }
    let spool = ctx.queue.spool().clone();
    let failed = match tokio::task::spawn_blocking(move || spool.read(&id)).await {
        Ok(Ok((env, _))) => return Some(env),
        Ok(Err(SpoolError::NotFound { .. })) => {
            // Deleted by the administrator between scheduling and now.
            let _ = ctx.queue.finish_attempt(&gone(id), true, 0);
            return None;
        }
        Ok(Err(e)) => e.to_string(),
        Err(e) => format!("envelope read task failed: {e}"),
    };
    tracing::error!(%id, error = %failed, "cannot read the envelope; retrying later");
    ctx.queue
        .abandon_attempt(&id, backoff.after_fault(now_ms(), &mut rand::rng()));
    None
}

/// Writes the attempt's result back: removes the message when `done`,
/// else rewrites its envelope (an fsync: on a blocking thread).
async fn record(ctx: &Context, backoff: &Backoff, env: Envelope, done: bool) {
    let id = env.id;
    let fault_retry = backoff.after_fault(now_ms(), &mut rand::rng());
    // Removal moves the envelope out of queue/ (one rename or unlink, no
    // fsync: see Spool::remove_lazily; the committer deals with the body
    // later), cheap enough to do here.
    let finished = if done {
        Ok(ctx.queue.finish_attempt(&env, true, fault_retry))
    } else {
        let queue = ctx.queue.clone();
        tokio::task::spawn_blocking(move || queue.finish_attempt(&env, false, fault_retry)).await
    };
    match finished {
        Ok(Ok(AfterAttempt::Removed | AfterAttempt::RetryAt(_))) => {}
        Ok(Err(e)) => {
            tracing::error!(%id, error = %e, "cannot record the attempt; it will be repeated")
        }
        Err(e) => tracing::error!(%id, error = %e, "attempt bookkeeping task failed"),
    }
}

/// An envelope standing for a message that no longer exists.
fn gone(id: QueueId) -> Envelope {
    Envelope::new(id, Origin::Bounce { of: None }, String::new(), Vec::new())
}

/// Records each recipient's outcome in the envelope and the mail log
/// (except the log lines of the recipients in `logged`, written when
/// their delivery was recorded mid-attempt). Returns whether any
/// recipient was deferred.
fn apply_outcomes(
    ctx: &Context,
    env: &mut Envelope,
    result: &Attempt,
    started_ms: u64,
    failed: &mut Vec<Failure>,
    logged: &[usize],
) -> bool {
    let id = env.id.to_string();
    let created_ms = env.created_ms;
    let mut deferred = false;
    let mut texts = ReplyTexts::default();
    for (index, outcome) in &result.outcomes {
        let Some(rcpt) = env.recipients.get_mut(*index) else {
            continue;
        };
        let (status, dsn, detail) = settle(rcpt, outcome, &mut texts);
        match outcome {
            Outcome::Failed(reason) => failed.push(Failure {
                index: *index,
                reason: reason.clone(),
            }),
            Outcome::Deferred(_) => deferred = true,
            Outcome::Delivered(_) => {}
        }
        if logged.contains(index) {
            continue;
        }
        let line = LogLine {
            id: &id,
            created_ms,
            started_ms,
            status,
            dsn: &dsn,
            detail: &detail,
        };
        line.write(ctx.queue.maillog(), rcpt, result, *index);
    }
    deferred
}

/// Applies one recipient's outcome to its envelope entry; returns the
/// mail log's status, DSN and text for it. A delivered reply's texts come
/// from `texts`, made once for the recipients that share the reply.
pub(super) fn settle<'t, 'r>(
    rcpt: &mut Recipient,
    outcome: &'r Outcome,
    texts: &'t mut ReplyTexts<'r>,
) -> (DeliveryStatus, Cow<'t, str>, Cow<'t, str>) {
    match outcome {
        Outcome::Delivered(reply) => {
            rcpt.state = RcptState::Delivered;
            let (text, dsn) = texts.of(reply);
            rcpt.last_reply = Some(text.to_owned());
            (
                DeliveryStatus::Sent,
                Cow::Borrowed(dsn),
                Cow::Borrowed(text),
            )
        }
        Outcome::Failed(reason) => {
            rcpt.state = RcptState::Failed;
            rcpt.last_reply = Some(reason.to_string());
            let text = Cow::Owned(reason.to_string());
            (DeliveryStatus::Bounced, Cow::Owned(reason.status()), text)
        }
        Outcome::Deferred(reason) => {
            rcpt.last_reply = Some(reason.to_string());
            let text = Cow::Owned(reason.to_string());
            (DeliveryStatus::Deferred, Cow::Owned(reason.status()), text)
        }
    }
}

/// A delivered reply's text (for the envelope's `last_reply` and the
/// log's parentheses) and DSN, kept for the next recipient: every
/// recipient of a transaction gets the reply to its final dot, so the
/// texts are made once per transaction, not once per recipient.
#[derive(Default)]
pub(super) struct ReplyTexts<'r> {
    /// The reply `text` and `dsn` were made from.
    reply: Option<&'r Reply>,
    text: String,
    dsn: String,
}

impl<'r> ReplyTexts<'r> {
    /// The text and DSN of `reply`: made again only when it differs from
    /// the last one asked for.
    fn of(&mut self, reply: &'r Reply) -> (&str, &str) {
        if self.reply != Some(reply) {
            self.text.clear();
            let _ = write!(self.text, "{reply}");
            self.dsn.clear();
            match reply.enhanced {
                Some(e) => {
                    let _ = write!(self.dsn, "{e}");
                }
                None => self.dsn.push_str("2.0.0"),
            }
            self.reply = Some(reply);
        }
        (&self.text, &self.dsn)
    }
}

/// One recipient's line in the mail log, but for what the attempt says.
pub(super) struct LogLine<'a> {
    pub id: &'a str,
    pub created_ms: u64,
    pub started_ms: u64,
    pub status: DeliveryStatus,
    pub dsn: &'a str,
    pub detail: &'a str,
}

impl LogLine<'_> {
    /// Writes the line of recipient `index` of `result`.
    pub(super) fn write(&self, log: &MailLog, rcpt: &Recipient, result: &Attempt, index: usize) {
        let now = now_ms();
        let delays = Delays {
            before_active: Duration::from_millis(self.started_ms.saturating_sub(self.created_ms)),
            queue_mgr: Duration::ZERO,
            conn_setup: result.conn_setup,
            transmission: result.transmission,
        };
        log.delivery(
            self.id,
            &Delivery {
                rcpt: &rcpt.address,
                orig_rcpt: rcpt.original.as_deref(),
                relay: result.relay_of(index),
                conn_use: result.conn_use,
                delay: Duration::from_millis(now.saturating_sub(self.created_ms)),
                delays,
                dsn: self.dsn,
                status: self.status,
                detail: self.detail,
            },
        );
    }
}

/// When every recipient this attempt deferred waits only for a relay's
/// sending limits (a quota or a cool-down): the earliest time one of them
/// may go, in Unix milliseconds. `None` when any other reason deferred one.
fn quota_wait(result: &Attempt) -> Option<u64> {
    let mut earliest: Option<u64> = None;
    for (_, outcome) in &result.outcomes {
        if let Outcome::Deferred(reason) = outcome {
            let until = reason.quota_until()?;
            let ms = until
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            earliest = Some(earliest.map_or(ms, |e| e.min(ms)));
        }
    }
    earliest
}

/// Decides what happens next; returns true when no recipient is pending.
fn schedule_next(
    ctx: &Context,
    backoff: &Backoff,
    env: &mut Envelope,
    deferred: bool,
    result: &Attempt,
    failed: &mut Vec<Failure>,
) -> bool {
    if deferred && let Some(until) = quota_wait(result) {
        // Waiting for a relay's sending limits is not a failed attempt: no
        // back-off step, and never an expiry (the lifetime still counts
        // from arrival: docs/config.md, "Sending limits").
        env.next_attempt_ms = until.max(now_ms());
        env.reason = Some(result.summary());
        env.transcript = (!result.transcript.is_empty()).then(|| result.transcript.clone());
        return false;
    }
    env.attempts = env.attempts.saturating_add(1);
    if !deferred {
        env.reason = None;
        env.transcript = None;
        return env.recipients.iter().all(|r| r.state != RcptState::Pending);
    }
    let now = now_ms();
    let summary = result.summary();
    match backoff.next_attempt_ms(env.created_ms, now, env.attempts, &mut rand::rng()) {
        NextStep::RetryAt(at) => {
            env.next_attempt_ms = at;
            env.reason = Some(summary);
            env.transcript = (!result.transcript.is_empty()).then(|| result.transcript.clone());
            false
        }
        NextStep::Expire => {
            ctx.queue
                .maillog()
                .expired(&env.id.to_string(), &env.sender);
            for (i, r) in env.recipients.iter_mut().enumerate() {
                if r.state == RcptState::Pending {
                    r.state = RcptState::Failed;
                    let reason = Reason::Expired {
                        last: r.last_reply.clone(),
                    };
                    r.last_reply = Some(reason.to_string());
                    failed.push(Failure { index: i, reason });
                }
            }
            true
        }
    }
}

#[cfg(test)]
mod tests;
