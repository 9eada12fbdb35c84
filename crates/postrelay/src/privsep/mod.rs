//! Privilege separation: the SMTP-facing daemon runs as an unprivileged
//! user; only a small helper keeps root, to write local mail as its
//! recipients.
//!
//! At `postrelay run`, before the async runtime exists (no threads yet),
//! the daemon as root:
//! 1. decides whom to run as ([`plan`], `[daemon] user`);
//! 2. starts the local delivery helper ([`LocalHelper::spawn`]): a
//!    re-execution of this binary (`postrelay --privsep-local-helper`) that keeps
//!    the privileges the daemon was started with and talks to it over two
//!    pipes ([`wire`]);
//! 3. locks the spool and binds its sockets (the daemon does that itself);
//! 4. gives the spool tree to the daemon user ([`prepare_spool`]);
//! 5. switches to that user for good ([`switch`]: `setgroups` with only
//!    `postdrop`, `setresgid`, `setresuid`, then checks that all three
//!    uids changed and that `setuid(0)` fails).
//!
//! The helper never sees SMTP. It takes a queue id and a local user name,
//! checks the id's syntax, looks the user up itself, opens the body from
//! the spool itself, and starts one child per delivery (`postrelay
//! --privsep-local-deliver`) that switches to the recipient before it writes the
//! Maildir or mbox with [`crate::deliver::local`]. The answer is one of
//! local delivery's own outcomes, so the daemon classifies it as before.
//!
//! Processes are started by executing this binary again rather than by
//! `fork` alone: the workspace denies `unsafe`, and a fresh image inherits
//! nothing of the parent's memory (secrets included).
//!
//! Not for: the configuration of who to run as (`config`), or what a
//! mailbox looks like (`deliver::local`).

mod child;
mod client;
mod exchange;
mod helper;
mod identity;
pub mod wire;

use std::io;
use std::path::{Path, PathBuf};

pub use child::main as child_main;
pub use client::{LocalHelper, gone_log};
pub use helper::main as helper_main;
pub use identity::{RunAs, check_spool_reachable, plan, prepare_spool, switch};

/// Why the daemon could not set up its privilege separation.
#[derive(Debug, thiserror::Error)]
pub enum PrivsepError {
    /// `[daemon] user` names no user of this system.
    #[error(
        "the user {user:?} ([daemon] user) does not exist; create it with \
         `useradd --system --user-group --home-dir /var/spool/postrelay --no-create-home \
         --shell /usr/sbin/nologin {user}` (the Debian package does), or set [daemon] user \
         to an existing unprivileged user"
    )]
    NoSuchUser {
        /// The name configured.
        user: String,
    },
    /// The user database could not be asked.
    #[error("cannot look up the user {user:?}: {source}")]
    Lookup {
        /// The name looked up.
        user: String,
        /// The error.
        source: nix::Error,
    },
    /// `[daemon] user` is root in disguise (uid or gid 0).
    #[error(
        "the user {user:?} ([daemon] user) has uid or gid 0; name an unprivileged user, \
         or write user = \"root\" to keep root knowingly"
    )]
    Privileged {
        /// The name configured.
        user: String,
    },
    /// A file operation on the spool failed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The daemon user could not reach the spool after the switch: a
    /// directory on the way does not let it in.
    #[error(
        "the user {user:?} ([daemon] user) cannot reach the spool {}: it may not enter {} \
         (mode {mode:03o}, owner uid {owner}); set spool to a directory that user can reach \
         (the package's is /var/spool/postrelay), or run postrelay from a directory that \
         user may enter",
        spool.display(),
        blocked.display()
    )]
    SpoolUnreachable {
        /// The daemon user.
        user: String,
        /// The spool as configured.
        spool: PathBuf,
        /// The first directory on the way that the user may not search.
        blocked: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        owner: u32,
    },
    /// A step of the switch failed, or its result was not what was asked.
    #[error("cannot switch to the user {user:?}: {why}")]
    Switch {
        /// The user switched to.
        user: String,
        /// Which step, and how.
        why: String,
    },
    /// The local delivery helper could not be started.
    #[error("cannot start the local delivery helper ({}): {source}", exe.display())]
    Helper {
        /// The program executed.
        exe: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The first argument that makes `postrelay` the local delivery helper
/// (followed by the spool and the mailbox settings as JSON).
pub const HELPER_ARG: &str = "--privsep-local-helper";

/// The first argument that makes `postrelay` one local delivery.
pub const CHILD_ARG: &str = "--privsep-local-deliver";

/// This program, for the helper and its children: `/proc/self/exe` runs
/// the very file this process runs even after a package upgrade replaced
/// it on disk; the path it was started from only where `/proc` is missing.
pub(crate) fn self_exe() -> PathBuf {
    let proc = Path::new("/proc/self/exe");
    if proc.exists() {
        return proc.to_path_buf();
    }
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("postrelay"))
}

#[cfg(test)]
mod tests;
