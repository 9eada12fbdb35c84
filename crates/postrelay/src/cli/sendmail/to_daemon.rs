//! Where `sendmail` writes the message: straight to the running daemon
//! over its submit socket when it can (one connection, the daemon's group
//! commit, no helper process), otherwise to `postrelay-postdrop` and
//! maildrop/ as before. Protocol: [`crate::maildrop`].
//!
//! [`Sink`] is the one writer `sendmail` streams into. It starts on the
//! socket when `connect` succeeds and keeps a copy of what it sent, up to
//! [`REPLAY_LIMIT`]; if the daemon goes away or answers `4xx` (busy,
//! stopping, a local error), the copy is replayed into postdrop and the
//! rest of standard input follows it there, so a message is never lost to
//! the fast path. Past the limit the copy is dropped (memory stays
//! bounded) and such a failure is reported (exit 75) instead. A `5xx`
//! (the daemon refused the message itself: too big, a bare LF …) is
//! final, with the daemon's words.
//!
//! Nothing here waits without a bound: the connection is made without
//! waiting (a daemon that does not accept, its queue of connections full,
//! is a daemon that is not there: postdrop), and the daemon's answer is
//! awaited for at most [`ANSWER_WITHIN`] in all (a daemon that accepts
//! and never answers, or answers a byte at a time, then has the message
//! replayed into postdrop, or the submission fails with exit 75 past the
//! replay limit).
//!
//! Not for: reading or checking the input (`input`), postdrop's own
//! checks (the `postrelay-postdrop` binary).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, ChildStdin, Output};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};

/// The most `sendmail` keeps of a message sent to the daemon, to replay it
/// into maildrop/ should the daemon fail; larger messages are not kept.
pub const REPLAY_LIMIT: usize = 1 << 20;

/// How long the daemon may take to answer after the end of the message
/// (it answers once the message is on disk), and to take each write.
const ANSWER_WITHIN: Duration = Duration::from_secs(120);

/// Bytes gathered before one write to the socket.
const CHUNK: usize = 64 * 1024;

/// What the daemon answered: its reply line, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The three-digit code (0 when the line was not a reply).
    pub code: u16,
    /// The line as sent, without CRLF.
    pub line: String,
}

impl Answer {
    fn parse(line: &str) -> Answer {
        let line = line.trim_end().to_string();
        let code = line
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Answer { code, line }
    }
}

/// How a submission ended.
pub enum Verdict {
    /// The daemon queued it: its `250` line.
    Queued(Answer),
    /// The daemon refused the message for good (`5xx`).
    Refused(Answer),
    /// It went to postdrop (from the start, or replayed): its exit.
    Postdrop(Output),
    /// The daemon failed after more than [`REPLAY_LIMIT`] was sent; nothing
    /// is queued. Why.
    Lost(String),
}

enum State {
    Daemon {
        sock: UnixStream,
        pending: Vec<u8>,
        /// Everything sent so far, while it fits in [`REPLAY_LIMIT`].
        replay: Option<Vec<u8>>,
    },
    Postdrop {
        child: Child,
        stdin: io::BufWriter<ChildStdin>,
    },
    /// The daemon failed for good; no more writing.
    Done(Verdict),
}

/// The writer `sendmail` streams the submission into (see the module
/// documentation). `spawn` starts postdrop when it is needed.
pub struct Sink<F: FnMut() -> io::Result<Child>> {
    state: State,
    spawn: F,
    /// How long to wait for the daemon's answer: [`ANSWER_WITHIN`].
    answer_within: Duration,
}

impl<F: FnMut() -> io::Result<Child>> Sink<F> {
    /// On `connected`, the daemon's socket, if connecting succeeded, else
    /// on a postdrop started now.
    pub fn with(connected: io::Result<UnixStream>, mut spawn: F) -> io::Result<Self> {
        let state = match connected {
            Ok(sock) => {
                sock.set_write_timeout(Some(ANSWER_WITHIN))?;
                State::Daemon {
                    sock,
                    pending: Vec::with_capacity(CHUNK),
                    replay: Some(Vec::new()),
                }
            }
            // Not running, not allowed (not in postdrop), no socket: the
            // drop directory works in every case.
            Err(_) => {
                let (child, stdin) = postdrop(spawn()?);
                State::Postdrop { child, stdin }
            }
        };
        Ok(Sink {
            state,
            spawn,
            answer_within: ANSWER_WITHIN,
        })
    }

    /// After the end of the message (or a failure to produce it, `ok`
    /// false: postdrop then discards what it has, the daemon sees a
    /// message without its end): the verdict.
    pub fn finish(mut self, ok: bool) -> io::Result<Verdict> {
        if ok {
            let _ = self.flush();
        }
        match self.state {
            State::Done(v) => Ok(v),
            State::Postdrop { child, stdin } => {
                drop(stdin);
                child.wait_with_output().map(Verdict::Postdrop)
            }
            State::Daemon {
                mut sock, replay, ..
            } => {
                if !ok {
                    return Ok(Verdict::Lost(String::new()));
                }
                let answer = read_answer(&mut sock, self.answer_within);
                match (answer, replay) {
                    (Some(a), _) if a.code / 100 == 2 => Ok(Verdict::Queued(a)),
                    (Some(a), _) if a.code / 100 == 5 => Ok(Verdict::Refused(a)),
                    (_, Some(copy)) => {
                        let (child, mut stdin) = postdrop((self.spawn)()?);
                        // postdrop's own verdict says what went wrong, if anything.
                        let _ = stdin.write_all(&copy).and_then(|()| stdin.flush());
                        drop(stdin);
                        child.wait_with_output().map(Verdict::Postdrop)
                    }
                    (a, None) => Ok(Verdict::Lost(lost_why(a.as_ref()))),
                }
            }
        }
    }

    /// The daemon failed while we wrote: replay into postdrop, or stop.
    fn fail_over(&mut self) -> io::Result<()> {
        let State::Daemon { sock, replay, .. } = &mut self.state else {
            return Ok(());
        };
        let answer = read_answer(sock, self.answer_within);
        match (answer, replay.take()) {
            (Some(a), _) if a.code / 100 == 5 => {
                self.state = State::Done(Verdict::Refused(a));
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "refused"))
            }
            (_, Some(copy)) => {
                let (child, stdin) = postdrop((self.spawn)()?);
                self.state = State::Postdrop { child, stdin };
                self.write_all(&copy)
            }
            (a, None) => {
                self.state = State::Done(Verdict::Lost(lost_why(a.as_ref())));
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "daemon gone"))
            }
        }
    }
}

/// A started postdrop and its input.
fn postdrop(mut child: Child) -> (Child, io::BufWriter<ChildStdin>) {
    let stdin = child.stdin.take().expect("postdrop's stdin is piped");
    (child, io::BufWriter::with_capacity(CHUNK, stdin))
}

/// The daemon's one reply line, if it sent all of it within `within`.
fn read_answer(sock: &mut UnixStream, within: Duration) -> Option<Answer> {
    let deadline = Instant::now() + within;
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    while !line.ends_with(b"\n") && line.len() < 4096 {
        let left = deadline.checked_duration_since(Instant::now())?;
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let line = String::from_utf8_lossy(&line);
    let line = line.split_inclusive('\n').next().unwrap_or_default();
    (!line.is_empty()).then(|| Answer::parse(line))
}

/// Connects to the daemon's submit socket at `path` without waiting: a
/// daemon whose queue of connections is full (stuck, or not accepting) is
/// refused at once (`WouldBlock`), like one that is not running.
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr)?;
    let sock = UnixStream::from(fd);
    sock.set_nonblocking(false)?;
    Ok(sock)
}

fn lost_why(answer: Option<&Answer>) -> String {
    let said = match answer {
        Some(a) => format!("answered {:?}", a.line),
        None => "went away without an answer".into(),
    };
    format!(
        "the postrelay daemon {said} after more than {REPLAY_LIMIT} octets of the message; \
         it was not queued: send it again"
    )
}

impl<F: FnMut() -> io::Result<Child>> Write for Sink<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.state {
            State::Daemon {
                sock,
                pending,
                replay,
            } => {
                pending.extend_from_slice(buf);
                if let Some(copy) = replay {
                    if copy.len() + buf.len() > REPLAY_LIMIT {
                        *replay = None;
                    } else {
                        copy.extend_from_slice(buf);
                    }
                }
                if pending.len() >= CHUNK {
                    let sent = sock.write_all(pending);
                    pending.clear();
                    if sent.is_err() {
                        self.fail_over()?;
                    }
                }
                Ok(buf.len())
            }
            State::Postdrop { stdin, .. } => stdin.write(buf),
            State::Done(_) => Err(io::Error::new(io::ErrorKind::BrokenPipe, "stopped")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.state {
            State::Daemon { sock, pending, .. } => {
                let sent = sock.write_all(pending).and_then(|()| sock.flush());
                pending.clear();
                if sent.is_err() {
                    self.fail_over()?;
                }
                Ok(())
            }
            State::Postdrop { stdin, .. } => stdin.flush(),
            State::Done(_) => Err(io::Error::new(io::ErrorKind::BrokenPipe, "stopped")),
        }
    }
}

#[cfg(test)]
mod tests;
