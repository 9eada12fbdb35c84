//! The daemon's side of the local delivery helper: starts it (as root,
//! before the switch) and sends it one request at a time.
//!
//! If the helper is gone (it crashed, or was killed), local mail is
//! deferred with a reason that says so and stays queued; the daemon cannot
//! start a new one, having given up root. A watcher thread
//! ([`LocalHelper::watch`]) waits on the helper's exit, so that the daemon
//! logs the error asking for a restart (and sets the
//! `postrelay_local_helper_up` gauge to 0) when it happens, not at the
//! next local delivery. Requests are serialised: local delivery is system
//! mail, and each delivery is one short process.

use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

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
    /// The process, until [`LocalHelper::watch`] hands it to its watcher.
    child: Mutex<Option<Child>>,
    /// How it ended, once the watcher saw it.
    end: Arc<End>,
}

#[derive(Debug)]
struct Conn {
    stdin: ChildStdin,
    stdout: ChildStdout,
}

/// The helper's end, as the watcher thread saw it.
#[derive(Debug, Default)]
struct End {
    status: Mutex<Option<ExitStatus>>,
    seen: Condvar,
    /// Set when the daemon closes the helper on purpose (its stop).
    closing: AtomicBool,
}

/// How long a delivery that found the pipe closed waits for the watcher
/// to report the exit status, to name it in the reason.
const EXIT_REPORT_WAIT: Duration = Duration::from_secs(1);

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
        };
        Ok(LocalHelper {
            pid: child.id(),
            conn: Mutex::new(Some(conn)),
            child: Mutex::new(Some(child)),
            end: Arc::new(End::default()),
        })
    }

    /// Starts a thread that waits for the helper to exit and then calls
    /// `on_exit` with how it ended (not when the daemon closes it at its
    /// stop). Call it once, after the switch to the daemon user (the
    /// process has a single thread until then).
    pub fn watch(&self, on_exit: impl FnOnce(ExitStatus) + Send + 'static) {
        let Some(mut child) = lock(&self.child).take() else {
            return;
        };
        let end = self.end.clone();
        let spawned = std::thread::Builder::new()
            .name("local-helper-watch".into())
            .spawn(move || {
                let Ok(status) = child.wait() else {
                    return;
                };
                *lock(&end.status) = Some(status);
                end.seen.notify_all();
                if !end.closing.load(Ordering::SeqCst) {
                    on_exit(status);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot watch the local delivery helper; \
                a crash of it will be noticed at the next local delivery");
        }
    }

    /// Whether the helper is running, as far as the daemon knows.
    pub fn is_up(&self) -> bool {
        lock(&self.end.status).is_none() && lock(&self.conn).is_some()
    }

    /// The helper's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Asks the helper to deliver; blocking (run it off the runtime).
    pub fn deliver(&self, request: &Request) -> Outcome {
        let mut guard = lock(&self.conn);
        let Some(conn) = guard.as_mut() else {
            return gone("it exited earlier");
        };
        let exchanged = write_frame(&mut conn.stdin, request)
            .and_then(|()| read_frame::<Answer>(&mut conn.stdout));
        match exchanged {
            Ok(Some(answer)) => answer.into_outcome(),
            Ok(None) => {
                drop(guard.take());
                gone(&self.exited())
            }
            Err(e) => {
                drop(guard.take());
                gone(&format!("{e}; {}", self.exited()))
            }
        }
    }

    /// How the helper ended, once our end of its pipes is closed: from the
    /// watcher, or (unwatched) from the process itself, then logged here.
    fn exited(&self) -> String {
        if let Some(child) = lock(&self.child).as_mut() {
            let why = match child.try_wait() {
                Ok(Some(status)) => format!("it exited ({status})"),
                _ => "it stopped answering".to_owned(),
            };
            tracing::error!(pid = self.pid, "{}", gone_log(&why));
            return why;
        }
        let status = lock(&self.end.status);
        let (status, _) = self
            .end
            .seen
            .wait_timeout_while(status, EXIT_REPORT_WAIT, |s| s.is_none())
            .unwrap_or_else(|p| p.into_inner());
        status.map_or_else(
            || "it stopped answering".to_owned(),
            |s| format!("it exited ({s})"),
        )
    }
}

impl Drop for LocalHelper {
    /// Closing the pipe ends the helper; that is no crash to report.
    fn drop(&mut self) {
        self.end.closing.store(true, Ordering::SeqCst);
    }
}

/// The error logged when the helper is found gone: what it means and the
/// fix.
pub fn gone_log(why: &str) -> String {
    format!(
        "the local delivery helper is gone ({why}): local mail stays queued until postrelay \
         is restarted; restart postrelay (e.g. systemctl restart postrelay)"
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The outcome for every local delivery once the helper is gone: deferred,
/// never lost.
fn gone(why: &str) -> Outcome {
    Outcome::from_reason(Reason::Local(format!(
        "postrelay's local delivery helper is not running ({why}); the mail stays \
         queued until postrelay is restarted"
    )))
}
