//! Provider sending limits: how much a provider account may send, how much
//! it has sent, and when the next message may go.
//!
//! - [`Limits`]: one relay's limits after its preset and its own keys
//!   (`[relay.limits]`): a rate (token bucket with a burst), rolling
//!   windows (messages or recipients per hour or day), and the recipients
//!   one transaction may carry (enforced by the engine splitting the
//!   message, not by the store).
//! - [`Store`]: where the counts live, one per daemon. [`Store::take`] is
//!   all-or-nothing: every limit has room and all are charged, or nothing
//!   is charged and the verdict says when all would fit. A relay that
//!   answered with a throttle reply is cooling down ([`Store::cool_down`]):
//!   `take` answers `Wait` until then. Counts are kept per *account*
//!   ([`Limits::account`]), so relays sharing a provider account share
//!   them.
//! - `local`: the store of one node, in memory (lost on restart: after a
//!   restart the provider's own count may be higher than ours, and its
//!   throttle reply then starts a cool-down).
//! - `cluster` (cargo feature `cluster`, `[cluster]`): the counts of
//!   several nodes in Redis, and each node's local share while Redis is
//!   away.
//!
//! Not for: deciding which replies are throttle replies (that is
//! `deliver::outcome`, the one classifier) or scheduling the waiting mail
//! (the queue's worker sets the retry time from the verdict).

#[cfg(feature = "cluster")]
pub mod cluster;
mod limits;
mod local;

use std::fmt;
use std::time::{Duration, SystemTime};

pub use limits::{Counted, Limits, Rate, Span, Window};
pub use local::LocalStore;

/// Which limit bound a request, for `queue list`, the mail log and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// The rate: `count` messages per `per`, with a burst of `burst`.
    Rate(Rate),
    /// A rolling window.
    Window(Window),
    /// The relay answered with a throttle reply; `reason` is that reply.
    CoolDown {
        /// The reply (or why the cool-down was set).
        reason: String,
    },
}

impl Limit {
    /// A short label for metrics (`rate`, `messages_per_day`, `cool_down`).
    pub fn label(&self) -> String {
        match self {
            Limit::Rate(_) => "rate".into(),
            Limit::Window(w) => w.label(),
            Limit::CoolDown { .. } => "cool_down".into(),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Rate(r) => write!(f, "rate {r}"),
            Limit::Window(w) => write!(f, "{w}"),
            Limit::CoolDown { reason } => write!(f, "cool-down after \"{reason}\""),
        }
    }
}

/// The answer to [`Store::take`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every limit had room; all were charged.
    Granted,
    /// Nothing was charged; everything asked for fits at `until` (as far
    /// as is known now), and `limit` is the one that binds longest.
    Wait {
        /// The earliest time all limits would have room.
        until: SystemTime,
        /// The limit that binds until then.
        limit: Limit,
    },
}

/// How much of one limit is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitUse {
    /// Which limit.
    pub limit: Limit,
    /// Used now (for the rate: tokens spent and not yet refilled).
    pub used: u64,
    /// The most that may be used (for the rate: the burst).
    pub max: u64,
    /// When the next unit frees up (`None`: nothing is used).
    pub frees_at: Option<SystemTime>,
}

/// An account's use of its limits, for `queue list`, the log and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Usage {
    /// One entry per limit of the [`Limits`] asked about, and one for an
    /// active cool-down.
    pub limits: Vec<LimitUse>,
}

impl Usage {
    /// The cool-down in force, if any: its reason and end.
    pub fn cooling(&self) -> Option<(&str, SystemTime)> {
        self.limits
            .iter()
            .find_map(|u| match (&u.limit, u.frees_at) {
                (Limit::CoolDown { reason }, Some(at)) => Some((reason.as_str(), at)),
                _ => None,
            })
    }
}

/// Why a store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// More was asked in one request than the limit allows at all; the
    /// engine splits transactions so that this does not happen.
    #[error("{asked} is more than {limit} allows at all")]
    NeverFits {
        /// The limit.
        limit: Limit,
        /// How much was asked.
        asked: u64,
    },
}

/// Why the store a configuration asks for could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `[cluster]` could not be set up.
    #[cfg(feature = "cluster")]
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    /// `[cluster]` in a build without cluster mode (the configuration
    /// refuses it first).
    #[cfg(not(feature = "cluster"))]
    #[error("[cluster]: this postrelay was built without cluster mode")]
    NoClusterMode,
}

/// Where the counts live. One per daemon, shared by every engine built
/// on reload (counts survive a reload, not a restart).
#[derive(Debug)]
pub enum Store {
    /// This node's counts, in memory.
    Local(LocalStore),
    /// The counts of every node sending for the same accounts, in Redis
    /// (`[cluster]`; this node's share of each limit while Redis is away).
    #[cfg(feature = "cluster")]
    Cluster(Box<cluster::ClusterStore>),
}

impl Default for Store {
    fn default() -> Self {
        Store::Local(LocalStore::default())
    }
}

impl Store {
    /// The store `config` asks for: the cluster's with `[cluster]`, else
    /// this node's. Needs a tokio runtime (the cluster's connection).
    pub fn for_config(config: &crate::config::Config) -> Result<Store, StoreError> {
        match &config.cluster {
            None => Ok(Store::default()),
            #[cfg(feature = "cluster")]
            Some(c) => Ok(Store::Cluster(Box::new(cluster::ClusterStore::new(c)?))),
            #[cfg(not(feature = "cluster"))]
            Some(_) => Err(StoreError::NoClusterMode),
        }
    }

    /// In cluster mode, its namespace and whether the counts are shared
    /// now (`false`: this node counts its share alone); else `None`.
    pub fn cluster_mode(&self) -> Option<(&str, bool)> {
        match self {
            Store::Local(_) => None,
            #[cfg(feature = "cluster")]
            Store::Cluster(s) => Some((s.namespace(), s.is_shared())),
        }
    }

    /// Charges `take`'s messages and recipients against every limit of
    /// its limits for its account, all or nothing.
    pub async fn take(&self, take: &Take<'_>) -> Result<Verdict, QuotaError> {
        match self {
            Store::Local(s) => s.take(take),
            #[cfg(feature = "cluster")]
            Store::Cluster(s) => s.take(take).await,
        }
    }

    /// How much of each limit `account` has used at `now`.
    pub async fn usage(
        &self,
        account: &str,
        limits: &Limits,
        now: SystemTime,
    ) -> Result<Usage, QuotaError> {
        match self {
            Store::Local(s) => Ok(s.usage(account, limits, now)),
            #[cfg(feature = "cluster")]
            Store::Cluster(s) => s.usage(account, limits, now).await,
        }
    }

    /// `account` takes nothing until `until` (a throttle reply said so);
    /// a later end replaces an earlier one, never the other way round.
    pub async fn cool_down(
        &self,
        account: &str,
        until: SystemTime,
        reason: &str,
    ) -> Result<(), QuotaError> {
        match self {
            Store::Local(s) => {
                s.cool_down(account, until, reason);
                Ok(())
            }
            #[cfg(feature = "cluster")]
            Store::Cluster(s) => s.cool_down(account, until, reason, SystemTime::now()).await,
        }
    }
}

/// One charge asked of a store ([`Store::take`]): what it counts against
/// which limits of which account, at what time.
#[derive(Debug, Clone, Copy)]
pub struct Take<'a> {
    /// The provider account the limits are counted for.
    pub account: &'a str,
    /// Its limits.
    pub limits: &'a Limits,
    /// Messages charged (to the rate and message windows).
    pub messages: u32,
    /// Recipients charged (to the recipient windows).
    pub recipients: u32,
    /// The time of the charge.
    pub now: SystemTime,
}

impl Take<'_> {
    /// What it charges to window `w`: its messages or its recipients.
    fn need(&self, w: &Window) -> u64 {
        u64::from(match w.counts {
            Counted::Messages => self.messages,
            Counted::Recipients => self.recipients,
        })
    }
}

/// Nanoseconds since the Unix epoch (0 before it), the stores' clock unit.
pub(crate) fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The inverse of [`nanos`].
pub(crate) fn time(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests;
