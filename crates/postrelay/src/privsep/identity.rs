//! Who the daemon runs as, and the switch to that user: once, before the
//! runtime starts, for the daemon; once per delivery for the helper's
//! children.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, lchown};
use std::path::Path;

use nix::unistd::{Gid, Group, Uid, User, geteuid};

use super::PrivsepError;
use crate::config::DaemonSettings;
use crate::maildrop;

/// Whom the daemon runs as after the start.
#[derive(Debug, Clone)]
pub enum RunAs {
    /// Not started as root: as whoever started it (nothing to drop).
    Unchanged,
    /// Started as root with `[daemon] user = "root"`: stays root.
    Root,
    /// Started as root: switches to this user.
    User(User),
}

/// Decides whom to run as. Started as root, `[daemon] user` must exist,
/// except with the built-in default configuration (`builtin`), which
/// falls back to `nobody` (with a warning) so that a first `postrelay run`
/// works on a fresh machine.
pub fn plan(settings: &DaemonSettings, builtin: bool) -> Result<RunAs, PrivsepError> {
    if !geteuid().is_root() {
        return Ok(RunAs::Unchanged);
    }
    if settings.user == "root" {
        tracing::warn!(
            "[daemon] user = \"root\": the daemon keeps root while it speaks SMTP; \
             set it to an unprivileged user (default \"postrelay\")"
        );
        return Ok(RunAs::Root);
    }
    let lookup = |name: &str| {
        User::from_name(name).map_err(|source| PrivsepError::Lookup {
            user: name.to_owned(),
            source,
        })
    };
    let user = match lookup(&settings.user)? {
        Some(u) => u,
        None if builtin => match lookup("nobody")? {
            Some(u) => {
                tracing::warn!(
                    "there is no user {:?}: running as \"nobody\", which other programs may \
                     share; create it (useradd --system --user-group --no-create-home \
                     --shell /usr/sbin/nologin {0}) to run as a user of postrelay's own",
                    settings.user
                );
                u
            }
            None => return Err(no_such_user(&settings.user)),
        },
        None => return Err(no_such_user(&settings.user)),
    };
    if user.uid.is_root() || user.gid.as_raw() == 0 {
        return Err(PrivsepError::Privileged { user: user.name });
    }
    Ok(RunAs::User(user))
}

fn no_such_user(name: &str) -> PrivsepError {
    PrivsepError::NoSuchUser {
        user: name.to_owned(),
    }
}

/// Gives the spool tree to `user` before the switch: creates the root
/// (0700) when missing, and changes the owner of the root, its entries,
/// and the entries of its directories, never following a symbolic link.
/// Files in `maildrop/` stay their submitters'. `extra` are files outside
/// the spool the daemon writes (the mail log, the control socket); they
/// are given to the user when they exist.
pub fn prepare_spool(spool: &Path, extra: &[&Path], user: &User) -> Result<(), PrivsepError> {
    let io_err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| PrivsepError::Io { what, path, source }
    };
    create_spool(spool)?;
    give(spool, user).map_err(io_err("change the owner of", spool))?;
    let entries = fs::read_dir(spool).map_err(io_err("list", spool))?;
    for entry in entries {
        let path = entry.map_err(io_err("list", spool))?.path();
        give(&path, user).map_err(io_err("change the owner of", &path))?;
        let is_dir = fs::symlink_metadata(&path)
            .map_err(io_err("examine", &path))?
            .is_dir();
        if !is_dir || path.file_name() == Some(std::ffi::OsStr::new(maildrop::MAILDROP_DIR)) {
            continue;
        }
        for inner in fs::read_dir(&path).map_err(io_err("list", &path))? {
            let inner = inner.map_err(io_err("list", &path))?.path();
            give(&inner, user).map_err(io_err("change the owner of", &inner))?;
        }
    }
    for path in extra {
        match give(path, user) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            r => r.map_err(io_err("change the owner of", path))?,
        }
    }
    Ok(())
}

/// Creates the spool root (0700) when it is missing, as root before the
/// switch (its parent may not let the daemon user in).
fn create_spool(spool: &Path) -> Result<(), PrivsepError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(spool)
        .map_err(|source| PrivsepError::Io {
            what: "create the spool",
            path: spool.to_path_buf(),
            source,
        })
}

/// `lchown` to the user when it is not theirs; the group too when it is
/// root's (a group such as `postdrop` is kept).
fn give(path: &Path, user: &User) -> io::Result<()> {
    let m = fs::symlink_metadata(path)?;
    let gid = (m.gid() == 0).then_some(user.gid.as_raw());
    if m.uid() == user.uid.as_raw() && gid.is_none() {
        return Ok(());
    }
    lchown(path, Some(user.uid.as_raw()), gid)
}

/// Before the switch: `user` (with its primary group and `postdrop`,
/// the groups it will have) may search every directory on the way to the
/// spool. For a relative spool the way starts at the current directory
/// (the ones above it are never looked up). The spool itself is the
/// user's by then ([`prepare_spool`]).
pub fn check_spool_reachable(spool: &Path, user: &User) -> Result<(), PrivsepError> {
    let mut groups = vec![user.gid.as_raw()];
    if let Ok(Some(g)) = Group::from_name(maildrop::GROUP) {
        groups.push(g.gid.as_raw());
    }
    let (mut dir, rest) = if spool.is_absolute() {
        (
            std::path::PathBuf::from("/"),
            spool.strip_prefix("/").unwrap_or(spool),
        )
    } else {
        let cwd = std::env::current_dir().map_err(|source| PrivsepError::Io {
            what: "find the current directory for",
            path: spool.to_path_buf(),
            source,
        })?;
        (cwd, spool)
    };
    let mut left = rest.components().count();
    let mut components = rest.components();
    loop {
        let meta = fs::metadata(&dir).map_err(|source| PrivsepError::Io {
            what: "examine",
            path: dir.clone(),
            source,
        })?;
        let mode = meta.mode();
        let searchable = if meta.uid() == user.uid.as_raw() {
            mode & 0o100 != 0
        } else if groups.contains(&meta.gid()) {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(PrivsepError::SpoolUnreachable {
                user: user.name.clone(),
                spool: spool.to_path_buf(),
                blocked: dir,
                mode: mode & 0o7777,
                owner: meta.uid(),
            });
        }
        // The last component is the spool itself: given to the user.
        if left <= 1 {
            return Ok(());
        }
        let Some(next) = components.next() else {
            return Ok(());
        };
        dir.push(next);
        left -= 1;
    }
}

/// Switches the daemon to `user` for good: supplementary groups only
/// `postdrop` (pickup reads maildrop files through it) when it exists.
pub fn switch(user: &User) -> Result<(), PrivsepError> {
    let mut groups = Vec::new();
    if let Ok(Some(g)) = Group::from_name(maildrop::GROUP) {
        groups.push(g.gid);
    }
    become_ids(user.uid, user.gid, &groups).map_err(|why| PrivsepError::Switch {
        user: user.name.clone(),
        why,
    })?;
    tracing::info!(user = %user.name, uid = %user.uid, gid = %user.gid, "dropped root");
    Ok(())
}

/// The groups of `name` (`getgrouplist`), with `extra` added.
pub(super) fn groups_of(name: &str, gid: Gid, extra: Option<Gid>) -> Result<Vec<Gid>, String> {
    let cname = CString::new(name).map_err(|_| format!("user name {name:?} contains NUL"))?;
    let mut groups = nix::unistd::getgrouplist(&cname, gid)
        .map_err(|e| format!("cannot list the groups of {name:?}: {e}"))?;
    if let Some(g) = extra.filter(|g| !groups.contains(g)) {
        groups.push(g);
    }
    Ok(groups)
}

/// Sets the supplementary groups, then all three gids, then all three
/// uids, and checks the result: the uids and gids are the ones asked for,
/// and, leaving root, `setuid(0)` fails.
pub(super) fn become_ids(uid: Uid, gid: Gid, groups: &[Gid]) -> Result<(), String> {
    use nix::unistd::{getresgid, getresuid, setgroups, setresgid, setresuid};
    setgroups(groups).map_err(|e| format!("setgroups: {e}"))?;
    setresgid(gid, gid, gid).map_err(|e| format!("setresgid({gid}): {e}"))?;
    setresuid(uid, uid, uid).map_err(|e| format!("setresuid({uid}): {e}"))?;
    let u = getresuid().map_err(|e| format!("getresuid: {e}"))?;
    let g = getresgid().map_err(|e| format!("getresgid: {e}"))?;
    if [u.real, u.effective, u.saved] != [uid; 3] || [g.real, g.effective, g.saved] != [gid; 3] {
        return Err(format!(
            "the ids did not take: uids {}/{}/{}, gids {}/{}/{}",
            u.real, u.effective, u.saved, g.real, g.effective, g.saved
        ));
    }
    if !uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err("setuid(0) still succeeds after the switch".into());
    }
    Ok(())
}
