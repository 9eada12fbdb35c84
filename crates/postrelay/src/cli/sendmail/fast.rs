//! `postrelay-sendmail`, what `/usr/sbin/sendmail` links to: the common
//! case of `sendmail` in a small program. cron, PHP and monitoring tools
//! start it once per message, and most of the time of the full `postrelay`
//! binary was spent loading it (12 MB of code, 20 000 relocations) and
//! resolving the whole configuration, before a message of a few hundred
//! octets went to the daemon.
//!
//! It submits when the command line asks to submit (`-bm`, the default)
//! and the settings submission needs read well ([`SubmitSettings::read`]);
//! then it runs the same code as the full binary: argument parsing, input
//! checks, `From:`, the connection to the daemon's submit socket once the
//! header is read, and `postrelay-postdrop` with maildrop/ when the daemon
//! is down or the caller may not use its socket (or, should the daemon
//! fail mid-way, the replay into postdrop). In every other case, before it
//! has read anything from standard input, it executes `postrelay sendmail`
//! with the same arguments, which does what it always did: `-bp`, `-q`,
//! `-bs`, usage errors, and configuration errors located in the whole
//! file.
//!
//! An error in a part of the configuration submission does not use goes
//! unseen here: the daemon works with the configuration it loaded, and
//! `postrelay check-config` (or a reload) reports the error; a message
//! left in maildrop/ waits there until a daemon starts. `postrelay
//! sendmail` still refuses to submit with a broken file (exit 78).
//!
//! Not for: anything the full binary does beyond submitting to a running
//! daemon; no second way into the queue (the socket is the daemon's).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use super::args::{self, Mode, Options};
use super::{EX_TEMPFAIL, Fail, beside_me, submit};
use crate::config::SubmitSettings;

/// Where the full binary is when it is not next to this program.
pub const POSTRELAY_PATH: &str = "/usr/sbin/postrelay";

/// Runs `postrelay-sendmail ARGS` (arguments after argv\[0\]); `config` is
/// `POSTRELAY_CONFIG`, if set.
pub fn main(args: Vec<OsString>, config: Option<PathBuf>) -> ExitCode {
    let outcome = match ready(&args, config.as_deref()) {
        Ok((settings, opts)) => submit(&settings, &opts),
        Err(why) => Err(exec_full(args, why)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, why)) => {
            eprintln!("sendmail: {why}");
            ExitCode::from(code)
        }
    }
}

/// What submitting here needs: the settings and the options. Otherwise
/// why the full binary must do it.
fn ready(
    args: &[OsString],
    config: Option<&Path>,
) -> Result<(SubmitSettings, Options), &'static str> {
    let opts = args::parse(args.to_vec()).map_err(|_| "to explain the usage")?;
    if opts.mode != Mode::Submit {
        return Err("for that mode");
    }
    let settings = settings(config).ok_or("to check the configuration")?;
    Ok((settings, opts))
}

/// The settings from the file `postrelay sendmail` would read, or `None`
/// when it cannot be read or one of them is wrong.
fn settings(explicit: Option<&Path>) -> Option<SubmitSettings> {
    match crate::cli::config_path(explicit).ok()? {
        None => Some(SubmitSettings::builtin()),
        Some(path) => {
            let text = std::fs::read_to_string(&path).ok()?;
            SubmitSettings::read(&text, &path.display().to_string()).ok()
        }
    }
}

/// Replaces this process with `postrelay sendmail ARGS`, needed `why`;
/// returns only if that fails, with the failure to report (nothing was
/// read from standard input: the caller may send again).
fn exec_full(args: Vec<OsString>, why: &str) -> Fail {
    let full = beside_me("postrelay", POSTRELAY_PATH);
    let e = Command::new(&full).arg("sendmail").args(args).exec();
    Fail(
        EX_TEMPFAIL,
        format!(
            "cannot run {} (needed {why}): {e}; nothing was sent",
            full.display()
        ),
    )
}
