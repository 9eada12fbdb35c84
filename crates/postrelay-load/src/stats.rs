//! Statistics over one run: percentiles of latencies, and the join of the
//! sink's arrival log with the generator's acceptance times (end-to-end
//! throughput and accept-to-hand-off delay).
//!
//! The sink writes one line per transaction, `<id> <recipients> <unix-ns>`,
//! where `<id>` is the message's `X-Load-Id` header (`-` when it has none);
//! the generator names its messages `<tag>.<seq>`.

use serde::{Deserialize, Serialize};

/// Nearest-rank percentiles of a sample, in the sample's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Sample size.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// Percentiles of `values` (reordered in place); `None` for an empty sample.
pub fn percentiles(values: &mut [f64]) -> Option<Percentiles> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let rank = |q: f64| {
        // Nearest rank: the smallest value with at least q of the sample at
        // or below it.
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        values.get(i).copied().unwrap_or(f64::NAN)
    };
    Some(Percentiles {
        n,
        p50: rank(0.50),
        p90: rank(0.90),
        p99: rank(0.99),
        max: rank(1.0),
        mean: values.iter().sum::<f64>() / n as f64,
    })
}

/// One line of the sink's arrival log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival<'a> {
    /// The `X-Load-Id` of the message, `-` for none.
    pub id: &'a str,
    /// Recipients in the transaction.
    pub rcpts: u32,
    /// When the sink answered the end of data, ns since the Unix epoch.
    pub at_ns: u128,
}

/// Parses one arrival line (without its newline).
pub fn parse_arrival(line: &str) -> Option<Arrival<'_>> {
    let mut words = line.split(' ');
    let id = words.next().filter(|w| !w.is_empty())?;
    let rcpts = words.next()?.parse().ok()?;
    let at_ns = words.next()?.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    Some(Arrival { id, rcpts, at_ns })
}

/// Follows the arrivals of one run's messages in the sink's log: a message
/// has arrived when all its recipients have (a relay may split it into
/// several transactions).
#[derive(Debug)]
pub struct Arrivals {
    prefix: String,
    want_rcpts: u32,
    got: Vec<u32>,
    done_at: Vec<Option<u128>>,
    pending: usize,
    partial: String,
    /// Lines that were not arrival lines.
    pub malformed: usize,
}

impl Arrivals {
    /// Expects the messages of run `tag` whose `expected[seq]` is true,
    /// each with `want_rcpts` recipients.
    pub fn new(tag: &str, expected: &[bool], want_rcpts: u32) -> Arrivals {
        Arrivals {
            prefix: format!("{tag}."),
            want_rcpts,
            got: expected
                .iter()
                .map(|&e| if e { 0 } else { u32::MAX })
                .collect(),
            done_at: vec![None; expected.len()],
            pending: expected.iter().filter(|&&e| e).count(),
            partial: String::new(),
            malformed: 0,
        }
    }

    /// Messages not yet (fully) arrived.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// When each message had fully arrived (ns since the epoch).
    pub fn done_at(&self) -> &[Option<u128>] {
        &self.done_at
    }

    /// Reads more of the log; a last line without its newline is kept for
    /// the next call.
    pub fn feed(&mut self, text: &str) {
        self.partial.push_str(text);
        let Some(end) = self.partial.rfind('\n') else {
            return;
        };
        let complete: String = self.partial.drain(..=end).collect();
        for line in complete.lines() {
            match parse_arrival(line) {
                Some(a) => self.note(&a),
                None => self.malformed += 1,
            }
        }
    }

    fn note(&mut self, a: &Arrival<'_>) {
        let Some(seq) = a.id.strip_prefix(&self.prefix) else {
            return;
        };
        let Ok(seq) = seq.parse::<usize>() else {
            return;
        };
        let (Some(got), Some(done)) = (self.got.get_mut(seq), self.done_at.get_mut(seq)) else {
            return;
        };
        if *got >= self.want_rcpts {
            // Not expected, or already complete (a duplicate delivery).
            return;
        }
        *got = got.saturating_add(a.rcpts);
        if *got >= self.want_rcpts {
            *done = Some(a.at_ns);
            self.pending -= 1;
        }
    }
}

/// Per-message delays in milliseconds from `accepted_ns` to arrival, for
/// the messages that have both. A delay is negative when the sink had the
/// message before the relay's 250 reached the client.
pub fn delays_ms(accepted_ns: &[Option<u128>], arrived_ns: &[Option<u128>]) -> Vec<f64> {
    accepted_ns
        .iter()
        .zip(arrived_ns)
        .filter_map(|(a, b)| {
            let (a, b) = (i128::try_from((*a)?).ok()?, i128::try_from((*b)?).ok()?);
            Some((b - a) as f64 / 1e6)
        })
        .collect()
}

#[cfg(test)]
mod tests;
