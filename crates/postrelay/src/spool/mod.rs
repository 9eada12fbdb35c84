//! The spool: the only code that touches the queue directories.
//!
//! It stores messages so that **nothing acknowledged is ever lost**: a
//! message is committed (and only then may SMTP say 250) once its body and
//! envelope are durably in queue/. On disk:
//!
//! ```text
//! <root>/lock      flock held by the one daemon using this spool
//! <root>/tmp/      envelopes being written; emptied by recovery at startup
//! <root>/queue/    <id>.msg (body, immutable) + <id>.env (envelope JSON)
//! <root>/hold/     <id>.env of held messages (the body stays in queue/)
//! <root>/corrupt/  files that failed to parse, kept for humans
//! <root>/free/     envelope files of delivered messages kept for reuse; emptied at startup
//! <root>/maildrop/ files left by `sendmail` for pickup (see `drop_dir.rs`)
//! <root>/journal   the commit journal of [`SyncMode::Journal`] (see `journal.rs`)
//! ```
//!
//! A message exists iff its `<id>.env` exists in queue/ or hold/. The write
//! path is: [`Spool::new_body`] (`queue/<id>.msg`, written in place) → write
//! → [`Spool::stage`] (envelope, with the body's checksum and its own, in
//! `tmp/<id>.env` or in a recycled file in free/; with
//! [`SyncMode::Filesystem`] renamed into queue/ at once, with
//! [`SyncMode::Files`] both files `fdatasync`ed) → [`Spool::commit_batch`]
//! (with [`SyncMode::Filesystem`] one `syncfs` for the whole batch and
//! nothing else; with [`SyncMode::Files`] rename each envelope into queue/
//! and one `fsync` of queue/ for the whole batch), usually through the
//! queue's group committer (`queue::commit`). With [`SyncMode::Journal`] the committer instead
//! appends the batch to the commit journal and `fdatasync`s that alone,
//! renames with no sync, and makes queue/ durable later at a checkpoint;
//! opening the spool replays the journal (`commit.rs`, `journal.rs`).
//! Removal runs the other way: envelope, a flush (`fsync` of queue/ or
//! `syncfs`), body.
//!
//! Files are recycled: a delivered message's envelope moves to free/ and its
//! body stays in queue/ under its old name instead of being unlinked, and new
//! messages take those files instead of creating them, because inode
//! allocation and eviction were the daemon's largest CPU cost (see
//! `free.rs` for why this is safe).
//!
//! This module does not schedule, deliver or index messages (that is
//! `queue`), nor does it speak SMTP. Its calls block on disk I/O; async
//! callers use `spawn_blocking` or the queue's committer.

mod body;
mod commit;
mod drop_dir;
pub mod durable;
mod envelope;
mod envelopes;
mod error;
mod free;
mod health;
mod id;
mod journal;
mod layout;
mod progress;
mod recover;
mod setup;
mod stage;

#[cfg(test)]
pub(crate) mod faults;
#[cfg(test)]
pub(crate) mod recording;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use body::{BodyWriter, Staged};
pub use commit::CHECKPOINT_INTERVAL;
pub use drop_dir::{DropDir, Opened};
pub use durable::{FileOps, RealFs};
pub use envelope::{
    BodyType, ENVELOPE_VERSION, Envelope, EnvelopeError, Origin, REASON_FIRST_ATTEMPT, RcptState,
    Recipient,
};
pub use envelopes::{Listed, ListedRecipient};
pub use error::SpoolError;
pub use health::{Health, HealthOptions};
pub use id::{FileKind, InvalidQueueId, QueueId};
pub use journal::MAX_JOURNALED_BODY;
pub use layout::{CORRUPT_DIR, Layout, Location, SpoolReader};
pub use recover::{Found, RecoveryReport};

use free::FreeList;
use health::HealthSampler;
use layout::LOCK_FILE;
use setup::{create_private_dir, take_lock};

/// Whether the spool at `root` could take a message now (tmp/ writable,
/// enough space and inodes), sampled once, without opening the spool: for
/// `postrelay doctor`, beside a daemon that holds the spool's lock.
pub fn sample_health_at(root: &Path, options: &HealthOptions) -> Health {
    health::sample(options, &root.join(layout::TMP_DIR))
}

/// The messages that the commit journal at `root` keeps alive now: those
/// a crash would make the next start rewrite from it if their files in
/// queue/ had not reached the disk (none without a journal). Reads only,
/// without the spool's lock: for diagnostics and tests.
pub fn journal_pending(root: &Path) -> Result<Vec<QueueId>, SpoolError> {
    journal::recover::pending(root)
}

/// The current time in Unix milliseconds, the unit of every timestamp in
/// an [`Envelope`]. A clock before 1970 reads as 0.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Mode of every directory the spool creates.
pub const DIR_MODE: u32 = 0o700;

/// How a [`Spool`] is opened; `Default` is what the daemon uses.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Free-space thresholds for [`Spool::health`].
    pub health: HealthOptions,
    /// The file system calls used for durable writes (a test seam).
    pub file_ops: Arc<dyn FileOps>,
    /// How a batch is made durable.
    pub sync: SyncMode,
}

/// How a batch of staged messages is made durable (see
/// [`Spool::commit_batch`]). Both make everything durable before any
/// message is acknowledged; they differ in cost and isolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// `fdatasync` of each body and envelope while staging.
    Files,
    /// Nothing while staging; one `syncfs` per batch in the committer.
    Filesystem,
    /// Nothing while staging; one record per message in the commit
    /// journal and one `fdatasync` of it per batch; `syncfs` only at
    /// checkpoints (see `journal.rs`). Bodies over
    /// [`journal::MAX_JOURNALED_BODY`] are committed as with `Filesystem`.
    Journal,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            health: HealthOptions::default(),
            file_ops: durable::real_fs(),
            sync: SyncMode::Files,
        }
    }
}

/// An open spool, exclusively locked by this process. Cheap to clone.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    ops: Arc<dyn FileOps>,
    sync: SyncMode,
    health: HealthSampler,
    /// Serialises hold, release, remove and rewrite, so that each one's
    /// check-then-rename is atomic with respect to the others.
    admin: Mutex<()>,
    /// Files kept for reuse, and messages removed lazily whose bodies wait
    /// for the next fsync.
    free: FreeList,
    /// An envelope was renamed over another in queue/ (a delivery
    /// attempt's rewrite) and no `fsync` of queue/ has covered it yet: the
    /// committer's next one does (see [`Spool::rewrite_envelope_in_place`]).
    queue_unsynced: AtomicBool,
    /// The commit journal, with [`SyncMode::Journal`] (appended to by the
    /// committer, checkpointed by it or by its checkpoint thread).
    journal: Option<journal::Journal>,
    /// Messages rewritten from the journal when the spool was opened.
    replayed: journal::recover::Replayed,
    /// Holds the flock for as long as the spool is open; also the
    /// descriptor `syncfs` goes through (open since the start, so every
    /// write-back error since then is reported).
    lock: File,
    /// Held across each `syncfs`, so that an error it reports is seen
    /// by the caller that made it, before any other `syncfs` can return.
    syncfs: Mutex<()>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("root", &self.inner.layout.root)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (creating if needed) the spool at `root` and takes its lock.
    ///
    /// Used by the daemon, and by admin commands run while the daemon is
    /// down; fails with [`SpoolError::Locked`] if another process has it.
    /// Call [`Spool::recover`] next.
    pub fn open(root: &Path) -> Result<Spool, SpoolError> {
        Spool::open_with(root, SpoolOptions::default())
    }

    /// [`Spool::open`] with explicit options.
    pub fn open_with(root: &Path, options: SpoolOptions) -> Result<Spool, SpoolError> {
        let layout = Layout::new(root);
        let mut created = create_private_dir(root)?;
        let lock = take_lock(&root.join(LOCK_FILE))?;
        for dir in [
            &layout.tmp,
            &layout.queue,
            &layout.hold,
            &layout.corrupt,
            &layout.free,
        ] {
            created |= create_private_dir(dir)?;
        }
        if created {
            // New directory entries are durable only once their parent is synced.
            durable::sync_dir(root).map_err(|e| SpoolError::io("fsync directory", root, e))?;
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                durable::sync_dir(parent)
                    .map_err(|e| SpoolError::io("fsync directory", parent, e))?;
            }
        }
        let ops = options.file_ops;
        // Whatever the mode now: a journal left by an earlier run is replayed.
        let replayed = journal::recover::replay(&layout, &*ops, &lock)?;
        let journal = match options.sync {
            SyncMode::Journal => journal::Journal::open(&*ops, root, replayed.header)
                .inspect_err(|e| {
                    tracing::warn!(
                        error = %e,
                        "spool: cannot set up the commit journal (it needs 16 MiB on the \
                         spool's file system); committing with an fdatasync of each file \
                         instead (as with queue.sync = \"files\": slower, nothing is lost). \
                         Free space there, or set queue.sync to \"files\" or \"filesystem\", \
                         and restart"
                    );
                })
                .ok(),
            SyncMode::Files | SyncMode::Filesystem => None,
        };
        let health = HealthSampler::new(options.health, &layout.tmp);
        let free = FreeList::new(layout.free.clone());
        Ok(Spool {
            inner: Arc::new(Inner {
                layout,
                ops,
                sync: options.sync,
                health,
                admin: Mutex::new(()),
                free,
                queue_unsynced: AtomicBool::new(false),
                journal,
                replayed,
                lock,
                syncfs: Mutex::new(()),
            }),
        })
    }

    /// Read-only access for `mailq` while a daemon runs: no lock, no writes,
    /// nothing created.
    pub fn open_readonly(root: &Path) -> Result<SpoolReader, SpoolError> {
        let layout = Layout::new(root);
        for dir in [&layout.queue, &layout.hold] {
            let meta = std::fs::metadata(dir).map_err(|e| SpoolError::io("open spool", dir, e))?;
            if !meta.is_dir() {
                return Err(SpoolError::io(
                    "open spool",
                    dir,
                    io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
                ));
            }
        }
        Ok(SpoolReader::new(layout))
    }

    /// The spool root.
    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }

    /// A read-only view of this spool.
    pub fn reader(&self) -> SpoolReader {
        SpoolReader::new(self.inner.layout.clone())
    }

    /// Cleans up after a crash; call once after [`Spool::open`], before
    /// accepting or scheduling anything.
    ///
    /// Empties tmp/ and free/; deletes bodies in queue/ that have no
    /// envelope (never acknowledged); moves to corrupt/ (with a loud error
    /// log) envelopes that do not parse, name another id, lack a body or
    /// disagree with its size; leaves unknown files alone. Nothing
    /// acknowledged is deleted.
    pub fn recover(&self) -> Result<RecoveryReport, SpoolError> {
        let _admin = self.admin();
        self.inner.free.forget_ready();
        let mut report = recover::recover(&self.inner.layout, &*self.inner.ops)?;
        report.journal_records = self.inner.replayed.records;
        report.journal_rewritten = self.inner.replayed.rewritten;
        Ok(report)
    }

    /// Removes a delivered message cheaply: its envelope leaves queue/ now
    /// (renamed into free/ for reuse, or unlinked when free/ is full): the
    /// message stops existing for `list` and the scheduler. Its body stays
    /// until the next `fsync` of queue/ has made that durable, done by the
    /// committer ([`Spool::commit_batch`] or [`Spool::reap_removed`]); only
    /// then may either file be reused (the body where it lies, if
    /// `body_size`, the size its envelope records, is small enough) or is
    /// the body unlinked. No `fsync` of its own, and no `stat`: the rename
    /// says whether the envelope was in queue/.
    ///
    /// After a crash either the envelope is back with its body (the
    /// message is delivered again: a duplicate, never a loss) or it is gone
    /// and the body is an orphan that recovery removes. An envelope
    /// without its body, which recovery would report as corrupt, cannot
    /// happen. Call it only once nothing reads the message's files any
    /// more (see `free.rs`). A message in hold/ is removed with
    /// [`Spool::remove`] (unlinked and synced, not recycled).
    pub fn remove_lazily(&self, id: &QueueId, body_size: u64) -> Result<(), SpoolError> {
        let admin = self.admin();
        let inner = &self.inner;
        if inner
            .free
            .retire(&*inner.ops, &inner.layout, id, body_size)?
        {
            return Ok(());
        }
        // Not in queue/ (the admin lock keeps it from moving meanwhile).
        match self.locate(id)? {
            None => Err(SpoolError::NotFound { id: *id }),
            Some(_) => {
                drop(admin);
                self.remove(id)
            }
        }
    }

    /// Unlinks the bodies kept in queue/ for reuse; the committer calls it
    /// as it stops, after its last [`Spool::reap_removed`], so that the next
    /// start does not find them as bodies without a message.
    pub fn discard_kept_bodies(&self) {
        self.inner.free.discard_bodies(&*self.inner.ops);
    }

    /// All messages in queue/ and hold/, sorted by id; unreadable envelopes
    /// are skipped with a warning (recovery deals with them).
    pub fn list(&self) -> Result<Vec<(Envelope, Location)>, SpoolError> {
        self.inner.layout.list()
    }

    /// One message's envelope and location; [`SpoolError::NotFound`] if unknown.
    pub fn read(&self, id: &QueueId) -> Result<(Envelope, Location), SpoolError> {
        self.inner.layout.read(id)
    }

    /// `queue/<id>.msg`, where the body is whether the message is held or not.
    pub fn body_path(&self, id: &QueueId) -> PathBuf {
        self.inner.layout.body_path(id)
    }

    /// Replaces the envelope of an existing message atomically wherever it
    /// is (queue/ or hold/: the administrator may have held or released it
    /// meanwhile), and says where. `NotFound` if the message is gone: the
    /// envelope is not written, so a stale update never brings a deleted
    /// message back. The new file is written and `fdatasync`ed before the
    /// spool's lock is taken, so a removal waiting for the lock (the end
    /// of another message's delivery) never waits for this disk.
    ///
    /// In queue/ the rename is made durable by the committer's next `fsync`
    /// of queue/ (a batch's, or the idle one within `REAP_INTERVAL`), as
    /// lazy removals are: until then a crash brings back the envelope as
    /// it was before the attempt, so the message is tried again (recipients
    /// it delivered to get a duplicate), never lost. In hold/ the
    /// directory is synced at once.
    pub fn rewrite_envelope_in_place(&self, env: &Envelope) -> Result<Location, SpoolError> {
        let loc = self.replace_envelope(env)?;
        if loc == Location::Queue {
            self.inner.queue_unsynced.store(true, Ordering::SeqCst);
            return Ok(loc);
        }
        let dir = self.inner.layout.dir(loc);
        self.inner
            .ops
            .sync_dir(dir)
            .map_err(|e| SpoolError::io("fsync directory", dir, e))?;
        Ok(loc)
    }

    /// Where the envelope of `id` is now, if anywhere (after a failed
    /// operation, to learn what the disk says).
    pub fn location(&self, id: &QueueId) -> Result<Option<Location>, SpoolError> {
        let _admin = self.admin();
        self.locate(id)
    }

    /// maildrop/, where `sendmail` leaves mail for pickup.
    pub fn drop_dir(&self) -> DropDir {
        DropDir::new(self.root())
    }

    /// Puts a queued message on hold: its envelope moves to hold/.
    pub fn hold(&self, id: &QueueId) -> Result<(), SpoolError> {
        let _admin = self.admin();
        self.require_at(id, Location::Queue)?;
        self.move_envelope(id, Location::Queue, Location::Hold)
    }

    /// Releases a held message: its envelope moves back to queue/.
    pub fn release(&self, id: &QueueId) -> Result<(), SpoolError> {
        let _admin = self.admin();
        self.require_at(id, Location::Hold)?;
        self.move_envelope(id, Location::Hold, Location::Queue)
    }

    /// Deletes a message (delivered, bounced, or by the admin): envelope
    /// first, so that it stops existing, then the body, then `fsync`.
    ///
    /// A crash in between leaves an orphan body, which recovery removes.
    pub fn remove(&self, id: &QueueId) -> Result<(), SpoolError> {
        let _admin = self.admin();
        let layout = &self.inner.layout;
        let ops = &*self.inner.ops;
        let loc = self.locate(id)?.ok_or(SpoolError::NotFound { id: *id })?;
        let env = layout.envelope_path(id, loc);
        ops.remove_file(&env)
            .map_err(|e| SpoolError::io("remove", &env, e))?;
        let body = layout.body_path(id);
        match ops.remove_file(&body) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(%id, path = %body.display(), "spool: removed message had no body");
            }
            Err(e) => return Err(SpoolError::io("remove", body, e)),
        }
        let mut dirs = vec![layout.dir(loc)];
        if loc != Location::Queue {
            dirs.push(&layout.queue);
        }
        for dir in dirs {
            ops.sync_dir(dir)
                .map_err(|e| SpoolError::io("fsync directory", dir, e))?;
        }
        Ok(())
    }

    fn admin(&self) -> MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic elsewhere cannot leave it inconsistent.
        self.inner.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the envelope of `id` is, if anywhere.
    fn locate(&self, id: &QueueId) -> Result<Option<Location>, SpoolError> {
        for loc in [Location::Queue, Location::Hold] {
            let path = self.inner.layout.envelope_path(id, loc);
            if path
                .try_exists()
                .map_err(|e| SpoolError::io("stat", &path, e))?
            {
                return Ok(Some(loc));
            }
        }
        Ok(None)
    }

    /// Ok if the envelope of `id` is at `loc`, else the fitting error.
    fn require_at(&self, id: &QueueId, loc: Location) -> Result<(), SpoolError> {
        match (self.locate(id)?, loc) {
            (Some(found), _) if found == loc => Ok(()),
            (None, _) => Err(SpoolError::NotFound { id: *id }),
            (Some(_), Location::Queue) => Err(SpoolError::AlreadyHeld { id: *id }),
            (Some(_), Location::Hold) => Err(SpoolError::NotHeld { id: *id }),
        }
    }

    /// Renames the envelope between queue/ and hold/, then syncs the
    /// destination (so the message exists there) and the source.
    fn move_envelope(&self, id: &QueueId, from: Location, to: Location) -> Result<(), SpoolError> {
        let layout = &self.inner.layout;
        let ops = &*self.inner.ops;
        let dst = layout.envelope_path(id, to);
        ops.rename(&layout.envelope_path(id, from), &dst)
            .map_err(|e| SpoolError::io("rename", &dst, e))?;
        for dir in [layout.dir(to), layout.dir(from)] {
            ops.sync_dir(dir)
                .map_err(|e| SpoolError::io("fsync directory", dir, e))?;
        }
        Ok(())
    }
}
