//! The per-delivery child (`postrelay --privsep-local-deliver`), started by the
//! helper: reads one [`ChildRequest`] and the body on stdin, switches to
//! the recipient (their groups, plus `mail` for mbox delivery, which
//! creates its lock and file in a `root:mail 2775` mail spool directory),
//! writes the mailbox with [`crate::deliver::local`] and answers on stdout.
//!
//! Started as root it drops before it opens anything of the user's; not
//! started as root, it delivers only to the user it runs as (local
//! delivery refuses others). Leaving root also makes the process
//! non-dumpable, so the user cannot attach to it while it holds `mail`.

use std::io::{self, Read};
use std::process::ExitCode;

use super::identity::{become_ids, groups_of};
use super::wire::{Answer, ChildRequest, read_frame, write_frame};
use crate::deliver::Outcome;
use crate::deliver::local::{self, LocalMessage, LocalUser, lookup_user, mail_group};

/// Delivers one message; exit 0 when an answer was written.
pub fn main() -> ExitCode {
    let mut input = io::stdin().lock();
    let request: ChildRequest = match read_frame(&mut input) {
        Ok(Some(r)) => r,
        Ok(None) => {
            eprintln!("postrelay local delivery: no request");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("postrelay local delivery: unreadable request: {e}");
            return ExitCode::FAILURE;
        }
    };
    let answer = deliver(&request, &mut input);
    match write_frame(&mut io::stdout().lock(), &answer) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postrelay local delivery: cannot answer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn deliver(req: &ChildRequest, input: &mut dyn Read) -> Answer {
    let user = match lookup_user(&req.user) {
        Ok(u) => u,
        Err(reason) => return Answer::from_outcome(Outcome::from_reason(reason)),
    };
    if let Err(why) = become_recipient(&user, req.mailbox.mbox) {
        return Answer::Local(format!("cannot switch to {}: {why}", user.describe()));
    }
    let msg = LocalMessage {
        sender: &req.sender,
        recipient: &req.recipient,
        original_recipient: req.original_recipient.as_deref(),
        body: &req.body,
    };
    let mut body = Exact {
        inner: input,
        left: req.body_len,
    };
    Answer::from_outcome(local::deliver_from(
        &user,
        &msg,
        &mut body,
        &req.mailbox.settings(),
    ))
}

/// As root: the user's groups (and `mail` for mbox), gid, uid. Otherwise
/// nothing (local delivery then checks that we are the recipient).
fn become_recipient(user: &LocalUser, mbox: bool) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let extra = if mbox { mail_group() } else { None };
    let groups = groups_of(&user.name, user.gid, extra)?;
    become_ids(user.uid, user.gid, &groups)
}

/// Reads exactly `left` bytes: an early end is an error, so that a helper
/// that could not send everything never delivers half a message.
pub(super) struct Exact<'a> {
    pub(super) inner: &'a mut dyn Read,
    pub(super) left: u64,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the message ended {} bytes early", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
