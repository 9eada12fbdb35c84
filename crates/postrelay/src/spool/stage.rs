//! How a message gets into the spool before its commit: [`Spool::new_body`]
//! gives it an id and a body file, [`Spool::stage`] writes its envelope
//! (and, with `queue.sync = "filesystem"`, renames it into queue/), so
//! that [`Spool::commit_batch`] has only the flush left to do. Not here:
//! the commit itself (`commit.rs`) and the journal's record (`journal.rs`).

use std::io;

use super::body::{self, BodyWriter, JournalCopy, Staged};
use super::durable;
use super::envelope::Envelope;
use super::error::SpoolError;
use super::id::{FileKind, QueueId};
use super::layout::Location;
use super::{Spool, SyncMode, journal};

impl Spool {
    /// Starts a new message: allocates its id and makes `queue/<id>.msg`,
    /// from a file of the free list (renamed there without replacing
    /// anything, to be overwritten and cut to length) or else created
    /// (0600, `O_EXCL`). The body is written in place: until its envelope
    /// exists the message does not (a body alone is an orphan that
    /// recovery removes), so no rename is needed for it.
    pub fn new_body(&self) -> Result<BodyWriter, SpoolError> {
        let body = self.new_body_file()?;
        Ok(match self.mode() {
            SyncMode::Journal => body.keep_copy(journal::MAX_JOURNALED_BODY),
            SyncMode::Files | SyncMode::Filesystem => body,
        })
    }

    /// [`Spool::new_body`] without the journal's copy.
    fn new_body_file(&self) -> Result<BodyWriter, SpoolError> {
        let ops = &self.inner.ops;
        let mut attempts = 0;
        loop {
            let id = QueueId::generate();
            let path = self.inner.layout.body_path(&id);
            if let Some(reused) = self.inner.free.reuse(&**ops, FileKind::Body, &path) {
                return Ok(BodyWriter::new(
                    id,
                    reused.file,
                    path,
                    ops.clone(),
                    reused.len,
                ));
            }
            match ops.create_new(&path) {
                Ok(file) => return Ok(BodyWriter::new(id, file, path, ops.clone(), 0)),
                // Two ids equal in timestamp and 80 random bits: take another.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => attempts += 1,
                Err(e) => return Err(SpoolError::io("create", path, e)),
            }
        }
    }

    /// Makes a received message ready to commit: flushes the body (cut to
    /// length if its file was recycled), writes the envelope, with the
    /// body's size and checksum, to `tmp/<id>.env` (or into a recycled file
    /// where it lies in free/), and then:
    ///
    /// - with [`SyncMode::Filesystem`] renames it into queue/ at once: the
    ///   committer's one `syncfs` then makes body, envelope and name
    ///   durable together, and recovery uses the envelope's checksums to
    ///   tell a message whose commit a power cut interrupted (never
    ///   acknowledged) from a sound one (docs/spool.md);
    /// - with [`SyncMode::Files`] `fdatasync`s both, and the committer
    ///   renames the envelope (then `fsync`s queue/);
    /// - with [`SyncMode::Journal`] leaves both to the committer's record.
    ///
    /// See [`Spool::stage_blocks`].
    ///
    /// The envelope is written as given except `size` and `body_crc32`,
    /// which come from the body as written. On error both files are gone.
    pub fn stage(&self, body: BodyWriter, envelope: &Envelope) -> Result<Staged, SpoolError> {
        if envelope.id != *body.id() {
            return Err(SpoolError::IdMismatch {
                body: *body.id(),
                envelope: envelope.id,
            });
        }
        let mode = self.mode();
        let sync = mode == SyncMode::Files;
        let body::Finished {
            id,
            len,
            mut guard,
            copy,
            crc32,
        } = body.finish(sync)?;
        let mut envelope = envelope.clone();
        envelope.size = len;
        envelope.body_crc32 = Some(crc32);
        let ops = &*self.inner.ops;
        let json = envelope.to_json();
        // A recycled envelope file is written where it lies in free/ and
        // renamed from there straight into queue/.
        let written = match self.inner.free.reuse_in_place(ops, FileKind::Envelope) {
            Some((path, r)) => {
                durable::overwrite(ops, r.file, r.len, &path, &json, sync)?;
                path
            }
            None => {
                let path = self.inner.layout.tmp.join(id.envelope_name());
                durable::write_new(ops, &path, &json, sync)?;
                path
            }
        };
        let in_queue = mode == SyncMode::Filesystem;
        let env_path = if in_queue {
            let dest = self.inner.layout.envelope_path(&id, Location::Queue);
            if let Err(e) = ops.rename(&written, &dest) {
                durable::remove_quietly(ops, &written);
                return Err(SpoolError::io("rename", dest, e));
            }
            dest
        } else {
            written
        };
        guard.push(env_path.clone());
        let body = self.inner.layout.body_path(&id);
        let mut staged = Staged::new(envelope, body, env_path, guard);
        staged.synced = sync;
        staged.in_queue = in_queue;
        staged.journal = copy.map(|body| JournalCopy {
            envelope: json,
            body,
        });
        Ok(staged)
    }

    /// Whether [`Spool::stage`] blocks on the disk (it `fdatasync`s with
    /// [`SyncMode::Files`]); async callers then run it on a blocking thread.
    pub fn stage_blocks(&self) -> bool {
        self.mode() == SyncMode::Files
    }
}
