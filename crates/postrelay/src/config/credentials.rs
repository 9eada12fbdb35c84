//! A relay's credentials, read when the configuration is loaded: its
//! `username` with `password_file`, or its entry in `delivery.sasl_passwd`.
//! Secrets are read at load time so that a reload (SIGHUP) picks up a
//! fixed or rotated password, and a bad secret file fails the load like
//! any other mistake.
//!
//! Messages name the file, what is wrong with it and the command that
//! fixes it, and never contain the secret. Not for: the format of a
//! `sasl_passwd` file (`config::sasl_passwd`) or file permissions
//! (`config::secrets`).

use std::path::Path;

use super::resolve::non_empty_path;
use super::sasl_passwd::{self, SaslPasswd};
use super::secrets::{self, Secret};
use super::validate::Locator;
use super::{ConfigError, Credentials, DeliverySettings};

/// The relay whose credentials are being read.
pub(super) struct Target<'a> {
    /// Position among the `[[relay]]` tables.
    pub i: usize,
    /// `relay "name"`, for messages.
    pub label: &'a str,
    pub name: &'a str,
    pub host: &'a str,
    pub port: u16,
}

/// The relay's credentials: `username` with `password_file`, or else the
/// `sasl_passwd` entry for the relay, or none.
pub(super) fn credentials(
    t: &Target<'_>,
    username: Option<String>,
    password_file: Option<String>,
    delivery: &DeliverySettings,
    sasl: Option<&SaslPasswd>,
    loc: &Locator<'_>,
) -> Result<Option<Credentials>, ConfigError> {
    let Target {
        i,
        label,
        name,
        host,
        port,
    } = *t;
    let user_key = format!("relay[{i}].username");
    let file_key = format!("relay[{i}].password_file");
    if username.as_deref() == Some("") {
        return Err(loc.value_error(
            &user_key,
            "cannot be empty; remove it for a relay without AUTH",
        ));
    }
    if let Some(u) = &username
        && u.contains(['\0', '\r', '\n'])
    {
        return Err(loc.value_error(&user_key, "cannot contain NUL or line breaks"));
    }
    let entry = sasl.and_then(|t| t.lookup(host, port));
    let sasl_path = delivery.sasl_passwd.as_deref();
    match (username, password_file) {
        (None, Some(_)) => {
            let line = loc.line_of(&file_key);
            let message = format!(
                r#"{label}: password_file is set without username; add username = "…", the user name the relay expects with this password"#
            );
            Err(loc.invalid(&file_key, line, message))
        }
        (Some(username), Some(p)) => {
            let path = non_empty_path(loc, &file_key, p)?;
            if Some(path.as_path()) == sasl_path {
                let why = "is the delivery.sasl_passwd file; a password_file holds only the password (remove password_file and username to use the sasl_passwd entry)";
                return Err(loc.value_error(&file_key, why));
            }
            let password = read_password(&path).map_err(|why| {
                let message = format!("{label}: password_file {} {why}", path.display());
                loc.invalid(&file_key, loc.line_of(&file_key), message)
            })?;
            Ok(Some(Credentials {
                username,
                password,
                source: path,
            }))
        }
        (Some(username), None) => {
            let Some((e, path)) = entry.zip(sasl_path) else {
                let keys = sasl_passwd::lookup_keys(host, port);
                let message = format!(
                    r#"{label}: username is set but there is no password: set password_file = "/etc/postrelay/secrets/{name}" (a file holding only the password), or add a line "{} {username}:PASSWORD" to delivery.sasl_passwd"#,
                    keys[0],
                );
                return Err(loc.invalid(&user_key, loc.line_of(&user_key), message));
            };
            if e.username != username {
                let message = format!(
                    r#"{label}: username = "{username}", but the delivery.sasl_passwd entry "{}" (line {}) is for user "{}"; remove username to use that entry, or make the two agree"#,
                    e.key, e.line, e.username
                );
                return Err(loc.invalid(&user_key, loc.line_of(&user_key), message));
            }
            Ok(Some(sasl_credentials(e, path)))
        }
        (None, None) => Ok(entry.zip(sasl_path).map(|(e, p)| sasl_credentials(e, p))),
    }
}

fn sasl_credentials(e: &sasl_passwd::Entry, path: &Path) -> Credentials {
    Credentials {
        username: e.username.clone(),
        password: e.password.clone(),
        source: path.to_path_buf(),
    }
}

/// Reads a password file: the password alone, one trailing line break
/// removed. The error completes a sentence starting with the file's name.
pub(super) fn read_password(path: &Path) -> Result<Secret, String> {
    let text = secrets::read_protected(path)?;
    let password = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err("is empty; write the password into it (alone, on one line)".to_owned());
    }
    if password.contains(['\n', '\r']) {
        return Err("has more than one line; it must hold only the password".to_owned());
    }
    if password.contains('\0') {
        return Err("contains a NUL character, which AUTH cannot carry".to_owned());
    }
    Ok(Secret::new(password))
}
