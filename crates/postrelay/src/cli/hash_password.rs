//! `postrelay hash-password`: reads a password and prints its argon2id PHC
//! string, for a line `name:HASH` of the `[intake.submission]` users file.
//!
//! On a terminal the password is asked twice, without echo; otherwise the
//! first line of standard input is the password (so that scripts can pipe
//! it in). The password is never printed, and never taken from the command
//! line, where other users could read it in the process list.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;

use nix::sys::termios::{self, LocalFlags, SetArg};

use crate::intake::auth;

/// Longest password: SMTP AUTH PLAIN carries at most 255 octets (RFC 4616),
/// so a longer one could never be used.
const MAX_PASSWORD: usize = 255;

/// Runs the subcommand.
pub fn run() -> ExitCode {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        from_terminal()
    } else {
        from_pipe()
    };
    let password = match password.and_then(check) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("postrelay hash-password: {e}");
            return ExitCode::FAILURE;
        }
    };
    match auth::hash_password(password.as_bytes()) {
        Ok(hash) => {
            println!("{hash}");
            if std::io::stderr().is_terminal() {
                eprintln!(
                    "postrelay: add a line NAME:<the hash above> to the users file of [intake.submission]"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("postrelay hash-password: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What a password must be to be usable over SMTP AUTH.
pub(crate) fn check(password: String) -> Result<String, String> {
    if password.is_empty() {
        return Err("the password is empty".to_owned());
    }
    if password.len() > MAX_PASSWORD {
        return Err(format!(
            "the password is longer than {MAX_PASSWORD} bytes, more than SMTP AUTH can carry"
        ));
    }
    if password.chars().any(|c| c == '\0') {
        return Err(
            "the password contains a NUL character, which SMTP AUTH cannot carry".to_owned(),
        );
    }
    Ok(password)
}

/// The first line of standard input, without its line end. Anything after
/// it is refused, so that a file with several lines is not half-used.
pub(crate) fn from_pipe() -> Result<String, String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(64 * 1024)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "the password is not UTF-8".to_owned())?;
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    if !rest.is_empty() {
        return Err("standard input holds more than one line; give the password alone".to_owned());
    }
    Ok(first.strip_suffix('\r').unwrap_or(first).to_owned())
}

/// Asks twice on the terminal with echo off.
fn from_terminal() -> Result<String, String> {
    let first = prompt("Password: ")?;
    let second = prompt("Again: ")?;
    if first != second {
        return Err("the two passwords differ".to_owned());
    }
    Ok(first)
}

/// Restores the terminal's settings when dropped, even on an error path.
struct EchoOff(termios::Termios);

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.0);
    }
}

pub(crate) fn prompt(text: &str) -> Result<String, String> {
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(&stdin).map_err(|e| format!("cannot use the terminal: {e}"))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    let guard = EchoOff(saved);
    termios::tcsetattr(&stdin, SetArg::TCSAFLUSH, &quiet)
        .map_err(|e| format!("cannot turn off echo: {e}"))?;
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    drop(guard);
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}
