//! Local delivery: system mail (cron reports to root, …) into a mailbox on
//! this host instead of the provider.
//!
//! [`deliver`] looks the user up, prepends `Return-Path:`,
//! `X-Original-To:` (when it differs) and `Delivered-To:` as Postfix's
//! `local(8)` does, and appends the spooled message, streamed and with LF
//! line endings, to either
//!
//! - a Maildir under the user's home ([`maildir`]): written in `tmp/`,
//!   fsynced, hard-linked into `new/`, `new/` fsynced; or
//! - an mbox file in the mail spool directory ([`mbox`]): dotlock plus
//!   `fcntl` lock, mboxrd `From ` quoting, truncated back on failure, and
//!   after a kill mid-write by the next delivery (`mbox/undo.rs`).
//!
//! This code runs as the recipient (the daemon's local delivery helper
//! starts one child per delivery that switches to the user first, see
//! [`crate::privsep`]), so what it creates is the user's without a chown,
//! and the kernel enforces the user's permissions and quota. Still, every
//! directory and file is opened relative to an already opened and checked
//! parent and nothing the recipient does not own is written into: a
//! symbolic link planted by someone else is refused, not followed. The
//! outcome is classified by [`Reason`] like every other delivery: unknown
//! user 5.1.1 (bounce), full disk or quota 4.2.2, anything else 4.3.0
//! (both stay queued).

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use postrelay_smtp::reply::Reply;

use crate::deliver::{Outcome, Reason};

mod copy;
mod maildir;
mod mbox;
mod user;

#[cfg(test)]
mod tests;

pub use user::exists as user_exists;
pub(crate) use user::{LocalUser, lookup as lookup_user, mail_group};

/// The mailbox format local mail is delivered into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MailboxKind {
    /// `~/Maildir/` (one file per message).
    #[default]
    Maildir,
    /// `/var/mail/<user>` (one file per user, mboxrd).
    Mbox,
}

/// How local mail is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSettings {
    /// Maildir or mbox.
    pub kind: MailboxKind,
    /// The Maildir, relative to the user's home (`"Maildir/"`). Absolute
    /// paths and `..` are refused.
    pub maildir: String,
    /// The mail spool directory holding one mbox per user (`/var/mail`).
    /// It must exist; postrelay does not create it.
    pub mbox_dir: PathBuf,
    /// The local user who gets mail for users this system does not have
    /// (`[local] catch_all`); `None`: such mail bounces (5.1.1).
    pub catch_all: Option<String>,
    /// How long the local delivery helper lets one delivery run before it
    /// kills it and defers the message ([`DELIVERY_TIMEOUT`]).
    pub delivery_timeout: Duration,
}

/// `[local] delivery_timeout`'s default: well above what a healthy
/// mailbox needs (two lock waits of 10 s, then the largest message written
/// and fsynced), short enough that one hung mailbox holds up the other
/// local recipients (the helper delivers one at a time) for minutes, not
/// an hour.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5 * 60);

impl Default for LocalSettings {
    fn default() -> Self {
        LocalSettings {
            kind: MailboxKind::Maildir,
            maildir: "Maildir/".to_string(),
            mbox_dir: PathBuf::from("/var/mail"),
            catch_all: None,
            delivery_timeout: DELIVERY_TIMEOUT,
        }
    }
}

/// One message for one local recipient.
#[derive(Debug, Clone, Copy)]
pub struct LocalMessage<'a> {
    /// The envelope sender; `""` is the null sender `<>`.
    pub sender: &'a str,
    /// The final recipient address, for `Delivered-To:`.
    pub recipient: &'a str,
    /// The address as first given, for `X-Original-To:` (written only when
    /// it differs from `recipient`).
    pub original_recipient: Option<&'a str>,
    /// The spool body: CRLF line endings, our `Received:` first.
    pub body: &'a Path,
}

/// Delivers `msg` to the local user `user` (a login name), in this
/// process and with its privileges: as the user themself (the
/// per-delivery child of [`crate::privsep`]), or for tests. Blocking.
///
/// Returns `Delivered` with `250 2.0.0 delivered to maildir` (or
/// `mailbox`), `Failed` (5.1.1) when there is no such user and no
/// catch-all, and `Deferred` for everything else, with a reason naming the
/// path and the problem.
pub fn deliver(user: &str, msg: &LocalMessage<'_>, settings: &LocalSettings) -> Outcome {
    match resolve(user, settings.catch_all.as_deref()) {
        Ok(record) => deliver_to(&record, msg, settings),
        Err(reason) => Outcome::from_reason(reason),
    }
}

/// The user whose mailbox gets mail for `user`: that user, or with a
/// catch-all, the catch-all's for a user the system does not have
/// (`Delivered-To:` still names the recipient); a catch-all that no longer
/// exists is the operator's to fix, not the sender's: a temporary failure.
pub(crate) fn resolve(user: &str, catch_all: Option<&str>) -> Result<LocalUser, Reason> {
    match (user::lookup(user), catch_all) {
        (Ok(record), _) => Ok(record),
        (Err(Reason::UnknownUser(_)), Some(catch_all)) => match user::lookup(catch_all) {
            Ok(record) => {
                tracing::info!(%user, %catch_all, "no such local user: delivered to the catch-all");
                Ok(record)
            }
            Err(Reason::UnknownUser(_)) => Err(Reason::Local(format!(
                "no local user {user:?}, and the catch-all user {catch_all:?} ([local] catch_all) \
                 does not exist either; create it or change the setting"
            ))),
            Err(reason) => Err(reason),
        },
        (Err(reason), _) => Err(reason),
    }
}

/// [`deliver`] for an already looked-up user, reading the body from
/// `msg.body` (the test seam: tests give a record whose home is a
/// temporary directory).
pub(crate) fn deliver_to(
    user: &LocalUser,
    msg: &LocalMessage<'_>,
    settings: &LocalSettings,
) -> Outcome {
    match open_body(msg.body) {
        Ok(mut body) => deliver_from(user, msg, &mut body, settings),
        Err(reason) => Outcome::from_reason(reason),
    }
}

/// [`deliver_to`] with the body already open (the per-delivery child gets
/// it on a pipe from the helper, which alone can open the spool);
/// `msg.body` only names it in errors.
pub(crate) fn deliver_from(
    user: &LocalUser,
    msg: &LocalMessage<'_>,
    body: &mut dyn Read,
    settings: &LocalSettings,
) -> Outcome {
    let result = match settings.kind {
        MailboxKind::Maildir => maildir::deliver(user, msg, body, &settings.maildir),
        MailboxKind::Mbox => mbox::deliver(user, msg, body, &settings.mbox_dir, mbox::LOCK_WAIT),
    };
    match result {
        Ok(path) => {
            tracing::debug!(user = %user.name, path = %path.display(), "delivered locally");
            let what = match settings.kind {
                MailboxKind::Maildir => "delivered to maildir",
                MailboxKind::Mbox => "delivered to mailbox",
            };
            Outcome::Delivered(Reply::new(250, "2.0.0", what))
        }
        Err(reason) => Outcome::from_reason(reason),
    }
}

/// The header lines local delivery prepends, LF-terminated, in Postfix's
/// order: `Return-Path:`, `X-Original-To:` (only when it differs),
/// `Delivered-To:`.
fn delivery_headers(msg: &LocalMessage<'_>) -> Vec<u8> {
    let mut h = format!("Return-Path: <{}>\n", Clean(msg.sender));
    if let Some(orig) = msg.original_recipient.filter(|o| *o != msg.recipient) {
        h.push_str(&format!("X-Original-To: {}\n", Clean(orig)));
    }
    h.push_str(&format!("Delivered-To: {}\n", Clean(msg.recipient)));
    h.into_bytes()
}

/// A header value with every control character but TAB replaced by `?`:
/// a CR or LF in an address must not start a new header line.
struct Clean<'a>(&'a str);

impl fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        for c in self.0.chars() {
            f.write_char(if c.is_control() && c != '\t' { '?' } else { c })?;
        }
        Ok(())
    }
}

/// Opens the spool body for reading.
fn open_body(path: &Path) -> Result<File, Reason> {
    File::open(path)
        .map_err(|e| Reason::Local(format!("cannot read queue file {}: {e}", path.display())))
}

/// A reason for an I/O error on `path`: a full file system or quota is
/// [`Reason::MailboxFull`] (4.2.2), anything else [`Reason::Local`].
fn io_reason(what: &str, path: &Path, err: &io::Error) -> Reason {
    let text = format!("cannot {what} {}: {err}", path.display());
    match err.raw_os_error() {
        Some(nix::libc::ENOSPC) | Some(nix::libc::EDQUOT) => Reason::MailboxFull(text),
        _ => Reason::Local(text),
    }
}

/// [`io_reason`] for a `nix` error.
fn errno_reason(what: &str, path: &Path, err: nix::errno::Errno) -> Reason {
    io_reason(what, path, &io::Error::from(err))
}

/// The failure of copying the body into a mailbox file.
fn copy_reason(body: &Path, mailbox: &Path, err: copy::CopyError) -> Reason {
    match err {
        copy::CopyError::Read(e) => {
            Reason::Local(format!("cannot read queue file {}: {e}", body.display()))
        }
        copy::CopyError::Write(e) => io_reason("write", mailbox, &e),
    }
}
