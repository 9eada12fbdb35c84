//! Routing: which way each recipient goes, and what a relay is shown as
//! the sender. Pure decisions, no I/O: the tables are read and checked when
//! the configuration is loaded into [`RoutingSettings`],
//! so a reload (SIGHUP) picks up edited tables, and a broken table keeps
//! the running configuration.
//!
//! **For:** the [`Router`], built from the configuration, answering
//! [`Router::route`] (recipient → [`Routed`] destinations, after alias
//! expansion), [`Router::relay_for_sender`] (sender-dependent relay) and
//! [`Router::rewrite_sender`] / [`Router::rewrite_headers`] (the sender a
//! relay sees).
//!
//! **Not for:** delivering. What a [`Route`] leads to (a local mailbox, a
//! relay session, a bounce) belongs to the delivery code.
//!
//! # How a recipient is routed
//!
//! 1. A bare name (`root`) is completed with `@hostname`.
//! 2. The transport map is consulted (full address, domain, `.parent`
//!    domains, `*`). For a recipient in a local domain
//!    (`intake.local_domains`) only the entries naming its address or its
//!    domain exactly count: `*` and `.parent` never capture local mail, so
//!    `* relay:ses` cannot send `root@localhost` to the provider.
//! 3. A recipient delivered locally (a local domain without a transport
//!    entry, or an entry `local:`) whose local part is an alias is
//!    expanded, recursively, and each result is routed again from step 2.
//!    Otherwise a local recipient is the local user named by its local part,
//!    lower-cased. Whether that user exists is asked at RCPT
//!    ([`Router::local_recipient`], checked by intake against the system's
//!    users) and again by local delivery.
//! 4. Anything else without a transport entry goes to the relays
//!    ([`Route::Relay`] with `name: None`), where the sender-dependent
//!    relay map may choose one.
//!
//! Alias expansion is bounded: a loop (an alias reached again through
//! itself) and a chain deeper than [`MAX_ALIAS_DEPTH`] end in the local
//! user of that name, with a warning on the [`Routed`]; an alias reached
//! twice through different branches is expanded once; duplicate results
//! are removed, first one kept.
//!
//! All lookups are case-insensitive, as in Postfix. With a
//! `recipient_delimiter` (`[local]`, default `+`), a local `user+tag` is
//! the local user `user`; its alias is `user+tag` if there is one, else
//! `user` (the extension is not carried to the alias's targets). The
//! transport map is looked up with the address as written.

mod aliases;
mod generic;
mod header;
mod settings;
mod table;
#[cfg(test)]
mod tests;
mod transport;

use std::borrow::Cow;
use std::collections::HashSet;

pub use aliases::{Alias, AliasTarget, Aliases};
pub use generic::{GenericMap, SenderRelayMap};
pub use header::{
    Change, HeaderRewrite, rewrite_addresses, rewrite_from_header, rewrite_from_header_report,
};
pub use settings::RoutingSettings;
pub(crate) use table::logical_lines;
pub use table::{LineError, check_local_name};
pub use transport::{Entry as TransportEntry, Target, TransportMap};

/// Longest alias chain followed (`a` → `b` → …); a deeper one is a mistake
/// in the file, and the bound keeps expansion cheap.
pub const MAX_ALIAS_DEPTH: usize = 20;

/// Where one recipient goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// Delivered on this host to the local user `user` (a local part,
    /// lower-cased; not checked against the system's users, and it may
    /// contain any character an address may, `/` included: local delivery
    /// must check it).
    Local { user: String },
    /// Through the relays: `Some(name)` for the `[[relay]]` a transport
    /// entry names; `None` for the configured relays in order, or the one
    /// [`Router::relay_for_sender`] chooses.
    Relay { name: Option<String> },
    /// Directly to this host (a transport entry `smtp:[host]:port`), as
    /// resolved by A/AAAA records, never MX; with the settings of the
    /// `[[relay]]` at that host and port, else the relay defaults and its
    /// `sasl_passwd` entry (`Config::next_hops`).
    Smtp { host: String, port: u16 },
    /// Refused with this enhanced status (4.x.y: deferred, 5.x.y: bounced)
    /// and text.
    Error { status: String, text: String },
    /// Dropped without delivery or bounce; the drop must be logged.
    Discard,
}

/// What the local recipient table (aliases, system users) says about a
/// recipient at RCPT, before anything is queued: Postfix's
/// `local_recipient_maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalRecipient {
    /// Not delivered on this host by its own route (not a local domain, or
    /// the transport map sends it elsewhere): not this table's business.
    NotLocal,
    /// Known without asking the system: an alias, or `postmaster` (which
    /// RFC 5321 §4.5.1 says must be accepted).
    Known,
    /// Known only if the system has a user of this name (lower-cased; the
    /// caller looks it up, off the async runtime).
    User(String),
}

impl Route {
    /// Whether mail on this route leaves the host (relay or SMTP), which is
    /// when senders are rewritten.
    pub fn leaves_host(&self) -> bool {
        matches!(self, Route::Relay { .. } | Route::Smtp { .. })
    }
}

/// One destination of a recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    /// The address after alias expansion (bare names completed with
    /// `@hostname`, domains lower-cased); the recipient itself when no
    /// alias applied.
    pub address: String,
    /// The recipient as received.
    pub original: String,
    pub route: Route,
    /// The table line that decided, `path:line`, for log lines: the
    /// transport entry, else the alias line that produced the address (for
    /// a loop: the line that closed it); `None` for the defaults.
    pub rule: Option<String>,
    /// Set when alias expansion was cut short here (a loop, or a chain
    /// deeper than [`MAX_ALIAS_DEPTH`]): log it as a warning.
    pub warning: Option<String>,
}

/// The routing decisions of one configuration (rebuilt on reload).
#[derive(Clone, Debug)]
pub struct Router {
    transport: Option<TransportMap>,
    aliases: Option<Aliases>,
    sender_relay: Option<SenderRelayMap>,
    generic: Option<GenericMap>,
    rewrite_senders: Option<String>,
    local_domains: Vec<String>,
    hostname: String,
    /// `recipient_delimiter`: each character separates an extension.
    delimiters: String,
}

impl Router {
    /// A router for the tables of `routing` (parsed and checked at
    /// configuration load), the local domains and host name of
    /// `[intake]`, and the names of the configured relays (which the
    /// tables' `relay:NAME` entries were checked against at load).
    pub fn new(
        routing: &RoutingSettings,
        local_domains: &[String],
        hostname: &str,
        relay_names: &[String],
    ) -> Router {
        debug_assert!(
            routing
                .relay_names_used()
                .iter()
                .all(|n| relay_names.contains(n)),
            "the routing tables were checked against other relays"
        );
        Router {
            transport: routing.transport.clone(),
            aliases: routing.aliases.clone(),
            sender_relay: routing.sender_relay.clone(),
            generic: routing.generic.clone(),
            rewrite_senders: routing.rewrite_senders.clone(),
            local_domains: local_domains.iter().map(|d| table::fold(d)).collect(),
            hostname: table::fold(hostname),
            delimiters: String::new(),
        }
    }

    /// This router with `delimiters` as `recipient_delimiter` (each
    /// character separates an address extension; `""`: none): a local
    /// recipient `user+tag` is the local user `user`, and its alias is
    /// `user+tag`, else `user`.
    pub fn with_recipient_delimiter(mut self, delimiters: &str) -> Router {
        self.delimiters = delimiters.to_owned();
        self
    }

    /// The destinations of `recipient` (`user@domain`, or a bare local
    /// name), after alias expansion: at least one.
    pub fn route(&self, recipient: &str) -> Vec<Routed> {
        let address = self.complete(recipient);
        let (route, rule) = self.transport_route(&address);
        if !matches!(route, Route::Local { .. }) {
            // Only a local address has aliases: one destination, as
            // `expand` makes it, without its bookkeeping.
            return vec![Routed {
                address: normalized(&address),
                original: recipient.to_owned(),
                route,
                rule,
                warning: None,
            }];
        }
        let mut x = Expansion {
            original: recipient,
            path: Vec::new(),
            expanded: HashSet::new(),
            seen: HashSet::new(),
            out: Vec::new(),
        };
        self.expand(&address, None, &mut x);
        x.out
    }

    /// The route of a recipient whose aliases were already expanded (at
    /// acceptance, by [`Router::route`]): the transport map and local
    /// domains only, so an alias is never expanded twice.
    pub fn transport(&self, recipient: &str) -> Route {
        self.transport_route(&self.complete(recipient)).0
    }

    /// What the local recipient table says about `recipient` (see
    /// [`LocalRecipient`]): only the recipient itself counts, not what its
    /// aliases expand to (as in Postfix, an alias is known even when its
    /// targets are not).
    pub fn local_recipient(&self, recipient: &str) -> LocalRecipient {
        let Route::Local { user } = self.transport_route(&self.complete(recipient)).0 else {
            return LocalRecipient::NotLocal;
        };
        let full = self.local_name(&self.complete(recipient));
        let alias = self.alias(&full, &user).is_some();
        if alias || user == "postmaster" {
            LocalRecipient::Known
        } else {
            LocalRecipient::User(user)
        }
    }

    /// The `[[relay]]` that carries mail from `sender` when its route is
    /// [`Route::Relay`] with `name: None`: the sender-dependent relay map's
    /// entry for `user@domain`, else `@domain`. `None` for the null
    /// sender, without a map, or without an entry: use the relays in order.
    pub fn relay_for_sender(&self, sender: &str) -> Option<&str> {
        if sender.is_empty() {
            return None;
        }
        self.sender_relay.as_ref()?.lookup(&self.complete(sender))
    }

    /// The envelope sender a relay sees instead of `sender`, or `None` to
    /// keep it: the generic map's entry (`user@domain`, then `@domain`)
    /// wins; otherwise `rewrite_senders` replaces every local sender (a
    /// bare name, the host name, or an address in a local domain). The null
    /// sender is never rewritten. Apply it only to mail that leaves
    /// ([`Route::leaves_host`]), never to local delivery.
    pub fn rewrite_sender(&self, sender: &str) -> Option<String> {
        if sender.is_empty() {
            return None;
        }
        let full = self.complete(sender);
        let new = match self.generic.as_ref().and_then(|g| g.lookup(&full)) {
            Some(new) => new,
            None => {
                let to = self.rewrite_senders.as_ref()?;
                let (_, domain) = table::split_address(&full)?;
                let local = domain == self.hostname || self.is_local_domain(&domain);
                if !local {
                    return None;
                }
                to.clone()
            }
        };
        (!new.eq_ignore_ascii_case(sender)).then_some(new)
    }

    /// `From:` and `Sender:` of a message leaving the host, with each
    /// address [`Router::rewrite_sender`] maps replaced (see
    /// [`rewrite_addresses`]).
    pub fn rewrite_headers(&self, header_section: &[u8]) -> HeaderRewrite {
        rewrite_addresses(header_section, |a| self.rewrite_sender(a))
    }

    /// Whether sender or header rewriting is configured at all.
    pub fn rewrites_senders(&self) -> bool {
        self.generic.is_some() || self.rewrite_senders.is_some()
    }

    /// A bare name completed with `@hostname`; a complete address as is.
    fn complete<'a>(&self, address: &'a str) -> Cow<'a, str> {
        if address.contains('@') {
            Cow::Borrowed(address)
        } else {
            Cow::Owned(format!("{address}@{}", self.hostname))
        }
    }

    /// The local part of `address`, lower-cased, extension included.
    fn local_name(&self, address: &str) -> String {
        table::fold(table::split_address(address).map_or(address, |(l, _)| l))
    }

    /// `local` (lower-cased) without its extension: up to the first
    /// delimiter, as Postfix splits it. Never split: a name that would
    /// become empty, `postmaster`, `mailer-daemon`, and, when `-` is a
    /// delimiter, `owner-…` and `…-request` (mailing list names).
    fn strip_extension<'a>(&self, local: &'a str) -> &'a str {
        if self.delimiters.is_empty() || local == "postmaster" || local == "mailer-daemon" {
            return local;
        }
        if self.delimiters.contains('-')
            && (local.starts_with("owner-") || local.ends_with("-request"))
        {
            return local;
        }
        match local.find(|c| self.delimiters.contains(c)) {
            Some(at) if at > 0 => &local[..at],
            _ => local,
        }
    }

    /// The alias for local part `full` (extension included), else for
    /// `user` (without it), with the name it was found under.
    fn alias<'s>(&'s self, full: &str, user: &str) -> Option<(&'s Aliases, &'s Alias, String)> {
        let aliases = self.aliases.as_ref()?;
        [full, user]
            .into_iter()
            .find_map(|n| aliases.get(n).map(|a| (aliases, a, n.to_owned())))
    }

    fn is_local_domain(&self, domain: &str) -> bool {
        self.local_domains.iter().any(|d| d == domain)
    }

    /// The route of one complete address, before alias expansion.
    fn transport_route(&self, address: &str) -> (Route, Option<String>) {
        let (local, domain) = table::split_address(address).unwrap_or((address, Cow::Borrowed("")));
        let is_local = self.is_local_domain(&domain);
        let entry = self
            .transport
            .as_ref()
            .and_then(|t| t.lookup(address, !is_local).map(|e| (t, e)));
        let user = || self.strip_extension(&table::fold(local)).to_owned();
        match entry {
            None if is_local => (Route::Local { user: user() }, None),
            None => (Route::Relay { name: None }, None),
            Some((t, e)) => {
                let rule = Some(format!("{}:{}", t.path().display(), e.line));
                let route = match &e.target {
                    Target::Local => Route::Local { user: user() },
                    Target::Relay(n) => Route::Relay {
                        name: Some(n.clone()),
                    },
                    Target::Smtp { host, port } => Route::Smtp {
                        host: host.clone(),
                        port: *port,
                    },
                    Target::Error { status, text } => Route::Error {
                        status: status.clone(),
                        text: text.clone(),
                    },
                    Target::Discard => Route::Discard,
                };
                (route, rule)
            }
        }
    }

    fn expand(&self, address: &str, via: Option<String>, x: &mut Expansion<'_>) {
        let (route, rule) = self.transport_route(address);
        let Route::Local { user } = &route else {
            return x.push(address, route, rule.or(via), None);
        };
        let full = self.local_name(address);
        let Some((aliases, alias, user)) = self.alias(&full, user) else {
            return x.push(address, route, rule.or(via), None);
        };
        let user = &user;
        let here = Some(format!("{}:{}", aliases.path().display(), alias.line));
        if x.path.contains(user) {
            let chain = [x.path.as_slice(), std::slice::from_ref(user)].concat();
            let warning = format!(
                "alias loop {} ({}); delivered to the local user \"{user}\" (write \\{user} in the aliases file to deliver to the mailbox on purpose)",
                chain.join(" → "),
                aliases.path().display()
            );
            return x.push(address, route, via.or(here), Some(warning));
        }
        if x.expanded.contains(user) {
            // Already expanded through another branch: its results are in.
            return;
        }
        if x.path.len() >= MAX_ALIAS_DEPTH {
            let warning = format!(
                "alias chain {} → {user} is deeper than {MAX_ALIAS_DEPTH} ({}); delivered to the local user \"{user}\"",
                x.path.join(" → "),
                aliases.path().display()
            );
            return x.push(address, route, via.or(here), Some(warning));
        }
        x.expanded.insert(user.clone());
        x.path.push(user.clone());
        for t in &alias.targets {
            match t {
                AliasTarget::Name(n) => {
                    self.expand(&format!("{n}@{}", self.hostname), here.clone(), x);
                }
                AliasTarget::Address(a) => self.expand(a, here.clone(), x),
                AliasTarget::Mailbox(n) => x.push(
                    &format!("{n}@{}", self.hostname),
                    Route::Local { user: n.clone() },
                    here.clone(),
                    None,
                ),
            }
        }
        x.path.pop();
    }
}

/// `address` as a destination: its domain lower-cased (see
/// [`table::split_address`]).
fn normalized(address: &str) -> String {
    match table::split_address(address) {
        Some((local, domain)) => format!("{local}@{domain}"),
        None => address.to_owned(),
    }
}

/// The state of one [`Router::route`] call.
struct Expansion<'a> {
    original: &'a str,
    /// The aliases being expanded, outermost first (for loop detection).
    path: Vec<String>,
    /// Every alias expanded so far (each is expanded once).
    expanded: HashSet<String>,
    /// Destinations already in `out`, for removing duplicates.
    seen: HashSet<(String, Route)>,
    out: Vec<Routed>,
}

impl Expansion<'_> {
    fn push(&mut self, address: &str, route: Route, rule: Option<String>, warning: Option<String>) {
        let address = normalized(address);
        let key = match &route {
            Route::Local { user } => (user.clone(), route.clone()),
            _ => (table::fold(&address), route.clone()),
        };
        if !self.seen.insert(key) {
            return;
        }
        self.out.push(Routed {
            address,
            original: self.original.to_owned(),
            route,
            rule,
            warning,
        });
    }
}
