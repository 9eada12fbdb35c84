//! The messages between the daemon, the local delivery helper and the
//! per-delivery child: one frame is a 4-byte big-endian length and that
//! many bytes of JSON. Frames are small (addresses and names); a larger
//! one is refused, never allocated.
//!
//! Not for: message bodies (the helper streams the body to the child after
//! the request frame, raw), or deciding anything.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use postrelay_smtp::reply::Reply;
use serde::{Deserialize, Serialize};

use crate::deliver::local::{LocalSettings, MailboxKind};
use crate::deliver::{Outcome, Reason};

/// Largest frame accepted (a request holds a few addresses).
pub const MAX_FRAME: u32 = 64 * 1024;

/// The daemon asks the helper to deliver one spooled message to one local
/// recipient. The helper checks every field itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The message's queue id; the helper opens `queue/<id>.msg` itself.
    pub queue_id: String,
    /// The local user (login name) the recipient resolved to.
    pub user: String,
    /// The envelope sender (`""` for `<>`), for `Return-Path:`.
    pub sender: String,
    /// The final recipient address, for `Delivered-To:`.
    pub recipient: String,
    /// The address as first given, for `X-Original-To:`.
    pub original_recipient: Option<String>,
    /// `[local] catch_all`: the user who gets mail for unknown users.
    pub catch_all: Option<String>,
}

/// What the helper hands the per-delivery child (which runs as `user`):
/// the request with the user already looked up, and the mailbox settings
/// the helper was started with. The body follows the frame on the pipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildRequest {
    /// The login name to deliver to (the catch-all already applied).
    pub user: String,
    /// As in [`Request`].
    pub sender: String,
    /// As in [`Request`].
    pub recipient: String,
    /// As in [`Request`].
    pub original_recipient: Option<String>,
    /// Where and how to store it.
    pub mailbox: Mailbox,
    /// The spool body's path, to name it in errors (the child cannot open
    /// it: the body comes on the pipe).
    pub body: PathBuf,
    /// The body's size: a pipe that ends sooner is an error, never a
    /// shorter message.
    pub body_len: u64,
}

/// [`LocalSettings`] on the wire (the catch-all is the helper's business).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    /// `true`: mbox in `mbox_dir`; `false`: Maildir.
    pub mbox: bool,
    /// The Maildir, relative to the home directory.
    pub maildir: String,
    /// The mail spool directory for mbox files.
    pub mbox_dir: PathBuf,
    /// `[local] delivery_timeout`: the helper kills a delivery that takes
    /// longer.
    pub timeout: Duration,
}

impl Mailbox {
    /// The mailbox part of `settings`.
    pub fn of(settings: &LocalSettings) -> Mailbox {
        Mailbox {
            mbox: settings.kind == MailboxKind::Mbox,
            maildir: settings.maildir.clone(),
            mbox_dir: settings.mbox_dir.clone(),
            timeout: settings.delivery_timeout,
        }
    }

    /// Back to settings (no catch-all).
    pub fn settings(&self) -> LocalSettings {
        LocalSettings {
            kind: if self.mbox {
                MailboxKind::Mbox
            } else {
                MailboxKind::Maildir
            },
            maildir: self.maildir.clone(),
            mbox_dir: self.mbox_dir.clone(),
            catch_all: None,
            delivery_timeout: self.timeout,
        }
    }
}

/// The answer, from the child to the helper and from the helper to the
/// daemon: exactly the outcomes local delivery has, so that the daemon's
/// classifier ([`Reason::is_permanent`]) decides as for in-process code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// Delivered; the text of the 250 reply.
    Delivered(String),
    /// No such user (bounces, 5.1.1).
    UnknownUser(String),
    /// The mailbox's file system is full or over quota (stays queued).
    MailboxFull(String),
    /// Anything else (stays queued), with the path and the problem.
    Local(String),
}

impl Answer {
    /// The answer for a local delivery outcome.
    pub fn from_outcome(outcome: Outcome) -> Answer {
        match outcome {
            Outcome::Delivered(reply) => Answer::Delivered(reply.text()),
            Outcome::Deferred(reason) | Outcome::Failed(reason) => match reason {
                Reason::UnknownUser(t) => Answer::UnknownUser(t),
                Reason::MailboxFull(t) => Answer::MailboxFull(t),
                Reason::Local(t) => Answer::Local(t),
                other => Answer::Local(other.to_string()),
            },
        }
    }

    /// The outcome this answer stands for.
    pub fn into_outcome(self) -> Outcome {
        match self {
            Answer::Delivered(text) => Outcome::Delivered(Reply::new(250, "2.0.0", &text)),
            Answer::UnknownUser(t) => Outcome::from_reason(Reason::UnknownUser(t)),
            Answer::MailboxFull(t) => Outcome::from_reason(Reason::MailboxFull(t)),
            Answer::Local(t) => Outcome::from_reason(Reason::Local(t)),
        }
    }
}

/// Writes one frame.
pub fn write_frame<T: Serialize>(out: &mut impl Write, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|n| *n <= MAX_FRAME)
        .ok_or_else(|| io::Error::other("frame too large"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(&bytes)?;
    out.flush()
}

/// Reads one frame; `Ok(None)` at a clean end of input (before a length).
pub fn read_frame<T: for<'de> Deserialize<'de>>(input: &mut impl Read) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is larger than {MAX_FRAME}"),
        ));
    }
    let mut bytes = vec![0u8; len as usize];
    input.read_exact(&mut bytes)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
