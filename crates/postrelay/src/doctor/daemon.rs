//! Is the daemon running, which version, and does its control socket
//! answer? One `status` request over the control socket (the one
//! `postrelay queue …` uses), answered within 5 seconds.
//!
//! Not for: starting or stopping the daemon.

use super::{Finding, Verdict};
use crate::config::Config;
use crate::control::{self, Request};

/// The daemon's state, from its control socket.
pub(super) fn check(config: &Config) -> Finding {
    let path = &config.control_socket;
    let subject = format!("control socket {}", path.display());
    let start = "start it: systemctl start postrelay (or postrelay run in the foreground)";
    match control::request(path, &Request::Status) {
        Ok(None) => Finding::bad(
            "daemon",
            Verdict::Problem,
            subject,
            "no daemon answers: mail handed to sendmail waits in maildrop/, nothing is delivered",
            start,
        ),
        Ok(Some(r)) if r.ok => running(subject, &r.message),
        Ok(Some(r)) if r.message.starts_with("permission denied") => Finding::bad(
            "daemon",
            Verdict::Warning,
            subject,
            format!("a daemon runs, but refused to say more: {}", r.message),
            "run postrelay doctor as root or as postrelay's user",
        ),
        Ok(Some(r)) => Finding::bad(
            "daemon",
            Verdict::Warning,
            subject,
            format!(
                "a daemon runs but does not know the status request ({}): it is older than this \
                 postrelay {}",
                r.message,
                env!("CARGO_PKG_VERSION")
            ),
            "restart it to run the installed version: systemctl restart postrelay",
        ),
        Err(e) => Finding::bad(
            "daemon",
            Verdict::Problem,
            subject,
            format!("cannot ask the daemon: {e}"),
            format!(
                "if no postrelay runs, {start}; if one runs, check that this user may use the socket"
            ),
        ),
    }
}

/// A daemon answered `postrelay VERSION pid PID`: is it this version?
fn running(subject: String, message: &str) -> Finding {
    let mut words = message.split_whitespace();
    let version = words.nth(1).unwrap_or("unknown");
    let mine = env!("CARGO_PKG_VERSION");
    if version == mine {
        return Finding::ok("daemon", subject, format!("answers: {message}"));
    }
    Finding::bad(
        "daemon",
        Verdict::Warning,
        subject,
        format!("answers: {message}, but this command is postrelay {mine}"),
        "restart the daemon to run the installed version: systemctl restart postrelay",
    )
}
