//! The maildrop: where `sendmail` leaves mail for the daemon, and the format
//! of the files there. Shared by `postrelay-postdrop` (the only writer) and
//! `intake::pickup` (the only reader); `sendmail` speaks the submission
//! format to postdrop.
//!
//! # Directory
//!
//! `<spool>/maildrop/`, mode 1730, owner the spool's owner, group
//! `postdrop`. The spool root is 0710 with group `postdrop`, so that the
//! setgid `postrelay-postdrop` can reach maildrop/ and nothing else (queue/,
//! hold/, tmp/ and corrupt/ stay 0700). Without the group both are private
//! (0700) and only the spool's owner (root) can submit.
//!
//! # Submission (sendmail → postdrop, on postdrop's stdin)
//!
//! ```text
//! {"version":1,"sender":"…","recipients":["…"],"body":"7bit","notify":null,"size_limit":26214400}\n
//! <message in SMTP DATA form: CRLF lines, dot-stuffed, ending with ".\r\n">
//! ```
//!
//! The DATA form gives an explicit end: a `sendmail` that dies half-way
//! leaves postdrop with input that lacks the terminator, which it refuses
//! instead of queueing a truncated message.
//!
//! # Submit socket (sendmail → the running daemon)
//!
//! `<spool>/`[`SUBMIT_SOCKET`], a Unix stream socket the daemon creates at
//! start. The client writes exactly what it writes to postdrop (the
//! [`Submission`] line, then the message in DATA form) and reads one reply
//! line in SMTP form (`250 2.0.0 Ok: queued as ID`, or `4xx`/`5xx` with
//! what to fix), sent only once the message is durable; then both close.
//! One message per connection. The uid is the kernel's (`SO_PEERCRED`).
//!
//! Who may connect: the socket is mode 0660, group `postdrop`, in the
//! spool root (0710, group `postdrop`): root, the daemon's user and members
//! of `postdrop`. Everyone else (and everyone while the daemon is stopped,
//! or when it answers `4xx`) goes through postdrop and maildrop/, which
//! reaches the same queue: the socket is a faster way in, never the only
//! one. Adding a user (say `www-data`) to `postdrop` gives it the fast way
//! and nothing more: it can submit as itself either way, and the group
//! does not let it read or remove anyone's mail.
//!
//! # Maildrop file (postdrop → pickup)
//!
//! Name: a fresh ULID (so `ls` and pickup go by arrival). Owner: the
//! submitting user (postdrop is setgid, not setuid, so the kernel records
//! the real uid; pickup trusts that, not the file's text). Content: one JSON
//! line ([`DropHeader`], which adds `uid` and `user`), then the message in
//! the same DATA form. The file's mode says its state, because postdrop
//! gives up its group before it writes anything and so cannot rename or
//! remove the file afterwards:
//!
//! | mode | state |
//! |---|---|
//! | 0600 ([`MODE_WRITING`]) | being written; removed by pickup when untouched for [`STALE_AFTER`] |
//! | 0640 ([`MODE_READY`]) | complete and durable: pickup queues it |
//! | 0000 ([`MODE_ABANDONED`]) | postdrop refused the input and truncated it: pickup removes it |
//!
//! Everything read from either stream is treated as hostile: lengths are
//! bounded, the JSON is strict (unknown fields are errors) and every
//! address is parsed.

use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::time::Duration;

use postrelay_smtp::address::Mailbox;
use serde::{Deserialize, Serialize};

/// Sub-directory of the spool.
pub const MAILDROP_DIR: &str = "maildrop";
/// The submit socket, in the spool root.
pub const SUBMIT_SOCKET: &str = "submit.sock";
/// The group that may write into maildrop/ (through postrelay-postdrop).
pub const GROUP: &str = "postdrop";
/// Mode of maildrop/ with the group: write and search for the group, no
/// read (no listing), sticky (nobody removes another's file).
pub const DIR_MODE: u32 = 0o1730;
/// Mode of the spool root with the group: search only, for the group.
pub const ROOT_MODE: u32 = 0o710;
/// A file being written by postdrop.
pub const MODE_WRITING: u32 = 0o600;
/// A complete file, ready for pickup.
pub const MODE_READY: u32 = 0o640;
/// A file postdrop gave up on (truncated to 0 bytes).
pub const MODE_ABANDONED: u32 = 0o000;
/// A file still [`MODE_WRITING`] after this long belongs to a postdrop that
/// was killed; pickup removes it.
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Format version of both JSON lines.
pub const VERSION: u32 = 1;
/// Longest JSON line accepted (a few thousand recipients).
pub const MAX_JSON_LINE: usize = 1 << 20;
/// Largest message postdrop accepts whatever the caller claims: bounds the
/// disk a local user can fill through a setgid program. Pickup enforces the
/// configured `intake.message_size_limit` on top of it.
pub const HARD_SIZE_CAP: u64 = 50 * 1024 * 1024;
/// Longest user name recorded.
const MAX_USER: usize = 256;

/// `<spool>/maildrop`.
pub fn dir(spool: &Path) -> PathBuf {
    spool.join(MAILDROP_DIR)
}

/// `<spool>/submit.sock`.
pub fn submit_socket(spool: &Path) -> PathBuf {
    spool.join(SUBMIT_SOCKET)
}

/// The body type, as the envelope spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// 7-bit content (or not declared).
    #[serde(rename = "7bit")]
    SevenBit,
    /// `-B 8BITMIME`.
    #[serde(rename = "8bitmime")]
    EightBitMime,
}

/// The first line sendmail writes to postdrop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// Always [`VERSION`].
    pub version: u32,
    /// Envelope sender; `""` is the null sender.
    pub sender: String,
    /// Envelope recipients (at least one).
    pub recipients: Vec<String>,
    /// Declared body type.
    pub body: Body,
    /// DSN `NOTIFY` for every recipient (`-N`), upper-case.
    pub notify: Option<Vec<String>>,
    /// The size limit sendmail read from the configuration; postdrop uses
    /// the smaller of this and [`HARD_SIZE_CAP`].
    pub size_limit: u64,
}

/// The first line of a maildrop file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropHeader {
    /// Always [`VERSION`].
    pub version: u32,
    /// The submitter's real uid, as postdrop saw it (getuid).
    pub uid: u32,
    /// The submitter's user name (or the uid in decimal when it has none).
    pub user: String,
    /// Envelope sender; `""` is the null sender.
    pub sender: String,
    /// Envelope recipients.
    pub recipients: Vec<String>,
    /// Declared body type.
    pub body: Body,
    /// DSN `NOTIFY` for every recipient.
    pub notify: Option<Vec<String>>,
}

/// Why a submission or a maildrop file is refused.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Reading failed.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    /// The input ended before the first line did.
    #[error("the input ends before the end of its first line")]
    Truncated,
    /// The first line is longer than [`MAX_JSON_LINE`].
    #[error("the first line is longer than {MAX_JSON_LINE} octets")]
    LineTooLong,
    /// The first line is not the expected JSON.
    #[error("the first line is not a valid version {VERSION} record: {0}")]
    Json(String),
    /// A field has an unacceptable value.
    #[error("{0}")]
    Invalid(String),
}

/// Reads one `\n`-terminated line of at most [`MAX_JSON_LINE`] octets
/// (without the `\n`); reads nothing beyond it.
pub fn read_line(r: &mut impl BufRead) -> Result<Vec<u8>, FormatError> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(FormatError::Truncated);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > MAX_JSON_LINE + 1 {
            return Err(FormatError::LineTooLong);
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            line.pop();
            return Ok(line);
        }
    }
}

impl Submission {
    /// Parses and validates sendmail's first line.
    pub fn parse(line: &[u8]) -> Result<Submission, FormatError> {
        let s: Submission =
            serde_json::from_slice(line).map_err(|e| FormatError::Json(e.to_string()))?;
        check_version(s.version)?;
        check_envelope(&s.sender, &s.recipients, s.notify.as_deref())?;
        Ok(s)
    }

    /// The line (without `\n`).
    pub fn to_line(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a submission serializes")
    }

    /// The size postdrop enforces.
    pub fn effective_limit(&self) -> u64 {
        self.size_limit.min(HARD_SIZE_CAP)
    }
}

impl DropHeader {
    /// Parses and validates the first line of a maildrop file.
    pub fn parse(line: &[u8]) -> Result<DropHeader, FormatError> {
        let h: DropHeader =
            serde_json::from_slice(line).map_err(|e| FormatError::Json(e.to_string()))?;
        check_version(h.version)?;
        check_user(&h.user)?;
        check_envelope(&h.sender, &h.recipients, h.notify.as_deref())?;
        Ok(h)
    }

    /// The line (without `\n`).
    pub fn to_line(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a maildrop header serializes")
    }
}

fn check_version(v: u32) -> Result<(), FormatError> {
    if v == VERSION {
        Ok(())
    } else {
        Err(FormatError::Invalid(format!(
            "version {v} is not supported (this postrelay reads version {VERSION})"
        )))
    }
}

/// A user name fit for a log line and a header comment: printable, no
/// spaces or parentheses, bounded.
pub fn check_user(user: &str) -> Result<(), FormatError> {
    let ok = !user.is_empty()
        && user.len() <= MAX_USER
        && user
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '(' | ')' | '\\'));
    if ok {
        Ok(())
    } else {
        Err(FormatError::Invalid(format!("unusable user name {user:?}")))
    }
}

/// The sender is `""` or a mailbox; there is at least one recipient and each
/// is a mailbox; NOTIFY is `NEVER` alone or a set of SUCCESS/FAILURE/DELAY.
pub fn check_envelope(
    sender: &str,
    recipients: &[String],
    notify: Option<&[String]>,
) -> Result<(), FormatError> {
    let bad = |what: &str, a: &str, e: &dyn std::fmt::Display| {
        FormatError::Invalid(format!("bad {what} address {a:?}: {e}"))
    };
    if !sender.is_empty() {
        Mailbox::parse(sender).map_err(|e| bad("sender", sender, &e))?;
    }
    if recipients.is_empty() {
        return Err(FormatError::Invalid("no recipients".into()));
    }
    for r in recipients {
        Mailbox::parse(r).map_err(|e| bad("recipient", r, &e))?;
    }
    if let Some(n) = notify {
        check_notify(n).map_err(FormatError::Invalid)?;
    }
    Ok(())
}

/// DSN NOTIFY values (RFC 3461 §4.1), upper-case.
pub fn check_notify(values: &[String]) -> Result<(), String> {
    let known = ["SUCCESS", "FAILURE", "DELAY"];
    let ok = match values {
        [one] if one == "NEVER" => true,
        [] => false,
        many => many.iter().all(|v| known.contains(&v.as_str())),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad DSN notify {:?}: use never, or any of success,failure,delay",
            values.join(",")
        ))
    }
}

/// Whether `name` is a maildrop file name (a queue-id-shaped ULID).
pub fn is_drop_name(name: &str) -> bool {
    name.parse::<crate::spool::QueueId>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission() -> Submission {
        Submission {
            version: 1,
            sender: "alice@relay.test".into(),
            recipients: vec!["root@relay.test".into()],
            body: Body::SevenBit,
            notify: None,
            size_limit: 1000,
        }
    }

    #[test]
    fn submission_round_trips_and_is_strict() {
        let s = submission();
        assert_eq!(Submission::parse(&s.to_line()).unwrap(), s);
        let text = String::from_utf8(s.to_line()).unwrap();
        for bad in [
            text.replace("\"version\":1", "\"version\":2"),
            text.replace("{", "{\"uid\":0,"),
            text.replace("root@relay.test", "root"),
            text.replace("[\"root@relay.test\"]", "[]"),
            text.replace("alice@relay.test", "a b@c"),
            text.replace("null", "[\"NEVER\",\"DELAY\"]"),
            "not json".into(),
        ] {
            assert!(Submission::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let null_sender = text.replace("alice@relay.test", "");
        assert!(Submission::parse(null_sender.as_bytes()).is_ok());
    }

    #[test]
    fn header_rejects_odd_user_names() {
        let h = DropHeader {
            version: 1,
            uid: 1000,
            user: "alice".into(),
            sender: String::new(),
            recipients: vec!["a@b".into()],
            body: Body::EightBitMime,
            notify: Some(vec!["NEVER".into()]),
        };
        assert_eq!(DropHeader::parse(&h.to_line()).unwrap(), h);
        for user in ["", "a b", "a\r\nX: y", "x)y", &"u".repeat(300)] {
            let mut bad = h.clone();
            bad.user = user.into();
            assert!(DropHeader::parse(&bad.to_line()).is_err(), "{user:?}");
        }
    }

    #[test]
    fn read_line_is_bounded() {
        let mut ok: &[u8] = b"{}\nrest";
        assert_eq!(read_line(&mut ok).unwrap(), b"{}");
        assert_eq!(ok, b"rest");
        let mut none: &[u8] = b"{}";
        assert!(matches!(read_line(&mut none), Err(FormatError::Truncated)));
        let long = vec![b'x'; MAX_JSON_LINE + 10];
        let mut r: &[u8] = &long;
        assert!(matches!(read_line(&mut r), Err(FormatError::LineTooLong)));
    }

    #[test]
    fn limit_is_capped() {
        let mut s = submission();
        s.size_limit = u64::MAX;
        assert_eq!(s.effective_limit(), HARD_SIZE_CAP);
    }
}
