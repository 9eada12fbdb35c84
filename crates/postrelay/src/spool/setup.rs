//! Setting up a spool directory: its private sub-directories and its lock.
//!
//! Used once by [`Spool::open_with`](super::Spool::open_with). Nothing here
//! reads or writes messages.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::DIR_MODE;
use super::durable;
use super::error::SpoolError;

/// Creates `dir` (and missing parents) with mode 0700; returns whether it
/// was created. An existing directory is kept as it is, with a warning if
/// others can read it.
pub(super) fn create_private_dir(dir: &Path) -> Result<bool, SpoolError> {
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(|e| SpoolError::io("create directory", dir, e))?;
            return Ok(true);
        }
        Err(e) => return Err(SpoolError::io("create directory", dir, e)),
    }
    let meta = std::fs::metadata(dir).map_err(|e| SpoolError::io("stat", dir, e))?;
    if !meta.is_dir() {
        return Err(SpoolError::io(
            "create directory",
            dir,
            io::Error::new(
                io::ErrorKind::NotADirectory,
                "exists and is not a directory",
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    // 0710 with the postdrop group is how pickup opens the spool root to
    // postrelay-postdrop (search only, to reach maildrop/): expected.
    let postdrop_root = mode == 0o710
        && nix::unistd::Group::from_name("postdrop")
            .ok()
            .flatten()
            .is_some_and(|g| std::os::unix::fs::MetadataExt::gid(&meta) == g.gid.as_raw());
    if mode & 0o077 != 0 && !postdrop_root {
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "spool: directory is accessible to other users; expected 0700");
    }
    Ok(false)
}

/// Opens the lock file and takes an exclusive flock without waiting; writes
/// our pid into it for humans.
pub(super) fn take_lock(path: &Path) -> Result<File, SpoolError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(durable::FILE_MODE)
        .open(path)
        .map_err(|e| SpoolError::io("open", path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(SpoolError::Locked {
                path: path.to_path_buf(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(SpoolError::io("lock", path, e)),
    }
    // Informational only; the flock is what counts.
    let pid = format!("{}\n", std::process::id());
    if let Err(e) = file
        .set_len(0)
        .and_then(|()| file.write_all(pid.as_bytes()))
    {
        tracing::warn!(path = %path.display(), error = %e, "spool: could not write pid to lock file");
    }
    Ok(file)
}
