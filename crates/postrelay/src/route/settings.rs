//! The routing settings (`[routing]`): the parsed tables and sender
//! rewriting, which the [`Router`](super::Router) is built from. Owned here
//! so that routing depends on nothing of the configuration;
//! `crate::config` reads the tables into this type and re-exports it.
//!
//! Not for: reading or checking the files (`config::routing`).

use std::path::PathBuf;

use super::{Aliases, GenericMap, SenderRelayMap, TransportMap};

/// Routing tables and sender rewriting (`[routing]`); what they mean is
/// described in [`crate::route`]. The tables are read and checked when the
/// configuration is loaded (`config::routing`), so a reload picks up edited
/// tables, and a broken table (reported with its file and line) fails the
/// load. Each table keeps the path it was read from, for `check-config`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutingSettings {
    /// The transport map (Postfix `transport_maps`, as text): per address
    /// or domain, `local:`, `relay:NAME`, `smtp:[host]:port`,
    /// `error:5.x.y text` or `discard:`. Its `relay:` names must be
    /// configured relays. Default: none, so mail for local domains is
    /// delivered locally and everything else goes to the relays in order.
    pub transport: Option<TransportMap>,
    /// An aliases file in `/etc/aliases` format, applied to recipients
    /// delivered locally. Programs, files and `:include:` are refused.
    /// Default: none, so no aliases (set it to `/etc/aliases` to use the
    /// system's, as Postfix does).
    pub aliases: Option<Aliases>,
    /// Which relay carries mail from a sender (Postfix
    /// `sender_dependent_relayhost_maps`): `user@domain` or `@domain` to
    /// `relay:NAME`; each relay brings its own credentials. Only for mail
    /// that no transport entry routes. Default: none.
    pub sender_relay: Option<SenderRelayMap>,
    /// Sender addresses shown to relays instead of local ones (Postfix
    /// `smtp_generic_maps`): `user@domain` or `@domain` to an address or
    /// `@domain`; applied to the envelope sender and to `From:`/`Sender:`
    /// of mail that leaves the host, never to local delivery.
    /// Default: none.
    pub generic: Option<GenericMap>,
    /// One address that replaces every local sender (a bare name, or an
    /// address in a local domain) of mail that leaves the host, for
    /// providers that accept only verified senders; `generic` entries win.
    /// Default: none (local senders are kept).
    pub rewrite_senders: Option<String>,
}

impl RoutingSettings {
    /// The files of the tables that are set, with their keys.
    pub fn table_paths(&self) -> Vec<(&'static str, PathBuf)> {
        let mut out = Vec::new();
        if let Some(t) = &self.transport {
            out.push(("transport", t.path().to_path_buf()));
        }
        if let Some(t) = &self.aliases {
            out.push(("aliases", t.path().to_path_buf()));
        }
        if let Some(t) = &self.sender_relay {
            out.push(("sender_relay", t.path().to_path_buf()));
        }
        if let Some(t) = &self.generic {
            out.push(("generic", t.path().to_path_buf()));
        }
        out
    }

    /// Every relay name the tables use (`relay:NAME`).
    pub fn relay_names_used(&self) -> Vec<String> {
        let t = self.transport.iter().flat_map(|t| t.relays());
        let s = self.sender_relay.iter().flat_map(|s| s.relays());
        t.chain(s).map(str::to_owned).collect()
    }
}
