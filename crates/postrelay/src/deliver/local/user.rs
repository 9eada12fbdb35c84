//! Who a local recipient is: the passwd entry, and whether this process
//! may write files on their behalf.

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
    /// The primary group: Maildir files and directories get it.
    pub gid: Gid,
    pub home: PathBuf,
}

impl LocalUser {
    /// `bob (uid 1001)`, for error messages.
    pub(super) fn describe(&self) -> String {
        format!("{} (uid {})", self.name, self.uid)
    }
}

/// Looks `name` up with `getpwnam_r`. No entry is a permanent failure;
/// a lookup error (NSS backend down, …) is temporary.
pub(super) fn lookup(name: &str) -> Result<LocalUser, Reason> {
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

/// Who files created for the user must belong to, and whether this
/// process must (and can) `fchown` them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Owner {
    pub uid: Uid,
    pub gid: Gid,
    /// Running as root: new files are ours until chowned. Otherwise they
    /// are created by the user themself and chown is neither needed nor
    /// possible.
    pub chown: bool,
}

/// Checks that this process can deliver to `user`: as root, to anyone;
/// otherwise only to the user it runs as.
pub(super) fn owner(user: &LocalUser, gid: Gid) -> Result<Owner, Reason> {
    let euid = geteuid();
    if euid.is_root() {
        Ok(Owner {
            uid: user.uid,
            gid,
            chown: true,
        })
    } else if euid == user.uid {
        Ok(Owner {
            uid: user.uid,
            gid,
            chown: false,
        })
    } else {
        Err(Reason::Local(format!(
            "postrelay must run as root to deliver to other users' mailboxes \
             (running as uid {euid}, recipient is {})",
            user.describe()
        )))
    }
}

/// The `mail` group's id, if the system has one (mbox files get it).
pub(super) fn mail_group() -> Option<Gid> {
    Group::from_name("mail").ok().flatten().map(|g| g.gid)
}
