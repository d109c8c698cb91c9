//! [`Backoff`]: how long to wait before the next reconnection attempt.
//!
//! Exponential (doubling from a minimum up to a maximum) with jitter, so that
//! many clients cut off by the same network hiccup do not all knock on the
//! server's door at the same instant. Pure arithmetic; it never sleeps.

use std::time::Duration;

/// Delays for successive attempts: attempt `n` (from 0) waits a random time
/// between half of and all of `min × 2ⁿ`, capped at `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The base delay of the first attempt.
    min: Duration,
    /// The largest base delay.
    max: Duration,
    /// Attempts made since the last [`Backoff::reset`].
    n_attempts: u32,
    /// The source of jitter (seeded per backoff so tests can fix it).
    rng: fastrand::Rng,
}

impl Backoff {
    /// A backoff from `min` up to `max` (`max` is raised to `min` if lower).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            n_attempts: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// The same, with a fixed seed for the jitter.
    pub fn with_seed(min: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            rng: fastrand::Rng::with_seed(seed),
            ..Backoff::new(min, max)
        }
    }

    /// How many delays were handed out since the last reset.
    pub fn n_attempts(&self) -> u32 {
        self.n_attempts
    }

    /// The delay before the next attempt; counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base(self.n_attempts);
        self.n_attempts = self.n_attempts.saturating_add(1);
        let base_ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
        let half = base_ms / 2;
        Duration::from_millis(half + self.rng.u64(0..=base_ms - half))
    }

    /// Starts again from the minimum (after a successful connection).
    pub fn reset(&mut self) {
        self.n_attempts = 0;
    }

    /// The delay before jitter for attempt `n`.
    fn base(&self, n: u32) -> Duration {
        let factor = 2u32.checked_pow(n.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    #[test]
    fn doubles_up_to_the_maximum_with_jitter() {
        for seed in 0..50 {
            let mut b = Backoff::with_seed(MIN, MAX, seed);
            for n in 0..40u32 {
                let base = MIN.saturating_mul(2u32.saturating_pow(n)).min(MAX);
                let d = b.next_delay();
                assert!(d >= base / 2 && d <= base, "attempt {n}: {d:?} vs {base:?}");
            }
            assert_eq!(b.n_attempts(), 40);
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut b = Backoff::with_seed(MAX, MAX, 7);
        let delays: std::collections::HashSet<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.len() > 10, "{delays:?}");
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::with_seed(MIN, MAX, 1);
        for _ in 0..10 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.n_attempts(), 0);
        assert!(b.next_delay() <= MIN);
    }

    #[test]
    fn max_below_min_is_min() {
        let mut b = Backoff::with_seed(MIN, Duration::ZERO, 1);
        let d = b.next_delay();
        assert!(d >= MIN / 2 && d <= MIN);
    }
}
