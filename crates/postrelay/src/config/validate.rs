//! From text to [`Config`]: TOML syntax, unknown keys, value syntax, then
//! the semantic checks in `resolve.rs`, every error located in the file.
//!
//! The document is parsed once into toml's spanned tree. A [`Locator`] built
//! from that tree maps dotted keys to lines (for semantic errors) and byte
//! offsets back to keys (for serde errors, which only carry a span).

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::file::{FileConfig, Schema};
use super::{Config, ConfigError, resolve};

/// Which defaults apply to settings absent from the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flavor {
    /// A configuration file: production defaults (port 25, /var/spool).
    File,
    /// No file at all: unprivileged defaults for a first run.
    Builtin,
}

pub(super) fn parse(text: &str, origin: &str, flavor: Flavor) -> Result<Config, ConfigError> {
    let root = DeTable::parse(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let (line, column) = line_col(text, offset);
        ConfigError::Parse {
            origin: origin.to_owned(),
            line,
            column,
            message: e.message().trim_end().to_owned(),
        }
    })?;
    let loc = Locator::build(text, origin, root.get_ref());
    check_keys(&loc, root.get_ref())?;
    let file: FileConfig = serde::Deserialize::deserialize(toml::de::Deserializer::from(root))
        .map_err(|e| loc.serde_error(&e))?;
    resolve::resolve(file, flavor, &loc)
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// One key (or one element of an array value) found in the document.
struct Entry {
    /// Dotted key, e.g. `intake.listen`.
    key: String,
    /// Position within the array value, for array elements.
    index: Option<usize>,
    /// Where the key (for elements: the element) is written.
    key_span: Range<usize>,
    /// Where the value is written.
    value_span: Range<usize>,
}

/// Where things are in the text: builds error values that carry lines.
pub(super) struct Locator<'t> {
    text: &'t str,
    origin: &'t str,
    entries: Vec<Entry>,
}

impl<'t> Locator<'t> {
    fn build(text: &'t str, origin: &'t str, root: &DeTable<'_>) -> Self {
        fn walk(prefix: &str, table: &DeTable<'_>, out: &mut Vec<Entry>) {
            for (k, v) in table {
                let key = if prefix.is_empty() {
                    k.get_ref().to_string()
                } else {
                    format!("{prefix}.{}", k.get_ref())
                };
                match v.get_ref() {
                    DeValue::Table(t) => walk(&key, t, out),
                    DeValue::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            out.push(Entry {
                                key: key.clone(),
                                index: Some(i),
                                key_span: item.span(),
                                value_span: item.span(),
                            });
                        }
                    }
                    _ => {}
                }
                out.push(Entry {
                    key,
                    index: None,
                    key_span: k.span(),
                    value_span: v.span(),
                });
            }
        }
        let mut entries = Vec::new();
        walk("", root, &mut entries);
        Locator {
            text,
            origin,
            entries,
        }
    }

    fn entry(&self, key: &str, index: Option<usize>) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.key == key && e.index == index)
    }

    /// The line `key` is written on.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.entry(key, None)
            .map(|e| line_col(self.text, e.key_span.start).0)
    }

    /// The value of `key` as written, on one line and shortened if long.
    pub fn source_of(&self, key: &str, index: Option<usize>) -> Option<String> {
        let span = self.entry(key, index)?.value_span.clone();
        let raw = self.text.get(span)?;
        let one_line = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        Some(if one_line.chars().count() > 60 {
            format!("{}…", one_line.chars().take(59).collect::<String>())
        } else {
            one_line
        })
    }

    /// An error about `key` with a complete message.
    pub fn invalid(&self, key: &str, line: Option<usize>, message: String) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            key: key.to_owned(),
            line,
            message,
        }
    }

    /// An error about the value of `key`: `key = <value as written>: why`,
    /// or `key: why` when the key is not in the file (a default).
    pub fn value_error(&self, key: &str, why: &str) -> ConfigError {
        let message = match self.source_of(key, None) {
            Some(src) => format!("{key} = {src}: {why}"),
            None => format!("{key} (default): {why}"),
        };
        self.invalid(key, self.line_of(key), message)
    }

    /// An error about one element of the array value of `key`.
    pub fn element_error(&self, key: &str, index: usize, why: &str) -> ConfigError {
        match self.entry(key, Some(index)) {
            Some(e) => {
                let src = self.source_of(key, Some(index)).unwrap_or_default();
                let line = line_col(self.text, e.key_span.start).0;
                self.invalid(key, Some(line), format!("{key} entry {src}: {why}"))
            }
            None => self.value_error(key, why),
        }
    }

    /// `key = <value>` when written in the file, `key (default <value>)`
    /// otherwise: for messages that involve two settings.
    pub fn describe(&self, key: &str, effective: &str) -> String {
        match self.source_of(key, None) {
            Some(src) => format!("{key} = {src}"),
            None => format!("{key} (default {effective})"),
        }
    }

    /// The line of the first of `keys` written in the file.
    pub fn first_line(&self, keys: &[&str]) -> Option<usize> {
        keys.iter().find_map(|k| self.line_of(k))
    }

    /// Turns a serde error (a message and a span) into an error on the key
    /// whose value the span falls in.
    fn serde_error(&self, e: &toml::de::Error) -> ConfigError {
        let why = friendlier(e.message());
        let Some(span) = e.span() else {
            return self.invalid("", None, why);
        };
        let innermost = self
            .entries
            .iter()
            .filter(|x| x.value_span.start <= span.start && span.end <= x.value_span.end)
            .min_by_key(|x| x.value_span.len());
        match innermost {
            Some(Entry {
                key,
                index: Some(i),
                ..
            }) => self.element_error(key, *i, &why),
            Some(Entry {
                key, index: None, ..
            }) => self.value_error(key, &why),
            None => {
                let line = line_col(self.text, span.start).0;
                self.invalid("", Some(line), why)
            }
        }
    }
}

/// serde's messages name Rust types; say what to write in TOML instead.
fn friendlier(message: &str) -> String {
    let replacements = [
        ("expected usize", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        (
            "expected a sequence",
            r#"expected an array such as ["…", "…"]"#,
        ),
        ("expected a boolean", "expected true or false"),
    ];
    let mut out = message.trim_end().to_owned();
    for (from, to) in replacements {
        out = out.replace(from, to);
    }
    out
}

/// Refuses keys that no setting has, reporting the first one in the file.
fn check_keys(loc: &Locator<'_>, root: &DeTable<'_>) -> Result<(), ConfigError> {
    let schema = Schema::get();
    let mut problems: Vec<(usize, String, String)> = Vec::new();
    for (k, v) in root {
        let name = k.get_ref().as_ref();
        if !schema.top.contains(&name) {
            problems.push((k.span().start, name.to_owned(), unknown(&schema, "", name)));
            continue;
        }
        let Some(allowed) = schema.keys(name) else {
            continue;
        };
        match v.get_ref() {
            DeValue::Table(t) => {
                for (k2, _) in t {
                    let inner = k2.get_ref().as_ref();
                    if !allowed.contains(&inner) {
                        let key = format!("{name}.{inner}");
                        let msg = unknown(&schema, name, inner);
                        problems.push((k2.span().start, key, msg));
                    }
                }
            }
            _ => {
                let msg = format!(
                    "`{name}` must be a table: write a line [{name}] and its keys below it"
                );
                problems.push((k.span().start, name.to_owned(), msg));
            }
        }
    }
    match problems.into_iter().min_by_key(|(offset, ..)| *offset) {
        None => Ok(()),
        Some((offset, key, message)) => {
            let line = line_col(loc.text, offset).0;
            Err(loc.invalid(&key, Some(line), message))
        }
    }
}

/// The message for an unknown key `name` in `table` ("" = top level).
fn unknown(schema: &Schema, table: &str, name: &str) -> String {
    let full = if table.is_empty() {
        name.to_owned()
    } else {
        format!("{table}.{name}")
    };
    let allowed = schema.keys(table).unwrap_or_default();
    let hint = if !table.is_empty() && schema.top_values().any(|k| k == name) {
        format!(
            "; `{name}` is a top-level key: move it above the first [table] header (TOML puts every key after [{table}] into that table)"
        )
    } else if let Some((owner, _)) = schema
        .tables
        .iter()
        .find(|(t, keys)| *t != table && keys.contains(&name))
    {
        format!("; `{name}` belongs in [{owner}]")
    } else {
        let close = allowed
            .iter()
            .filter(|k| edit_distance(k, name) <= 2)
            .min_by_key(|k| edit_distance(k, name));
        close.map_or(String::new(), |k| format!(" (did you mean `{k}`?)"))
    };
    if table.is_empty() {
        let values: Vec<_> = schema.top_values().collect();
        let tables: Vec<_> = schema
            .tables
            .iter()
            .map(|(t, _)| format!("[{t}]"))
            .collect();
        format!(
            "unknown key `{full}`{hint}; allowed top-level keys: {}, and the tables {}",
            values.join(", "),
            tables.join(", ")
        )
    } else {
        format!(
            "unknown key `{full}`{hint}; allowed keys in [{table}]: {}",
            allowed.join(", ")
        )
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}
