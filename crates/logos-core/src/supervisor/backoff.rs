//! What happens after a crash: the restart policy, exponential backoff and the restart budget.
//!
//! The delay and budget arithmetic are pure functions (unit-tested without processes); the
//! async part waits out the delay and restarts through the supervisor. A manual reload clears
//! the budget; only crash restarts count. Never restarts a module someone stopped or reloaded
//! meanwhile (the start generation tells).

use crate::api::Inner;
use crate::builder::RestartSettings;
use crate::error::Error;
use crate::manifest::{Manifest, RestartPolicy};
use crate::registry::{ExitReport, State};
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Delay before restart number `attempt` (0-based): `initial · 2^attempt`, at most `max`.
pub fn delay(s: &RestartSettings, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(31));
    s.initial.saturating_mul(factor).min(s.max)
}

/// Whether a policy restarts after this exit.
pub fn wants_restart(policy: RestartPolicy, report: &ExitReport) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => report.code != Some(0),
        RestartPolicy::Never => false,
    }
}

/// Records a crash at `now` in `times` (pruning those older than the window) and returns
/// `Some(attempt)` if another restart is within budget, `None` if the budget is spent.
pub fn charge(times: &mut VecDeque<Instant>, s: &RestartSettings, now: Instant) -> Option<u32> {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) > s.window)
    {
        times.pop_front();
    }
    times.push_back(now);
    let n = u32::try_from(times.len()).unwrap_or(u32::MAX);
    (n <= s.budget).then(|| n - 1)
}

/// The restart policy of a module: its configuration override, else its metadata's.
pub(crate) fn policy(inner: &Inner, manifest: &Manifest) -> RestartPolicy {
    inner
        .settings
        .modules
        .get(manifest.name.as_str())
        .and_then(|o| o.restart)
        .unwrap_or(manifest.restart)
}

/// Applies the restart policy after a crash of start `generation` of `name`.
pub(crate) async fn after_crash(
    inner: Arc<Inner>,
    name: String,
    generation: u64,
    report: ExitReport,
) {
    let policy = {
        let m = inner.modules();
        m.known
            .get(&name)
            .map_or(RestartPolicy::OnFailure, |k| policy(&inner, k))
    };
    if !wants_restart(policy, &report) {
        tracing::info!(module = %name, %policy, "not restarting (restart policy); reload it to bring it back");
        return;
    }
    let mut generation = generation;
    loop {
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let attempt = {
            let mut m = inner.modules();
            let Some(rec) = m.records.get_mut(&name) else {
                return;
            };
            // Someone unloaded or reloaded it since it crashed: not ours to restart.
            if rec.generation != generation || rec.state() != State::Crashed {
                return;
            }
            charge(
                &mut rec.crash_times,
                &inner.settings.restart,
                Instant::now(),
            )
        };
        let Some(attempt) = attempt else {
            tracing::error!(
                module = %name,
                budget = inner.settings.restart.budget,
                window_s = inner.settings.restart.window.as_secs(),
                "restart budget exhausted; module failed (reload it to try again)"
            );
            super::set_state(&inner, &name, State::Failed);
            return;
        };
        let wait = delay(&inner.settings.restart, attempt);
        if let Some(rec) = inner.modules().records.get_mut(&name) {
            // The builder bounds `max`; `checked_add` keeps a restart task alive regardless.
            rec.backoff_until = Instant::now().checked_add(wait);
        }
        super::set_state(&inner, &name, State::Backoff);
        tracing::info!(module = %name, attempt = attempt + 1, delay_ms = wait.as_millis() as u64, "restarting after backoff");
        tokio::time::sleep(wait).await;
        let _ops = inner.ops.lock().await;
        let previous_exit = {
            let mut m = inner.modules();
            let Some(rec) = m.records.get_mut(&name) else {
                return;
            };
            if rec.generation != generation || rec.state() != State::Backoff {
                return;
            }
            rec.backoff_until = None;
            rec.restarts += 1;
            rec.last_exit.as_ref().map(|e| e.at)
        };
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        match restart(Arc::clone(&inner), name.clone()).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(module = %name, "restart failed: {e}");
                let (current, crash) = {
                    let m = inner.modules();
                    let rec = m.records.get(&name);
                    (
                        rec.map_or(generation, |r| r.generation),
                        // A new exit report means it ran and died before it was ready.
                        rec.and_then(|r| r.last_exit.clone())
                            .filter(|e| Some(e.at) != previous_exit),
                    )
                };
                generation = current;
                if let Some(report) = crash {
                    tracing::warn!(
                        module = %name,
                        status = %report.status_text(),
                        uptime_ms = report.uptime.as_millis() as u64,
                        stderr = ?report.stderr_tail,
                        restarts = inner.modules().records.get(&name).map_or(0, |r| r.restarts),
                        "module crashed while starting"
                    );
                    super::publish_crash(&inner, &name, &report);
                }
            }
        }
    }
}

/// A restart starts a process whose watcher may restart it again: a cycle of futures the
/// compiler can prove `Send` only through a named (boxed) future type, given here.
fn restart(inner: Arc<Inner>, name: String) -> BoxFuture<'static, Result<(), Error>> {
    Box::pin(async move { super::start_module_or(&inner, &name, State::Crashed).await })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RestartSettings {
        RestartSettings {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            budget: 3,
            window: Duration::from_secs(10),
        }
    }

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let s = settings();
        assert_eq!(delay(&s, 0), Duration::from_millis(100));
        assert_eq!(delay(&s, 1), Duration::from_millis(200));
        assert_eq!(delay(&s, 3), Duration::from_millis(800));
        assert_eq!(delay(&s, 4), Duration::from_secs(1));
        assert_eq!(delay(&s, 1000), Duration::from_secs(1));
    }

    #[test]
    fn budget_counts_only_crashes_inside_the_window() {
        let s = settings();
        let mut times = VecDeque::new();
        let t0 = Instant::now();
        assert_eq!(charge(&mut times, &s, t0), Some(0));
        assert_eq!(charge(&mut times, &s, t0 + Duration::from_secs(1)), Some(1));
        assert_eq!(charge(&mut times, &s, t0 + Duration::from_secs(2)), Some(2));
        assert_eq!(charge(&mut times, &s, t0 + Duration::from_secs(3)), None);
        // Long after, the old crashes have left the window.
        assert_eq!(
            charge(&mut times, &s, t0 + Duration::from_secs(30)),
            Some(0)
        );
    }

    #[test]
    fn policies() {
        let exit = |code| ExitReport {
            code,
            signal: None,
            uptime: Duration::ZERO,
            stderr_tail: vec![],
            at: std::time::SystemTime::now(),
        };
        assert!(wants_restart(RestartPolicy::Always, &exit(Some(0))));
        assert!(!wants_restart(RestartPolicy::OnFailure, &exit(Some(0))));
        assert!(wants_restart(RestartPolicy::OnFailure, &exit(Some(1))));
        assert!(wants_restart(RestartPolicy::OnFailure, &exit(None)));
        assert!(!wants_restart(RestartPolicy::Never, &exit(Some(1))));
    }
}
