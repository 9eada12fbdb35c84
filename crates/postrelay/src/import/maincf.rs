//! Postfix's `main.cf` syntax (postconf(5)): `name = value` lines, lines
//! that start with white space continuing the one above, comment lines,
//! `$name` expansion, and `type:name` table references.
//!
//! **Not for:** what the parameters mean (that is `import::postfix`).

use std::collections::HashMap;

/// How deep `$name` references may nest before expansion gives up (a
/// parameter that refers to itself, directly or not).
const MAX_DEPTH: usize = 20;

/// How many references one value may expand to, in all: bounds the work
/// of values that refer to others several times at each level.
const MAX_LOOKUPS: usize = 10_000;

/// One `name = value` of the file, continuation lines joined with a space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    /// The value as written (not expanded), trimmed.
    pub value: String,
    /// The 1-based line where it starts.
    pub line: usize,
}

/// A parsed `main.cf`: the last definition of each parameter wins, as in
/// Postfix.
#[derive(Debug, Default)]
pub struct MainCf {
    params: Vec<Param>,
}

pub use crate::route::LineError;

/// Parses the text of a `main.cf`: logical lines as in Postfix's text
/// tables (continuations joined with a space, comments and blank lines
/// skipped), each `name = value`.
pub fn parse(text: &str) -> Result<MainCf, LineError> {
    let mut params: Vec<Param> = Vec::new();
    for l in crate::route::logical_lines(text)? {
        let err = |message: String| LineError {
            line: l.line,
            message,
        };
        let Some((name, value)) = l.text.split_once('=') else {
            return Err(err(format!("\"{}\" is not \"name = value\"", l.text)));
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(err(format!("\"{name}\" is not a parameter name")));
        }
        params.retain(|p| p.name != name);
        params.push(Param {
            name: name.to_owned(),
            value: value.trim().to_owned(),
            line: l.line,
        });
    }
    Ok(MainCf { params })
}

impl MainCf {
    /// The parameters set, in the order of the file.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// A parameter, if the file sets it.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// `value` with every `$name`, `${name}` and `$(name)` replaced by that
    /// parameter's expanded value (from the file, else `defaults`, else
    /// empty, recorded in [`Expanded::unknown`]). Also Postfix's
    /// `${name?text}` (text when name is not empty) and `${name:text}`
    /// (text when it is), and `$$` for a `$`.
    pub fn expand(&self, value: &str, defaults: &HashMap<&str, String>) -> Expanded {
        let mut out = Expanded::default();
        out.text = self.expand_at(value, defaults, 0, &mut out);
        out
    }

    fn lookup(&self, name: &str, defaults: &HashMap<&str, String>) -> Option<String> {
        self.get(name)
            .map(|p| p.value.clone())
            .or_else(|| defaults.get(name).cloned())
    }

    fn expand_at(
        &self,
        value: &str,
        defaults: &HashMap<&str, String>,
        depth: usize,
        st: &mut Expanded,
    ) -> String {
        let mut out = String::new();
        let mut rest = value;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let Some(r) = reference(after) else {
                // "$$" is a "$"; a "$" before anything else stays.
                out.push('$');
                rest = after.strip_prefix('$').unwrap_or(after);
                continue;
            };
            rest = &after[r.len..];
            let Some(raw) = self.lookup(r.name, defaults) else {
                // A conditional reference to an unset parameter is normal.
                if r.cond.is_none() && !st.unknown.iter().any(|u| u == r.name) {
                    st.unknown.push(r.name.to_owned());
                }
                if let Some(Cond::IfEmpty(t)) = r.cond {
                    out.push_str(&self.expand_at(t, defaults, depth + 1, st));
                }
                continue;
            };
            if depth >= MAX_DEPTH {
                st.unknown
                    .push(format!("{} (nested more than {MAX_DEPTH} deep)", r.name));
                continue;
            }
            st.lookups += 1;
            if st.lookups > MAX_LOOKUPS {
                if st.lookups == MAX_LOOKUPS + 1 {
                    st.unknown
                        .push(format!("{} (more than {MAX_LOOKUPS} references)", r.name));
                }
                continue;
            }
            let expanded = self.expand_at(&raw, defaults, depth + 1, st);
            match r.cond {
                None => out.push_str(&expanded),
                Some(Cond::IfSet(t)) if !expanded.is_empty() => {
                    out.push_str(&self.expand_at(t, defaults, depth + 1, st));
                }
                Some(Cond::IfEmpty(t)) if expanded.is_empty() => {
                    out.push_str(&self.expand_at(t, defaults, depth + 1, st));
                }
                Some(_) => {}
            }
        }
        out.push_str(rest);
        out
    }
}

/// An expanded value.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expanded {
    pub text: String,
    /// Parameters referred to that are neither set nor known defaults
    /// (or that were not expanded: too deep, too many).
    pub unknown: Vec<String>,
    /// References expanded so far.
    lookups: usize,
}

enum Cond<'a> {
    IfSet(&'a str),
    IfEmpty(&'a str),
}

struct Reference<'a> {
    name: &'a str,
    cond: Option<Cond<'a>>,
    /// Bytes of the reference after the `$`.
    len: usize,
}

/// The reference at the start of `s` (just after a `$`).
fn reference(s: &str) -> Option<Reference<'_>> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let close = match s.chars().next()? {
        '{' => '}',
        '(' => ')',
        c if is_name(c) => {
            let len = s.find(|c: char| !is_name(c)).unwrap_or(s.len());
            return Some(Reference {
                name: &s[..len],
                cond: None,
                len,
            });
        }
        _ => return None,
    };
    let end = matching(s, close)?;
    let inner = &s[1..end];
    let name_len = inner.find(|c: char| !is_name(c)).unwrap_or(inner.len());
    let (name, tail) = inner.split_at(name_len);
    if name.is_empty() {
        return None;
    }
    let cond = match tail.chars().next() {
        None => None,
        Some('?') => Some(Cond::IfSet(strip_braces(&tail[1..]))),
        Some(':') => Some(Cond::IfEmpty(strip_braces(&tail[1..]))),
        Some(_) => return None,
    };
    Some(Reference {
        name,
        cond,
        len: end + 1,
    })
}

/// The index of the `close` that ends the reference opened at `s[0]`,
/// skipping braces nested inside (`${a?{${b}}}`).
fn matching(s: &str, close: char) -> Option<usize> {
    let open = if close == '}' { '{' } else { '(' };
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// Postfix 3's `${name?{text}}` form.
fn strip_braces(s: &str) -> &str {
    s.strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(s)
}

/// The items of a list value: separated by commas and/or white space.
pub fn list(value: &str) -> Vec<&str> {
    value
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A `type:name` table reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRef {
    /// The table type (`hash`, `lmdb`, `regexp`…), lower-cased.
    pub kind: String,
    /// What follows the colon: a path for file-based tables.
    pub name: String,
}

impl TableRef {
    /// Parses `type:name`; `None` for a value without a type.
    pub fn parse(item: &str) -> Option<TableRef> {
        let (kind, name) = item.split_once(':')?;
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let kind = kind.to_ascii_lowercase();
        if kind == "proxy" {
            // proxymap(8) only changes who opens the table.
            return TableRef::parse(name);
        }
        Some(TableRef {
            kind,
            name: name.to_owned(),
        })
    }

    /// The text file the table is built from, for the types whose source
    /// is a text file postmap reads (`hash:/etc/postfix/x` is built from
    /// `/etc/postfix/x`); a compiled file named by mistake
    /// (`/etc/postfix/x.db`) gives its source. `Err(why)` for the others.
    pub fn text_source(&self) -> Result<String, String> {
        match self.kind.as_str() {
            "hash" | "btree" | "lmdb" | "cdb" | "dbm" | "sdbm" | "texthash" => {
                if !self.name.starts_with('/') {
                    return Err(format!(
                        "{}:{} is not an absolute path",
                        self.kind, self.name
                    ));
                }
                let name = [".db", ".lmdb", ".cdb", ".dir", ".pag"]
                    .iter()
                    .find_map(|ext| self.name.strip_suffix(ext))
                    .unwrap_or(&self.name);
                Ok(name.to_owned())
            }
            "regexp" | "pcre" => Err(format!(
                "{}: tables match patterns; postrelay's tables match exact keys only: write each key out in a text table",
                self.kind
            )),
            "mysql" | "pgsql" | "sqlite" | "ldap" | "memcache" | "redis" | "mongodb" | "nis"
            | "nisplus" | "netinfo" | "tcp" | "socketmap" | "proxy" | "unionmap" | "pipemap" => {
                Err(format!(
                    "{}: tables are queried from a service; postrelay reads text files only: export the entries into a text table",
                    self.kind
                ))
            }
            other => Err(format!(
                "{other}: tables are not text files postrelay can read; write the entries into a text table"
            )),
        }
    }
}
