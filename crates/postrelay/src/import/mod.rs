//! Importing another mail program's configuration: `postrelay
//! import-postfix`, `import-msmtp` and `import-nullmailer` read Postfix's
//! `main.cf` (with the text sources of the tables it names), an
//! `msmtprc`, or nullmailer's `remotes`, and write the equivalent
//! postrelay configuration, with a report of every setting that could not
//! be carried over and why.
//!
//! Each importer fills a [`Draft`]: the output's keys, each with the
//! setting it came from as a comment. [`finish`] then loads the draft as
//! `check-config` would; a key the loader refuses (a table postrelay cannot
//! read as it is, a network it would not trust) is written commented out,
//! with the loader's message in the report, until the rest loads. Keys
//! that name secret files are never commented out: their problem (a file
//! postrelay's user may not read) is reported for the administrator to fix.
//!
//! Passwords are never written to the configuration or to standard output:
//! Postfix's `sasl_passwd` is referenced by path; a password written inline
//! (msmtp, nullmailer) goes to a new file of mode 0600 next to `--output`,
//! or, without `--output`, the report says which file to create.
//!
//! **Not for:** validating the result (that is [`crate::config`], which
//! `finish` calls) or running anything the imported program would run.

mod draft;
pub mod maincf;
pub mod msmtp;
pub mod nullmailer;
pub mod postfix;
mod postfix_params;
mod postfix_relay;
mod secrets;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;

pub use draft::Draft;
pub use secrets::SecretSink;

/// What happened to one setting of the imported configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Where it was written: `main.cf:12`, `remotes:3`.
    pub origin: String,
    /// The setting, as written (`smtp_tls_loglevel = 1`); never a password.
    pub setting: String,
    pub kind: NoteKind,
    /// Why, and what to do.
    pub why: String,
}

/// Whether the setting was dropped or carried over differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// Not in the output (or written commented out).
    NotCarried,
    /// In the output, with a deliberate difference.
    Changed,
    /// Something the administrator must do before the output works.
    Action,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            NoteKind::NotCarried => "not carried over",
            NoteKind::Changed => "carried over with a change",
            NoteKind::Action => "to do",
        };
        write!(f, "{}: {}: {what}: {}", self.origin, self.setting, self.why)
    }
}

/// The notes of one import, in the order they were made.
#[derive(Debug, Default)]
pub struct Report {
    pub notes: Vec<Note>,
}

impl Report {
    pub fn note(&mut self, origin: &str, setting: &str, kind: NoteKind, why: impl Into<String>) {
        self.notes.push(Note {
            origin: origin.to_owned(),
            setting: setting.to_owned(),
            kind,
            why: why.into(),
        });
    }
}

/// The result of an import.
#[derive(Debug)]
pub struct Imported {
    /// The configuration, as TOML with comments.
    pub text: String,
    pub report: Report,
    /// Why `check-config` would still refuse `text`, if it would: a secret
    /// file that is missing or not protected as postrelay requires.
    pub problem: Option<String>,
}

/// Why an import could not be done at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The source file could not be read.
    #[error("{}: cannot read it: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The source file is not in the format expected.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// There is nothing to relay through.
    #[error("{}: {message}", path.display())]
    Nothing { path: PathBuf, message: String },
    /// A password file or the output could not be written.
    #[error("{}: cannot write it: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the output's loader messages name the text.
const ORIGIN: &str = "imported configuration";

/// Loads the draft as `check-config` would, commenting out each key the
/// loader refuses (except secret files), and renders it.
pub fn finish(mut draft: Draft, mut report: Report) -> Imported {
    // Each round comments out one more key, so this ends.
    for _ in 0..=draft.len() {
        let text = draft.render();
        let e = match crate::config::parse(&text, ORIGIN) {
            Ok(_) => {
                return Imported {
                    text,
                    report,
                    problem: None,
                };
            }
            Err(e) => e,
        };
        let message = e.to_string();
        let key = match &e {
            crate::config::ConfigError::Invalid { key, .. } => Some(key.as_str()),
            _ => None,
        };
        let dropped = key.and_then(|k| draft.disable(k, &message));
        match dropped {
            Some(entry) => report.note(
                &entry.origin,
                &entry.setting,
                NoteKind::NotCarried,
                format!("postrelay refuses it: {message}"),
            ),
            None => {
                return Imported {
                    text,
                    report,
                    problem: Some(message),
                };
            }
        }
    }
    let text = draft.render();
    Imported {
        text,
        report,
        problem: Some("the configuration still does not load".to_owned()),
    }
}

/// Reads a source file; the error names it.
pub(crate) fn read(path: &std::path::Path) -> Result<String, ImportError> {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|source| ImportError::Read {
            path: path.to_owned(),
            source,
        })
}

/// A TOML string.
pub(crate) fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML array of strings.
pub(crate) fn toml_array<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<String> = items.iter().map(|s| toml_string(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// A relay read from a one-file client (msmtp, nullmailer), written as a
/// `[[relay]]` whose keys all come from one place.
#[derive(Debug, Default)]
pub(crate) struct SimpleRelay {
    pub name: String,
    pub host: String,
    pub port: Option<u16>,
    /// `"starttls"` or `"implicit"`; `None` for `"auto"`.
    pub tls: Option<&'static str>,
    /// What the client did: `"verify"`, `"encrypt"`, `"may"` or `"none"`.
    pub security: &'static str,
    pub ca_file: Option<String>,
    pub tls_name: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
}

impl SimpleRelay {
    /// Adds it to `draft`; the security level is raised to `"verify"`
    /// when the relay authenticates (reported in `report`).
    pub fn add(mut self, draft: &mut Draft, report: &mut Report, origin: &str, setting: &str) {
        if self.username.is_some() && self.security != "verify" {
            report.note(origin, setting, NoteKind::Changed, format!(
                "the relay authenticates, so postrelay requires TLS and checks the relay's certificate (security = \"verify\") instead of \"{}\", which would let someone on the path read the password",
                self.security
            ));
            self.security = "verify";
        }
        if self.security != "verify" {
            for (what, set) in [
                ("a CA file", self.ca_file.take().is_some()),
                ("a certificate name", self.tls_name.take().is_some()),
            ] {
                if set {
                    report.note(origin, setting, NoteKind::NotCarried, format!("{what} is only used to verify the certificate, which security = \"{}\" does not do", self.security));
                }
            }
        }
        let i = draft.relay(&format!("{} from {origin}", self.host));
        draft.set_relay(i, "name", toml_string(&self.name), origin, setting);
        draft.set_relay(i, "host", toml_string(&self.host), origin, setting);
        if let Some(p) = self.port {
            draft.set_relay(i, "port", p.to_string(), origin, setting);
        }
        if let Some(t) = self.tls {
            draft.set_relay(i, "tls", toml_string(t), origin, setting);
        }
        draft.set_relay(i, "security", toml_string(self.security), origin, setting);
        if let Some(c) = &self.ca_file {
            draft.set_relay(i, "ca_file", toml_string(c), origin, setting);
        }
        if let Some(n) = &self.tls_name {
            draft.set_relay(i, "tls_name", toml_string(n), origin, setting);
        }
        if let Some(u) = &self.username {
            draft.set_relay(i, "username", toml_string(u), origin, setting);
        }
        if let Some(p) = &self.password_file {
            let p = toml_string(&p.to_string_lossy());
            draft
                .set_relay(i, "password_file", p, origin, setting)
                .secret();
        }
    }
}
