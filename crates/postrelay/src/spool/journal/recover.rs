//! Replaying the commit journal when the spool is opened, before
//! recovery's scan of queue/.
//!
//! Every live record (not covered by a checkpoint; see `journal.rs`)
//! is a message that was acknowledged, or was about to be, after one
//! `fdatasync` of the journal only: its body and envelope in queue/, and
//! the rename that put the envelope there, may not have reached the disk.
//! So for each record:
//!
//! - the body `queue/<id>.msg` is kept only if its bytes are the record's
//!   (it may be missing, short, or a recycled file still holding a
//!   delivered message's bytes), else rewritten from the record;
//! - the envelope is kept if `queue/<id>.env` or `hold/<id>.env` parses,
//!   names this id and gives the record's body size (it may since have
//!   been rewritten by a delivery attempt, or held: that copy is newer),
//!   else `queue/<id>.env` is rewritten from the record.
//!
//! Rewrites go through tmp/ and a rename, then one `syncfs` makes them all
//! durable and a header with a new epoch retires the records. A message
//! delivered and removed after its record was written but before the next
//! checkpoint comes back: a duplicate delivery, never a loss (the window
//! is the checkpoint interval, see `queue::commit`).
//!
//! It does not decide whether a message is sound beyond that: recovery's
//! scan, which runs next, does.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::super::durable::{FileOps, remove_quietly, temp_name, write_new};
use super::super::error::SpoolError;
use super::super::id::QueueId;
use super::super::layout::{LOCK_FILE, Layout, Location};
use super::{Header, JOURNAL_FILE, Record, live_records, read_header, write_header};

/// What [`replay`] found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(in crate::spool) struct Replayed {
    /// The header afterwards (the default: no journal).
    pub(in crate::spool) header: Header,
    /// Live records found.
    pub(in crate::spool) records: usize,
    /// Of those, messages whose body or envelope had to be rewritten.
    pub(in crate::spool) rewritten: usize,
}

/// Replays `<root>/journal`, if there is one; `lock` is the spool's lock
/// file, through which `syncfs` goes.
pub(in crate::spool) fn replay(
    layout: &Layout,
    ops: &dyn FileOps,
    lock: &File,
) -> Result<Replayed, SpoolError> {
    let path = layout.root.join(JOURNAL_FILE);
    let mut file = match ops.open_existing_for_write(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Replayed::default()),
        Err(e) => return Err(SpoolError::io("open", &path, e)),
    };
    // A write-only descriptor cannot be read: read through a second one.
    let bytes = read_segment(&path)?;
    let header = read_header(&bytes);
    let records = live_records(&bytes, &header);
    drop(bytes);
    let mut done = Replayed {
        header,
        records: records.len(),
        rewritten: 0,
    };
    if records.is_empty() {
        return Ok(done);
    }
    for record in &records {
        done.rewritten += usize::from(restore(layout, ops, record)?);
    }
    let lock_path = layout.root.join(LOCK_FILE);
    ops.sync_filesystem(lock, &lock_path)
        .map_err(|e| SpoolError::io("syncfs", &layout.queue, e))?;
    let retired = Header {
        generation: header.generation + 1,
        epoch: header.epoch + 1,
        covered: 0,
    };
    write_header(ops, &mut file, &path, &retired)?;
    done.header = retired;
    tracing::info!(
        records = done.records,
        rewritten = done.rewritten,
        "spool recovery: commit journal replayed"
    );
    Ok(done)
}

/// The ids of the live records of `<root>/journal`, those a replay
/// would restore now (none if there is no journal); reads only.
pub(in crate::spool) fn pending(root: &Path) -> Result<Vec<QueueId>, SpoolError> {
    let path = root.join(JOURNAL_FILE);
    let bytes = match read_segment(&path) {
        Err(SpoolError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(Vec::new());
        }
        bytes => bytes?,
    };
    let header = read_header(&bytes);
    Ok(live_records(&bytes, &header).iter().map(|r| r.id).collect())
}

fn read_segment(path: &Path) -> Result<Vec<u8>, SpoolError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| SpoolError::io("read", path, e))?;
    Ok(bytes)
}

/// Makes the message of `record` whole in queue/ (or hold/); true if
/// anything had to be rewritten.
fn restore(layout: &Layout, ops: &dyn FileOps, record: &Record) -> Result<bool, SpoolError> {
    let id = &record.id;
    let body_path = layout.body_path(id);
    let body_ok = std::fs::read(&body_path).is_ok_and(|b| b == record.body);
    if !body_ok {
        tracing::warn!(%id, "spool recovery: body rewritten from the commit journal");
        replace(layout, ops, &body_path, &record.body)?;
    }
    let size = record.body.len() as u64;
    let env_ok = [Location::Queue, Location::Hold].into_iter().any(|loc| {
        layout
            .read_envelope(&layout.envelope_path(id, loc), id)
            .is_ok_and(|env| env.size == size)
    });
    if !env_ok {
        tracing::warn!(%id, "spool recovery: envelope rewritten from the commit journal");
        let env_path = layout.envelope_path(id, Location::Queue);
        replace(layout, ops, &env_path, &record.envelope)?;
    }
    Ok(!body_ok || !env_ok)
}

/// Replaces `path` with `bytes` by a rename from tmp/, not synced (the
/// caller's `syncfs` does that for all).
fn replace(
    layout: &Layout,
    ops: &dyn FileOps,
    path: &Path,
    bytes: &[u8],
) -> Result<(), SpoolError> {
    let tmp = temp_name(&layout.tmp, path);
    write_new(ops, &tmp, bytes, false)?;
    if let Err(e) = ops.rename(&tmp, path) {
        remove_quietly(ops, &tmp);
        return Err(SpoolError::io("rename", path, e));
    }
    Ok(())
}
