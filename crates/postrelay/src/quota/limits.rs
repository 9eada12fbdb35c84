//! The limits of one relay, as the configuration resolved them (preset
//! defaults, then the relay's own `[relay.limits]` keys).

use std::fmt;
use std::time::Duration;

/// One relay's sending limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Limits {
    /// Whose counts these are: relays (and nodes) with the same account
    /// share them. Default: the relay's user name at its host
    /// (`user@host`), else its name.
    pub account: String,
    /// Messages per unit of time, with a burst. `None`: no rate limit.
    pub rate: Option<Rate>,
    /// Rolling windows (at most one per span and kind).
    pub windows: Vec<Window>,
    /// The most recipients one transaction may carry; a message with more
    /// is sent in several transactions on the same session. `None`: no
    /// limit.
    pub recipients_per_transaction: Option<u32>,
}

impl Limits {
    /// Whether there is anything for a store to count.
    pub fn counts_anything(&self) -> bool {
        self.rate.is_some() || !self.windows.is_empty()
    }

    /// How many recipients one transaction may carry: the configured
    /// limit, and no more than the smallest recipient window (a chunk
    /// larger than a window could never be granted).
    pub fn chunk_size(&self) -> usize {
        let windows = self
            .windows
            .iter()
            .filter(|w| w.counts == Counted::Recipients)
            .map(|w| w.max);
        let smallest = self
            .recipients_per_transaction
            .into_iter()
            .chain(windows)
            .min();
        smallest.map_or(usize::MAX, |n| {
            usize::try_from(n.max(1)).unwrap_or(usize::MAX)
        })
    }
}

/// A token bucket: `count` messages per `per`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Messages per `per`.
    pub count: u32,
    /// The unit of time (1 s, 1 min, 1 h).
    pub per: Duration,
    /// How many may go at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl Rate {
    /// The time one token takes to come back, in nanoseconds (at least 1).
    pub fn interval_nanos(&self) -> u64 {
        let per = u64::try_from(self.per.as_nanos()).unwrap_or(u64::MAX);
        (per / u64::from(self.count.max(1))).max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => return write!(f, "{}/{:?} (burst {})", self.count, self.per, self.burst),
        };
        write!(f, "{}/{unit} (burst {})", self.count, self.burst)
    }
}

/// How long a rolling window looks back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Span {
    /// The last 60 minutes.
    Hour,
    /// The last 24 hours.
    Day,
}

impl Span {
    /// The span as a duration.
    pub fn duration(self) -> Duration {
        match self {
            Span::Hour => Duration::from_secs(3600),
            Span::Day => Duration::from_secs(86_400),
        }
    }

    /// `hour` or `day`.
    pub fn as_str(self) -> &'static str {
        match self {
            Span::Hour => "hour",
            Span::Day => "day",
        }
    }
}

/// What a window counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counted {
    /// Transactions (one per message, or per chunk of a split message:
    /// each is a message to the provider).
    Messages,
    /// Recipients.
    Recipients,
}

impl Counted {
    /// `messages` or `recipients`.
    pub fn as_str(self) -> &'static str {
        match self {
            Counted::Messages => "messages",
            Counted::Recipients => "recipients",
        }
    }
}

/// At most `max` of `counts` in any `span`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// How far back it looks.
    pub span: Span,
    /// What it counts.
    pub counts: Counted,
    /// The most allowed in the span.
    pub max: u32,
}

impl Window {
    /// The configuration key and metrics label: `recipients_per_day`.
    pub fn label(&self) -> String {
        format!("{}_per_{}", self.counts.as_str(), self.span.as_str())
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} per {}",
            self.max,
            self.counts.as_str(),
            self.span.as_str()
        )
    }
}
