//! Durable file writes, and the seam through which tests make them fail.
//!
//! Every spool operation that must survive a crash goes through [`FileOps`]:
//! creating a file (or reopening a recycled one), writing it, cutting it to
//! length, `fdatasync`, `rename`, `fsync` of a directory and unlinking. Production uses [`RealFs`]; tests substitute an
//! implementation that fails chosen calls with ENOSPC or EIO and check that
//! nothing is acknowledged and nothing half-written is left behind.
//! Directory creation and reads are not routed through the seam: they happen
//! at startup or are harmless to fail.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::SpoolError;

/// Mode of every file the spool creates: private to the daemon's user.
pub const FILE_MODE: u32 = 0o600;

/// The file system calls the spool needs for durability.
///
/// Each call gets the path it concerns, for error messages and so that a
/// fault injector can target e.g. only `.env` files or only `queue/`.
pub trait FileOps: Send + Sync + fmt::Debug {
    /// Creates a new file for writing, mode 0600, failing if it exists (`O_EXCL`).
    fn create_new(&self, path: &Path) -> io::Result<File>;
    /// Opens an existing regular file for writing at offset 0, keeping its
    /// content (no `O_CREAT`, no `O_TRUNC`; `O_NOFOLLOW`). Only for files
    /// taken from the free list, which the caller then overwrites and cuts
    /// to length with [`FileOps::set_len`].
    fn open_existing_for_write(&self, path: &Path) -> io::Result<File>;
    /// `ftruncate(2)`: makes `file` (which is `path`) exactly `len` bytes long.
    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()>;
    /// One `write(2)` to `file` (which is `path`).
    fn write(&self, file: &mut File, path: &Path, buf: &[u8]) -> io::Result<usize>;
    /// `fdatasync(2)`: the file's data and size are on stable storage.
    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()>;
    /// `rename(2)`, atomic within one file system.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// `renameat2(2)` with `RENAME_NOREPLACE`: like [`FileOps::rename`] but
    /// fails with `AlreadyExists` instead of replacing `to`. A file system
    /// that cannot do it answers `EINVAL` (kind `InvalidInput`); a platform
    /// without the call, `Unsupported`.
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// `fsync(2)` of a directory: its entries (renames, unlinks) are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// `unlink(2)`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// `syncfs(2)` through `on`, a file of the spool's file system (`path`
    /// names it for errors): every write to it so far (data and metadata,
    /// ours and others') is on stable storage. `on` must stay open for
    /// the spool's whole life: the kernel reports a write-back error to a
    /// descriptor only if it was opened before the error.
    fn sync_filesystem(&self, on: &File, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl FileOps for RealFs {
    fn create_new(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(path)
    }

    fn open_existing_for_write(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW)
            .open(path)
    }

    fn set_len(&self, file: &File, _path: &Path, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn write(&self, file: &mut File, _path: &Path, buf: &[u8]) -> io::Result<usize> {
        file.write(buf)
    }

    fn sync_data(&self, file: &File, _path: &Path) -> io::Result<()> {
        file.sync_data()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE)
            .map_err(io::Error::from)
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn rename_noreplace(&self, _from: &Path, _to: &Path) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sync_dir(dir)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_filesystem(&self, on: &File, _path: &Path) -> io::Result<()> {
        nix::unistd::syncfs(on).map_err(io::Error::from)
    }
}

/// `fsync` of a directory, so that entries created, renamed or removed in it
/// survive a crash.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// The production [`FileOps`], shared.
pub fn real_fs() -> Arc<dyn FileOps> {
    Arc::new(RealFs)
}

/// Writes all of `buf` through `ops`, retrying short writes and `EINTR`.
pub fn write_all(
    ops: &dyn FileOps,
    file: &mut File,
    path: &Path,
    mut buf: &[u8],
) -> io::Result<()> {
    while !buf.is_empty() {
        match ops.write(file, path, buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates `path` (0600, `O_EXCL`), writes `bytes` to it and `fdatasync`s.
///
/// On failure the partial file is removed and the error names the step.
pub fn write_synced(ops: &dyn FileOps, path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    write_new(ops, path, bytes, true)
}

/// Creates `path` (0600, `O_EXCL`) and writes `bytes`, with `fdatasync`
/// when `sync`; without, the caller makes it durable some other way (a
/// `syncfs` of the batch). On failure the partial file is removed.
pub fn write_new(
    ops: &dyn FileOps,
    path: &Path,
    bytes: &[u8],
    sync: bool,
) -> Result<(), SpoolError> {
    let file = ops
        .create_new(path)
        .map_err(|e| SpoolError::io("create", path, e))?;
    overwrite(ops, file, 0, path, bytes, sync)
}

/// Writes `bytes` into `file` (which is `path`, open for writing at offset
/// 0 and `old_len` bytes long), cuts it to `bytes.len()` if it was longer,
/// then `fdatasync`s when `sync`. The cut comes before any sync, so nothing
/// of the file's earlier content survives once it is durable.
///
/// For a fresh file `old_len` is 0; for one taken from the free list it is
/// its length when it was opened. On failure `path` is removed.
pub fn overwrite(
    ops: &dyn FileOps,
    mut file: File,
    old_len: u64,
    path: &Path,
    bytes: &[u8],
    sync: bool,
) -> Result<(), SpoolError> {
    let len = bytes.len() as u64;
    let result = write_all(ops, &mut file, path, bytes)
        .map_err(|e| SpoolError::io("write", path, e))
        .and_then(|()| cut(ops, &file, path, old_len, len))
        .and_then(|()| {
            if !sync {
                return Ok(());
            }
            ops.sync_data(&file, path)
                .map_err(|e| SpoolError::io("fdatasync", path, e))
        });
    drop(file);
    if result.is_err() {
        remove_quietly(ops, path);
    }
    result
}

/// Cuts `file` (which is `path`) to `len` bytes if it is longer (`old_len`
/// is its length before it was written); a no-op for fresh files.
pub(crate) fn cut(
    ops: &dyn FileOps,
    file: &File,
    path: &Path,
    old_len: u64,
    len: u64,
) -> Result<(), SpoolError> {
    if old_len <= len {
        return Ok(());
    }
    ops.set_len(file, path, len)
        .map_err(|e| SpoolError::io("truncate", path, e))
}

/// Replaces `final_path` with `bytes` so that a crash leaves either the old
/// or the new content, never a mix: write to a fresh file in `tmp_dir`,
/// `fdatasync`, `rename` over `final_path`, `fsync` its directory.
///
/// `tmp_dir` must be on the same file system as `final_path`. If the final
/// directory `fsync` fails, the rename has happened (the new content is
/// visible) but may not survive a crash; the error says so by naming the
/// directory.
pub fn write_atomically(
    ops: &dyn FileOps,
    tmp_dir: &Path,
    final_path: &Path,
    bytes: &[u8],
) -> Result<(), SpoolError> {
    let tmp = temp_name(tmp_dir, final_path);
    write_synced(ops, &tmp, bytes)?;
    if let Err(e) = ops.rename(&tmp, final_path) {
        remove_quietly(ops, &tmp);
        return Err(SpoolError::io("rename", final_path, e));
    }
    let dir = final_path.parent().unwrap_or(Path::new("."));
    ops.sync_dir(dir)
        .map_err(|e| SpoolError::io("fsync directory", dir, e))
}

/// `tmp_dir/<final name>.<random>`: unique, and recognisably ours in a listing.
pub fn temp_name(tmp_dir: &Path, final_path: &Path) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tmp_dir.join(format!("{name}.{:016x}", rand::random::<u64>()))
}

/// Best-effort unlink on an error path; a leftover is logged and will be
/// removed by the next recovery (tmp/) or reported by it (queue/).
pub fn remove_quietly(ops: &dyn FileOps, path: &Path) {
    match ops.remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "spool: could not remove file")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::faults::{Fault, FaultyFs, Op};

    #[test]
    fn write_atomically_replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let target = dir.path().join("f.env");
        write_atomically(&RealFs, &tmp, &target, b"one").unwrap();
        write_atomically(&RealFs, &tmp, &target, b"two").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn failed_steps_keep_the_old_content_and_clean_tmp() {
        for op in [Op::Create, Op::Write, Op::SyncData, Op::Rename] {
            let dir = tempfile::tempdir().unwrap();
            let tmp = dir.path().join("tmp");
            std::fs::create_dir(&tmp).unwrap();
            let target = dir.path().join("f.env");
            std::fs::write(&target, b"old").unwrap();
            let fs = FaultyFs::new([Fault::eio(op, "")]);
            let err = write_atomically(&fs, &tmp, &target, b"new").unwrap_err();
            assert!(matches!(err, SpoolError::Io { .. }), "{op:?}: {err}");
            assert_eq!(std::fs::read(&target).unwrap(), b"old", "{op:?}");
            assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "{op:?}");
        }
    }

    #[test]
    fn short_and_interrupted_writes_are_completed() {
        let short = FaultyFs::new([]).with_short_writes();
        let interrupted = FaultyFs::new([]).with_interrupted_writes();
        for (what, fs) in [("short", short), ("EINTR", interrupted)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x");
            write_synced(&fs, &path, b"hello, world").unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(std::fs::read(&path).unwrap(), b"hello, world", "{what}");
        }
    }

    #[test]
    fn a_recycled_file_is_not_reopened_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = RealFs.open_existing_for_write(&link).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::ELOOP), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }
}
