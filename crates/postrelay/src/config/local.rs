//! `[local]`: how mail for local users is stored.

use std::path::PathBuf;

use serde::Deserialize;

use super::validate::Locator;
use super::{ConfigError, LocalConfig};

/// `[local]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LocalFile {
    pub mailbox: Option<MailboxFormat>,
    pub maildir: Option<String>,
    pub mbox_dir: Option<String>,
}

/// Where local mail is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailboxFormat {
    /// `~/Maildir/` (one file per message; no locking needed).
    Maildir,
    /// `/var/mail/<user>` (one file per user; dotlock + fcntl locking).
    Mbox,
}

impl MailboxFormat {
    /// The spelling used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            MailboxFormat::Maildir => "maildir",
            MailboxFormat::Mbox => "mbox",
        }
    }
}

pub(super) fn local(file: LocalFile, loc: &Locator<'_>) -> Result<LocalConfig, ConfigError> {
    let maildir = file.maildir.unwrap_or_else(|| "Maildir/".to_owned());
    if maildir.is_empty() || maildir.starts_with('/') || maildir.split('/').any(|p| p == "..") {
        return Err(loc.value_error(
            "local.maildir",
            "must be a path inside the user's home, like \"Maildir/\" (not absolute, no \"..\")",
        ));
    }
    let mbox_dir = PathBuf::from(file.mbox_dir.unwrap_or_else(|| "/var/mail".to_owned()));
    if mbox_dir.as_os_str().is_empty() {
        return Err(loc.value_error(
            "local.mbox_dir",
            "must not be empty; the usual place is \"/var/mail\"",
        ));
    }
    Ok(LocalConfig {
        mailbox: file.mailbox.unwrap_or(MailboxFormat::Maildir),
        maildir,
        mbox_dir,
    })
}
