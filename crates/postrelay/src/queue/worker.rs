//! One delivery attempt for one queued message, from reading its envelope
//! to writing the result back: the outcome per recipient, the retry time or
//! expiry, the bounce for failed recipients, the mail log lines.
//!
//! Ordering that keeps the promise "nothing accepted is ever lost": a
//! bounce is committed to the queue *before* the original message's state
//! changes on disk; the original's envelope is rewritten (or the message
//! removed) last. A crash in between can repeat an attempt or a bounce,
//! never lose either.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::backoff::{Backoff, NextStep, millis};
use super::{AfterAttempt, Queue, now_ms};
use crate::bounce::{self, Action, BounceDecision, DsnInput, FailedRecipient};
use crate::config::Config;
use crate::deliver::{Attempt, Deliverer, Outcome, Reason};
use crate::maillog::{Delays, Delivery, DeliveryStatus};
use crate::spool::{
    BodyType, Committer, Envelope, Origin, QueueId, RcptState, Recipient, SpoolError,
};

/// What every attempt needs.
pub struct Context {
    /// The queue (and through it the spool and the mail log).
    pub queue: Queue,
    /// Commits bounces.
    pub committer: Committer,
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
    let spool = ctx.queue.spool().clone();
    let read = match fresh {
        Some(env) => Ok(Ok((env, crate::spool::Location::Queue))),
        None => tokio::task::spawn_blocking(move || spool.read(&id)).await,
    };
    let mut env = match read {
        Ok(Ok((env, _))) => env,
        Ok(Err(SpoolError::NotFound { .. })) => {
            // Deleted by the administrator between scheduling and now.
            let _ = ctx.queue.finish_attempt(&gone(id), true);
            return;
        }
        Ok(Err(e)) => {
            tracing::error!(%id, error = %e, "cannot read the envelope; retrying later");
            ctx.queue.abandon_attempt(
                &id,
                now_ms().saturating_add(millis(config.queue.min_backoff)),
            );
            return;
        }
        Err(e) => {
            tracing::error!(%id, error = %e, "envelope read task failed");
            ctx.queue.abandon_attempt(
                &id,
                now_ms().saturating_add(millis(config.queue.min_backoff)),
            );
            return;
        }
    };
    let pending: Vec<usize> = (0..env.recipients.len())
        .filter(|&i| env.recipients[i].state == RcptState::Pending)
        .collect();
    let started_ms = now_ms();
    let result = if pending.is_empty() {
        Attempt::nothing()
    } else {
        let body = ctx.queue.spool().body_path(&id);
        deliverer.attempt(&env, &body, &pending).await
    };
    let mut failed = Vec::new();
    let deferred = apply_outcomes(ctx, &mut env, &result, started_ms, &mut failed);
    let mut done = schedule_next(ctx, &config, &mut env, deferred, &result, &mut failed);
    if !failed.is_empty() && !send_bounce(ctx, &config, &env, &failed, Action::Failed).await {
        // The notice could not be queued (disk full…): keep those
        // recipients waiting rather than drop the message silently; the
        // next attempt decides them again and bounces then.
        for f in &failed {
            if let Some(r) = env.recipients.get_mut(f.index) {
                r.state = RcptState::Pending;
            }
        }
        env.next_attempt_ms = now_ms().saturating_add(millis(config.queue.min_backoff));
        env.reason = Some("the bounce could not be queued; will retry".into());
        done = false;
    }
    if !done {
        maybe_warn_delay(ctx, &config, &mut env).await;
    }
    // Removal moves the envelope out of queue/ (one rename or unlink, no
    // fsync: see Spool::remove_lazily; the committer deals with the body
    // later), cheap enough to do here; a rewrite fsyncs, so it goes to a
    // blocking thread.
    let finished = if done {
        Ok(ctx.queue.finish_attempt(&env, true))
    } else {
        let queue = ctx.queue.clone();
        tokio::task::spawn_blocking(move || queue.finish_attempt(&env, false)).await
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

/// A failed recipient, kept for the bounce.
struct Failure {
    index: usize,
    reason: Reason,
}

/// Records each recipient's outcome in the envelope and the mail log.
/// Returns whether any recipient was deferred.
fn apply_outcomes(
    ctx: &Context,
    env: &mut Envelope,
    result: &Attempt,
    started_ms: u64,
    failed: &mut Vec<Failure>,
) -> bool {
    let id = env.id.to_string();
    let now = now_ms();
    let total = Duration::from_millis(now.saturating_sub(env.created_ms));
    let delays = Delays {
        before_active: Duration::from_millis(started_ms.saturating_sub(env.created_ms)),
        queue_mgr: Duration::ZERO,
        conn_setup: result.conn_setup,
        transmission: result.transmission,
    };
    let log = ctx.queue.maillog();
    let mut deferred = false;
    for (index, outcome) in &result.outcomes {
        let Some(rcpt) = env.recipients.get_mut(*index) else {
            continue;
        };
        let (status, dsn, detail) = match outcome {
            Outcome::Delivered(reply) => {
                rcpt.state = RcptState::Delivered;
                rcpt.last_reply = Some(reply.to_string());
                let dsn = reply
                    .enhanced
                    .map_or_else(|| "2.0.0".to_string(), |e| e.to_string());
                (DeliveryStatus::Sent, dsn, reply.to_string())
            }
            Outcome::Failed(reason) => {
                rcpt.state = RcptState::Failed;
                rcpt.last_reply = Some(reason.to_string());
                failed.push(Failure {
                    index: *index,
                    reason: reason.clone(),
                });
                (DeliveryStatus::Bounced, reason.status(), reason.to_string())
            }
            Outcome::Deferred(reason) => {
                deferred = true;
                rcpt.last_reply = Some(reason.to_string());
                (
                    DeliveryStatus::Deferred,
                    reason.status(),
                    reason.to_string(),
                )
            }
        };
        log.delivery(
            &id,
            &Delivery {
                rcpt: &rcpt.address,
                orig_rcpt: rcpt.original.as_deref(),
                relay: result.relay_of(*index),
                conn_use: result.conn_use,
                delay: total,
                delays,
                dsn: &dsn,
                status,
                detail: &detail,
            },
        );
    }
    deferred
}

/// Decides what happens next; returns true when no recipient is pending.
fn schedule_next(
    ctx: &Context,
    config: &Config,
    env: &mut Envelope,
    deferred: bool,
    result: &Attempt,
    failed: &mut Vec<Failure>,
) -> bool {
    env.attempts = env.attempts.saturating_add(1);
    if !deferred {
        env.reason = None;
        env.transcript = None;
        return env.recipients.iter().all(|r| r.state != RcptState::Pending);
    }
    let backoff = Backoff::from_settings(&config.queue);
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

/// Sends a "delayed" notice once, when `bounce.delay_warning` has passed.
async fn maybe_warn_delay(ctx: &Context, config: &Config, env: &mut Envelope) {
    let Some(after) = config.bounce.delay_warning else {
        return;
    };
    if env.delay_warned || now_ms().saturating_sub(env.created_ms) < millis(after) {
        return;
    }
    let waiting: Vec<Failure> = env
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.state == RcptState::Pending)
        .map(|(i, r)| Failure {
            index: i,
            reason: Reason::Unavailable(
                r.last_reply
                    .clone()
                    .unwrap_or_else(|| "delivery delayed".into()),
            ),
        })
        .collect();
    if send_bounce(ctx, config, env, &waiting, Action::Delayed).await {
        env.delay_warned = true;
    }
}

/// Builds and queues a DSN for `failures`. Returns whether one was queued
/// (or none was needed). Never answers our own notifications: a failed
/// notice goes to the postmaster once, and a failed notice to the
/// postmaster is only logged.
async fn send_bounce(
    ctx: &Context,
    config: &Config,
    env: &Envelope,
    failures: &[Failure],
    action: Action,
) -> bool {
    let id = env.id.to_string();
    let log = ctx.queue.maillog();
    let (to, to_postmaster) = match bounce::should_bounce(env, &config.bounce.postmaster) {
        BounceDecision::Sender(addr) => (addr.to_string(), false),
        BounceDecision::Postmaster if action == Action::Failed => {
            (config.bounce.postmaster.clone(), true)
        }
        BounceDecision::Postmaster | BounceDecision::Discard => {
            tracing::error!(%id, "undeliverable notification discarded after logging (no notice about a notice)");
            log.warning(&id, "undeliverable notification discarded (double bounce)");
            return true;
        }
    };
    let recipients: Vec<FailedRecipient<'_>> = failures
        .iter()
        .filter_map(|f| {
            let r = env.recipients.get(f.index)?;
            bounce::wants_notice(r, action)
                .then(|| FailedRecipient::from_reason(r, &f.reason, None, action))
        })
        .collect();
    if recipients.is_empty() {
        return true; // NOTIFY=NEVER (or no DELAY) for every one of them
    }
    let headers = read_headers(ctx.queue.spool().body_path(&env.id));
    let notice_id = QueueId::generate();
    let from = format!("MAILER-DAEMON@{}", config.hostname);
    let retry_until_ms = (action == Action::Delayed).then(|| {
        env.created_ms
            .saturating_add(millis(config.queue.max_lifetime))
    });
    let dsn = bounce::build(&DsnInput {
        envelope: env,
        recipients,
        original_headers: bounce::header_section(&headers),
        reporting_mta: &config.hostname,
        from: &from,
        to: &to,
        now: jiff::ZonedDateTime::now(),
        retry_until_ms,
        message_id: format!("{notice_id}@{}", config.hostname),
        boundary_seed: notice_id.to_string(),
    });
    let origin = Origin::Bounce {
        of: Some(id.clone()),
    };
    match inject(ctx, origin, config.bounce.sender.clone(), to, dsn).await {
        Ok(dsn_id) => {
            let dsn_id = dsn_id.to_string();
            match (action, to_postmaster) {
                (Action::Delayed, _) => log.delay_notice_created(&id, &dsn_id),
                (Action::Failed, true) => log.postmaster_notice_created(&id, &dsn_id),
                (Action::Failed, false) => log.bounce_created(&id, &dsn_id),
            }
            true
        }
        Err(e) => {
            tracing::error!(%id, error = %e, "cannot queue the delivery status notification");
            false
        }
    }
}

/// The first part of a queued body (enough for its header section); a
/// notice without the original's header is still sent when it cannot be
/// read.
fn read_headers(path: PathBuf) -> Vec<u8> {
    crate::bounce::read_head(&path).unwrap_or_default()
}

/// Queues a message postrelay generated itself (a DSN), through the same
/// durable commit as intake.
async fn inject(
    ctx: &Context,
    origin: Origin,
    sender: String,
    to: String,
    body: Vec<u8>,
) -> Result<QueueId, SpoolError> {
    let spool = ctx.queue.spool().clone();
    let staged = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut writer = spool.new_body()?;
        writer.write_all(&body).map_err(|e| SpoolError::Io {
            op: "write bounce",
            path: spool.root().to_path_buf(),
            source: e,
        })?;
        let mut env = Envelope::new(*writer.id(), origin, sender, vec![Recipient::new(to)]);
        if !body.is_ascii() {
            env.body = BodyType::EightBitMime;
        }
        env.smtputf8 =
            !env.sender.is_ascii() || env.recipients.iter().any(|r| !r.address.is_ascii());
        spool.stage(writer, &env)
    })
    .await
    .map_err(|e| SpoolError::Io {
        op: "bounce task",
        path: ctx.queue.spool().root().to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })??;
    // The staged envelope carries the size of the body actually written.
    let env = staged.envelope().clone();
    let id = ctx.committer.commit(staged).await?;
    ctx.queue.maillog().queued(&env);
    ctx.queue.accepted(&env);
    Ok(id)
}
