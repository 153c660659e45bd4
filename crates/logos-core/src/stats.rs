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

use crate::registry::State;
use crate::state::Inner;
use crate::sys::{self, ProcessUsage};
use logos_wire::Value;
use std::collections::BTreeMap;
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

/// Figures about one known module. Process figures are `None` while no process runs; call
/// figures are `None` when the module did not answer `$stats`. Call figures count from the
/// start of the current process.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModuleStats {
    /// Module name.
    pub name: String,
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
}

/// What a module's `$stats` said.
#[derive(Debug, Default, PartialEq)]
struct Served {
    calls: Option<u64>,
    errors: Option<u64>,
    in_flight: Option<u64>,
    latency: Option<Latency>,
}

/// Reads a `$stats` reply; fields that are missing or of the wrong type stay `None`.
fn read_served(v: &Value) -> Served {
    let us = |l: &Value, k: &str| l.get(k).and_then(Value::as_u64).map(Duration::from_micros);
    let latency = v.get("latencyUs").and_then(|l| {
        Some(Latency {
            p50: us(l, "p50")?,
            p90: us(l, "p90")?,
            p99: us(l, "p99")?,
            max: us(l, "max")?,
        })
    });
    Served {
        calls: v.get("calls").and_then(Value::as_u64),
        errors: v.get("errors").and_then(Value::as_u64),
        in_flight: v.get("inFlight").and_then(Value::as_u64),
        latency,
    }
}

/// Figures of every known module, asking the running ones for their call counters at once.
pub(crate) async fn collect(inner: &Inner) -> Vec<ModuleStats> {
    let (infos, sessions) = {
        let registry = inner.registry();
        let sessions: BTreeMap<String, logos_session::Session> = registry
            .records()
            .filter(|(_, r)| r.state() == State::Ready)
            .filter_map(|(n, r)| Some((n.clone(), r.session()?.clone())))
            .collect();
        (registry.infos(&inner.settings), sessions)
    };
    let asks = infos.iter().map(|info| {
        let session = sessions.get(&info.name).cloned();
        let name = info.name.clone();
        async move {
            let Some(session) = session else {
                return Served::default();
            };
            match session
                .call(&name, "$stats", Vec::new(), STATS_TIMEOUT)
                .await
            {
                Ok(v) => read_served(&v),
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
            ModuleStats {
                name: info.name,
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
        let s = read_served(&reply);
        assert_eq!(s.calls, Some(10));
        assert_eq!(s.errors, Some(2));
        assert_eq!(s.in_flight, Some(1));
        assert_eq!(s.latency.map(|l| l.p99), Some(Duration::from_micros(300)));
        // Anything else: no figures, no failure.
        assert_eq!(read_served(&Value::from("nonsense")), Served::default());
        let partial = Value::Map(BTreeMap::from([
            ("calls".to_owned(), Value::from("ten")),
            ("errors".to_owned(), Value::from(0u64)),
            ("latencyUs".to_owned(), Value::Null),
        ]));
        assert_eq!(
            read_served(&partial),
            Served {
                errors: Some(0),
                ..Served::default()
            }
        );
    }

    #[test]
    fn values_carry_every_field_null_when_unknown() {
        let s = ModuleStats {
            name: "calc".into(),
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
