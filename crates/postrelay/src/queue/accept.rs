//! The one door into the queue: [`Queue::accept`].
//!
//! Every new message comes through here (SMTP intake, submission, pickup
//! of the sendmail drop, the daemon's own notices), so every one gets the
//! same treatment: aliases expanded, body and envelope staged, made durable
//! by the group commit, indexed, logged. A caller may acknowledge the
//! message only after `accept` returned `Ok`.

use std::sync::Arc;

use super::Queue;
use crate::route::Router;
use crate::spool::{BodyWriter, DropDir, Envelope, Health, QueueId, Recipient, SpoolError};

impl Queue {
    /// Starts the body of a new message (`queue/<id>.msg`, written in place;
    /// it is not a message until [`Queue::accept`] commits its envelope).
    /// Blocking (one create or rename), but short: no fsync.
    pub fn new_body(&self) -> Result<BodyWriter, SpoolError> {
        self.inner.spool.new_body()
    }

    /// Whether the spool has room for more mail (cached; cheap enough for
    /// every `MAIL FROM`).
    pub fn health(&self) -> Health {
        self.inner.spool.health()
    }

    /// maildrop/, where `sendmail` leaves mail for pickup.
    pub fn drop_dir(&self) -> DropDir {
        self.inner.spool.drop_dir()
    }

    /// Queues a received message: expands its recipients' aliases, stages
    /// body and envelope, commits them with the group committer, indexes
    /// the message and logs it. Returns the message's id only after the
    /// body and envelope are on disk and the queue directory is synced: the
    /// caller may then acknowledge. On error nothing was queued and both
    /// files are gone.
    pub async fn accept(
        &self,
        body: BodyWriter,
        mut envelope: Envelope,
    ) -> Result<QueueId, SpoolError> {
        expand_aliases(&self.router(), &mut envelope);
        let spool = &self.inner.spool;
        let staged = if spool.stage_blocks() {
            // fdatasync blocks; keep it off the reactor threads.
            let s = spool.clone();
            let env = envelope.clone();
            tokio::task::spawn_blocking(move || s.stage(body, &env))
                .await
                .map_err(|e| SpoolError::Io {
                    op: "stage (task panicked)",
                    path: spool.root().to_path_buf(),
                    source: std::io::Error::other(e.to_string()),
                })??
        } else {
            // Without per-file syncs staging is a flush and a small write
            // to the page cache (microseconds); the committer's syncfs
            // does the waiting, on its own thread.
            spool.stage(body, &envelope)?
        };
        // The staged envelope differs in the body's size and checksum as
        // written: those two are all that is taken from it (no copy of
        // the recipients).
        envelope.size = staged.envelope().size;
        envelope.body_crc32 = staged.envelope().body_crc32;
        debug_assert_eq!(&envelope, staged.envelope());
        self.inner.committer.commit(staged).await?;
        // Logged before a worker can see it, so its delivery lines follow.
        self.inner.maillog.queued(&envelope);
        let id = envelope.id;
        self.index().insert_fresh(envelope);
        self.inner.changed.notify_one();
        Ok(id)
    }
}

/// Expands aliases (`[routing] aliases`): each recipient becomes its final
/// addresses, which remember the address the client gave. Doing it at
/// acceptance (as Postfix's cleanup does for virtual aliases) keeps one
/// state per final recipient, and `queue list` shows where mail will
/// really go.
fn expand_aliases(router: &Arc<Router>, envelope: &mut Envelope) {
    let mut expanded: Vec<Recipient> = Vec::with_capacity(envelope.recipients.len());
    for r in envelope.recipients.drain(..) {
        let destinations = router.route(&r.address);
        let last = destinations.len().saturating_sub(1);
        // Copied for each destination but the last, which takes it.
        let mut given = Some(r);
        for (i, routed) in destinations.into_iter().enumerate() {
            let Some(r) = given.as_ref() else { break };
            if let Some(w) = &routed.warning {
                tracing::warn!(recipient = %r.address, warning = %w, "alias expansion");
            }
            if expanded
                .iter()
                .any(|e| e.address.eq_ignore_ascii_case(&routed.address))
            {
                continue;
            }
            let mut rcpt = if i == last {
                given
                    .take()
                    .unwrap_or_else(|| unreachable!("taken at the last"))
            } else {
                r.clone()
            };
            if !routed.address.eq_ignore_ascii_case(&rcpt.address) {
                let original = rcpt.original.take();
                rcpt.original = Some(original.unwrap_or_else(|| rcpt.address.clone()));
                rcpt.address = routed.address;
            }
            expanded.push(rcpt);
        }
    }
    envelope.recipients = expanded;
}
