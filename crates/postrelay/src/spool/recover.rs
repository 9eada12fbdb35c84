//! Startup recovery: bring the spool back to its invariant after a crash.
//!
//! The invariant is "a message exists iff its `<id>.env` is in queue/ or
//! hold/, with its body in queue/ and of the recorded size". [`recover`]
//! runs once, under the spool lock, before anything is accepted or
//! scheduled:
//!
//! - tmp/ is emptied: nothing there was ever acknowledged;
//! - free/ is emptied: it holds files of delivered messages kept for reuse,
//!   garbage by definition (reusing them after a crash would mean trusting
//!   that each has no other name; starting empty costs a few creates);
//! - a body in queue/ with no envelope anywhere was never acknowledged (or
//!   was being removed) and is deleted;
//! - an envelope that does not parse (or whose checksum does not match
//!   its content), names another id, has no body, or whose size differs
//!   from its body's is moved to corrupt/ with its body, and logged as an
//!   error: a human must look, nothing is deleted;
//! - so is a message not yet tried whose body does not match the checksum
//!   its envelope records: with one `syncfs` per commit, a power cut
//!   during a commit can leave the envelope of a message never
//!   acknowledged on the disk, but not (all of) its body, whose file may
//!   still hold an earlier message's bytes. (A tried message's envelope
//!   was rewritten after its commit had completed: its body is not read.)
//! - an envelope present in both queue/ and hold/ (a hold or release cut
//!   short on a file system that does not order renames) keeps the held
//!   copy; the other goes to corrupt/;
//! - files the spool does not know are left alone and logged.
//!
//! It looks inside bodies only for that checksum, and does not decide what
//! to deliver.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use super::durable::FileOps;
use super::envelopes::EnvelopeFiles;
use super::error::SpoolError;
use super::id::{FileKind, QueueId};
use super::layout::{Layout, Location};

/// What [`Spool::recover`](super::Spool::recover) found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Files removed from tmp/.
    pub tmp_removed: usize,
    /// Recyclable files removed from free/.
    pub free_removed: usize,
    /// Bodies in queue/ without an envelope, removed.
    pub orphan_bodies_removed: usize,
    /// Envelopes moved to corrupt/ (their path before the move, and why).
    pub corrupt: Vec<(PathBuf, String)>,
    /// Messages in the spool afterwards (queue/ and hold/).
    pub messages: usize,
    /// Of `messages`, how many are on hold.
    pub held: usize,
    /// Files and directories the spool does not know, left in place.
    pub unknown: Vec<PathBuf>,
    /// Every message kept, sorted by id, with what the queue's index needs
    /// (read while checking it: the queue is loaded from this, so start-up
    /// reads each envelope once).
    pub found: Vec<Found>,
    /// Live records in the commit journal when the spool was opened
    /// (replayed before this scan; see `spool/journal/recover.rs`).
    pub journal_records: usize,
    /// Of those, messages whose body or envelope was rewritten from them.
    pub journal_rewritten: usize,
}

/// A sound message found by recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Its id.
    pub id: QueueId,
    /// Where its envelope is.
    pub location: Location,
    /// When its next attempt is due (unix ms), from its envelope.
    pub next_attempt_ms: u64,
}

/// The envelopes and bodies found in one directory.
#[derive(Default)]
struct Scan {
    envelopes: BTreeSet<QueueId>,
    bodies: BTreeSet<QueueId>,
}

/// Runs recovery on the spool at `layout`; the caller holds the lock.
pub(super) fn recover(layout: &Layout, ops: &dyn FileOps) -> Result<RecoveryReport, SpoolError> {
    recover_with(layout, ops, PER_READER)
}

/// Messages per reading thread: a spool of fewer is read on the calling
/// thread alone.
const PER_READER: usize = 256;

/// Reading threads at most. Reading envelopes (and the bodies of
/// messages not yet tried) right after a boot is waiting for the disk,
/// one small file after another; a virtio disk or an SSD serves several
/// reads at once. 100,000 envelopes with a cold page cache on the 2-CPU
/// development VM: 7.9 s one after another, 3.2 s with 8 readers (`cat`
/// through `xargs -P`, 2026-12-08).
const READERS: usize = 8;

/// [`recover`] with `per_reader` messages per reading thread.
fn recover_with(
    layout: &Layout,
    ops: &dyn FileOps,
    per_reader: usize,
) -> Result<RecoveryReport, SpoolError> {
    let mut report = RecoveryReport::default();

    report.tmp_removed = empty(&layout.tmp, ops, &mut report)?;
    // Not counted as a change below: nothing needs these unlinks to be
    // durable (a file back in free/ after a crash is removed next time).
    report.free_removed = empty(&layout.free, ops, &mut report)?;

    let mut queue = scan(&layout.queue, true, &mut report)?;
    let hold = scan(&layout.hold, false, &mut report)?;

    for id in queue
        .envelopes
        .intersection(&hold.envelopes)
        .copied()
        .collect::<Vec<_>>()
    {
        let path = layout.envelope_path(&id, Location::Queue);
        quarantine(layout, ops, &path, None)?;
        report
            .corrupt
            .push((path, "also present in hold/; the held copy is kept".into()));
        queue.envelopes.remove(&id);
    }

    let all: Vec<Message> = queue
        .envelopes
        .iter()
        .map(|id| (*id, Location::Queue))
        .chain(hold.envelopes.iter().map(|id| (*id, Location::Hold)))
        .map(|(id, loc)| (id, loc, queue.bodies.remove(&id)))
        .collect();
    // Read (in parallel), then act on what was read in the order of the
    // messages: the same order, reports and moves as one reader would make.
    let verdicts = check_all(layout, &all, per_reader)?;
    for ((id, loc, has_body), verdict) in all.iter().copied().zip(verdicts) {
        match verdict? {
            Ok(next_attempt_ms) => {
                report.messages += 1;
                report.held += usize::from(loc == Location::Hold);
                report.found.push(Found {
                    id,
                    location: loc,
                    next_attempt_ms,
                });
            }
            Err(why) => {
                let env_path = layout.envelope_path(&id, loc);
                let body = has_body.then(|| layout.body_path(&id));
                quarantine(layout, ops, &env_path, body.as_deref())?;
                report.corrupt.push((env_path, why));
            }
        }
    }

    for id in &queue.bodies {
        let path = layout.body_path(id);
        // Never committed, or a delivered message's body kept for reuse
        // when the daemon stopped without cleaning up (up to the free
        // list's bound): counted in the summary below, named only in debug.
        tracing::debug!(%id, "spool recovery: removing body without an envelope");
        ops.remove_file(&path)
            .map_err(|e| SpoolError::io("remove", &path, e))?;
        report.orphan_bodies_removed += 1;
    }

    report.found.sort_unstable_by_key(|f| f.id);
    report.unknown.sort();
    let changed = report.tmp_removed + report.orphan_bodies_removed + report.corrupt.len() > 0;
    if changed {
        for dir in [&layout.corrupt, &layout.queue, &layout.hold, &layout.tmp] {
            ops.sync_dir(dir)
                .map_err(|e| SpoolError::io("fsync directory", dir, e))?;
        }
    }
    tracing::info!(
        messages = report.messages,
        held = report.held,
        tmp_removed = report.tmp_removed,
        free_removed = report.free_removed,
        orphan_bodies_removed = report.orphan_bodies_removed,
        corrupt = report.corrupt.len(),
        unknown = report.unknown.len(),
        "spool recovery done"
    );
    Ok(report)
}

/// Removes every file of `dir` (tmp/ or free/) and returns how many;
/// sub-directories are left alone and reported as unknown.
fn empty(dir: &Path, ops: &dyn FileOps, report: &mut RecoveryReport) -> Result<usize, SpoolError> {
    let mut removed = 0;
    for (name, is_dir) in read_dir(dir)? {
        let path = dir.join(name);
        if is_dir {
            tracing::warn!(path = %path.display(), "spool recovery: unknown directory left alone");
            report.unknown.push(path);
            continue;
        }
        ops.remove_file(&path)
            .map_err(|e| SpoolError::io("remove", &path, e))?;
        removed += 1;
    }
    Ok(removed)
}

/// `(name, is_dir)` of every entry of `dir`, in the directory's order
/// (names, not paths: sorting or building 200,000 paths was a quarter of
/// the start-up's CPU with 100,000 messages queued).
fn read_dir(dir: &Path) -> Result<Vec<(OsString, bool)>, SpoolError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| SpoolError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SpoolError::io("read directory", dir, e))?;
        let is_dir = entry
            .file_type()
            .map_err(|e| SpoolError::io("stat", entry.path(), e))?
            .is_dir();
        out.push((entry.file_name(), is_dir));
    }
    Ok(out)
}

/// Sorts a directory's entries into envelopes, bodies (if `bodies_here`)
/// and unknown files.
fn scan(dir: &Path, bodies_here: bool, report: &mut RecoveryReport) -> Result<Scan, SpoolError> {
    let mut scan = Scan::default();
    for (name, is_dir) in read_dir(dir)? {
        let known = match QueueId::from_file_name(&name) {
            Some((id, FileKind::Envelope)) if !is_dir => scan.envelopes.insert(id),
            Some((id, FileKind::Body)) if !is_dir && bodies_here => scan.bodies.insert(id),
            _ => false,
        };
        if !known {
            let path = dir.join(name);
            tracing::warn!(path = %path.display(), "spool recovery: unknown file left alone");
            report.unknown.push(path);
        }
    }
    Ok(scan)
}

/// A message to check: its id, where its envelope is, and whether its
/// body was seen in queue/.
type Message = (QueueId, Location, bool);

/// What [`check`] says of a message.
type Verdict = Result<Result<u64, String>, SpoolError>;

/// [`check`]s every message of `all`, in order, with up to [`READERS`]
/// threads of `per_reader` messages or more each; a thread that cannot
/// be started leaves its share to the calling thread. Reads only. Fails
/// only if the envelope directories cannot be opened.
fn check_all(
    layout: &Layout,
    all: &[Message],
    per_reader: usize,
) -> Result<Vec<Verdict>, SpoolError> {
    let readers = all.len().div_ceil(per_reader.max(1)).clamp(1, READERS);
    if readers == 1 {
        return check_part(layout, all);
    }
    let share = all.len().div_ceil(readers);
    std::thread::scope(|scope| {
        let started: Vec<_> = all
            .chunks(share)
            .map(|part| {
                let thread = std::thread::Builder::new()
                    .name("spool-recover".into())
                    .spawn_scoped(scope, move || check_part(layout, part));
                (part, thread)
            })
            .collect();
        let mut verdicts = Vec::with_capacity(all.len());
        for (part, thread) in started {
            let read = match thread {
                Ok(t) => t
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => check_part(layout, part),
            };
            verdicts.extend(read?);
        }
        Ok(verdicts)
    })
}

/// [`check`]s the messages of `part` one after another.
fn check_part(layout: &Layout, part: &[Message]) -> Result<Vec<Verdict>, SpoolError> {
    let mut files = EnvelopeFiles::open(layout)?;
    Ok(part
        .iter()
        .map(|&(id, loc, has_body)| check(&mut files, &id, loc, has_body))
        .collect())
}

/// `Ok(next_attempt_ms)` if the message is sound, else why not. I/O
/// errors other than a missing body are returned: they say the disk is
/// unwell, not the file.
fn check(
    files: &mut EnvelopeFiles<'_>,
    id: &QueueId,
    loc: Location,
    has_body: bool,
) -> Result<Result<u64, String>, SpoolError> {
    let env = match files.read(id, loc) {
        Ok(env) => env,
        Err(SpoolError::Corrupt { detail, .. }) => return Ok(Err(detail)),
        Err(e) => return Err(e),
    };
    let layout = files.layout();
    let missing = || format!("body {} is missing", layout.body_path(id).display());
    if !has_body {
        return Ok(Err(missing()));
    }
    let len = match files.body_len(id) {
        Ok(len) => len,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err(missing())),
        Err(e) => return Err(SpoolError::io("stat", files.layout().body_path(id), e)),
    };
    if len != env.size {
        return Ok(Err(format!(
            "envelope says the body has {} bytes but {} has {len}",
            env.size,
            layout.body_path(id).display()
        )));
    }
    // A message not yet tried may be one whose commit (one syncfs) a power
    // cut interrupted: its body may hold bytes of the file's earlier use.
    // Later envelopes were rewritten after the commit had completed.
    if let (Location::Queue, 0, Some(want)) = (loc, env.attempts, env.body_crc32) {
        let body = || layout.body_path(id);
        let got = match files.body_crc32(id) {
            Ok(crc) => crc,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err(missing())),
            Err(e) => return Err(SpoolError::io("read", body(), e)),
        };
        if got != want {
            return Ok(Err(format!(
                "{} does not match its envelope's checksum (crc32:{got:08x}, the envelope \
                 says crc32:{want:08x}): most likely a message whose commit a power cut \
                 interrupted, which was never acknowledged (its client got no 250 and sends \
                 it again); once looked at, its two files can be deleted from corrupt/",
                body().display()
            )));
        }
    }
    Ok(Ok(env.next_attempt_ms))
}

/// Moves a message's files to corrupt/: the body first, so that a crash in
/// between leaves an envelope without body (quarantined again next time)
/// rather than an orphan body (which would be deleted).
fn quarantine(
    layout: &Layout,
    ops: &dyn FileOps,
    env: &Path,
    body: Option<&Path>,
) -> Result<(), SpoolError> {
    for path in body.into_iter().chain([env]) {
        let dst = corrupt_destination(layout, path)?;
        ops.rename(path, &dst)
            .map_err(|e| SpoolError::io("rename", &dst, e))?;
        tracing::error!(
            from = %path.display(), to = %dst.display(),
            "spool recovery: moved damaged message file to corrupt/; needs a human"
        );
    }
    Ok(())
}

/// `corrupt/<name>`, or `corrupt/<name>.<n>` if that is taken: never overwrite
/// what an earlier recovery kept.
fn corrupt_destination(layout: &Layout, path: &Path) -> Result<PathBuf, SpoolError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut candidate = layout.corrupt.join(&name);
    let mut n = 1u32;
    while candidate
        .try_exists()
        .map_err(|e| SpoolError::io("stat", &candidate, e))?
    {
        candidate = layout.corrupt.join(format!("{name}.{n}"));
        n += 1;
    }
    Ok(candidate)
}

#[cfg(test)]
mod tests;
