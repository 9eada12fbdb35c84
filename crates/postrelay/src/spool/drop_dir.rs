//! maildrop/ as a directory: its setup at start, and the file operations
//! pickup needs on it (list, open without following links, remove, move to
//! corrupt/). The file *format* and the modes that mark a file's state are
//! [`crate::maildrop`]'s; what a file's content means is pickup's.
//!
//! This is spool code because maildrop/ lives in the spool root and shares
//! its permissions: the spool stays the only code that creates, renames or
//! removes anything under the root. Not for: reading or checking a file's
//! content, or deciding what to do with it (`intake::pickup`).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::durable;
use super::id::QueueId;
use super::layout::CORRUPT_DIR;
use crate::maildrop;

/// maildrop/ of one spool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DropDir {
    root: PathBuf,
    dir: PathBuf,
}

/// What opening a file in maildrop/ found.
#[derive(Debug)]
pub enum Opened {
    /// The file, opened for reading (never through a symbolic link).
    File(File),
    /// Gone meanwhile (taken by another scan, or removed).
    Gone,
    /// A symbolic link: never followed.
    Symlink,
}

impl DropDir {
    pub(super) fn new(root: &Path) -> DropDir {
        DropDir {
            root: root.to_path_buf(),
            dir: maildrop::dir(root),
        }
    }

    /// `<spool>/maildrop`.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The path of file `name` in maildrop/, for log lines.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates maildrop/ and opens it (and search access to the spool
    /// root) to the `postdrop` group, before the daemon says it is ready,
    /// so that a `sendmail` run right after the start finds it open. A
    /// failure is logged, never fatal: root can still submit.
    pub fn setup(&self) {
        if let Err(e) = self.prepare() {
            tracing::error!(
                dir = %self.dir.display(), error = %e,
                "maildrop: cannot set up the directory; local submission (sendmail) will fail"
            );
        }
    }

    fn prepare(&self) -> io::Result<()> {
        let dir = &self.dir;
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => durable::sync_dir(&self.root)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if !fs::symlink_metadata(dir)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "exists and is not a directory",
            ));
        }
        let private = |why: String| -> io::Result<()> {
            tracing::warn!(
                dir = %dir.display(),
                "maildrop: {why}; only root can submit mail with sendmail. Create the group \
                 (groupadd --system {g}) and install postrelay-postdrop setgid {g} \
                 (chown root:{g}; chmod 2755), then restart",
                g = maildrop::GROUP
            );
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        };
        let group = match nix::unistd::Group::from_name(maildrop::GROUP) {
            Ok(Some(g)) => g,
            Ok(None) => return private(format!("the group {} does not exist", maildrop::GROUP)),
            Err(e) => return private(format!("cannot look up the group {}: {e}", maildrop::GROUP)),
        };
        for (path, mode) in [
            (dir.as_path(), maildrop::DIR_MODE),
            (self.root.as_path(), maildrop::ROOT_MODE),
        ] {
            if let Err(e) = nix::unistd::chown(path, None, Some(group.gid)) {
                return private(format!(
                    "cannot give {} to the group {}: {e}",
                    path.display(),
                    maildrop::GROUP
                ));
            }
            fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }

    /// File names in maildrop/, sorted (names are ULIDs: arrival order).
    /// Blocking.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Opens file `name` for reading: never through a symbolic link, and
    /// without blocking on a FIFO someone planted. Blocking.
    pub fn open(&self, name: &str) -> io::Result<Opened> {
        let flags = nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC;
        match OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(self.file(name))
        {
            Ok(f) => Ok(Opened::File(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Opened::Gone),
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => Ok(Opened::Symlink),
            Err(e) => Err(e),
        }
    }

    /// Removes file `name` (queued, abandoned or stale). Blocking.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.file(name))
    }

    /// Moves an unusable file to corrupt/ as `maildrop-<name>` (never
    /// retried), or removes it when even that fails; logs which, with the
    /// submitter's uid and why. Blocking.
    pub fn quarantine(&self, name: &str, uid: Option<u32>, why: &str) {
        let path = self.file(name);
        let target_name = if maildrop::is_drop_name(name) {
            format!("maildrop-{name}")
        } else {
            format!("maildrop-{}", QueueId::generate())
        };
        let target = self.root.join(CORRUPT_DIR).join(target_name);
        let uid = uid.map_or_else(|| "unknown".to_string(), |u| u.to_string());
        match fs::rename(&path, &target) {
            Ok(()) => tracing::error!(
                file = %path.display(), moved_to = %target.display(), uid = %uid, %why,
                "maildrop: unusable submission moved to corrupt/"
            ),
            Err(e) => {
                tracing::error!(
                    file = %path.display(), uid = %uid, %why, error = %e,
                    "maildrop: unusable submission; cannot move it to corrupt/, removing it"
                );
                let _ = fs::remove_file(&path);
            }
        }
    }
}
