//! The delivery engine: one attempt for one message, ending in an
//! [`Outcome`] per recipient.
//!
//! - Each recipient gets its transport from the router: local domains are
//!   delivered into local mailboxes (`deliver::local`) and never relayed
//!   (root@localhost must not leak to the provider); `error:` and
//!   `discard:` entries decide at once; the rest leave through an explicit
//!   next hop or the relays.
//! - The first relay that accepts the session carries the message; a relay
//!   that is unreachable or refuses the session (connect, greeting, TLS,
//!   AUTH) hands over to the next one in the same attempt.
//! - Once a relay has the transaction, its replies decide: no failover on
//!   a refused recipient (that would only move the refusal elsewhere).

use crate::oauth::TokenSource;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::attempt::{NoProgress, Progress, SessionFacts};
use super::client::{Failure, HeaderSwap, Message, ModeMemory};
use super::local;
use super::pool::Pool;
use super::{Attempt, Outcome, Reason};
use crate::config::{Config, RelayConfig, Security};
use crate::net::resolve::Resolver;
use crate::net::tls;
use crate::privsep::LocalHelper;
use crate::route::{Route, Router};
use crate::spool::{BodyType, Envelope};
use postrelay_smtp::reply::Reply;

/// Why the engine could not be built from a configuration.
#[derive(Debug, thiserror::Error)]
#[error("{part}: {message}")]
pub struct EngineError {
    /// Which part of the configuration: `relay "NAME"` or `[cluster]`.
    pub part: String,
    /// What is wrong (a CA file that does not load …).
    pub message: String,
}

struct Relay {
    config: RelayConfig,
    /// Built for a transport map `smtp:` next hop (`Config::next_hops`),
    /// not a `[[relay]]`: never in the default list.
    next_hop: bool,
    tls_config: Arc<rustls::ClientConfig>,
    mode: Arc<ModeMemory>,
    pool: Pool,
    /// Access tokens for an OAuth2 relay; kept across a reload that does
    /// not change its OAuth settings.
    oauth: Option<Arc<TokenSource>>,
}

/// The delivery engine for one configuration (rebuilt on reload).
pub struct Deliverer {
    hostname: String,
    router: Arc<Router>,
    local: local::LocalSettings,
    /// Writes local mail (as the recipients); carried over on reload.
    local_helper: Option<Arc<LocalHelper>>,
    relays: Vec<Relay>,
    resolver: Arc<Resolver>,
    /// The counts of the relays' sending limits; carried over on reload.
    quota: Arc<crate::quota::Store>,
}

/// Where recipients leave through: the relays (all in order, or one by
/// name), or an explicit next hop from the transport map.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    Relays(Option<String>),
    Smtp { host: String, port: u16 },
}

pub(crate) use local_mail::local_settings;

impl Deliverer {
    /// Builds the engine; `previous` (on reload) hands over what relays
    /// learned (the detected TLS mode) when their host and port are the same.
    pub fn new(
        config: &Config,
        previous: Option<&Deliverer>,
        resolver: Arc<Resolver>,
    ) -> Result<Arc<Deliverer>, EngineError> {
        let helper = previous.and_then(|p| p.local_helper.clone());
        Self::build(config, previous, helper, resolver)
    }

    fn build(
        config: &Config,
        previous: Option<&Deliverer>,
        local_helper: Option<Arc<LocalHelper>>,
        resolver: Arc<Resolver>,
    ) -> Result<Arc<Deliverer>, EngineError> {
        let mut relays = Vec::new();
        let hops = config.next_hops.iter().map(|rc| (rc, true));
        for (rc, next_hop) in config.relays.iter().map(|rc| (rc, false)).chain(hops) {
            let err = |message: String| EngineError {
                part: format!("relay \"{}\"", rc.name),
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
            let oauth = match &rc.oauth {
                None => None,
                Some(o) => Some(
                    previous
                        .and_then(|p| p.relays.iter().find(|r| r.config.name == rc.name))
                        .and_then(|r| r.oauth.clone())
                        .filter(|s| s.config() == o)
                        .map_or_else(|| TokenSource::new(&rc.name, o.clone(), None), Ok)
                        .map_err(|e| err(e.to_string()))?,
                ),
            };
            relays.push(Relay {
                config: rc.clone(),
                next_hop,
                tls_config,
                mode,
                pool,
                oauth,
            });
        }
        let engine = Arc::new(Deliverer {
            hostname: config.hostname.clone(),
            router: Arc::new(config.router()),
            local: local_settings(&config.local),
            local_helper,
            relays,
            resolver,
            quota: previous.map_or_else(|| limits::store(config), |p| Ok(p.quota.clone()))?,
        });
        spawn_reaper(Arc::downgrade(&engine));
        Ok(engine)
    }

    /// Builds the daemon's first engine, which delivers local mail through
    /// `helper` (later engines, built with [`Deliverer::new`] from this
    /// one, keep it). Without a helper, local mail is deferred.
    pub fn with_local_helper(
        config: &Config,
        helper: Arc<LocalHelper>,
        resolver: Arc<Resolver>,
    ) -> Result<Arc<Deliverer>, EngineError> {
        Self::build(config, None, Some(helper), resolver)
    }

    /// Closes idle connections (shutdown, or this engine being replaced).
    pub fn close_idle(&self) {
        for r in &self.relays {
            r.pool.close_all();
        }
    }

    /// The counts of the relays' sending limits (shared with the engines
    /// built from this one on reload), and each relay's name and limits,
    /// for metrics.
    pub fn quota(
        &self,
    ) -> (
        &Arc<crate::quota::Store>,
        Vec<(&str, &crate::quota::Limits)>,
    ) {
        let relays = self.relays.iter().filter(|r| !r.next_hop);
        let limits = relays.map(|r| (r.config.name.as_str(), &r.config.limits.quota));
        (&self.quota, limits.collect())
    }

    /// The router of this configuration, shared with the queue (alias
    /// expansion at acceptance).
    pub fn router(&self) -> Arc<Router> {
        self.router.clone()
    }

    /// One attempt for the `pending` recipients (indices into
    /// `env.recipients`) of a message whose body is at `body`, recording
    /// nothing mid-attempt: [`Deliverer::attempt_with`] and [`NoProgress`].
    pub async fn attempt(&self, env: &Envelope, body: &Path, pending: &[usize]) -> Attempt {
        self.attempt_with(env, body, pending, &NoProgress).await
    }

    /// One attempt for the `pending` recipients (indices into
    /// `env.recipients`) of a message whose body is at `body`. Aliases were
    /// expanded when the message was accepted; here each recipient only
    /// gets its transport: local delivery, a relay, an explicit next hop,
    /// an error, or discard. Recipients sharing a destination share one
    /// transaction. Local mailboxes come first, then each destination in
    /// turn; after each of these steps but the last, the recipients it
    /// delivered go to `progress` to be recorded before the next step.
    pub async fn attempt_with<P: Progress>(
        &self,
        env: &Envelope,
        body: &Path,
        pending: &[usize],
        progress: &P,
    ) -> Attempt {
        let mut result = Attempt::nothing();
        let mut locals: Vec<(usize, String)> = Vec::new();
        let mut groups: Vec<(Destination, Vec<usize>)> = Vec::new();
        for &i in pending {
            let address = &env.recipients[i].address;
            let dest = match self.router.transport(address) {
                Route::Local { user } => {
                    locals.push((i, user));
                    continue;
                }
                Route::Discard => {
                    result.relays.insert(i, "none".into());
                    let reply = Reply::new(250, "2.0.0", "discarded by the transport map");
                    result.outcomes.push((i, Outcome::Delivered(reply)));
                    continue;
                }
                Route::Error { status, text } => {
                    let reason = Reason::Policy { status, text };
                    result.relays.insert(i, "none".into());
                    result.outcomes.push((i, Outcome::from_reason(reason)));
                    continue;
                }
                Route::Relay { name } => Destination::Relays(
                    name.or_else(|| self.router.relay_for_sender(&env.sender).map(str::to_owned)),
                ),
                Route::Smtp { host, port } => Destination::Smtp { host, port },
            };
            match groups.iter_mut().find(|(d, _)| *d == dest) {
                Some((_, v)) => v.push(i),
                None => groups.push((dest, vec![i])),
            }
        }
        // A relay's recipients_per_transaction splits a group into several
        // transactions (on the same pooled session), each its own step.
        let groups: Vec<(Destination, Vec<usize>)> = groups
            .into_iter()
            .flat_map(|(dest, indices)| {
                let size = self.chunk_size(&dest);
                let chunks: Vec<Vec<usize>> = indices.chunks(size).map(<[usize]>::to_vec).collect();
                chunks.into_iter().map(move |c| (dest.clone(), c))
            })
            .collect();
        let mut left = locals.len() + groups.len();
        for (i, user) in locals {
            let from = result.outcomes.len();
            let outcome = self.deliver_locally(env, i, &user).await;
            result.arrived(std::slice::from_ref(&outcome));
            result.relays.insert(i, "local".into());
            result.outcomes.push((i, outcome));
            left -= 1;
            report(&mut result, from, left, progress).await;
        }
        for (dest, indices) in groups {
            let from = result.outcomes.len();
            self.send_group(env, body, &dest, &indices, &mut result)
                .await;
            left -= 1;
            report(&mut result, from, left, progress).await;
        }
        result
    }

    /// One transaction for recipients that leave through the same
    /// destination, with sender rewriting applied.
    async fn send_group(
        &self,
        env: &Envelope,
        body: &Path,
        dest: &Destination,
        indices: &[usize],
        result: &mut Attempt,
    ) {
        let relays = match self.relays_for(dest) {
            Ok(r) => r,
            Err(reason) => return result.settle_all(indices, &reason),
        };
        let recipients: Vec<String> = indices
            .iter()
            .map(|&i| env.recipients[i].address.clone())
            .collect();
        let sender = self
            .router
            .rewrite_sender(&env.sender)
            .unwrap_or_else(|| env.sender.clone());
        let rewritten = match self.rewritten_header(body) {
            Ok(r) => r,
            // Sending the header unrewritten would show the provider (and
            // the recipients) the internal addresses the rewrite hides.
            Err(e) => {
                let reason = Reason::Local(format!(
                    "cannot read the queue file {} to rewrite its header: {e}",
                    body.display()
                ));
                return result.settle_all(indices, &reason);
            }
        };
        let message = Message {
            sender: &sender,
            recipients: &recipients,
            body,
            size: env.size,
            eight_bit: env.body == BodyType::EightBitMime,
            smtputf8: env.smtputf8,
            sends_as_is: env.sends_as_is,
            header: rewritten.as_ref().map(|(bytes, replaces)| HeaderSwap {
                bytes,
                replaces: *replaces,
            }),
        };
        self.send_via_relays(&relays, &message, indices, result)
            .await;
    }

    /// The relays that may carry mail for `dest`, in the order they are
    /// tried; why the mail waits when a relay destination has none. An
    /// `smtp:` next hop is the `[[relay]]` at its host and port, else its
    /// own relay from `Config::next_hops` (built at load, so there is one).
    fn relays_for(&self, dest: &Destination) -> Result<Vec<&Relay>, Reason> {
        let listed = || self.relays.iter().filter(|r| !r.next_hop);
        let named = |name: &str| listed().find(|r| r.config.name == name);
        let first = match dest {
            Destination::Relays(None) => return or_none(dest, listed().collect()),
            Destination::Relays(Some(name)) => named(name),
            // [[relay]] tables come first, so they win.
            Destination::Smtp { host, port } => {
                self.relays.iter().find(|r| r.config.is_at(host, *port))
            }
        };
        // A relay chosen by name or next hop fails over to its own
        // fallbacks, by the same rules as the default list.
        let relays = first
            .into_iter()
            .flat_map(|r| {
                let fallbacks = r.config.fallbacks.iter().filter_map(|n| named(n));
                std::iter::once(r).chain(fallbacks)
            })
            .collect();
        or_none(dest, relays)
    }

    /// The first relay that accepts the session carries the message; one
    /// that is unreachable or refuses the session hands over to the next.
    /// Once a relay has the transaction its replies decide (no failover:
    /// it would only move a refusal elsewhere, or deliver twice in a
    /// hurry after a break).
    async fn send_via_relays(
        &self,
        relays: &[&Relay],
        message: &Message<'_>,
        indices: &[usize],
        result: &mut Attempt,
    ) {
        let mut last: Option<Failure> = None;
        let mut relays: Vec<&Relay> = relays.to_vec();
        let mut next = 0;
        while let Some(&relay) = relays.get(next) {
            next += 1;
            let done = match self.transact(relay, message).await {
                Ok(done) => done,
                Err(mut f) => {
                    self.throttled_failure(relay, &mut f).await;
                    result
                        .notes
                        .push(format!("relay {}: {}", relay.config.name, f.reason));
                    // A relay at its limits is not down: its mail waits,
                    // or goes to its spill_to relay, not to its fallbacks.
                    let waits = f.reason.quota_until().is_some();
                    last = Some(f);
                    if waits {
                        relays.truncate(next);
                        let spill = self.spill_of(relay);
                        if let Some(s) =
                            spill.filter(|s| !relays.iter().any(|r| std::ptr::eq(*r, *s)))
                        {
                            relays.push(s);
                        }
                    }
                    continue;
                }
            };
            result.conn_setup = done.setup;
            result.conn_use = done.conn_use;
            result.transmission = done.transmission;
            let Transacted {
                mut lease, sent, ..
            } = done;
            let via = describe(&relay.config.host, lease.session.peer());
            let facts = SessionFacts::of(&relay.config.name, &via, &lease.session, lease.reused);
            result.session = Some(facts);
            let transcript = match &sent {
                // Nobody reads the transcript of a transaction that
                // delivered every recipient: its buffers serve the next.
                Ok(outcomes) if outcomes.iter().all(|o| matches!(o, Outcome::Delivered(_))) => {
                    lease.session.clear_transcript();
                    Ok(Vec::new())
                }
                Ok(_) => Ok(lease.session.take_transcript()),
                Err(f) => Err(f),
            };
            result.record(indices, &via, transcript);
            result.notes.clear();
            match sent {
                Ok(outcomes) => {
                    let outcomes = self.throttled_outcomes(relay, outcomes).await;
                    result.arrived(&outcomes);
                    result
                        .outcomes
                        .extend(indices.iter().copied().zip(outcomes));
                    relay.pool.checkin(lease);
                }
                Err(mut f) => {
                    // The session broke during the transaction: the message
                    // may or may not have arrived; it waits.
                    self.throttled_failure(relay, &mut f).await;
                    result.settle_all(indices, &f.reason);
                    result.transcript = f.transcript;
                }
            }
            return;
        }
        let failure = last
            .unwrap_or_else(|| Failure::before_session(Reason::Local("no relay was tried".into())));
        result.settle_all(indices, &failure.reason);
        result.transcript = failure.transcript;
    }

    /// The header section rewritten for the provider (`[routing] generic`
    /// / `rewrite_senders`), and how many bytes of the file it replaces;
    /// `None` when nothing changes.
    fn rewritten_header(&self, body: &Path) -> std::io::Result<Option<(Vec<u8>, u64)>> {
        if !self.router.rewrites_senders() {
            return Ok(None);
        }
        let head = crate::header::read_head(body)?;
        let section = crate::header::header_section(&head);
        let rewrite = self.router.rewrite_headers(section);
        if rewrite.changes.is_empty() {
            return Ok(None);
        }
        Ok(Some((rewrite.header, section.len() as u64)))
    }
}

/// After a step of an attempt: hands the recipients it delivered
/// (`result.outcomes[from..]`) to `progress` when `left` steps remain, and
/// once they are recorded, closes the window `delivered_at` measures.
async fn report<P: Progress>(result: &mut Attempt, from: usize, left: usize, progress: &P) {
    let delivered = result.outcomes[from..]
        .iter()
        .any(|(_, o)| matches!(o, Outcome::Delivered(_)));
    if left > 0 && delivered && progress.delivered(result, from).await {
        result.delivered_at = None;
    }
}

/// `relays`, or why mail for `dest` waits when there are none.
fn or_none<'a>(dest: &Destination, relays: Vec<&'a Relay>) -> Result<Vec<&'a Relay>, Reason> {
    if !relays.is_empty() {
        return Ok(relays);
    }
    Err(Reason::Unavailable(match dest {
        Destination::Relays(Some(name)) => format!("relay \"{name}\" is not configured"),
        Destination::Smtp { host, port } => {
            format!("no settings for the next hop smtp:[{host}]:{port}; reload postrelay")
        }
        Destination::Relays(None) => {
            "no relay is configured: add a [[relay]] section to the configuration".into()
        }
    }))
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

mod limits;
mod local_mail;
mod session;
use session::Transacted;
#[cfg(test)]
mod tests;
