//! Defaults and checks of `[routing]`, including reading its tables: the
//! tables are read and parsed when the configuration is loaded, so that a
//! reload (SIGHUP) picks up an edited table, and a broken one fails the
//! load (on reload: the running configuration stays) with the table's
//! file and line.
//!
//! The tables hold no secrets, so they need no particular owner or mode;
//! they must be readable regular files.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::OFlag;

use super::delivery::address;
use super::file::RoutingFile;
use super::resolve::non_empty_path;
use super::validate::Locator;
use super::{ConfigError, RelayConfig, RoutingSettings};
use crate::route::{Aliases, GenericMap, LineError, SenderRelayMap, TransportMap};

/// Largest table read: bounds the memory of a load; a real table is far
/// smaller.
const MAX_TABLE_FILE: u64 = 64 << 20;

pub(super) fn routing(
    file: RoutingFile,
    relays: &[RelayConfig],
    loc: &Locator<'_>,
) -> Result<RoutingSettings, ConfigError> {
    let names: Vec<String> = relays.iter().map(|r| r.name.clone()).collect();
    let transport = table(loc, "routing.transport", file.transport, |text, path| {
        TransportMap::parse(text, path, &names)
    })?;
    let aliases = table(loc, "routing.aliases", file.aliases, Aliases::parse)?;
    let sender_relay = table(
        loc,
        "routing.sender_relay",
        file.sender_relay,
        |text, path| SenderRelayMap::parse(text, path, &names),
    )?;
    let generic = table(loc, "routing.generic", file.generic, GenericMap::parse)?;
    let key = "routing.rewrite_senders";
    let rewrite_senders = match file.rewrite_senders {
        None => None,
        Some(s) if s.is_empty() => {
            return Err(loc.value_error(
                key,
                "cannot be empty; remove the setting to keep local senders as they are",
            ));
        }
        Some(s) => Some(address(&s).map_err(|why| {
            let why = format!(
                "{why}; write the address the relay accepts as sender, e.g. \"alerts@example.com\""
            );
            loc.value_error(key, &why)
        })?),
    };
    Ok(RoutingSettings {
        transport,
        aliases,
        sender_relay,
        generic,
        rewrite_senders,
    })
}

/// Reads and parses the table named by `key`, if it is set.
fn table<T>(
    loc: &Locator<'_>,
    key: &str,
    written: Option<String>,
    parse: impl FnOnce(&str, &Path) -> Result<T, LineError>,
) -> Result<Option<T>, ConfigError> {
    let Some(written) = written else {
        return Ok(None);
    };
    let path = non_empty_path(loc, key, written)?;
    let text = read_table(&path).map_err(|why| {
        loc.invalid(
            key,
            loc.line_of(key),
            format!("{key} {} {why}", path.display()),
        )
    })?;
    parse(&text, &path).map(Some).map_err(|e| {
        let origin = path.display().to_string();
        loc.invalid_in(&origin, key, Some(e.line), format!("{key}: {}", e.message))
    })
}

/// Reads a table file. The error completes a sentence that starts with the
/// file's name. Bytes that are not UTF-8 become U+FFFD, which the table
/// parser refuses on lines that are not comments (old files sometimes have
/// Latin-1 comments).
pub(super) fn read_table(path: &Path) -> Result<String, String> {
    let file = OpenOptions::new()
        .read(true)
        // Not blocking on a FIFO (refused below), no controlling terminal.
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                "does not exist; create it, or remove the setting".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => format!(
                "cannot be read by postrelay (uid {}): permission denied; make it readable by that user (e.g. chmod 644 {}), and check that its directories let that user in",
                nix::unistd::geteuid(),
                shell_quote(path)
            ),
            _ => format!("cannot be opened: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be examined: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file; name the table's text file".to_owned());
    }
    let mut bytes = Vec::new();
    file.take(MAX_TABLE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_TABLE_FILE {
        return Err(format!(
            "is larger than {} MiB; is it the right file?",
            MAX_TABLE_FILE >> 20
        ));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    let plain = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@".contains(&b));
    if plain {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl super::Config {
    /// The router of this configuration: its tables, local domains, host
    /// name and relay names. Built once per load and shared (the queue
    /// expands aliases with it, the delivery engine routes with it).
    pub fn router(&self) -> crate::route::Router {
        let relay_names: Vec<String> = self.relays.iter().map(|r| r.name.clone()).collect();
        crate::route::Router::new(
            &self.routing,
            &self.intake.local_domains,
            &self.hostname,
            &relay_names,
        )
        .with_recipient_delimiter(&self.local.recipient_delimiter)
    }
}
