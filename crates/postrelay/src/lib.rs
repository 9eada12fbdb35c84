//! postrelay: a small, fast, secure outbound mail relay.
//!
//! # Layout
//! - [`config`]: the one TOML file, validated up front.
//! - [`spool`]: the only code that touches the queue directories.
//! - [`queue`]: the one owner of queued messages and the one door in
//!   ([`queue::Queue::accept`]); scheduling, attempts, notices, back-off.
//! - [`intake`]: the SMTP listeners and pickup, which turn clients' bytes
//!   into queued messages.
//! - [`deliver`]: one delivery attempt (relays, explicit next hops, local
//!   mailboxes), ending in an outcome per recipient.
//! - [`route`]: where each recipient goes (transport map, aliases,
//!   sender-dependent relays, sender rewriting).
//! - [`bounce`]: delivery status notifications (pure text).
//! - [`header`]: header-section facts that intake, delivery and bounces
//!   share (the hop limit, where the header section ends).
//! - [`domain`]: the one check of a domain name's shape, for `config` and
//!   `route`.
//! - [`net`]: connections, TLS and name resolution.
//! - [`maildrop`]: the file format `sendmail` and pickup share.
//! - [`maillog`]: the Postfix-shaped mail log.
//! - [`quota`]: provider sending limits (rate, rolling windows,
//!   cool-downs) and the store that counts them.
//! - [`metrics`]: Prometheus counters and gauges, and the `/metrics`
//!   endpoint.
//! - [`notify`]: systemd's `sd_notify` (READY, RELOADING, STOPPING,
//!   watchdog).
//! - [`control`]: the Unix socket that `postrelay queue …` talks to.
//! - [`privsep`]: the drop to the daemon user, and the local delivery
//!   helper that alone keeps root.
//! - [`daemon`]: wiring, signals, reload and graceful shutdown.
//! - `fuzz_entry` (hidden): the parsers of files, for the fuzz targets
//!   in `fuzz/` and the corpus test; not an API.
//! - [`import`]: `postrelay import-postfix`, `import-msmtp`,
//!   `import-nullmailer`: another program's configuration to postrelay's.
//! - [`cli`]: the command line (`postrelay …`, and `mailq`/`sendmail` by
//!   argv\[0\]).
//! - [`doctor`]: `postrelay doctor`, checks of a setup with verdict,
//!   evidence and fix.
//!
//! `docs/architecture.md` says which module may use which.

pub mod bounce;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod deliver;
pub mod doctor;
pub mod domain;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod header;
pub mod import;
pub mod intake;
pub mod maildrop;
pub mod maillog;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod oauth;
pub mod privsep;
pub mod queue;
pub mod quota;
pub mod route;
pub mod spool;

#[cfg(test)]
pub(crate) mod test_root;
