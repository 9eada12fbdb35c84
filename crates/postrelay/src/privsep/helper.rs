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
//! streams it the request and the body ([`super::exchange`]); a child that
//! has not answered within `[local] delivery_timeout` is killed (its whole
//! process group, SIGKILL) and the delivery deferred. It never parses SMTP
//! or a message.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use super::exchange;
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
    let mut helper = Helper {
        layout: Layout::new(spool),
        mailbox,
        exe: super::self_exe(),
        stragglers: Vec::new(),
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
    /// Killed delivery processes that had not exited yet.
    stragglers: Vec<Child>,
}

impl Helper {
    /// Checks one request and delivers it through a child.
    fn handle(&mut self, req: &Request) -> Answer {
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
    /// answer (or why there is none) within `[local] delivery_timeout`.
    fn in_child(
        &mut self,
        req: &Request,
        user: &LocalUser,
        path: PathBuf,
        mut body: File,
    ) -> Answer {
        let deadline = Instant::now() + self.mailbox.timeout;
        self.stragglers
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        let body_len = match body.metadata() {
            Ok(m) => m.len(),
            Err(e) => return Answer::Local(format!("cannot stat {}: {e}", path.display())),
        };
        // Its own process group, so that a timeout kills all of it.
        let spawned = Command::new(&self.exe)
            .arg(super::CHILD_ARG)
            .env_clear()
            .process_group(0)
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
        let mut head = Vec::new();
        if let Err(e) = write_frame(&mut head, &request) {
            self.kill(child);
            return Answer::Local(format!("cannot encode the local delivery request: {e}"));
        }
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            self.kill(child);
            return Answer::Local("the local delivery process has no pipes".into());
        };
        let talk = exchange::converse(stdin, stdout, head, &mut body, deadline);
        if talk.timed_out {
            self.kill(child);
            return Answer::Local(self.timeout_reason(user));
        }
        let status = exchange::reap(&mut child, deadline);
        if status.is_none() {
            self.kill(child);
        }
        match (
            read_frame::<Answer>(&mut talk.output.as_slice()),
            talk.send_error,
        ) {
            (Ok(Some(a)), _) => a,
            // A child that stopped reading has said why in its answer; one
            // that said nothing is described by its exit and our error.
            (_, sent) => Answer::Local(format!(
                "the local delivery process for {} ended without an answer ({}{})",
                user.describe(),
                status.map_or_else(|| "it did not exit; killed".into(), |s| s.to_string()),
                sent.map(|e| format!("; sending it the message: {e}"))
                    .unwrap_or_default()
            )),
        }
    }

    /// Kills a child's process group and reaps it, or keeps it to reap
    /// later: one stuck in the kernel (a hung file system) may take its
    /// time to go.
    fn kill(&mut self, mut child: Child) {
        exchange::kill(&child);
        if exchange::reap(&mut child, Instant::now() + KILL_GRACE).is_none() {
            eprintln!(
                "postrelay local delivery helper: the killed delivery process {} has not \
                 exited yet (stuck in the kernel?); going on without it",
                child.id()
            );
            self.stragglers.push(child);
        }
    }

    /// The reason for a delivery that ran out of time: what happened and
    /// what to check.
    fn timeout_reason(&self, user: &LocalUser) -> String {
        let check = if self.mailbox.mbox {
            let mbox = self.mailbox.mbox_dir.join(&user.name);
            format!(
                "check that the file system of {} responds and that no program holds its \
                 lock ({}.lock, or a lock on the file) for long",
                mbox.display(),
                mbox.display()
            )
        } else {
            format!(
                "check that the file system of {} responds",
                user.home.join(&self.mailbox.maildir).display()
            )
        };
        format!(
            "local delivery to {} did not finish within {} ([local] delivery_timeout) and was \
             killed; {check}; the mail stays queued and is retried",
            user.describe(),
            crate::config::format_duration(self.mailbox.timeout)
        )
    }
}

/// How long a killed child is waited for before the helper goes on.
const KILL_GRACE: Duration = Duration::from_secs(1);

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
