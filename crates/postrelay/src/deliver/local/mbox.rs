//! Delivery into `<mbox_dir>/<user>` (mboxrd).
//!
//! Locking, in this order, each with a bounded wait ([`LOCK_WAIT`]):
//! 1. the dotlock `<mbox_dir>/<user>.lock` (`O_CREAT|O_EXCL`), removed when
//!    older than [`STALE_DOTLOCK`];
//! 2. an `fcntl` write lock on the whole mbox. It is an open-file-description
//!    lock (`F_OFD_SETLK`): it conflicts with the classic `F_SETLK` locks of
//!    MUAs and `procmail` exactly like one of them, and also with another
//!    delivery thread of this process, which a classic per-process lock
//!    would not (nor would it survive another thread closing the file).
//!
//! The mbox must be a regular file with one link, owned by the user; it is
//! opened with `O_NOFOLLOW`, checked on the descriptor, and re-checked
//! against the path once locked (an MUA may have replaced it meanwhile).
//! The message is appended as `From ` line, headers, body with `^>*From `
//! quoted, and a blank line; then fsync. On any error the file is
//! truncated back to its size before the delivery. A delivery killed
//! while writing cannot do that: it notes where it started in its dotlock
//! first, and the next delivery takes the dead one's lock over
//! ([`dotlock`]) and cuts the part off ([`undo`]).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

use super::copy;

pub(super) mod dotlock;
pub(super) mod undo;
use super::user::{LocalUser, running_as};
use super::{LocalMessage, copy_reason, delivery_headers, io_reason};
use crate::deliver::Reason;
use dotlock::DotLock;

/// How long to wait for each lock before deferring.
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(10);

/// A dotlock older than this is left over by a crashed program.
pub(super) const STALE_DOTLOCK: Duration = Duration::from_secs(5 * 60);

/// Pause between two attempts at a lock.
const LOCK_RETRY: Duration = Duration::from_millis(100);

/// Appends to `<mbox_dir>/<user>`; returns its path.
pub(super) fn deliver(
    user: &LocalUser,
    msg: &LocalMessage<'_>,
    body: &mut dyn Read,
    mbox_dir: &Path,
    lock_wait: Duration,
) -> Result<PathBuf, Reason> {
    running_as(user)?;
    match std::fs::metadata(mbox_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Reason::Local(format!(
                "mail spool directory {} is not a directory",
                mbox_dir.display()
            )));
        }
        Err(e) => return Err(io_reason("use mail spool directory", mbox_dir, &e)),
    }
    let path = mbox_dir.join(&user.name);
    let lock_path = mbox_dir.join(format!("{}.lock", user.name));

    let mut dotlock = DotLock::acquire(&lock_path, &path, lock_wait)?;
    let (file, _lock) = open_locked(&path, user, lock_wait)?;

    let mut start = file
        .metadata()
        .map_err(|e| io_reason("stat", &path, &e))?
        .len();
    if let Some(killed) = dotlock.left() {
        start = undo::repair(&file, &path, killed)?;
        dotlock.repaired();
    }
    let head = first_bytes(&file, start, &path, msg)?;
    dotlock.note_append(&file, start, &head)?;
    if let Err(reason) = append(&file, &head, &path, msg, body) {
        // Never leave half a message: a partial one would swallow the
        // next delivery into its body.
        if let Err(e) = file.set_len(start).and_then(|()| file.sync_all()) {
            tracing::error!(path = %path.display(), size = start, error = %e,
                "cannot truncate mbox back after a failed delivery");
            return Err(Reason::Local(format!(
                "{reason}; and truncating {} back to {start} bytes failed: {e}",
                path.display()
            )));
        }
        return Err(reason);
    }
    Ok(path)
}

/// What an append at `start` writes first: a line break if the last
/// message is damaged (the From line must start a line), and the From
/// line.
fn first_bytes(
    file: &File,
    start: u64,
    path: &Path,
    msg: &LocalMessage<'_>,
) -> Result<Vec<u8>, Reason> {
    let mut head = Vec::new();
    if start > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, start - 1)
            .map_err(|e| io_reason("read", path, &e))?;
        if last[0] != b'\n' {
            head.push(b'\n');
        }
    }
    head.extend_from_slice(&from_line(msg.sender, &jiff::ZonedDateTime::now()));
    Ok(head)
}

/// Writes one message (its first bytes `head`, see [`first_bytes`]) at
/// the end of the (locked) mbox and fsyncs it.
fn append(
    file: &File,
    head: &[u8],
    path: &Path,
    msg: &LocalMessage<'_>,
    body: &mut dyn Read,
) -> Result<(), Reason> {
    let werr = |e: std::io::Error| io_reason("write", path, &e);
    let mut out = BufWriter::with_capacity(copy::CHUNK, file);
    out.write_all(head).map_err(werr)?;
    out.write_all(&delivery_headers(msg)).map_err(werr)?;
    let open_line =
        copy::copy_body(body, &mut out, true).map_err(|e| copy_reason(msg.body, path, e))?;
    if open_line {
        out.write_all(b"\n").map_err(werr)?;
    }
    // The blank line that separates messages.
    out.write_all(b"\n").map_err(werr)?;
    out.flush().map_err(werr)?;
    drop(out);
    file.sync_all().map_err(|e| io_reason("fsync", path, &e))
}

/// `From <sender> <asctime date>\n`; `MAILER-DAEMON` for the null sender.
/// Whitespace and control characters in the sender (a quoted local part)
/// would break the line's parsing and become `_`.
pub(super) fn from_line(sender: &str, now: &jiff::ZonedDateTime) -> Vec<u8> {
    let sender: String = if sender.is_empty() {
        "MAILER-DAEMON".to_string()
    } else {
        sender
            .chars()
            .map(|c| {
                if c.is_whitespace() || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect()
    };
    // asctime(3): "Thu Nov 24 18:22:48 1986", the day padded with a space.
    format!("From {sender} {}\n", now.strftime("%a %b %e %H:%M:%S %Y")).into_bytes()
}

/// Opens (or creates) the mbox and takes its fcntl lock; retries when the
/// file was replaced between the open and the lock.
fn open_locked(
    path: &Path,
    user: &LocalUser,
    lock_wait: Duration,
) -> Result<(File, RecordLock), Reason> {
    for _ in 0..3 {
        let file = open_mbox(path, user)?;
        let lock = RecordLock::acquire(&file, path, lock_wait)?;
        let held = file.metadata().map_err(|e| io_reason("stat", path, &e))?;
        match std::fs::symlink_metadata(path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                return Ok((file, lock));
            }
            _ => continue,
        }
    }
    Err(Reason::Local(format!(
        "mailbox {} keeps being replaced while we lock it",
        path.display()
    )))
}

/// Opens the existing mbox safely, or creates it (0600; the user's, as
/// this code runs as the user, in the mail spool directory's group when
/// that directory is setgid, as Debian's `/var/mail` is).
fn open_mbox(path: &Path, user: &LocalUser) -> Result<File, Reason> {
    let flags = libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
    for _ in 0..2 {
        // O_NONBLOCK: a FIFO planted as the mbox must not hang us; it is
        // refused below.
        match OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(flags)
            .open(path)
        {
            Ok(file) => {
                check_mbox(&file, path, user)?;
                return Ok(file);
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(Reason::Local(format!(
                    "refusing to deliver to mailbox {}: it is a symbolic link",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_reason("open mailbox", path, &e)),
        }
        match OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(flags)
            .open(path)
        {
            Ok(file) => {
                let fail = |what: &str, e: std::io::Error| {
                    let reason = io_reason(what, path, &e);
                    let _ = std::fs::remove_file(path);
                    reason
                };
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| fail("set the mode of", e))?;
                return Ok(file);
            }
            // Created by someone else meanwhile: open that one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_reason("create mailbox", path, &e)),
        }
    }
    Err(Reason::Local(format!(
        "cannot open or create mailbox {}",
        path.display()
    )))
}

/// Refuses an mbox that is not a plain file of the user's: a hard link
/// (to `/etc/shadow`, say), a device, a FIFO, someone else's file.
fn check_mbox(file: &File, path: &Path, user: &LocalUser) -> Result<(), Reason> {
    let m = file.metadata().map_err(|e| io_reason("stat", path, &e))?;
    let refuse = |why: String| {
        Err(Reason::Local(format!(
            "refusing to deliver to mailbox {}: {why}",
            path.display()
        )))
    };
    if !m.file_type().is_file() {
        return refuse("it is not a regular file".into());
    }
    if m.nlink() != 1 {
        return refuse(format!("it has {} hard links", m.nlink()));
    }
    if m.uid() != user.uid.as_raw() {
        return refuse(format!(
            "it belongs to uid {}, not to {}",
            m.uid(),
            user.describe()
        ));
    }
    Ok(())
}

/// An fcntl (open file description) write lock on a whole file, released
/// on drop. Holds its own descriptor of the file's open file description.
pub(super) struct RecordLock {
    file: File,
}

fn whole_file(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0, // required for OFD locks
    }
}

impl RecordLock {
    fn acquire(file: &File, path: &Path, wait: Duration) -> Result<RecordLock, Reason> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(lock) = RecordLock::try_acquire(file, path)? {
                return Ok(lock);
            }
            if Instant::now() >= deadline {
                return Err(Reason::Local(format!(
                    "mailbox {} is locked by another program (waited {}s)",
                    path.display(),
                    wait.as_secs_f32()
                )));
            }
            sleep(LOCK_RETRY);
        }
    }

    /// The lock, or `None` while another open file description holds one.
    fn try_acquire(file: &File, path: &Path) -> Result<Option<RecordLock>, Reason> {
        let lock = whole_file(libc::F_WRLCK);
        loop {
            match fcntl(file, FcntlArg::F_OFD_SETLK(&lock)) {
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN | Errno::EACCES) => return Ok(None),
                Err(e) => return Err(io_reason("lock", path, &std::io::Error::from(e))),
            }
        }
        let file = file.try_clone().map_err(|e| io_reason("lock", path, &e))?;
        Ok(Some(RecordLock { file }))
    }
}

/// Whether another open file description (another process, or another
/// open of the file) holds a lock that would keep us from writing it.
fn locked_by_another(file: &File) -> bool {
    let mut probe = whole_file(libc::F_WRLCK);
    fcntl(file, FcntlArg::F_OFD_GETLK(&mut probe)).is_ok()
        && probe.l_type != libc::F_UNLCK as libc::c_short
}

impl Drop for RecordLock {
    fn drop(&mut self) {
        let _ = fcntl(
            &self.file,
            FcntlArg::F_OFD_SETLK(&whole_file(libc::F_UNLCK)),
        );
    }
}
