//! What a module counts about the calls it serves, for the core's reserved `$stats` method.
//!
//! Owns three figures per process: calls finished, calls that ended in an error (a fault, a
//! panic, or abandonment by cancel or deadline), and a latency histogram. The histogram has
//! fixed log-scale buckets (each power of two of microseconds split in [`SUB_BUCKETS`]), so its
//! memory is one fixed array of counters however many calls are served, and a percentile read
//! from it is at most 1/[`SUB_BUCKETS`] (12.5 %) above the true value (the bucket's upper
//! bound is reported, never more than the largest latency seen). Never stores samples, never
//! locks, never does I/O: recording is a few relaxed atomic adds on the call path (calls and
//! errors are summed from the per-method outcomes when `$stats` asks, not counted twice).
//!
//! Per method (named by the module's interface; any other name counts as `other`, so a caller
//! cannot grow the table) it also keeps calls by outcome (`ok` or the error code) and a
//! duration histogram over the fixed bounds [`BUCKETS_US`], the shape Prometheus histograms
//! have, so the core can publish `logos_calls_total` and `logos_call_duration_seconds`
//! without guessing. That is one lookup in a small map and three more relaxed adds per call.
//!
//! The figures start at zero with the process: a restarted module reports only its new life.

use logos_session::TrafficFigures;
use logos_wire::{ErrorCode, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Buckets per power of two (a power of two itself).
pub(crate) const SUB_BUCKETS: u64 = 8;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// Latencies at or above `2^MAX_EXP` µs (about 12.7 days) share the last bucket.
const MAX_EXP: u32 = 40;
/// Values below `SUB_BUCKETS` µs get one bucket each; then `SUB_BUCKETS` per power of two.
const BUCKETS: usize = (SUB_BUCKETS + (MAX_EXP - SUB_BITS) as u64 * SUB_BUCKETS) as usize;

/// Upper bounds (µs) of the per-method duration buckets, sent in `$stats` as `bucketsUs`; one
/// more bucket counts everything slower.
pub(crate) const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// The method name calls to names outside the interface are counted under.
pub(crate) const OTHER: &str = "other";

/// `ok`, then one slot per error code in wire order.
const OUTCOMES: usize = 1 + ErrorCode::ALL.len();

/// Calls of one method by outcome, and their durations.
struct MethodStats {
    outcomes: [AtomicU64; OUTCOMES],
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Default for MethodStats {
    fn default() -> Self {
        MethodStats {
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl MethodStats {
    fn record(&self, us: u64, outcome: Option<ErrorCode>) {
        let slot = outcome.map_or(0, |c| {
            1 + ErrorCode::ALL.iter().position(|a| *a == c).unwrap_or(0)
        });
        self.outcomes[slot].fetch_add(1, Ordering::Relaxed);
        let b = BUCKETS_US.partition_point(|&bound| bound < us);
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Calls finished, whatever their outcome.
    fn calls(&self) -> u64 {
        self.outcomes
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }

    /// Calls that ended in an error (every outcome but `ok`, slot 0).
    fn errors(&self) -> u64 {
        self.outcomes[1..]
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }

    /// `{"outcomes": {name: n} (non-zero only), "buckets": [n; 17], "sumUs"}`, or `None`
    /// before its first call.
    fn value(&self) -> Option<Value> {
        let mut outcomes = BTreeMap::new();
        for (i, n) in self.outcomes.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let name = match i {
                    0 => "ok",
                    _ => ErrorCode::ALL[i - 1].as_str(),
                };
                outcomes.insert(name.to_owned(), Value::from(n));
            }
        }
        if outcomes.is_empty() {
            return None;
        }
        let buckets = self
            .buckets
            .iter()
            .map(|b| Value::from(b.load(Ordering::Relaxed)))
            .collect();
        Some(Value::Map(BTreeMap::from([
            ("outcomes".to_owned(), Value::Map(outcomes)),
            ("buckets".to_owned(), Value::List(buckets)),
            (
                "sumUs".to_owned(),
                Value::from(self.sum_us.load(Ordering::Relaxed)),
            ),
        ])))
    }
}

/// Counters and the latency histogram of one module process.
pub(crate) struct CallStats {
    /// Calls and errors are not counted here but summed from the methods' outcomes when
    /// asked: two atomic adds fewer on each call's path.
    max_us: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
    /// Method name → slot in `methods`; names not here count in the last slot (`other`).
    index: HashMap<String, usize>,
    names: Vec<String>,
    methods: Vec<MethodStats>,
}

impl Default for CallStats {
    fn default() -> Self {
        CallStats::new(&Value::Null)
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
    /// Counters for a module whose interface is `interface` (`{"methods": [{"name"}…]}`):
    /// one slot per method it names, and `other`.
    pub(crate) fn new(interface: &Value) -> CallStats {
        let mut names: Vec<String> = interface
            .get("methods")
            .and_then(Value::as_list)
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m.get("name").and_then(Value::as_str))
            .filter(|n| *n != OTHER)
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        names.push(OTHER.to_owned());
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        CallStats {
            max_us: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            methods: names.iter().map(|_| MethodStats::default()).collect(),
            index,
            names,
        }
    }

    /// Records one finished call of `method` (a slot from [`CallStats::slot`]): `outcome` is
    /// `None` when it succeeded, else its error code.
    pub(crate) fn record(&self, method: usize, elapsed: Duration, outcome: Option<ErrorCode>) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // A plain load first: the maximum rarely moves, and `fetch_max` is a locked
        // compare-and-swap loop on every call.
        if us > self.max_us.load(Ordering::Relaxed) {
            self.max_us.fetch_max(us, Ordering::Relaxed);
        }
        self.buckets[bucket(us)].fetch_add(1, Ordering::Relaxed);
        if let Some(m) = self.methods.get(method) {
            m.record(us, outcome);
        }
    }

    /// The slot `method` is counted in: its own if the interface names it, else `other`.
    fn slot(&self, method: &str) -> usize {
        self.index
            .get(method)
            .copied()
            .unwrap_or(self.names.len() - 1)
    }

    /// Calls finished, of every method.
    fn calls(&self) -> u64 {
        self.methods.iter().map(MethodStats::calls).sum()
    }

    /// Calls that ended in an error, of every method.
    fn errors(&self) -> u64 {
        self.methods.iter().map(MethodStats::errors).sum()
    }

    /// Starts timing one call of `method`; see [`CallTimer`].
    pub(crate) fn start(&self, method: &str) -> CallTimer<'_> {
        CallTimer {
            stats: self,
            method: self.slot(method),
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
    /// "max"} | null}` (null before the first call), plus `"bucketsUs"`, `"methods"` (each
    /// called method: `{"outcomes", "buckets", "sumUs"}`), `"events": {"emitted",
    /// "dropped"}` and `"streams": {"open", "opened", "bytesIn", "bytesOut"}`.
    pub(crate) fn snapshot(
        &self,
        in_flight: usize,
        events: (u64, u64),
        traffic: TrafficFigures,
    ) -> Value {
        let mut v = self.calls_value(in_flight);
        let methods: BTreeMap<String, Value> = self
            .names
            .iter()
            .zip(&self.methods)
            .filter_map(|(n, m)| Some((n.clone(), m.value()?)))
            .collect();
        if let Value::Map(map) = &mut v {
            map.insert(
                "bucketsUs".to_owned(),
                Value::List(BUCKETS_US.iter().map(|b| Value::from(*b)).collect()),
            );
            map.insert("methods".to_owned(), Value::Map(methods));
            map.insert(
                "events".to_owned(),
                Value::Map(BTreeMap::from([
                    ("emitted".to_owned(), Value::from(events.0)),
                    ("dropped".to_owned(), Value::from(events.1)),
                ])),
            );
            map.insert(
                "streams".to_owned(),
                Value::Map(BTreeMap::from([
                    ("open".to_owned(), Value::from(traffic.streams_open)),
                    ("opened".to_owned(), Value::from(traffic.streams_opened)),
                    ("bytesIn".to_owned(), Value::from(traffic.bytes_in)),
                    ("bytesOut".to_owned(), Value::from(traffic.bytes_out)),
                ])),
            );
        }
        v
    }

    /// The call figures of the `$stats` reply.
    fn calls_value(&self, in_flight: usize) -> Value {
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
            ("calls".to_owned(), Value::from(self.calls())),
            ("errors".to_owned(), Value::from(self.errors())),
            ("inFlight".to_owned(), Value::from(in_flight)),
            ("latencyUs".to_owned(), latency),
        ]))
    }
}

/// Times one call. [`CallTimer::finish`] records its outcome; dropped unfinished (the call was
/// cancelled or passed its deadline, so its future was dropped) it records it as `cancelled`.
pub(crate) struct CallTimer<'a> {
    stats: &'a CallStats,
    method: usize,
    started: Instant,
    done: bool,
}

impl CallTimer<'_> {
    /// When the call started (for its span, so one clock read serves both).
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Records the call as finished: `None` when it succeeded, else its error code. Returns
    /// how long it took (for its span).
    pub(crate) fn finish(mut self, outcome: Option<ErrorCode>) -> Duration {
        self.done = true;
        let elapsed = self.started.elapsed();
        self.stats.record(self.method, elapsed, outcome);
        elapsed
    }
}

impl Drop for CallTimer<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.stats.record(
                self.method,
                self.started.elapsed(),
                Some(ErrorCode::Cancelled),
            );
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
        assert_eq!(
            s.snapshot(0, (0, 0), TrafficFigures::default())
                .get("latencyUs"),
            Some(&Value::Null)
        );
        // 90 fast calls (1 ms), 9 slower (10 ms), one slow (1 s, an error).
        for _ in 0..90 {
            s.record(0, Duration::from_millis(1), None);
        }
        for _ in 0..9 {
            s.record(0, Duration::from_millis(10), None);
        }
        s.record(0, Duration::from_secs(1), Some(ErrorCode::MethodFailed));
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
        let snap = s.snapshot(2, (0, 0), TrafficFigures::default());
        assert_eq!(snap.get("calls"), Some(&Value::from(100u64)));
        assert_eq!(snap.get("errors"), Some(&Value::from(1u64)));
        assert_eq!(snap.get("inFlight"), Some(&Value::from(2usize)));
        let lat = snap.get("latencyUs").unwrap();
        assert_eq!(lat.get("max"), Some(&Value::from(1_000_000u64)));
    }

    #[test]
    fn an_abandoned_call_counts_as_an_error() {
        let s = CallStats::default();
        s.start("x").finish(None);
        drop(s.start("x"));
        let snap = s.snapshot(0, (0, 0), TrafficFigures::default());
        assert_eq!(snap.get("calls"), Some(&Value::from(2u64)));
        assert_eq!(snap.get("errors"), Some(&Value::from(1u64)));
        let other = snap.get("methods").and_then(|m| m.get(OTHER)).unwrap();
        let outcomes = other.get("outcomes").unwrap();
        assert_eq!(outcomes.get("ok"), Some(&Value::from(1u64)));
        assert_eq!(outcomes.get("cancelled"), Some(&Value::from(1u64)));
    }

    #[test]
    fn methods_come_from_the_interface_and_the_rest_is_other() {
        let interface = Value::Map(BTreeMap::from([(
            "methods".to_owned(),
            Value::List(vec![
                Value::Map(BTreeMap::from([("name".to_owned(), Value::from("add"))])),
                Value::Map(BTreeMap::from([("name".to_owned(), Value::from("div"))])),
            ]),
        )]));
        let s = CallStats::new(&interface);
        s.start("add").finish(None);
        s.start("add").finish(None);
        s.start("div").finish(Some(ErrorCode::MethodFailed));
        for i in 0..1000 {
            s.start(&format!("made-up-{i}"))
                .finish(Some(ErrorCode::UnknownMethod));
        }
        let snap = s.snapshot(0, (3, 1), TrafficFigures::default());
        let methods = snap.get("methods").and_then(Value::as_map).unwrap();
        assert_eq!(
            methods.keys().collect::<Vec<_>>(),
            ["add", "div", "other"],
            "made-up names never become their own entries"
        );
        let add = methods.get("add").unwrap();
        assert_eq!(
            add.get("outcomes").and_then(|o| o.get("ok")),
            Some(&Value::from(2u64))
        );
        let buckets = add.get("buckets").and_then(Value::as_list).unwrap();
        assert_eq!(buckets.len(), BUCKETS_US.len() + 1);
        let total: u64 = buckets.iter().filter_map(Value::as_u64).sum();
        assert_eq!(total, 2);
        assert_eq!(
            methods["other"]
                .get("outcomes")
                .and_then(|o| o.get("unknown_method")),
            Some(&Value::from(1000u64))
        );
        assert_eq!(
            snap.get("events").and_then(|e| e.get("dropped")),
            Some(&Value::from(1u64))
        );
        assert_eq!(
            snap.get("bucketsUs")
                .and_then(Value::as_list)
                .map(<[Value]>::len),
            Some(BUCKETS_US.len())
        );
    }

    #[test]
    fn a_duration_falls_in_the_first_bucket_that_bounds_it() {
        let m = MethodStats::default();
        m.record(100, None);
        m.record(101, None);
        m.record(u64::MAX / 4, None);
        let counts: Vec<u64> = m
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts[0], 1, "100 µs is ≤ the first bound");
        assert_eq!(counts[1], 1);
        assert_eq!(counts[BUCKETS_US.len()], 1, "past the last bound");
    }
}
