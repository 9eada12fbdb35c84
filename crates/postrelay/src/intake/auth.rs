//! Checking submission credentials: argon2id verification against the
//! users of `[intake.submission]`, and the brute-force limiter.
//!
//! Verification runs on the blocking pool (an argon2id verify costs tens
//! of milliseconds of CPU and about 19 MiB), at most [`VERIFY_SLOTS`] at a
//! time so that a flood of AUTH attempts cannot exhaust memory or threads.
//! An unknown user name is verified against a real user's hash and then
//! refused, so that the time taken does not tell which names exist.
//!
//! The limiter counts failures per client address (an IPv6 client by its
//! /64, which one host usually has whole) in memory. Attempts being
//! verified count too, so that many parallel connections cannot make more
//! guesses than the limit allows. A success does not clear the count: a
//! client holding one account must not be able to reset the counter while
//! guessing another's password. The map is bounded; when full, forgotten
//! first are entries that have expired, then unlocked ones, then the
//! locks that end soonest.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordVerifier};
use tokio::sync::Semaphore;

use crate::config::{Submission, User};

/// argon2 verifications running at the same time.
pub const VERIFY_SLOTS: usize = 4;

/// Client addresses tracked at most.
const MAX_ENTRIES: usize = 16 * 1024;

/// The delay doubles with each failure up to `auth_delay × 2^5`…
const MAX_DELAY_DOUBLINGS: u32 = 5;

/// … and at most this (unless `auth_delay` itself is longer): clients
/// commonly give up on a reply after 30 seconds or a little more.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// What the limiter is told by the configuration in force.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Failures within `window` that lock the address out.
    pub max_failures: u32,
    /// The counting window, and the length of a lockout.
    pub window: Duration,
    /// Delay before the reply to the first failure.
    pub delay: Duration,
}

impl Policy {
    /// The policy of `[intake.submission]`.
    pub fn of(s: &Submission) -> Policy {
        Policy {
            max_failures: s.max_auth_failures,
            window: s.auth_lockout,
            delay: s.auth_delay,
        }
    }

    /// The delay before answering failure number `n` (1-based).
    pub fn delay_for(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1).min(MAX_DELAY_DOUBLINGS);
        self.delay
            .saturating_mul(1 << doublings)
            .min(MAX_DELAY.max(self.delay))
    }
}

/// The key of an address: IPv4 (also when mapped into IPv6) as is, IPv6
/// by its /64 prefix.
pub(crate) fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[derive(Debug)]
struct Entry {
    /// Start of the current counting window.
    window_start: Instant,
    /// Failures in the current window.
    failures: u32,
    /// Attempts admitted and not yet finished.
    in_flight: u32,
    /// Locked out until then.
    locked_until: Option<Instant>,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            window_start: now,
            failures: 0,
            in_flight: 0,
            locked_until: None,
        }
    }

    fn locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|t| now < t)
    }

    /// Ends a finished lockout or window: the address starts afresh.
    fn refresh(&mut self, now: Instant, window: Duration) {
        if self.locked_until.is_some_and(|t| now >= t) {
            self.locked_until = None;
            self.failures = 0;
            self.window_start = now;
        }
        if self.locked_until.is_none() && now.duration_since(self.window_start) >= window {
            self.failures = 0;
            self.window_start = now;
        }
    }

    /// Whether the entry holds nothing worth remembering.
    fn is_idle(&self, now: Instant, window: Duration) -> bool {
        self.in_flight == 0
            && !self.locked(now)
            && (self.failures == 0 || now.duration_since(self.window_start) >= window)
    }
}

/// The outcome of asking to try a password.
#[derive(Debug)]
pub enum Admission {
    /// Go ahead; report the result through the ticket.
    Allowed(Ticket),
    /// The address is locked out.
    LockedOut,
    /// Attempts in progress from this address already reach the limit.
    Busy,
}

/// Failures per client address. Shared by all submission sessions.
#[derive(Debug, Default)]
pub struct Limiter {
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl Limiter {
    /// An empty limiter.
    pub fn new() -> Arc<Limiter> {
        Arc::new(Limiter::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // A panic while holding the lock leaves consistent counters (every
        // update is a few assignments), so a poisoned map is still usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `ip` is locked out now.
    pub fn is_locked(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        self.lock().get(&key(ip)).is_some_and(|e| e.locked(now))
    }

    /// Asks whether `ip` may try a password now.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, policy: Policy) -> Admission {
        let now = Instant::now();
        let k = key(ip);
        let mut map = self.lock();
        if !map.contains_key(&k) && map.len() >= MAX_ENTRIES {
            evict(&mut map, now, policy.window);
        }
        let entry = map.entry(k).or_insert_with(|| Entry::new(now));
        entry.refresh(now, policy.window);
        if entry.locked(now) {
            return Admission::LockedOut;
        }
        if entry.failures.saturating_add(entry.in_flight) >= policy.max_failures {
            return Admission::Busy;
        }
        entry.in_flight += 1;
        Admission::Allowed(Ticket {
            limiter: self.clone(),
            key: k,
            done: false,
        })
    }

    fn finish(&self, k: IpAddr, failed: bool, policy: Policy) -> Failure {
        let now = Instant::now();
        let mut map = self.lock();
        let Some(entry) = map.get_mut(&k) else {
            // Evicted meanwhile (the map was full of others): count anew.
            return Failure {
                delay: if failed { policy.delay } else { Duration::ZERO },
                locked: false,
            };
        };
        entry.in_flight = entry.in_flight.saturating_sub(1);
        if !failed {
            return Failure {
                delay: Duration::ZERO,
                locked: false,
            };
        }
        entry.refresh(now, policy.window);
        entry.failures = entry.failures.saturating_add(1);
        let locked = entry.failures >= policy.max_failures;
        if locked && !entry.locked(now) {
            entry.locked_until = Some(now + policy.window);
        }
        Failure {
            delay: policy.delay_for(entry.failures),
            locked,
        }
    }

    /// Addresses tracked (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Makes room for one entry: expired ones go first, then the unlocked one
/// whose window started first, then the lock that ends first.
fn evict(map: &mut HashMap<IpAddr, Entry>, now: Instant, window: Duration) {
    map.retain(|_, e| !e.is_idle(now, window));
    if map.len() < MAX_ENTRIES {
        return;
    }
    let victim = map
        .iter()
        .filter(|(_, e)| e.in_flight == 0 && !e.locked(now))
        .min_by_key(|(_, e)| e.window_start)
        .or_else(|| {
            map.iter()
                .filter(|(_, e)| e.in_flight == 0)
                .min_by_key(|(_, e)| e.locked_until)
        })
        .map(|(k, _)| *k);
    if let Some(k) = victim {
        map.remove(&k);
    }
}

/// What a finished failed attempt means for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// How long to wait before the 535 reply.
    pub delay: Duration,
    /// Whether the address is now locked out.
    pub locked: bool,
}

/// An admitted attempt. Report its result with [`Ticket::succeeded`] or
/// [`Ticket::failed`]; dropped without a report (the session died while
/// verifying), it frees its place without counting.
#[derive(Debug)]
pub struct Ticket {
    limiter: Arc<Limiter>,
    key: IpAddr,
    done: bool,
}

impl Ticket {
    /// The credentials were right.
    pub fn succeeded(mut self, policy: Policy) {
        self.done = true;
        self.limiter.finish(self.key, false, policy);
    }

    /// The credentials were wrong: counts the failure.
    pub fn failed(mut self, policy: Policy) -> Failure {
        self.done = true;
        self.limiter.finish(self.key, true, policy)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            let mut map = self.limiter.lock();
            if let Some(e) = map.get_mut(&self.key) {
                e.in_flight = e.in_flight.saturating_sub(1);
            }
        }
    }
}

/// Verifies passwords on the blocking pool, a few at a time.
#[derive(Debug)]
pub struct Verifier {
    slots: Arc<Semaphore>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            slots: Arc::new(Semaphore::new(VERIFY_SLOTS)),
        }
    }
}

impl Verifier {
    /// Whether `password` is the password of the user called `name`.
    /// Takes as long for an unknown name as for a known one.
    pub async fn verify(&self, users: &[User], name: &str, password: String) -> bool {
        let known = users.iter().find(|u| u.name == name);
        // The first user's hash stands in for an unknown name, so that the
        // same work is done; the result is then ignored.
        let Some(stand_in) = known.or(users.first()) else {
            return false;
        };
        let hash = stand_in.hash.clone();
        let exists = known.is_some();
        let Ok(permit) = self.slots.clone().acquire_owned().await else {
            return false;
        };
        let checked = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let ok = check(hash.expose(), password.as_bytes());
            drop(password);
            ok
        })
        .await;
        exists && checked.unwrap_or(false)
    }
}

/// One argon2 verification; the parameters come from the PHC string.
fn check(hash: &str, password: &[u8]) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A new argon2id PHC string for `password`, with argon2's default costs
/// (m=19 MiB, t=2, p=1, the OWASP recommendation) and a random salt.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    use argon2::PasswordHasher;
    Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn policy(max: u32) -> Policy {
        Policy {
            max_failures: max,
            window: Duration::from_secs(60),
            delay: Duration::from_secs(1),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fail(l: &Arc<Limiter>, addr: &str, p: Policy) -> Failure {
        match l.admit(ip(addr), p) {
            Admission::Allowed(t) => t.failed(p),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn delays_grow_and_the_address_is_locked_out() {
        let l = Limiter::new();
        let p = policy(3);
        let f1 = fail(&l, "10.0.0.7", p);
        let f2 = fail(&l, "10.0.0.7", p);
        assert_eq!((f1.delay, f1.locked), (Duration::from_secs(1), false));
        assert_eq!((f2.delay, f2.locked), (Duration::from_secs(2), false));
        assert!(!l.is_locked(ip("10.0.0.7")));
        let f3 = fail(&l, "10.0.0.7", p);
        assert_eq!((f3.delay, f3.locked), (Duration::from_secs(4), true));
        assert!(l.is_locked(ip("10.0.0.7")));
        assert!(
            l.is_locked(ip("::ffff:10.0.0.7")),
            "mapped IPv4 is the same"
        );
        assert!(matches!(l.admit(ip("10.0.0.7"), p), Admission::LockedOut));
        assert!(!l.is_locked(ip("10.0.0.8")), "others are not affected");
    }

    #[test]
    fn delay_is_capped() {
        let p = policy(100);
        assert_eq!(p.delay_for(1), Duration::from_secs(1));
        assert_eq!(p.delay_for(5), Duration::from_secs(16));
        assert_eq!(p.delay_for(6), Duration::from_secs(30));
        assert_eq!(p.delay_for(60), Duration::from_secs(30));
        let slow = Policy {
            delay: Duration::from_secs(10),
            ..p
        };
        assert_eq!(slow.delay_for(2), Duration::from_secs(20));
        assert_eq!(slow.delay_for(3), Duration::from_secs(30));
    }

    #[test]
    fn parallel_attempts_count_before_they_finish() {
        let l = Limiter::new();
        let p = policy(2);
        let a = l.admit(ip("10.0.0.1"), p);
        let b = l.admit(ip("10.0.0.1"), p);
        assert!(matches!(l.admit(ip("10.0.0.1"), p), Admission::Busy));
        drop(a);
        let Admission::Allowed(b) = b else { panic!() };
        b.succeeded(p);
        // Both places are free again, and nothing was counted.
        for _ in 0..2 {
            assert!(matches!(l.admit(ip("10.0.0.1"), p), Admission::Allowed(_)));
        }
    }

    #[test]
    fn ipv6_counts_per_64() {
        let l = Limiter::new();
        let p = policy(2);
        fail(&l, "2001:db8:1:2::1", p);
        fail(&l, "2001:db8:1:2:ffff::9", p);
        assert!(l.is_locked(ip("2001:db8:1:2::abcd")));
        assert!(!l.is_locked(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn the_map_is_bounded() {
        let l = Limiter::new();
        let p = policy(5);
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            let addr = IpAddr::V4((0x0a00_0000 + i).into());
            if let Admission::Allowed(t) = l.admit(addr, p) {
                t.failed(p);
            }
        }
        assert!(l.len() <= MAX_ENTRIES);
    }

    #[tokio::test]
    async fn verify_known_and_unknown_users() {
        let hash = hash_password(b"correct horse").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let users = vec![User {
            name: "alice".into(),
            hash: Secret::new(hash),
        }];
        let v = Verifier::default();
        assert!(v.verify(&users, "alice", "correct horse".into()).await);
        assert!(!v.verify(&users, "alice", "wrong".into()).await);
        // The right password of another user does not open a missing name.
        assert!(!v.verify(&users, "bob", "correct horse".into()).await);
        assert!(!v.verify(&[], "alice", "correct horse".into()).await);
    }
}
