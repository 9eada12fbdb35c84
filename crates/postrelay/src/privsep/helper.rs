//! The local delivery helper (`postrelay --privsep-local-helper SPOOL
//! MAILBOX`): keeps the
//! privileges the daemon was started with, reads [`Request`]s on stdin and
//! writes one [`Answer`] each on stdout, one at a time.
//!
//! It trusts nothing in a request: the queue id must parse as one (so it
//! cannot name another file), the user is looked up here, and the body is
//! opened here from the spool this helper was started with
//! (`queue/<id>.msg`, never through a symbolic link). The mailbox settings
//! are the ones given at start by the process that was root then, not the
//! daemon's later word. For each delivery it starts a child (`postrelay
//! --privsep-local-deliver`, [`super::child`]) that switches to the recipient, and
//! streams it the request and the body. It never parses SMTP or a message.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use super::wire::{Answer, ChildRequest, Mailbox, Request, read_frame, write_frame};
use crate::deliver::Outcome;
use crate::deliver::local::{self, LocalUser};
use crate::spool::Layout;
use crate::spool::QueueId;

/// Serves requests until the daemon closes its end (exit 0), or sends
/// something that is not a request (exit 1).
pub fn main(args: &[OsString]) -> ExitCode {
    let [spool, mailbox] = args else {
        eprintln!("postrelay: the local delivery helper is started by the daemon only");
        return ExitCode::FAILURE;
    };
    let mailbox = match mailbox.to_str().map(serde_json::from_str::<Mailbox>) {
        Some(Ok(m)) => m,
        _ => {
            eprintln!("postrelay local delivery helper: unreadable mailbox settings");
            return ExitCode::FAILURE;
        }
    };
    let spool = Path::new(spool);
    let helper = Helper {
        layout: Layout::new(spool),
        mailbox,
        exe: super::self_exe(),
    };
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    loop {
        let request: Request = match read_frame(&mut input) {
            Ok(Some(r)) => r,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("postrelay local delivery helper: unreadable request, exiting: {e}");
                return ExitCode::FAILURE;
            }
        };
        let answer = helper.handle(&request);
        if let Err(e) = write_frame(&mut output, &answer) {
            eprintln!("postrelay local delivery helper: cannot answer the daemon, exiting: {e}");
            return ExitCode::FAILURE;
        }
    }
}

struct Helper {
    layout: Layout,
    mailbox: Mailbox,
    exe: PathBuf,
}

impl Helper {
    /// Checks one request and delivers it through a child.
    fn handle(&self, req: &Request) -> Answer {
        let id: QueueId = match req.queue_id.parse() {
            Ok(id) => id,
            Err(e) => return Answer::Local(format!("local delivery helper refused: {e}")),
        };
        let user = match local::resolve(&req.user, req.catch_all.as_deref()) {
            Ok(u) => u,
            Err(reason) => return Answer::from_outcome(Outcome::from_reason(reason)),
        };
        let path = self.layout.body_path(&id);
        let body = match open_body(&path) {
            Ok(f) => f,
            Err(e) => {
                return Answer::Local(format!("cannot read queue file {}: {e}", path.display()));
            }
        };
        self.in_child(req, &user, path, body)
    }

    /// Starts the child, hands it the request and the body, and returns its
    /// answer (or why there is none).
    fn in_child(&self, req: &Request, user: &LocalUser, path: PathBuf, mut body: File) -> Answer {
        let body_len = match body.metadata() {
            Ok(m) => m.len(),
            Err(e) => return Answer::Local(format!("cannot stat {}: {e}", path.display())),
        };
        let spawned = Command::new(&self.exe)
            .arg(super::CHILD_ARG)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                return Answer::Local(format!(
                    "cannot start the local delivery process ({}): {e}",
                    self.exe.display()
                ));
            }
        };
        let request = ChildRequest {
            user: user.name.clone(),
            sender: req.sender.clone(),
            recipient: req.recipient.clone(),
            original_recipient: req.original_recipient.clone(),
            mailbox: self.mailbox.clone(),
            body: path,
            body_len,
        };
        let mut stdin = child.stdin.take().expect("piped");
        let sent = write_frame(&mut stdin, &request)
            .and_then(|()| io::copy(&mut body, &mut stdin).map(drop))
            .and_then(|()| stdin.flush());
        drop(stdin);
        let answer = child
            .stdout
            .take()
            .map(|mut out| read_frame::<Answer>(&mut out));
        let status = child.wait();
        match (answer, sent) {
            (Some(Ok(Some(a))), _) => a,
            // A child that stopped reading has said why in its answer; one
            // that said nothing is described by its exit and our error.
            (_, sent) => Answer::Local(format!(
                "the local delivery process for {} ended without an answer ({}{})",
                user.describe(),
                status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                sent.err()
                    .map(|e| format!("; sending it the message: {e}"))
                    .unwrap_or_default()
            )),
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP: blocked in the helper for its whole life
/// (the daemon starts it with them blocked, and the mask survives exec).
/// systemd's stop and a terminal's Ctrl-C reach the whole group, but the
/// helper must outlive the daemon's graceful stop, which may still
/// deliver; it ends when the daemon closes the pipe (SIGKILL still ends
/// it). Its children inherit the mask, and are short-lived.
pub(super) fn stop_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(sig);
    }
    set
}

/// Opens a spool body read-only, refusing a symbolic link and anything but
/// a regular file (a FIFO must not hang the helper).
fn open_body(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}
