//! The answers of the reference implementation's introspection functions, from what the core
//! reports: dependency and dependent walks (`logos_core_get_module_dependencies`,
//! `…_dependents`), the module table of `logos_core_get_modules_info` and the usage figures of
//! `logos_core_get_module_stats`.
//!
//! Pure: the caller gathers manifests, states and figures from the core (`handle.rs`) and
//! this file only shapes them, so every rule is unit-tested. Walks are breadth-first, each
//! level in name order, never list the module itself and stop at cycles. JSON keys are the
//! reference's (`loaded_at`, `cpu_percent`, `memory_mb`…), plus a few of ours beside them.

use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Declared dependencies of every known module.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    deps: BTreeMap<String, Vec<String>>,
}

impl Graph {
    /// `edges`: each known module and the names its metadata depends on.
    pub(crate) fn new(edges: impl IntoIterator<Item = (String, Vec<String>)>) -> Graph {
        Graph {
            deps: edges.into_iter().collect(),
        }
    }

    /// Whether `name` is a known module.
    pub(crate) fn knows(&self, name: &str) -> bool {
        self.deps.contains_key(name)
    }

    /// The modules `name` depends on; with `recursive`, the whole closure.
    pub(crate) fn dependencies(&self, name: &str, recursive: bool) -> Vec<String> {
        self.walk(name, recursive, |n| {
            let mut d = self.deps.get(n).cloned().unwrap_or_default();
            d.sort();
            d
        })
    }

    /// The known modules that depend on `name`; with `recursive`, the whole closure.
    pub(crate) fn dependents(&self, name: &str, recursive: bool) -> Vec<String> {
        self.walk(name, recursive, |n| {
            self.deps
                .iter()
                .filter(|(_, d)| d.iter().any(|x| x == n))
                .map(|(k, _)| k.clone())
                .collect()
        })
    }

    fn walk(&self, name: &str, recursive: bool, next: impl Fn(&str) -> Vec<String>) -> Vec<String> {
        let mut seen: BTreeSet<String> = BTreeSet::from([name.to_owned()]);
        let mut out = Vec::new();
        let mut queue = VecDeque::from([name.to_owned()]);
        while let Some(n) = queue.pop_front() {
            for m in next(&n) {
                if seen.insert(m.clone()) {
                    out.push(m.clone());
                    if recursive {
                        queue.push_back(m);
                    }
                }
            }
        }
        out
    }
}

/// One row of `logos_core_get_modules_info`.
#[derive(Debug)]
pub(crate) struct ModuleRow {
    pub name: String,
    pub version: String,
    /// Lifecycle state name (`ready`, `stopped`…).
    pub state: String,
    pub loaded: bool,
    /// The module's executable or library.
    pub path: String,
    /// Unix seconds of the current load; `None` when not loaded.
    pub loaded_at: Option<u64>,
    /// The whole metadata.json document.
    pub metadata: Json,
}

/// `[{name, path, loaded, loaded_at, dependencies, dependents, metadata, version, state}]`,
/// `dependencies` and `dependents` direct only.
pub(crate) fn modules_info(rows: &[ModuleRow], graph: &Graph) -> String {
    let items: Vec<Json> = rows
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "path": r.path,
                "loaded": r.loaded,
                "loaded_at": r.loaded_at.unwrap_or(0),
                "dependencies": graph.dependencies(&r.name, false),
                "dependents": graph.dependents(&r.name, false),
                "metadata": r.metadata,
                "version": r.version,
                "state": r.state,
            })
        })
        .collect();
    sorted_text(Json::Array(items))
}

/// `json` as text with every object's keys in name order, as the reference writes them (Qt's
/// JSON objects are sorted), whichever order serde_json's map keeps: a dependency elsewhere
/// in the workspace (cedar-policy-core) turns on its `preserve_order`.
fn sorted_text(json: Json) -> String {
    fn sort(j: Json) -> Json {
        match j {
            Json::Object(m) => {
                let sorted: BTreeMap<String, Json> =
                    m.into_iter().map(|(k, v)| (k, sort(v))).collect();
                Json::Object(sorted.into_iter().collect())
            }
            Json::Array(items) => Json::Array(items.into_iter().map(sort).collect()),
            other => other,
        }
    }
    sort(json).to_string()
}

/// What the core measured of one running module process.
#[derive(Debug, Clone)]
pub(crate) struct Usage {
    pub name: String,
    pub pid: u32,
    pub cpu_time: Option<Duration>,
    pub rss_bytes: Option<u64>,
    pub threads: Option<u64>,
    /// Time since the process became ready.
    pub uptime: Option<Duration>,
    pub calls: Option<u64>,
    pub errors: Option<u64>,
}

/// CPU time seen per pid at the previous report, for `cpu_percent`.
pub(crate) type Samples = HashMap<u32, (Duration, Instant)>;

/// `[{name, pid, cpu_percent, cpu_time_seconds, memory_mb, threads, uptime_seconds, calls,
/// errors}]` for the modules that have a process. `cpu_percent` (of one CPU) covers the time
/// since the previous report, or since the module became ready on the first report of its
/// process; `samples` carries the previous figures and forgets processes that are gone.
pub(crate) fn module_stats(usage: &[Usage], samples: &mut Samples, now: Instant) -> String {
    let mut items = Vec::new();
    let mut seen = HashMap::new();
    for u in usage {
        let cpu = u.cpu_time.unwrap_or_default();
        let (busy, wall) = match samples.get(&u.pid) {
            Some((prev_cpu, at)) => (cpu.saturating_sub(*prev_cpu), now.duration_since(*at)),
            None => (cpu, u.uptime.unwrap_or_default()),
        };
        let percent = if wall.is_zero() {
            0.0
        } else {
            busy.as_secs_f64() / wall.as_secs_f64() * 100.0
        };
        seen.insert(u.pid, (cpu, now));
        items.push(json!({
            "name": u.name,
            "pid": u.pid,
            "cpu_percent": round2(percent),
            "cpu_time_seconds": round2(cpu.as_secs_f64()),
            "memory_mb": round2(u.rss_bytes.unwrap_or(0) as f64 / (1024.0 * 1024.0)),
            "threads": u.threads,
            "uptime_seconds": u.uptime.map(|d| d.as_secs()),
            "calls": u.calls,
            "errors": u.errors,
        }));
    }
    *samples = seen;
    sorted_text(Json::Array(items))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> Graph {
        // app -> greeter -> (calc, chat); chat -> log; cyc1 <-> cyc2; ghost is not known.
        Graph::new([
            ("app".to_owned(), vec!["greeter".to_owned()]),
            (
                "greeter".to_owned(),
                vec!["chat".to_owned(), "calc".to_owned()],
            ),
            ("calc".to_owned(), vec![]),
            ("chat".to_owned(), vec!["log".to_owned()]),
            ("log".to_owned(), vec![]),
            ("cyc1".to_owned(), vec!["cyc2".to_owned()]),
            (
                "cyc2".to_owned(),
                vec!["cyc1".to_owned(), "ghost".to_owned()],
            ),
        ])
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn dependencies_breadth_first() {
        let g = graph();
        assert_eq!(g.dependencies("greeter", false), v(&["calc", "chat"]));
        assert_eq!(g.dependencies("app", false), v(&["greeter"]));
        assert_eq!(
            g.dependencies("app", true),
            v(&["greeter", "calc", "chat", "log"])
        );
        assert_eq!(g.dependencies("log", true), Vec::<String>::new());
        // Cycles end; the module itself is never listed; unknown dependencies are named.
        assert_eq!(g.dependencies("cyc1", true), v(&["cyc2", "ghost"]));
        assert_eq!(g.dependencies("nope", true), Vec::<String>::new());
        assert!(!g.knows("nope") && g.knows("log"));
    }

    #[test]
    fn dependents_breadth_first() {
        let g = graph();
        assert_eq!(g.dependents("log", false), v(&["chat"]));
        assert_eq!(g.dependents("log", true), v(&["chat", "greeter", "app"]));
        assert_eq!(g.dependents("calc", true), v(&["greeter", "app"]));
        assert_eq!(g.dependents("app", true), Vec::<String>::new());
        assert_eq!(g.dependents("cyc2", true), v(&["cyc1"]));
    }

    #[test]
    fn modules_info_rows() {
        let g = graph();
        let rows = [ModuleRow {
            name: "greeter".to_owned(),
            version: "1.0.0".to_owned(),
            state: "ready".to_owned(),
            loaded: true,
            path: "/m/greeter/libgreeter.so".to_owned(),
            loaded_at: Some(1_800_000_000),
            metadata: json!({"name": "greeter", "version": "1.0.0"}),
        }];
        let out: Json = serde_json::from_str(&modules_info(&rows, &g)).unwrap();
        assert_eq!(
            out,
            json!([{
                "name": "greeter", "path": "/m/greeter/libgreeter.so", "loaded": true,
                "loaded_at": 1_800_000_000_u64, "dependencies": ["calc", "chat"],
                "dependents": ["app"], "metadata": {"name": "greeter", "version": "1.0.0"},
                "version": "1.0.0", "state": "ready"
            }])
        );
    }

    #[test]
    fn cpu_percent_since_the_previous_report() {
        let t0 = Instant::now();
        let mut samples = Samples::new();
        let mut u = Usage {
            name: "calc".to_owned(),
            pid: 42,
            cpu_time: Some(Duration::from_millis(500)),
            rss_bytes: Some(3 * 1024 * 1024),
            threads: Some(4),
            uptime: Some(Duration::from_secs(5)),
            calls: Some(7),
            errors: Some(1),
        };
        // First report: the average since the module became ready (0.5 s of 5 s).
        let first: Json =
            serde_json::from_str(&module_stats(std::slice::from_ref(&u), &mut samples, t0))
                .unwrap();
        assert_eq!(first[0]["cpu_percent"], json!(10.0));
        assert_eq!(first[0]["memory_mb"], json!(3.0));
        assert_eq!(first[0]["cpu_time_seconds"], json!(0.5));
        assert_eq!(first[0]["pid"], json!(42));
        assert_eq!(first[0]["calls"], json!(7));
        // Then: 1 s of CPU in 2 s.
        u.cpu_time = Some(Duration::from_millis(1500));
        let t1 = t0 + Duration::from_secs(2);
        let second: Json =
            serde_json::from_str(&module_stats(std::slice::from_ref(&u), &mut samples, t1))
                .unwrap();
        assert_eq!(second[0]["cpu_percent"], json!(50.0));
        // A process that is gone is forgotten.
        assert_eq!(module_stats(&[], &mut samples, t1), "[]");
        assert!(samples.is_empty());
    }
}
