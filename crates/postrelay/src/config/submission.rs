//! `[intake.submission]`: the optional authenticated submission listeners
//! (a 587-style port with STARTTLS and a 465-style port with implicit TLS,
//! both requiring AUTH), their TLS certificate and their users.
//!
//! The certificate, the key and the users file are read and checked when
//! the configuration is loaded, so that `check-config` finds a bad file, a
//! key that does not match the certificate or a malformed password hash
//! before the daemon does, and a reload (SIGHUP) picks up a renewed
//! certificate or a changed user. The key and the users file are secrets:
//! they must be protected like a relay's password file (see `secrets`).
//! Errors never contain key material or password hashes.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;

use super::ConfigError;
use super::file::SubmissionFile;
use super::resolve::non_empty_path;
use super::secrets::{self, Secret};
use super::units::HumanDuration;
use super::validate::Locator;

const MAX_AUTH_FAILURES: u32 = 5;
const AUTH_LOCKOUT: Duration = Duration::from_secs(15 * 60);
const AUTH_DELAY: Duration = Duration::from_secs(1);
/// Longest `auth_delay`: the delay doubles with each failure, and a client
/// waits for the reply; beyond this legitimate clients time out.
const MAX_AUTH_DELAY: Duration = Duration::from_secs(10);
/// Longest `auth_lockout`.
const MAX_AUTH_LOCKOUT: Duration = Duration::from_secs(7 * 86_400);
/// Largest certificate file read (a chain is a few KiB).
const MAX_CERT_FILE: u64 = 1 << 20;
/// Longest user name: what SASL PLAIN can carry (RFC 4616 §2).
const MAX_USER_NAME: usize = 255;
/// Upper bounds on the cost of one hash, so that a hash pasted from
/// elsewhere cannot make each AUTH attempt take gigabytes or minutes.
const MAX_M_COST_KIB: u32 = 256 * 1024;
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 8;

/// The authenticated submission listeners (`[intake.submission]`). Absent
/// from the file: no submission listener at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// Addresses of STARTTLS listeners (submission, RFC 6409, usually
    /// port 587): clear text until STARTTLS; AUTH only after it.
    /// Default: `[]`. At least one of `listen` and `implicit` is required.
    pub listen: Vec<SocketAddr>,
    /// Addresses of implicit-TLS listeners (submissions, RFC 8314, usually
    /// port 465): TLS from the first byte. Default: `[]`.
    pub implicit: Vec<SocketAddr>,
    /// The PEM certificate chain, the server's own certificate first.
    /// Default: none, required.
    pub cert: PathBuf,
    /// The PEM private key of the certificate; a secret file (owned by
    /// postrelay's user, mode 0600). Default: none, required.
    pub key: PathBuf,
    /// The users file: `name:$argon2id$…` per line (hashes made by
    /// `postrelay hash-password`); a secret file. Default: none, required.
    pub users_file: PathBuf,
    /// Failed AUTH attempts from one client address (IPv6: its /64)
    /// within `auth_lockout` after which that address is locked out for
    /// `auth_lockout`. Default: `5`.
    pub max_auth_failures: u32,
    /// The window in which failures are counted, and how long a locked
    /// address gets `421` at connect. Default: `"15m"`.
    pub auth_lockout: Duration,
    /// The delay before the reply to the first failed attempt; it doubles
    /// with each further failure of the address, up to 30 seconds (or
    /// `auth_delay` itself if longer). Other sessions are not held up.
    /// `"0s"` turns it off (for tests only). Default: `"1s"`.
    pub auth_delay: Duration,
    /// Concurrent submission sessions, a pool separate from
    /// `intake.max_connections`; the next one gets 421 4.7.0 (or is closed
    /// on an implicit-TLS listener). Default: `100`.
    pub max_connections: usize,
    /// Concurrent submission sessions from one client address (IPv6: its
    /// /64); nobody is exempt, as nobody is trusted before AUTH.
    /// Default: `10`.
    pub max_connections_per_client: usize,
    /// The certificate and key, loaded and checked.
    pub tls: ServerTls,
    /// The users, in file order.
    pub users: Vec<User>,
}

/// One line of the users file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The name clients authenticate as (case-sensitive).
    pub name: String,
    /// The argon2id PHC string; printed only as `<redacted>`.
    pub hash: Secret,
}

/// The loaded TLS certificate and key, with the rustls configuration built
/// from them. Equality compares the files' contents, so a reload notices a
/// renewed certificate.
#[derive(Clone)]
pub struct ServerTls {
    cert_pem: Vec<u8>,
    key_pem: Secret,
    config: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    /// The rustls configuration for handshakes.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }
}

impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        self.cert_pem == other.cert_pem && self.key_pem == other.key_pem
    }
}

impl Eq for ServerTls {}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &self.key_pem)
            .finish()
    }
}

pub(super) fn resolve(
    file: Option<SubmissionFile>,
    intake_listen: &[SocketAddr],
    loc: &Locator<'_>,
) -> Result<Option<Submission>, ConfigError> {
    let Some(file) = file else {
        return Ok(None);
    };
    let table = "intake.submission";
    let listen: Vec<SocketAddr> = file
        .listen
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.0)
        .collect();
    let implicit: Vec<SocketAddr> = file
        .implicit
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.0)
        .collect();
    if listen.is_empty() && implicit.is_empty() {
        return Err(loc.invalid(
            table,
            loc.line_of(table),
            format!(
                r#"[{table}] has no address: write listen = ["10.0.0.1:587"] (STARTTLS) and/or implicit = ["10.0.0.1:465"] (implicit TLS), or remove the table to have no submission listener"#
            ),
        ));
    }
    check_addresses(intake_listen, &listen, &implicit, loc)?;

    let required = |key: &str, value: Option<String>, example: &str| {
        let full = format!("{table}.{key}");
        match value {
            Some(v) => non_empty_path(loc, &full, v),
            None => Err(loc.invalid(
                &full,
                loc.line_of(table),
                format!("[{table}]: {key} is required; write {key} = \"{example}\""),
            )),
        }
    };
    let cert = required("cert", file.cert, "/etc/postrelay/tls/cert.pem")?;
    let key = required("key", file.key, "/etc/postrelay/tls/key.pem")?;
    let users_file = required("users", file.users, "/etc/postrelay/users")?;

    let max_auth_failures = file.max_auth_failures.unwrap_or(MAX_AUTH_FAILURES);
    if max_auth_failures == 0 {
        return Err(loc.value_error(
            &format!("{table}.max_auth_failures"),
            "must be at least 1: 0 would lock out every client before its first attempt",
        ));
    }
    let auth_lockout = duration(
        loc,
        &format!("{table}.auth_lockout"),
        file.auth_lockout,
        AUTH_LOCKOUT,
        Duration::from_secs(1),
        MAX_AUTH_LOCKOUT,
    )?;
    let auth_delay = duration(
        loc,
        &format!("{table}.auth_delay"),
        file.auth_delay,
        AUTH_DELAY,
        Duration::ZERO,
        MAX_AUTH_DELAY,
    )?;
    let connections = super::limits::connection_limits(
        loc,
        table,
        file.max_connections,
        file.max_connections_per_client,
    )?;

    let tls = load_tls(&cert, &key, loc)?;
    let users = load_users(&users_file, loc)?;
    Ok(Some(Submission {
        listen,
        implicit,
        cert,
        key,
        users_file,
        max_auth_failures,
        auth_lockout,
        auth_delay,
        max_connections: connections.total,
        max_connections_per_client: connections.per_client,
        tls,
        users,
    }))
}

/// No address may be bound twice, across `intake.listen` and both
/// submission lists (an unspecified address covers its whole family).
fn check_addresses(
    intake_listen: &[SocketAddr],
    listen: &[SocketAddr],
    implicit: &[SocketAddr],
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    let mut seen: Vec<(&str, SocketAddr)> = intake_listen
        .iter()
        .map(|a| ("intake.listen", *a))
        .collect();
    for (key, list) in [
        ("intake.submission.listen", listen),
        ("intake.submission.implicit", implicit),
    ] {
        for (i, addr) in list.iter().enumerate() {
            if addr.port() == 0 {
                return Err(loc.element_error(
                    key,
                    i,
                    "port 0 would bind a random port; choose a port, e.g. 587 or 465",
                ));
            }
            for (other_key, other) in &seen {
                let same_port = other.is_ipv4() == addr.is_ipv4() && other.port() == addr.port();
                let overlap = same_port
                    && (other.ip() == addr.ip()
                        || other.ip().is_unspecified()
                        || addr.ip().is_unspecified());
                if overlap {
                    let why = format!(
                        "overlaps \"{other}\" of {other_key}: one address and port can only serve one kind of listener"
                    );
                    return Err(loc.element_error(key, i, &why));
                }
            }
            seen.push((key, *addr));
        }
    }
    Ok(())
}

fn duration(
    loc: &Locator<'_>,
    key: &str,
    written: Option<HumanDuration>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let d = written.map_or(default, |d| d.0);
    if d < min {
        return Err(loc.value_error(key, r#"must be at least 1 second; write e.g. "15m""#));
    }
    if d > max {
        let why = format!(
            "must be at most {}",
            super::units::format_duration(max).trim_matches('"')
        );
        return Err(loc.value_error(key, &why));
    }
    Ok(d)
}

fn load_tls(cert: &Path, key: &Path, loc: &Locator<'_>) -> Result<ServerTls, ConfigError> {
    let cert_key = "intake.submission.cert";
    let key_key = "intake.submission.key";
    let cert_pem = read_public(cert).map_err(|why| {
        loc.invalid(
            cert_key,
            loc.line_of(cert_key),
            format!("{cert_key} {} {why}", cert.display()),
        )
    })?;
    let key_pem = secrets::read_protected(key).map_err(|why| {
        loc.invalid(
            key_key,
            loc.line_of(key_key),
            format!("{key_key} {} {why}", key.display()),
        )
    })?;
    let config =
        crate::net::tls_server::server_config(&cert_pem, key_pem.as_bytes()).map_err(|why| {
            loc.invalid(
                cert_key,
                loc.first_line(&[cert_key, key_key]),
                format!(
                    "{cert_key} {} and {key_key} {}: {why}",
                    cert.display(),
                    key.display()
                ),
            )
        })?;
    Ok(ServerTls {
        cert_pem,
        key_pem: Secret::new(key_pem),
        config,
    })
}

/// Reads a file that is not secret (the certificate), bounded in size.
fn read_public(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = secrets::open(path)?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be examined: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file; name the PEM certificate file".to_owned());
    }
    let mut bytes = Vec::new();
    file.take(MAX_CERT_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_CERT_FILE {
        return Err(format!(
            "is larger than {} KiB; is it the right file?",
            MAX_CERT_FILE >> 10
        ));
    }
    Ok(bytes)
}

fn load_users(path: &Path, loc: &Locator<'_>) -> Result<Vec<User>, ConfigError> {
    let key = "intake.submission.users";
    let text = secrets::read_protected(path).map_err(|why| {
        loc.invalid(
            key,
            loc.line_of(key),
            format!("{key} {} {why}", path.display()),
        )
    })?;
    let users = parse_users(&text).map_err(|(line, why)| {
        loc.invalid_in(
            &path.display().to_string(),
            key,
            Some(line),
            format!("{key}: {why}"),
        )
    })?;
    if users.is_empty() {
        let why = format!(
            "{key} {} lists no user, so nobody could authenticate; add lines \"name:HASH\" with HASH from `postrelay hash-password`",
            path.display()
        );
        return Err(loc.invalid(key, loc.line_of(key), why));
    }
    Ok(users)
}

/// Parses the users file: `name:hash` per line; blank lines and lines
/// starting with `#` are ignored. Errors are `(line, why)` and never show
/// a hash.
pub(super) fn parse_users(text: &str) -> Result<Vec<User>, (usize, String)> {
    let mut users: Vec<(usize, User)> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        let content = l.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let Some((name, hash)) = content.split_once(':') else {
            return Err((
                line,
                "expected \"name:HASH\" (HASH from `postrelay hash-password`)".to_owned(),
            ));
        };
        check_user_name(name).map_err(|why| (line, why))?;
        check_hash(hash).map_err(|why| (line, format!("user \"{name}\": {why}")))?;
        if let Some((first, _)) = users.iter().find(|(_, u)| u.name == name) {
            return Err((
                line,
                format!("user \"{name}\" is listed again (first on line {first}); keep one"),
            ));
        }
        users.push((
            line,
            User {
                name: name.to_owned(),
                hash: Secret::new(hash),
            },
        ));
    }
    Ok(users.into_iter().map(|(_, u)| u).collect())
}

/// User names go into the `Received:` field and the logs: a conservative
/// character set keeps them from breaking either.
fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a line has an empty user name before the ':'".to_owned());
    }
    if name.len() > MAX_USER_NAME {
        return Err(format!(
            "a user name is longer than {MAX_USER_NAME} bytes, more than SMTP AUTH can carry"
        ));
    }
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-@+=".contains(&b));
    if !ok {
        return Err(format!(
            "user name {:?} may only hold ASCII letters, digits and . _ - @ + =",
            name.chars().take(64).collect::<String>()
        ));
    }
    Ok(())
}

/// Checks that `hash` is an argon2id PHC string with sane costs.
fn check_hash(hash: &str) -> Result<(), String> {
    let hint = "generate it with `postrelay hash-password`";
    if !hash.starts_with("$argon2id$") {
        return Err(format!(
            "the hash is not an argon2id PHC string (\"$argon2id$v=19$m=…\"); {hint}"
        ));
    }
    let parsed = PasswordHash::new(hash)
        .map_err(|e| format!("the argon2id hash is malformed ({e}); {hint}"))?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(format!(
            "the argon2id hash has no salt or no output; {hint}"
        ));
    }
    if parsed.version != Some(0x13) {
        return Err(format!(
            "the argon2id hash is not of version 19 (v=19); {hint}"
        ));
    }
    let params = argon2::Params::try_from(&parsed)
        .map_err(|e| format!("the argon2id parameters are invalid ({e}); {hint}"))?;
    if params.m_cost() > MAX_M_COST_KIB
        || params.t_cost() > MAX_T_COST
        || params.p_cost() > MAX_P_COST
    {
        return Err(format!(
            "the argon2id costs (m={}, t={}, p={}) exceed m={MAX_M_COST_KIB}, t={MAX_T_COST}, p={MAX_P_COST}: every AUTH attempt would cost that much; {hint}",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    Ok(())
}

/// Test files for a complete `[intake.submission]` table.
#[cfg(test)]
pub(super) mod fixtures {
    use super::super::tests::relay::Files;
    use std::path::PathBuf;

    /// A well-formed argon2id PHC string (of no particular password).
    pub const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3yqVH/7nVb2oM2b8DI3OiNKOpKTbWvnkmsONnTWJdaw";

    /// A certificate, its key (0600) and a users file (0600) with `alice`.
    pub fn files(files: &Files) -> (PathBuf, PathBuf, PathBuf) {
        let (cert, key) = crate::net::tls_server::tests::self_signed();
        (
            files.file("cert.pem", &cert, 0o644),
            files.secret("key.pem", &key),
            files.secret("users", &format!("# test\nalice:{HASH}\n")),
        )
    }

    /// The whole table, every key written.
    pub fn table(files: &Files) -> String {
        let (cert, key, users) = self::files(files);
        format!(
            "[intake.submission]\nlisten = [\"10.0.0.1:587\"]\nimplicit = [\"10.0.0.1:465\"]\n\
             cert = \"{}\"\nkey = \"{}\"\nusers = \"{}\"\nmax_auth_failures = 3\n\
             auth_lockout = \"10m\"\nauth_delay = \"250ms\"\n",
            cert.display(),
            key.display(),
            users.display()
        )
    }
}

#[cfg(test)]
mod tests;
