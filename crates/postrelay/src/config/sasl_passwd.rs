//! Postfix's `sasl_passwd` format, so that a Postfix installation's
//! credentials can be reused as they are.
//!
//! ```text
//! # comment
//! [email-smtp.us-east-1.amazonaws.com]:587   AKIAEXAMPLE:secret:with:colons
//! ```
//!
//! One entry per line: a key (how the relay is named), white space, and the
//! value `user:password`, split at the first `:` so that the password may
//! contain colons. Blank lines and lines whose first non-blank character is
//! `#` are ignored. Keys are compared case-insensitively, as Postfix's
//! tables do. Postfix's continuation lines (starting with white space) are
//! refused rather than guessed at, and so is a key listed twice.
//!
//! Errors never contain a password: where a value is shown, the password
//! is written `<redacted>`.

use super::Secret;

/// A parsed `sasl_passwd` file.
#[derive(Debug)]
pub(super) struct SaslPasswd {
    entries: Vec<Entry>,
}

/// One line of the file.
#[derive(Debug)]
pub(super) struct Entry {
    /// The key, lower-cased.
    pub key: String,
    /// 1-based line number.
    pub line: usize,
    pub username: String,
    pub password: Secret,
}

/// A line that cannot be used: its 1-based number and why.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct LineError {
    pub line: usize,
    pub message: String,
}

pub(super) fn parse(text: &str) -> Result<SaslPasswd, LineError> {
    let mut entries: Vec<Entry> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let err = |message: String| LineError { line, message };
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        let content = l.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if content.len() != l.len() {
            return Err(err(
                "starts with white space, which in Postfix tables continues the previous line; postrelay does not join lines: write each entry on one line, starting with its key".to_owned(),
            ));
        }
        let (key, value) = match l.split_once(|c: char| c.is_ascii_whitespace()) {
            Some((k, v)) => (k, v.trim()),
            None => (l, ""),
        };
        if value.is_empty() {
            // The lone word may be a password (a file of the wrong kind):
            // never repeat it.
            return Err(err(
                "has a single word: an entry is \"[host]:port user:password\" (key, white space, then the credentials)".to_owned(),
            ));
        }
        let key = key.to_ascii_lowercase();
        let hint = format!("write \"{key} user:password\"");
        let Some((username, password)) = value.split_once(':') else {
            return Err(err(format!(
                "the value of \"{key}\" has no ':' between user and password; {hint}"
            )));
        };
        if username.is_empty() {
            return Err(err(format!(
                "\"{key} :<redacted>\" has no user name before the ':'; {hint}"
            )));
        }
        if password.is_empty() {
            return Err(err(format!(
                "\"{key} {username}:\" has an empty password; {hint}"
            )));
        }
        if password.contains('\0') || username.contains('\0') {
            return Err(err(format!(
                "\"{key} {username}:<redacted>\" contains a NUL character, which SMTP AUTH cannot carry"
            )));
        }
        if let Some(first) = entries.iter().find(|e| e.key == key) {
            return Err(err(format!(
                "\"{key}\" is listed again (first on line {}); keep one of the two",
                first.line
            )));
        }
        entries.push(Entry {
            key,
            line,
            username: username.to_owned(),
            password: Secret::new(password),
        });
    }
    Ok(SaslPasswd { entries })
}

impl SaslPasswd {
    /// The entry for a relay at `host` (lower-case name, or IP address) and
    /// `port`, trying the keys of [`lookup_keys`] in order.
    pub fn lookup(&self, host: &str, port: u16) -> Option<&Entry> {
        lookup_keys(host, port)
            .into_iter()
            .find_map(|key| self.entries.iter().find(|e| e.key == key))
    }
}

impl SaslPasswd {
    /// Some entry for `host` at any port (for telling a port mismatch).
    pub fn entry_for_host(&self, host: &str) -> Option<&Entry> {
        let host = host.to_ascii_lowercase();
        self.entries.iter().find(|e| {
            let k = e.key.as_str();
            let name = match k.strip_prefix('[') {
                Some(rest) => rest.split(']').next().unwrap_or(""),
                None => k.rsplit_once(':').map_or(k, |(h, _)| h),
            };
            name == host
        })
    }
}

/// The keys a relay is looked up by, most specific first: `[host]:port`,
/// `host:port`, `[host]`, `host` (for an IPv6 address only the bracketed
/// forms, plus Postfix's `[ipv6:…]` spelling, since `addr:port` would be
/// ambiguous).
pub(super) fn lookup_keys(host: &str, port: u16) -> Vec<String> {
    let host = host.to_ascii_lowercase();
    if host.contains(':') {
        vec![
            format!("[{host}]:{port}"),
            format!("[ipv6:{host}]:{port}"),
            format!("[{host}]"),
            format!("[ipv6:{host}]"),
            host,
        ]
    } else {
        vec![
            format!("[{host}]:{port}"),
            format!("{host}:{port}"),
            format!("[{host}]"),
            host,
        ]
    }
}

/// For `crate::fuzz_entry` only: parses `text` and checks what must hold.
/// An error names a line of the text; every entry has a user and a
/// password, a lower-case key without white space, and is found by
/// [`SaslPasswd::lookup`] when its key is a plain host name, and no two
/// entries share a key. Returns whether the text was accepted.
pub(crate) fn fuzz_check(text: &str) -> bool {
    let table = match parse(text) {
        Ok(table) => table,
        Err(e) => {
            let lines = text.split('\n').count();
            assert!((1..=lines).contains(&e.line), "line {} of {lines}", e.line);
            return false;
        }
    };
    for (i, entry) in table.entries.iter().enumerate() {
        assert!(!entry.username.is_empty() && !entry.password.expose().is_empty());
        assert_eq!(entry.key, entry.key.to_ascii_lowercase());
        assert!(!entry.key.contains(|c: char| c.is_ascii_whitespace()));
        assert!(table.entries[..i].iter().all(|e| e.key != entry.key));
        if !entry.key.contains([':', '[', ']']) {
            assert!(table.lookup(&entry.key, 25).is_some(), "{}", entry.key);
            assert!(table.entry_for_host(&entry.key).is_some(), "{}", entry.key);
        }
    }
    true
}
