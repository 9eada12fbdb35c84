//! The configuration an import writes, key by key, each with the setting
//! it came from; rendered as commented TOML in the order postrelay's
//! example file uses (top-level keys first, `[[relay]]` tables last).

use std::fmt::Write;

/// The tables of the output, in file order; `""` is the top level, and the
/// `[[relay]]` tables come after all of them.
const ORDER: [&str; 7] = [
    "", "intake", "queue", "delivery", "bounce", "routing", "local",
];

/// One `key = value` line of the output.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The key within its table.
    pub key: String,
    /// The value, already TOML.
    pub value: String,
    /// Where the setting it comes from was written (`main.cf:3`).
    pub origin: String,
    /// That setting, as written (never a password).
    pub setting: String,
    /// A secret file: never commented out, whatever the loader says.
    pub keep: bool,
    /// The loader's refusal, when it is written commented out.
    pub disabled: Option<String>,
}

impl Entry {
    /// Marks it as naming a secret file: never commented out.
    pub fn secret(&mut self) {
        self.keep = true;
    }
}

#[derive(Debug)]
struct Table {
    name: &'static str,
    entries: Vec<Entry>,
}

/// The output being built.
#[derive(Debug, Default)]
pub struct Draft {
    /// Comment lines at the top (without `# `).
    header: Vec<String>,
    tables: Vec<Table>,
    /// `[[relay]]` tables: a comment line, then the entries.
    relays: Vec<(String, Vec<Entry>)>,
}

impl Draft {
    pub fn new(header: &[String]) -> Draft {
        Draft {
            header: header.to_vec(),
            tables: ORDER
                .iter()
                .map(|name| Table {
                    name,
                    entries: Vec::new(),
                })
                .collect(),
            relays: Vec::new(),
        }
    }

    /// Sets `table.key` (`table` one of [`ORDER`]); returns the entry (to
    /// mark it [`Entry::secret`]).
    pub fn set(
        &mut self,
        table: &str,
        key: &str,
        value: String,
        origin: &str,
        setting: &str,
    ) -> &mut Entry {
        let t = self
            .tables
            .iter_mut()
            .find(|t| t.name == table)
            .unwrap_or_else(|| panic!("no table {table:?} in the import draft"));
        t.entries.retain(|e| e.key != key);
        t.entries.push(entry(key, value, origin, setting));
        t.entries.last_mut().expect("just pushed")
    }

    /// Adds a `[[relay]]` table, introduced by `comment`; returns its index.
    pub fn relay(&mut self, comment: &str) -> usize {
        self.relays.push((comment.to_owned(), Vec::new()));
        self.relays.len() - 1
    }

    /// Sets `key` of relay `i`; returns the entry.
    pub fn set_relay(
        &mut self,
        i: usize,
        key: &str,
        value: String,
        origin: &str,
        setting: &str,
    ) -> &mut Entry {
        let entries = &mut self.relays[i].1;
        entries.push(entry(key, value, origin, setting));
        entries.last_mut().expect("just pushed")
    }

    /// The value of `table.key`, if set and not commented out.
    pub fn get(&self, table: &str, key: &str) -> Option<&str> {
        self.tables
            .iter()
            .find(|t| t.name == table)?
            .entries
            .iter()
            .find(|e| e.key == key && e.disabled.is_none())
            .map(|e| e.value.as_str())
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        let tables: usize = self.tables.iter().map(|t| t.entries.len()).sum();
        tables + self.relays.iter().map(|r| r.1.len()).sum::<usize>()
    }

    /// Whether there is no key at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Comments out the entry of the loader's dotted key (`intake.listen`,
    /// `relay[0].ca_file`), unless it is kept or already commented out;
    /// returns it.
    pub fn disable(&mut self, dotted: &str, why: &str) -> Option<Entry> {
        let entry = self.find_mut(dotted)?;
        if entry.keep || entry.disabled.is_some() {
            return None;
        }
        entry.disabled = Some(why.to_owned());
        Some(entry.clone())
    }

    fn find_mut(&mut self, dotted: &str) -> Option<&mut Entry> {
        if let Some(rest) = dotted.strip_prefix("relay[") {
            let (index, key) = rest.split_once("].")?;
            let i: usize = index.parse().ok()?;
            return self.relays.get_mut(i)?.1.iter_mut().find(|e| e.key == key);
        }
        let (table, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
        self.tables
            .iter_mut()
            .find(|t| t.name == table)?
            .entries
            .iter_mut()
            .find(|e| e.key == key)
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let mut o = String::new();
        for line in &self.header {
            let _ = writeln!(o, "# {line}");
        }
        for t in &self.tables {
            if t.entries.is_empty() {
                continue;
            }
            if !t.name.is_empty() {
                let _ = writeln!(o, "\n[{}]", t.name);
            }
            for e in &t.entries {
                write_entry(&mut o, e);
            }
        }
        for (comment, entries) in &self.relays {
            let _ = writeln!(o, "\n# {comment}\n[[relay]]");
            for e in entries {
                write_entry(&mut o, e);
            }
        }
        o
    }
}

fn entry(key: &str, value: String, origin: &str, setting: &str) -> Entry {
    Entry {
        key: key.to_owned(),
        value,
        origin: origin.to_owned(),
        setting: setting.to_owned(),
        keep: false,
        disabled: None,
    }
}

fn write_entry(o: &mut String, e: &Entry) {
    let _ = writeln!(o, "# {}: {}", e.origin, one_line(&e.setting));
    match &e.disabled {
        None => {
            let _ = writeln!(o, "{} = {}", e.key, e.value);
        }
        Some(why) => {
            let _ = writeln!(o, "# not carried over: {}", one_line(why));
            let _ = writeln!(o, "# {} = {}", e.key, e.value);
        }
    }
}

/// Text for a comment: line breaks would end it.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}
