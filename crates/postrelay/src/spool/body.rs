//! The in-flight stages of a message before it is committed.
//!
//! A message starts as a [`BodyWriter`] (`tmp/<id>.msg` being written), becomes
//! [`Staged`] once body and envelope are both in tmp/ and `fdatasync`ed, and
//! is then committed by [`Spool::commit_batch`](super::Spool::commit_batch).
//! Both types own their tmp/ files: dropping either without going on removes
//! them, so an aborted SMTP transaction or a failed step leaves nothing
//! behind. Nothing here touches queue/.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::durable::{FileOps, remove_quietly};
use super::envelope::Envelope;
use super::error::SpoolError;
use super::id::QueueId;

/// Buffer size of a [`BodyWriter`]: few, large `write(2)` calls.
const BODY_BUFFER: usize = 64 * 1024;

/// Files in tmp/ that are removed on drop unless disarmed.
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

impl Write for OpsFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ops.write(&mut self.file, &self.path, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A message body being received into `tmp/<id>.msg`.
///
/// Buffered (64 KiB). Write the body exactly as it will be sent (CRLF line
/// ends, dot-unstuffed), then hand it to
/// [`Spool::stage`](super::Spool::stage). Dropping it, or calling
/// [`abort`](BodyWriter::abort), removes the file.
pub struct BodyWriter {
    id: QueueId,
    out: Option<BufWriter<OpsFile>>,
    len: u64,
    /// Owns `tmp/<id>.msg`; `None` only after `finish` handed it on.
    guard: Option<TmpFiles>,
}

impl BodyWriter {
    pub(crate) fn new(id: QueueId, file: File, path: PathBuf, ops: Arc<dyn FileOps>) -> BodyWriter {
        let guard = TmpFiles::new(ops.clone(), path.clone());
        let out = BufWriter::with_capacity(BODY_BUFFER, OpsFile { file, path, ops });
        BodyWriter {
            id,
            out: Some(out),
            len: 0,
            guard: Some(guard),
        }
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

    /// Gives up on this message: the tmp file is removed.
    pub fn abort(self) {
        drop(self);
    }

    /// Flushes the buffer and, when `sync`, `fdatasync`s the file; returns
    /// the guard that still owns the file, and the body's length.
    pub(crate) fn finish(mut self, sync: bool) -> Result<(QueueId, u64, TmpFiles), SpoolError> {
        let out = self.out.take().expect("BodyWriter used after finish");
        let path = out.get_ref().path.clone();
        let inner = out.into_inner().map_err(|e| {
            let (error, unflushed) = e.into_parts();
            // Discard the rest instead of letting BufWriter's drop retry it.
            let _ = unflushed.into_parts();
            SpoolError::io("write", &path, error)
        })?;
        if sync {
            inner
                .ops
                .sync_data(&inner.file, &path)
                .map_err(|e| SpoolError::io("fdatasync", &path, e))?;
        }
        drop(inner);
        let guard = self
            .guard
            .take()
            .expect("BodyWriter guard present until finish");
        Ok((self.id, self.len, guard))
    }
}

impl Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let out = self.out.as_mut().expect("BodyWriter used after finish");
        let n = out.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out
            .as_mut()
            .expect("BodyWriter used after finish")
            .flush()
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        if let Some(out) = self.out.take() {
            // Do not flush: the data is being thrown away.
            let (_file, _unflushed) = out.into_parts();
        }
        // `self.guard`, if still here, is dropped next and removes the file.
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

/// A message whose body and envelope are in tmp/ and synced, ready to commit.
///
/// Dropping it uncommitted removes both tmp files.
pub struct Staged {
    /// The message's id.
    pub id: QueueId,
    envelope: Envelope,
    body_tmp: PathBuf,
    env_tmp: PathBuf,
    pub(crate) guard: TmpFiles,
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
