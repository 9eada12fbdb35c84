//! Delivery status notifications the daemon writes itself: a bounce for
//! failed recipients, a "delayed" warning once, a copy to the postmaster
//! when a bounce cannot be returned. Built by [`crate::bounce`] (pure
//! text), queued through [`Queue::accept`] like any other message, so a
//! notice to a local sender follows `/etc/aliases` exactly as a message
//! from a client would (`root: admin@example.com`, `postmaster: root`).
//!
//! Never a notice about a notice: a failed notice goes to the postmaster
//! once, and a failed notice to the postmaster is only logged.

use std::io::Write;

use super::Queue;
use super::backoff::millis;
use crate::bounce::{self, Action, BounceDecision, DsnInput, FailedRecipient};
use crate::config::Config;
use crate::deliver::Reason;
use crate::spool::{BodyType, Envelope, Origin, QueueId, RcptState, Recipient, SpoolError};

/// A recipient a notice reports, with its reason.
pub(super) struct Failure {
    /// Index into the envelope's recipients.
    pub index: usize,
    /// Why it failed (or waits).
    pub reason: Reason,
}

/// Sends a "delayed" notice once, when `bounce.delay_warning` has passed.
pub(super) async fn maybe_warn_delay(queue: &Queue, config: &Config, env: &mut Envelope) {
    let Some(after) = config.bounce.delay_warning else {
        return;
    };
    if env.delay_warned || super::now_ms().saturating_sub(env.created_ms) < millis(after) {
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
    if send(queue, config, env, &waiting, Action::Delayed).await {
        env.delay_warned = true;
    }
}

/// Builds and queues a DSN for `failures`. Returns whether one was queued
/// (or none was needed).
pub(super) async fn send(
    queue: &Queue,
    config: &Config,
    env: &Envelope,
    failures: &[Failure],
    action: Action,
) -> bool {
    let id = env.id.to_string();
    let log = queue.maillog();
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
    let headers = crate::header::read_head(&queue.spool().body_path(&env.id)).unwrap_or_default();
    let notice_id = QueueId::generate();
    let from = format!("MAILER-DAEMON@{}", config.hostname);
    let retry_until_ms = (action == Action::Delayed).then(|| {
        env.created_ms
            .saturating_add(millis(config.queue.max_lifetime))
    });
    let dsn = bounce::build(&DsnInput {
        envelope: env,
        recipients,
        original_headers: crate::header::header_section(&headers),
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
    match enqueue(queue, origin, config.bounce.sender.clone(), to, dsn).await {
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

/// Writes a notice's body into the spool and queues it through the one
/// door, [`Queue::accept`].
async fn enqueue(
    queue: &Queue,
    origin: Origin,
    sender: String,
    to: String,
    body: Vec<u8>,
) -> Result<QueueId, SpoolError> {
    let q = queue.clone();
    // Creating the file is a short blocking call; keep it off the reactor.
    let written = tokio::task::spawn_blocking(move || {
        let mut writer = q.new_body()?;
        writer.write_all(&body).map_err(|e| SpoolError::Io {
            op: "write notice",
            path: q.spool().body_path(writer.id()),
            source: e,
        })?;
        let mut env = Envelope::new(*writer.id(), origin, sender, vec![Recipient::new(to)]);
        if !body.is_ascii() {
            env.body = BodyType::EightBitMime;
        }
        env.smtputf8 =
            !env.sender.is_ascii() || env.recipients.iter().any(|r| !r.address.is_ascii());
        Ok::<_, SpoolError>((writer, env))
    })
    .await
    .map_err(|e| SpoolError::Io {
        op: "notice task",
        path: queue.spool().root().to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let (writer, env) = written?;
    queue.accept(writer, env).await
}
