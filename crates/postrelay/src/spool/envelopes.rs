//! Reading many envelopes in a row: `queue list` and start-up's recovery
//! read every envelope of the queue (100,000 of them in issue 14's
//! measurements), so what each read costs beyond the parse counts.
//!
//! [`EnvelopeFiles`] opens `queue/` and `hold/` once and opens each
//! envelope relative to them (`openat`: no walk of the spool's path per
//! file), reads it into one buffer kept from file to file (no allocation,
//! and no `stat` for a size hint, which `std::fs::read` makes), and gives
//! a body's size the same way (`fstatat`), and, for recovery, the
//! checksum of a body (read through in 64 KiB pieces into a buffer kept
//! too). Paths are built only for error messages. What is checked is [`Layout::read_envelope`]'s: the same
//! parse, the same id check.
//!
//! Not for: writing (the spool's `durable` module), or one-off reads
//! (`Layout::read`).

use std::borrow::Cow;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;

use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fstatat};

use serde::Deserialize;

use super::envelope::{ENVELOPE_VERSION, Envelope, OLDEST_VERSION, RcptState};
use super::error::SpoolError;
use super::id::QueueId;
use super::layout::{Layout, Location};

/// `queue/` and `hold/` opened, and the buffer envelopes are read into.
pub(crate) struct EnvelopeFiles<'a> {
    layout: &'a Layout,
    queue: File,
    hold: File,
    buf: Vec<u8>,
    /// For [`EnvelopeFiles::body_crc32`]; empty until first needed.
    body_buf: Vec<u8>,
}

impl<'a> EnvelopeFiles<'a> {
    /// Opens the envelope directories of `layout`.
    pub(crate) fn open(layout: &'a Layout) -> Result<EnvelopeFiles<'a>, SpoolError> {
        let dir = |loc| {
            let path = layout.dir(loc);
            File::open(path).map_err(|e| SpoolError::io("open directory", path, e))
        };
        Ok(EnvelopeFiles {
            layout,
            queue: dir(Location::Queue)?,
            hold: dir(Location::Hold)?,
            buf: Vec::with_capacity(4096),
            body_buf: Vec::new(),
        })
    }

    /// The spool's layout.
    pub(crate) fn layout(&self) -> &'a Layout {
        self.layout
    }

    fn dir(&self, loc: Location) -> &File {
        match loc {
            Location::Queue => &self.queue,
            Location::Hold => &self.hold,
        }
    }

    /// The envelope of `id` at `loc`, read and parsed; errors as
    /// [`Layout::read_envelope`]'s (a missing file is an `Io` error of
    /// kind `NotFound`).
    pub(crate) fn read(&mut self, id: &QueueId, loc: Location) -> Result<Envelope, SpoolError> {
        self.read_bytes(id, loc)?;
        self.layout
            .parse_envelope(&self.buf, id, || self.layout.envelope_path(id, loc))
    }

    /// Reads the envelope file of `id` at `loc` into the buffer.
    fn read_bytes(&mut self, id: &QueueId, loc: Location) -> Result<(), SpoolError> {
        let io_err = |e| SpoolError::io("read", self.layout.envelope_path(id, loc), e);
        let name = file_name(&id.envelope_name());
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        let fd = openat(self.dir(loc).as_fd(), name.as_c_str(), flags, Mode::empty())
            .map_err(|e| io_err(io::Error::from(e)))?;
        let mut file = File::from(fd);
        self.buf.clear();
        read_all(&mut file, &mut self.buf).map_err(io_err)
    }

    /// The size of the body of `id` (`queue/<id>.msg`), as `stat` gives
    /// it; a missing body is an error of kind `NotFound`.
    pub(crate) fn body_len(&self, id: &QueueId) -> io::Result<u64> {
        let name = file_name(&id.body_name());
        let st = fstatat(self.queue.as_fd(), name.as_c_str(), AtFlags::empty())?;
        Ok(u64::try_from(st.st_size).unwrap_or(0))
    }

    /// The CRC-32 of the body of `id` (`queue/<id>.msg`), to compare with
    /// its envelope's `body_crc32`; a missing body is an error of kind
    /// `NotFound`.
    pub(crate) fn body_crc32(&mut self, id: &QueueId) -> io::Result<u32> {
        let name = file_name(&id.body_name());
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        let fd = openat(self.queue.as_fd(), name.as_c_str(), flags, Mode::empty())?;
        let mut file = File::from(fd);
        if self.body_buf.is_empty() {
            self.body_buf = vec![0; 64 * 1024];
        }
        let mut crc = crc32fast::Hasher::new();
        loop {
            match file.read(&mut self.body_buf) {
                Ok(0) => return Ok(crc.finalize()),
                Ok(n) => crc.update(&self.body_buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A queue file name (`<id>.env`, ASCII without NUL) for a system call.
fn file_name(name: &str) -> CString {
    CString::new(name).unwrap_or_default()
}

/// Reads `file` to its end into `buf` without asking its size first.
fn read_all(file: &mut File, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The part of an envelope `queue list` prints, borrowed from the file's
/// bytes where it can be: parsing only these (the rest is skipped, not
/// built) is what the listing of a large queue costs least with. The
/// version and id are checked as for a whole [`Envelope`]; the fields
/// not read are not checked (recovery does that at start-up).
#[derive(Debug, Deserialize)]
pub struct Listed<'a> {
    version: u32,
    /// Its id.
    pub id: QueueId,
    /// When it was accepted (unix ms).
    pub created_ms: u64,
    /// The body's size in bytes.
    pub size: u64,
    /// The envelope sender (`""`: the null sender).
    #[serde(borrow)]
    pub sender: Cow<'a, str>,
    /// Its recipients.
    #[serde(borrow)]
    pub recipients: Vec<ListedRecipient<'a>>,
    /// Why it waits, if it does.
    #[serde(borrow)]
    pub reason: Option<Cow<'a, str>>,
}

/// A recipient as `queue list` prints it.
#[derive(Debug, Deserialize)]
pub struct ListedRecipient<'a> {
    /// The address delivery goes to.
    #[serde(borrow)]
    pub address: Cow<'a, str>,
    /// Whether it is still to be delivered.
    pub state: RcptState,
}

impl<'a> Listed<'a> {
    /// The listed part of a whole envelope.
    pub fn of(env: &'a Envelope) -> Listed<'a> {
        Listed {
            version: env.version,
            id: env.id,
            created_ms: env.created_ms,
            size: env.size,
            sender: Cow::Borrowed(&env.sender),
            recipients: env
                .recipients
                .iter()
                .map(|r| ListedRecipient {
                    address: Cow::Borrowed(&r.address),
                    state: r.state,
                })
                .collect(),
            reason: env.reason.as_deref().map(Cow::Borrowed),
        }
    }
}

impl EnvelopeFiles<'_> {
    /// [`EnvelopeFiles::read`] of only what [`Listed`] holds.
    pub(crate) fn read_listed(
        &mut self,
        id: &QueueId,
        loc: Location,
    ) -> Result<Listed<'_>, SpoolError> {
        self.read_bytes(id, loc)?;
        let corrupt = |detail: String| SpoolError::Corrupt {
            path: self.layout.envelope_path(id, loc),
            detail,
        };
        let listed: Listed<'_> = serde_json::from_slice(&self.buf)
            .map_err(|e| corrupt(format!("envelope is not readable: {e}")))?;
        if !(OLDEST_VERSION..=ENVELOPE_VERSION).contains(&listed.version) {
            return Err(corrupt(format!(
                "envelope version {} is not supported (this postrelay reads versions \
                 {OLDEST_VERSION} to {ENVELOPE_VERSION})",
                listed.version
            )));
        }
        if listed.id != *id {
            return Err(corrupt(format!(
                "envelope says it is {} but the file is named for {id}",
                listed.id
            )));
        }
        Ok(listed)
    }
}
