//! `[daemon]`: the user the daemon runs as once its sockets are bound.
//!
//! Only the setting and its checks live here; the privilege drop itself is
//! [`crate::privsep`]'s. Also decides who must own secret files: the user
//! the daemon will run as, since a reload (SIGHUP) re-reads them after the
//! drop.

use serde::Deserialize;

use super::validate::Locator;
use super::{ConfigError, DaemonSettings};

/// The user the daemon drops to by default.
pub const DEFAULT_USER: &str = "postrelay";

/// `[daemon]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DaemonFile {
    pub user: Option<String>,
}

pub(super) fn daemon(file: DaemonFile, loc: &Locator<'_>) -> Result<DaemonSettings, ConfigError> {
    let user = file.user.unwrap_or_else(|| DEFAULT_USER.to_owned());
    if user.is_empty()
        || user.starts_with('-')
        || !user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(loc.value_error(
            "daemon.user",
            "must be a login name such as \"postrelay\" (letters, digits, '_', '-', '.'), \
             or \"root\" to keep running as root",
        ));
    }
    Ok(DaemonSettings { user })
}

/// The uid secret files must belong to: the user the daemon runs as after
/// the drop (started as root and `user` not root), else the effective uid.
/// A user that does not exist yet gives the effective uid; the daemon
/// refuses to start then anyway.
pub(super) fn secret_owner(file: &DaemonFile) -> u32 {
    secret_owner_for(file.user.as_deref())
}

/// [`secret_owner`] for `[daemon] user` as written (`None`: absent).
pub(super) fn secret_owner_for(user: Option<&str>) -> u32 {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        return euid.as_raw();
    }
    let name = user.unwrap_or(DEFAULT_USER);
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => u.uid.as_raw(),
        _ => euid.as_raw(),
    }
}
