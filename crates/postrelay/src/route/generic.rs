//! Tables keyed by sender address: the generic map (`[routing] generic`,
//! Postfix's `smtp_generic_maps`) and the sender-dependent relay map
//! (`[routing] sender_relay`, Postfix's
//! `sender_dependent_relayhost_maps`).
//!
//! ```text
//! # generic: rewrite local senders for mail that leaves through a relay
//! root@myhost.example         alerts@example.com
//! @localhost                  alerts@example.com
//! @myhost.example             @example.com
//!
//! # sender_relay: which [[relay]] carries mail from a sender
//! billing@example.com         relay:billing
//! @example.org                relay:org
//! ```
//!
//! Keys are `user@domain` (that address) or `@domain` (any other address
//! of that domain), looked up in that order, case-insensitively. A bare
//! name (`root`) is completed with `@hostname` before the lookup, as
//! Postfix appends `$myorigin`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::table::{self, LineError, check_address, check_domain, fold, known_relay};

/// A table keyed by `user@domain` and `@domain`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AddressKeyed<V> {
    path: PathBuf,
    /// Keys lower-cased, with the line they are on.
    entries: BTreeMap<String, (usize, V)>,
}

impl<V> AddressKeyed<V> {
    fn parse(
        text: &str,
        path: &Path,
        example: &str,
        mut value: impl FnMut(&str, &str) -> Result<V, String>,
    ) -> Result<AddressKeyed<V>, LineError> {
        let mut entries: BTreeMap<String, (usize, V)> = BTreeMap::new();
        for l in table::logical_lines(text)? {
            let err = |m: String| LineError::new(l.line, m);
            let (written, v) = table::key_value(&l.text);
            let key = address_key(written).map_err(err)?;
            if v.is_empty() {
                return Err(err(format!(
                    "\"{key}\" has no value; write e.g. \"{key} {example}\""
                )));
            }
            let v = value(&key, v).map_err(|why| err(format!("{key}: {why}")))?;
            if let Some((first, _)) = entries.get(&key) {
                return Err(err(format!(
                    "\"{key}\" is listed again (first on line {first}); keep one of the two"
                )));
            }
            entries.insert(key, (l.line, v));
        }
        Ok(AddressKeyed {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The entry for a complete address: `user@domain`, then `@domain`.
    fn lookup(&self, address: &str) -> Option<(&str, usize, &V)> {
        let full = fold(address);
        let (_, domain) = table::split_address(&full)?;
        let at_domain = format!("@{domain}");
        [full, at_domain]
            .into_iter()
            .find_map(|k| self.entries.get_key_value(&k))
            .map(|(k, (line, v))| (k.as_str(), *line, v))
    }
}

fn address_key(written: &str) -> Result<String, String> {
    if let Some(domain) = written.strip_prefix('@') {
        return check_domain(domain)
            .map(|d| format!("@{d}"))
            .map_err(|why| format!("\"{written}\": {domain:?} is not a domain name: {why}"));
    }
    if written.contains('@') {
        return check_address(written)
            .map(|a| fold(&a))
            .map_err(|why| format!("\"{written}\" is not an address: {why}"));
    }
    if written == "*" {
        return Err(
            "\"*\" is not a key of this table; keys are user@domain and @domain".to_owned(),
        );
    }
    Err(format!(
        "\"{written}\" is not a key: keys are user@domain and @domain (write \"@{written}\" for a domain, \"{written}@localhost\" and \"{written}@HOSTNAME\" for a local user)"
    ))
}

/// What a generic entry rewrites an address to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Replacement {
    /// A complete address.
    Address(String),
    /// `@domain`: the same local part in another domain.
    Domain(String),
}

/// The generic map: the sender addresses that mail leaving through a relay
/// shows instead of local ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenericMap(AddressKeyed<Replacement>);

impl GenericMap {
    /// Parses the text of the map read from `path`. Values are complete
    /// addresses, or `@domain` to keep the local part.
    pub fn parse(text: &str, path: &Path) -> Result<GenericMap, LineError> {
        AddressKeyed::parse(text, path, "alerts@example.com", |_, v| {
            if let Some(domain) = v.strip_prefix('@') {
                return check_domain(domain)
                    .map(Replacement::Domain)
                    .map_err(|why| format!("\"{v}\": {domain:?} is not a domain name: {why}"));
            }
            check_address(v).map(Replacement::Address).map_err(|why| {
                format!(
                    "\"{v}\" is not an address: {why}; write a complete address (alerts@example.com) or @domain"
                )
            })
        })
        .map(GenericMap)
    }

    /// The file the map was read from.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// The domains of the addresses the map rewrites to, lower-cased and
    /// sorted (for `postrelay doctor`'s sending-domain checks).
    pub fn domains(&self) -> Vec<String> {
        let mut domains: Vec<String> = self
            .0
            .entries
            .values()
            .filter_map(|(_, v)| match v {
                Replacement::Domain(d) => Some(d.to_ascii_lowercase()),
                Replacement::Address(a) => a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()),
            })
            .collect();
        domains.sort();
        domains.dedup();
        domains
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.entries.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.entries.is_empty()
    }

    /// The rewritten form of a complete address, if an entry matches.
    pub fn lookup(&self, address: &str) -> Option<String> {
        let (_, _, r) = self.0.lookup(address)?;
        Some(match r {
            Replacement::Address(a) => a.clone(),
            Replacement::Domain(d) => {
                let (local, _) = address.rsplit_once('@')?;
                format!("{local}@{d}")
            }
        })
    }
}

/// The sender-dependent relay map: which `[[relay]]` carries mail from a
/// sender, for mail that no transport entry routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderRelayMap(AddressKeyed<String>);

impl SenderRelayMap {
    /// Parses the text of the map read from `path`; values are
    /// `relay:NAME`, with NAME among `relays`.
    pub fn parse(text: &str, path: &Path, relays: &[String]) -> Result<SenderRelayMap, LineError> {
        let example = format!("relay:{}", relays.first().map_or("NAME", String::as_str));
        AddressKeyed::parse(text, path, &example, |_, v| {
            let Some(name) = v.strip_prefix("relay:") else {
                return Err(format!(
                    "\"{v}\": the value names a [[relay]] table (each has its own host and credentials): write {example}; for a new host, add a [[relay]] for it"
                ));
            };
            known_relay(v, name.trim(), relays)
        })
        .map(SenderRelayMap)
    }

    /// The file the map was read from.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.entries.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.entries.is_empty()
    }

    /// The relays the map names, for consistency checks.
    pub fn relays(&self) -> impl Iterator<Item = &str> {
        self.0.entries.values().map(|(_, name)| name.as_str())
    }

    /// The relay for a complete sender address, if an entry matches.
    pub fn lookup(&self, address: &str) -> Option<&str> {
        self.0.lookup(address).map(|(_, _, name)| name.as_str())
    }
}
