//! The helper's conversation with one delivery child, under a deadline:
//! the request frame and the body go to the child's stdin while its
//! stdout is read to the end, both with `poll`, so that a child stuck in a
//! hung file system (or waiting for a lock) cannot stall the helper: at
//! the deadline the helper stops and kills the child's process group.
//!
//! Not for: what the bytes mean (`wire`, `helper`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdin, ChildStdout, ExitStatus};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::wire::MAX_FRAME;

/// How the conversation went.
#[derive(Debug, Default)]
pub(super) struct Talk {
    /// What the child wrote on stdout, up to one frame's worth.
    pub output: Vec<u8>,
    /// Why the request or body could not all be sent (the child may have
    /// stopped reading because it already answered).
    pub send_error: Option<io::Error>,
    /// The deadline passed before the child closed its stdout.
    pub timed_out: bool,
}

/// Chunk of the body sent at a time.
const CHUNK: usize = 64 * 1024;

/// Sends `head` then all of `body` to `stdin` (closed at the end), and
/// reads `stdout` until its end, until `deadline`.
pub(super) fn converse(
    stdin: ChildStdin,
    mut stdout: ChildStdout,
    head: Vec<u8>,
    body: &mut File,
    deadline: Instant,
) -> Talk {
    let mut talk = Talk::default();
    let mut stdin = Some(stdin);
    let (mut pending, mut sent, mut body_done) = (head, 0, false);
    let mut open_out = true;
    for fd in [stdin.as_ref().map(|s| s.as_fd()), Some(stdout.as_fd())]
        .into_iter()
        .flatten()
    {
        if let Err(e) = fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)) {
            talk.send_error = Some(e.into());
            return talk;
        }
    }
    let mut buf = vec![0u8; CHUNK];
    while open_out || stdin.is_some() {
        if stdin.is_some() && sent == pending.len() {
            if body_done {
                stdin = None; // EOF for the child
                continue;
            }
            match body.read(&mut buf) {
                Ok(0) => body_done = true,
                Ok(n) => (pending, sent) = (buf[..n].to_vec(), 0),
                Err(e) => {
                    talk.send_error = Some(e);
                    stdin = None;
                }
            }
            continue;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            talk.timed_out = true;
            return talk;
        };
        let (writable, readable) = match wait(stdin.as_ref(), open_out.then_some(&stdout), left) {
            Ok(ready) => ready,
            Err(e) => {
                // Cannot wait: give up on the child; dropping our ends
                // makes it answer (its body ends early) or exit.
                talk.send_error = Some(e);
                return talk;
            }
        };
        if let Some(s) = stdin.as_mut().filter(|_| writable) {
            match s.write(&pending[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    talk.send_error = Some(e);
                    stdin = None;
                }
            }
        }
        if readable {
            match stdout.read(&mut buf) {
                Ok(0) => open_out = false,
                Ok(n) => {
                    // More than a frame is not an answer: the rest is read
                    // (so that the child is not blocked) and dropped.
                    let room = (MAX_FRAME as usize + 4).saturating_sub(talk.output.len());
                    talk.output.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => open_out = false,
            }
        }
    }
    talk
}

/// Waits until `stdin` can be written or `stdout` read (or either end
/// closed), for at most `left`; which of the two are ready.
fn wait(
    stdin: Option<&ChildStdin>,
    stdout: Option<&ChildStdout>,
    left: Duration,
) -> io::Result<(bool, bool)> {
    let mut fds = Vec::with_capacity(2);
    if let Some(s) = stdin {
        fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
    }
    if let Some(s) = stdout {
        fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
    }
    // Rounded up, so that a few microseconds left still wait.
    let ms = left.as_millis().saturating_add(1);
    let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => return Err(e.into()),
    }
    let ready = |fd: Option<&PollFd>| fd.and_then(PollFd::revents).is_some_and(|r| !r.is_empty());
    let (w, r) = match (stdin, stdout) {
        (Some(_), Some(_)) => (ready(fds.first()), ready(fds.get(1))),
        (Some(_), None) => (ready(fds.first()), false),
        (None, _) => (false, ready(fds.first())),
    };
    Ok((w, r))
}

/// Kills the child's whole process group (it leads one) with SIGKILL.
pub(super) fn kill(child: &Child) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    if nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL).is_err() {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

/// Waits for the child to exit until `deadline`; `None` if it has not.
pub(super) fn reap(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => return None,
        }
    }
}
