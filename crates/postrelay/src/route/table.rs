//! Postfix's text table format, shared by every map of this module.
//!
//! ```text
//! # comment
//! key    value
//! key2   a long value that
//!        continues on the next line
//! ```
//!
//! As in Postfix (`postmap(1)`, `aliases(5)`): blank lines and lines whose
//! first non-blank character is `#` are ignored; a line that starts with
//! white space continues the entry above it (the pieces are joined with one
//! space). There are no trailing comments: a `#` after the key is part of
//! the value. Keys are compared case-insensitively, as Postfix's tables
//! fold case.

use std::borrow::Cow;

use crate::domain::DomainError;

/// A line of a table that cannot be used: its 1-based number and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

impl LineError {
    pub(super) fn new(line: usize, message: impl Into<String>) -> LineError {
        LineError {
            line,
            message: message.into(),
        }
    }
}

/// One entry with its continuation lines joined; `line` is where it starts.
#[derive(Debug)]
pub(crate) struct Logical {
    pub line: usize,
    pub text: String,
}

/// Splits `text` into logical lines, without comments and blank lines.
pub(crate) fn logical_lines(text: &str) -> Result<Vec<Logical>, LineError> {
    let mut out: Vec<Logical> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        let content = l.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if content.contains('\u{FFFD}') {
            return Err(LineError::new(
                line,
                "is not UTF-8 text; write it in UTF-8 (or ASCII)",
            ));
        }
        if let Some(c) = content.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(LineError::new(
                line,
                format!("contains the control character {c:?}; remove it"),
            ));
        }
        if l.starts_with([' ', '\t']) {
            let Some(last) = out.last_mut() else {
                return Err(LineError::new(
                    line,
                    "starts with white space, which continues the entry above it, but there is none; remove the indentation",
                ));
            };
            last.text.push(' ');
            last.text.push_str(content);
        } else {
            out.push(Logical {
                line,
                text: content.to_owned(),
            });
        }
    }
    Ok(out)
}

/// `key value` at the first white space; the value is trimmed and may be
/// empty.
pub(super) fn key_value(text: &str) -> (&str, &str) {
    match text.split_once([' ', '\t']) {
        Some((k, v)) => (k, v.trim()),
        None => (text, ""),
    }
}

/// A key or query folded for comparison.
pub(super) fn fold(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.to_lowercase()
    }
}

/// [`fold`], borrowing `s` when it is folded already (the common case:
/// domains arrive in lower case), so that nothing is allocated for it.
pub(super) fn folded(s: &str) -> Cow<'_, str> {
    if s.is_ascii() && !s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(fold(s))
    }
}

/// Splits an address at its last `@` into local part and lower-cased
/// domain; `None` for a bare name.
pub(super) fn split_address(address: &str) -> Option<(&str, Cow<'_, str>)> {
    address
        .rsplit_once('@')
        .map(|(local, domain)| (local, folded(domain)))
}

/// Checks a domain name (ASCII letters, digits, inner hyphens, dots) and
/// returns it lower-cased. The error completes "… is not a domain name: ".
pub(super) fn check_domain(name: &str) -> Result<String, String> {
    crate::domain::check(name).map_err(|e| match e {
        DomainError::Empty => "it is empty".into(),
        DomainError::NotLdh { .. } => {
            "only letters, digits, dots and inner hyphens are allowed".into()
        }
        other => other.to_string(),
    })
}

/// Checks an address (`user@domain`, no angle brackets) and returns it with
/// its domain lower-cased. The error completes "… is not an address: ".
pub(super) fn check_address(text: &str) -> Result<String, String> {
    if text.starts_with('<') || text.ends_with('>') {
        return Err("write it without angle brackets".into());
    }
    let m = postrelay_smtp::Mailbox::parse(text).map_err(|e| e.to_string())?;
    if m.is_address_literal() {
        return Err("use a domain name, not an address literal".into());
    }
    let domain = check_domain(m.domain())?;
    postrelay_smtp::Mailbox::from_parts(m.local_part(), &domain)
        .map(|m| m.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a local name (`root`, `www-data`) and returns it lower-cased.
pub fn check_local_name(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.contains(['"', '\\', '@']) || text.chars().any(char::is_whitespace) {
        return Err("a local name is a plain user name without quotes, spaces or @".into());
    }
    postrelay_smtp::Mailbox::parse(&format!("{text}@localhost")).map_err(|e| e.to_string())?;
    Ok(fold(text))
}

/// Joins names for messages: `"a", "b"`.
pub(super) fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that `name` is a configured relay, for `relay:NAME` values.
pub(super) fn known_relay(value: &str, name: &str, relays: &[String]) -> Result<String, String> {
    if relays.iter().any(|r| r == name) {
        return Ok(name.to_owned());
    }
    if relays.is_empty() {
        return Err(format!(
            "\"{value}\": no [[relay]] is configured; add a [[relay]] table with name = \"{name}\""
        ));
    }
    Err(format!(
        "\"{value}\": there is no [[relay]] named \"{name}\"; the relays are {}",
        quoted_list(relays)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_lines_join_continuations_and_skip_comments() {
        let text =
            "# c\n\nk1 v1\n  more\n\t  # not a comment? it is: first non-blank is #\nk2 v2\r\n";
        let lines = logical_lines(text).unwrap();
        let got: Vec<_> = lines.iter().map(|l| (l.line, l.text.as_str())).collect();
        assert_eq!(got, [(3, "k1 v1 more"), (6, "k2 v2")]);
    }

    #[test]
    fn logical_line_errors() {
        let cases = [
            ("  indented first\n", 1, "continues the entry above"),
            ("k v\nk2 \u{FFFD}\n", 2, "not UTF-8"),
            ("k v\u{0}x\n", 1, "control character"),
        ];
        for (text, line, words) in cases {
            let e = logical_lines(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}");
            assert!(e.message.contains(words), "{text:?}: {}", e.message);
        }
    }
}
