//! The daemon's side of the local delivery helper: starts it (as root,
//! before the switch) and sends it one request at a time.
//!
//! If the helper is gone (it crashed, or was killed), local mail is
//! deferred with a reason that says so and stays queued; the daemon cannot
//! start a new one, having given up root, so the error log asks for a
//! restart. Requests are serialised: local delivery is system mail, and
//! each delivery is one short process.

use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use nix::sys::signal::SigmaskHow;

use super::PrivsepError;
use super::wire::{Answer, Mailbox, Request, read_frame, write_frame};
use crate::deliver::local::LocalSettings;
use crate::deliver::{Outcome, Reason};

/// A running helper.
#[derive(Debug)]
pub struct LocalHelper {
    pid: u32,
    /// `None` once the helper is known to be gone.
    conn: Mutex<Option<Conn>>,
}

#[derive(Debug)]
struct Conn {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl LocalHelper {
    /// Starts `postrelay --privsep-local-helper` for the spool at `spool`, with the
    /// mailbox settings of `settings` (fixed for its lifetime). Call it
    /// before dropping privileges: the helper keeps this process's.
    pub fn spawn(spool: &Path, settings: &LocalSettings) -> Result<LocalHelper, PrivsepError> {
        Self::spawn_program(&super::self_exe(), spool, settings)
    }

    /// [`LocalHelper::spawn`] running the postrelay binary at `exe` (for
    /// tests, whose own binary is another program).
    pub fn spawn_program(
        exe: &Path,
        spool: &Path,
        settings: &LocalSettings,
    ) -> Result<LocalHelper, PrivsepError> {
        let exe = exe.to_path_buf();
        let mailbox = serde_json::to_string(&Mailbox::of(settings)).expect("plain data");
        // No environment: in particular not $NOTIFY_SOCKET (systemd takes
        // notifications from the main process only).
        let mut cmd = Command::new(&exe);
        cmd.arg(super::HELPER_ARG)
            .arg(spool)
            .arg(mailbox)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Started with the stop signals blocked (the mask survives exec),
        // so that none can end it before it blocks them itself.
        let stop = super::helper::stop_signals();
        let previous = stop.thread_swap_mask(SigmaskHow::SIG_BLOCK).ok();
        let spawned = cmd.spawn();
        if let Some(previous) = previous {
            let _ = previous.thread_set_mask();
        }
        let mut child = spawned.map_err(|source| PrivsepError::Helper { exe, source })?;
        let conn = Conn {
            stdin: child.stdin.take().expect("piped"),
            stdout: child.stdout.take().expect("piped"),
            child,
        };
        Ok(LocalHelper {
            pid: conn.child.id(),
            conn: Mutex::new(Some(conn)),
        })
    }

    /// The helper's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Asks the helper to deliver; blocking (run it off the runtime).
    pub fn deliver(&self, request: &Request) -> Outcome {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let Some(conn) = guard.as_mut() else {
            return gone("it exited earlier");
        };
        let exchanged = write_frame(&mut conn.stdin, request)
            .and_then(|()| read_frame::<Answer>(&mut conn.stdout));
        match exchanged {
            Ok(Some(answer)) => answer.into_outcome(),
            Ok(None) => {
                let why = exited(guard.take());
                gone(&why)
            }
            Err(e) => {
                let why = format!("{e}; {}", exited(guard.take()));
                gone(&why)
            }
        }
    }
}

/// Closes our end and reports how the helper ended.
fn exited(conn: Option<Conn>) -> String {
    let Some(Conn {
        mut child, stdin, ..
    }) = conn
    else {
        return "it exited".into();
    };
    drop(stdin);
    let why = match child.try_wait() {
        Ok(Some(status)) => format!("it exited ({status})"),
        _ => "it stopped answering".to_owned(),
    };
    tracing::error!(
        pid = child.id(),
        "the local delivery helper is gone ({why}): local mail stays queued; restart postrelay"
    );
    why
}

/// The outcome for every local delivery once the helper is gone: deferred,
/// never lost.
fn gone(why: &str) -> Outcome {
    Outcome::from_reason(Reason::Local(format!(
        "postrelay's local delivery helper is not running ({why}); the mail stays \
         queued until postrelay is restarted"
    )))
}
