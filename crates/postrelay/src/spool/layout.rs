//! Where things live in a spool directory, and read-only access to it.
//!
//! [`Layout`] turns a root and a [`QueueId`] into paths and reads envelopes
//! back; [`SpoolReader`] exposes that to `mailq`, which must be able to look
//! at the queue while the daemon runs (no lock, no writes). Nothing here
//! creates, renames or removes files.

use std::fmt;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::envelope::Envelope;
use super::envelopes::{EnvelopeFiles, Listed};
use super::error::SpoolError;
use super::id::{FileKind, QueueId};

/// Sub-directory for files being written; emptied at startup.
pub const TMP_DIR: &str = "tmp";
/// Sub-directory for scheduled messages (bodies and envelopes).
pub const QUEUE_DIR: &str = "queue";
/// Sub-directory for envelopes of held messages (bodies stay in queue/).
pub const HOLD_DIR: &str = "hold";
/// Sub-directory for files that failed to parse, kept for humans.
pub const CORRUPT_DIR: &str = "corrupt";
/// Sub-directory for files of delivered messages kept for reuse (see
/// `spool/free.rs`); garbage by definition, emptied at startup.
pub const FREE_DIR: &str = "free";
/// The lock file held by the daemon.
pub const LOCK_FILE: &str = "lock";

/// Where a message's envelope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    /// queue/: scheduled for delivery.
    Queue,
    /// hold/: kept until released by the administrator.
    Hold,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Location::Queue => QUEUE_DIR,
            Location::Hold => HOLD_DIR,
        })
    }
}

/// The paths of one spool.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The spool root.
    pub root: PathBuf,
    /// `<root>/tmp`.
    pub tmp: PathBuf,
    /// `<root>/queue`.
    pub queue: PathBuf,
    /// `<root>/hold`.
    pub hold: PathBuf,
    /// `<root>/corrupt`.
    pub corrupt: PathBuf,
    /// `<root>/free`.
    pub free: PathBuf,
}

impl Layout {
    /// The layout under `root` (nothing is checked or created).
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            tmp: root.join(TMP_DIR),
            queue: root.join(QUEUE_DIR),
            hold: root.join(HOLD_DIR),
            corrupt: root.join(CORRUPT_DIR),
            free: root.join(FREE_DIR),
        }
    }

    /// The directory holding envelopes at `loc`.
    pub fn dir(&self, loc: Location) -> &Path {
        match loc {
            Location::Queue => &self.queue,
            Location::Hold => &self.hold,
        }
    }

    /// `queue/<id>.msg` (bodies never move, whether held or not).
    pub fn body_path(&self, id: &QueueId) -> PathBuf {
        id.path_in(&self.queue, FileKind::Body)
    }

    /// `<loc>/<id>.env`.
    pub fn envelope_path(&self, id: &QueueId, loc: Location) -> PathBuf {
        id.path_in(self.dir(loc), FileKind::Envelope)
    }

    /// Reads and parses an envelope file, checking that it belongs to `id`.
    ///
    /// A missing file is `Io` with kind `NotFound`; anything unparsable is
    /// `Corrupt`.
    pub fn read_envelope(&self, path: &Path, id: &QueueId) -> Result<Envelope, SpoolError> {
        let bytes = std::fs::read(path).map_err(|e| SpoolError::io("read", path, e))?;
        self.parse_envelope(&bytes, id, || path.to_path_buf())
    }

    /// Parses an envelope file's `bytes`, checking that it belongs to
    /// `id`; `path` names the file in errors.
    pub(crate) fn parse_envelope(
        &self,
        bytes: &[u8],
        id: &QueueId,
        path: impl Fn() -> PathBuf,
    ) -> Result<Envelope, SpoolError> {
        let env = Envelope::from_json(bytes).map_err(|e| SpoolError::Corrupt {
            path: path(),
            detail: e.to_string(),
        })?;
        if env.id != *id {
            return Err(SpoolError::Corrupt {
                path: path(),
                detail: format!(
                    "envelope says it is {} but the file is named for {id}",
                    env.id
                ),
            });
        }
        Ok(env)
    }

    /// Finds and reads the envelope of `id` in queue/ or hold/.
    pub fn read(&self, id: &QueueId) -> Result<(Envelope, Location), SpoolError> {
        // queue, hold, then queue again: a concurrent release (hold → queue)
        // between the first two looks cannot make a message vanish.
        for loc in [Location::Queue, Location::Hold, Location::Queue] {
            let path = self.envelope_path(id, loc);
            match self.read_envelope(&path, id) {
                Ok(env) => return Ok((env, loc)),
                Err(SpoolError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Err(SpoolError::NotFound { id: *id })
    }

    /// The ids of the envelopes in `loc`, unordered.
    pub fn envelope_ids(&self, loc: Location) -> Result<Vec<QueueId>, SpoolError> {
        let dir = self.dir(loc);
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| SpoolError::io("read directory", dir, e))? {
            let entry = entry.map_err(|e| SpoolError::io("read directory", dir, e))?;
            if let Some((id, FileKind::Envelope)) = QueueId::from_file_name(&entry.file_name()) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// All messages in queue/ and hold/, sorted by id.
    ///
    /// Envelopes that cannot be read are skipped with a warning (recovery
    /// deals with them); one that disappears while listing (delivered,
    /// removed, or moved by hold/release) is skipped silently.
    pub fn list(&self) -> Result<Vec<(Envelope, Location)>, SpoolError> {
        let mut out = Vec::new();
        self.visit(|env, loc| {
            out.push((env, loc));
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// What [`Layout::list`] returns, handed to `visit` one message at a
    /// time in the same order, so that a caller printing a queue of
    /// 100,000 holds one envelope in memory, not all of them. `visit` may
    /// stop the walk early (`Break`).
    pub fn visit(
        &self,
        mut visit: impl FnMut(Envelope, Location) -> ControlFlow<()>,
    ) -> Result<(), SpoolError> {
        self.walk(|files, id, loc| match files.read(id, loc) {
            Ok(env) => visit(env, loc),
            Err(e) => skip(id, e),
        })
    }

    /// [`Layout::visit`] with only the part of each envelope `queue list`
    /// prints ([`Listed`]), which costs less to read.
    pub fn visit_listed(
        &self,
        mut visit: impl FnMut(&Listed<'_>, Location) -> ControlFlow<()>,
    ) -> Result<(), SpoolError> {
        self.walk(|files, id, loc| match files.read_listed(id, loc) {
            Ok(listed) => visit(&listed, loc),
            Err(e) => skip(id, e),
        })
    }

    /// The walk of both: `step` reads each message in queue/ and hold/,
    /// by id, and says whether to go on.
    fn walk(
        &self,
        mut step: impl FnMut(&mut EnvelopeFiles<'_>, &QueueId, Location) -> ControlFlow<()>,
    ) -> Result<(), SpoolError> {
        let all = self.all_ids()?;
        let mut files = EnvelopeFiles::open(self)?;
        for (id, loc) in all {
            if step(&mut files, &id, loc).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The ids in queue/ and hold/, sorted.
    fn all_ids(&self) -> Result<Vec<(QueueId, Location)>, SpoolError> {
        let mut all = Vec::new();
        for loc in [Location::Queue, Location::Hold] {
            all.extend(self.envelope_ids(loc)?.into_iter().map(|id| (id, loc)));
        }
        all.sort_unstable();
        Ok(all)
    }
}

/// A listing goes on past an envelope it cannot read: one gone meanwhile
/// (delivered, removed, moved by hold/release) silently, any other with a
/// warning (recovery deals with it).
fn skip(id: &QueueId, e: SpoolError) -> ControlFlow<()> {
    match e {
        SpoolError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {}
        e => tracing::warn!(%id, error = %e, "spool: skipping unreadable envelope"),
    }
    ControlFlow::Continue(())
}

/// Read-only view of a spool, for `mailq` while the daemon runs.
///
/// Takes no lock and never writes; what it sees may be a moment out of date
/// or catch a message between two steps of a hold or release.
#[derive(Debug, Clone)]
pub struct SpoolReader {
    layout: Layout,
}

impl SpoolReader {
    pub(crate) fn new(layout: Layout) -> SpoolReader {
        SpoolReader { layout }
    }

    /// The spool root.
    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    /// All messages in queue/ and hold/, sorted by id; unreadable envelopes
    /// are skipped with a warning.
    pub fn list(&self) -> Result<Vec<(Envelope, Location)>, SpoolError> {
        self.layout.list()
    }

    /// [`SpoolReader::list`] one message at a time (see [`Layout::visit`]).
    pub fn visit(
        &self,
        visit: impl FnMut(Envelope, Location) -> ControlFlow<()>,
    ) -> Result<(), SpoolError> {
        self.layout.visit(visit)
    }

    /// [`SpoolReader::visit`] with only what `queue list` prints (see
    /// [`Layout::visit_listed`]).
    pub fn visit_listed(
        &self,
        visit: impl FnMut(&Listed<'_>, Location) -> ControlFlow<()>,
    ) -> Result<(), SpoolError> {
        self.layout.visit_listed(visit)
    }

    /// One message's envelope; `NotFound` for unknown ids.
    pub fn read(&self, id: &QueueId) -> Result<(Envelope, Location), SpoolError> {
        self.layout.read(id)
    }

    /// Where the body of `id` is (whether or not it exists).
    pub fn body_path(&self, id: &QueueId) -> PathBuf {
        self.layout.body_path(id)
    }
}
