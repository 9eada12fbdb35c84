//! The in-flight stages of a message before it is committed.
//!
//! A message starts as a [`BodyWriter`] (`queue/<id>.msg` being written in
//! place, a fresh file or one taken from the free list; it keeps the
//! CRC-32 of what it writes for the envelope), becomes [`Staged`] once its
//! envelope is written too (in tmp/ or free/, or already renamed into
//! queue/: see `stage.rs`), and is then committed by
//! [`Spool::commit_batch`](super::Spool::commit_batch). Both types own the
//! message's files until then: dropping either without going on unlinks
//! them (recycled or not), so an aborted SMTP transaction or a failed step
//! leaves nothing behind.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::durable::{FileOps, cut, remove_quietly, write_all};
use super::envelope::Envelope;
use super::error::SpoolError;
use super::id::QueueId;

/// Buffer size of a [`BodyWriter`]: few, large `write(2)` calls.
const BODY_BUFFER: usize = 64 * 1024;

/// A message's uncommitted files (its body in queue/, its envelope in
/// tmp/), unlinked on drop unless disarmed.
pub(crate) struct TmpFiles {
    ops: Arc<dyn FileOps>,
    paths: Vec<PathBuf>,
}

impl TmpFiles {
    pub(crate) fn new(ops: Arc<dyn FileOps>, first: PathBuf) -> TmpFiles {
        TmpFiles {
            ops,
            paths: vec![first],
        }
    }

    pub(crate) fn push(&mut self, path: PathBuf) {
        self.paths.push(path);
    }

    /// The files were renamed away; nothing to remove any more.
    pub(crate) fn disarm(&mut self) {
        self.paths.clear();
    }
}

impl Drop for TmpFiles {
    fn drop(&mut self) {
        for path in self.paths.drain(..) {
            remove_quietly(&*self.ops, &path);
        }
    }
}

/// A `File` whose writes go through [`FileOps`] (so tests can fail them).
struct OpsFile {
    file: File,
    path: PathBuf,
    ops: Arc<dyn FileOps>,
}

/// A message body being received into `queue/<id>.msg`.
///
/// Buffered (64 KiB: few, large `write(2)` calls). Write the body exactly
/// as it will be sent (CRLF line ends, dot-unstuffed), through [`Write`]
/// or, for a producer that makes its bytes in place (the intake's DATA
/// receiver), [`BodyWriter::make_room`] and [`BodyWriter::append_with`]; then
/// hand it to [`Spool::stage`](super::Spool::stage). Dropping it, or
/// calling [`abort`](BodyWriter::abort), removes the file.
pub struct BodyWriter {
    id: QueueId,
    /// The open file; `None` only after `finish` handed it on.
    out: Option<OpsFile>,
    /// Bytes not yet written to the file.
    buf: Vec<u8>,
    len: u64,
    /// Length of the file when it was opened: 0 if fresh, the old content's
    /// if recycled. `finish` cuts the file to `len` if this is longer.
    old_len: u64,
    /// Owns `queue/<id>.msg`; `None` only after `finish` handed it on.
    guard: Option<TmpFiles>,
    /// A copy of the body for the commit journal, kept while it is at
    /// most `copy_limit` bytes long (dropped beyond that).
    copy: Option<Vec<u8>>,
    copy_limit: usize,
    /// CRC-32 of the bytes written so far (the envelope records it).
    crc: crc32fast::Hasher,
}

/// What the commit journal needs of a staged message (see
/// `spool/journal.rs`): its envelope as written and its whole body.
pub(crate) struct JournalCopy {
    pub(crate) envelope: Vec<u8>,
    pub(crate) body: Vec<u8>,
}

/// What [`BodyWriter::finish`] hands on.
pub(crate) struct Finished {
    pub(crate) id: QueueId,
    pub(crate) len: u64,
    pub(crate) guard: TmpFiles,
    /// The body, if a copy was kept and it fit.
    pub(crate) copy: Option<Vec<u8>>,
    /// CRC-32 of the body's bytes.
    pub(crate) crc32: u32,
}

impl BodyWriter {
    /// `file` is `path`, open for writing at offset 0 and `old_len` bytes long.
    pub(crate) fn new(
        id: QueueId,
        file: File,
        path: PathBuf,
        ops: Arc<dyn FileOps>,
        old_len: u64,
    ) -> BodyWriter {
        let guard = TmpFiles::new(ops.clone(), path.clone());
        BodyWriter {
            id,
            out: Some(OpsFile { file, path, ops }),
            buf: Vec::with_capacity(BODY_BUFFER),
            len: 0,
            old_len,
            guard: Some(guard),
            copy: None,
            copy_limit: 0,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// Keeps a copy of the body in memory for the commit journal, as long
    /// as it is at most `limit` bytes.
    pub(crate) fn keep_copy(mut self, limit: usize) -> BodyWriter {
        self.copy = Some(Vec::new());
        self.copy_limit = limit;
        self
    }

    /// The id this message will have.
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    /// Bytes written so far (including any still buffered).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Gives up on this message: the file is removed.
    pub fn abort(self) {
        drop(self);
    }

    /// Makes room for `more` bytes in the write buffer: writes it out
    /// first when they would not fit. Call it before
    /// [`BodyWriter::append_with`] to keep the buffer at [`BODY_BUFFER`]
    /// bytes, or at `more` if that is larger.
    pub fn make_room(&mut self, more: usize) -> io::Result<()> {
        if !self.buf.is_empty() && self.buf.len() + more > BODY_BUFFER {
            self.write_buffer()?;
        }
        Ok(())
    }

    /// Lets `produce` append the next bytes of the body to the write
    /// buffer in place (no copy through a buffer of the caller's); returns
    /// what `produce` returned. Nothing is written here: the buffer goes
    /// to the file in [`BodyWriter::make_room`] or at the end.
    pub fn append_with<R>(&mut self, produce: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let start = self.buf.len();
        let r = produce(&mut self.buf);
        let added = self.buf.get(start..).unwrap_or_default();
        self.len += added.len() as u64;
        self.crc.update(added);
        self.keep(start);
        r
    }

    /// Adds the buffer's bytes from `start` on to the journal's copy, or
    /// drops the copy once the body outgrows it.
    fn keep(&mut self, start: usize) {
        if let Some(copy) = &mut self.copy {
            let added = self.buf.get(start..).unwrap_or_default();
            if copy.len() + added.len() <= self.copy_limit {
                copy.extend_from_slice(added);
            } else {
                self.copy = None;
            }
        }
    }

    /// Writes out the whole buffer. On an error the buffer is dropped (the
    /// message is lost either way: its writer is aborted).
    fn write_buffer(&mut self) -> io::Result<()> {
        let out = self.out.as_mut().expect("BodyWriter used after finish");
        let result = write_all(&*out.ops, &mut out.file, &out.path, &self.buf);
        self.buf.clear();
        result
    }

    /// Flushes the buffer, cuts a recycled file to the bytes written (before
    /// any sync, so no old byte survives) and, when `sync`, `fdatasync`s the
    /// file; returns the guard that still owns the file, the body's
    /// length, and the copy if one was kept.
    pub(crate) fn finish(mut self, sync: bool) -> Result<Finished, SpoolError> {
        if let Err(e) = self.write_buffer() {
            let path = self
                .out
                .as_ref()
                .map(|o| o.path.clone())
                .unwrap_or_default();
            return Err(SpoolError::io("write", &path, e));
        }
        let out = self.out.take().expect("BodyWriter used after finish");
        cut(&*out.ops, &out.file, &out.path, self.old_len, self.len)?;
        if sync {
            out.ops
                .sync_data(&out.file, &out.path)
                .map_err(|e| SpoolError::io("fdatasync", &out.path, e))?;
        }
        drop(out);
        let guard = self
            .guard
            .take()
            .expect("BodyWriter guard present until finish");
        Ok(Finished {
            id: self.id,
            len: self.len,
            guard,
            copy: self.copy.take(),
            crc32: self.crc.clone().finalize(),
        })
    }
}

impl Write for BodyWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.make_room(bytes.len())?;
        self.append_with(|buf| buf.extend_from_slice(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_buffer()
    }
}

impl fmt::Debug for BodyWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyWriter")
            .field("id", &self.id)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// A message whose body (in queue/) and envelope (in tmp/, free/ or
/// queue/) are written, ready to commit; durable already with [`SyncMode::Files`](super::SyncMode::Files),
/// made durable by the committer's `syncfs` otherwise.
///
/// Dropping it uncommitted removes both files.
pub struct Staged {
    /// The message's id.
    pub id: QueueId,
    envelope: Envelope,
    body_tmp: PathBuf,
    env_tmp: PathBuf,
    pub(crate) guard: TmpFiles,
    /// With `sync = "journal"` and a body small enough: the record the
    /// committer journals instead of syncing the files.
    pub(crate) journal: Option<JournalCopy>,
    /// Whether its body and envelope were `fdatasync`ed while staging.
    pub(crate) synced: bool,
    /// Whether its envelope is in queue/ already (renamed there while
    /// staging, with [`SyncMode::Filesystem`](super::SyncMode::Filesystem)):
    /// the commit is then one `syncfs`, and no rename.
    pub(crate) in_queue: bool,
}

impl Staged {
    pub(crate) fn new(
        envelope: Envelope,
        body_tmp: PathBuf,
        env_tmp: PathBuf,
        guard: TmpFiles,
    ) -> Staged {
        Staged {
            id: envelope.id,
            envelope,
            body_tmp,
            env_tmp,
            guard,
            journal: None,
            synced: false,
            in_queue: false,
        }
    }

    /// The envelope as written (with `size` set from the body).
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    pub(crate) fn body_tmp(&self) -> &Path {
        &self.body_tmp
    }

    pub(crate) fn env_tmp(&self) -> &Path {
        &self.env_tmp
    }
}

impl fmt::Debug for Staged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staged")
            .field("id", &self.id)
            .field("size", &self.envelope.size)
            .finish_non_exhaustive()
    }
}
