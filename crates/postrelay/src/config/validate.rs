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
    let (file, loc): (FileConfig, _) = deserialize(text, origin, true)?;
    let owner = super::daemon::secret_owner(&file.daemon);
    super::secrets::with_owner(owner, || resolve::resolve(file, flavor, &loc))
}

/// The document as `T`, and its [`Locator`]; unknown keys are an error
/// when `check` (else `T` reads what it knows and ignores the rest).
pub(super) fn deserialize<'t, T: serde::de::DeserializeOwned>(
    text: &'t str,
    origin: &'t str,
    check: bool,
) -> Result<(T, Locator<'t>), ConfigError> {
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
    if check {
        check_keys(&loc, root.get_ref())?;
    }
    let value = <T as serde::Deserialize>::deserialize(toml::de::Deserializer::from(root))
        .map_err(|e| loc.serde_error(&e))?;
    Ok((value, loc))
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
                            // Arrays of tables (`[[relay]]`): their keys
                            // are `relay[0].host` and so on.
                            if let DeValue::Table(t) = item.get_ref() {
                                walk(&format!("{key}[{i}]"), t, out);
                            }
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

    /// The line of the `[[relay]]` header of relay `index`.
    pub fn item_line(&self, key: &str, index: usize) -> Option<usize> {
        self.entry(key, Some(index))
            .map(|e| line_col(self.text, e.key_span.start).0)
    }

    /// Where to point for `key` when it may be absent: its own line, else
    /// the header of the `[[table]]` item it belongs to (`relay[2].port`
    /// without a `port` line: the third `[[relay]]`).
    fn line_or_item(&self, key: &str) -> Option<usize> {
        self.line_of(key).or_else(|| {
            let (array, index, _) = split_item_key(key)?;
            self.item_line(array, index)
        })
    }

    /// How a relay is called in messages: `relay "ses"` when its name is
    /// written, else `relay #2` (counting from 1, in file order).
    pub fn item_label(&self, array: &str, index: usize) -> String {
        let name = self
            .source_of(&format!("{array}[{index}].name"), None)
            .and_then(|src| {
                let inner = src
                    .strip_prefix('"')?
                    .strip_suffix('"')
                    .or_else(|| src.strip_prefix('\'')?.strip_suffix('\''))?;
                Some(inner.to_owned()).filter(|n| !n.is_empty())
            });
        match name {
            Some(n) => format!("{array} \"{n}\""),
            None => format!("{array} #{}", index + 1),
        }
    }

    /// A dotted key as shown in messages: `relay "ses": port` for
    /// `relay[0].port`, the key itself otherwise.
    fn display_key(&self, key: &str) -> String {
        match split_item_key(key) {
            Some((array, index, rest)) => {
                format!("{}: {rest}", self.item_label(array, index))
            }
            None => key.to_owned(),
        }
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

    /// An error about `key` located in another file (`origin:line`), such
    /// as a line of `delivery.sasl_passwd`.
    pub fn invalid_in(
        &self,
        origin: &str,
        key: &str,
        line: Option<usize>,
        message: String,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            line,
            message,
        }
    }

    /// An error about the value of `key`: `key = <value as written>: why`,
    /// or `key (default): why` when the key is not in the file. Keys of a
    /// relay are shown as `relay "name": key`, and an absent one is located
    /// at its relay's `[[relay]]` header.
    pub fn value_error(&self, key: &str, why: &str) -> ConfigError {
        let shown = self.display_key(key);
        let message = match self.source_of(key, None) {
            Some(src) => format!("{shown} = {src}: {why}"),
            None => format!("{shown} (default): {why}"),
        };
        self.invalid(key, self.line_or_item(key), message)
    }

    /// An error about `key` of an item (`relay[0].name`) that is not
    /// written at all: `relay #1: why`, at the item's header.
    pub fn missing_error(&self, key: &str, why: &str) -> ConfigError {
        let shown = match split_item_key(key) {
            Some((array, index, _)) => self.item_label(array, index),
            None => key.to_owned(),
        };
        self.invalid(key, self.line_or_item(key), format!("{shown}: {why}"))
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
        let shown = match split_item_key(key) {
            Some((_, _, rest)) => rest.to_owned(),
            None => key.to_owned(),
        };
        match self.source_of(key, None) {
            Some(src) => format!("{shown} = {src}"),
            None => format!("{shown} (default {effective})"),
        }
    }

    /// The line of the first of `keys` written in the file; for keys of a
    /// `[[table]]` item, its header when none is written.
    pub fn first_line(&self, keys: &[&str]) -> Option<usize> {
        keys.iter()
            .find_map(|k| self.line_of(k))
            .or_else(|| keys.iter().find_map(|k| self.line_or_item(k)))
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

/// `relay[2].timeouts.connect` → `("relay", 2, "timeouts.connect")`.
fn split_item_key(key: &str) -> Option<(&str, usize, &str)> {
    let (array, rest) = key.split_once('[')?;
    let (index, rest) = rest.split_once("].")?;
    Some((array, index.parse().ok()?, rest))
}

/// serde's messages name Rust types; say what to write in TOML instead.
fn friendlier(message: &str) -> String {
    let replacements = [
        ("expected usize", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a port number from 1 to 65535"),
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

/// Refuses keys that no setting has, and tables written the wrong way
/// (`intake = 5`, `[relay]` for `[[relay]]`), reporting the first problem
/// in the file.
fn check_keys(loc: &Locator<'_>, root: &DeTable<'_>) -> Result<(), ConfigError> {
    let schema = Schema::get();
    let mut problems: Vec<(usize, String, String)> = Vec::new();
    check_table(&schema, "", "", root, &mut problems);
    match problems.into_iter().min_by_key(|(offset, ..)| *offset) {
        None => Ok(()),
        Some((offset, key, message)) => {
            let line = line_col(loc.text, offset).0;
            Err(loc.invalid(&key, Some(line), message))
        }
    }
}

/// Checks the keys of `table`, which is the schema table `name` ("" for the
/// top level) written at dotted path `path` (which has array indices).
fn check_table(
    schema: &Schema,
    name: &str,
    path: &str,
    table: &DeTable<'_>,
    problems: &mut Vec<(usize, String, String)>,
) {
    let allowed = schema.keys(name).unwrap_or_default();
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_owned()
        } else {
            format!("{a}.{b}")
        }
    };
    for (k, v) in table {
        let inner = k.get_ref().as_ref();
        let key = join(path, inner);
        if !allowed.contains(&inner) {
            problems.push((k.span().start, key, unknown(schema, name, inner)));
            continue;
        }
        let sub_name = join(name, inner);
        let Some(sub) = schema.table(&sub_name) else {
            continue;
        };
        match (v.get_ref(), sub.array) {
            (DeValue::Table(t), false) => check_table(schema, &sub_name, &key, t, problems),
            (DeValue::Array(items), true) => {
                for (i, item) in items.iter().enumerate() {
                    let item_key = format!("{key}[{i}]");
                    match item.get_ref() {
                        DeValue::Table(t) => {
                            check_table(schema, &sub_name, &item_key, t, problems);
                        }
                        _ => {
                            let msg = format!(
                                "each `{sub_name}` must be a table: write a line {} and its keys below it",
                                sub.header()
                            );
                            problems.push((item.span().start, item_key, msg));
                        }
                    }
                }
            }
            (DeValue::Table(_), true) => {
                let msg = format!(
                    "`{sub_name}` is a list, one table per {inner}: write the header with two brackets, {}, once before each",
                    sub.header()
                );
                problems.push((k.span().start, key, msg));
            }
            (_, array) => {
                let what = if array {
                    "an array of tables"
                } else {
                    "a table"
                };
                let msg = format!(
                    "`{sub_name}` must be {what}: write a line {} and its keys below it",
                    sub.header()
                );
                problems.push((k.span().start, key, msg));
            }
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
    let here = schema.table(table).map(|t| t.header()).unwrap_or_default();
    let hint = if let Some(h) = special_hint(table, name) {
        format!("; {h}")
    } else if !table.is_empty() && schema.top_values().any(|k| k == name) {
        format!(
            "; `{name}` is a top-level key: move it above the first [table] header (TOML puts every key after {here} into that table)"
        )
    } else if let Some(owner) = schema
        .tables
        .iter()
        .find(|t| t.name != table && t.keys.contains(&name))
    {
        let header = owner.header();
        if table.starts_with(&format!("{}.", owner.name)) {
            format!(
                "; `{name}` belongs in {header}: write it above the {here} header (TOML puts every key after {here} into that table)"
            )
        } else {
            format!("; `{name}` belongs in {header}")
        }
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
            .filter(|t| !t.name.contains('.'))
            .map(|t| t.header())
            .collect();
        format!(
            "unknown key `{full}`{hint}; allowed top-level keys: {}, and the tables {}",
            values.join(", "),
            tables.join(", ")
        )
    } else {
        format!(
            "unknown key `{full}`{hint}; allowed keys in {here}: {}",
            allowed.join(", ")
        )
    }
}

/// Hints for keys people bring from elsewhere: a password written in the
/// file, and Postfix parameter names.
fn special_hint(table: &str, name: &str) -> Option<&'static str> {
    Some(match (table, name) {
        ("relay", "password") => {
            "passwords are never written in this file: put the password alone in a file only postrelay's user can read (chmod 600) and set password_file to it"
        }
        (_, "relayhost") => {
            r#"Postfix's relayhost is a [[relay]] table here: [[relay]] with name = "…", host = "…" and port = 587"#
        }
        (_, "smtp_sasl_password_maps") => {
            "Postfix's smtp_sasl_password_maps is delivery.sasl_passwd here (the text file, not the .db)"
        }
        (_, "smtp_tls_security_level") => {
            "Postfix's smtp_tls_security_level is security in [[relay]]"
        }
        (_, "smtp_tls_wrappermode") => {
            r#"Postfix's smtp_tls_wrappermode = yes is tls = "implicit" in [[relay]]"#
        }
        _ => return None,
    })
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
