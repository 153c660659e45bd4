//! [`Backoff`]: the capped exponential delay between reconnect attempts of a remote module.
//!
//! Owns only numbers: the first delay, doubling up to the cap, with ±20 % jitter so that many
//! remotes cut off at once by the same outage do not come back in lockstep. Never sleeps.

use std::time::Duration;

/// First reconnect delay.
pub const FIRST: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const MAX: Duration = Duration::from_secs(10);

/// Capped exponential backoff with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(FIRST, MAX)
    }
}

impl Backoff {
    /// From `first`, doubling up to `max` (at least `first`).
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max: max.max(first),
            next: first,
        }
    }

    /// The delay before the next attempt; each call doubles the following one up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        jitter(base)
    }

    /// Back to the first delay (after a connection that lasted).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// `d` scaled by a random factor in [0.8, 1.2].
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        u16::from_le_bytes(b)
    } else {
        u16::MAX / 2
    };
    let factor = 0.8 + 0.4 * f64::from(r) / f64::from(u16::MAX);
    d.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let mut bases = Vec::new();
        for _ in 0..6 {
            let d = b.next_delay();
            bases.push(d);
        }
        for (d, base) in bases.iter().zip([100u64, 200, 400, 800, 800, 800]) {
            let base = Duration::from_millis(base);
            assert!(
                *d >= base.mul_f64(0.79) && *d <= base.mul_f64(1.21),
                "{d:?} vs {base:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(121));
    }
}
