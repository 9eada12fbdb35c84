//! The `smtp:[host]:port` next hops of the transport map: which settings
//! each one is sent with, and what `check-config` says about every route.
//!
//! A next hop whose host and port are those of a `[[relay]]` is that relay
//! (its TLS mode, security, credentials, timeouts and pool). Any other next
//! hop gets a relay of its own with the defaults of a `[[relay]]`:
//! `tls = "auto"`, `security = "verify"` against the system's CAs, and the
//! `delivery.sasl_passwd` entry for its host and port as credentials, so
//! the guide's `* smtp:[provider]:587` plus a `sasl_passwd` line
//! authenticates over verified TLS. To send to a next hop differently,
//! write a `[[relay]]` with its host and port.
//!
//! **Not for:** choosing the route (the router) or sending (the delivery
//! engine, which looks the next hop up with [`RelayConfig::is_at`]).

use std::net::IpAddr;

use super::relay::{IDLE_TIMEOUT, MAX_CONNECTIONS, MAX_MESSAGES_PER_CONNECTION};
use super::sasl_passwd::{self, SaslPasswd};
use super::validate::Locator;
use super::{Config, ConfigError, Credentials, DeliverySettings, RelayConfig, RelayTimeouts};
use super::{RoutingSettings, Security, TlsMode};
use crate::route::Target;

impl RelayConfig {
    /// Whether this relay is reached at `host` (a name, any case, or an IP
    /// address in any spelling) and `port`.
    pub fn is_at(&self, host: &str, port: u16) -> bool {
        self.port == port && same_host(&self.host, host)
    }
}

/// Whether two host names or IP addresses name the same host.
fn same_host(a: &str, b: &str) -> bool {
    let bare = |s: &str| s.trim_start_matches('[').trim_end_matches(']').to_owned();
    let (a, b) = (bare(a), bare(b));
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.eq_ignore_ascii_case(&b),
    }
}

/// The relays of the transport map's `smtp:` next hops that no `[[relay]]`
/// stands for, one per host and port. A next hop without credentials while
/// `delivery.sasl_passwd` has an entry for its host at another port is
/// refused: its mail would go out without AUTH and be refused (530), or,
/// worse, be relayed unauthenticated.
pub(super) fn next_hops(
    routing: &RoutingSettings,
    relays: &[RelayConfig],
    delivery: &DeliverySettings,
    sasl: Option<&SaslPasswd>,
    loc: &Locator<'_>,
) -> Result<Vec<RelayConfig>, ConfigError> {
    let Some(transport) = &routing.transport else {
        return Ok(Vec::new());
    };
    let mut hops: Vec<RelayConfig> = Vec::new();
    for entry in transport.entries() {
        let Target::Smtp { host, port } = &entry.target else {
            continue;
        };
        let known = |r: &RelayConfig| r.is_at(host, *port);
        if relays.iter().any(known) || hops.iter().any(known) {
            continue;
        }
        let credentials = sasl
            .and_then(|t| t.lookup(host, *port))
            .zip(delivery.sasl_passwd.as_ref())
            .map(|(e, path)| Credentials {
                username: e.username.clone(),
                password: e.password.clone(),
                source: path.clone(),
            });
        if credentials.is_none()
            && let Some(other) = sasl.and_then(|t| t.entry_for_host(host))
        {
            let message = format!(
                "routing.transport: {} smtp:[{host}]:{port} would send without AUTH: \
                 delivery.sasl_passwd has credentials for this host only as \"{}\" (line {}); \
                 write the port of that entry in the transport map, or add a line \
                 \"{} user:password\"",
                entry.key,
                other.key,
                other.line,
                sasl_passwd::lookup_keys(host, *port)[0],
            );
            let origin = transport.path().display().to_string();
            return Err(loc.invalid_in(&origin, "routing.transport", Some(entry.line), message));
        }
        hops.push(RelayConfig {
            name: format!("smtp:[{host}]:{port}"),
            provider: None,
            host: host.clone(),
            port: *port,
            tls: TlsMode::Auto,
            security: Security::Verify,
            ca_file: None,
            tls_name: None,
            fallbacks: Vec::new(),
            credentials,
            allow_plaintext_auth: false,
            oauth: None,
            verbose: false,
            max_connections: MAX_CONNECTIONS,
            max_messages_per_connection: MAX_MESSAGES_PER_CONNECTION,
            idle_timeout: IDLE_TIMEOUT,
            timeouts: RelayTimeouts::default(),
            limits: super::RelayLimits::none(format!("smtp:[{host}]:{port}")),
        });
    }
    Ok(hops)
}

/// What a relay does with a session: `tls starttls, security verify, AUTH
/// as "user" (from FILE)`.
fn does(r: &RelayConfig) -> String {
    let tls = match r.security {
        Security::None => "no TLS".to_owned(),
        Security::May => format!("tls {}, TLS if offered (security may)", r.tls.as_str()),
        Security::Encrypt => format!(
            "tls {}, TLS required, certificate not checked (security encrypt)",
            r.tls.as_str()
        ),
        Security::Verify => format!(
            "tls {}, TLS required, certificate verified (security verify{})",
            r.tls.as_str(),
            r.ca_file
                .as_ref()
                .map_or(String::new(), |p| format!(", ca_file {}", p.display()))
        ),
    };
    let auth = match &r.credentials {
        Some(c) => format!("AUTH as \"{}\" (from {})", c.username, c.source.display()),
        None => "no AUTH".to_owned(),
    };
    format!("{tls}, {auth}")
}

impl Config {
    /// Every route and what its next hop does (TLS level, AUTH user or
    /// none), as comment lines for `check-config`.
    pub fn describe_routes(&self) -> String {
        let mut o = String::from("\n# Routes, and what each next hop does:\n");
        let relay = |name: &str| self.relays.iter().find(|r| r.name == name);
        let default = if self.relays.is_empty() {
            "no [[relay]]: such mail waits in the queue".to_owned()
        } else {
            let list: Vec<String> = self
                .relays
                .iter()
                .map(|r| format!("relay \"{}\" ({})", r.name, does(r)))
                .collect();
            list.join("; then ")
        };
        o.push_str(&format!("# - mail without a transport entry: {default}\n"));
        let Some(transport) = &self.routing.transport else {
            return o;
        };
        for e in transport.entries() {
            let what = match &e.target {
                Target::Relay(name) => match relay(name) {
                    Some(r) => {
                        let mut what = format!("relay \"{name}\" ({})", does(r));
                        for f in r.fallbacks.iter().filter_map(|f| relay(f)) {
                            what.push_str(&format!("; then relay \"{}\" ({})", f.name, does(f)));
                        }
                        what
                    }
                    None => format!("relay \"{name}\""),
                },
                Target::Smtp { host, port } => {
                    let named = self.relays.iter().find(|r| r.is_at(host, *port));
                    let hop = self.next_hops.iter().find(|r| r.is_at(host, *port));
                    match (named, hop) {
                        (Some(r), _) => {
                            format!("smtp:[{host}]:{port} = relay \"{}\" ({})", r.name, does(r))
                        }
                        (None, Some(r)) => format!("smtp:[{host}]:{port} ({})", does(r)),
                        (None, None) => format!("smtp:[{host}]:{port}"),
                    }
                }
                Target::Local => "delivered on this host".to_owned(),
                Target::Error { status, text } => format!("refused: {status} {text}"),
                Target::Discard => "discarded".to_owned(),
            };
            o.push_str(&format!(
                "# - {}:{} {}: {what}\n",
                transport.path().display(),
                e.line,
                e.key
            ));
        }
        o
    }
}
