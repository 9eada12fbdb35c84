//! Connection limits shared by the loopback intake and the submission
//! listeners: each has its own pool of `max_connections` and its own
//! `max_connections_per_client`, checked here the same way for both.
//!
//! Not for: enforcing them (that is `intake::limits`).

use super::ConfigError;
use super::validate::Locator;

/// Concurrent sessions per listener kind. Default for both kinds: 100.
pub(super) const MAX_CONNECTIONS: usize = 100;
/// Concurrent sessions from one client address. Default: 10, a tenth of
/// the pool: a client needs a handful of parallel sessions at most, and
/// ten misbehaving addresses are needed to fill the pool.
pub(super) const MAX_CONNECTIONS_PER_CLIENT: usize = 10;

/// A listener kind's pool size and per-client cap.
pub(super) struct ConnectionLimits {
    pub total: usize,
    pub per_client: usize,
}

/// `<table>.max_connections` and `<table>.max_connections_per_client`.
pub(super) fn connection_limits(
    loc: &Locator<'_>,
    table: &str,
    total: Option<usize>,
    per_client: Option<usize>,
) -> Result<ConnectionLimits, ConfigError> {
    let total = total.unwrap_or(MAX_CONNECTIONS);
    if total == 0 {
        let why = "must be at least 1, or no client could ever connect";
        return Err(loc.value_error(&format!("{table}.max_connections"), why));
    }
    let per_client = per_client.unwrap_or(MAX_CONNECTIONS_PER_CLIENT);
    if per_client == 0 {
        let why = "must be at least 1, or no client could ever connect; to turn the cap off, make it equal to max_connections";
        return Err(loc.value_error(&format!("{table}.max_connections_per_client"), why));
    }
    Ok(ConnectionLimits { total, per_client })
}
