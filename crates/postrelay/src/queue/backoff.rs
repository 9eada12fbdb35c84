//! When a deferred message is tried again, and when it stops being tried.
//!
//! The wait doubles with every failed attempt, from `min` up to `max`, and
//! is perturbed by a random ±10 % so that the messages deferred together by
//! one provider outage do not all come back in the same second. A message
//! is retried until `max_lifetime` after its arrival; the last retry is
//! pulled in to happen exactly at that moment (as Postfix does), and after
//! it the message expires.
//!
//! A local fault that stops an attempt from being recorded (the envelope
//! cannot be read, a bounce cannot be queued, a removal fails) is retried
//! after the first step of the same schedule ([`Backoff::after_fault`]).
//! This is the one place that sets a retry time.
//!
//! This module only computes times. It does not schedule anything, read the
//! clock or decide whether a failure is temporary (that is
//! [`Reason::is_permanent`](crate::deliver::outcome::Reason::is_permanent)).

use std::time::Duration;

use rand::Rng;

use crate::config::QueueSettings;

/// The jitter, in per mille of the un-perturbed wait: ±10 %.
const JITTER_PER_MILLE: u64 = 100;

/// No wait is ever shorter than this, whatever the settings.
const FLOOR: Duration = Duration::from_secs(1);

/// Retry timing of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failed attempt.
    pub min: Duration,
    /// The longest un-perturbed wait.
    pub max: Duration,
    /// How long after its arrival a message is given up on.
    pub max_lifetime: Duration,
}

/// What to do with a message after a failed (temporary) attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Try again at this time (Unix milliseconds).
    RetryAt(u64),
    /// The message has been queued for `max_lifetime`: return it to the
    /// sender (status 4.4.7 for the recipients still pending).
    Expire,
}

impl Backoff {
    /// The timing configured in `[queue]`.
    pub fn from_settings(settings: &QueueSettings) -> Backoff {
        Backoff {
            min: settings.min_backoff,
            max: settings.max_backoff,
            max_lifetime: settings.max_lifetime,
        }
    }

    /// The wait after `attempts` failed attempts: `min` after the first,
    /// doubling after each further one, capped at `max`, then perturbed by
    /// up to ±10 %. `attempts` 0 is treated as 1.
    ///
    /// The result is never below 1 s, and never above `max` + 10 % (unless
    /// `max` is below 1 s, when the 1 s floor wins).
    pub fn delay(&self, attempts: u32, rng: &mut impl Rng) -> Duration {
        let base = self.base_ms(attempts);
        let spread = base.saturating_mul(JITTER_PER_MILLE) / 1000;
        let jittered = if spread == 0 {
            base
        } else {
            let offset = rng.random_range(0..=2 * spread);
            // base - spread + offset, in [base - spread, base + spread].
            (base - spread).saturating_add(offset)
        };
        Duration::from_millis(jittered).max(FLOOR)
    }

    /// When to try a message again after its `attempts`-th failed attempt
    /// (counting the one that just failed), or that it has expired.
    ///
    /// The message expires once `now_ms` reaches `created_ms +
    /// max_lifetime`. A retry that would fall after that moment is moved
    /// to it, so the message gets a last attempt at its expiry time and is
    /// returned right after, never late. A `max_lifetime` of zero means a
    /// single attempt.
    pub fn next_attempt_ms(
        &self,
        created_ms: u64,
        now_ms: u64,
        attempts: u32,
        rng: &mut impl Rng,
    ) -> NextStep {
        let expires_ms = created_ms.saturating_add(millis(self.max_lifetime));
        if now_ms >= expires_ms {
            return NextStep::Expire;
        }
        let retry_ms = now_ms.saturating_add(millis(self.delay(attempts, rng)));
        NextStep::RetryAt(retry_ms.min(expires_ms))
    }

    /// When to try again after a local fault at `now_ms` kept an attempt
    /// from being recorded: one `min` step (jittered) later. The message's
    /// own attempt count is not advanced: the fault was ours.
    pub fn after_fault(&self, now_ms: u64, rng: &mut impl Rng) -> u64 {
        now_ms.saturating_add(millis(self.delay(1, rng)))
    }

    /// The un-perturbed wait in milliseconds: `min · 2^(attempts-1)`,
    /// capped at `max` (computed without overflow for any `attempts`).
    fn base_ms(&self, attempts: u32) -> u64 {
        let min = millis(self.min);
        let max = millis(self.max);
        let doublings = attempts.saturating_sub(1).min(64);
        let grown = u128::from(min) << doublings;
        // `max` caps; if it is (wrongly) below `min`, `max` still wins so the
        // documented upper bound holds.
        u64::try_from(grown.min(u128::from(max))).unwrap_or(u64::MAX)
    }
}

/// A duration in whole milliseconds, saturating (a lifetime of centuries
/// is "forever", not a wrap-around).
/// `d` in milliseconds, saturating (for due times in ms since the epoch).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const S: u64 = 1000;

    /// Postfix's defaults: 300 s, 4000 s, 5 days.
    fn postfix_like() -> Backoff {
        Backoff {
            min: Duration::from_secs(300),
            max: Duration::from_secs(4000),
            max_lifetime: Duration::from_secs(5 * 86_400),
        }
    }

    fn within(d: Duration, center_s: u64) -> bool {
        let ms = millis(d);
        let c = center_s * S;
        ms >= c - c / 10 && ms <= c + c / 10
    }

    #[test]
    fn doubling_table_with_cap() {
        let b = postfix_like();
        let mut rng = StdRng::seed_from_u64(7);
        // attempts → un-perturbed wait in seconds.
        let table = [
            (0, 300),
            (1, 300),
            (2, 600),
            (3, 1200),
            (4, 2400),
            (5, 4000),
            (6, 4000),
            (40, 4000),
            (u32::MAX, 4000),
        ];
        for (attempts, center) in table {
            assert_eq!(b.base_ms(attempts), center * S, "attempts {attempts}");
            for _ in 0..50 {
                let d = b.delay(attempts, &mut rng);
                assert!(
                    within(d, center),
                    "attempts {attempts}: {d:?} not within 10% of {center}s"
                );
            }
        }
    }

    #[test]
    fn base_never_decreases_and_never_exceeds_max() {
        let b = postfix_like();
        let mut last = 0;
        for attempts in 0..200 {
            let base = b.base_ms(attempts);
            assert!(base >= last && base <= 4000 * S);
            last = base;
        }
    }

    #[test]
    fn floor_of_one_second() {
        let tiny = Backoff {
            min: Duration::ZERO,
            max: Duration::from_millis(10),
            max_lifetime: Duration::from_secs(60),
        };
        let mut rng = StdRng::seed_from_u64(1);
        for attempts in 0..10 {
            assert_eq!(tiny.delay(attempts, &mut rng), FLOOR);
        }
    }

    #[test]
    fn jitter_varies_with_the_seed() {
        let b = postfix_like();
        let a = b.delay(3, &mut StdRng::seed_from_u64(1));
        let c = b.delay(3, &mut StdRng::seed_from_u64(2));
        assert_ne!(a, c, "two seeds gave the same perturbed delay");
        // And many draws do not collapse onto a few values.
        let mut rng = StdRng::seed_from_u64(3);
        let mut seen: Vec<_> = (0..100).map(|_| b.delay(5, &mut rng)).collect();
        seen.sort();
        seen.dedup();
        assert!(seen.len() > 90, "only {} distinct delays", seen.len());
    }

    /// The perturbation spreads over the whole ±10 %, both sides of the
    /// base (a jitter only ever shortening, or only lengthening, the wait
    /// would bunch retries again). Caught the mutant `2 * spread` →
    /// `2 + spread` that the bounds tests let through.
    #[test]
    fn jitter_reaches_both_ends_of_its_range() {
        let b = postfix_like();
        let mut rng = StdRng::seed_from_u64(4);
        let draws: Vec<u64> = (0..400).map(|_| millis(b.delay(5, &mut rng))).collect();
        let (lo, hi) = (draws.iter().min().unwrap(), draws.iter().max().unwrap());
        // Base 4000 s, spread 400 s: 400 uniform draws come within 40 s
        // of each end (a miss has odds of about 1e-9, and the seed is fixed).
        assert!(*lo < 3_640 * S, "lowest {lo} ms");
        assert!(*hi > 4_360 * S, "highest {hi} ms");
    }

    #[test]
    fn expires_exactly_at_max_lifetime() {
        let b = postfix_like();
        let created = 1_700_000_000_000;
        let life = 5 * 86_400 * S;
        let mut rng = StdRng::seed_from_u64(9);
        assert!(matches!(
            b.next_attempt_ms(created, created + life - 1, 3, &mut rng),
            NextStep::RetryAt(_)
        ));
        assert_eq!(
            b.next_attempt_ms(created, created + life, 3, &mut rng),
            NextStep::Expire
        );
        assert_eq!(
            b.next_attempt_ms(created, created + life + 1, 3, &mut rng),
            NextStep::Expire
        );
    }

    #[test]
    fn last_retry_is_pulled_in_to_the_expiry_time() {
        let b = postfix_like();
        let created = 1_700_000_000_000;
        let expiry = created + 5 * 86_400 * S;
        let mut rng = StdRng::seed_from_u64(4);
        // 10 minutes before expiry, the next wait (~4000 s) would overshoot.
        let now = expiry - 600 * S;
        assert_eq!(
            b.next_attempt_ms(created, now, 20, &mut rng),
            NextStep::RetryAt(expiry)
        );
        // That final attempt fails too: the message expires, on time.
        assert_eq!(
            b.next_attempt_ms(created, expiry, 21, &mut rng),
            NextStep::Expire
        );
    }

    #[test]
    fn zero_lifetime_means_one_attempt() {
        let b = Backoff {
            max_lifetime: Duration::ZERO,
            ..postfix_like()
        };
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(
            b.next_attempt_ms(5_000, 5_000, 1, &mut rng),
            NextStep::Expire
        );
    }

    #[test]
    fn huge_values_saturate() {
        let b = Backoff {
            min: Duration::from_secs(u64::MAX / 2),
            max: Duration::MAX,
            max_lifetime: Duration::MAX,
        };
        let mut rng = StdRng::seed_from_u64(0);
        assert!(matches!(
            b.next_attempt_ms(u64::MAX - 5, u64::MAX - 5, 70, &mut rng),
            NextStep::RetryAt(u64::MAX)
        ));
    }

    #[test]
    fn a_fault_waits_one_first_step() {
        let b = postfix_like();
        let mut rng = StdRng::seed_from_u64(7);
        for now in [0, 1_000_000] {
            let at = b.after_fault(now, &mut rng);
            assert!(within(Duration::from_millis(at - now), 300), "{}", at - now);
        }
    }

    #[test]
    fn from_settings_copies_the_three_values() {
        let b = Backoff::from_settings(&QueueSettings {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(2),
            max_lifetime: Duration::from_secs(3),
            min_free_space: 0,
            sync: crate::config::SyncMode::Files,
        });
        assert_eq!(
            b,
            Backoff {
                min: Duration::from_secs(1),
                max: Duration::from_secs(2),
                max_lifetime: Duration::from_secs(3)
            }
        );
    }

    proptest! {
        #[test]
        fn delay_stays_within_bounds(
            attempts in 0u32..300,
            seed in any::<u64>(),
            min_s in 1u64..3600,
            extra_s in 0u64..100_000,
        ) {
            let b = Backoff {
                min: Duration::from_secs(min_s),
                max: Duration::from_secs(min_s + extra_s),
                max_lifetime: Duration::from_secs(86_400),
            };
            let mut rng = StdRng::seed_from_u64(seed);
            let d = b.delay(attempts, &mut rng);
            let base = Duration::from_millis(b.base_ms(attempts));
            prop_assert!(d >= FLOOR);
            prop_assert!(d <= b.max.mul_f64(1.1) + Duration::from_millis(1));
            prop_assert!(d >= base.mul_f64(0.9) - Duration::from_millis(1));
            prop_assert!(d <= base.mul_f64(1.1) + Duration::from_millis(1));
        }

        #[test]
        fn retries_never_pass_the_expiry(
            attempts in 0u32..100,
            seed in any::<u64>(),
            age_ms in 0u64..(6 * 86_400 * S),
        ) {
            let b = postfix_like();
            let created = 1_700_000_000_000u64;
            let now = created + age_ms;
            let expiry = created + 5 * 86_400 * S;
            match b.next_attempt_ms(created, now, attempts, &mut StdRng::seed_from_u64(seed)) {
                NextStep::Expire => prop_assert!(now >= expiry),
                NextStep::RetryAt(t) => {
                    prop_assert!(now < expiry);
                    prop_assert!(t > now && t <= expiry);
                }
            }
        }
    }
}
