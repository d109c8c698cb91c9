//! [`Pacer`]: the client's own token bucket, so that it never sends faster
//! than the server takes (the server refuses frames over its rate with 429).
//!
//! Pure arithmetic on instants the caller passes; it never sleeps.

use std::time::Duration;

use tokio::time::Instant;

/// The rate a client that did not pace falls back to once refused.
const UNPACED_FALLBACK_RATE: f64 = 100.0;

/// The bucket a client that did not pace falls back to once refused.
const UNPACED_FALLBACK_BURST: f64 = 10.0;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    /// Tokens added per second (0: no pacing at all).
    rate: f64,
    /// The most tokens the bucket holds.
    burst: f64,
    /// Tokens in the bucket at `at`.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl Pacer {
    /// A full bucket.
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Pacer {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
    }

    /// Takes `n` tokens if they are there.
    pub(crate) fn try_take(&mut self, n: u32, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        self.refill(now);
        let n = f64::from(n).min(self.burst);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// When `n` tokens will be there.
    pub(crate) fn ready_at(&self, n: u32, now: Instant) -> Instant {
        if self.rate == 0.0 {
            return now;
        }
        let tokens = (self.tokens
            + now.saturating_duration_since(self.at).as_secs_f64() * self.rate)
            .min(self.burst);
        let missing = (f64::from(n).min(self.burst) - tokens).max(0.0);
        now + Duration::from_secs_f64(missing / self.rate)
    }

    /// Halves the rate (the server refused a frame: its rate is lower than
    /// configured), down to one frame a second, and empties the bucket.
    /// Without pacing, pacing starts at [`UNPACED_FALLBACK_RATE`].
    pub(crate) fn slow_down(&mut self, now: Instant) {
        if self.rate == 0.0 {
            self.rate = 2.0 * UNPACED_FALLBACK_RATE;
            self.burst = 2.0 * UNPACED_FALLBACK_BURST;
        }
        self.rate = (self.rate / 2.0).max(1.0);
        self.burst = (self.burst / 2.0).max(1.0);
        self.tokens = 0.0;
        self.at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_then_the_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, 10, t0);
        for _ in 0..10 {
            assert!(p.try_take(1, t0));
        }
        assert!(!p.try_take(1, t0));
        assert_eq!(p.ready_at(1, t0), t0 + Duration::from_millis(10));
        assert_eq!(p.ready_at(2, t0), t0 + Duration::from_millis(20));
        assert!(p.try_take(1, t0 + Duration::from_millis(10)));
        assert!(!p.try_take(1, t0 + Duration::from_millis(10)));
        // Saved up to the burst, no more.
        assert!(p.try_take(10, t0 + Duration::from_secs(5)));
        assert!(!p.try_take(1, t0 + Duration::from_secs(5)));
    }

    #[test]
    fn zero_rate_never_waits_and_slowing_down_halves() {
        let t0 = Instant::now();
        let mut free = Pacer::new(0, 1, t0);
        assert!((0..10_000).all(|_| free.try_take(2, t0)));
        free.slow_down(t0);
        assert!(!free.try_take(1, t0));
        assert_eq!(free.ready_at(1, t0), t0 + Duration::from_millis(10));
        let mut p = Pacer::new(100, 10, t0);
        p.slow_down(t0);
        assert!(!p.try_take(1, t0));
        assert_eq!(p.ready_at(1, t0), t0 + Duration::from_millis(20));
    }
}
