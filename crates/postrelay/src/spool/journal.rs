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
//! 0, 512   two header slots (the sound one of the higher generation counts):
//!          the epoch being written, and how many of its records are covered
//! 4096..   records of that epoch, seq 0, 1, 2, …
//! ```
//!
//! A commit appends one record per message (id, envelope JSON, body; see
//! `record.rs`) and `fdatasync`s the segment once; then the envelopes are
//! renamed into queue/ with no sync and the batch is answered, all under
//! the [`Writer`]'s lock. The renames, the bodies and envelopes
//! themselves, and lazy removals become durable at the next checkpoint:
//! it notes under that lock how many records exist (all renamed), runs
//! `syncfs` without it (so commits go on meanwhile, on another thread),
//! then writes that count into the header as covered. When the segment is
//! full the committer makes a checkpoint itself and starts a new epoch
//! from the start of the segment (a header with the new epoch and nothing
//! covered comes first). Until covered, the records are what makes the
//! messages durable: [`recover::replay`] rewrites from them whatever did
//! not reach queue/.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::durable::{FileOps, write_all};
use super::error::SpoolError;
use super::id::QueueId;

pub(crate) use record::{Header, Record};

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

/// The commit journal of an open spool: the writer (the committer's) and
/// the header (any checkpoint's), each behind its own lock and with its
/// own descriptor; and what the header says, behind a third lock never
/// held across I/O, so that the committer's questions after a batch never
/// wait for a checkpoint's header flush. Lock order: writer, header,
/// progress.
#[derive(Debug)]
pub(super) struct Journal {
    writer: Mutex<Writer>,
    header: Mutex<HeaderState>,
    progress: Mutex<Progress>,
    /// A flush of the journal or a `syncfs` failed: the journal appends
    /// and covers nothing more in this process (see [`Journal::turn_off`]).
    off: AtomicBool,
}

/// Where the next record goes.
#[derive(Debug)]
pub(super) struct Writer {
    file: File,
    path: PathBuf,
    /// Epoch of the records being written (the header's).
    epoch: u64,
    /// Sequence number of the next record.
    seq: u32,
    /// Offset of the next record.
    offset: u64,
    buf: Vec<u8>,
}

/// The header as last written.
#[derive(Debug)]
struct HeaderState {
    file: File,
    path: PathBuf,
    written: Header,
}

/// What the header says, `(epoch, covered)`, and when the last
/// checkpoint started.
#[derive(Debug)]
struct Progress {
    covered: (u64, u32),
    last_start: Instant,
}

impl Journal {
    /// Opens `<root>/journal` for writing (making it, preallocated, if it
    /// is missing or not [`SEGMENT_LEN`] long), after [`recover::replay`]
    /// has brought queue/ up to date with it and left `header` in it. A
    /// new epoch starts, so that no record left in the segment can ever
    /// look live.
    pub(super) fn open(
        ops: &dyn FileOps,
        root: &Path,
        header: Header,
    ) -> Result<Journal, SpoolError> {
        let path = root.join(JOURNAL_FILE);
        let len = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        if len != Some(SEGMENT_LEN) {
            preallocate(ops, root, &path)?;
        }
        let open = || {
            ops.open_existing_for_write(&path)
                .map_err(|e| SpoolError::io("open", &path, e))
        };
        let mut header = HeaderState {
            file: open()?,
            path: path.clone(),
            written: header,
        };
        let epoch = header.written.epoch + 1;
        header.write(ops, epoch, 0)?;
        let writer = Writer {
            file: open()?,
            path,
            epoch,
            seq: 0,
            offset: RECORDS_START,
            buf: Vec::new(),
        };
        Ok(Journal {
            writer: Mutex::new(writer),
            header: Mutex::new(header),
            progress: Mutex::new(Progress {
                covered: (epoch, 0),
                last_start: Instant::now(),
            }),
            off: AtomicBool::new(false),
        })
    }

    /// The writer; the committer holds it from the append through the
    /// renames, so that whoever takes it next sees only records whose
    /// messages are renamed into queue/.
    pub(super) fn writer(&self) -> MutexGuard<'_, Writer> {
        // A panic mid-append leaves `broken` unset but the next append
        // overwrites the same place; nothing acknowledged depends on it.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the journal for the rest of the process, after a failed
    /// flush of it or a failed `syncfs`: Linux reports a write-back error
    /// once, so a later flush or `syncfs` may succeed although pages
    /// written before it never reached the disk, and a header written
    /// after it could retire records whose files in queue/ are not
    /// durable. The records stay live; the next start replays them.
    /// True the first time.
    pub(super) fn turn_off(&self) -> bool {
        // Taken under the header lock, so that no `cover` that began
        // before is still writing once this returns.
        let _header = self.header();
        !self.off.swap(true, Ordering::SeqCst)
    }

    /// Whether [`Journal::turn_off`] was called.
    pub(super) fn is_off(&self) -> bool {
        self.off.load(Ordering::SeqCst)
    }

    fn header(&self) -> MutexGuard<'_, HeaderState> {
        self.header.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether records written up to `writer`'s position are not all
    /// covered by the header yet.
    pub(super) fn behind(&self, writer: &Writer) -> bool {
        self.progress().covered < (writer.epoch, writer.seq)
    }

    /// Marks a checkpoint as started now; returns the time since the
    /// last one started.
    pub(super) fn start_checkpoint(&self) -> std::time::Duration {
        let mut p = self.progress();
        let since = p.last_start.elapsed();
        p.last_start = Instant::now();
        since
    }

    /// Time since the last checkpoint started.
    pub(super) fn since_checkpoint(&self) -> std::time::Duration {
        self.progress().last_start.elapsed()
    }

    /// After a `syncfs` that followed the renames of every record before
    /// `(epoch, seq)`: writes that into the header as covered, unless it
    /// already says as much (a later checkpoint got there first).
    pub(super) fn cover(&self, ops: &dyn FileOps, epoch: u64, seq: u32) -> Result<(), SpoolError> {
        let mut h = self.header();
        if self.is_off() || !h.written.behind(epoch, seq) {
            return Ok(());
        }
        h.write(ops, epoch, seq)?;
        self.progress().covered = (epoch, seq);
        Ok(())
    }

    /// Starts a new epoch at the start of the segment, once a `syncfs`
    /// has covered every record of the current one (the caller holds the
    /// writer since before that `syncfs`).
    pub(super) fn new_epoch(&self, ops: &dyn FileOps, w: &mut Writer) -> Result<(), SpoolError> {
        let epoch = w.epoch + 1;
        self.header().write(ops, epoch, 0)?;
        self.progress().covered = (epoch, 0);
        w.epoch = epoch;
        w.seq = 0;
        w.offset = RECORDS_START;
        Ok(())
    }
}

impl HeaderState {
    /// Writes the next generation of the header into its slot and
    /// `fdatasync`s; only then is it remembered.
    fn write(&mut self, ops: &dyn FileOps, epoch: u64, covered: u32) -> Result<(), SpoolError> {
        let next = Header {
            generation: self.written.generation + 1,
            epoch,
            covered,
        };
        write_header(ops, &mut self.file, &self.path, &next)?;
        self.written = next;
        Ok(())
    }
}

impl Writer {
    /// Whether a batch of `bytes` (see [`Writer::batch_len`]) fits in an
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

    /// Whether `bytes` more can be appended now without a new epoch.
    pub(super) fn has_room(&self, bytes: usize) -> bool {
        self.offset + bytes as u64 <= SEGMENT_LEN
    }

    /// The position after the last record: `(epoch, seq)`.
    pub(super) fn position(&self) -> (u64, u32) {
        (self.epoch, self.seq)
    }

    /// Appends one record per entry and `fdatasync`s the segment once.
    /// Only after `Ok` are the messages durable. The caller checked
    /// [`Writer::has_room`]. After an error the caller turns the journal
    /// off; the first record of the batch is zeroed (in the page cache at
    /// least: no flush can be trusted now), so that a replay, which ends
    /// there, does not bring back a batch that was refused.
    pub(super) fn append(
        &mut self,
        ops: &dyn FileOps,
        entries: &[Entry<'_>],
    ) -> Result<(), SpoolError> {
        debug_assert!(self.has_room(Writer::batch_len(entries)));
        self.buf.clear();
        let mut seq = self.seq;
        for e in entries {
            record::encode_record(&mut self.buf, self.epoch, seq, e.id, e.envelope, e.body);
            seq += 1;
        }
        let result = self
            .file
            .seek(SeekFrom::Start(self.offset))
            .and_then(|_| write_all(ops, &mut self.file, &self.path, &self.buf))
            .map_err(|e| SpoolError::io("write", &self.path, e))
            .and_then(|()| {
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
                let _ = self
                    .file
                    .seek(SeekFrom::Start(self.offset))
                    .and_then(|_| write_all(ops, &mut self.file, &self.path, &[0; 4]));
                Err(e)
            }
        }
    }
}

/// Writes `header` into its slot of `file` (which is `path`) and
/// `fdatasync`s.
pub(super) fn write_header(
    ops: &dyn FileOps,
    file: &mut File,
    path: &Path,
    header: &Header,
) -> Result<(), SpoolError> {
    file.seek(SeekFrom::Start((header.generation % 2) * SLOT_LEN))
        .and_then(|_| write_all(ops, file, path, &record::encode_header(header)))
        .map_err(|e| SpoolError::io("write", path, e))?;
    ops.sync_data(file, path)
        .map_err(|e| SpoolError::io("fdatasync", path, e))
}

/// The header in the first page of a segment read into `bytes`: the
/// sound slot of the higher generation (the default if neither is).
pub(super) fn read_header(bytes: &[u8]) -> Header {
    let slot = |i: u64| {
        bytes
            .get((i * SLOT_LEN) as usize..)
            .and_then(record::decode_header)
    };
    [slot(0), slot(1)]
        .into_iter()
        .flatten()
        .max_by_key(|h| h.generation)
        .unwrap_or_default()
}

/// The records of a whole segment read into `bytes` that `header` leaves
/// live: those of its epoch, walked in order from the first up to the
/// first that is missing, torn or stale, numbered `header.covered` and up.
pub(super) fn live_records(bytes: &[u8], header: &Header) -> Vec<Record> {
    let mut out = Vec::new();
    let mut at = RECORDS_START as usize;
    let mut seq = 0;
    while let Some((rec, len)) = bytes
        .get(at..)
        .and_then(|rest| record::decode_record(rest, header.epoch, seq))
    {
        if seq >= header.covered {
            out.push(rec);
        }
        at += len;
        seq += 1;
    }
    out
}

/// Makes `path` a segment full of zeros with an empty header, durably
/// (written in tmp/, synced, renamed into place, root synced). The zeros
/// are one allocation of the segment's size, for as long as this runs.
fn preallocate(ops: &dyn FileOps, root: &Path, path: &Path) -> Result<(), SpoolError> {
    let zeros = vec![0u8; SEGMENT_LEN as usize];
    super::durable::write_atomically(ops, &root.join(super::layout::TMP_DIR), path, &zeros)
}
