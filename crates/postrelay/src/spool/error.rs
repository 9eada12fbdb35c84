//! The spool's one error type.
//!
//! Every variant names its subject (a path, a queue id, the operation that
//! failed) so that a log line is enough to act on. This module only defines
//! errors; deciding whether a failure means 4xx to a client or a retry later
//! is the caller's job (see [`SpoolError::is_no_space`]).

use std::io;
use std::path::PathBuf;

use super::id::QueueId;

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Another process (normally the running daemon) holds the spool lock.
    #[error("spool is locked by another process (is the daemon running?): {path}")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. `"fdatasync"`, `"rename"`.
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No message with this id is in queue/ or hold/.
    #[error("message {id} is not in the queue")]
    NotFound {
        /// The id asked for.
        id: QueueId,
    },
    /// A spool file exists but cannot be used as it is.
    #[error("corrupt spool file {path}: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// `hold` on a message that is already on hold.
    #[error("message {id} is already on hold")]
    AlreadyHeld {
        /// The message.
        id: QueueId,
    },
    /// `release` on a message that is not on hold.
    #[error("message {id} is not on hold")]
    NotHeld {
        /// The message.
        id: QueueId,
    },
    /// `stage` was given an envelope for a different message than the body.
    #[error("envelope for {envelope} staged with the body of {body}")]
    IdMismatch {
        /// The body's id.
        body: QueueId,
        /// The id in the envelope.
        envelope: QueueId,
    },
    /// The committer thread is gone (shut down, or it panicked); nothing was committed.
    #[error("spool committer for {id} is not running; message not committed")]
    CommitterStopped {
        /// The message that could not be committed.
        id: QueueId,
    },
}

impl SpoolError {
    /// True when the disk (or the user's quota) is full: ENOSPC or EDQUOT.
    ///
    /// Intake answers these with `452 4.3.1` instead of a generic `451`.
    pub fn is_no_space(&self) -> bool {
        match self {
            SpoolError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            ),
            _ => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> SpoolError {
        SpoolError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// `io::Error` is not `Clone`; this keeps the OS error code (so
/// [`SpoolError::is_no_space`] still works) when one failure must be reported
/// to several callers.
pub(crate) fn copy_io_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_space_is_recognised_from_os_codes() {
        for code in [nix::libc::ENOSPC, nix::libc::EDQUOT] {
            let e = SpoolError::io("write", "/x", io::Error::from_raw_os_error(code));
            assert!(e.is_no_space(), "{e}");
            let copied = SpoolError::io(
                "write",
                "/x",
                copy_io_error(&io::Error::from_raw_os_error(code)),
            );
            assert!(copied.is_no_space());
        }
        let eio = SpoolError::io(
            "fdatasync",
            "/x/y.msg",
            io::Error::from_raw_os_error(nix::libc::EIO),
        );
        assert!(!eio.is_no_space());
        assert!(eio.to_string().starts_with("fdatasync /x/y.msg: "), "{eio}");
    }
}
