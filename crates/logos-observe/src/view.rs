//! [`View`]: one picture of a core for observers, with counters that only grow.
//!
//! A module counts what it serves from the start of its own process, so its figures fall to
//! zero when it restarts. [`Totals`] keeps, per module, what earlier processes had counted
//! when last seen and adds the current process's figures on top, so every `_total` here grows
//! for as long as the core runs (what a process served after the last look before it died is
//! lost: at most one collection interval's worth). Pure data and arithmetic: never talks to
//! the core, never does I/O, never awaits.

use logos_core::{ModuleInfo, ModuleStats, Refused};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Recent crashes kept for the dashboard.
pub const RECENT_CRASHES: usize = 20;

/// Cumulative calls of one method of one module.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MethodTotals {
    /// Method name from the interface, or `other`.
    pub name: String,
    /// Calls by outcome (`ok` or an error code).
    pub outcomes: BTreeMap<String, u64>,
    /// Calls per duration bucket (bounds in [`ModuleView::bounds_seconds`], one more for
    /// slower ones); `None` when the module reports no histogram.
    #[serde(skip)]
    pub buckets: Option<Vec<u64>>,
    /// Seconds spent in those calls.
    #[serde(skip)]
    pub sum_seconds: f64,
}

/// What one module process (or all of them together) counted.
#[derive(Debug, Clone, Default, PartialEq)]
struct Figures {
    methods: BTreeMap<String, MethodTotals>,
    bounds_us: Vec<u64>,
    events_emitted: u64,
    events_dropped: u64,
    streams_opened: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Figures {
    fn of(stats: &ModuleStats) -> Figures {
        let bounds_us: Vec<u64> = stats
            .bucket_bounds
            .iter()
            .map(|b| u64::try_from(b.as_micros()).unwrap_or(u64::MAX))
            .collect();
        let methods = stats
            .methods
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    MethodTotals {
                        name: m.name.clone(),
                        outcomes: m.outcomes.clone(),
                        buckets: m.buckets.clone(),
                        sum_seconds: m.sum.as_secs_f64(),
                    },
                )
            })
            .collect();
        let events = stats.events.unwrap_or_default();
        let streams = stats.streams.unwrap_or_default();
        Figures {
            methods,
            bounds_us,
            events_emitted: events.emitted,
            events_dropped: events.dropped,
            streams_opened: streams.opened,
            bytes_in: streams.bytes_in,
            bytes_out: streams.bytes_out,
        }
    }

    /// `self + other`; histograms add only when their bounds agree (else the older ones are
    /// dropped: a module upgraded to other bounds starts its histogram afresh).
    fn plus(&self, other: &Figures) -> Figures {
        let same_bounds = self.bounds_us == other.bounds_us || self.methods.is_empty();
        let mut methods = if same_bounds {
            self.methods.clone()
        } else {
            self.methods
                .iter()
                .map(|(k, m)| {
                    let mut m = m.clone();
                    m.buckets = None;
                    m.sum_seconds = 0.0;
                    (k.clone(), m)
                })
                .collect()
        };
        for (name, m) in &other.methods {
            let into = methods.entry(name.clone()).or_insert_with(|| MethodTotals {
                name: name.clone(),
                buckets: m.buckets.as_ref().map(|b| vec![0; b.len()]),
                ..MethodTotals::default()
            });
            for (o, n) in &m.outcomes {
                *into.outcomes.entry(o.clone()).or_insert(0) += n;
            }
            // A histogram's sum and buckets go together: one that cannot be added to (other
            // bounds, or none before) restarts from this process's.
            match (into.buckets.take(), &m.buckets) {
                (Some(a), Some(b)) if a.len() == b.len() => {
                    into.buckets = Some(a.iter().zip(b).map(|(x, y)| x + y).collect());
                    into.sum_seconds += m.sum_seconds;
                }
                (_, b) => {
                    into.buckets = b.clone();
                    into.sum_seconds = m.sum_seconds;
                }
            }
        }
        Figures {
            methods,
            bounds_us: if other.bounds_us.is_empty() {
                self.bounds_us.clone()
            } else {
                other.bounds_us.clone()
            },
            events_emitted: self.events_emitted + other.events_emitted,
            events_dropped: self.events_dropped + other.events_dropped,
            streams_opened: self.streams_opened + other.streams_opened,
            bytes_in: self.bytes_in + other.bytes_in,
            bytes_out: self.bytes_out + other.bytes_out,
        }
    }

    /// Whether `next` could follow `self` in the same process (no counter went down).
    fn precedes(&self, next: &Figures) -> bool {
        let calls =
            |f: &Figures| -> u64 { f.methods.values().flat_map(|m| m.outcomes.values()).sum() };
        calls(self) <= calls(next)
            && self.events_emitted <= next.events_emitted
            && self.streams_opened <= next.streams_opened
            && self.bytes_in <= next.bytes_in
            && self.bytes_out <= next.bytes_out
    }
}

/// Per module: what its earlier processes counted, and what the current one has so far.
#[derive(Debug, Default)]
struct Account {
    generation: u64,
    earlier: Figures,
    current: Figures,
    /// CPU seconds likewise (read from `/proc`, so known even without `$stats`).
    cpu_generation: u64,
    cpu_earlier: f64,
    cpu_current: f64,
}

impl Account {
    /// What process `generation` has counted so far; a new generation, or counters that went
    /// down (a process the core did not tell apart), closes the previous process's account.
    fn observe(&mut self, generation: u64, now: Figures) {
        if self.generation != generation || !self.current.precedes(&now) {
            self.earlier = self.earlier.plus(&self.current);
            self.generation = generation;
        }
        self.current = now;
    }

    /// The CPU time process `generation` has used so far.
    fn observe_cpu(&mut self, generation: u64, cpu: f64) {
        if self.cpu_generation != generation || cpu < self.cpu_current {
            self.cpu_earlier += self.cpu_current;
            self.cpu_generation = generation;
        }
        self.cpu_current = cpu;
    }

    fn total(&self) -> Figures {
        self.earlier.plus(&self.current)
    }

    fn cpu_total(&self) -> f64 {
        self.cpu_earlier + self.cpu_current
    }
}

/// Cumulative figures of every module across its restarts.
#[derive(Debug, Default)]
pub struct Totals {
    accounts: BTreeMap<String, Account>,
}

impl Totals {
    /// Takes in one collection of `stats` and returns each module's totals so far (call
    /// figures, and CPU seconds of all its processes).
    fn update(&mut self, stats: &[ModuleStats]) -> BTreeMap<String, (Figures, f64)> {
        for s in stats {
            let account = self.accounts.entry(s.name.clone()).or_default();
            if let Some(cpu) = s.cpu_time {
                account.observe_cpu(s.generation, cpu.as_secs_f64());
            }
            // A module that did not answer keeps what it had: its totals never go down.
            if s.calls.is_none() && s.methods.is_empty() && s.events.is_none() {
                continue;
            }
            account.observe(s.generation, Figures::of(s));
        }
        // Forget modules that are no longer known.
        self.accounts
            .retain(|name, _| stats.iter().any(|s| &s.name == name));
        self.accounts
            .iter()
            .map(|(n, a)| (n.clone(), (a.total(), a.cpu_total())))
            .collect()
    }
}

/// One crash, for the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crash {
    /// Module name.
    pub module: String,
    /// "exit code 3" / "killed by signal 9 (SIGKILL)".
    pub status: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// How long the process had run.
    pub uptime_ms: u64,
    /// Its last stderr lines, oldest first.
    pub stderr: Vec<String>,
}

/// One module as observers see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleView {
    /// Module name.
    pub name: String,
    /// Version from its metadata.
    pub version: String,
    /// Lifecycle state (`ready`, `crashed`, …).
    pub state: String,
    /// `local`, or the peer address of a remote module.
    pub location: String,
    /// Process id while running.
    pub pid: Option<u32>,
    /// Seconds since its process became ready.
    pub uptime_seconds: Option<f64>,
    /// Crash restarts since the core started.
    pub restarts: u64,
    /// Crashes since the core started.
    pub crashes: u64,
    /// Why it says it is unhealthy.
    pub unhealthy: Option<String>,
    /// Resident memory in bytes.
    pub rss_bytes: Option<u64>,
    /// CPU seconds of its current process.
    pub cpu_seconds: Option<f64>,
    /// CPU seconds of all its processes since the core started (as last seen).
    pub cpu_seconds_total: f64,
    /// Modules it depends on.
    pub dependencies: Vec<String>,
    /// Calls served (all processes) and answered by the core on its behalf.
    pub calls_total: u64,
    /// Of those, calls that did not end `ok`.
    pub errors_total: u64,
    /// Calls per second over the last collection interval.
    pub calls_per_second: Option<f64>,
    /// Calls running now.
    pub in_flight: Option<u64>,
    /// Median latency of its current process, in seconds.
    pub p50_seconds: Option<f64>,
    /// 99th percentile latency of its current process, in seconds.
    pub p99_seconds: Option<f64>,
    /// Events emitted (all processes).
    pub events_total: u64,
    /// Event deliveries dropped (all processes).
    pub events_dropped_total: u64,
    /// Streams open now.
    pub streams_open: u64,
    /// Stream bytes read (all processes).
    pub stream_bytes_in_total: u64,
    /// Stream bytes written (all processes).
    pub stream_bytes_out_total: u64,
    /// Per method, cumulative.
    pub methods: Vec<MethodTotals>,
    /// Upper bounds of the duration buckets, in seconds.
    #[serde(skip)]
    pub bounds_seconds: Vec<f64>,
}

/// Core-wide figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CoreView {
    /// The core's pid.
    pub pid: u32,
    /// The core's own events published.
    pub events_total: u64,
    /// Deliveries of them dropped.
    pub events_dropped_total: u64,
    /// Denials by `(caller, target)`.
    pub denials: Vec<(String, String, u64)>,
    /// Module processes started in a spare host, and the cold way.
    pub starts_spare_total: u64,
    pub starts_cold_total: u64,
    /// Heartbeats of local modules seen on their heartbeat pages, and answered pings.
    pub heartbeats_page_total: u64,
    pub heartbeats_ping_total: u64,
}

/// Everything an observer shows, as of `at_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct View {
    /// Milliseconds since the Unix epoch when this was taken.
    pub at_ms: u64,
    /// Every known module, by name.
    pub modules: Vec<ModuleView>,
    /// The core itself.
    pub core: CoreView,
    /// Recent crashes, newest last.
    pub crashes: VecDeque<Crash>,
}

pub(crate) fn now_ms() -> u64 {
    millis(SystemTime::now())
}

pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn refused_totals(refused: &[Refused]) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut by_method: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for r in refused {
        *by_method
            .entry(r.method.clone())
            .or_default()
            .entry(r.outcome.clone())
            .or_insert(0) += r.count;
    }
    by_method
}

impl View {
    /// The view after one collection: `stats` from [`logos_core::Core::stats`], `previous`
    /// the view before (for rates and the crash list), `totals` carried between calls.
    pub(crate) fn collected(
        stats: &[ModuleStats],
        previous: &View,
        totals: &mut Totals,
        core: CoreView,
    ) -> View {
        let at_ms = now_ms();
        let figures = totals.update(stats);
        let elapsed = at_ms.saturating_sub(previous.at_ms) as f64 / 1000.0;
        let modules = stats
            .iter()
            .map(|s| {
                let (f, cpu_total) = figures.get(&s.name).cloned().unwrap_or_default();
                let mut methods = f.methods.clone();
                // Calls the core answered for the module belong to the same counter.
                for (method, outcomes) in refused_totals(&s.refused) {
                    let m = methods
                        .entry(method.clone())
                        .or_insert_with(|| MethodTotals {
                            name: method.clone(),
                            ..MethodTotals::default()
                        });
                    for (o, n) in outcomes {
                        *m.outcomes.entry(o).or_insert(0) += n;
                    }
                }
                let calls_total: u64 = methods.values().flat_map(|m| m.outcomes.values()).sum();
                let ok: u64 = methods.values().filter_map(|m| m.outcomes.get("ok")).sum();
                let before = previous
                    .modules
                    .iter()
                    .find(|m| m.name == s.name)
                    .map(|m| m.calls_total);
                let calls_per_second = match before {
                    Some(b) if elapsed > 0.0 && previous.at_ms > 0 => {
                        Some(calls_total.saturating_sub(b) as f64 / elapsed)
                    }
                    _ => None,
                };
                ModuleView {
                    name: s.name.clone(),
                    version: s.version.clone(),
                    state: s.state.as_str().to_owned(),
                    location: s.location.clone(),
                    pid: s.pid,
                    uptime_seconds: s.uptime.map(secs),
                    restarts: u64::from(s.restarts),
                    crashes: s.crashes,
                    unhealthy: s.unhealthy.clone(),
                    rss_bytes: s.rss_bytes,
                    cpu_seconds: s.cpu_time.map(secs),
                    cpu_seconds_total: cpu_total,
                    dependencies: s.dependencies.clone(),
                    calls_total,
                    errors_total: calls_total - ok,
                    calls_per_second,
                    in_flight: s.in_flight,
                    p50_seconds: s.latency.map(|l| secs(l.p50)),
                    p99_seconds: s.latency.map(|l| secs(l.p99)),
                    events_total: f.events_emitted,
                    events_dropped_total: f.events_dropped,
                    streams_open: s.streams.map_or(0, |st| st.open),
                    stream_bytes_in_total: f.bytes_in,
                    stream_bytes_out_total: f.bytes_out,
                    methods: methods.into_values().collect(),
                    bounds_seconds: f.bounds_us.iter().map(|b| *b as f64 / 1e6).collect(),
                }
            })
            .collect();
        View {
            at_ms,
            modules,
            core,
            crashes: previous.crashes.clone(),
        }
    }

    /// This view with the lifecycle figures of `infos` (taken just now, without asking the
    /// modules anything), so a state change shows at once rather than at the next collection.
    pub(crate) fn with_states(&self, infos: &[ModuleInfo]) -> View {
        let mut next = self.clone();
        next.at_ms = now_ms();
        for info in infos {
            if let Some(m) = next.modules.iter_mut().find(|m| m.name == info.name) {
                m.state = info.state.as_str().to_owned();
                m.pid = info.pid;
                m.uptime_seconds = info.uptime.map(secs);
                m.restarts = u64::from(info.restarts);
                m.crashes = info.crashes;
                m.unhealthy = info.unhealthy.clone();
                if info.pid.is_none() {
                    m.rss_bytes = None;
                    m.cpu_seconds = None;
                    m.in_flight = None;
                    m.streams_open = 0;
                }
            }
        }
        // Keep the rate figures anchored to the last collection.
        next.at_ms = self.at_ms;
        next
    }

    /// This view with `crash` added to the recent crashes.
    pub(crate) fn with_crash(&self, crash: Crash) -> View {
        let mut next = self.clone();
        next.crashes.push_back(crash);
        while next.crashes.len() > RECENT_CRASHES {
            next.crashes.pop_front();
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(ok: u64, bounds: &[u64]) -> Figures {
        let mut methods = BTreeMap::new();
        methods.insert(
            "add".to_owned(),
            MethodTotals {
                name: "add".into(),
                outcomes: BTreeMap::from([("ok".to_owned(), ok)]),
                buckets: Some(vec![ok, 0]),
                sum_seconds: ok as f64,
            },
        );
        Figures {
            methods,
            bounds_us: bounds.to_vec(),
            events_emitted: ok,
            ..Figures::default()
        }
    }

    #[test]
    fn totals_survive_a_restart() {
        let mut acc = Account::default();
        // Process 1 counts up to 5, then dies; process 2 starts from zero.
        for (generation, now) in [
            (1, figures(3, &[100])),
            (1, figures(5, &[100])),
            (2, figures(2, &[100])),
        ] {
            if acc.generation != generation || !acc.current.precedes(&now) {
                acc.earlier = acc.earlier.plus(&acc.current);
                acc.generation = generation;
            }
            acc.current = now;
        }
        let total = acc.earlier.plus(&acc.current);
        let add = &total.methods["add"];
        assert_eq!(add.outcomes["ok"], 7);
        assert_eq!(add.buckets, Some(vec![7, 0]));
        assert_eq!(total.events_emitted, 7);
    }

    #[test]
    fn cpu_time_adds_up_across_processes() {
        let mut a = Account::default();
        for (generation, cpu) in [(1, 1.0), (1, 2.5), (2, 0.5), (2, 1.0)] {
            a.observe_cpu(generation, cpu);
        }
        assert_eq!(a.cpu_total(), 3.5);
        // The same generation going down is a process the core did not tell apart.
        a.observe_cpu(2, 0.25);
        assert_eq!(a.cpu_total(), 3.75);
    }

    #[test]
    fn histograms_of_other_bounds_start_afresh() {
        let total = figures(5, &[100]).plus(&figures(2, &[200]));
        let add = &total.methods["add"];
        assert_eq!(add.outcomes["ok"], 7, "counts still add up");
        assert_eq!(
            add.buckets,
            Some(vec![2, 0]),
            "buckets of other bounds restart"
        );
        assert_eq!(add.sum_seconds, 2.0);
        assert_eq!(total.bounds_us, vec![200]);
    }

    #[test]
    fn the_crash_list_is_bounded() {
        let mut v = View::default();
        for i in 0..(RECENT_CRASHES as u64 + 5) {
            v = v.with_crash(Crash {
                module: "calc".into(),
                status: "killed".into(),
                at_ms: i,
                uptime_ms: 0,
                stderr: Vec::new(),
            });
        }
        assert_eq!(v.crashes.len(), RECENT_CRASHES);
        assert_eq!(
            v.crashes.back().map(|c| c.at_ms),
            Some(RECENT_CRASHES as u64 + 4)
        );
    }
}
