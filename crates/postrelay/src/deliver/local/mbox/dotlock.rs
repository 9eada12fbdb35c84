//! The dotlock `<mbox_dir>/<user>.lock` of one mbox delivery: made with
//! `O_CREAT|O_EXCL`, or taken over from a killed postrelay delivery
//! ([`undo::adopt`]), and removed when the delivery is done.
//!
//! A postrelay delivery also holds an `fcntl` (open file description)
//! lock on the dotlock file itself for as long as it holds the dotlock:
//! the kernel drops it when the process dies, so a free lock on the file
//! says that no live postrelay delivery holds it. That is what makes a
//! take-over exclusive (two deliveries that both find a killed one's
//! dotlock: the one that gets the file's lock adopts it, the other waits),
//! and what keeps a long delivery's dotlock from being removed as stale.
//!
//! A delivery that took a lock over holds the killed delivery's append
//! until it has repaired the mbox ([`DotLock::repaired`]); should it fail
//! before that, it leaves the dotlock in place with the killed delivery's
//! note, so that the next delivery takes it over and repairs.
//!
//! Not for: the mbox's own `fcntl` lock (`mbox::open_locked`), or what the
//! note says and how a killed append is undone ([`undo`]).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use nix::libc;

use super::{LOCK_RETRY, RecordLock, STALE_DOTLOCK, undo};
use crate::deliver::Reason;
use crate::deliver::local::io_reason;

/// The dotlock file; removed on drop if it is still the one we made (or
/// took over and repaired), else left with the killed delivery's note.
pub(in crate::deliver::local) struct DotLock {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Open, to note in it who holds it and where the append starts.
    file: File,
    /// The lock on `file` that says a live delivery holds it (taken right
    /// after the file is made).
    held: Option<RecordLock>,
    /// The note of the killed delivery whose lock this was, while its
    /// append is not repaired.
    left: Option<undo::Note>,
}

impl DotLock {
    /// Makes the dotlock `lock` of `mbox`, or takes over a killed
    /// delivery's; waits up to `wait` for another holder.
    pub(in crate::deliver::local) fn acquire(
        lock: &Path,
        mbox: &Path,
        wait: Duration,
    ) -> Result<DotLock, Reason> {
        let deadline = Instant::now() + wait;
        loop {
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(lock)
            {
                Ok(file) => return DotLock::made(file, lock, deadline),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if let Some(adopted) = undo::adopt(lock) {
                        tracing::warn!(lock = %lock.display(), pid = adopted.note.pid,
                            "taking over the mailbox lock of a killed delivery");
                        return DotLock::adopted(adopted, lock);
                    }
                    if remove_if_stale(lock) {
                        continue;
                    }
                }
                Err(e) => return Err(io_reason("create lock file", lock, &e)),
            }
            if Instant::now() >= deadline {
                return Err(Reason::Local(format!(
                    "mailbox {} is locked: {} exists (waited {}s)",
                    mbox.display(),
                    lock.display(),
                    wait.as_secs_f32()
                )));
            }
            sleep(LOCK_RETRY);
        }
    }

    /// A dotlock we just made: its file locked, and our note in it.
    fn made(file: File, lock: &Path, deadline: Instant) -> Result<DotLock, Reason> {
        // The guard first: should what follows fail (a full disk, a
        // quota), dropping it removes the lock file. Until the file is
        // locked and noted, a delivery that looks at it finds no note of a
        // killed one, so it does not take it over.
        let mut dotlock = DotLock::of(file, lock, None)?;
        let wait = deadline.saturating_duration_since(Instant::now());
        dotlock.held = Some(RecordLock::acquire(&dotlock.file, lock, wait)?);
        undo::note(&dotlock.file, lock, &undo::Note::mine(None))?;
        Ok(dotlock)
    }

    /// A killed delivery's dotlock, taken over: our note, which keeps the
    /// killed delivery's append until it is undone (should this delivery
    /// be killed first, the next one still finds it there).
    fn adopted(adopted: undo::Adopted, lock: &Path) -> Result<DotLock, Reason> {
        let append = adopted.note.append.clone();
        let left = append.is_some().then_some(adopted.note);
        let mut dotlock = DotLock::of(adopted.file, lock, left)?;
        dotlock.held = Some(adopted.held);
        undo::note(&dotlock.file, lock, &undo::Note::mine(append))?;
        Ok(dotlock)
    }

    fn of(file: File, lock: &Path, left: Option<undo::Note>) -> Result<DotLock, Reason> {
        let m = file.metadata().map_err(|e| io_reason("stat", lock, &e))?;
        Ok(DotLock {
            path: lock.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
            file,
            held: None,
            left,
        })
    }

    /// The append of the killed delivery whose lock this was, to undo.
    pub(in crate::deliver::local) fn left(&self) -> Option<&undo::Append> {
        self.left.as_ref().and_then(|n| n.append.as_ref())
    }

    /// The killed delivery's append is undone (or found not to be undone
    /// safely): its note is no longer kept.
    pub(in crate::deliver::local) fn repaired(&mut self) {
        self.left = None;
    }

    /// Notes, before the first byte is written, where the append to `mbox`
    /// starts and what it writes first, so that a kill can be undone.
    pub(in crate::deliver::local) fn note_append(
        &self,
        mbox: &File,
        start: u64,
        head: &[u8],
    ) -> Result<(), Reason> {
        let m = mbox
            .metadata()
            .map_err(|e| io_reason("stat", &self.path, &e))?;
        let append = undo::Append {
            dev: m.dev(),
            ino: m.ino(),
            start,
            head: head.to_vec(),
        };
        undo::note(&self.file, &self.path, &undo::Note::mine(Some(append)))
    }
}

/// Removes a dotlock left over for longer than [`STALE_DOTLOCK`], unless
/// a live postrelay delivery holds it (its file is locked). Two deliveries
/// may both find another program's lock stale and one remove the other's
/// fresh lock; the mbox's `fcntl` lock still keeps them apart.
fn remove_if_stale(lock: &Path) -> bool {
    let Ok(m) = std::fs::symlink_metadata(lock) else {
        return true; // gone meanwhile: try again at once
    };
    let age = m
        .modified()
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    if age <= STALE_DOTLOCK || held_by_a_delivery(lock) {
        return false;
    }
    tracing::warn!(lock = %lock.display(), age_secs = age.as_secs(), "removing stale mailbox lock file");
    match std::fs::remove_file(lock) {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Whether the file at `lock` is a plain file whose `fcntl` lock a live
/// process holds (a postrelay delivery holds its dotlock's).
fn held_by_a_delivery(lock: &Path) -> bool {
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(lock)
    else {
        return false;
    };
    file.metadata().is_ok_and(|m| m.file_type().is_file()) && super::locked_by_another(&file)
}

/// Removes the file at `path` if it is still the one of `dev` and `ino`.
fn remove_if_same(path: &Path, dev: u64, ino: u64) {
    if let Ok(m) = std::fs::symlink_metadata(path)
        && m.dev() == dev
        && m.ino() == ino
    {
        let _ = std::fs::remove_file(path);
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        if let Some(killed) = &self.left {
            // Taken over but not repaired: the lock stays, with the killed
            // delivery's note, for the next delivery to take over.
            if let Err(e) = undo::note(&self.file, &self.path, killed) {
                tracing::error!(lock = %self.path.display(), error = %e,
                    "cannot give the lock of a killed delivery back its note");
            }
            return;
        }
        // Only our own: a lock removed as stale and re-made by another
        // program is theirs.
        remove_if_same(&self.path, self.dev, self.ino);
    }
}
