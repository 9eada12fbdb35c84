//! `[local]`: how mail for local users is stored.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::units::HumanDuration;
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
    pub catch_all: Option<String>,
    pub delivery_timeout: Option<HumanDuration>,
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
    let catch_all = file.catch_all.map(|n| catch_all(&n, loc)).transpose()?;
    let delivery_timeout = file
        .delivery_timeout
        .map_or(crate::deliver::local::DELIVERY_TIMEOUT, |d| d.0);
    if delivery_timeout < Duration::from_secs(1) || delivery_timeout > Duration::from_secs(3600) {
        return Err(loc.value_error(
            "local.delivery_timeout",
            "must be between 1s and 1h; a mailbox that takes longer is broken, and the \
             message should wait in the queue instead (the default is \"5m\")",
        ));
    }
    Ok(LocalConfig {
        mailbox: file.mailbox.unwrap_or(MailboxFormat::Maildir),
        maildir,
        mbox_dir,
        recipient_delimiter,
        catch_all,
        delivery_timeout,
    })
}

/// Checks `local.catch_all`: a plain local name of a user this system has
/// (asked now, so `check-config` says when it does not exist).
fn catch_all(name: &str, loc: &Locator<'_>) -> Result<String, ConfigError> {
    let key = "local.catch_all";
    let name = crate::route::check_local_name(name).map_err(|why| {
        loc.value_error(
            key,
            &format!("{why}; name the local user who gets unknown local mail"),
        )
    })?;
    match crate::deliver::local::user_exists(&name) {
        Ok(true) => Ok(name),
        Ok(false) => Err(loc.value_error(
            key,
            &format!(
                "this system has no user \"{name}\"; name an existing user (the mail goes to \
                 their mailbox), or create it"
            ),
        )),
        Err(e) => Err(loc.value_error(
            key,
            &format!("cannot look up the user \"{name}\": {}", e.desc()),
        )),
    }
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

    #[test]
    fn delivery_timeout_defaults_to_five_minutes_and_is_bounded() {
        assert_eq!(
            ok("").local.delivery_timeout,
            crate::deliver::local::DELIVERY_TIMEOUT
        );
        let c = ok("[local]\ndelivery_timeout = \"30s\"\n");
        assert_eq!(c.local.delivery_timeout.as_secs(), 30);
        for bad in ["0s", "2h"] {
            let e = err(&format!("[local]\ndelivery_timeout = {bad:?}\n")).to_string();
            assert!(
                e.contains("local.delivery_timeout") && e.contains("between 1s and 1h"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn catch_all_is_off_by_default_and_must_be_a_user_of_this_system() {
        assert_eq!(ok("").local.catch_all, None);
        let c = ok("[local]\ncatch_all = \"Root\"\n");
        assert_eq!(c.local.catch_all.as_deref(), Some("root"));
        for (bad, why) in [
            ("no-such-user-of-postrelay", "this system has no user"),
            ("root@example.com", "plain user name"),
            ("", "it is empty"),
        ] {
            let e = err(&format!("[local]\ncatch_all = {bad:?}\n")).to_string();
            assert!(
                e.contains("local.catch_all") && e.contains(why),
                "{bad:?}: {e}"
            );
        }
    }
}
