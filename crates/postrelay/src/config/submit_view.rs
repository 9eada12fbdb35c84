//! The few settings `sendmail` needs to submit a message (host name,
//! spool, message limits), read from the file without resolving or
//! checking anything else: `postrelay-sendmail` runs for every message a
//! cron job or a web application sends, and the whole configuration
//! (relays, routing tables, submission users …) is the daemon's business.
//!
//! These settings are resolved here (defaults and checks), for the whole
//! configuration too ([`super::parse`] calls the same functions), so the
//! values are those the full configuration would have. Keys not listed here are ignored, not checked: a caller
//! that must report errors in the rest loads the whole file.
//!
//! Not for: anything but submission (the queue commands, `-bs` and the
//! daemon load the whole configuration).

use std::path::PathBuf;

use serde::Deserialize;

use super::file::submit_keys;
use super::resolve::{at_least, check_domain, non_empty_path, parse_const_size};
use super::validate::{self, Flavor, Locator};
use super::{Config, ConfigError};

const FILE_SPOOL: &str = "/var/spool/postrelay";
const BUILTIN_SPOOL: &str = "./postrelay-spool";
const MESSAGE_SIZE_LIMIT: &str = "25 MiB";
const HEADER_SIZE_LIMIT: u64 = 102_400;
const LINE_LENGTH_LIMIT: u64 = 998;

/// What submitting a message needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitSettings {
    /// `hostname` (lower-cased; the system's when not set).
    pub hostname: String,
    /// `spool`: where the submit socket and maildrop/ are.
    pub spool: PathBuf,
    /// `intake.message_size_limit`.
    pub message_size_limit: u64,
    /// `intake.header_size_limit`.
    pub header_size_limit: u64,
    /// `intake.line_length_limit`.
    pub line_length_limit: u64,
}

/// The keys read, of the whole file's types ([`submit_keys`]); serde
/// skips every other one.
#[derive(Deserialize, Default)]
struct ViewFile {
    hostname: submit_keys::Hostname,
    spool: submit_keys::Spool,
    #[serde(default)]
    intake: ViewIntake,
}

#[derive(Deserialize, Default)]
struct ViewIntake {
    message_size_limit: submit_keys::MessageSizeLimit,
    header_size_limit: submit_keys::HeaderSizeLimit,
    line_length_limit: submit_keys::LineLengthLimit,
}

impl SubmitSettings {
    /// The settings of a whole configuration.
    pub fn of(config: &Config) -> SubmitSettings {
        SubmitSettings {
            hostname: config.hostname.clone(),
            spool: config.spool.clone(),
            message_size_limit: config.intake.message_size_limit,
            header_size_limit: config.intake.header_size_limit,
            line_length_limit: config.intake.line_length_limit,
        }
    }

    /// Reads them from the text of a configuration file (`origin` names
    /// it in errors). An error is one of these settings' (or the TOML
    /// syntax); errors elsewhere in the file are not seen.
    pub fn read(text: &str, origin: &str) -> Result<SubmitSettings, ConfigError> {
        // The parser's time goes by lines, not by settings: the packaged
        // file (31 KB, 740 lines, nearly all comments) took 140-200 µs
        // on the 2-CPU VM, its 11 lines of settings 4 µs. Read without the
        // lines TOML ignores first; on any error, read the file as
        // written, so that the error and its line are the file's.
        if let Some(settings) = without_ignored_lines(text)
            .and_then(|compact| view(&compact, origin, Flavor::File).ok())
        {
            return Ok(settings);
        }
        view(text, origin, Flavor::File)
    }

    /// The built-in defaults' (no configuration file).
    pub fn builtin() -> SubmitSettings {
        view("", "built-in defaults", Flavor::Builtin)
            .expect("the built-in defaults are valid (tested)")
    }
}

fn view(text: &str, origin: &str, flavor: Flavor) -> Result<SubmitSettings, ConfigError> {
    let (file, loc): (ViewFile, _) = validate::deserialize(text, origin, false)?;
    let hostname = hostname(file.hostname, flavor, &loc)?;
    let spool = spool(file.spool, flavor, &loc)?;
    let i = file.intake;
    let (message_size_limit, header_size_limit, line_length_limit) = message_limits(
        i.message_size_limit,
        i.header_size_limit,
        i.line_length_limit,
        &loc,
    )?;
    Ok(SubmitSettings {
        hostname,
        spool,
        message_size_limit,
        header_size_limit,
        line_length_limit,
    })
}

/// `text` without its blank lines and whole-line comments, which TOML
/// ignores, or `None` when it may hold a multi-line string (in which such
/// a line is part of the value). A comment holding a character TOML
/// refuses in comments (a control character other than tab) is kept, so
/// that the error is still found.
fn without_ignored_lines(text: &str) -> Option<String> {
    if text.contains("\"\"\"") || text.contains("'''") {
        return None;
    }
    let ignored = |line: &str| {
        let body = line.trim_start_matches([' ', '\t']);
        let body = body
            .strip_suffix('\n')
            .map_or(body, |b| b.strip_suffix('\r').unwrap_or(b));
        body.is_empty()
            || body.strip_prefix('#').is_some_and(|comment| {
                !comment
                    .chars()
                    .any(|c| (c.is_control() && c != '\t') || c == '\u{7f}')
            })
    };
    Some(
        text.split_inclusive('\n')
            .filter(|line| !ignored(line))
            .collect(),
    )
}

/// `spool`, or its default for `flavor`.
pub(super) fn spool(
    written: submit_keys::Spool,
    flavor: Flavor,
    loc: &Locator<'_>,
) -> Result<PathBuf, ConfigError> {
    match written {
        Some(s) => non_empty_path(loc, "spool", s),
        None if flavor == Flavor::Builtin => Ok(PathBuf::from(BUILTIN_SPOOL)),
        None => Ok(PathBuf::from(FILE_SPOOL)),
    }
}

/// `hostname` checked and lower-cased, or the system's host name.
pub(super) fn hostname(
    written: submit_keys::Hostname,
    flavor: Flavor,
    loc: &Locator<'_>,
) -> Result<String, ConfigError> {
    if let Some(name) = written {
        return check_domain(&name).map_err(|why| loc.value_error("hostname", &why));
    }
    let system = nix::unistd::gethostname()
        .ok()
        .and_then(|s| s.into_string().ok())
        .unwrap_or_default();
    match (check_domain(&system), flavor) {
        (Ok(name), _) => Ok(name),
        (Err(_), Flavor::Builtin) => Ok("localhost".to_owned()),
        (Err(why), Flavor::File) => Err(loc.invalid(
            "hostname",
            None,
            format!(
                r#"hostname is not set and the system host name {system:?} cannot be used ({why}); set e.g. hostname = "relay.example.com""#
            ),
        )),
    }
}

/// `intake.message_size_limit`, `header_size_limit` and
/// `line_length_limit`, defaults applied and checked.
pub(super) fn message_limits(
    message: submit_keys::MessageSizeLimit,
    header: submit_keys::HeaderSizeLimit,
    line: submit_keys::LineLengthLimit,
    loc: &Locator<'_>,
) -> Result<(u64, u64, u64), ConfigError> {
    let message_size_limit = message_size_limit(message, loc)?;
    let header_size_limit = header.map_or(HEADER_SIZE_LIMIT, |s| s.0);
    if header_size_limit == 0 {
        let why = r#"0 would refuse every message; write e.g. "100 KiB""#;
        return Err(loc.value_error("intake.header_size_limit", why));
    }
    let line_length_limit = line.unwrap_or(LINE_LENGTH_LIMIT);
    let why = "must be at least 998: RFC 5322 §2.1.1 lets senders write lines of 998 octets, and a smaller limit refuses valid mail";
    at_least(loc, "intake.line_length_limit", line_length_limit, 998, why)?;
    Ok((message_size_limit, header_size_limit, line_length_limit))
}

/// `intake.message_size_limit`: never 0 (there is no "unlimited").
fn message_size_limit(
    written: submit_keys::MessageSizeLimit,
    loc: &Locator<'_>,
) -> Result<u64, ConfigError> {
    let limit = written.map_or_else(|| parse_const_size(MESSAGE_SIZE_LIMIT), |s| s.0);
    if limit == 0 {
        return Err(loc.value_error(
            "intake.message_size_limit",
            r#"0 would refuse every message (there is no "unlimited"); write the largest size to accept, e.g. "25 MiB""#,
        ));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests;
