//! What the daemon's token sources report to the metrics endpoint: token
//! requests by relay and result, whether each relay's refresh token works,
//! and how long it has left of the provider's known lifetime. Process-wide
//! series (a reload builds new sources; the series go on), registered in
//! [`crate::metrics::Metrics`].
//!
//! Not for: the token file's own record (`oauth::store`), which
//! `auth status` and `doctor` read.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::OAuthError;
use super::provider::Grant;
use crate::config::OAuthConfig;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Result_ {
    relay: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Relay {
    relay: String,
}

struct Series {
    requests: Family<Result_, Counter>,
    usable: Family<Relay, Gauge>,
    left: Family<Relay, Gauge>,
}

static SERIES: LazyLock<Series> = LazyLock::new(|| Series {
    requests: Family::default(),
    usable: Family::default(),
    left: Family::default(),
});

/// Adds the OAuth series to `registry` (prefixed `postrelay_`).
pub fn register_metrics(registry: &mut Registry) {
    registry.register(
        "oauth_token_requests",
        "OAuth2 access token requests, by relay and result (ok; login_needed: the refresh token was refused, run postrelay auth login; error: the provider could not be used)",
        SERIES.requests.clone(),
    );
    registry.register(
        "oauth_token_usable",
        "1 while the relay's OAuth2 login works; 0 once its refresh token is missing or refused (mail to it waits until postrelay auth login is run)",
        SERIES.usable.clone(),
    );
    registry.register(
        "oauth_refresh_token_lifetime_left_seconds",
        "Seconds before the relay's refresh token reaches the provider's known lifetime (refresh_token_lifetime), counted from when it was issued",
        SERIES.left.clone(),
    );
}

fn relay(name: &str) -> Relay {
    Relay {
        relay: name.to_owned(),
    }
}

/// A token source for `name` exists: its series appear (usable until
/// shown otherwise).
pub(super) fn register(name: &str, _config: &OAuthConfig) {
    SERIES.usable.get_or_create(&relay(name)).set(1);
}

/// The outcome of a token request.
pub(super) fn refreshed(name: &str, result: &Result<Grant, OAuthError>) {
    let (label, usable) = match result {
        Ok(_) => ("ok", Some(1)),
        Err(OAuthError::NoToken { .. } | OAuthError::LoginNeeded { .. }) => {
            ("login_needed", Some(0))
        }
        Err(OAuthError::Provider { .. }) => ("error", None),
    };
    SERIES
        .requests
        .get_or_create(&Result_ {
            relay: name.to_owned(),
            result: label,
        })
        .inc();
    if let Some(u) = usable {
        SERIES.usable.get_or_create(&relay(name)).set(u);
    }
}

/// The refresh token in use was issued at `obtained_at` (Unix seconds);
/// with a known lifetime, how much of it is left.
pub(super) fn token_age(name: &str, config: &OAuthConfig, obtained_at: i64) {
    if let Some(life) = config.refresh_token_lifetime {
        let left = lifetime_left(obtained_at, life, jiff::Timestamp::now().as_second());
        SERIES.left.get_or_create(&relay(name)).set(left);
        if left < i64::try_from((life / 6).as_secs()).unwrap_or(i64::MAX) {
            tracing::warn!(
                relay = %name,
                "the OAuth refresh token is near the end of its known lifetime ({} s left): run postrelay auth login --relay {name} before the provider refuses it",
                left
            );
        }
    }
}

/// Seconds left of `life` for a token issued at `obtained_at`, at `now`
/// (negative: past it).
pub fn lifetime_left(obtained_at: i64, life: std::time::Duration, now: i64) -> i64 {
    obtained_at
        .saturating_add(i64::try_from(life.as_secs()).unwrap_or(i64::MAX))
        .saturating_sub(now)
}
