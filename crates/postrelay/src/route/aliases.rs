//! The aliases file (`[routing] aliases`), in the `/etc/aliases` format of
//! `aliases(5)`, read as text (no `newaliases`).
//!
//! ```text
//! # comment
//! postmaster:  root
//! root:        alice, admin@example.com
//! alice:       \alice, alice@example.org
//! team:        alice,
//!              bob
//! ```
//!
//! `name: target, target, …`; names are local parts and are compared
//! case-insensitively; targets are local names (which may be aliases
//! themselves), `\name` (that local mailbox, without further alias
//! expansion), and addresses. A value in double quotes may contain commas.
//! Programs (`|command`), files (`/path`) and `:include:` lists are refused
//! when the file is loaded: postrelay does not run programs or write files
//! for aliases.
//!
//! Expansion (chains, loops, duplicates, depth) is done by the
//! [`Router`](super::Router), which knows which domains are local.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::table::{self, LineError, check_address, check_local_name, fold};

/// One target of an alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AliasTarget {
    /// A local name (lower-cased): a local user, or another alias.
    Name(String),
    /// `\name`: the local mailbox `name` (lower-cased), not expanded again.
    Mailbox(String),
    /// An address, with its domain lower-cased; if its domain is local it
    /// is expanded again.
    Address(String),
}

/// One alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    /// 1-based line number, for log lines and messages.
    pub line: usize,
    pub targets: Vec<AliasTarget>,
}

/// A parsed aliases file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aliases {
    path: PathBuf,
    entries: BTreeMap<String, Alias>,
}

const UNSUPPORTED: &str = "not supported: postrelay does not run programs or write files for aliases; point the alias at a local user or an address, or give postrelay an aliases file of its own";

impl Aliases {
    /// Parses the text of the file read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Aliases, LineError> {
        let mut entries: BTreeMap<String, Alias> = BTreeMap::new();
        for l in table::logical_lines(text)? {
            let err = |m: String| LineError::new(l.line, m);
            let Some((written, value)) = split_name(&l.text) else {
                return Err(err(format!(
                    "{:?} has no ':' after the alias name; write \"name: target, target\"",
                    shorten(&l.text)
                )));
            };
            let name = alias_name(written).map_err(err)?;
            let mut targets = Vec::new();
            for item in
                split_targets(value).map_err(|why| err(format!("alias \"{name}\": {why}")))?
            {
                let t = target(&item)
                    .map_err(|why| err(format!("alias \"{name}\": target {item:?} {why}")))?;
                if !targets.contains(&t) {
                    targets.push(t);
                }
            }
            if targets.is_empty() {
                return Err(err(format!(
                    "alias \"{name}\" has no target; write e.g. \"{name}: root\", or remove the line"
                )));
            }
            if let Some(first) = entries.get(&name) {
                return Err(err(format!(
                    "alias \"{name}\" is defined again (first on line {}); merge the two into one line",
                    first.line
                )));
            }
            entries.insert(
                name,
                Alias {
                    line: l.line,
                    targets,
                },
            );
        }
        Ok(Aliases {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The file the aliases were read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The alias called `name` (any case).
    pub fn get(&self, name: &str) -> Option<&Alias> {
        self.entries.get(&fold(name))
    }

    /// Every alias, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Alias)> {
        self.entries.iter().map(|(n, a)| (n.as_str(), a))
    }

    /// Number of aliases.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no aliases.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `name: value` at the first ':' outside double quotes.
fn split_name(text: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ':' if !quoted => return Some((text[..i].trim(), text[i + 1..].trim())),
            _ => {}
        }
    }
    None
}

fn alias_name(written: &str) -> Result<String, String> {
    let unquoted = written
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(written);
    if unquoted.is_empty() {
        return Err("a line starts with ':' but no alias name; write \"name: target\"".into());
    }
    if let Some((local, _)) = unquoted.split_once('@') {
        return Err(format!(
            "alias name {written:?}: names are local parts and apply to every local domain; write \"{local}:\""
        ));
    }
    check_local_name(unquoted).map_err(|why| format!("alias name {written:?}: {why}"))
}

/// The comma-separated targets; commas inside double quotes do not count.
fn split_targets(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            current.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => {
                current.push(c);
                escaped = true;
            }
            '"' => {
                current.push(c);
                quoted = !quoted;
            }
            ',' if !quoted => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if quoted {
        return Err("a '\"' without its closing '\"'".into());
    }
    out.push(current);
    let items: Vec<String> = out.iter().map(|s| s.trim().to_owned()).collect();
    let n = items.len();
    let mut kept = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        if item.is_empty() {
            // A trailing comma (left before a removed continuation line)
            // is harmless; an empty item in the middle is a typo.
            if i + 1 == n {
                continue;
            }
            return Err("an empty target between commas; remove the extra ','".into());
        }
        kept.push(item);
    }
    Ok(kept)
}

fn target(item: &str) -> Result<AliasTarget, String> {
    // A whole target in quotes ("|/usr/bin/x arg", "dave") is unquoted
    // first, so that programs and files are recognised however they are
    // written; a quoted local part ("x y"@example.com) is not whole.
    let t = item
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(item);
    if t.starts_with('|') {
        return Err(format!("runs a program: {UNSUPPORTED}"));
    }
    if t.starts_with('/') {
        return Err(format!("appends to a file: {UNSUPPORTED}"));
    }
    if t.to_ascii_lowercase().starts_with(":include:") {
        return Err(format!("reads a list from a file: {UNSUPPORTED}"));
    }
    if let Some(name) = t.strip_prefix('\\') {
        return check_local_name(name)
            .map(AliasTarget::Mailbox)
            .map_err(|why| format!("is not a local mailbox: {why}"));
    }
    if t.contains('@') {
        return check_address(t)
            .map(AliasTarget::Address)
            .map_err(|why| format!("is not an address: {why}"));
    }
    check_local_name(t)
        .map(AliasTarget::Name)
        .map_err(|why| format!("is not a local name: {why}"))
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(59).collect::<String>())
    } else {
        s.to_owned()
    }
}
