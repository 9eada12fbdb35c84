//! The spool: the only code that touches the queue directories.
//!
//! It stores messages so that **nothing acknowledged is ever lost**: a
//! message is committed (and only then may SMTP say 250) once its body and
//! envelope are durably in queue/. On disk:
//!
//! ```text
//! <root>/lock      flock held by the one daemon using this spool
//! <root>/tmp/      files being written; emptied by recovery at startup
//! <root>/queue/    <id>.msg (body, immutable) + <id>.env (envelope JSON)
//! <root>/hold/     <id>.env of held messages (the body stays in queue/)
//! <root>/corrupt/  files that failed to parse, kept for humans
//! ```
//!
//! A message exists iff its `<id>.env` exists in queue/ or hold/. The write
//! path is: [`Spool::new_body`] → write → [`Spool::stage`] (body and envelope
//! `fdatasync`ed in tmp/) → [`Spool::commit_batch`] (rename body, then
//! envelope, into queue/; one `fsync` of queue/ for the whole batch), usually
//! through the group [`Committer`]. Removal runs the other way: envelope,
//! then body, then `fsync`.
//!
//! This module does not schedule, deliver or index messages (that is
//! `queue`), nor does it speak SMTP. Its calls block on disk I/O; async
//! callers use `spawn_blocking` or the [`Committer`].

mod body;
mod commit;
pub mod durable;
mod envelope;
mod error;
mod health;
mod id;
mod layout;
mod recover;

#[cfg(test)]
mod faults;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_faults;

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use body::{BodyWriter, Staged};
pub use commit::{CommitStats, Committer, MAX_BATCH, PendingCommit};
pub use durable::{FileOps, RealFs};
pub use envelope::{
    BodyType, ENVELOPE_VERSION, Envelope, EnvelopeError, Origin, REASON_FIRST_ATTEMPT, RcptState,
    Recipient,
};
pub use error::SpoolError;
pub use health::{Health, HealthOptions};
pub use id::{FileKind, InvalidQueueId, QueueId};
pub use layout::{Location, SpoolReader};
pub use recover::RecoveryReport;

use durable::remove_quietly;
use error::copy_io_error;
use health::HealthSampler;
use layout::{LOCK_FILE, Layout};

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
    /// Messages removed lazily whose bodies wait for the next fsync.
    doomed: Mutex<Vec<QueueId>>,
    /// Holds the flock for as long as the spool is open.
    _lock: File,
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
        for dir in [&layout.tmp, &layout.queue, &layout.hold, &layout.corrupt] {
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
        let health = HealthSampler::new(options.health, &layout.tmp);
        Ok(Spool {
            inner: Arc::new(Inner {
                layout,
                ops: options.file_ops,
                sync: options.sync,
                health,
                admin: Mutex::new(()),
                doomed: Mutex::new(Vec::new()),
                _lock: lock,
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
    /// Empties tmp/; deletes bodies in queue/ that have no envelope (never
    /// acknowledged); moves to corrupt/ (with a loud error log) envelopes
    /// that do not parse, name another id, lack a body or disagree with its
    /// size; leaves unknown files alone. Nothing acknowledged is deleted.
    pub fn recover(&self) -> Result<RecoveryReport, SpoolError> {
        let _admin = self.admin();
        recover::recover(&self.inner.layout, &*self.inner.ops)
    }

    /// Starts a new message: allocates its id and creates `queue/<id>.msg`
    /// (0600, `O_EXCL`). The body is written in place: until its envelope
    /// exists the message does not (a body alone is an orphan that
    /// recovery removes), so no rename is needed for it.
    pub fn new_body(&self) -> Result<BodyWriter, SpoolError> {
        let mut attempts = 0;
        loop {
            let id = QueueId::generate();
            let path = self.inner.layout.body_path(&id);
            match self.inner.ops.create_new(&path) {
                Ok(file) => return Ok(BodyWriter::new(id, file, path, self.inner.ops.clone())),
                // Two ids equal in timestamp and 80 random bits: take another.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => attempts += 1,
                Err(e) => return Err(SpoolError::io("create", path, e)),
            }
        }
    }

    /// Makes a received message ready to commit: flushes the body, writes
    /// the envelope to `tmp/<id>.env`, and with [`SyncMode::Files`]
    /// `fdatasync`s both (with [`SyncMode::Filesystem`] the committer makes
    /// the whole batch durable at once). See [`Spool::stage_blocks`].
    ///
    /// The envelope's `size` is set from the body (whatever the caller put
    /// there); its `id` must be the body's. Blocking. On error both tmp files
    /// are gone and the client must get a 4xx.
    pub fn stage(&self, body: BodyWriter, envelope: &Envelope) -> Result<Staged, SpoolError> {
        if envelope.id != *body.id() {
            return Err(SpoolError::IdMismatch {
                body: *body.id(),
                envelope: envelope.id,
            });
        }
        let sync = self.inner.sync == SyncMode::Files;
        let (id, len, mut guard) = body.finish(sync)?;
        let mut envelope = envelope.clone();
        envelope.size = len;
        let env_tmp = self.inner.layout.tmp.join(id.envelope_name());
        durable::write_new(&*self.inner.ops, &env_tmp, &envelope.to_json(), sync)?;
        guard.push(env_tmp.clone());
        let body = self.inner.layout.body_path(&id);
        Ok(Staged::new(envelope, body, env_tmp, guard))
    }

    /// Whether [`Spool::stage`] blocks on the disk (it `fdatasync`s with
    /// [`SyncMode::Files`]); async callers then run it on a blocking thread.
    pub fn stage_blocks(&self) -> bool {
        self.inner.sync == SyncMode::Files
    }

    /// Moves staged messages into queue/ with one directory `fsync` for all.
    /// With [`SyncMode::Filesystem`] one `syncfs` first makes every staged
    /// body and envelope durable (nothing is renamed before that).
    ///
    /// For each message: rename the envelope into queue/ (which makes the
    /// message exist; its body is already there). Then `fsync` queue/ once,
    /// which also makes the removals done since the last fsync durable:
    /// the bodies of those messages are unlinked afterwards (see
    /// [`Spool::remove_lazily`]). Results are in batch order;
    /// only an `Ok` may be acknowledged.
    ///
    /// If that `fsync` fails, every renamed message of the batch is removed
    /// again and reported as failed. After a failed `fsync` we cannot know
    /// whether the renames will survive a crash; the files are visible now,
    /// so keeping them while telling the client 4xx would mean delivering a
    /// message the client will send again (a duplicate), and telling the
    /// client 250 could lose it. Removing them and answering 4xx gives
    /// exactly one copy once the client retries; nothing acknowledged is at
    /// stake because nothing in the batch was acknowledged yet. (Should the
    /// removals themselves not reach the disk before a crash, recovery finds
    /// complete messages and keeps them: a possible duplicate, never a loss.)
    ///
    /// Between the renames and the `fsync`, a concurrent [`Spool::list`] or
    /// `mailq` may already see a message that is then withdrawn.
    pub fn commit_batch(&self, batch: Vec<Staged>) -> Vec<Result<QueueId, SpoolError>> {
        let layout = &self.inner.layout;
        let ops = &*self.inner.ops;
        let mut results: Vec<Result<QueueId, SpoolError>> = Vec::with_capacity(batch.len());
        let mut renamed = Vec::new();
        let doomed = self.take_doomed();
        if self.inner.sync == SyncMode::Filesystem
            && !batch.is_empty()
            && let Err(e) = ops.sync_filesystem(&layout.queue)
        {
            // Nothing was renamed: dropping the batch removes its files.
            tracing::error!(error = %e, messages = batch.len(), "spool: syncfs failed; refusing the batch");
            self.give_back_doomed(doomed);
            let err =
                |e: &io::Error| Err(SpoolError::io("syncfs", &layout.queue, copy_io_error(e)));
            return batch.iter().map(|_| err(&e)).collect();
        }
        for mut staged in batch {
            let id = staged.id;
            let body = layout.body_path(&id);
            debug_assert_eq!(staged.body_tmp(), body, "staged in another spool");
            let env = layout.envelope_path(&id, Location::Queue);
            if let Err(e) = ops.rename(staged.env_tmp(), &env) {
                remove_quietly(ops, &body);
                results.push(Err(SpoolError::io("rename", env, e)));
                continue;
            }
            staged.guard.disarm();
            renamed.push(results.len());
            results.push(Ok(id));
        }
        if renamed.is_empty() && doomed.is_empty() {
            return results;
        }
        if let Err(e) = ops.sync_dir(&layout.queue) {
            self.give_back_doomed(doomed);
            tracing::error!(
                dir = %layout.queue.display(), error = %e, messages = renamed.len(),
                "spool: fsync failed; withdrawing the whole batch (clients get 4xx)"
            );
            for &i in &renamed {
                let id = *results[i].as_ref().expect("renamed entries are Ok");
                remove_quietly(ops, &layout.envelope_path(&id, Location::Queue));
                remove_quietly(ops, &layout.body_path(&id));
                results[i] = Err(SpoolError::io(
                    "fsync directory",
                    &layout.queue,
                    copy_io_error(&e),
                ));
            }
            let _ = ops.sync_dir(&layout.queue);
            return results;
        }
        self.unlink_bodies(doomed);
        results
    }

    /// Removes a delivered message cheaply: its envelope is unlinked now
    /// (the message stops existing for `list` and the scheduler), its body
    /// only after the next `fsync` of queue/ made that unlink durable,
    /// done by the committer ([`Spool::commit_batch`] or
    /// [`Spool::reap_removed`]). No `fsync` of its own.
    ///
    /// After a crash either the envelope is back with its body (the
    /// message is delivered again: a duplicate, never a loss) or it is gone
    /// and the body is an orphan that recovery removes. An envelope
    /// without its body, which recovery would report as corrupt, cannot
    /// happen. Messages in hold/ are removed with [`Spool::remove`].
    pub fn remove_lazily(&self, id: &QueueId) -> Result<(), SpoolError> {
        let _admin = self.admin();
        match self.locate(id)? {
            None => return Err(SpoolError::NotFound { id: *id }),
            Some(Location::Hold) => {
                drop(_admin);
                return self.remove(id);
            }
            Some(Location::Queue) => {}
        }
        let env = self.inner.layout.envelope_path(id, Location::Queue);
        self.inner
            .ops
            .remove_file(&env)
            .map_err(|e| SpoolError::io("remove", &env, e))?;
        self.inner
            .doomed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(*id);
        Ok(())
    }

    /// Makes lazy removals durable and deletes their bodies; the committer
    /// calls it when it has had no commit for a while.
    pub fn reap_removed(&self) {
        let doomed = self.take_doomed();
        if doomed.is_empty() {
            return;
        }
        match self.inner.ops.sync_dir(&self.inner.layout.queue) {
            Ok(()) => self.unlink_bodies(doomed),
            Err(e) => {
                tracing::warn!(error = %e, "spool: fsync for removals failed; will retry");
                self.give_back_doomed(doomed);
            }
        }
    }

    fn take_doomed(&self) -> Vec<QueueId> {
        std::mem::take(&mut *self.inner.doomed.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn give_back_doomed(&self, mut ids: Vec<QueueId>) {
        if !ids.is_empty() {
            self.inner
                .doomed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .append(&mut ids);
        }
    }

    fn unlink_bodies(&self, ids: Vec<QueueId>) {
        for id in ids {
            remove_quietly(&*self.inner.ops, &self.inner.layout.body_path(&id));
        }
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

    /// Replaces the envelope of an existing message at `loc` atomically.
    ///
    /// Fails with `NotFound` if the message is gone, and with `AlreadyHeld` /
    /// `NotHeld` if it is at the other location (it was held or released in
    /// the meantime; the envelope is not written, so a message is never
    /// brought back or duplicated by a stale update).
    pub fn rewrite_envelope(&self, env: &Envelope, loc: Location) -> Result<(), SpoolError> {
        let _admin = self.admin();
        let id = env.id;
        self.require_at(&id, loc)?;
        let layout = &self.inner.layout;
        durable::write_atomically(
            &*self.inner.ops,
            &layout.tmp,
            &layout.envelope_path(&id, loc),
            &env.to_json(),
        )
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

    /// The cached free-space verdict, refreshed at most once per
    /// [`HealthOptions::sample_interval`] by whichever caller comes first
    /// (one `statvfs`, microseconds). Cheap enough for every `MAIL FROM`.
    pub fn health(&self) -> Health {
        self.inner.health.get(&self.inner.layout.tmp)
    }

    /// Replaces the free-space thresholds (configuration reload) and
    /// returns a fresh verdict under them.
    pub fn set_health_options(&self, options: HealthOptions) -> Health {
        self.inner
            .health
            .set_options(options, &self.inner.layout.tmp)
    }

    /// Samples free space now, regardless of the cache.
    pub fn sample_health(&self) -> Health {
        self.inner.health.refresh(&self.inner.layout.tmp)
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

/// Creates `dir` (and missing parents) with mode 0700; returns whether it
/// was created. An existing directory is kept as it is, with a warning if
/// others can read it.
fn create_private_dir(dir: &Path) -> Result<bool, SpoolError> {
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
fn take_lock(path: &Path) -> Result<File, SpoolError> {
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
