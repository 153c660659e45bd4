//! [`ModuleStats`]: what each module costs and how it serves, for [`crate::Core::stats`], the
//! built-in `core.stats` and `logoscore stats`.
//!
//! Joins three sources, each owning its own figures: the registry (state, pid, uptime, crash
//! restarts, health), the kernel (resident memory, CPU time, threads, read from `/proc` by
//! `sys`), and the module itself, which counts the calls it serves (from the core, operators
//! and other modules alike, since module-to-module calls never pass through the core) and
//! answers the reserved control method `$stats` with `{"calls", "errors", "inFlight",
//! "latencyUs": {"p50", "p90", "p99", "max"} | null}`. A module that does not implement
//! `$stats` (a non-Rust module may answer `unknown_method`), is hung, or answers something
//! else gets `None` counters; nothing here fails. Asks every module at once with a short
//! deadline, so a hung module delays a report by at most [`STATS_TIMEOUT`]. Never changes
//! any state.

use crate::counters::OTHER;
use crate::registry::{ExitReport, State};
use crate::state::Inner;
use crate::sys::{self, ProcessUsage};
use logos_wire::{ErrorCode, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long a module has to answer `$stats`.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(1);

/// Call latency percentiles of one module process, from its fixed-bucket histogram (each
/// figure at most 12.5 % above the true value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest call.
    pub max: Duration,
}

/// Most duration bucket bounds taken from a module's `$stats`.
const MAX_BOUNDS: usize = 32;
/// Most methods of one module counted on their own; the rest count as `other` (an interface
/// is the module's own word, so this bounds what a module with a huge one can cost).
pub(crate) const MAX_METHODS: usize = 256;

/// Calls of one method that a module process served.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MethodFigures {
    /// A method its interface names, or `other` for every name it does not.
    pub name: String,
    /// Calls by outcome: `ok` or an error code name (`method_failed`, `cancelled`, …).
    pub outcomes: BTreeMap<String, u64>,
    /// Calls per duration bucket, bounds in [`ModuleStats::bucket_bounds`] plus one for
    /// slower calls; `None` when the module sent none (or none that fit the bounds).
    pub buckets: Option<Vec<u64>>,
    /// Total duration of those calls.
    pub sum: Duration,
}

/// Events a module process published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventFigures {
    /// Events emitted.
    pub emitted: u64,
    /// Deliveries dropped because a subscriber read too slowly.
    pub dropped: u64,
}

/// Module processes the core started, by the way they started (docs/architecture.md,
/// "Spare hosts"): in a spare host, or the cold way (a new process and `exec`). Only
/// starts that reached the module's `hello` count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartFigures {
    /// Started in a spare host.
    pub spare: u64,
    /// Started the cold way.
    pub cold: u64,
}

/// Heartbeats of local modules, by the way they came (docs/architecture.md, "Heartbeat"):
/// a count that moved on the module's heartbeat page, or an answered ping (a module that
/// counts no more, reports itself unhealthy, or was built with an SDK that does not count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeartbeatFigures {
    /// Seen on a heartbeat page.
    pub page: u64,
    /// Answered pings.
    pub ping: u64,
}

/// Byte streams of a module process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamFigures {
    /// Open now.
    pub open: u64,
    /// Opened so far.
    pub opened: u64,
    /// Payload bytes read.
    pub bytes_in: u64,
    /// Payload bytes written.
    pub bytes_out: u64,
}

/// Calls the core answered for a module without the module serving them: it was not ready
/// (`unavailable`, `not_loaded`), or its process went away with the call in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refused {
    /// Method (from its interface) or `other`.
    pub method: String,
    /// Error code name.
    pub outcome: String,
    /// How many since the core started.
    pub count: u64,
}

/// Access denials the policy made since the core started.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Denial {
    /// The module refused.
    pub caller: String,
    /// What it asked for: a module, `core` or `capability_module`.
    pub target: String,
    /// How many times.
    pub count: u64,
}

/// Figures about one known module. Process figures are `None` while no process runs; call
/// figures are `None` when the module did not answer `$stats`. Call figures count from the
/// start of the current process (its [`ModuleStats::generation`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModuleStats {
    /// Module name.
    pub name: String,
    /// `local`, or the peer address of a remote module (whose process figures are absent).
    pub location: String,
    /// Version from its metadata.
    pub version: String,
    /// Start generation of its current (or last) process.
    pub generation: u64,
    /// Crashes since the core started.
    pub crashes: u64,
    /// Modules its metadata depends on.
    pub dependencies: Vec<String>,
    /// How its previous process ended.
    pub last_exit: Option<ExitReport>,
    /// Method names of the interface its current process registered.
    pub interface: Vec<String>,
    /// Calls the core answered on its behalf (since the core started, not per process).
    pub refused: Vec<Refused>,
    /// Lifecycle state.
    pub state: State,
    /// Process id while running.
    pub pid: Option<u32>,
    /// Time since the current process became ready.
    pub uptime: Option<Duration>,
    /// Crash restarts attempted so far (manual reloads do not count).
    pub restarts: u32,
    /// Why the module says it is unhealthy, if it does.
    pub unhealthy: Option<String>,
    /// Resident memory of its process, in bytes.
    pub rss_bytes: Option<u64>,
    /// CPU time (user + system) its process has used.
    pub cpu_time: Option<Duration>,
    /// Threads of its process.
    pub threads: Option<u64>,
    /// Calls it has finished serving.
    pub calls: Option<u64>,
    /// Of those, calls that ended in an error (including cancelled and timed-out ones).
    pub errors: Option<u64>,
    /// Calls it is serving right now.
    pub in_flight: Option<u64>,
    /// Latency of the calls it served; `None` also before its first call.
    pub latency: Option<Latency>,
    /// Upper bounds of the duration buckets of [`MethodFigures::buckets`].
    pub bucket_bounds: Vec<Duration>,
    /// Calls it served per method (only methods called at least once).
    pub methods: Vec<MethodFigures>,
    /// Events it published.
    pub events: Option<EventFigures>,
    /// Its byte streams.
    pub streams: Option<StreamFigures>,
}

/// What a module's `$stats` said.
#[derive(Debug, Default, PartialEq)]
struct Served {
    calls: Option<u64>,
    errors: Option<u64>,
    in_flight: Option<u64>,
    latency: Option<Latency>,
    bounds: Vec<Duration>,
    methods: Vec<MethodFigures>,
    events: Option<EventFigures>,
    streams: Option<StreamFigures>,
}

/// Strictly increasing, positive, at most [`MAX_BOUNDS`]; else none.
fn read_bounds(v: Option<&Value>) -> Vec<u64> {
    let Some(list) = v.and_then(Value::as_list) else {
        return Vec::new();
    };
    let bounds: Option<Vec<u64>> = list.iter().map(Value::as_u64).collect();
    match bounds {
        Some(b)
            if !b.is_empty()
                && b.len() <= MAX_BOUNDS
                && b[0] > 0
                && b.windows(2).all(|w| w[0] < w[1]) =>
        {
            b
        }
        _ => Vec::new(),
    }
}

/// The per-method figures of a `$stats` reply, trusted no further than this: methods the
/// interface does not name are merged into `other`, outcomes that are not `ok` or an error
/// code are dropped, bucket lists of the wrong length are dropped.
fn read_methods(
    v: Option<&Value>,
    interface: &BTreeSet<String>,
    bounds: usize,
) -> Vec<MethodFigures> {
    let Some(map) = v.and_then(Value::as_map) else {
        return Vec::new();
    };
    let mut out: BTreeMap<String, MethodFigures> = BTreeMap::new();
    for (name, m) in map {
        let own = interface.contains(name)
            && name != OTHER
            && (out.contains_key(name) || out.len() < MAX_METHODS);
        let name = if own { name.clone() } else { OTHER.to_owned() };
        let entry = out.entry(name.clone()).or_insert_with(|| MethodFigures {
            name,
            outcomes: BTreeMap::new(),
            buckets: (bounds > 0).then(|| vec![0; bounds + 1]),
            sum: Duration::ZERO,
        });
        if let Some(outcomes) = m.get("outcomes").and_then(Value::as_map) {
            for (o, n) in outcomes {
                let known = o == "ok" || ErrorCode::parse(o).is_some();
                if let (true, Some(n)) = (known, n.as_u64()) {
                    let slot = entry.outcomes.entry(o.clone()).or_insert(0);
                    *slot = slot.saturating_add(n);
                }
            }
        }
        let counts: Option<Vec<u64>> = m
            .get("buckets")
            .and_then(Value::as_list)
            .and_then(|l| l.iter().map(Value::as_u64).collect());
        match (&mut entry.buckets, counts) {
            (Some(have), Some(c)) if c.len() == have.len() => {
                for (h, n) in have.iter_mut().zip(c) {
                    *h = h.saturating_add(n);
                }
            }
            (b, _) => *b = None,
        }
        let sum = m.get("sumUs").and_then(Value::as_u64).unwrap_or(0);
        entry.sum = entry.sum.saturating_add(Duration::from_micros(sum));
    }
    out.into_values().collect()
}

/// Reads a `$stats` reply; fields that are missing or of the wrong type stay `None`.
/// `interface` holds the method names the module registered.
fn read_served(v: &Value, interface: &BTreeSet<String>) -> Served {
    let us = |l: &Value, k: &str| l.get(k).and_then(Value::as_u64).map(Duration::from_micros);
    let latency = v.get("latencyUs").and_then(|l| {
        Some(Latency {
            p50: us(l, "p50")?,
            p90: us(l, "p90")?,
            p99: us(l, "p99")?,
            max: us(l, "max")?,
        })
    });
    let bounds = read_bounds(v.get("bucketsUs"));
    let n = |m: &Value, k: &str| m.get(k).and_then(Value::as_u64);
    let events = v.get("events").and_then(|e| {
        Some(EventFigures {
            emitted: n(e, "emitted")?,
            dropped: n(e, "dropped")?,
        })
    });
    let streams = v.get("streams").and_then(|s| {
        Some(StreamFigures {
            open: n(s, "open")?,
            opened: n(s, "opened")?,
            bytes_in: n(s, "bytesIn")?,
            bytes_out: n(s, "bytesOut")?,
        })
    });
    Served {
        calls: v.get("calls").and_then(Value::as_u64),
        errors: v.get("errors").and_then(Value::as_u64),
        in_flight: v.get("inFlight").and_then(Value::as_u64),
        latency,
        methods: read_methods(v.get("methods"), interface, bounds.len()),
        bounds: bounds.into_iter().map(Duration::from_micros).collect(),
        events,
        streams,
    }
}

/// Method names of a registered interface.
pub(crate) fn method_names(interface: Option<&Value>) -> BTreeSet<String> {
    interface
        .and_then(|i| i.get("methods"))
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.get("name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// Method names of a registered interface, each with whether it is marked read-only
/// (`"readOnly": true`).
pub(crate) fn methods_read_only(interface: Option<&Value>) -> Vec<(String, bool)> {
    interface
        .and_then(|i| i.get("methods"))
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            let name = m.get("name").and_then(Value::as_str)?;
            let ro = m.get("readOnly").and_then(Value::as_bool) == Some(true);
            Some((name.to_owned(), ro))
        })
        .collect()
}

/// Every access denial so far.
pub(crate) fn denials(inner: &Inner) -> Vec<Denial> {
    inner
        .counters
        .denials()
        .into_iter()
        .map(|((caller, target), count)| Denial {
            caller,
            target,
            count,
        })
        .collect()
}

/// Figures of every known module, asking the running ones for their call counters at once.
/// `Served` figures are per process; the rest come from the registry and the core.
pub(crate) async fn collect(inner: &Inner) -> Vec<ModuleStats> {
    let (infos, sessions, interfaces) = {
        let registry = inner.registry();
        let sessions: BTreeMap<String, logos_session::Session> = registry
            .records()
            .filter(|(_, r)| r.state() == State::Ready)
            .filter_map(|(n, r)| Some((n.clone(), r.session()?.clone())))
            .collect();
        let interfaces: BTreeMap<String, BTreeSet<String>> = registry
            .records()
            .map(|(n, r)| (n.clone(), method_names(r.interface())))
            .collect();
        (registry.infos(&inner.settings), sessions, interfaces)
    };
    let asks = infos.iter().map(|info| {
        let session = sessions.get(&info.name).cloned();
        let interface = interfaces.get(&info.name).cloned().unwrap_or_default();
        let name = info.name.clone();
        async move {
            let Some(session) = session else {
                return Served::default();
            };
            match session
                .call(&name, "$stats", Vec::new(), STATS_TIMEOUT)
                .await
            {
                Ok(v) => read_served(&v, &interface),
                Err(f) => {
                    tracing::debug!(module = %name, "no call statistics: {f}");
                    Served::default()
                }
            }
        }
    });
    let served = futures::future::join_all(asks).await;
    infos
        .into_iter()
        .zip(served)
        .map(|(info, served)| {
            let usage = info.pid.and_then(sys::process_usage);
            let refused = inner
                .counters
                .refused_for(&info.name)
                .into_iter()
                .map(|((method, outcome), count)| Refused {
                    method,
                    outcome,
                    count,
                })
                .collect();
            ModuleStats {
                interface: interfaces
                    .get(&info.name)
                    .map(|i| i.iter().cloned().collect())
                    .unwrap_or_default(),
                refused,
                version: info.version,
                generation: info.generation,
                crashes: info.crashes,
                dependencies: info.dependencies,
                last_exit: info.last_exit,
                bucket_bounds: served.bounds,
                methods: served.methods,
                events: served.events,
                streams: served.streams,
                name: info.name,
                location: info.location,
                state: info.state,
                pid: info.pid,
                uptime: info.uptime,
                restarts: info.restarts,
                unhealthy: info.unhealthy,
                rss_bytes: usage.and_then(|u| u.rss_bytes),
                cpu_time: usage.map(|u| u.cpu_time),
                threads: usage.and_then(|u| u.threads),
                calls: served.calls,
                errors: served.errors,
                in_flight: served.in_flight,
                latency: served.latency,
            }
        })
        .collect()
}

fn millis(d: Duration) -> Value {
    Value::from(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn micros(d: Duration) -> Value {
    Value::from(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map_or(Value::Null, f)
}

/// One module's figures as `core.stats` sends them: `{"name", "state", "pid", "uptimeMs",
/// "restarts", "unhealthy", "rssBytes", "cpuMs", "threads", "calls", "errors", "inFlight",
/// "latencyUs": {"p50", "p90", "p99", "max"}}`, unknown figures null.
pub(crate) fn module_value(s: &ModuleStats) -> Value {
    let latency = opt(s.latency, |l| {
        Value::Map(BTreeMap::from([
            ("p50".to_owned(), micros(l.p50)),
            ("p90".to_owned(), micros(l.p90)),
            ("p99".to_owned(), micros(l.p99)),
            ("max".to_owned(), micros(l.max)),
        ]))
    });
    Value::Map(BTreeMap::from([
        ("name".to_owned(), Value::from(s.name.as_str())),
        ("state".to_owned(), Value::from(s.state.as_str())),
        ("pid".to_owned(), opt(s.pid, Value::from)),
        ("uptimeMs".to_owned(), opt(s.uptime, millis)),
        ("restarts".to_owned(), Value::from(s.restarts)),
        (
            "unhealthy".to_owned(),
            opt(s.unhealthy.as_deref(), Value::from),
        ),
        ("rssBytes".to_owned(), opt(s.rss_bytes, Value::from)),
        ("cpuMs".to_owned(), opt(s.cpu_time, millis)),
        ("threads".to_owned(), opt(s.threads, Value::from)),
        ("calls".to_owned(), opt(s.calls, Value::from)),
        ("errors".to_owned(), opt(s.errors, Value::from)),
        ("inFlight".to_owned(), opt(s.in_flight, Value::from)),
        ("latencyUs".to_owned(), latency),
    ]))
}

/// The core's own process as `core.stats` sends it: `{"pid", "uptimeMs", "rssBytes", "cpuMs",
/// "threads"}`.
pub(crate) fn core_value() -> Value {
    let pid = std::process::id();
    let usage: Option<ProcessUsage> = sys::process_usage(pid);
    Value::Map(BTreeMap::from([
        ("pid".to_owned(), Value::from(pid)),
        (
            "uptimeMs".to_owned(),
            opt(usage.and_then(|u| u.age), millis),
        ),
        (
            "rssBytes".to_owned(),
            opt(usage.and_then(|u| u.rss_bytes), Value::from),
        ),
        ("cpuMs".to_owned(), opt(usage.map(|u| u.cpu_time), millis)),
        (
            "threads".to_owned(),
            opt(usage.and_then(|u| u.threads), Value::from),
        ),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stats_reply_is_read_leniently() {
        let reply = Value::Map(BTreeMap::from([
            ("calls".to_owned(), Value::from(10u64)),
            ("errors".to_owned(), Value::from(2u64)),
            ("inFlight".to_owned(), Value::from(1u64)),
            (
                "latencyUs".to_owned(),
                Value::Map(BTreeMap::from([
                    ("p50".to_owned(), Value::from(100u64)),
                    ("p90".to_owned(), Value::from(200u64)),
                    ("p99".to_owned(), Value::from(300u64)),
                    ("max".to_owned(), Value::from(400u64)),
                ])),
            ),
        ]));
        let s = read_served(&reply, &BTreeSet::new());
        assert_eq!(s.calls, Some(10));
        assert_eq!(s.errors, Some(2));
        assert_eq!(s.in_flight, Some(1));
        assert_eq!(s.latency.map(|l| l.p99), Some(Duration::from_micros(300)));
        // Anything else: no figures, no failure.
        assert_eq!(
            read_served(&Value::from("nonsense"), &BTreeSet::new()),
            Served::default()
        );
        let partial = Value::Map(BTreeMap::from([
            ("calls".to_owned(), Value::from("ten")),
            ("errors".to_owned(), Value::from(0u64)),
            ("latencyUs".to_owned(), Value::Null),
        ]));
        assert_eq!(
            read_served(&partial, &BTreeSet::new()),
            Served {
                errors: Some(0),
                ..Served::default()
            }
        );
    }

    fn map(pairs: Vec<(&str, Value)>) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn list(v: &[u64]) -> Value {
        Value::List(v.iter().map(|n| Value::from(*n)).collect())
    }

    #[test]
    fn per_method_figures_are_bounded_by_the_interface() {
        let interface: BTreeSet<String> = ["add".to_owned()].into();
        let method = |ok: u64| {
            map(vec![
                (
                    "outcomes",
                    map(vec![
                        ("ok", Value::from(ok)),
                        ("made_up", Value::from(5u64)),
                    ]),
                ),
                ("buckets", list(&[ok, 0, 0])),
                ("sumUs", Value::from(10u64)),
            ])
        };
        let reply = map(vec![
            ("bucketsUs", list(&[100, 1000])),
            (
                "methods",
                map(vec![
                    ("add", method(2)),
                    ("evil-1", method(3)),
                    ("evil-2", method(4)),
                ]),
            ),
            (
                "events",
                map(vec![
                    ("emitted", Value::from(7u64)),
                    ("dropped", Value::from(1u64)),
                ]),
            ),
        ]);
        let s = read_served(&reply, &interface);
        assert_eq!(
            s.bounds,
            vec![Duration::from_micros(100), Duration::from_micros(1000)]
        );
        let names: Vec<&str> = s.methods.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["add", OTHER]);
        let other = &s.methods[1];
        assert_eq!(
            other.outcomes,
            BTreeMap::from([("ok".to_owned(), 7)]),
            "merged, outcome names checked"
        );
        assert_eq!(other.buckets, Some(vec![7, 0, 0]));
        assert_eq!(other.sum, Duration::from_micros(20));
        assert_eq!(
            s.events,
            Some(EventFigures {
                emitted: 7,
                dropped: 1
            })
        );
        assert_eq!(s.streams, None);

        // Bounds out of order or too many: no histogram, counts still read.
        for bad in [
            list(&[5, 5]),
            list(&[0, 1]),
            list(&(1..=40).collect::<Vec<_>>()),
        ] {
            let reply = map(vec![
                ("bucketsUs", bad),
                ("methods", map(vec![("add", method(1))])),
            ]);
            let s = read_served(&reply, &interface);
            assert!(s.bounds.is_empty());
            assert_eq!(s.methods[0].buckets, None);
            assert_eq!(s.methods[0].outcomes.get("ok"), Some(&1));
        }
        // Past MAX_METHODS methods, the rest count as `other`.
        let many: BTreeSet<String> = (0..MAX_METHODS + 10).map(|i| format!("m{i:04}")).collect();
        let reply = map(vec![(
            "methods",
            Value::Map(many.iter().map(|n| (n.clone(), method(1))).collect()),
        )]);
        let s = read_served(&reply, &many);
        assert_eq!(s.methods.len(), MAX_METHODS + 1);
        let other = s.methods.iter().find(|m| m.name == OTHER).unwrap();
        assert_eq!(other.outcomes.get("ok"), Some(&10));
        // A bucket list of the wrong length is dropped.
        let reply = map(vec![
            ("bucketsUs", list(&[100])),
            ("methods", map(vec![("add", method(1))])),
        ]);
        assert_eq!(read_served(&reply, &interface).methods[0].buckets, None);
    }

    #[test]
    fn values_carry_every_field_null_when_unknown() {
        let s = ModuleStats {
            name: "calc".into(),
            location: "local".into(),
            version: "1.0.0".into(),
            generation: 0,
            crashes: 0,
            dependencies: Vec::new(),
            last_exit: None,
            interface: Vec::new(),
            refused: Vec::new(),
            bucket_bounds: Vec::new(),
            methods: Vec::new(),
            events: None,
            streams: None,
            state: State::Known,
            pid: None,
            uptime: None,
            restarts: 0,
            unhealthy: None,
            rss_bytes: None,
            cpu_time: None,
            threads: None,
            calls: None,
            errors: None,
            in_flight: None,
            latency: None,
        };
        let v = module_value(&s);
        let map = v.as_map().map(|m| m.len());
        assert_eq!(map, Some(13));
        assert_eq!(v.get("calls"), Some(&Value::Null));
        assert_eq!(v.get("state"), Some(&Value::from("known")));
        let core = core_value();
        assert!(
            core.get("rssBytes")
                .and_then(Value::as_u64)
                .is_some_and(|r| r > 0)
        );
    }
}
