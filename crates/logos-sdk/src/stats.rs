//! What a module counts about the calls it serves, for the core's reserved `$stats` method.
//!
//! Owns three figures per process: calls finished, calls that ended in an error (a fault, a
//! panic, or abandonment by cancel or deadline), and a latency histogram. The histogram has
//! fixed log-scale buckets (each power of two of microseconds split in [`SUB_BUCKETS`]), so its
//! memory is one fixed array of counters however many calls are served, and a percentile read
//! from it is at most 1/[`SUB_BUCKETS`] (12.5 %) above the true value (the bucket's upper
//! bound is reported, never more than the largest latency seen). Never stores samples, never
//! locks, never does I/O: recording is a few relaxed atomic adds on the call path.
//!
//! The figures start at zero with the process: a restarted module reports only its new life.

use logos_wire::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Buckets per power of two (a power of two itself).
pub(crate) const SUB_BUCKETS: u64 = 8;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// Latencies at or above `2^MAX_EXP` µs (about 12.7 days) share the last bucket.
const MAX_EXP: u32 = 40;
/// Values below `SUB_BUCKETS` µs get one bucket each; then `SUB_BUCKETS` per power of two.
const BUCKETS: usize = (SUB_BUCKETS + (MAX_EXP - SUB_BITS) as u64 * SUB_BUCKETS) as usize;

/// Counters and the latency histogram of one module process.
pub(crate) struct CallStats {
    calls: AtomicU64,
    errors: AtomicU64,
    max_us: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for CallStats {
    fn default() -> Self {
        CallStats {
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Bucket of a latency of `us` microseconds.
fn bucket(us: u64) -> usize {
    let us = us.min((1 << MAX_EXP) - 1);
    if us < SUB_BUCKETS {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros(); // ≥ SUB_BITS
    let shift = exp - SUB_BITS;
    let mantissa = (us >> shift) - SUB_BUCKETS; // 0..SUB_BUCKETS
    (SUB_BUCKETS + u64::from(shift) * SUB_BUCKETS + mantissa) as usize
}

/// Largest latency (µs) that falls in bucket `index`.
fn upper_bound(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    let shift = (index - SUB_BUCKETS) / SUB_BUCKETS;
    let mantissa = (index - SUB_BUCKETS) % SUB_BUCKETS;
    ((SUB_BUCKETS + mantissa + 1) << shift) - 1
}

impl CallStats {
    /// Records one finished call.
    pub(crate) fn record(&self, elapsed: Duration, ok: bool) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.max_us.fetch_max(us, Ordering::Relaxed);
        self.buckets[bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// Starts timing one call; see [`CallTimer`].
    pub(crate) fn start(&self) -> CallTimer<'_> {
        CallTimer {
            stats: self,
            started: Instant::now(),
            done: false,
        }
    }

    /// The latency (µs) below or at which a fraction `p` (0..=1) of the recorded calls fall,
    /// as the upper bound of its bucket; `None` before the first call.
    pub(crate) fn percentile(&self, p: f64) -> Option<u64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        // Rank of the wanted sample, 1-based: at least the first, at most the last.
        let rank = ((p.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let max = self.max_us.load(Ordering::Relaxed);
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(upper_bound(i).min(max));
            }
        }
        Some(max)
    }

    /// The `$stats` reply: `{"calls", "errors", "inFlight", "latencyUs": {"p50", "p90", "p99",
    /// "max"} | null}` (null before the first call).
    pub(crate) fn snapshot(&self, in_flight: usize) -> Value {
        let latency = match (
            self.percentile(0.5),
            self.percentile(0.9),
            self.percentile(0.99),
        ) {
            (Some(p50), Some(p90), Some(p99)) => Value::Map(BTreeMap::from([
                ("p50".to_owned(), Value::from(p50)),
                ("p90".to_owned(), Value::from(p90)),
                ("p99".to_owned(), Value::from(p99)),
                (
                    "max".to_owned(),
                    Value::from(self.max_us.load(Ordering::Relaxed)),
                ),
            ])),
            _ => Value::Null,
        };
        Value::Map(BTreeMap::from([
            (
                "calls".to_owned(),
                Value::from(self.calls.load(Ordering::Relaxed)),
            ),
            (
                "errors".to_owned(),
                Value::from(self.errors.load(Ordering::Relaxed)),
            ),
            ("inFlight".to_owned(), Value::from(in_flight)),
            ("latencyUs".to_owned(), latency),
        ]))
    }
}

/// Times one call. [`CallTimer::finish`] records its outcome; dropped unfinished (the call was
/// cancelled or passed its deadline, so its future was dropped) it records an error.
pub(crate) struct CallTimer<'a> {
    stats: &'a CallStats,
    started: Instant,
    done: bool,
}

impl CallTimer<'_> {
    /// Records the call as finished, successfully or not.
    pub(crate) fn finish(mut self, ok: bool) {
        self.done = true;
        self.stats.record(self.started.elapsed(), ok);
    }
}

impl Drop for CallTimer<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.stats.record(self.started.elapsed(), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bound_their_values() {
        let mut last_upper = None;
        for i in 0..BUCKETS {
            let upper = upper_bound(i);
            if let Some(prev) = last_upper {
                assert!(upper > prev, "bucket {i}");
                assert_eq!(bucket(prev + 1), i, "first value of bucket {i}");
            }
            assert_eq!(bucket(upper), i, "last value of bucket {i}");
            last_upper = Some(upper);
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        for us in [0, 1, 7, 8, 9, 15, 16, 17, 100, 999, 1_000_000, 123_456_789] {
            let b = bucket(us);
            let upper = upper_bound(b);
            assert!(upper >= us);
            // The bound is within one sub-bucket of the value.
            assert!(
                upper - us <= us / SUB_BUCKETS,
                "{us} → bucket {b} up to {upper}"
            );
        }
    }

    #[test]
    fn percentiles_come_from_the_buckets() {
        let s = CallStats::default();
        assert_eq!(s.percentile(0.5), None);
        assert_eq!(s.snapshot(0).get("latencyUs"), Some(&Value::Null));
        // 90 fast calls (1 ms), 9 slower (10 ms), one slow (1 s, an error).
        for _ in 0..90 {
            s.record(Duration::from_millis(1), true);
        }
        for _ in 0..9 {
            s.record(Duration::from_millis(10), true);
        }
        s.record(Duration::from_secs(1), false);
        let near = |got: Option<u64>, want: u64| {
            let got = got.unwrap();
            assert!(
                got >= want && got - want <= want / SUB_BUCKETS,
                "{got} vs {want}"
            );
        };
        near(s.percentile(0.5), 1_000);
        near(s.percentile(0.9), 1_000);
        near(s.percentile(0.95), 10_000);
        near(s.percentile(0.99), 10_000);
        assert_eq!(
            s.percentile(1.0),
            Some(1_000_000),
            "clamped to the max seen"
        );
        let snap = s.snapshot(2);
        assert_eq!(snap.get("calls"), Some(&Value::from(100u64)));
        assert_eq!(snap.get("errors"), Some(&Value::from(1u64)));
        assert_eq!(snap.get("inFlight"), Some(&Value::from(2usize)));
        let lat = snap.get("latencyUs").unwrap();
        assert_eq!(lat.get("max"), Some(&Value::from(1_000_000u64)));
    }

    #[test]
    fn an_abandoned_call_counts_as_an_error() {
        let s = CallStats::default();
        s.start().finish(true);
        drop(s.start());
        let snap = s.snapshot(0);
        assert_eq!(snap.get("calls"), Some(&Value::from(2u64)));
        assert_eq!(snap.get("errors"), Some(&Value::from(1u64)));
    }
}
