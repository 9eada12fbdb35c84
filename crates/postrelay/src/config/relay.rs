//! Defaults and checks of `[[relay]]` tables; the relay's credentials
//! are read by `config::credentials`, `[delivery]` and `[bounce]` by
//! `config::delivery`.
//!
//! Messages about a relay start with `relay "name":`; messages about a
//! secret file name the file, what is wrong with it and the command that
//! fixes it, and never contain the secret.

use std::io::Read;
use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use super::credentials::{Target, credentials};
use super::file::RelayFile;
use super::oauth::oauth_user;
use super::relay_timeouts::{relay_duration, timeouts};
use super::resolve::{check_domain, non_empty_path};
use super::sasl_passwd::SaslPasswd;
use super::secrets;
use super::validate::Locator;
use super::{ConfigError, Credentials, DeliverySettings, RelayConfig, Security, TlsMode};

const PORT_IMPLICIT: u16 = 465;
const PORT_STARTTLS: u16 = 587;
pub(super) const MAX_CONNECTIONS: usize = 10;
pub(super) const MAX_MESSAGES_PER_CONNECTION: u32 = 100;
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

const PEM_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";

/// Largest `ca_file` read: CA bundles are a few hundred KiB.
const MAX_CA_FILE: u64 = 16 << 20;

pub(super) fn relays(
    files: Vec<RelayFile>,
    delivery: &DeliverySettings,
    sasl: Option<&SaslPasswd>,
    spool: &Path,
    loc: &Locator<'_>,
) -> Result<Vec<RelayConfig>, ConfigError> {
    // Duplicate names first, so that the message does not depend on
    // whether the second relay has other problems.
    for (i, file) in files.iter().enumerate() {
        let earlier = files[..i]
            .iter()
            .position(|f| f.name.is_some() && f.name == file.name);
        if let Some(j) = earlier {
            let first = loc
                .item_line("relay", j)
                .map_or(String::new(), |l| format!(" (line {l})"));
            let why = format!(
                "is also the name of relay #{}{first}; relay names must be unique",
                j + 1
            );
            return Err(loc.value_error(&format!("relay[{i}].name"), &why));
        }
    }
    let names: Vec<Option<String>> = files.iter().map(|f| f.name.clone()).collect();
    let relays: Vec<RelayConfig> = files
        .into_iter()
        .enumerate()
        .map(|(i, file)| relay(i, file, delivery, sasl, spool, loc))
        .collect::<Result<_, _>>()?;
    for (i, r) in relays.iter().enumerate() {
        check_fallbacks(i, r, &names, loc)?;
        let key = format!("relay[{i}].limits.spill_to");
        let spill = r.limits.spill_to.as_deref();
        super::relay_limits::check_spill(loc, &key, &r.name, spill, &names)?;
    }
    Ok(relays)
}

/// Each fallback of relay `i` names another relay, once.
fn check_fallbacks(
    i: usize,
    r: &RelayConfig,
    names: &[Option<String>],
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    let key = format!("relay[{i}].fallbacks");
    for (j, f) in r.fallbacks.iter().enumerate() {
        let why = if *f == r.name {
            Some(format!(
                "\"{f}\" is this relay itself; name the relays to try after it"
            ))
        } else if r.fallbacks[..j].contains(f) {
            Some(format!("\"{f}\" is listed twice"))
        } else if !names.iter().any(|n| n.as_deref() == Some(f.as_str())) {
            let known: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
            Some(format!(
                "\"{f}\" is not a [[relay]] name (the relays are: {})",
                known.join(", ")
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(loc.value_error(&key, &why));
        }
    }
    Ok(())
}

fn relay(
    i: usize,
    mut file: RelayFile,
    delivery: &DeliverySettings,
    sasl: Option<&SaslPasswd>,
    spool: &Path,
    loc: &Locator<'_>,
) -> Result<RelayConfig, ConfigError> {
    let key = |field: &str| format!("relay[{i}].{field}");
    let label = loc.item_label("relay", i);

    let name = relay_name(loc, &key("name"), file.name.take())?;
    let provider = preset(loc, &key("provider"), file.provider.take())?;

    let host = host_of(loc, &key("host"), file.host.take(), provider.as_ref())?;

    let t = transport(loc, i, &label, &mut file, provider.as_ref())?;
    let (port, security, allow_plaintext_auth) = (t.port, t.security, t.allow_plaintext_auth);

    let (max_connections, max_messages_per_connection) = connection_limits(
        loc,
        i,
        file.max_connections,
        file.max_messages_per_connection,
    )?;
    let idle_timeout = relay_duration(loc, &key("idle_timeout"), file.idle_timeout, IDLE_TIMEOUT)?;
    let timeouts = timeouts(loc, i, file.timeouts)?;

    let target = Target {
        i,
        label: &label,
        name: &name,
        host: &host,
        port,
    };
    let username = username(
        file.username,
        provider.as_ref(),
        file.password_file.is_some(),
    );
    let (credentials, oauth) = match file.oauth {
        Some(o) => {
            let plaintext = security == Security::None && !allow_plaintext_auth;
            let user = oauth_user(loc, i, username, file.password_file.is_some(), plaintext)?;
            let o = super::oauth::oauth(i, &name, user, o, provider.as_ref(), spool, loc)?;
            (None, Some(o))
        }
        None => (
            credentials(&target, username, file.password_file, delivery, sasl, loc)?,
            None,
        ),
    };
    let login = credentials
        .as_ref()
        .map(|c| c.username.as_str())
        .or(oauth.as_ref().map(|o| o.username.as_str()));
    let limits = limits(loc, &target, login, provider.as_ref(), file.limits)?;
    if let Some(c) = &credentials
        && security == Security::None
        && !allow_plaintext_auth
    {
        return Err(clear_text_credentials(loc, i, &label, c, delivery));
    }

    Ok(RelayConfig {
        name,
        provider,
        host,
        port,
        tls: t.tls,
        security,
        ca_file: t.ca_file,
        tls_name: t.tls_name,
        fallbacks: file.fallbacks.unwrap_or_default(),
        credentials,
        allow_plaintext_auth,
        oauth,
        verbose: file.verbose.unwrap_or(false),
        max_connections,
        max_messages_per_connection,
        idle_timeout,
        timeouts,
        limits,
    })
}

/// `relay.limits`, counted per login (password or token), else per
/// relay name.
fn limits(
    loc: &Locator<'_>,
    target: &Target<'_>,
    login: Option<&str>,
    preset: Option<&super::Preset>,
    written: super::relay_limits::RelayLimitsFile,
) -> Result<super::RelayLimits, ConfigError> {
    let owner = super::relay_limits::Owner {
        key: &format!("relay[{}]", target.i),
        name: target.name,
        login: login.map(|u| format!("{u}@{}", target.host)),
    };
    let preset_limits = preset.map(|p| p.quota).unwrap_or_default();
    super::relay_limits::relay_limits(loc, &owner, preset_limits, written)
}

/// How the relay is reached: its port and TLS settings.
struct Transport {
    port: u16,
    tls: TlsMode,
    security: Security,
    ca_file: Option<std::path::PathBuf>,
    tls_name: Option<String>,
    allow_plaintext_auth: bool,
}

/// `port`, `tls`, `security`, `ca_file`, `tls_name` and
/// `allow_plaintext_auth` (taken from `file`), else the preset's.
fn transport(
    loc: &Locator<'_>,
    i: usize,
    label: &str,
    file: &mut RelayFile,
    provider: Option<&super::Preset>,
) -> Result<Transport, ConfigError> {
    let tls = preset_or(file.tls.take().map(|w| w.0), provider.map(|p| p.tls));
    let tls = tls.unwrap_or(TlsMode::Auto);
    let security = file.security.take().map_or(Security::Verify, |w| w.0);
    let written_port = preset_or(file.port, provider.map(|p| p.port));
    let port = port(loc, i, label, written_port, tls, security)?;

    let ca_file = file
        .ca_file
        .take()
        .map(|p| ca_file(loc, i, label, security, p))
        .transpose()?;

    let tls_name = file
        .tls_name
        .take()
        .map(|n| tls_name(loc, i, label, security, &n))
        .transpose()?;

    let allow_plaintext_auth = file.allow_plaintext_auth.unwrap_or(false);
    if allow_plaintext_auth {
        check_plaintext_auth(loc, i, label, security)?;
    }
    Ok(Transport {
        port,
        tls,
        security,
        ca_file,
        tls_name,
        allow_plaintext_auth,
    })
}

/// `tls_name`: only with `security = "verify"` (nothing else checks a
/// name), and a DNS name or an IP address.
fn tls_name(
    loc: &Locator<'_>,
    i: usize,
    label: &str,
    security: Security,
    n: &str,
) -> Result<String, ConfigError> {
    let key = |field: &str| format!("relay[{i}].{field}");
    let k = key("tls_name");
    if security != Security::Verify {
        let line = loc.first_line(&[&k, &key("security")]);
        let message = format!(
            r#"{label}: tls_name is the name the certificate is verified against, which {} does not do; write security = "verify", or remove tls_name"#,
            loc.describe(&key("security"), &format!("\"{}\"", security.as_str())),
        );
        return Err(loc.invalid(&k, line, message));
    }
    let name = match n.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => super::resolve::check_domain(n).map_err(|why| {
            loc.value_error(&k, &format!("{why}; write the DNS name (or IP address) the relay's certificate is issued for"))
        })?,
    };
    Ok(name)
}

/// The relay's own value, else the preset's.
fn preset_or<T>(own: Option<T>, preset: Option<T>) -> Option<T> {
    own.or(preset)
}

/// `provider`: a known preset (see `config::presets`).
fn preset(
    loc: &Locator<'_>,
    key: &str,
    written: Option<String>,
) -> Result<Option<super::Preset>, ConfigError> {
    written
        .map(|p| super::presets::lookup(&p).map_err(|why| loc.value_error(key, &why)))
        .transpose()
}

/// The relay's name: required, and made of characters that read well
/// in log lines.
fn relay_name(
    loc: &Locator<'_>,
    key: &str,
    written: Option<String>,
) -> Result<String, ConfigError> {
    let Some(name) = written else {
        return Err(loc.missing_error(
            key,
            r#"name is required, e.g. name = "primary"; it names the relay in logs and messages"#,
        ));
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(loc.value_error(
            key,
            "use only lower-case letters, digits, '-' and '_' (it appears in log lines)",
        ));
    }
    Ok(name)
}

/// The relay's port (by default the one for `tls`); `tls = "implicit"`
/// cannot go with `security = "none"`.
fn port(
    loc: &Locator<'_>,
    i: usize,
    label: &str,
    written: Option<u16>,
    tls: TlsMode,
    security: Security,
) -> Result<u16, ConfigError> {
    let key = |field: &str| format!("relay[{i}].{field}");
    let port = match written {
        Some(0) => {
            return Err(loc.value_error(&key("port"), "must be a port number from 1 to 65535"));
        }
        Some(p) => p,
        None if tls == TlsMode::Implicit => PORT_IMPLICIT,
        None => PORT_STARTTLS,
    };
    if tls == TlsMode::Implicit && security == Security::None {
        let line = loc.first_line(&[&key("security"), &key("tls")]);
        let message = format!(
            r#"{label}: tls = "implicit" starts every session with TLS, but security = "none" means no TLS; write security = "verify" (or "encrypt"), or tls = "starttls" for a relay that is spoken to in clear text"#
        );
        return Err(loc.invalid(&key("security"), line, message));
    }
    Ok(port)
}

/// `relay[i].ca_file`: only with `security = "verify"`, and a readable
/// file of PEM certificates.
fn ca_file(
    loc: &Locator<'_>,
    i: usize,
    label: &str,
    security: Security,
    written: String,
) -> Result<std::path::PathBuf, ConfigError> {
    let k = format!("relay[{i}].ca_file");
    let security_key = format!("relay[{i}].security");
    let path = non_empty_path(loc, &k, written)?;
    if security != Security::Verify {
        let line = loc.first_line(&[&k, &security_key]);
        let message = format!(
            r#"{label}: ca_file is only used to verify the relay's certificate, which {} does not do; write security = "verify", or remove ca_file"#,
            loc.describe(&security_key, &format!("\"{}\"", security.as_str())),
        );
        return Err(loc.invalid(&k, line, message));
    }
    check_ca_file(&path).map_err(|why| {
        let message = format!("{label}: ca_file {} {why}", path.display());
        loc.invalid(&k, loc.line_of(&k), message)
    })?;
    Ok(path)
}

/// `allow_plaintext_auth = true` is only for `security = "none"`: with
/// any other level it is either dangerous or has no effect.
fn check_plaintext_auth(
    loc: &Locator<'_>,
    i: usize,
    label: &str,
    security: Security,
) -> Result<(), ConfigError> {
    let why = match security {
        Security::None => return Ok(()),
        Security::May => {
            "the credentials would cross the network in clear text whenever the relay does not offer STARTTLS (or an attacker strips it from its answer); use TLS: remove allow_plaintext_auth"
        }
        _ => {
            "TLS is always on before AUTH with this security level, so it has no effect; it is only accepted with security = \"none\": remove it"
        }
    };
    let key = format!("relay[{i}].allow_plaintext_auth");
    let security_key = format!("relay[{i}].security");
    let line = loc.first_line(&[&key, &security_key]);
    let message = format!(
        "{label}: allow_plaintext_auth = true with {}: {why}",
        loc.describe(&security_key, &format!("\"{}\"", security.as_str())),
    );
    Err(loc.invalid(&key, line, message))
}

/// The mistake of `security = "none"` with credentials and without
/// `allow_plaintext_auth`: they would cross the network in clear text.
fn clear_text_credentials(
    loc: &Locator<'_>,
    i: usize,
    label: &str,
    c: &Credentials,
    delivery: &DeliverySettings,
) -> ConfigError {
    let key = |field: &str| format!("relay[{i}].{field}");
    let from = if Some(&c.source) == delivery.sasl_passwd.as_ref() {
        format!(" (from delivery.sasl_passwd {})", c.source.display())
    } else {
        String::new()
    };
    let line = loc.first_line(&[&key("security"), &key("username"), &key("password_file")]);
    let message = format!(
        r#"{label}: security = "none" would send the credentials{from} across the network in clear text; use TLS (security = "verify"), or, only if the path to the relay is trusted (loopback, a VPN), set allow_plaintext_auth = true"#
    );
    loc.invalid(&key("security"), line, message)
}

/// The relay's host: a DNS name (lower-cased) or an IP address (canonical),
/// with Postfix's brackets (`[smtp.example.com]`, `[ipv6:2001:db8::1]`)
/// removed. The brackets change nothing: postrelay never looks up MX
/// records.
fn relay_host(written: &str) -> Result<String, String> {
    let inner = written
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(written);
    if let Ok(ip) = inner.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if let Some(v6) = inner
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("ipv6:"))
        .and_then(|_| inner[5..].parse::<Ipv6Addr>().ok())
    {
        return Ok(v6.to_string());
    }
    if let Some((h, p)) = written.rsplit_once(':')
        && p.parse::<u16>().is_ok()
        && !h.is_empty()
    {
        let h = h
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(h);
        return Err(format!(
            r#"write the port separately: host = "{h}" and port = {p}"#
        ));
    }
    check_domain(inner).map_err(|why| format!("not a host name or IP address: {why}"))
}

fn check_ca_file(path: &Path) -> Result<(), String> {
    let file = secrets::open(path)?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be examined: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file; name a file of PEM certificates".to_owned());
    }
    let mut bytes = Vec::new();
    file.take(MAX_CA_FILE)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    let has_pem = bytes
        .windows(PEM_CERTIFICATE.len())
        .any(|w| w == PEM_CERTIFICATE.as_bytes());
    if !has_pem {
        return Err(format!(
            "holds no PEM certificate (no \"{PEM_CERTIFICATE}\" line); give the CA certificates in PEM format (convert DER with: openssl x509 -inform der -in CA.der -out CA.pem)"
        ));
    }
    Ok(())
}

/// `max_connections` and `max_messages_per_connection`: at least 1 each.
fn connection_limits(
    loc: &Locator<'_>,
    i: usize,
    connections: Option<usize>,
    messages: Option<u32>,
) -> Result<(usize, u32), ConfigError> {
    let key = |field: &str| format!("relay[{i}].{field}");
    let max_connections = connections.unwrap_or(MAX_CONNECTIONS);
    if max_connections == 0 {
        let why = "must be at least 1, or nothing could be sent through this relay";
        return Err(loc.value_error(&key("max_connections"), why));
    }
    let max_messages = messages.unwrap_or(MAX_MESSAGES_PER_CONNECTION);
    if max_messages == 0 {
        let why = "must be at least 1 (1 closes the connection after every message)";
        return Err(loc.value_error(&key("max_messages_per_connection"), why));
    }
    Ok((max_connections, max_messages))
}

/// The relay's user name: its own, else the preset's, which goes with a
/// password_file only (without one, the sasl_passwd entry, if any, names
/// the user).
fn username(
    written: Option<String>,
    preset: Option<&super::Preset>,
    password_file: bool,
) -> Option<String> {
    written.or_else(|| {
        preset
            .and_then(|p| p.username)
            .filter(|_| password_file)
            .map(str::to_owned)
    })
}

/// `host`, else the preset's: required, and a name or an IP address.
fn host_of(
    loc: &Locator<'_>,
    key: &str,
    written: Option<String>,
    preset: Option<&super::Preset>,
) -> Result<String, ConfigError> {
    let host = preset_or(written, preset.map(|p| p.host.clone())).ok_or_else(|| {
        loc.missing_error(
            key,
            r#"host is required: the relay's name or IP address, e.g. host = "smtp.example.com" (or a known provider, e.g. provider = "ses:us-east-1")"#,
        )
    })?;
    relay_host(&host).map_err(|why| loc.value_error(key, &why))
}
