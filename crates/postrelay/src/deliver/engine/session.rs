//! A session with one relay: from the relay's pool or newly opened
//! (address, TLS, AUTH), the quota charged once a session is had, and one
//! transaction on it, replacing a reused session the relay had closed.
//!
//! Not for: choosing the relay or failing over (`engine`), the SMTP
//! conversation itself (`deliver::client`).

use std::time::{Duration, Instant};

use super::{Deliverer, Relay};
use crate::deliver::Outcome;
use crate::deliver::Reason;
use crate::deliver::client::{Failure, Message, Session, Target};

/// A transaction carried out on a relay's session (whatever its outcome).
pub(super) struct Transacted {
    pub(super) lease: crate::deliver::pool::Lease,
    pub(super) sent: Result<Vec<Outcome>, Failure>,
    /// DNS, connect, greeting, TLS and AUTH time (zero when reused).
    pub(super) setup: Duration,
    /// Which message this was on the connection.
    pub(super) conn_use: u32,
    /// MAIL through the reply to the final dot.
    pub(super) transmission: Duration,
}

impl Deliverer {
    /// One transaction on a session of `relay`, from its pool or newly
    /// opened. `Err` when no session could be had (the caller fails over).
    /// A reused session the relay had closed meanwhile (its RSET failed:
    /// nothing reached the relay after it) is replaced once by a fresh
    /// connection, which is not reused and so cannot be stale.
    pub(super) async fn transact(
        &self,
        relay: &Relay,
        message: &Message<'_>,
    ) -> Result<Transacted, Failure> {
        let mut reuse = true;
        let mut charged = false;
        loop {
            let started = Instant::now();
            let mut lease = relay.pool.checkout(reuse, || self.open(relay)).await?;
            // Charged once a session is had, so that an unreachable relay
            // uses up none of its quota; not again for a stale session.
            if !charged {
                if let Some(reason) = self.charge(relay, message.recipients.len()).await {
                    relay.pool.checkin(lease);
                    return Err(Failure::before_session(reason));
                }
                charged = true;
            }
            let conn_use = lease.session.messages_sent() + 1;
            let sending = Instant::now();
            let sent = lease.session.send(message).await;
            if let Err(f) = &sent
                && f.stale
                && lease.reused
            {
                tracing::debug!(
                    relay = %relay.config.name, reason = %f.reason,
                    "idle session was stale; opening another"
                );
                reuse = false;
                continue;
            }
            let setup = if lease.reused {
                Duration::ZERO
            } else {
                sending.duration_since(started)
            };
            return Ok(Transacted {
                transmission: sending.elapsed(),
                lease,
                sent,
                setup,
                conn_use,
            });
        }
    }

    /// A new session with `relay`: its address resolved, TLS, AUTH.
    async fn open(&self, relay: &Relay) -> Result<Session, Failure> {
        let rc = &relay.config;
        let addrs = self
            .resolver
            .resolve(&rc.host, rc.port)
            .await
            .map_err(|e| Failure::before_session(Reason::Dns(e)))?;
        let target = Target {
            name: rc.name.clone(),
            host: rc.host.clone(),
            tls_name: rc.tls_name.clone(),
            port: rc.port,
            addrs,
            tls: rc.tls,
            security: rc.security,
            tls_config_verify: relay.tls_config.clone(),
            credentials: rc
                .credentials
                .as_ref()
                .map(|c| (c.username.clone(), c.password.clone())),
            oauth: relay.oauth.clone(),
            allow_plaintext_auth: rc.allow_plaintext_auth,
            helo_name: self.hostname.clone(),
            timeouts: rc.timeouts,
            verbose: rc.verbose,
            mode_memory: relay.mode.clone(),
        };
        Session::open(&target).await
    }
}
