//! The commit journal (`[queue] sync = "journal"`): a write-ahead log that
//! lets the group committer acknowledge a batch after one data-only flush.
//!
//! `<root>/journal` is one segment of [`SEGMENT_LEN`] bytes, written full
//! of zeros and synced when it is made, so that writing into it later
//! changes no metadata: its `fdatasync` needs no file-system journal
//! commit, which is what makes it cheaper than `syncfs` or a directory
//! `fsync`. Layout:
//!
//! ```text
//! 0, 512   two header slots: the last checkpointed epoch (the newer sound one counts)
//! 4096..   records of the current epoch (header + 1), seq 0, 1, 2, …
//! ```
//!
//! A commit appends one record per message (id, envelope JSON, body; see
//! `record.rs`) and `fdatasync`s the segment once; then the envelopes are
//! renamed into queue/ with no sync and the batch is answered. The renames,
//! the bodies and envelopes themselves, and lazy removals become durable at
//! the next checkpoint: one `syncfs`, then the header is advanced to the
//! current epoch (which retires every record of it) and the segment is
//! written again from the start. Until then the records are what makes
//! the messages durable: [`recover::replay`] rewrites from them whatever
//! did not reach queue/.
//!
//! Only messages whose body is at most [`MAX_JOURNALED_BODY`] go through
//! the journal; a batch with a larger one is committed as with
//! `"filesystem"`. Not here: deciding when to checkpoint (the spool's
//! committer, `commit.rs`), and recycling files (`free.rs`: a removal is
//! durable, and its files reusable, only after a checkpoint).

mod record;
pub(super) mod recover;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::durable::{FileOps, write_all};
use super::error::SpoolError;
use super::id::QueueId;

pub(crate) use record::Record;

/// The journal's file name under the spool root.
pub(super) const JOURNAL_FILE: &str = "journal";

/// Largest body kept in the journal. A record of this size takes 16 pages
/// to write and flush, still far cheaper than a file-system commit; above
/// it the copy held in memory per session and the bytes written twice
/// stop paying for themselves, and `"filesystem"` (one `syncfs`) is used.
/// At 256 such messages per batch a batch still fits in one segment.
pub const MAX_JOURNALED_BODY: usize = 64 * 1024;

/// Size of the segment: 16 MiB, about 10,000 typical messages (1.5 KB)
/// between checkpoints, or one full batch of the largest journaled ones.
pub(super) const SEGMENT_LEN: u64 = 16 * 1024 * 1024;

/// Offset of the first record; the headers sit in the first page.
const RECORDS_START: u64 = 4096;
/// Distance between the two header slots.
const SLOT_LEN: u64 = 512;

/// One message of a batch to be journaled.
pub(super) struct Entry<'a> {
    pub(super) id: &'a QueueId,
    pub(super) envelope: &'a [u8],
    pub(super) body: &'a [u8],
}

/// The open segment and where the next record goes. Used only by the
/// committer's thread (behind the spool's journal mutex).
#[derive(Debug)]
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    /// Epoch of the records being written: the header's + 1.
    epoch: u64,
    /// Sequence number of the next record.
    seq: u32,
    /// Offset of the next record.
    offset: u64,
    /// Something was written, or a write was attempted, since the last
    /// checkpoint: the next checkpoint must advance the header.
    dirty: bool,
    /// A write or flush failed: nothing more is appended until a
    /// checkpoint has retired the epoch (the segment's state is unknown).
    broken: bool,
    last_checkpoint: Instant,
    buf: Vec<u8>,
}

impl Journal {
    /// Opens `<root>/journal` for writing (making it, preallocated, if it
    /// is missing or not [`SEGMENT_LEN`] long), after
    /// [`recover::replay`] has brought queue/ up to date with it and
    /// found `checkpointed` in its header. The header is advanced once
    /// more, so that no record left in the segment can ever look live.
    pub(super) fn open(
        ops: &dyn FileOps,
        root: &Path,
        checkpointed: u64,
    ) -> Result<Journal, SpoolError> {
        let path = root.join(JOURNAL_FILE);
        let len = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        if len != Some(SEGMENT_LEN) {
            preallocate(ops, root, &path)?;
        }
        let file = ops
            .open_existing_for_write(&path)
            .map_err(|e| SpoolError::io("open", &path, e))?;
        let mut journal = Journal {
            file,
            path,
            epoch: checkpointed + 1,
            seq: 0,
            offset: RECORDS_START,
            dirty: true,
            broken: false,
            last_checkpoint: Instant::now(),
            buf: Vec::new(),
        };
        journal.retire(ops)?;
        Ok(journal)
    }

    /// Whether a batch of `bytes` (see [`Journal::batch_len`]) fits in an
    /// empty segment at all; if not, it must be committed another way.
    pub(super) fn can_ever_hold(bytes: usize) -> bool {
        RECORDS_START + bytes as u64 <= SEGMENT_LEN
    }

    /// Bytes the records of `entries` take.
    pub(super) fn batch_len(entries: &[Entry<'_>]) -> usize {
        entries
            .iter()
            .map(|e| record::record_len(e.envelope.len(), e.body.len()))
            .sum()
    }

    /// Whether `bytes` more can be appended now without a checkpoint.
    pub(super) fn has_room(&self, bytes: usize) -> bool {
        !self.broken && self.offset + bytes as u64 <= SEGMENT_LEN
    }

    /// Whether a checkpoint would retire anything.
    pub(super) fn dirty(&self) -> bool {
        self.dirty
    }

    /// Time since the last checkpoint.
    pub(super) fn since_checkpoint(&self) -> std::time::Duration {
        self.last_checkpoint.elapsed()
    }

    /// Appends one record per entry and `fdatasync`s the segment once.
    /// Only after `Ok` are the messages durable. The caller checked
    /// [`Journal::has_room`].
    pub(super) fn append(
        &mut self,
        ops: &dyn FileOps,
        entries: &[Entry<'_>],
    ) -> Result<(), SpoolError> {
        debug_assert!(self.has_room(Journal::batch_len(entries)));
        self.buf.clear();
        let mut seq = self.seq;
        for e in entries {
            record::encode_record(&mut self.buf, self.epoch, seq, e.id, e.envelope, e.body);
            seq += 1;
        }
        self.dirty = true;
        let result = self.write_at(ops, self.offset).and_then(|()| {
            ops.sync_data(&self.file, &self.path)
                .map_err(|e| SpoolError::io("fdatasync", &self.path, e))
        });
        match result {
            Ok(()) => {
                self.offset += self.buf.len() as u64;
                self.seq = seq;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Completes a checkpoint whose `syncfs` has succeeded: the header
    /// says the current epoch is covered, and the segment starts over
    /// with the next. If this fails the records stay live (replayed after
    /// a crash: harmless) and the next checkpoint tries again.
    pub(super) fn retire(&mut self, ops: &dyn FileOps) -> Result<(), SpoolError> {
        self.buf.clear();
        self.buf
            .extend_from_slice(&record::encode_header(self.epoch));
        let slot = (self.epoch % 2) * SLOT_LEN;
        self.write_at(ops, slot)?;
        ops.sync_data(&self.file, &self.path)
            .map_err(|e| SpoolError::io("fdatasync", &self.path, e))?;
        self.epoch += 1;
        self.seq = 0;
        self.offset = RECORDS_START;
        self.dirty = false;
        self.broken = false;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Writes `self.buf` at `offset`.
    fn write_at(&mut self, ops: &dyn FileOps, offset: u64) -> Result<(), SpoolError> {
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| write_all(ops, &mut self.file, &self.path, &self.buf))
            .map_err(|e| SpoolError::io("write", &self.path, e))
    }
}

/// Writes `epoch` as the checkpointed one into `file` (which is `path`)
/// and `fdatasync`s; for recovery, which has no [`Journal`].
pub(super) fn write_header(
    ops: &dyn FileOps,
    file: &mut File,
    path: &Path,
    epoch: u64,
) -> Result<(), SpoolError> {
    file.seek(SeekFrom::Start((epoch % 2) * SLOT_LEN))
        .and_then(|_| write_all(ops, file, path, &record::encode_header(epoch)))
        .map_err(|e| SpoolError::io("write", path, e))?;
    ops.sync_data(file, path)
        .map_err(|e| SpoolError::io("fdatasync", path, e))
}

/// The checkpointed epoch in the first page of a segment read into
/// `bytes`: the newer of the two slots that are sound, 0 if neither is.
pub(super) fn read_header(bytes: &[u8]) -> u64 {
    let slot = |i: u64| {
        bytes
            .get((i * SLOT_LEN) as usize..)
            .and_then(record::decode_header)
    };
    slot(0).max(slot(1)).unwrap_or(0)
}

/// The live records of a whole segment read into `bytes`, given the
/// checkpointed epoch: those of the next epoch, in order, up to the first
/// that is missing, torn or stale.
pub(super) fn live_records(bytes: &[u8], checkpointed: u64) -> Vec<Record> {
    let mut out = Vec::new();
    let mut at = RECORDS_START as usize;
    let mut seq = 0;
    while let Some((rec, len)) = bytes
        .get(at..)
        .and_then(|rest| record::decode_record(rest, checkpointed + 1, seq))
    {
        out.push(rec);
        at += len;
        seq += 1;
    }
    out
}

/// Makes `path` a segment full of zeros with an empty header, durably:
/// written as `<path>.new`, synced, renamed into place, root synced.
fn preallocate(ops: &dyn FileOps, root: &Path, path: &Path) -> Result<(), SpoolError> {
    let tmp = path.with_extension("new");
    super::durable::remove_quietly(ops, &tmp);
    let mut file = ops
        .create_new(&tmp)
        .map_err(|e| SpoolError::io("create", &tmp, e))?;
    let zeros = vec![0u8; 1024 * 1024];
    let mut left = SEGMENT_LEN;
    let result = (|| {
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            write_all(ops, &mut file, &tmp, &zeros[..n])
                .map_err(|e| SpoolError::io("write", &tmp, e))?;
            left -= n as u64;
        }
        ops.sync_data(&file, &tmp)
            .map_err(|e| SpoolError::io("fdatasync", &tmp, e))?;
        ops.rename(&tmp, path)
            .map_err(|e| SpoolError::io("rename", path, e))?;
        ops.sync_dir(root)
            .map_err(|e| SpoolError::io("fsync directory", root, e))
    })();
    if result.is_err() {
        super::durable::remove_quietly(ops, &tmp);
    }
    result
}
