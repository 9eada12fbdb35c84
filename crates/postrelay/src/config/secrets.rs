//! Secrets: the [`Secret`] type, and reading files that hold secrets
//! (`password_file`, `delivery.sasl_passwd`) only when they are protected.
//!
//! A secret file must be a regular file owned by the user postrelay runs as
//! (the `[daemon] user` it drops to when started as root, else its
//! effective uid: a reload re-reads the file after the drop) and neither
//! readable nor writable by anyone else
//! (`mode & 0o077 == 0`). Symbolic links are followed and the target is
//! checked. The checks are made on the opened file (fstat), so the file
//! checked is the file read. Every refusal names the file, what is wrong and
//! the command that fixes it.
//!
//! Nothing here ever puts a secret into an error message.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::unistd::{Uid, User, geteuid};

/// Largest secret file read: a password file or a `sasl_passwd` larger than
/// this is not what was meant, and reading it whole would waste memory.
const MAX_SECRET_FILE: u64 = 1 << 20;

/// A password. `Debug` and `Display` print `<redacted>`, so that it cannot
/// reach a log line or an error by accident; [`Secret::expose`] is the only
/// way to the text. Equality compares the text, so that a reload can tell a
/// changed password.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The password itself, for the AUTH exchange and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads the secret file at `path` after checking its type, owner and mode.
/// The error completes a sentence that starts with the file's name
/// (`"is readable by group or others (mode 0644): run chmod 600 …"`).
pub(super) fn read_protected(path: &Path) -> Result<String, String> {
    read_secret_file(path, owner())
}

/// [`read_protected`] for a file that must belong to `uid` (an OAuth
/// token file, read by the daemon or by `postrelay auth` run as root).
pub fn read_secret_file(path: &Path, uid: u32) -> Result<String, String> {
    let file = open(path)?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be examined: {e}"))?;
    check_protected(path, &meta, uid)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!(
            "is larger than {} KiB; is it the right file?",
            MAX_SECRET_FILE >> 10
        ));
    }
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned())
}

thread_local! {
    /// The uid secret files must belong to while a file is being parsed
    /// (set by [`with_owner`]); `None`: the effective uid.
    static OWNER: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` (one parse of the configuration) with secret files required to
/// belong to `uid`.
pub(super) fn with_owner<T>(uid: u32, f: impl FnOnce() -> T) -> T {
    let previous = OWNER.with(|o| o.replace(Some(uid)));
    let out = f();
    OWNER.with(|o| o.set(previous));
    out
}

/// Who secret files must belong to now.
fn owner() -> u32 {
    OWNER
        .with(|o| o.get())
        .unwrap_or_else(|| geteuid().as_raw())
}

/// Opens `path` for reading without blocking on a FIFO (whose type is then
/// refused) and without acquiring a controlling terminal.
pub(super) fn open(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "does not exist".to_owned(),
            std::io::ErrorKind::PermissionDenied => {
                let euid = owner();
                let quoted = shell_quote(path);
                format!(
                    "cannot be opened by postrelay, which runs as {}: permission denied; run chown {} {quoted} && chmod 600 {quoted}, and check that its directories let that user in",
                    user(euid),
                    chown_target(euid),
                )
            }
            _ => format!("cannot be opened: {e}"),
        })
}

/// The checks on an opened secret file, with `euid` the user postrelay runs
/// as. All problems are reported at once, with one command fixing them all.
pub(super) fn check_protected(path: &Path, meta: &Metadata, euid: u32) -> Result<(), String> {
    if !meta.is_file() {
        return Err(format!(
            "is not a regular file but {}; name the file that holds the secret",
            kind(meta)
        ));
    }
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    let quoted = shell_quote(path);
    if meta.uid() != euid {
        problems.push(format!(
            "is owned by {}, but postrelay runs as {}",
            user(meta.uid()),
            user(euid)
        ));
        fixes.push(format!("chown {} {quoted}", chown_target(euid)));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        let access = match (mode & 0o044 != 0, mode & 0o022 != 0) {
            (true, true) => "readable and writable",
            (true, false) => "readable",
            (false, true) => "writable",
            (false, false) => "accessible",
        };
        problems.push(format!("is {access} by group or others (mode {mode:04o})"));
        fixes.push(format!("chmod 600 {quoted}"));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}: run {}",
        problems.join(", and "),
        fixes.join(" && ")
    ))
}

/// What a non-regular file is, for the message.
fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "a special file"
    }
}

/// `alice (uid 1000)`, or `uid 1000` when the user has no name.
fn user(uid: u32) -> String {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// What to give chown: the user name when there is one, else the uid.
fn chown_target(uid: u32) -> String {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

/// `path` as a shell word, quoted only when it needs to be, so that the
/// fix commands in messages can be pasted as they are.
pub(super) fn shell_quote(path: &Path) -> String {
    let s = path.to_string_lossy();
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@,%=".contains(&b));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
