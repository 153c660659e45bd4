//! Spans of calls across modules: the trace context of the call running in this task, the
//! span this process opens for each incoming and outgoing call, and the reporter that sends
//! finished spans to the core (docs/tracing.md).
//!
//! Owns the task-local [`TraceContext`] (set by `serve/conn.rs` around each served call, read
//! by `client.rs` so a call made while handling a call is its child), span ids, and the
//! bounded queue of finished spans. Never blocks a call: recording a span is one push under
//! an uncontended lock; when the queue is full the span is dropped and counted, and the count
//! travels with the next report. (A tokio channel did this before: its semaphore and
//! receiver wake-up made a kept span cost 60–100 ns against 27 ns here, on every call the
//! queue has room for; docs/performance.md, "Twenty-sixth step".) Reports are batched by one task per process, off the
//! call path, as `core.$spans(spans, dropped)` on the control connection. Reporting is on only
//! when the core's `welcome` says `"spans": true`, so an older core (or one configured with
//! spans off) costs nothing beyond the propagation of the context.
//!
//! Each span goes as a row (a list of its nine values in a fixed order) when the core's
//! `welcome` also says `"span_rows": true`, and as a map of named fields to an older core. A
//! row costs the reporter a third of what a map does to build and encode (about 200 ns
//! against 640 ns a span), and the core half of what it does to decode: a map's nine keys are
//! nine `String`s on each side (docs/tracing.md, "The report format").

use bytes::Bytes;
use logos_session::{Fault, Session};
use logos_wire::trace::{FLAG_SAMPLED, new_span_id, new_trace_id};
use logos_wire::{TraceContext, Value};
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, watch};

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Finished spans waiting for the reporter; beyond this they are dropped and counted.
pub(crate) const QUEUE: usize = 8192;
/// Most spans in one report.
const MAX_BATCH: usize = 1024;
/// How long the reporter gathers spans after the first one of a batch arrives.
const GATHER: Duration = Duration::from_millis(100);
/// The reserved core method that receives reports.
pub(crate) const REPORT_METHOD: &str = "$spans";

/// The trace context of the call this task is serving, if any.
pub(crate) fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| *c).ok()
}

/// Runs `fut` with `ctx` as the current trace context.
pub(crate) fn scope<F: Future>(ctx: TraceContext, fut: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(ctx, fut)
}

/// Runs `f` with `ctx` as the current trace context (a synchronous method served at once).
pub(crate) fn sync_scope<R>(ctx: TraceContext, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(ctx, f)
}

/// The context of a new span: a child of `parent` (same trace), or the root of a new trace.
pub(crate) fn child_of(parent: Option<&TraceContext>) -> TraceContext {
    match parent {
        Some(p) => TraceContext {
            trace_id: p.trace_id,
            span_id: new_span_id(),
            flags: p.flags,
        },
        None => TraceContext {
            trace_id: new_trace_id(),
            span_id: new_span_id(),
            flags: FLAG_SAMPLED,
        },
    }
}

/// Lower-case hex of an id for `tracing` fields, formatted only if a subscriber records it.
pub(crate) struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Which side of a call a span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// This process served the call.
    Server,
    /// This process made the call.
    Client,
}

/// A span being timed. [`Spans::finish`] hands it to the reporter.
///
/// Only the monotonic start is read on the call path; the reporter turns it into wall-clock
/// time when it encodes the span (`WallClock`), so a span costs one clock read to open.
pub(crate) struct Open {
    pub ctx: TraceContext,
    parent: Option<[u8; 8]>,
    kind: Kind,
    started: Instant,
}

impl Open {
    /// The span `ctx` that started at `started` (a clock read the caller already made).
    pub(crate) fn started_at(
        ctx: TraceContext,
        parent: Option<[u8; 8]>,
        kind: Kind,
        started: Instant,
    ) -> Open {
        Open {
            ctx,
            parent,
            kind,
            started,
        }
    }
}

/// A finished span as it is queued for the reporter.
struct Finished {
    open: Open,
    duration: Duration,
    /// Shared with the client or the served module it came from: no copy per span.
    target: Arc<str>,
    method: String,
    error: Option<String>,
}

/// The span queue of one process and the switch the core's `welcome` sets.
pub(crate) struct Spans {
    enabled: AtomicBool,
    /// The core takes spans as rows (its `welcome` said `"span_rows": true`).
    rows: Arc<AtomicBool>,
    queue: Arc<Queue>,
    /// The reporter was started (it starts once).
    reporting: AtomicBool,
    dropped: Arc<AtomicU64>,
}

/// Finished spans between the calls that record them and the reporter.
struct Queue {
    spans: Mutex<VecDeque<Finished>>,
    /// How many `spans` holds, readable without the lock (a span is opened only when there is
    /// room).
    len: AtomicUsize,
    /// Wakes the reporter: a span landed in an empty queue, or the queue closed.
    arrived: Notify,
    /// The `Spans` is gone: the reporter sends what is left and ends.
    closed: AtomicBool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Finished>> {
        self.spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for Spans {
    fn default() -> Self {
        Spans {
            enabled: AtomicBool::new(false),
            rows: Arc::new(AtomicBool::new(false)),
            queue: Arc::new(Queue {
                spans: Mutex::new(VecDeque::new()),
                len: AtomicUsize::new(0),
                arrived: Notify::new(),
                closed: AtomicBool::new(false),
            }),
            reporting: AtomicBool::new(false),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Drop for Spans {
    fn drop(&mut self) {
        self.queue.closed.store(true, Ordering::Release);
        self.queue.arrived.notify_one();
    }
}

impl Spans {
    /// `true` when finished spans are reported (the core asked for them).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Opens the span of a call that starts now, or `None` when it would not be reported:
    /// spans are off, or the queue is full (then it is counted as dropped here). A call whose
    /// span is not kept reads no clock for it: at call rates beyond what the reporter carries
    /// (about [`MAX_BATCH`] per [`GATHER`]) most spans are dropped, and the clock reads of a
    /// call's two ends were most of what a dropped span still cost.
    pub(crate) fn open(
        &self,
        ctx: TraceContext,
        parent: Option<[u8; 8]>,
        kind: Kind,
    ) -> Option<Open> {
        self.keeps()
            .then(|| Open::started_at(ctx, parent, kind, Instant::now()))
    }

    /// [`Spans::open`] for a call whose start was timed already (the server's call statistics
    /// read the clock once for both).
    pub(crate) fn open_at(
        &self,
        ctx: TraceContext,
        parent: Option<[u8; 8]>,
        kind: Kind,
        started: Instant,
    ) -> Option<Open> {
        self.keeps()
            .then(|| Open::started_at(ctx, parent, kind, started))
    }

    /// Whether a span opened now would be queued: spans are on and the queue has room. A full
    /// queue counts the span as dropped.
    fn keeps(&self) -> bool {
        if !self.enabled() {
            return false;
        }
        if self.queue.len.load(Ordering::Relaxed) >= QUEUE {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Queues a finished span; never waits. A span [`Spans::open`] did not keep (`None`)
    /// costs nothing here; one the queue filled up behind since is dropped and counted,
    /// before anything is copied or timed. `method` is taken as it comes: a served call's
    /// own `String` moves in, a client's `&str` is copied only for a span that is kept.
    pub(crate) fn finish(
        &self,
        open: Option<Open>,
        target: &Arc<str>,
        method: impl Into<String>,
        result: Result<(), &Fault>,
    ) {
        let Some(open) = open else {
            return;
        };
        let duration = open.started.elapsed();
        self.finish_timed(Some(open), duration, target, method, result);
    }

    /// [`Spans::finish`] for a call whose duration was timed already (the server's call
    /// statistics read the clock once for both ends).
    pub(crate) fn finish_timed(
        &self,
        open: Option<Open>,
        duration: Duration,
        target: &Arc<str>,
        method: impl Into<String>,
        result: Result<(), &Fault>,
    ) {
        let Some(open) = open else {
            return;
        };
        let error = result
            .err()
            .map(|f| format!("{}: {}", f.code.as_str(), cut(&f.message)));
        let first = {
            let mut spans = self.queue.lock();
            if spans.len() >= QUEUE {
                drop(spans);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            spans.push_back(Finished {
                duration,
                open,
                target: Arc::clone(target),
                method: method.into(),
                error,
            });
            self.queue.len.store(spans.len(), Ordering::Relaxed);
            spans.len() == 1
        };
        // Only the first span of a batch wakes the reporter; it gathers the rest.
        if first {
            self.queue.arrived.notify_one();
        }
    }

    /// Starts reporting to the core when its `welcome` attrs ask for spans. `control` follows
    /// the control connection (a remote module's link is replaced when it reconnects). Called
    /// each time the control connection is up; the reporter starts once.
    pub(crate) fn start(
        &self,
        control: watch::Receiver<Option<Session>>,
        welcome_attrs: &BTreeMap<String, Value>,
    ) {
        if welcome_attrs.get("spans") != Some(&Value::Bool(true)) {
            return;
        }
        // Per connection: a remote module's link may come back to another core.
        let rows = welcome_attrs.get("span_rows") == Some(&Value::Bool(true));
        self.rows.store(rows, Ordering::Relaxed);
        self.enabled.store(true, Ordering::Relaxed);
        if self.reporting.swap(true, Ordering::Relaxed) {
            return;
        }
        tokio::spawn(report(
            control,
            Arc::clone(&self.queue),
            Arc::clone(&self.dropped),
            Arc::clone(&self.rows),
        ));
    }
}

/// Longest error message kept in a span.
fn cut(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The reporter: waits for a span, gathers for [`GATHER`], sends one `$spans` call on the
/// current control connection, and so on until the queue closes (the module's context is
/// gone) and what it held is sent. A batch with no live control connection is dropped and
/// counted.
async fn report(
    control: watch::Receiver<Option<Session>>,
    queue: Arc<Queue>,
    dropped: Arc<AtomicU64>,
    rows: Arc<AtomicBool>,
) {
    loop {
        // A span that lands after this look stores a wake-up for `notified` (`notify_one`).
        while queue.len.load(Ordering::Relaxed) == 0 {
            if queue.closed.load(Ordering::Acquire) {
                return;
            }
            queue.arrived.notified().await;
        }
        if !queue.closed.load(Ordering::Acquire) {
            tokio::time::sleep(GATHER).await;
        }
        let taken: Vec<Finished> = {
            let mut spans = queue.lock();
            let n = spans.len().min(MAX_BATCH);
            let taken = spans.drain(..n).collect();
            queue.len.store(spans.len(), Ordering::Relaxed);
            taken
        };
        // One clock reading for all the batch's wall-clock times, encoded off the lock.
        let clock = WallClock::now();
        let encode = if rows.load(Ordering::Relaxed) {
            encode_row
        } else {
            encode_map
        };
        let batch: Vec<Value> = taken.into_iter().map(|f| encode(f, &clock)).collect();
        let live = control.borrow().clone().filter(|s| !s.is_closed());
        let Some(control) = live else {
            dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
            continue;
        };
        let spans = Value::List(batch);
        // Spans the full queue refused since the last report.
        let args = vec![spans, Value::UInt(dropped.swap(0, Ordering::Relaxed))];
        if let Err(e) = control
            .call("core", REPORT_METHOD, args, Duration::from_secs(5))
            .await
        {
            tracing::debug!("span report not taken by the core: {e}");
        }
    }
}

/// The wall clock and the monotonic clock read together, to date spans timed with the
/// monotonic clock alone.
struct WallClock {
    wall: SystemTime,
    mono: Instant,
}

impl WallClock {
    fn now() -> WallClock {
        WallClock {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }

    /// Nanoseconds since the Unix epoch at `at` (0 for a clock set before 1970).
    fn unix_ns(&self, at: Instant) -> u64 {
        self.wall
            .checked_sub(self.mono.saturating_duration_since(at))
            .and_then(|wall| wall.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// One span as a row: its nine values in the order of docs/tracing.md's table, for a core
/// that said `"span_rows": true`.
fn encode_row(f: Finished, clock: &WallClock) -> Value {
    Value::List(values(f, clock).into())
}

/// One span as a map of named fields (docs/tracing.md, "The report format"), for an older
/// core.
fn encode_map(f: Finished, clock: &WallClock) -> Value {
    Value::Map(
        FIELDS
            .iter()
            .map(|k| (*k).to_owned())
            .zip(values(f, clock))
            .collect(),
    )
}

/// The names of a span's values in a map, in the order a row holds them (docs/tracing.md,
/// "The report format"; the core's `spans.rs` reads them by the same table).
const FIELDS: [&str; 9] = [
    "trace",
    "span",
    "parent",
    "kind",
    "target",
    "method",
    "start_ns",
    "duration_ns",
    "error",
];

/// A span's nine values, in the order of docs/tracing.md's table.
fn values(f: Finished, clock: &WallClock) -> [Value; 9] {
    let start_ns = clock.unix_ns(f.open.started);
    [
        Value::Bytes(Bytes::copy_from_slice(&f.open.ctx.trace_id)),
        Value::Bytes(Bytes::copy_from_slice(&f.open.ctx.span_id)),
        f.open
            .parent
            .map_or(Value::Null, |p| Value::Bytes(Bytes::copy_from_slice(&p))),
        Value::from(match f.open.kind {
            Kind::Server => "server",
            Kind::Client => "client",
        }),
        Value::from(&*f.target),
        Value::from(f.method),
        Value::UInt(start_ns),
        Value::UInt(u64::try_from(f.duration.as_nanos()).unwrap_or(u64::MAX)),
        f.error.map_or(Value::Null, Value::from),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_keeps_the_trace() {
        let root = child_of(None);
        let child = child_of(Some(&root));
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert!(root.sampled());
    }

    #[test]
    fn spans_are_dated_from_their_monotonic_start() {
        let clock = WallClock::now();
        let wall = clock
            .wall
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .expect("the clock is after 1970");
        let second_before = clock
            .mono
            .checked_sub(Duration::from_secs(1))
            .expect("the monotonic clock is older than a second");
        assert_eq!(clock.unix_ns(clock.mono), wall);
        assert_eq!(clock.unix_ns(second_before), wall - 1_000_000_000);
    }

    /// A row holds the map's values in the table's order (docs/tracing.md), so a core that
    /// takes rows reads the same span an older core reads from the map.
    #[test]
    fn a_span_as_a_row_holds_the_maps_values_in_the_documented_order() {
        let clock = WallClock::now();
        let finished = || {
            let parent = child_of(None);
            let ctx = child_of(Some(&parent));
            Finished {
                open: Open::started_at(ctx, Some(parent.span_id), Kind::Client, clock.mono),
                duration: Duration::from_micros(5),
                target: Arc::from("bob"),
                method: "echo".to_owned(),
                error: Some("timeout: late".to_owned()),
            }
        };
        let f = finished();
        let (ctx, parent) = (f.open.ctx, f.open.parent);
        let Value::List(row) = encode_row(f, &clock) else {
            panic!("a row is a list")
        };
        let mut f = finished();
        f.open.ctx = ctx;
        f.open.parent = parent;
        let Value::Map(map) = encode_map(f, &clock) else {
            panic!("a map")
        };
        assert_eq!(map.len(), FIELDS.len());
        for (key, value) in FIELDS.iter().zip(&row) {
            assert_eq!(map.get(*key), Some(value), "{key}");
        }
        // Each position as the documented table has it, read from the span itself.
        let bytes = |b: &[u8]| Value::Bytes(b.to_vec().into());
        let parent = parent.expect("the span has a parent");
        assert_eq!(
            row[..6],
            [
                bytes(&ctx.trace_id),
                bytes(&ctx.span_id),
                bytes(&parent),
                Value::from("client"),
                Value::from("bob"),
                Value::from("echo"),
            ]
        );
        assert_eq!(row[6], Value::UInt(clock.unix_ns(clock.mono)));
        assert_eq!(row[7..], [Value::UInt(5_000), Value::from("timeout: late")]);
    }

    #[test]
    fn rows_only_for_a_core_that_asks_for_them() {
        let spans = Spans::default();
        let attrs = |rows: Option<bool>| {
            let mut a = BTreeMap::from([("spans".to_owned(), Value::Bool(true))]);
            if let Some(rows) = rows {
                a.insert("span_rows".to_owned(), Value::Bool(rows));
            }
            a
        };
        let (_tx, control) = watch::channel(None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            spans.start(control.clone(), &attrs(Some(true)));
            assert!(spans.rows.load(Ordering::Relaxed));
            // The link came back to an older core: maps again.
            spans.start(control.clone(), &attrs(None));
            assert!(!spans.rows.load(Ordering::Relaxed));
            spans.start(control, &attrs(Some(false)));
            assert!(!spans.rows.load(Ordering::Relaxed));
        });
    }

    /// The reporter wakes for the first span of a batch, takes what is left when the module's
    /// spans are dropped, and ends; with no control connection a batch is counted as dropped.
    #[tokio::test]
    async fn the_reporter_sends_what_is_left_and_ends_when_the_spans_go() {
        let attrs = BTreeMap::from([("spans".to_owned(), Value::Bool(true))]);
        let a: Arc<str> = Arc::from("a");
        // The reporter holds the other references to these until it ends.
        let ended = |queue: &Arc<Queue>, dropped: &Arc<AtomicU64>| {
            Arc::strong_count(queue) == 1 && Arc::strong_count(dropped) == 1
        };
        for queued in [0, 3] {
            let spans = Spans::default();
            let (_tx, control) = watch::channel(None);
            spans.start(control, &attrs);
            let dropped = Arc::clone(&spans.dropped);
            let queue = Arc::clone(&spans.queue);
            // Let the reporter run until it waits for a first span (one thread: it runs
            // while this task yields).
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            for _ in 0..queued {
                let open = spans.open(child_of(None), None, Kind::Server);
                spans.finish(open, &a, "m", Ok(()));
            }
            assert_eq!(queue.len.load(Ordering::Relaxed), queued);
            drop(spans);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !ended(&queue, &dropped) {
                assert!(
                    Instant::now() < deadline,
                    "the reporter did not end ({queued} queued)"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(queue.len.load(Ordering::Relaxed), 0);
            assert_eq!(
                dropped.load(Ordering::Relaxed),
                queued as u64,
                "no core to take them"
            );
        }
    }

    #[tokio::test]
    async fn disabled_spans_cost_nothing_and_a_full_queue_drops() {
        let spans = Spans::default();
        let a: Arc<str> = Arc::from("a");
        let open = spans.open(child_of(None), None, Kind::Server);
        assert!(open.is_none(), "no span is opened while disabled");
        spans.finish(open, &a, "m", Ok(()));
        assert_eq!(spans.queue.lock().len(), 0, "nothing queued while disabled");
        spans.enabled.store(true, Ordering::Relaxed);
        for _ in 0..QUEUE + 5 {
            let open = spans.open(child_of(None), None, Kind::Server);
            spans.finish(open, &a, "m", Ok(()));
        }
        assert_eq!(spans.dropped.load(Ordering::Relaxed), 5);
        assert!(
            spans.open(child_of(None), None, Kind::Client).is_none(),
            "a full queue keeps no new span"
        );
        assert_eq!(spans.dropped.load(Ordering::Relaxed), 6);
        // Opened while there was room, finished after the queue filled: dropped at the end.
        spans.queue.lock().pop_front();
        spans.queue.len.fetch_sub(1, Ordering::Relaxed);
        let late = spans.open(child_of(None), None, Kind::Client);
        assert!(late.is_some(), "room for one again");
        spans.finish(
            spans.open(child_of(None), None, Kind::Client),
            &a,
            "m",
            Ok(()),
        );
        spans.finish(late, &a, "m", Ok(()));
        assert_eq!(spans.dropped.load(Ordering::Relaxed), 7);
    }
}
