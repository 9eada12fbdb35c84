//! The load tools' error type: what went wrong in a session or a file, told
//! apart so that the generator can count refusals and stop on broken setups.

use postrelay_smtp::Reply;

/// Why a session, a run or a file read failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A socket or file operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection where more was expected.
    #[error("connection closed by the peer")]
    Closed,
    /// The peer sent something that is not an SMTP reply.
    #[error("malformed reply: {0}")]
    BadReply(#[from] postrelay_smtp::ReplyError),
    /// The peer answered a command with an unexpected code.
    #[error("{command}: expected {expected}, got {} {}", .reply.code, .reply.text())]
    Refused {
        /// The command that was answered.
        command: &'static str,
        /// The code class expected (2 or 3).
        expected: u16,
        /// The reply received.
        reply: Reply,
    },
    /// A TLS handshake or configuration failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// A results or log file held a line that could not be read.
    #[error("{file}:{line}: {what}")]
    Parse {
        /// The file name.
        file: String,
        /// The 1-based line number.
        line: usize,
        /// What was wrong.
        what: String,
    },
    /// The run did not finish in the time allowed.
    #[error("timed out: {0}")]
    Timeout(String),
}
