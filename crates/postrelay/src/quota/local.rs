//! The store of one node: counts in memory, under a std mutex held for a
//! few comparisons (no I/O, no await under it). Lost on restart.
//!
//! - The rate is a token bucket kept as its "theoretical arrival time"
//!   (GCRA): one number per account.
//! - A window is a ledger of charges, oldest first; charges less than
//!   1/1000 of the span apart share one entry that expires with its
//!   *latest* charge (so the ledger stays small and never frees early).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::{Counted, Limit, LimitUse, Limits, QuotaError, Rate, Span, Take, Usage, Verdict};
use super::{nanos, time};

/// Charges closer together than span / this share a ledger entry.
const ENTRIES_PER_SPAN: u64 = 1000;

/// Counts of every account this node sends for.
#[derive(Debug, Default)]
pub struct LocalStore {
    accounts: Mutex<HashMap<String, Account>>,
}

#[derive(Debug, Default)]
struct Account {
    /// When the bucket is full again (nanoseconds; ≤ now: full).
    tat: u64,
    ledgers: HashMap<(Span, Counted), Ledger>,
    /// End (nanoseconds) and reason of a cool-down.
    cool: Option<(u64, String)>,
}

#[derive(Debug, Default)]
struct Ledger {
    /// `(first charge, latest charge, count)`, oldest first.
    entries: VecDeque<(u64, u64, u64)>,
    total: u64,
}

impl Ledger {
    fn prune(&mut self, now: u64, span: u64) {
        while let Some(&(_, latest, count)) = self.entries.front() {
            if latest.saturating_add(span) > now {
                break;
            }
            self.total -= count;
            self.entries.pop_front();
        }
    }

    /// When `need` more fits under `max` (`None`: now).
    fn fits_at(&self, need: u64, max: u64, span: u64) -> Option<u64> {
        let mut left = self.total;
        if left + need <= max {
            return None;
        }
        for &(_, latest, count) in &self.entries {
            left -= count;
            if left + need <= max {
                return Some(latest.saturating_add(span));
            }
        }
        // Unreachable when need <= max: every entry freed leaves 0.
        self.entries.back().map(|e| e.1.saturating_add(span))
    }

    fn charge(&mut self, now: u64, n: u64, span: u64) {
        if n == 0 {
            return;
        }
        self.total += n;
        if let Some(last) = self.entries.back_mut()
            && now < last.0.saturating_add(span / ENTRIES_PER_SPAN)
        {
            last.1 = last.1.max(now);
            last.2 += n;
            return;
        }
        self.entries.push_back((now, now, n));
    }

    /// When the oldest charge expires.
    fn frees_at(&self, span: u64) -> Option<u64> {
        self.entries.front().map(|e| e.1.saturating_add(span))
    }
}

fn span_nanos(s: Span) -> u64 {
    u64::try_from(s.duration().as_nanos()).unwrap_or(u64::MAX)
}

/// Keeps the later of two waits (the one that binds longest).
fn later(wait: &mut Option<(u64, Limit)>, at: u64, limit: Limit) {
    if wait.as_ref().is_none_or(|(w, _)| at > *w) {
        *wait = Some((at, limit));
    }
}

impl LocalStore {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Account>> {
        // Every update leaves the maps consistent; poison is ignored.
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// See [`super::Store::take`].
    pub fn take(&self, take: &Take<'_>) -> Result<Verdict, QuotaError> {
        let (limits, messages) = (take.limits, take.messages);
        let now = nanos(take.now);
        check_fits(take)?;
        let mut accounts = self.lock();
        let acct = accounts.entry(take.account.to_owned()).or_default();
        let mut wait: Option<(u64, Limit)> = None;
        if let Some((until, reason)) = &acct.cool
            && *until > now
        {
            let reason = reason.clone();
            later(&mut wait, *until, Limit::CoolDown { reason });
        }
        let mut new_tat = None;
        if let Some(rate) = &limits.rate {
            let t = rate.interval_nanos();
            let tat = acct.tat.max(now).saturating_add(t * u64::from(messages));
            let tolerance = t.saturating_mul(u64::from(rate.burst.max(1)));
            if tat.saturating_sub(now) <= tolerance {
                new_tat = Some(tat);
            } else {
                later(&mut wait, tat - tolerance, Limit::Rate(*rate));
            }
        }
        for w in &limits.windows {
            let span = span_nanos(w.span);
            let ledger = acct.ledgers.entry((w.span, w.counts)).or_default();
            ledger.prune(now, span);
            if let Some(at) = ledger.fits_at(take.need(w), u64::from(w.max), span) {
                later(&mut wait, at, Limit::Window(*w));
            }
        }
        if let Some((until, limit)) = wait {
            return Ok(Verdict::Wait {
                until: time(until),
                limit,
            });
        }
        if let Some(tat) = new_tat {
            acct.tat = tat;
        }
        for w in &limits.windows {
            let span = span_nanos(w.span);
            let ledger = acct.ledgers.entry((w.span, w.counts)).or_default();
            ledger.charge(now, take.need(w), span);
        }
        Ok(Verdict::Granted)
    }

    /// See [`super::Store::usage`].
    pub fn usage(&self, account: &str, limits: &Limits, now: SystemTime) -> Usage {
        let now = nanos(now);
        let mut accounts = self.lock();
        let acct = accounts.entry(account.to_owned()).or_default();
        let mut out = Vec::new();
        if let Some((until, reason)) = &acct.cool
            && *until > now
        {
            out.push(LimitUse {
                limit: Limit::CoolDown {
                    reason: reason.clone(),
                },
                used: 1,
                max: 1,
                frees_at: Some(time(*until)),
            });
        }
        if let Some(rate) = &limits.rate {
            out.push(rate_use(rate, acct.tat, now));
        }
        for w in &limits.windows {
            let span = span_nanos(w.span);
            let ledger = acct.ledgers.entry((w.span, w.counts)).or_default();
            ledger.prune(now, span);
            out.push(LimitUse {
                limit: Limit::Window(*w),
                used: ledger.total,
                max: u64::from(w.max),
                frees_at: ledger.frees_at(span).map(time),
            });
        }
        Usage { limits: out }
    }

    /// See [`super::Store::cool_down`].
    pub fn cool_down(&self, account: &str, until: SystemTime, reason: &str) {
        let until = nanos(until);
        let mut accounts = self.lock();
        let acct = accounts.entry(account.to_owned()).or_default();
        if acct.cool.as_ref().is_none_or(|(u, _)| until > *u) {
            acct.cool = Some((until, reason.to_owned()));
        }
    }
}

/// A request no amount of waiting could grant.
fn check_fits(take: &Take<'_>) -> Result<(), QuotaError> {
    if let Some(rate) = &take.limits.rate
        && take.messages > rate.burst.max(1)
    {
        return Err(QuotaError::NeverFits {
            limit: Limit::Rate(*rate),
            asked: u64::from(take.messages),
        });
    }
    for w in &take.limits.windows {
        let asked = take.need(w);
        if asked > u64::from(w.max) {
            return Err(QuotaError::NeverFits {
                limit: Limit::Window(*w),
                asked,
            });
        }
    }
    Ok(())
}

/// The bucket's use: tokens spent and not yet back, and when one is.
fn rate_use(rate: &Rate, tat: u64, now: u64) -> LimitUse {
    let t = rate.interval_nanos();
    let ahead = tat.saturating_sub(now);
    let used = ahead.div_ceil(t);
    LimitUse {
        limit: Limit::Rate(*rate),
        used,
        max: u64::from(rate.burst.max(1)),
        frees_at: (used > 0).then(|| time(tat - (used - 1) * t)),
    }
}
