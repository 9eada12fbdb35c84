//! The doctor's first check: does the configuration load, and are the
//! files holding secrets (`[[relay]] password_file`,
//! `delivery.sasl_passwd`) protected as loading requires?
//!
//! Loading is the daemon's own (`cli::load_config`), and so is the secret
//! file rule (`config::check_secret_file`): the doctor reports what the
//! daemon would refuse, with the fix the daemon would print. When the file
//! does not load with its secrets, the other checks still run on what
//! loads without them (as `mailq` reads it), without credentials.
//!
//! Not for: validating settings beyond what loading checks.

use std::path::{Path, PathBuf};

use super::{Finding, Verdict};
use crate::cli;
use crate::config::{self, Config};
use crate::daemon::Source;

/// What the configuration check found, and the configuration the other
/// checks use (`None`: nothing loads, nothing else can be checked).
pub(super) struct Loaded {
    pub(super) findings: Vec<Finding>,
    pub(super) config: Option<Config>,
    /// Whether `config` has its credentials (it loaded in full).
    pub(super) complete: bool,
}

/// Loads the configuration as the daemon would, and checks its secret files.
pub(super) fn check(explicit: Option<&Path>) -> Loaded {
    let mut findings = Vec::new();
    let (config, complete) = match cli::load_config(explicit) {
        Ok((config, Source::File(path))) => {
            findings.push(Finding::ok(
                "config",
                path.display().to_string(),
                format!("loads: {}", summary(&config)),
            ));
            (Some(config), true)
        }
        Ok((config, Source::Builtin)) => {
            findings.push(Finding::bad(
                "config",
                Verdict::Warning,
                "built-in default",
                format!(
                    "no configuration file ({} does not exist): mail only queues, no relay is set",
                    cli::DEFAULT_CONFIG
                ),
                format!(
                    "write {} (see postrelay.example.toml), or name one with --config",
                    cli::DEFAULT_CONFIG
                ),
            ));
            (Some(config), true)
        }
        Err(e) => {
            let subject = cli::config_path(explicit).ok().flatten().map_or_else(
                || cli::DEFAULT_CONFIG.to_owned(),
                |p| p.display().to_string(),
            );
            findings.push(Finding::bad(
                "config",
                Verdict::Problem,
                subject,
                format!("does not load: {e}"),
                "correct the file as the message says; postrelay check-config confirms it",
            ));
            (cli::sendmail::load_without_secrets(explicit).ok(), false)
        }
    };
    if let Ok(Some(path)) = cli::config_path(explicit) {
        let (user, files) = secret_files(&path);
        findings.extend(files.iter().map(|f| secret_finding(f, user.as_deref())));
    }
    Loaded {
        findings,
        config,
        complete,
    }
}

/// `2 relays (ses, backup), spool /var/spool/postrelay`.
fn summary(config: &Config) -> String {
    let names: Vec<&str> = config.relays.iter().map(|r| r.name.as_str()).collect();
    let relays = match names.len() {
        0 => "no relay".to_owned(),
        1 => format!("1 relay ({})", names.join(", ")),
        n => format!("{n} relays ({})", names.join(", ")),
    };
    format!("{relays}, spool {}", config.spool.display())
}

/// `[daemon] user` as written, and the secret files the configuration
/// names with the key naming each: read from the raw file, so that they
/// are found even when loading fails.
fn secret_files(path: &Path) -> (Option<String>, Vec<(String, PathBuf)>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (None, Vec::new());
    };
    let Ok(table) = toml::from_str::<toml::Table>(&text) else {
        return (None, Vec::new());
    };
    let user = table
        .get("daemon")
        .and_then(|d| d.get("user"))
        .and_then(toml::Value::as_str)
        .map(str::to_owned);
    let mut files = Vec::new();
    if let Some(toml::Value::Array(relays)) = table.get("relay") {
        for (i, relay) in relays.iter().enumerate() {
            if let Some(toml::Value::String(file)) = relay.get("password_file") {
                let name = relay
                    .get("name")
                    .and_then(toml::Value::as_str)
                    .map_or_else(|| format!("relay[{i}]"), |n| format!("relay {n}"));
                files.push((format!("{name} password_file"), PathBuf::from(file)));
            }
        }
    }
    if let Some(file) = table
        .get("delivery")
        .and_then(|d| d.get("sasl_passwd"))
        .and_then(toml::Value::as_str)
    {
        files.push(("delivery.sasl_passwd".to_owned(), PathBuf::from(file)));
    }
    (user, files)
}

/// The verdict on one secret file; the fix is the command loading names.
fn secret_finding((key, path): &(String, PathBuf), daemon_user: Option<&str>) -> Finding {
    let subject = format!("{} ({key})", path.display());
    match config::check_secret_file(path, daemon_user) {
        Ok(()) => Finding::ok(
            "secrets",
            subject,
            "a regular file, owned by the user postrelay runs as ([daemon] user), mode 0600 \
             or stricter",
        ),
        Err(why) => {
            let split = why
                .split_once(": run ")
                .or_else(|| why.split_once("; run "));
            let (evidence, fix) = match split {
                Some((what, commands)) => (what.to_owned(), format!("run {commands}")),
                None => (
                    why.clone(),
                    format!("make {key} name a file only postrelay's user can read (chmod 600)"),
                ),
            };
            Finding::bad("secrets", Verdict::Problem, subject, evidence, fix)
        }
    }
}
