//! Resolving a relay's host name to addresses, with a cache that honours
//! the records' TTLs (hickory's), so the hot path does not pay a DNS round
//! trip per connection ("the relay host lookup costs 40–50 ms without a
//! local DNS cache", MISSION.md).
//!
//! Relays are always looked up by A/AAAA (what Postfix does for a
//! `[host]` relayhost); there is no MX lookup. The hosts file is honoured.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;

/// Longest a name lookup may take, whatever the resolver's own settings.
const LOOKUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// One resolver for the whole daemon (its cache is shared).
pub struct Resolver {
    /// `None` when no usable system configuration exists (no
    /// /etc/resolv.conf): then the C library resolver is used, uncached.
    dns: Option<TokioResolver>,
}

impl Resolver {
    /// The system's resolver configuration.
    pub fn system() -> Resolver {
        let dns = match TokioResolver::builder_tokio() {
            Ok(b) => match b.build() {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "DNS resolver unavailable; using the C library resolver");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the system DNS configuration; using the C library resolver");
                None
            }
        };
        Resolver { dns }
    }

    /// Addresses of `host` on `port`, IPv6 and IPv4 as the resolver orders
    /// them. An IP literal needs no lookup.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let lookup = async {
            match &self.dns {
                Some(dns) => {
                    let lookup = dns
                        .lookup_ip(bare)
                        .await
                        .map_err(|e| format!("{bare}: {e}"))?;
                    Ok(lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect())
                }
                None => tokio::net::lookup_host((bare, port))
                    .await
                    .map(|a| a.collect())
                    .map_err(|e| format!("{bare}: {e}")),
            }
        };
        // The resolvers have their own timeouts; this bounds them all, so
        // a stuck lookup can never hold a delivery.
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(LOOKUP_LIMIT, lookup)
                .await
                .map_err(|_| {
                    format!(
                        "{bare}: no answer from DNS within {} s",
                        LOOKUP_LIMIT.as_secs()
                    )
                })??;
        if addrs.is_empty() {
            return Err(format!("{bare}: no A or AAAA record"));
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_need_no_lookup() {
        let r = Resolver { dns: None };
        assert_eq!(
            r.resolve("127.0.0.1", 25).await.unwrap(),
            vec!["127.0.0.1:25".parse().unwrap()]
        );
        assert_eq!(
            r.resolve("[::1]", 587).await.unwrap(),
            vec!["[::1]:587".parse().unwrap()]
        );
    }

    #[tokio::test]
    async fn localhost_resolves_from_the_hosts_file() {
        let r = Resolver::system();
        let addrs = r.resolve("localhost", 25).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
