//! Undoing an mbox append that was cut short by a kill.
//!
//! A delivery that fails returns an error and truncates the mbox back
//! itself (`mbox::deliver`). One that is killed (the helper's
//! `[local] delivery_timeout`, SIGKILL) cannot: it would leave half a
//! message at the end of the mailbox, the next message would be appended
//! after it, and the retry would write the part again. So before it
//! appends, a delivery notes in its own dotlock file who it is and where
//! the mbox ended ([`note`]); a kill leaves that dotlock behind, so no
//! program that honours dotlocks touches the mbox meanwhile. The next
//! delivery to the mailbox ([`adopt`]) finds the dotlock, sees that the
//! process that made it on this host is gone (the `fcntl` lock it held on
//! the dotlock file is free, which also tells that no other delivery is
//! taking it over, see `mbox::dotlock`; a note written before deliveries
//! held that lock is judged by whether its pid is free), takes the lock
//! over instead of waiting for it to go stale, and once it also holds the
//! mbox's `fcntl` lock cuts the mbox back to where the killed delivery
//! started ([`repair`]),
//! but only when what follows that point is the killed delivery's own
//! partial message: it begins with the `From ` line noted, and no other
//! line starts a message (the body's are quoted). Anything else there is
//! left alone and logged. Until that is done the killed delivery's note
//! stays in the dotlock: an adopter that fails or is killed first leaves
//! it for the next one.
//!
//! Not for: failures the writer sees itself (`mbox::deliver` truncates),
//! or dotlocks of other programs (waited for, then removed when stale).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::libc;

use super::super::io_reason;
use super::RecordLock;
use crate::deliver::Reason;

/// What a delivery notes in its dotlock file: who holds it, and once it
/// appends, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::deliver::local) struct Note {
    pub host: String,
    pub pid: i32,
    /// The delivery held the `fcntl` lock on the dotlock file while it
    /// lived (every note this version writes; older ones did not say).
    /// Then a free lock proves it gone, even when its pid has been given
    /// to another process since.
    pub held: bool,
    pub append: Option<Append>,
}

/// An append in progress: the mbox (device and inode), its size before,
/// and the first bytes written (the line break that ends a damaged last
/// line, if one was needed, and the `From ` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::deliver::local) struct Append {
    pub dev: u64,
    pub ino: u64,
    pub start: u64,
    pub head: Vec<u8>,
}

const MAGIC: &str = "postrelay-mbox-append";

/// The largest note read back (a From line is short).
const MAX_NOTE: usize = 4096;

impl Note {
    /// This process, on this host.
    pub fn mine(append: Option<Append>) -> Note {
        Note {
            host: host(),
            pid: std::process::id() as i32,
            held: true,
            append,
        }
    }

    /// One line: `MAGIC host=H pid=P[ held=1][ dev=D ino=I start=S nl=0|1 from=LINE]`.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = format!("{MAGIC} host={} pid={}", self.host, self.pid);
        if self.held {
            line.push_str(" held=1");
        }
        if let Some(a) = &self.append {
            let (nl, from) = match a.head.strip_prefix(b"\n") {
                Some(rest) => (1, rest),
                None => (0, &a.head[..]),
            };
            let from = String::from_utf8_lossy(from.strip_suffix(b"\n").unwrap_or(from));
            line.push_str(&format!(
                " dev={} ino={} start={} nl={nl} from={from}",
                a.dev, a.ino, a.start
            ));
        }
        line.push('\n');
        line.into_bytes()
    }

    /// The note of `text`'s first line; `None` for anything else (another
    /// program's lock file).
    pub fn parse(text: &[u8]) -> Option<Note> {
        let line = text.split(|&b| b == b'\n').next()?;
        let line = std::str::from_utf8(line).ok()?;
        let (fields, from) = match line.split_once(" from=") {
            Some((f, from)) => (f, Some(from)),
            None => (line, None),
        };
        let mut words = fields.split(' ').peekable();
        if words.next()? != MAGIC {
            return None;
        }
        let host = field(&mut words, "host")?.to_string();
        let pid = field(&mut words, "pid")?.parse().ok()?;
        let held = words.next_if_eq(&"held=1").is_some();
        let append = match from {
            None => None,
            Some(from) => {
                let dev = field(&mut words, "dev")?.parse().ok()?;
                let ino = field(&mut words, "ino")?.parse().ok()?;
                let start = field(&mut words, "start")?.parse().ok()?;
                let nl = field(&mut words, "nl")?;
                let mut head = if nl == "1" {
                    b"\n".to_vec()
                } else {
                    Vec::new()
                };
                head.extend_from_slice(from.as_bytes());
                head.push(b'\n');
                Some(Append {
                    dev,
                    ino,
                    start,
                    head,
                })
            }
        };
        Some(Note {
            host,
            pid,
            held,
            append,
        })
    }
}

/// The value of the next word of a note if it is `key=VALUE`.
fn field<'a>(words: &mut impl Iterator<Item = &'a str>, key: &str) -> Option<&'a str> {
    words.next()?.strip_prefix(key)?.strip_prefix('=')
}

fn host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
        .replace([' ', '='], "_")
}

/// Writes `note` over the start of the dotlock file, then cuts what an
/// earlier, longer note left after it (only the first line is read back,
/// so a kill between the two leaves a note that reads well).
pub(super) fn note(lock: &File, path: &Path, note: &Note) -> Result<(), Reason> {
    let line = note.to_line();
    lock.write_all_at(&line, 0)
        .and_then(|()| lock.set_len(line.len() as u64))
        .map_err(|e| io_reason("write lock file", path, &e))
}

/// A killed delivery's dotlock, taken over: the file, the lock on it that
/// says a live delivery holds it now, and the killed delivery's note.
pub(in crate::deliver::local) struct Adopted {
    pub file: File,
    pub held: RecordLock,
    pub note: Note,
}

/// A dotlock left by a postrelay delivery on this host whose process is
/// gone: opened and locked, with its note. `None` for a lock of a live
/// process, another host, another program, one that is not a plain file
/// of ours, or one another delivery is taking over: the lock on the file
/// lets exactly one adopt it.
pub(in crate::deliver::local) fn adopt(lock: &Path) -> Option<Adopted> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(lock)
        .ok()?;
    let m = file.metadata().ok()?;
    if !m.file_type().is_file() || m.nlink() != 1 || m.uid() != nix::unistd::geteuid().as_raw() {
        return None;
    }
    // Held by a live delivery (its maker, or another that adopted it),
    // else ours until dropped; the note is read under it.
    let held = RecordLock::try_acquire(&file, lock).ok()??;
    let mut text = Vec::new();
    (&mut file)
        .take(MAX_NOTE as u64)
        .read_to_end(&mut text)
        .ok()?;
    let note = Note::parse(&text)?;
    // Gone: it held the file's lock while it lived (which we now hold),
    // or, for a note that does not say so, its pid is free.
    let pid = nix::unistd::Pid::from_raw(note.pid);
    let gone = note.held || nix::sys::signal::kill(pid, None) == Err(nix::errno::Errno::ESRCH);
    if note.host != host() || note.pid <= 0 || !gone {
        return None;
    }
    // Still the file at that name (not removed as stale or by a finished
    // adopter meanwhile).
    let now = std::fs::symlink_metadata(lock).ok()?;
    (now.dev() == m.dev() && now.ino() == m.ino()).then_some(Adopted { file, held, note })
}

/// Cuts `mbox` (locked by us) back to where the killed append `append`
/// started, if what follows is that append's own partial message.
/// Returns the mbox's size afterwards.
pub(super) fn repair(mbox: &File, path: &Path, append: &Append) -> Result<u64, Reason> {
    let m = mbox.metadata().map_err(|e| io_reason("stat", path, &e))?;
    let size = m.len();
    if (m.dev(), m.ino()) != (append.dev, append.ino) || size <= append.start {
        // Replaced or rewritten since (an MUA that ignored the dotlock):
        // nothing of the killed delivery's to take back.
        return Ok(size);
    }
    let only_ours = partial_message(mbox, append, size).map_err(|e| io_reason("read", path, &e))?;
    if !only_ours {
        tracing::error!(path = %path.display(), at = append.start,
            "a delivery to this mbox was killed while writing, but what follows its start is \
             not only its own partial message; leaving the mailbox as it is");
        return Ok(size);
    }
    mbox.set_len(append.start)
        .and_then(|()| mbox.sync_all())
        .map_err(|e| io_reason("truncate", path, &e))?;
    tracing::warn!(path = %path.display(), from = size, to = append.start,
        "truncated the partial message of a delivery that was killed while writing it");
    Ok(append.start)
}

/// Whether `mbox[append.start..size]` is the start of one message written
/// by the killed delivery: its noted first bytes (or a part of them, if
/// it was killed that early), then no `From ` anywhere. Not only at a line
/// start: the partial message may end mid-line, and a program that
/// appended after it without a line break starts its message there. A
/// `From ` in the text of our own message makes this refuse too, which
/// leaves the mailbox as it is (as before there was an undo): never cut
/// what might be someone else's.
fn partial_message(mbox: &File, append: &Append, size: u64) -> std::io::Result<bool> {
    const FROM: &[u8] = b"From ";
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = append.start;
    // The last bytes of the previous chunk, for a `\nFrom ` across two.
    let mut carry: Vec<u8> = Vec::new();
    let mut first = true;
    while at < size {
        let want = usize::try_from(size - at)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = mbox.read_at(&mut buf[..want], at)?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        if first {
            first = false;
            let k = chunk.len().min(append.head.len());
            if chunk[..k] != append.head[..k] {
                return Ok(false);
            }
            // Its own From line is the one that may start a line.
            chunk = &chunk[k..];
            carry.clear();
            carry.push(b'\n');
        }
        carry.extend_from_slice(chunk);
        if carry.windows(FROM.len()).any(|w| w == FROM) {
            return Ok(false);
        }
        let keep = carry.len().saturating_sub(FROM.len() - 1);
        carry.drain(..keep);
        at += n as u64;
    }
    Ok(true)
}
