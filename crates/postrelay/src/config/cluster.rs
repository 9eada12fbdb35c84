//! `[cluster]`: where the nodes that share provider accounts keep their
//! combined counts (a Redis or Valkey server), and how much of each limit
//! one node may use alone while that server is away.
//!
//! Only the settings and their checks; the store is
//! `quota::cluster::ClusterStore` (built only with the cargo feature
//! `cluster`: a binary without it refuses the table, saying so). The
//! Redis password is read from `password_file` under the rules of every
//! secret file; a URL that carries a password is refused.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::units::HumanDuration;
use super::validate::Locator;
use super::{ConfigError, Secret};

/// How long one Redis request may take before the node counts alone.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// How often a node counting alone tries Redis again.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(5);
/// The namespace when none is written.
pub const DEFAULT_NAMESPACE: &str = "default";

/// `[cluster]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterFile {
    pub url: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub namespace: Option<String>,
    pub local_share: Option<f64>,
    pub timeout: Option<HumanDuration>,
    pub retry: Option<HumanDuration>,
}

/// A fraction in (0, 1], compared by value (so that `Config` is `Eq`).
#[derive(Clone, Copy, Debug)]
pub struct Share(f64);

impl Share {
    /// `share` when it is in (0, 1].
    pub fn new(share: f64) -> Option<Share> {
        (share.is_finite() && share > 0.0 && share <= 1.0).then_some(Share(share))
    }

    /// The fraction.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for Share {
    fn eq(&self, other: &Share) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Share {}

/// `[cluster]`: the shared counts of provider limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The Redis (or Valkey) server: `redis://host:port/db` or
    /// `unix:///path/to/socket`, without a password. Required.
    pub url: String,
    /// The Redis ACL user (`AUTH username password`). Default: none (the
    /// server's default user).
    pub username: Option<String>,
    /// The password, read from `password_file` at load. Default: none.
    pub password: Option<Secret>,
    /// Where the password came from, for messages.
    pub password_file: Option<PathBuf>,
    /// Keeps the counts of separate clusters on one server apart: keys
    /// are `postrelay:{<namespace>}:<account>:…`. Default: `"default"`.
    pub namespace: String,
    /// The part of each limit one node may use while Redis is away:
    /// `1/N` for N nodes keeps the cluster within the limits. Required.
    pub local_share: Share,
    /// How long one Redis request may take (connecting included) before
    /// the node counts alone. Default: 250 ms.
    pub timeout: Duration,
    /// How often a node counting alone tries Redis again. Default: 5 s.
    pub retry: Duration,
}

pub(super) fn cluster(
    file: Option<ClusterFile>,
    loc: &Locator<'_>,
) -> Result<Option<ClusterSettings>, ConfigError> {
    let Some(file) = file else {
        return Ok(None);
    };
    if !cfg!(feature = "cluster") {
        let line = loc.first_line(&["cluster"]);
        let message = "[cluster]: this postrelay was built without cluster mode (the cargo \
                       feature \"cluster\"); remove [cluster], or install a build made with \
                       `cargo build --release --features cluster`"
            .to_owned();
        return Err(loc.invalid("cluster", line, message));
    }
    let url = url(file.url, loc)?;
    if let Some(u) = &file.username
        && (u.is_empty() || u.contains(['\0', '\r', '\n', ' ']))
    {
        return Err(loc.value_error(
            "cluster.username",
            "must be a Redis user name (not empty, no spaces or line breaks); remove it to use the server's default user",
        ));
    }
    let (password, password_file) = match file.password_file {
        None => (None, None),
        Some(p) => {
            let path = super::resolve::non_empty_path(loc, "cluster.password_file", p)?;
            let secret = super::credentials::read_password(&path).map_err(|why| {
                let message = format!("cluster.password_file {} {why}", path.display());
                loc.invalid(
                    "cluster.password_file",
                    loc.line_of("cluster.password_file"),
                    message,
                )
            })?;
            (Some(secret), Some(path))
        }
    };
    let namespace = file
        .namespace
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    if namespace.is_empty()
        || namespace.len() > 64
        || !namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(loc.value_error(
            "cluster.namespace",
            "must be 1 to 64 letters, digits, '.', '_' or '-' (it becomes part of every Redis key)",
        ));
    }
    let local_share = match file.local_share {
        None => {
            return Err(missing(
                loc,
                "cluster.local_share",
                "is required: the part of each limit one node may use while Redis is away; 1/N for N nodes (0.33 for three) keeps the cluster within its limits",
            ));
        }
        Some(s) => match Share::new(s) {
            Some(s) => s,
            None => {
                return Err(loc.value_error(
                    "cluster.local_share",
                    "must be a fraction above 0 and at most 1 (1/N for N nodes: 0.33 for three)",
                ));
            }
        },
    };
    let timeout = file.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
    if timeout.is_zero() || timeout > Duration::from_secs(10) {
        return Err(loc.value_error(
            "cluster.timeout",
            "must be above 0 and at most 10s (every message waits for Redis up to this long)",
        ));
    }
    let retry = file.retry.map_or(DEFAULT_RETRY, |d| d.0);
    if retry < Duration::from_millis(100) || retry > Duration::from_secs(3600) {
        return Err(loc.value_error("cluster.retry", "must be between 100ms and 1h"));
    }
    Ok(Some(ClusterSettings {
        url,
        username: file.username,
        password,
        password_file,
        namespace,
        local_share,
        timeout,
        retry,
    }))
}

/// A required key that is absent: the error points at `[cluster]`.
fn missing(loc: &Locator<'_>, key: &str, why: &str) -> ConfigError {
    loc.invalid(key, loc.line_of("cluster"), format!("{key}: {why}"))
}

/// `cluster.url`: present, a scheme the client speaks, no password.
fn url(url: Option<String>, loc: &Locator<'_>) -> Result<String, ConfigError> {
    let key = "cluster.url";
    let Some(url) = url else {
        return Err(missing(
            loc,
            key,
            "is required: the Redis server, e.g. \"redis://127.0.0.1:6379/0\" or \"unix:///run/redis/redis.sock\"",
        ));
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(loc.value_error(
            key,
            "must be a URL such as \"redis://127.0.0.1:6379/0\" or \"unix:///run/redis/redis.sock\"",
        ));
    };
    match scheme {
        "redis" | "unix" | "redis+unix" => {}
        "rediss" => {
            return Err(loc.value_error(
                key,
                "rediss:// (TLS to Redis) is not supported; reach Redis on loopback, over a Unix socket, or through a TLS tunnel",
            ));
        }
        _ => {
            return Err(loc.value_error(
                key,
                "must start with redis:// or unix:// (e.g. \"redis://127.0.0.1:6379/0\")",
            ));
        }
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let has_password =
        |userinfo: &str| userinfo.split_once(':').is_some_and(|(_, p)| !p.is_empty());
    let query_password = rest.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|kv| kv.starts_with("pass=") || kv.starts_with("password="))
    });
    if authority
        .rsplit_once('@')
        .is_some_and(|(u, _)| has_password(u))
        || query_password
    {
        // Not `value_error`: it would repeat the value, password and all.
        let message = format!(
            "{key}: holds a password; remove it from the URL and write it alone into a file named by password_file = \"/etc/postrelay/secrets/redis\" (mode 0600, owned by the daemon's user)"
        );
        return Err(loc.invalid(key, loc.line_of(key), message));
    }
    check_with_client(&url).map_err(|why| loc.value_error(key, &why))?;
    Ok(url)
}

#[cfg(feature = "cluster")]
fn check_with_client(url: &str) -> Result<(), String> {
    use redis::IntoConnectionInfo;
    url.into_connection_info()
        .map(|_| ())
        .map_err(|e| format!("is not a Redis URL the client understands: {e}"))
}

#[cfg(not(feature = "cluster"))]
fn check_with_client(_: &str) -> Result<(), String> {
    Ok(())
}
