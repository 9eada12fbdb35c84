//! What `postrelay init` writes: the configuration text, and the two files
//! put in place atomically (a temporary file renamed, or linked when an
//! existing file must not be replaced), the password file owned by the
//! user the daemon runs as.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User, fchown};

use super::{Answers, InitError};
use crate::config;
use crate::import::toml_string;

/// Writes the password file and the configuration; on any error, nothing
/// new is left behind.
pub(super) fn write(a: &Answers, force: bool) -> Result<(), InitError> {
    if !force {
        for path in [&a.output, &a.password_file] {
            if std::fs::symlink_metadata(path).is_ok() {
                return Err(InitError::Exists { path: path.clone() });
            }
        }
    }
    let (uid, gid) = owner(&a.daemon_user)?;
    if let Some(dir) = a.output.parent() {
        std::fs::create_dir_all(dir).map_err(|source| InitError::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    let made = secrets_dir(&a.password_file, uid, gid)?;
    let result = place_both(a, force, uid, gid);
    if let (Err(_), Some(dir)) = (&result, made) {
        let _ = std::fs::remove_dir(dir);
    }
    result
}

/// The password file, checked with the configuration, then both put in
/// place.
fn place_both(a: &Answers, force: bool, uid: u32, gid: u32) -> Result<(), InitError> {
    let pw_tmp = temporary(
        &a.password_file,
        format!("{}\n", a.password),
        0o600,
        uid,
        gid,
    )?;
    // The same load check-config does, the secret and its owner included,
    // on the temporary password file: nothing is placed unless it passes.
    let origin = a.output.display().to_string();
    if let Err(e) = config::parse(&render(a, &pw_tmp), &origin) {
        let _ = std::fs::remove_file(&pw_tmp);
        return Err(InitError::Invalid(e));
    }
    let cfg_tmp = match temporary(&a.output, render(a, &a.password_file), 0o644, 0, 0) {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_file(&pw_tmp);
            return Err(e);
        }
    };
    let placed = place(&pw_tmp, &a.password_file, force);
    if placed.is_err() {
        let _ = std::fs::remove_file(&pw_tmp);
        let _ = std::fs::remove_file(&cfg_tmp);
        return placed;
    }
    let placed = place(&cfg_tmp, &a.output, force);
    if placed.is_err() {
        let _ = std::fs::remove_file(&cfg_tmp);
    }
    placed
}

/// Who must own the password file: the daemon's user when run as root
/// (root for `root`), else the caller.
fn owner(daemon_user: &str) -> Result<(u32, u32), InitError> {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        return Ok((euid.as_raw(), nix::unistd::getegid().as_raw()));
    }
    match User::from_name(daemon_user) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        _ => Err(InitError::NoUser(daemon_user.to_owned())),
    }
}

/// Creates the password file's directory when missing: mode 0700, owned by
/// the daemon's user, so that it can read the file after dropping root.
/// Returns the directory when it was made here.
fn secrets_dir(file: &Path, uid: u32, gid: u32) -> Result<Option<&Path>, InitError> {
    let Some(dir) = file.parent() else {
        return Ok(None);
    };
    if dir.exists() {
        return Ok(None);
    }
    let err = |source| InitError::Write {
        path: dir.to_owned(),
        source,
    };
    DirBuilder::new().mode(0o700).create(dir).map_err(err)?;
    nix::unistd::chown(dir, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .map_err(|e| err(e.into()))?;
    Ok(Some(dir))
}

/// Writes `text` to a new temporary file next to `path` with `mode` and
/// owner, flushed to disk; returns its name.
fn temporary(
    path: &Path,
    text: String,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<PathBuf, InitError> {
    let name = path
        .file_name()
        .map_or("postrelay".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.init-tmp"));
    let err = |source| InitError::Write {
        path: tmp.clone(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    let done = fchown(&f, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .map_err(std::io::Error::from)
        .and_then(|()| f.write_all(text.as_bytes()))
        .and_then(|()| f.sync_all());
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(tmp)
}

/// Puts `tmp` at `path`: renamed over it with `force`, else linked (which
/// fails when `path` appeared meanwhile) and the temporary name removed.
fn place(tmp: &Path, path: &Path, force: bool) -> Result<(), InitError> {
    let result = if force {
        std::fs::rename(tmp, path)
    } else {
        std::fs::hard_link(tmp, path).and_then(|()| std::fs::remove_file(tmp))
    };
    result.map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => InitError::Exists {
            path: path.to_owned(),
        },
        _ => InitError::Write {
            path: path.to_owned(),
            source,
        },
    })
}

/// The configuration text: the answers, each with a comment; everything
/// else keeps its default.
pub(super) fn render(a: &Answers, password_file: &Path) -> String {
    let p = &a.provider;
    let mut o = format!(
        "# postrelay configuration written by `postrelay init` for {id}.\n\
         # Every setting not written here has its default; postrelay.example.toml\n\
         # and docs/config.md describe them all. `postrelay check-config` shows the\n\
         # effective settings, `postrelay doctor` checks the setup.\n\
         \n\
         [daemon]\n\
         # The user the daemon runs as once its ports are bound; it must own the\n\
         # password file.\n\
         user = {user}\n",
        id = p.id,
        user = toml_string(&a.daemon_user),
    );
    if let Some(sender) = &a.sender {
        o.push_str(&format!(
            "\n[routing]\n\
             # Mail from local senders (root, cron, www-data@localhost) leaves with\n\
             # this address, which {id} must have verified.\n\
             rewrite_senders = {s}\n",
            id = p.id,
            s = toml_string(sender),
        ));
    }
    o.push_str(&format!(
        "\n[[relay]]\n\
         name = {name}\n\
         # {id} publishes {host} port {port} ({tls}); the keys below override that.\n\
         provider = {provider}\n",
        name = toml_string(&a.relay),
        id = p.id,
        host = p.host,
        port = p.port,
        tls = p.tls.as_str(),
        provider = toml_string(&p.id),
    ));
    if let Some(h) = &a.args_host {
        o.push_str(&format!("host = {}\n", toml_string(h)));
    }
    if let Some(port) = a.port {
        o.push_str(&format!("port = {port}\n"));
    }
    if let Some(tls) = &a.tls {
        o.push_str(&format!("tls = {}\n", toml_string(tls)));
    }
    if let Some(ca) = &a.ca_file {
        o.push_str(&format!(
            "# The relay's certificate is verified with these CA certificates.\n\
             ca_file = {}\n",
            toml_string(&ca.to_string_lossy())
        ));
    }
    o.push_str(&format!(
        "# SMTP AUTH; the password file holds only the password (mode 0600).\n\
         username = {}\n\
         password_file = {}\n",
        toml_string(&a.user),
        toml_string(&password_file.to_string_lossy()),
    ));
    o
}
