//! Local mail in the engine: the settings of `[local]` and the hand-over
//! of one recipient to the local delivery helper.
//!
//! Not for: writing mailboxes (`deliver::local`, run by the helper).

use super::{Deliverer, Outcome, Reason, local};
use crate::privsep::wire::Request;
use crate::spool::Envelope;

/// Local delivery settings from the configuration's `[local]`.
pub(crate) fn local_settings(c: &crate::config::LocalConfig) -> local::LocalSettings {
    local::LocalSettings {
        kind: match c.mailbox {
            crate::config::MailboxFormat::Maildir => local::MailboxKind::Maildir,
            crate::config::MailboxFormat::Mbox => local::MailboxKind::Mbox,
        },
        maildir: c.maildir.clone(),
        mbox_dir: c.mbox_dir.clone(),
        catch_all: c.catch_all.clone(),
        delivery_timeout: c.delivery_timeout,
    }
}

impl Deliverer {
    /// Delivers one local-domain recipient into the mailbox of the local
    /// user named by its local part, through the local delivery helper
    /// (which writes as that user; it blocks, so on a blocking thread).
    pub(super) async fn deliver_locally(
        &self,
        env: &Envelope,
        index: usize,
        user: &str,
    ) -> Outcome {
        let Some(helper) = self.local_helper.clone() else {
            return Outcome::from_reason(Reason::Local(
                "local delivery needs the daemon's local delivery helper, which this \
                 process does not have"
                    .into(),
            ));
        };
        let rcpt = &env.recipients[index];
        let request = Request {
            queue_id: env.id.to_string(),
            user: user.to_owned(),
            sender: env.sender.clone(),
            recipient: rcpt.address.clone(),
            original_recipient: rcpt.original.clone(),
            catch_all: self.local.catch_all.clone(),
        };
        tokio::task::spawn_blocking(move || helper.deliver(&request))
            .await
            .unwrap_or_else(|e| {
                Outcome::from_reason(Reason::Local(format!("local delivery task failed: {e}")))
            })
    }
}
