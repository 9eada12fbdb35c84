//! Entry points shared by the cargo-fuzz targets in `fuzz/` and the
//! corpus test (`tests/fuzz_corpus.rs`): each takes arbitrary bytes, runs
//! one parser of the files postrelay reads, and asserts what must hold of
//! its result, panicking when it does not; each returns whether the parser
//! accepted the input (for the generic target: either of its two maps). Not a supported API, and not for
//! anything but fuzzing: the hooks into private parsers exist for this.
//!
//! Bytes become text the way the loaders make it: the configuration file
//! and `sasl_passwd` must be UTF-8 (other bytes are skipped here, as the
//! loaders refuse them), the route tables are read lossily.
//!
//! Delivery status notifications are only built by postrelay (`bounce`),
//! never parsed, so there is no DSN entry.

use std::path::Path;

use crate::config;
use crate::route::{Aliases, GenericMap, LineError, SenderRelayMap, TransportMap};
use crate::spool::Envelope;

/// The `[[relay]]` names the table entries may refer to.
const RELAYS: [&str; 2] = ["main", "backup"];

/// An envelope file (`spool/<id>.env`): an accepted envelope writes back
/// (with the spool's own writer) to bytes that parse back equal.
pub fn envelope(bytes: &[u8]) -> bool {
    let Ok(env) = Envelope::from_json(bytes) else {
        return false;
    };
    let written = env.to_json();
    let again = Envelope::from_json(&written).expect("a written envelope parses");
    assert_eq!(again, env);
    assert!(env.pending().count() <= env.recipients.len());
    true
}

/// The configuration file: an accepted configuration renders (as
/// `check-config` prints it) to text that parses back equal. Files it
/// names are read as the loader reads them (bounded, regular files only).
pub fn config(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    match config::parse(text, "fuzz") {
        Ok(cfg) => {
            let rendered = cfg.render();
            let again = config::parse(&rendered, "rendered").unwrap_or_else(|e| {
                panic!("rendered configuration does not parse: {e}\n{rendered}")
            });
            assert_eq!(again, cfg, "rendered:\n{rendered}");
            assert!(cfg.restart_required(&cfg).is_empty());
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

fn relays() -> Vec<String> {
    RELAYS.iter().map(|s| (*s).to_owned()).collect()
}

/// An error names a line of the text.
fn check_line(e: &LineError, text: &str) {
    let lines = text.split('\n').count();
    assert!(
        (1..=lines).contains(&e.line),
        "line {} of {lines}: {}",
        e.line,
        e.message
    );
}

/// The transport map: every entry keyed by an address is what a lookup of
/// that address finds, and only configured relays are named.
pub fn transport(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let relays = relays();
    let parsed = TransportMap::parse(&text, Path::new("transport"), &relays);
    let accepted = parsed.is_ok();
    match parsed {
        Ok(map) => {
            assert!(map.relays().all(|r| RELAYS.contains(&r)));
            for entry in map.entries() {
                if entry.key.contains('@') {
                    assert_eq!(map.lookup(&entry.key, false), Some(entry));
                }
                if !entry.key.starts_with('.') && entry.key != "*" && !entry.key.contains('@') {
                    let address = format!("postmaster@{}", entry.key);
                    assert!(map.lookup(&address, false).is_some(), "{address}");
                }
            }
        }
        Err(e) => check_line(&e, &text),
    }
    accepted
}

/// The aliases file: every alias has a target and is found by its name.
pub fn aliases(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let parsed = Aliases::parse(&text, Path::new("aliases"));
    let accepted = parsed.is_ok();
    match parsed {
        Ok(map) => {
            for (name, alias) in map.iter() {
                assert!(!alias.targets.is_empty(), "{name}");
                assert_eq!(map.get(name), Some(alias));
            }
        }
        Err(e) => check_line(&e, &text),
    }
    accepted
}

/// The generic map and the sender-dependent relay map (the same table
/// format): a rewritten address is an address; only configured relays.
pub fn generic(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let keys: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let generic = GenericMap::parse(&text, Path::new("generic"));
    let mut accepted = generic.is_ok();
    match generic {
        Ok(map) => {
            for key in &keys {
                if let Some(new) = map.lookup(key) {
                    assert!(new.contains('@'), "{key} -> {new}");
                }
            }
        }
        Err(e) => check_line(&e, &text),
    }
    let sender_relay = SenderRelayMap::parse(&text, Path::new("sender_relay"), &relays());
    accepted |= sender_relay.is_ok();
    match sender_relay {
        Ok(map) => {
            assert!(map.relays().all(|r| RELAYS.contains(&r)));
            for key in &keys {
                if let Some(relay) = map.lookup(key) {
                    assert!(RELAYS.contains(&relay), "{key} -> {relay}");
                }
            }
        }
        Err(e) => check_line(&e, &text),
    }
    accepted
}

/// `sasl_passwd`: see `config::sasl_passwd::fuzz_check`.
pub fn sasl_passwd(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(config::fuzz_sasl_passwd)
}
