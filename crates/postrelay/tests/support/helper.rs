//! The daemon's local delivery helper, started by a test as the daemon
//! starts it, with a spool of its own to put message bodies in.

use std::path::PathBuf;

use postrelay::deliver::Outcome;
use postrelay::deliver::local::LocalSettings;
use postrelay::privsep::LocalHelper;
use postrelay::privsep::wire::Request;
use postrelay::spool::QueueId;
use tempfile::TempDir;

/// A running helper and its spool.
pub struct Helper {
    pub helper: LocalHelper,
    spool: TempDir,
}

impl Helper {
    /// Starts the helper (`postrelay --privsep-local-helper`) with these mailbox settings.
    pub fn start(settings: &LocalSettings) -> Helper {
        let spool = TempDir::new().unwrap();
        std::fs::create_dir(spool.path().join("queue")).unwrap();
        let exe = PathBuf::from(super::daemon::bin());
        let helper = LocalHelper::spawn_program(&exe, spool.path(), settings).unwrap();
        Helper { helper, spool }
    }

    /// Puts `body` into the spool as a queued message; returns its id.
    pub fn queue(&self, body: &[u8]) -> String {
        let id = QueueId::generate();
        let path = self.spool.path().join("queue").join(id.body_name());
        std::fs::write(path, body).unwrap();
        id.to_string()
    }

    /// Queues `body` and asks the helper to deliver it to `user`.
    pub fn deliver(&self, user: &str, sender: &str, recipient: &str, body: &[u8]) -> Outcome {
        let request = Request {
            queue_id: self.queue(body),
            user: user.to_owned(),
            sender: sender.to_owned(),
            recipient: recipient.to_owned(),
            original_recipient: Some("root".to_owned()),
            catch_all: None,
        };
        self.helper.deliver(&request)
    }
}
