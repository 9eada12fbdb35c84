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
    pub recipient_delimiter: Option<String>,
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
    let recipient_delimiter = file.recipient_delimiter.unwrap_or_else(|| "+".to_owned());
    if let Some(c) = recipient_delimiter
        .chars()
        .find(|c| !c.is_ascii_punctuation() || matches!(c, '@' | '"' | '\\' | '.'))
    {
        return Err(loc.value_error(
            "local.recipient_delimiter",
            &format!(
                "{c:?} cannot separate an address extension; use punctuation such as \"+\" \
                 or \"-\" (several characters: each one is a delimiter), or \"\" for none"
            ),
        ));
    }
    Ok(LocalConfig {
        mailbox: file.mailbox.unwrap_or(MailboxFormat::Maildir),
        maildir,
        mbox_dir,
        recipient_delimiter,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{err, ok};

    #[test]
    fn recipient_delimiter_defaults_to_plus_and_may_be_empty() {
        assert_eq!(ok("").local.recipient_delimiter, "+");
        let c = ok("[local]\nrecipient_delimiter = \"\"\n");
        assert_eq!(c.local.recipient_delimiter, "");
        let c = ok("[local]\nrecipient_delimiter = \"+-\"\n");
        assert_eq!(c.local.recipient_delimiter, "+-");
        // The router built from the configuration splits at it.
        let r = ok("").router();
        assert_eq!(
            r.transport("root+x@localhost"),
            crate::route::Route::Local {
                user: "root".into()
            }
        );
        for bad in ["@", "a", " ", "+@", "."] {
            let e = err(&format!("[local]\nrecipient_delimiter = {bad:?}\n")).to_string();
            assert!(e.contains("local.recipient_delimiter"), "{bad:?}: {e}");
        }
    }
}
