//! What happens after a crash: the restart policy, exponential backoff and the restart budget.
//!
//! The delay and budget arithmetic are pure functions (unit-tested without processes); the
//! async part waits out the delay and restarts through the supervisor. A manual reload clears
//! the budget; only crash restarts count. Never restarts a module someone stopped or reloaded
//! meanwhile (the start generation tells).

use crate::builder::RestartSettings;
use crate::error::Error;
use crate::manifest::RestartPolicy;
use crate::registry::{AfterCrash, ExitReport, State};
use crate::state::Inner;
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

/// Applies the restart policy after a crash of start `generation` of `name`.
pub(crate) async fn after_crash(
    inner: Arc<Inner>,
    name: String,
    generation: u64,
    report: ExitReport,
) {
    let policy = inner
        .registry()
        .manifest(&name)
        .map_or(RestartPolicy::OnFailure, |m| {
            inner.settings.restart_policy(m)
        });
    if !wants_restart(policy, &report) {
        tracing::info!(module = %name, %policy, "not restarting (restart policy); reload it to bring it back");
        return;
    }
    let mut generation = generation;
    loop {
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let settings = &inner.settings.restart;
        let mut attempt = 0;
        let verdict = inner.registry().after_crash(&name, generation, |times| {
            attempt = charge(times, settings, Instant::now())?;
            Some(delay(settings, attempt))
        });
        let wait = match verdict {
            AfterCrash::Gone => return,
            AfterCrash::Failed(change) => {
                tracing::error!(
                    module = %name,
                    budget = settings.budget,
                    window_s = settings.window.as_secs(),
                    "restart budget exhausted; module failed (reload it to try again)"
                );
                super::announce(&inner, Some(change));
                return;
            }
            AfterCrash::Backoff { wait, change } => {
                super::announce(&inner, Some(change));
                wait
            }
        };
        tracing::info!(module = %name, attempt = attempt + 1, delay_ms = wait.as_millis() as u64, "restarting after backoff");
        tokio::time::sleep(wait).await;
        let _ops = inner.ops.lock().await;
        let Some(previous_exit) = inner.registry().end_backoff(&name, generation) else {
            return;
        };
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        match restart(Arc::clone(&inner), name.clone()).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(module = %name, "restart failed: {e}");
                let (current, crash) = {
                    let registry = inner.registry();
                    let rec = registry.record(&name);
                    (
                        rec.map_or(generation, |r| r.generation()),
                        // A new exit report means it ran and died before it was ready.
                        rec.and_then(|r| r.last_exit().cloned())
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
                        restarts = super::restarts(&inner, &name),
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
