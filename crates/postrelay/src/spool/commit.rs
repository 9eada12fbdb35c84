//! Committing staged messages, and making removals durable: the spool's
//! half of the group commit (the queue's committer thread calls these).
//!
//! Three ways, by [`SyncMode`]: `fdatasync` of each file while staging
//! then renames and one directory `fsync` (`Files`); one `syncfs` of
//! envelopes renamed into queue/ while staging, whose checksums let
//! recovery tell what a power cut interrupted (`Filesystem`); or one
//! record per message in the commit journal, one `fdatasync` of it, then
//! renames with no sync, with `syncfs` deferred to a checkpoint
//! (`Journal`, see `journal.rs`). Not here: staging (`stage.rs`,
//! `body.rs`), and when to checkpoint (`queue::commit`).

use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::durable::remove_quietly;
use super::error::copy_io_error;
use super::journal::{Entry, Journal, Writer};
use super::layout::{LOCK_FILE, Location};
use super::{QueueId, Spool, SpoolError, Staged, SyncMode};

/// With [`SyncMode::Journal`], how long after a checkpoint the committer
/// has another one made once it has committed something (see
/// [`Spool::take_due_checkpoint`]): this bounds how long removals wait
/// (and so how soon their files are recycled) under load, and how much a
/// crash may deliver twice. At 100 ms, 20 sessions removed more messages
/// per interval than free/ keeps (128), files were created and unlinked
/// instead of recycled, and CPU per message rose by about 40 %; at 25 ms
/// (a `syncfs` on the checkpoint thread, off every reply's path) it is
/// within 15 % of `"filesystem"` at 1.5 times its rate.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(25);

impl Spool {
    /// Makes staged messages durable messages of queue/, for all of them at
    /// once; results are in batch order, and only an `Ok` may be
    /// acknowledged.
    ///
    /// With [`SyncMode::Filesystem`] the envelopes are in queue/ already
    /// (renamed there while staging) and one `syncfs` makes bodies,
    /// envelopes and names durable: that is the whole commit. A power cut
    /// before it ends may leave some of it on the disk: the envelope's own
    /// checksum and its body's (recorded in it) let recovery tell such a
    /// message, never acknowledged, from a sound one (`recover.rs`).
    ///
    /// With [`SyncMode::Files`] (files `fdatasync`ed while staging), and for
    /// a batch the journal cannot take (then after a `syncfs`): for each
    /// message, rename the envelope into queue/ (which makes the message
    /// exist; its body is already there), then `fsync` queue/ once. With
    /// [`SyncMode::Journal`] see [`Spool::commit_journaled`] instead.
    ///
    /// The `syncfs` or the `fsync` of queue/ also makes the removals done
    /// before it durable: the files of those messages go to the free list
    /// afterwards (see [`Spool::remove_lazily`]).
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
        match self.mode() {
            SyncMode::Journal => match self.commit_journaled(batch) {
                Ok(results) => results,
                // The journal was just turned off.
                Err(batch) if self.mode() == SyncMode::Files => self.commit_files(batch),
                // Not journaled: the files were not synced while staging.
                Err(batch) => self.commit_synced(batch, true),
            },
            SyncMode::Filesystem => self.commit_synced(batch, true),
            SyncMode::Files => self.commit_files(batch),
        }
    }

    /// The mode in force: the configured one, except that
    /// [`SyncMode::Journal`] without a working journal (it could not be
    /// set up, or was turned off after a failure) is [`SyncMode::Files`].
    pub(super) fn mode(&self) -> SyncMode {
        match (self.inner.sync, &self.inner.journal) {
            (SyncMode::Journal, Some(j)) if !j.is_off() => SyncMode::Journal,
            (SyncMode::Journal, _) => SyncMode::Files,
            (mode, _) => mode,
        }
    }

    /// Whether commits go through the commit journal now (configured,
    /// set up, and not turned off).
    pub fn uses_journal(&self) -> bool {
        self.mode() == SyncMode::Journal
    }

    /// Stops using the commit journal for the rest of the process because
    /// `why` (the checkpoint thread could not be started); the spool
    /// commits as with [`SyncMode::Files`] and says so, once.
    pub fn give_up_journal(&self, why: &dyn std::fmt::Display) {
        if let Some(j) = &self.inner.journal
            && j.turn_off()
        {
            tracing::warn!(
                "spool: {why}; committing with an fdatasync of each file instead of the \
                 commit journal until restart (as with queue.sync = \"files\": slower, \
                 nothing is lost)"
            );
        }
    }

    /// [`Spool::commit_synced`] without `syncfs`, after an `fdatasync` of
    /// the body and envelope of each message not synced while staging
    /// (staged while the journal still worked); a message whose sync
    /// fails is refused and its files removed.
    fn commit_files(&self, batch: Vec<Staged>) -> Vec<Result<QueueId, SpoolError>> {
        let mut results = Vec::with_capacity(batch.len());
        let mut ready = Vec::with_capacity(batch.len());
        for staged in batch {
            match self.sync_staged(&staged) {
                Ok(()) => {
                    results.push(None);
                    ready.push(staged);
                }
                // Dropping `staged` removes its files.
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let mut committed = self.commit_synced(ready, false).into_iter();
        results
            .into_iter()
            .map(|r| {
                r.or_else(|| committed.next())
                    .unwrap_or_else(|| Err(SpoolError::io("commit", "", io::Error::other("lost"))))
            })
            .collect()
    }

    /// `fdatasync`s the body and envelope of `staged` unless that was
    /// done while staging.
    fn sync_staged(&self, staged: &Staged) -> Result<(), SpoolError> {
        if staged.synced {
            return Ok(());
        }
        let ops = &*self.inner.ops;
        for path in [staged.body_tmp(), staged.env_tmp()] {
            let file = ops
                .open_existing_for_write(path)
                .map_err(|e| SpoolError::io("open", path, e))?;
            ops.sync_data(&file, path)
                .map_err(|e| SpoolError::io("fdatasync", path, e))?;
        }
        Ok(())
    }

    /// One `syncfs` of the spool's file system, never two at once; a
    /// failure turns the journal off (see [`Spool::journal_failed`]).
    fn syncfs(&self) -> io::Result<()> {
        let _one = self.inner.syncfs.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.inner.layout.root.join(LOCK_FILE);
        let result = self.inner.ops.sync_filesystem(&self.inner.lock, &path);
        if let Err(e) = &result {
            self.journal_failed(&SpoolError::io("syncfs", &path, copy_io_error(e)));
        }
        result
    }

    /// After a failed flush of the journal, of its header, or a failed
    /// `syncfs`: turns the journal off for the rest of the process (see
    /// `Journal::turn_off`) and says so, once. Commits then `fdatasync`
    /// each message's files, as with [`SyncMode::Files`].
    fn journal_failed(&self, e: &SpoolError) {
        if let Some(j) = &self.inner.journal
            && j.turn_off()
        {
            tracing::error!(
                error = %e,
                "spool: the commit journal is off until postrelay restarts: a write to the disk \
                 failed, and a later flush could succeed without that data having reached it; \
                 every message is now committed with an fdatasync of its own files (slower, \
                 nothing is lost), and the journal's records are kept for the next start to \
                 replay. Check the disk and the kernel log (dmesg) for I/O errors, then restart \
                 postrelay"
            );
        }
    }

    /// [`Spool::commit_batch`] with a `syncfs` first when `syncfs`, and a
    /// directory `fsync` after the renames, if there were any.
    fn commit_synced(&self, batch: Vec<Staged>, syncfs: bool) -> Vec<Result<QueueId, SpoolError>> {
        let layout = &self.inner.layout;
        let ops = &*self.inner.ops;
        let mut results: Vec<Result<QueueId, SpoolError>> = Vec::with_capacity(batch.len());
        let mut renamed = Vec::new();
        let doomed = self.inner.free.take_doomed();
        // Taken before the fsync below, which then covers every rewrite so far.
        let unsynced = self.inner.queue_unsynced.swap(false, Ordering::SeqCst);
        // Whether one syncfs covers the batch (and what was taken above).
        let synced = syncfs && !batch.is_empty();
        if synced && let Err(e) = self.syncfs() {
            // Dropping the batch removes its files (in tmp/ or free/, or
            // in queue/ when renamed there while staging): none was
            // acknowledged.
            tracing::error!(error = %e, messages = batch.len(), "spool: syncfs failed; refusing the batch");
            self.inner.free.give_back_doomed(doomed);
            self.keep_unsynced(unsynced);
            let err =
                |e: &io::Error| Err(SpoolError::io("syncfs", &layout.queue, copy_io_error(e)));
            return batch.iter().map(|_| err(&e)).collect();
        }
        for mut staged in batch {
            let id = staged.id;
            let body = layout.body_path(&id);
            debug_assert_eq!(staged.body_tmp(), body, "staged in another spool");
            if staged.in_queue && synced {
                // Renamed into queue/ while staging: the syncfs above made
                // it durable, name included.
                staged.guard.disarm();
                results.push(Ok(id));
                continue;
            }
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
        if renamed.is_empty() && (synced || (doomed.is_empty() && !unsynced)) {
            // Nothing renamed since the syncfs, which covered the removals
            // and rewrites taken before it.
            self.inner.free.release(ops, layout, doomed);
            return results;
        }
        if let Err(e) = ops.sync_dir(&layout.queue) {
            self.inner.free.give_back_doomed(doomed);
            self.keep_unsynced(unsynced);
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
        self.inner.free.release(ops, layout, doomed);
        results
    }

    /// Makes lazy removals durable and moves their bodies to the free list
    /// (or unlinks them); the committer calls it when it has had no commit
    /// for a while.
    ///
    /// With [`SyncMode::Journal`] this is the checkpoint: one `syncfs`
    /// makes the removals, and everything committed through the journal
    /// before it started, durable; then the header says so. Commits may
    /// go on meanwhile (the committer calls it from its checkpoint
    /// thread; see `queue::commit`).
    pub fn reap_removed(&self) {
        if self.mode() == SyncMode::Journal {
            if let Err(e) = self.checkpoint() {
                tracing::warn!(error = %e, "spool: journal checkpoint failed; will retry");
            }
            return;
        }
        let doomed = self.inner.free.take_doomed();
        let unsynced = self.inner.queue_unsynced.swap(false, Ordering::SeqCst);
        if doomed.is_empty() && !unsynced {
            return;
        }
        match self.inner.ops.sync_dir(&self.inner.layout.queue) {
            Ok(()) => self
                .inner
                .free
                .release(&*self.inner.ops, &self.inner.layout, doomed),
            Err(e) => {
                tracing::warn!(error = %e, "spool: fsync for removals failed; will retry");
                self.inner.free.give_back_doomed(doomed);
                self.keep_unsynced(unsynced);
            }
        }
    }

    /// After a failed sync that was to cover envelope rewrites in queue/
    /// (`unsynced`): the next one must cover them.
    fn keep_unsynced(&self, unsynced: bool) {
        if unsynced {
            self.inner.queue_unsynced.store(true, Ordering::SeqCst);
        }
    }

    /// The journal's commit: one record per message and one `fdatasync`
    /// of the journal, then each envelope renamed into queue/ with no
    /// sync; only then are the messages reported committed. The renames,
    /// and the files' contents, become durable at the next checkpoint; a
    /// crash before that is repaired from the records when the spool is
    /// next opened (`journal/recover.rs`). The writer is held from the
    /// append through the renames: a checkpoint that takes it next covers
    /// only renamed messages.
    ///
    /// Gives the batch back untouched if it cannot be journaled (a body
    /// too large to have a copy, a batch larger than the segment, no
    /// journal, or a new epoch to make room failed). If a rename fails
    /// after the flush, that message is reported failed but its record is
    /// live: a crash before the next checkpoint would bring it back (a
    /// duplicate of a message the client will send again).
    fn commit_journaled(
        &self,
        batch: Vec<Staged>,
    ) -> Result<Vec<Result<QueueId, SpoolError>>, Vec<Staged>> {
        let ops = &*self.inner.ops;
        let Some(journal) = &self.inner.journal else {
            return Err(batch);
        };
        let entries: Option<Vec<Entry<'_>>> = batch
            .iter()
            .map(|s| {
                s.journal.as_ref().map(|copy| Entry {
                    id: &s.id,
                    envelope: &copy.envelope,
                    body: &copy.body,
                })
            })
            .collect();
        let Some(entries) = entries.filter(|e| !e.is_empty()) else {
            return Err(batch);
        };
        let bytes = Writer::batch_len(&entries);
        if !Writer::can_ever_hold(bytes) {
            return Err(batch);
        }
        let mut writer = journal.writer();
        if journal.is_off() {
            return Err(batch);
        }
        if !writer.has_room(bytes)
            && let Err(e) = self.new_epoch(journal, &mut writer)
        {
            self.journal_failed(&e);
            return Err(batch);
        }
        if let Err(e) = writer.append(ops, &entries) {
            self.journal_failed(&e);
            tracing::error!(error = %e, messages = batch.len(), "spool: journal write failed; refusing the batch");
            // Dropping the batch removes its files.
            return Ok(batch.iter().map(|_| Err(copy_spool_error(&e))).collect());
        }
        let layout = &self.inner.layout;
        let results = batch
            .into_iter()
            .map(|mut staged| {
                let id = staged.id;
                let env = layout.envelope_path(&id, Location::Queue);
                if let Err(e) = ops.rename(staged.env_tmp(), &env) {
                    remove_quietly(ops, &layout.body_path(&id));
                    return Err(SpoolError::io("rename", env, e));
                }
                staged.guard.disarm();
                Ok(id)
            })
            .collect();
        drop(writer);
        Ok(results)
    }

    /// A checkpoint: notes how far the journal is written (every message
    /// of it renamed) and takes the lazy removals so far; then, without
    /// holding the writer, one `syncfs` makes all that durable in queue/
    /// (the removed messages' files then go to the free list) and the
    /// header says those records are covered. Nothing to do if nothing
    /// changed since the last one.
    fn checkpoint(&self) -> Result<(), SpoolError> {
        let Some(journal) = self.inner.journal.as_ref().filter(|j| !j.is_off()) else {
            return Ok(());
        };
        let (doomed, (epoch, seq), behind) = {
            let writer = journal.writer();
            let doomed = self.inner.free.take_doomed();
            (doomed, writer.position(), journal.behind(&writer))
        };
        let unsynced = self.inner.queue_unsynced.swap(false, Ordering::SeqCst);
        if doomed.is_empty() && !behind && !unsynced {
            return Ok(());
        }
        journal.start_checkpoint();
        if let Err(e) = self.syncfs_then_release(doomed) {
            self.keep_unsynced(unsynced);
            return Err(e);
        }
        let covered = journal.cover(&*self.inner.ops, epoch, seq);
        if let Err(e) = &covered {
            self.journal_failed(e);
        }
        covered
    }

    /// The committer's checkpoint when the segment is full (or a write
    /// failed), holding the writer throughout: `syncfs` covers every
    /// record, then a new epoch starts at the start of the segment.
    fn new_epoch(&self, journal: &Journal, writer: &mut Writer) -> Result<(), SpoolError> {
        let doomed = self.inner.free.take_doomed();
        journal.start_checkpoint();
        self.syncfs_then_release(doomed)?;
        journal.new_epoch(&*self.inner.ops, writer)
    }

    /// One `syncfs`; on success the files of `doomed` go to the free list,
    /// on failure `doomed` waits for the next.
    fn syncfs_then_release(&self, doomed: Vec<super::free::Doomed>) -> Result<(), SpoolError> {
        let layout = &self.inner.layout;
        if let Err(e) = self.syncfs() {
            self.inner.free.give_back_doomed(doomed);
            return Err(SpoolError::io("syncfs", &layout.queue, e));
        }
        self.inner.free.release(&*self.inner.ops, layout, doomed);
        Ok(())
    }

    /// With [`SyncMode::Journal`]: whether the committer should have a
    /// checkpoint made ([`Spool::reap_removed`]) now, after answering a
    /// batch: something was journaled since the last, which started at
    /// least [`CHECKPOINT_INTERVAL`] ago. True at most once per interval:
    /// a true answer counts as the start of the next checkpoint.
    pub fn take_due_checkpoint(&self) -> bool {
        self.inner.journal.as_ref().is_some_and(|j| {
            !j.is_off()
                && j.since_checkpoint() >= CHECKPOINT_INTERVAL
                && j.behind(&j.writer())
                && j.start_checkpoint() >= CHECKPOINT_INTERVAL
        })
    }
}

/// A copy of `e` for each message of a failed batch.
fn copy_spool_error(e: &SpoolError) -> SpoolError {
    match e {
        SpoolError::Io { op, path, source } => SpoolError::Io {
            op,
            path: path.clone(),
            source: copy_io_error(source),
        },
        other => SpoolError::io("journal", "", io::Error::other(other.to_string())),
    }
}
