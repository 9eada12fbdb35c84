//! The transport map (`[routing] transport`), Postfix's `transport(5)`
//! read as text: which route a recipient takes.
//!
//! ```text
//! # key                 target
//! root@example.com      local:
//! example.com           local:
//! .internal.example     smtp:[mail.internal.example]:25
//! old.example           error:5.1.2 this domain no longer receives mail
//! noreply.example       discard:
//! *                     relay:ses
//! ```
//!
//! Keys: `user@domain`, `domain` (that domain only), `.domain` (its
//! subdomains only), `*` (everything else). A recipient is looked up as in
//! Postfix: the full address, then the domain, then each parent domain as
//! `.parent` (nearest first), then `*`.
//!
//! Targets:
//! - `local:` delivers on this host;
//! - `relay:NAME` uses the `[[relay]]` called NAME (with its credentials);
//! - `smtp:[host]:port`, `smtp:host:port`, `smtp:[host]`, `smtp:host`
//!   send to that host (default port 25). postrelay never looks up MX
//!   records: the host is resolved to its A/AAAA records, so the brackets
//!   (Postfix's "no MX lookup") change nothing;
//! - `error:5.x.y text` refuses (bounces) and `error:4.x.y text` defers,
//!   with that enhanced status; `error:text` means 5.0.0, as in Postfix;
//! - `discard:` drops the recipient, with a log line.
//!
//! Postfix forms that postrelay cannot honour are refused with the reason:
//! an empty transport (`:[host]`, `:`), `smtp:` without a next hop (an MX
//! lookup), other transports (`lmtp:`, `virtual:`, `retry:`, programs).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::table::{self, LineError, check_domain, fold, known_relay};

/// Where a transport entry sends mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `local:`
    Local,
    /// `relay:NAME`
    Relay(String),
    /// `smtp:[host]:port`: a domain (lower-cased) or an IP address
    /// (canonical form).
    Smtp { host: String, port: u16 },
    /// `error:5.x.y text`: `status` is the enhanced status code.
    Error { status: String, text: String },
    /// `discard:`
    Discard,
}

/// One line of the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key as matched (lower-cased): `user@domain`, `domain`,
    /// `.domain` or `*`.
    pub key: String,
    /// 1-based line number, for log lines and messages.
    pub line: usize,
    pub target: Target,
}

/// A parsed transport map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportMap {
    path: PathBuf,
    entries: BTreeMap<String, Entry>,
}

/// Default SMTP port of `smtp:` next hops.
const SMTP_PORT: u16 = 25;

/// Longest `error:` text: the reply line must stay under the 512 octets of
/// RFC 5321 §4.5.3.1.5 with the code and status in front.
const MAX_ERROR_TEXT: usize = 400;

const TARGETS: &str = "local:, relay:NAME, smtp:[host]:port, error:5.x.y text, discard:";

impl TransportMap {
    /// Parses the text of the map read from `path`; `relays` are the names
    /// of the configured `[[relay]]` tables.
    pub fn parse(text: &str, path: &Path, relays: &[String]) -> Result<TransportMap, LineError> {
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        for l in table::logical_lines(text)? {
            let err = |m: String| LineError::new(l.line, m);
            let (written, value) = table::key_value(&l.text);
            let key = parse_key(written).map_err(err)?;
            if value.is_empty() {
                return Err(err(format!(
                    "\"{key}\" has no target; write e.g. \"{key} relay:NAME\" (targets: {TARGETS})"
                )));
            }
            let target = parse_target(value, relays).map_err(|why| err(format!("{key}: {why}")))?;
            if let Some(first) = entries.get(&key) {
                return Err(err(format!(
                    "\"{key}\" is listed again (first on line {}); keep one of the two",
                    first.line
                )));
            }
            entries.insert(
                key.clone(),
                Entry {
                    key,
                    line: l.line,
                    target,
                },
            );
        }
        Ok(TransportMap {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The file the map was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, by key.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The relays the map names, for consistency checks.
    pub fn relays(&self) -> impl Iterator<Item = &str> {
        self.entries.values().filter_map(|e| match &e.target {
            Target::Relay(n) => Some(n.as_str()),
            _ => None,
        })
    }

    /// The entry for `address` (`user@domain`): the full address, the
    /// domain, then, when `wildcards` is set, the parent domains as
    /// `.parent` and `*`.
    pub fn lookup(&self, address: &str, wildcards: bool) -> Option<&Entry> {
        let full = fold(address);
        let domain = table::split_address(&full).map_or(Default::default(), |(_, d)| d);
        if let Some(e) = self.entries.get(&full) {
            return Some(e);
        }
        if domain.is_empty() {
            return None;
        }
        if let Some(e) = self.entries.get(domain.as_ref()) {
            return Some(e);
        }
        if !wildcards {
            return None;
        }
        // `a.b.example` → `.b.example`, `.example`: subdomain entries of
        // each parent, nearest first (never the domain itself).
        let mut rest = domain.as_ref();
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(e) = self.entries.get(&format!(".{parent}")) {
                return Some(e);
            }
            rest = parent;
        }
        self.entries.get("*")
    }
}

fn parse_key(written: &str) -> Result<String, String> {
    let key = fold(written);
    if key == "*" {
        return Ok(key);
    }
    if let Some(domain) = key.strip_prefix('@') {
        return Err(format!(
            "\"{written}\": @domain keys are not part of the transport table syntax; write \"{domain}\" for the domain, \".{domain}\" for its subdomains"
        ));
    }
    if key.contains('@') {
        return table::check_address(&key)
            .map(|a| fold(&a))
            .map_err(|why| format!("\"{written}\" is not an address: {why}"));
    }
    let (dot, domain) = match key.strip_prefix('.') {
        Some(d) => (".", d),
        None => ("", key.as_str()),
    };
    let domain = check_domain(domain).map_err(|why| {
        format!(
            "\"{written}\" is not a key: keys are user@domain, domain, .domain or *, and {domain:?} is not a domain name: {why}"
        )
    })?;
    Ok(format!("{dot}{domain}"))
}

fn parse_target(value: &str, relays: &[String]) -> Result<Target, String> {
    let Some((transport, nexthop)) = value.split_once(':') else {
        let hint = match fold(value).as_str() {
            t @ ("local" | "discard" | "smtp" | "relay" | "error") => {
                format!("; write \"{t}:\"")
            }
            _ => String::new(),
        };
        return Err(format!(
            "\"{value}\" is not transport:nexthop{hint} (postrelay's targets: {TARGETS})"
        ));
    };
    let nexthop = nexthop.trim();
    match fold(transport.trim()).as_str() {
        "" if nexthop.is_empty() => Err(format!(
            "\":\" (Postfix: the default transport and next hop) is not supported; remove the entry, or write relay:NAME (targets: {TARGETS})"
        )),
        "" => Err(format!(
            "\"{value}\" (Postfix: the default transport with next hop {nexthop}) is not supported; write smtp:{nexthop} to send to that host, or relay:NAME for a [[relay]]"
        )),
        "local" if nexthop.is_empty() => Ok(Target::Local),
        "local" => Err(format!(
            "\"{value}\": local: takes no next hop (local delivery is on this host); write \"local:\""
        )),
        "discard" if nexthop.is_empty() => Ok(Target::Discard),
        "discard" => Err(format!(
            "\"{value}\": discard: takes no text here (the log line names this entry); write \"discard:\""
        )),
        "relay" => relay_target(value, nexthop, relays),
        "smtp" => smtp_target(value, nexthop),
        "error" => error_target(nexthop),
        "retry" => Err(format!(
            "\"{value}\": Postfix's retry: transport is not available; write error:4.x.y text to defer"
        )),
        other => Err(format!(
            "\"{value}\": the transport \"{other}\" is not available in postrelay, which only relays (no lmtp, virtual, pipe or other master.cf transports); targets: {TARGETS}"
        )),
    }
}

fn relay_target(value: &str, name: &str, relays: &[String]) -> Result<Target, String> {
    if name.is_empty() {
        return Err(format!(
            "\"{value}\": relay: needs the name of a [[relay]] table, e.g. relay:{}",
            relays.first().map_or("NAME", String::as_str)
        ));
    }
    let looks_like_host = name.starts_with('[') || name.contains(['.', ':']);
    if looks_like_host && !relays.iter().any(|r| r == name) {
        return Err(format!(
            "\"{value}\": relay:NAME names a [[relay]] table here (Postfix's relay transport with a host is smtp:{name} in postrelay, or a [[relay]] with that host)"
        ));
    }
    known_relay(value, name, relays).map(Target::Relay)
}

fn smtp_target(value: &str, nexthop: &str) -> Result<Target, String> {
    if nexthop.is_empty() {
        return Err(format!(
            "\"{value}\": smtp: without a next hop means delivery to the recipient domain's MX hosts, which postrelay never looks up; write smtp:[host]:port, or relay:NAME"
        ));
    }
    if nexthop.contains([',', ' ', '\t']) {
        return Err(format!(
            "\"{value}\": only one next hop is supported; use [[relay]] tables (tried in order) for fallbacks"
        ));
    }
    let (host, port) = split_host_port(nexthop).map_err(|why| format!("\"{value}\": {why}"))?;
    Ok(Target::Smtp { host, port })
}

/// `[host]:port`, `[host]`, `host:port` or `host`, with `[ipv6:…]` and
/// `[2001:db8::1]` for IPv6.
fn split_host_port(nexthop: &str) -> Result<(String, u16), String> {
    let (host, port, bracketed) = if let Some(rest) = nexthop.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or("a '[' without its ']'; write smtp:[host]:port")?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or("write the port after the ']' as :port")?,
            ),
        };
        (inner, port, true)
    } else {
        match nexthop.split_once(':') {
            Some((h, p)) if p.contains(':') => {
                return Err(format!(
                    "write an IPv6 address in brackets: smtp:[{h}:{p}]:25"
                ));
            }
            Some((h, p)) => (h, Some(p), false),
            None => (nexthop, None, false),
        }
    };
    let port = match port {
        None => SMTP_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{p:?} is not a port number from 1 to 65535")),
        },
    };
    let v6 = host
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("ipv6:"))
        .map(|_| &host[5..]);
    if let Some(v6) = v6 {
        let ip: Ipv6Addr = v6
            .parse()
            .map_err(|_| format!("{v6:?} is not an IPv6 address"))?;
        return Ok((ip.to_string(), port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if ip.is_ipv6() && !bracketed {
            return Err(format!(
                "write an IPv6 address in brackets: smtp:[{ip}]:{port}"
            ));
        }
        return Ok((ip.to_string(), port));
    }
    let host = check_domain(host).map_err(|why| format!("{host:?} is not a host name: {why}"))?;
    Ok((host, port))
}

fn error_target(nexthop: &str) -> Result<Target, String> {
    let (first, rest) = match nexthop.split_once([' ', '\t']) {
        Some((f, r)) => (f, r.trim()),
        None => (nexthop, ""),
    };
    let (status, text) = if first.starts_with(|c: char| c.is_ascii_digit()) {
        let status = check_status(first).map_err(|why| {
            format!("\"error:{nexthop}\": {why}; write e.g. error:5.1.1 text (or 4.x.y to defer)")
        })?;
        (status, rest)
    } else {
        ("5.0.0".to_owned(), nexthop)
    };
    if let Some(c) = text.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!(
            "the error text contains {c:?}; an SMTP reply text is printable ASCII"
        ));
    }
    if text.len() > MAX_ERROR_TEXT {
        return Err(format!(
            "the error text is {} characters; at most {MAX_ERROR_TEXT} fit in a reply line",
            text.len()
        ));
    }
    let text = if text.is_empty() {
        if status.starts_with('4') {
            "mail to this address is deferred".to_owned()
        } else {
            "mail to this address is not accepted".to_owned()
        }
    } else {
        text.to_owned()
    };
    Ok(Target::Error { status, text })
}

/// An RFC 3463 status `class.subject.detail` with class 4 or 5.
fn check_status(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split('.').collect();
    let numeric = |p: &str| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
    if parts.len() != 3 || !parts.iter().all(|p| numeric(p)) {
        return Err(format!(
            "{s:?} is not an enhanced status code class.subject.detail"
        ));
    }
    if parts[0] != "4" && parts[0] != "5" {
        return Err(format!(
            "{s:?} has class {}, but only 4 (defer) or 5 (refuse) make sense here",
            parts[0]
        ));
    }
    Ok(s.to_owned())
}
