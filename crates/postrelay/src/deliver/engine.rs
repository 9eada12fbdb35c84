//! The delivery engine: one attempt for one message, across the
//! configured relays in order, ending in an [`Outcome`] per recipient.
//!
//! - Recipients in `local_domains` are not relayed (root@localhost must
//!   not leak to the provider); until local delivery exists they wait.
//! - The first relay that accepts the session carries the message; a relay
//!   that is unreachable or refuses the session (connect, greeting, TLS,
//!   AUTH) hands over to the next one in the same attempt.
//! - Once a relay has the transaction, its replies decide: no failover on
//!   a refused recipient (that would only move the refusal elsewhere).

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::client::{self, Failure, Message, ModeMemory, Session, Target};
use super::pool::Pool;
use super::{Outcome, Reason};
use crate::config::{Config, RelayConfig, Security};
use crate::net::resolve::Resolver;
use crate::net::tls;
use crate::spool::{BodyType, Envelope};

/// Why the engine could not be built from a configuration.
#[derive(Debug, thiserror::Error)]
#[error("relay \"{relay}\": {message}")]
pub struct EngineError {
    /// The relay's name.
    pub relay: String,
    /// What is wrong (a CA file that does not load …).
    pub message: String,
}

struct Relay {
    config: RelayConfig,
    tls_config: Arc<rustls::ClientConfig>,
    mode: Arc<ModeMemory>,
    pool: Pool,
}

/// The delivery engine for one configuration (rebuilt on reload).
pub struct Deliverer {
    hostname: String,
    local_domains: Vec<String>,
    relays: Vec<Relay>,
    resolver: Arc<Resolver>,
}

/// The result of one attempt.
#[derive(Debug, Default)]
pub struct Attempt {
    /// `(index into envelope.recipients, outcome)` for each attempted recipient.
    pub outcomes: Vec<(usize, Outcome)>,
    /// The relay that carried the transaction, `host[ip]:port`, or `none`.
    pub relay: String,
    /// The SMTP transcript, when anything went wrong (secrets redacted).
    pub transcript: Vec<String>,
    /// DNS, connect, greeting, TLS and AUTH time (zero when reused).
    pub conn_setup: Duration,
    /// MAIL through the reply to the final dot.
    pub transmission: Duration,
    /// Why relays were skipped (one line each), for `queue list`.
    pub notes: Vec<String>,
    /// Which message this is on its connection (1 for a new one), as
    /// Postfix's `conn_use=` in the log.
    pub conn_use: u32,
}

impl Attempt {
    /// An attempt with nothing to do.
    pub fn nothing() -> Attempt {
        Attempt {
            relay: "none".into(),
            ..Attempt::default()
        }
    }

    /// Why the message still waits, in one line for `queue list`.
    pub fn summary(&self) -> String {
        if !self.notes.is_empty() {
            return self.notes.join("; ");
        }
        self.outcomes
            .iter()
            .find_map(|(_, o)| match o {
                Outcome::Deferred(r) => Some(r.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| "delivery deferred".into())
    }

    fn defer_all(indices: &[usize], reason: &Reason) -> Vec<(usize, Outcome)> {
        indices
            .iter()
            .map(|&i| (i, Outcome::Deferred(reason.clone())))
            .collect()
    }
}

impl Deliverer {
    /// Builds the engine; `previous` (on reload) hands over what relays
    /// learned (the detected TLS mode) when their host and port are the same.
    pub fn new(
        config: &Config,
        previous: Option<&Deliverer>,
        resolver: Arc<Resolver>,
    ) -> Result<Arc<Deliverer>, EngineError> {
        let mut relays = Vec::new();
        for rc in &config.relays {
            let err = |message: String| EngineError {
                relay: rc.name.clone(),
                message,
            };
            let tls_config = match rc.security {
                Security::Verify => {
                    tls::client_config(rc.ca_file.as_deref()).map_err(|e| err(e.to_string()))?
                }
                Security::Encrypt | Security::May | Security::None => {
                    tls::client_config_no_verify()
                }
            };
            let mode = previous
                .and_then(|p| {
                    p.relays
                        .iter()
                        .find(|r| r.config.host == rc.host && r.config.port == rc.port)
                })
                .map_or_else(|| Arc::new(ModeMemory::default()), |r| r.mode.clone());
            let pool = Pool::new(
                rc.max_connections,
                rc.idle_timeout,
                rc.max_messages_per_connection,
            );
            relays.push(Relay {
                config: rc.clone(),
                tls_config,
                mode,
                pool,
            });
        }
        let engine = Arc::new(Deliverer {
            hostname: config.hostname.clone(),
            local_domains: config.intake.local_domains.clone(),
            relays,
            resolver,
        });
        spawn_reaper(Arc::downgrade(&engine));
        Ok(engine)
    }

    /// Closes idle connections (shutdown, or this engine being replaced).
    pub fn close_idle(&self) {
        for r in &self.relays {
            r.pool.close_all();
        }
    }

    fn is_local(&self, address: &str) -> bool {
        let domain = address
            .rsplit_once('@')
            .map_or("", |(_, d)| d)
            .to_ascii_lowercase();
        self.local_domains.contains(&domain)
    }

    /// One attempt for the `pending` recipients (indices into
    /// `env.recipients`) of a message whose body is at `body`.
    pub async fn attempt(&self, env: &Envelope, body: &Path, pending: &[usize]) -> Attempt {
        let mut result = Attempt::nothing();
        let (local, remote): (Vec<usize>, Vec<usize>) = pending
            .iter()
            .partition(|&&i| self.is_local(&env.recipients[i].address));
        let waiting = Reason::Unavailable(
            "local delivery is not available yet; the message waits in the queue".into(),
        );
        result.outcomes.extend(Attempt::defer_all(&local, &waiting));
        if remote.is_empty() {
            return result;
        }
        if self.relays.is_empty() {
            let reason = Reason::Unavailable(
                "no relay is configured: add a [[relay]] section to the configuration".into(),
            );
            result.outcomes.extend(Attempt::defer_all(&remote, &reason));
            return result;
        }
        let recipients: Vec<String> = remote
            .iter()
            .map(|&i| env.recipients[i].address.clone())
            .collect();
        let message = Message {
            sender: &env.sender,
            recipients: &recipients,
            body,
            size: env.size,
            eight_bit: env.body == BodyType::EightBitMime,
            smtputf8: env.smtputf8,
            header: None,
        };
        let mut last: Option<Failure> = None;
        for relay in &self.relays {
            let started = Instant::now();
            let lease = relay.pool.checkout(|| self.open(relay)).await;
            let mut lease = match lease {
                Ok(l) => l,
                Err(f) => {
                    result
                        .notes
                        .push(format!("relay {}: {}", relay.config.name, f.reason));
                    last = Some(f);
                    continue;
                }
            };
            result.conn_setup = if lease.reused {
                Duration::ZERO
            } else {
                started.elapsed()
            };
            result.relay = describe(&relay.config.host, lease.session.peer());
            result.conn_use = lease.session.messages_sent() + 1;
            let sending = Instant::now();
            let sent = lease.session.send(&message).await;
            result.transmission = sending.elapsed();
            match sent {
                Ok(outcomes) => {
                    let transcript = lease.session.take_transcript();
                    if outcomes.iter().any(|o| !matches!(o, Outcome::Delivered(_))) {
                        result.transcript = transcript;
                    }
                    result.outcomes.extend(remote.iter().copied().zip(outcomes));
                    result.notes.clear();
                    relay.pool.checkin(lease);
                }
                Err(f) => {
                    // The session broke during the transaction: the message
                    // may or may not have arrived; it waits (no failover,
                    // which could deliver it twice in a hurry).
                    result
                        .outcomes
                        .extend(Attempt::defer_all(&remote, &f.reason));
                    result.transcript = f.transcript;
                    result.notes.clear();
                }
            }
            return result;
        }
        let failure = last.unwrap_or_else(|| Failure {
            reason: Reason::Local("no relay was tried".into()),
            transcript: Vec::new(),
            session_refused: true,
        });
        result
            .outcomes
            .extend(Attempt::defer_all(&remote, &failure.reason));
        result.transcript = failure.transcript;
        result
    }

    async fn open(&self, relay: &Relay) -> Result<Session, Failure> {
        let rc = &relay.config;
        let addrs = self
            .resolver
            .resolve(&rc.host, rc.port)
            .await
            .map_err(|e| Failure {
                reason: Reason::Dns(e),
                transcript: Vec::new(),
                session_refused: true,
            })?;
        let target = Target {
            name: rc.name.clone(),
            host: rc.host.clone(),
            port: rc.port,
            addrs,
            tls: rc.tls.into(),
            security: rc.security.into(),
            tls_config_verify: relay.tls_config.clone(),
            credentials: rc.credentials.as_ref().map(|c| {
                (
                    c.username.clone(),
                    client::Secret::new(c.password.expose().to_string()),
                )
            }),
            allow_plaintext_auth: rc.allow_plaintext_auth,
            helo_name: self.hostname.clone(),
            timeouts: (&rc.timeouts).into(),
            verbose: rc.verbose,
            mode_memory: relay.mode.clone(),
        };
        Session::open(&target).await
    }
}

/// `host[ip]:port`, as Postfix writes `relay=` in its log.
fn describe(host: &str, peer: std::net::SocketAddr) -> String {
    crate::maillog::relay_name(host, Some(peer))
}

/// Closes idle connections past their time, once a second, for as long as
/// the engine lives.
fn spawn_reaper(engine: Weak<Deliverer>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(engine) = engine.upgrade() else {
                return;
            };
            for r in &engine.relays {
                r.pool.reap();
            }
        }
    });
}

impl From<crate::config::TlsMode> for client::TlsMode {
    fn from(m: crate::config::TlsMode) -> Self {
        match m {
            crate::config::TlsMode::Auto => client::TlsMode::Auto,
            crate::config::TlsMode::StartTls => client::TlsMode::StartTls,
            crate::config::TlsMode::Implicit => client::TlsMode::Implicit,
        }
    }
}

impl From<Security> for client::Security {
    fn from(s: Security) -> Self {
        match s {
            Security::Verify => client::Security::Verify,
            Security::Encrypt => client::Security::Encrypt,
            Security::May => client::Security::May,
            Security::None => client::Security::None,
        }
    }
}

impl From<&crate::config::RelayTimeouts> for client::Timeouts {
    fn from(t: &crate::config::RelayTimeouts) -> Self {
        client::Timeouts {
            connect: t.connect,
            greeting: t.greeting,
            ehlo: t.ehlo,
            tls: t.tls,
            auth: t.auth,
            mail: t.mail,
            rcpt: t.rcpt,
            data: t.data,
            data_end: t.data_end,
            rset: t.rset,
            quit: t.quit,
        }
    }
}
