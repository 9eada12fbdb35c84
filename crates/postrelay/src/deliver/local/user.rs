//! Who a local recipient is: the passwd entry, and whether this process
//! runs as them.

use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User, geteuid};

use crate::deliver::Reason;

/// The parts of a passwd entry that delivery uses. Built by
/// [`lookup`]; tests build one by hand to deliver into temporary homes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalUser {
    /// The login name, as the passwd entry spells it (also the mbox name).
    pub name: String,
    pub uid: Uid,
    /// The primary group.
    pub gid: Gid,
    pub home: PathBuf,
}

impl LocalUser {
    /// `bob (uid 1001)`, for error messages.
    pub(crate) fn describe(&self) -> String {
        format!("{} (uid {})", self.name, self.uid)
    }
}

/// Looks `name` up with `getpwnam_r`. No entry is a permanent failure;
/// a lookup error (NSS backend down, …) is temporary.
pub(crate) fn lookup(name: &str) -> Result<LocalUser, Reason> {
    match User::from_name(name) {
        Ok(Some(u)) => {
            // The name becomes a file name in the mail spool directory.
            if u.name.is_empty() || u.name.starts_with('.') || u.name.contains('/') {
                return Err(Reason::Local(format!(
                    "local user name {:?} cannot be used as a mailbox name",
                    u.name
                )));
            }
            Ok(LocalUser {
                name: u.name,
                uid: u.uid,
                gid: u.gid,
                home: u.dir,
            })
        }
        Ok(None) => Err(Reason::UnknownUser(format!(
            "no local user {name:?}; add an alias or create the user"
        ))),
        Err(e) => Err(Reason::Local(format!(
            "cannot look up local user {name:?}: {}",
            e.desc()
        ))),
    }
}

/// Whether the system has a user called `name` (`getpwnam_r`), for the
/// recipient check at RCPT. Blocking (NSS may ask a directory server):
/// call it off the async runtime. An error is the lookup failing (a
/// backend down), not the user missing.
pub fn exists(name: &str) -> Result<bool, nix::Error> {
    User::from_name(name).map(|u| u.is_some())
}

/// Checks that this process runs as `user`: mailboxes are written with
/// the recipient's own rights (the local delivery helper's child switches
/// to the user before it gets here), never by a privileged process on
/// their behalf.
pub(super) fn running_as(user: &LocalUser) -> Result<(), Reason> {
    let euid = geteuid();
    if euid == user.uid {
        return Ok(());
    }
    Err(Reason::Local(format!(
        "local delivery must run as the recipient {} and this process runs as uid {euid}; \
         mail is delivered through postrelay's local delivery helper",
        user.describe()
    )))
}

/// The `mail` group's id, if the system has one: the per-delivery child
/// keeps it as a supplementary group for mbox delivery, to create the
/// dotlock and the mbox in a `root:mail 2775` mail spool directory.
pub(crate) fn mail_group() -> Option<Gid> {
    Group::from_name("mail").ok().flatten().map(|g| g.gid)
}
