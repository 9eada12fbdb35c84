//! `postrelay import-msmtp [FILE]`: an msmtp configuration (`msmtprc`,
//! default `/etc/msmtprc`) to a postrelay configuration.
//!
//! The account msmtp uses by default (`account default`, else the first
//! one) becomes the `[[relay]]`, with what `defaults` and the accounts it
//! inherits from set. Other accounts are reported: msmtp chooses them per
//! command line or sender, postrelay by its tables.
//!
//! **Not for:** running `passwordeval` commands (the report says to put
//! their output into the `password_file`).

use std::collections::HashMap;
use std::path::Path;

use super::{
    Draft, ImportError, Imported, NoteKind, Report, SecretSink, SimpleRelay, finish, read,
    toml_string,
};

/// One `command argument` line.
#[derive(Clone, Debug)]
struct Line {
    no: usize,
    command: String,
    arg: String,
}

/// An account: its settings, inherited ones first.
#[derive(Clone, Debug, Default)]
struct Account {
    name: String,
    line: usize,
    settings: Vec<Line>,
}

impl Account {
    /// The last value of `command`.
    fn get(&self, command: &str) -> Option<&Line> {
        self.settings.iter().rev().find(|l| l.command == command)
    }
}

/// The accounts of a file; `default` names the default account.
fn parse(text: &str, path: &Path) -> Result<(Vec<Account>, Option<String>), ImportError> {
    let syntax = |line, message: String| ImportError::Syntax {
        path: path.to_owned(),
        line,
        message,
    };
    let mut defaults: Vec<Line> = Vec::new();
    let mut accounts: Vec<Account> = Vec::new();
    let mut default = None;
    // Whether lines go to `defaults` (before any account) or the last account.
    let mut in_defaults = true;
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (command, arg) = match l.split_once(|c: char| c.is_ascii_whitespace()) {
            Some((c, a)) => (c, unquote(a.trim())),
            None => (l, String::new()),
        };
        match command {
            "defaults" => in_defaults = true,
            "account" => {
                in_defaults = false;
                let (name, parents) = match arg.split_once(':') {
                    Some((n, p)) => (
                        n.trim().to_owned(),
                        p.split(',').map(|s| s.trim().to_owned()).collect(),
                    ),
                    None => (arg.clone(), Vec::new()),
                };
                if name.is_empty() {
                    return Err(syntax(no, "\"account\" needs a name".to_owned()));
                }
                if name == "default"
                    && parents.len() == 1
                    && accounts.iter().all(|a| a.name != "default")
                {
                    default = Some(parents[0].clone());
                }
                let mut settings = defaults.clone();
                for p in &parents {
                    let Some(parent) = accounts.iter().find(|a| a.name == *p) else {
                        return Err(syntax(no, format!("account \"{p}\" is not defined above")));
                    };
                    settings.extend(parent.settings.iter().skip(defaults.len()).cloned());
                }
                accounts.push(Account {
                    name,
                    line: no,
                    settings,
                });
            }
            _ => {
                let line = Line {
                    no,
                    command: command.to_owned(),
                    arg,
                };
                match (in_defaults, accounts.last_mut()) {
                    (false, Some(a)) => a.settings.push(line),
                    _ => defaults.push(line),
                }
            }
        }
    }
    Ok((accounts, default))
}

/// msmtp's quoting: a value in double quotes, with `\"` and `\\`.
fn unquote(s: &str) -> String {
    match s.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => s.to_owned(),
    }
}

fn on(a: &Account, command: &str) -> Option<bool> {
    a.get(command).map(|l| matches!(l.arg.as_str(), "" | "on"))
}

/// Reads `file` and builds the configuration.
pub fn import(file: &Path, secrets: &SecretSink) -> Result<Imported, ImportError> {
    let text = read(file)?;
    let (accounts, default) = parse(&text, file)?;
    let chosen = default
        .as_deref()
        .and_then(|d| accounts.iter().find(|a| a.name == d))
        .or_else(|| accounts.iter().find(|a| a.name == "default"))
        .or(accounts.first())
        .cloned();
    let Some(account) = chosen else {
        return Err(ImportError::Nothing {
            path: file.to_owned(),
            message: "no \"account\": there is no relay to import".to_owned(),
        });
    };
    let header = vec![format!(
        "postrelay configuration imported from {} (account \"{}\") by postrelay import-msmtp.",
        file.display(),
        account.name
    )];
    let mut draft = Draft::new(&header);
    let mut report = Report::default();
    let fname = file
        .file_name()
        .map_or("msmtprc".into(), |n| n.to_string_lossy().into_owned());
    for other in accounts
        .iter()
        .filter(|a| a.name != account.name && a.name != "default")
    {
        report.note(&format!("{fname}:{}", other.line), &format!("account {}", other.name), NoteKind::NotCarried,
            "msmtp picks an account per command line (-a) or sender; postrelay sends everything through its [[relay]] tables in order: write a [[relay]] for it and a [routing] sender_relay entry");
    }
    relay(&account, &fname, secrets, &mut draft, &mut report)?;
    Ok(finish(draft, report))
}

/// The account's `[[relay]]`, and the settings that go elsewhere.
fn relay(
    a: &Account,
    fname: &str,
    secrets: &SecretSink,
    draft: &mut Draft,
    report: &mut Report,
) -> Result<(), ImportError> {
    let origin = format!("{fname}:{}", a.line);
    let setting = format!("account {}", a.name);
    let Some(host) = a.get("host") else {
        return Err(ImportError::Nothing {
            path: fname.into(),
            message: format!("account \"{}\" has no host", a.name),
        });
    };
    let tls = on(a, "tls").unwrap_or(false);
    let starttls = on(a, "tls_starttls").unwrap_or(true);
    let mut r = SimpleRelay {
        name: "msmtp".to_owned(),
        host: host.arg.clone(),
        port: Some(
            a.get("port")
                .and_then(|p| p.arg.parse().ok())
                .unwrap_or(if tls && !starttls { 465 } else { 25 }),
        ),
        tls: Some(if tls && !starttls {
            "implicit"
        } else {
            "starttls"
        }),
        security: match (tls, on(a, "tls_certcheck").unwrap_or(true)) {
            (false, _) => "none",
            (true, false) => "encrypt",
            (true, true) => "verify",
        },
        ..SimpleRelay::default()
    };
    if let Some(f) = a
        .get("tls_trust_file")
        .filter(|l| l.arg != "system" && !l.arg.is_empty())
    {
        r.ca_file = Some(f.arg.clone());
    }
    r.tls_name = a.get("tls_host_override").map(|l| l.arg.clone());
    let auth = a.get("auth").map_or("off", |l| {
        if l.arg.is_empty() {
            "on"
        } else {
            l.arg.as_str()
        }
    });
    match auth {
        "off" => {}
        "on" | "plain" | "login" => credentials(a, fname, secrets, &mut r, report)?,
        other => report.note(&origin, &format!("auth {other}"), NoteKind::NotCarried,
            "postrelay authenticates with PLAIN (or LOGIN); write auth on and a password msmtp can use with them"),
    }
    r.add(draft, report, &origin, &setting);
    other_settings(a, fname, draft, report);
    Ok(())
}

fn credentials(
    a: &Account,
    fname: &str,
    secrets: &SecretSink,
    r: &mut SimpleRelay,
    report: &mut Report,
) -> Result<(), ImportError> {
    r.username = a.get("user").map(|l| l.arg.clone());
    if let Some(p) = a.get("password") {
        let from = format!("{fname}:{}", p.no);
        let (path, todo) = secrets.store(&r.name, &p.arg, &from)?;
        report.note(&from, "password <redacted>", NoteKind::Action, todo);
        r.password_file = Some(path);
    } else if let Some(e) = a.get("passwordeval") {
        let path = Path::new(super::secrets::SECRETS_DIR).join(&r.name);
        report.note(&format!("{fname}:{}", e.no), &format!("passwordeval {}", e.arg), NoteKind::Action, format!(
            "postrelay runs no command for a password; put the command's output into {p}: install -m 600 -o postrelay /dev/null {p}, then write the password into it",
            p = path.display()
        ));
        r.password_file = Some(path);
    }
    Ok(())
}

/// Settings of the account that are not the relay's.
fn other_settings(a: &Account, fname: &str, draft: &mut Draft, report: &mut Report) {
    let relay_keys = [
        "host",
        "port",
        "tls",
        "tls_starttls",
        "tls_certcheck",
        "tls_trust_file",
        "tls_host_override",
        "auth",
        "user",
        "password",
        "passwordeval",
    ];
    let mut seen: HashMap<&str, ()> = HashMap::new();
    for l in a.settings.iter().rev() {
        if relay_keys.contains(&l.command.as_str()) || seen.insert(l.command.as_str(), ()).is_some()
        {
            continue;
        }
        let origin = format!("{fname}:{}", l.no);
        let setting = format!("{} {}", l.command, l.arg);
        let why = match l.command.as_str() {
            "from" if !l.arg.contains('%') => {
                draft.set(
                    "routing",
                    "rewrite_senders",
                    toml_string(&l.arg),
                    &origin,
                    &setting,
                );
                report.note(&origin, &setting, NoteKind::Changed, "local senders (root, users of this host) are shown to the relay as this address; senders of other domains are kept");
                continue;
            }
            "domain" => {
                draft.set("", "hostname", toml_string(&l.arg), &origin, &setting);
                continue;
            }
            "aliases" => {
                draft.set("routing", "aliases", toml_string(&l.arg), &origin, &setting);
                continue;
            }
            "logfile" | "syslog" => {
                "postrelay's mail log goes where [log] says (journal, syslog, a file)"
            }
            "timeout" => "postrelay's relay timeouts are in [relay.timeouts]",
            "tls_fingerprint" => {
                "postrelay verifies certificates against CAs; give a private CA with ca_file"
            }
            "protocol" if l.arg == "smtp" => continue,
            _ => "postrelay has no such setting",
        };
        report.note(&origin, &setting, NoteKind::NotCarried, why);
    }
}
