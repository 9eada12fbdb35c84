//! The free list: files of delivered messages, kept for reuse.
//!
//! Creating a file costs the file system an inode allocation (on ext4,
//! `ext4_create` with its scan for recently deleted inodes) and unlinking it
//! an eviction (`ext4_evict_inode`, truncation); at two files per message
//! that was about 40 % of the daemon's CPU under load. So a message removed
//! lazily keeps its files instead of having them unlinked, and a new
//! message's body and envelope take one of them (renamed into place,
//! overwritten from offset 0, cut to length) instead of creating one.
//!
//! Where the files wait differs by kind:
//!
//! - An envelope leaves queue/ at the removal, renamed to `free/<id>.env`
//!   ([`FreeList::retire`]), and is later written where it lies there and
//!   renamed from free/ straight into queue/ by the commit, to its new
//!   id's name ([`FreeList::reuse_in_place`]).
//! - A body never moves to free/: it stays at `queue/<old id>.msg`, and once
//!   its message's removal is durable that name goes on the list
//!   ([`FreeList::release`], no system call). A new message takes it with
//!   one rename, `queue/<old>.msg` to `queue/<new>.msg` ([`FreeList::reuse`]).
//!   A body without an envelope is, for everyone else, what it was before:
//!   an orphan, which no listing counts and recovery removes.
//!
//! What keeps this as safe as unlinking:
//!
//! - A message stops existing exactly when and how it did with unlink: its
//!   envelope leaves queue/ in [`FreeList::retire`] (renamed or unlinked),
//!   durably at the next `fsync` of queue/ (a crash before that brings the
//!   whole message back: a duplicate delivery, as before).
//! - Neither file is reused before that `fsync`: the message waits in the
//!   doomed list until it has succeeded. Reused earlier, a crash could
//!   bring the old envelope back into queue/ holding a newer message's
//!   bytes, or pointing at a body rewritten for another message.
//! - Reuse renames with `RENAME_NOREPLACE` (a name collision never replaces
//!   a file), refuses a file that has another name (an administrator's hard
//!   link is never overwritten), and cuts the new content to length before
//!   anything syncs it. The result is made durable by the same `fdatasync`
//!   or `syncfs` as a fresh file, before its envelope is renamed into
//!   queue/; a crash before that leaves an orphan body in queue/ or a file
//!   in free/, both of which recovery removes.
//! - Envelope files are reused as envelopes and body files as bodies
//!   (similar sizes: little to cut or grow). At most [`MAX_PER_KIND`] files
//!   of each kind wait, and bodies over [`MAX_KEPT_BODY`] (by the size their
//!   envelope records) are unlinked, so little disk space is pinned.
//! - Nothing kept is needed by anyone: recovery empties free/ and removes
//!   bodies without an envelope at startup, and a clean stop unlinks the
//!   bodies on the list ([`FreeList::discard_bodies`]). Any failure here
//!   falls back to unlinking and creating, as before; one that will always
//!   recur (a file system without `RENAME_NOREPLACE`, free/ on another
//!   mount) turns recycling off until the next start.
//!
//! Residual window: a reader that opened a message's body or envelope
//! *before* the message was removed, and still reads that descriptor after
//! the next `fsync`, may see a newer message's bytes (with unlink it kept
//! the old ones). In the daemon nothing does: delivery and the bounce
//! builder are done with a message before they remove it, `queue delete`
//! and removals from hold/ unlink and never recycle, and envelope readers
//! check the id inside the file against its name. An administrator reading
//! `queue/<id>.msg` by hand (`queue show` prints the path) while the message
//! is delivered, or just after, could see another message's text.
//!
//! Not used for aborted messages (their files are unlinked), for removals
//! through [`Spool::remove`](super::Spool::remove), or by admin commands
//! run while the daemon is down.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::durable::{FileOps, remove_quietly};
use super::error::SpoolError;
use super::id::{FileKind, QueueId};
use super::layout::{Layout, Location};

/// Most files of each kind (bodies, envelopes) kept for reuse.
pub(super) const MAX_PER_KIND: usize = 128;

/// Bodies longer than this are unlinked rather than kept: their data, not
/// their inode, dominates what they cost, and kept they would pin disk.
pub(super) const MAX_KEPT_BODY: u64 = 256 * 1024;

/// A message removed lazily, waiting for the `fsync` of queue/ that makes
/// the removal of its envelope durable; its body is still in queue/.
#[derive(Debug, Clone, Copy)]
pub(super) struct Doomed {
    id: QueueId,
    /// Its envelope was renamed to `free/<id>.env` rather than unlinked.
    env_in_free: bool,
    /// Its body is small enough to keep (by the size its envelope records).
    keep_body: bool,
}

/// A file taken from the free list, now at its new name and open for
/// writing at offset 0.
pub(super) struct Reused {
    /// The open file.
    pub(super) file: File,
    /// Its length when opened: the caller cuts it if it writes less.
    pub(super) len: u64,
}

/// The files of one kind.
#[derive(Debug, Default)]
struct Shelf {
    /// Paths that may be reused now: envelopes in free/, bodies in queue/
    /// (under the id of the message that was removed).
    ready: Vec<PathBuf>,
    /// Envelopes waiting in free/ for the `fsync` (bodies wait in queue/
    /// and are not counted until then); they count against the bound.
    incoming: usize,
}

impl Shelf {
    fn has_room(&self) -> bool {
        self.ready.len() + self.incoming < MAX_PER_KIND
    }
}

/// Everything behind the list's one lock (held only for bookkeeping, never
/// across a system call).
#[derive(Debug, Default)]
struct State {
    bodies: Shelf,
    envelopes: Shelf,
    /// Messages removed lazily since the last successful `fsync` of queue/.
    doomed: Vec<Doomed>,
    /// Renames into or out of free/ can never work here (see
    /// `rename_failed`): nothing is kept or reused until the next start.
    disabled: bool,
}

impl State {
    fn shelf(&mut self, kind: FileKind) -> &mut Shelf {
        match kind {
            FileKind::Body => &mut self.bodies,
            FileKind::Envelope => &mut self.envelopes,
        }
    }
}

/// The free list and the lazily removed messages on their way into it.
/// See the module documentation.
#[derive(Debug)]
pub(super) struct FreeList {
    dir: PathBuf,
    state: Mutex<State>,
}

impl FreeList {
    /// An empty list for the free/ directory `dir`.
    pub(super) fn new(dir: PathBuf) -> FreeList {
        FreeList {
            dir,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state usable; a panic elsewhere cannot
        // break it beyond a miscounted bound.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes `queue/<id>.env` for [`Spool::remove_lazily`]: renamed to
    /// `free/<id>.env` when there is room, otherwise (or if that rename
    /// fails) unlinked. Either way the message stops existing now, and
    /// durably at the next `fsync` of queue/; until then `id` is doomed.
    /// `body_size` (what its envelope records) decides whether its body is
    /// kept for reuse then. `Ok(false)` if queue/ has no such envelope
    /// (the message is held, or gone): nothing was done.
    ///
    /// [`Spool::remove_lazily`]: super::Spool::remove_lazily
    pub(super) fn retire(
        &self,
        ops: &dyn FileOps,
        layout: &Layout,
        id: &QueueId,
        body_size: u64,
    ) -> Result<bool, SpoolError> {
        let env = layout.envelope_path(id, Location::Queue);
        let mut env_in_free = false;
        if self.reserve(FileKind::Envelope) {
            let dst = self.dir.join(id.envelope_name());
            match ops.rename_noreplace(&env, &dst) {
                Ok(()) => env_in_free = true,
                Err(e) => {
                    self.unreserve(FileKind::Envelope);
                    // No such envelope (or no free/): the unlink tells which.
                    if e.kind() != io::ErrorKind::NotFound {
                        self.rename_failed(ops, &env, &dst, &e);
                    }
                }
            }
        }
        if !env_in_free {
            match ops.remove_file(&env) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(SpoolError::io("remove", &env, e)),
            }
        }
        self.state().doomed.push(Doomed {
            id: *id,
            env_in_free,
            keep_body: body_size <= MAX_KEPT_BODY,
        });
        Ok(true)
    }

    /// Takes the doomed messages, for a caller about to `fsync` queue/.
    pub(super) fn take_doomed(&self) -> Vec<Doomed> {
        std::mem::take(&mut self.state().doomed)
    }

    /// Returns doomed messages whose `fsync` failed; the next one retries.
    pub(super) fn give_back_doomed(&self, mut doomed: Vec<Doomed>) {
        if !doomed.is_empty() {
            self.state().doomed.append(&mut doomed);
        }
    }

    /// Called after an `fsync` of queue/ made the removal of `doomed`
    /// durable: their envelopes in free/ and their bodies, where they lie in
    /// queue/, become reusable (no system call); bodies beyond the bound or
    /// too large are unlinked, as are envelopes if recycling was turned
    /// off meanwhile.
    pub(super) fn release(&self, ops: &dyn FileOps, layout: &Layout, doomed: Vec<Doomed>) {
        let mut unlink = Vec::new();
        {
            let mut state = self.state();
            let disabled = state.disabled;
            for d in doomed {
                if d.env_in_free {
                    let env = self.dir.join(d.id.envelope_name());
                    let shelf = &mut state.envelopes;
                    shelf.incoming = shelf.incoming.saturating_sub(1);
                    if disabled {
                        unlink.push(env);
                    } else {
                        shelf.ready.push(env);
                    }
                }
                let body = layout.body_path(&d.id);
                if d.keep_body && !disabled && state.bodies.has_room() {
                    state.bodies.ready.push(body);
                } else {
                    unlink.push(body);
                }
            }
        }
        for path in unlink {
            remove_quietly(ops, &path);
        }
    }

    /// Unlinks the bodies waiting for reuse in queue/ (at a clean stop, so
    /// that the next start does not find them as orphans).
    pub(super) fn discard_bodies(&self, ops: &dyn FileOps) {
        let bodies = std::mem::take(&mut self.state().bodies.ready);
        for path in bodies {
            remove_quietly(ops, &path);
        }
    }

    /// Takes a file of `kind` and makes it `dest`: renamed there (never
    /// replacing anything) and opened for writing at offset 0, its old
    /// content still in it. `None` if the list is empty or a step fails
    /// (the file is then unlinked); the caller creates `dest` as usual.
    pub(super) fn reuse(&self, ops: &dyn FileOps, kind: FileKind, dest: &Path) -> Option<Reused> {
        let src = self.pop(kind)?;
        if let Err(e) = ops.rename_noreplace(&src, dest) {
            self.rename_failed(ops, &src, dest, &e);
            remove_quietly(ops, &src);
            return None;
        }
        open_for_reuse(ops, dest)
    }

    /// Takes a file of `kind` to be written where it is, in free/ under its
    /// old name, and returns that path with the open file. The caller
    /// renames it into place once written (one rename where [`reuse`]
    /// then the caller's own would be two), or removes it. Until then it
    /// is like a file in tmp/: nobody's, and removed by recovery.
    ///
    /// [`reuse`]: FreeList::reuse
    pub(super) fn reuse_in_place(
        &self,
        ops: &dyn FileOps,
        kind: FileKind,
    ) -> Option<(PathBuf, Reused)> {
        let path = self.pop(kind)?;
        open_for_reuse(ops, &path).map(|r| (path, r))
    }

    /// A file of `kind` ready for reuse, taken off the list.
    fn pop(&self, kind: FileKind) -> Option<PathBuf> {
        let mut state = self.state();
        if state.disabled {
            return None;
        }
        state.shelf(kind).ready.pop()
    }

    /// Forgets the files ready for reuse; recovery has just unlinked them.
    pub(super) fn forget_ready(&self) {
        let mut state = self.state();
        state.bodies.ready.clear();
        state.envelopes.ready.clear();
    }

    /// Claims room for one more file of `kind`; false if full or disabled.
    fn reserve(&self, kind: FileKind) -> bool {
        let mut state = self.state();
        if state.disabled || !state.shelf(kind).has_room() {
            return false;
        }
        state.shelf(kind).incoming += 1;
        true
    }

    /// Gives back room claimed by [`FreeList::reserve`] for a file that did
    /// not come.
    fn unreserve(&self, kind: FileKind) {
        let mut state = self.state();
        let shelf = state.shelf(kind);
        shelf.incoming = shelf.incoming.saturating_sub(1);
    }

    /// Logs a failed rename for reuse. If it can never work (the
    /// file system cannot rename without replacing, or free/ is on another
    /// one), recycling is turned off for as long as this spool is open and
    /// the files ready for reuse are unlinked.
    fn rename_failed(&self, ops: &dyn FileOps, from: &Path, to: &Path, e: &io::Error) {
        if matches!(
            e.kind(),
            io::ErrorKind::InvalidInput
                | io::ErrorKind::Unsupported
                | io::ErrorKind::CrossesDevices
        ) {
            let ready = {
                let mut state = self.state();
                if state.disabled {
                    return;
                }
                state.disabled = true;
                let mut ready = std::mem::take(&mut state.bodies.ready);
                ready.append(&mut state.envelopes.ready);
                ready
            };
            tracing::warn!(
                dir = %self.dir.display(), error = %e,
                "spool: cannot rename into or out of free/ without replacing (RENAME_NOREPLACE); files are no longer recycled"
            );
            for path in ready {
                remove_quietly(ops, &path);
            }
            return;
        }
        tracing::warn!(
            from = %from.display(), to = %to.display(), error = %e,
            "spool: cannot move a file for reuse; unlinking it instead"
        );
    }
}

/// Opens a recycled file at `path` for writing at offset 0, unless it has
/// another name (an administrator's hard link is never overwritten) or
/// cannot be opened; then it is unlinked and `None` returned.
fn open_for_reuse(ops: &dyn FileOps, path: &Path) -> Option<Reused> {
    let file = match ops.open_existing_for_write(path) {
        Ok(file) => file,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "spool: cannot reopen a recycled file; creating a new one");
            remove_quietly(ops, path);
            return None;
        }
    };
    match file.metadata() {
        Ok(meta) if meta.is_file() && meta.nlink() == 1 => Some(Reused {
            file,
            len: meta.len(),
        }),
        Ok(meta) => {
            tracing::warn!(
                path = %path.display(), links = meta.nlink(),
                "spool: a recycled file has another name; not overwriting it"
            );
            remove_quietly(ops, path);
            None
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "spool: cannot stat a recycled file; creating a new one");
            remove_quietly(ops, path);
            None
        }
    }
}
