//! The collector: one task that keeps the latest [`View`] of a core in a `watch` channel.
//!
//! Every [`INTERVAL`] it asks the core for its figures ([`Core::stats`], which asks each
//! ready module for `$stats` at once, at most [`logos_core::STATS_TIMEOUT`] for a hung one)
//! and folds them into totals that survive restarts. Between collections it follows the
//! core's own events (`stateChanged`, `moduleCrashed`, …) and republishes the lifecycle
//! figures at once from the registry (no module is asked), so a state change reaches the
//! dashboard within milliseconds. Readers only ever see the latest view: a slow reader skips
//! views, it never makes anything queue. Never holds a lock of the core across an await and
//! never changes anything in the core.

use crate::view::{CoreView, Crash, Totals, View, now_ms};
use logos_core::{Core, Notification, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the modules are asked for their figures while the HTTP endpoint runs.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Starts the collector; it runs until the core shuts down or the handle is aborted.
pub(crate) fn spawn(core: Core) -> (watch::Receiver<Arc<View>>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Arc::new(View::default()));
    let task = tokio::spawn(run(core, tx));
    (rx, task)
}

fn core_view(core: &Core) -> CoreView {
    let events = core.core_events();
    let starts = core.starts();
    let beats = core.heartbeats();
    CoreView {
        starts_spare_total: starts.spare,
        starts_cold_total: starts.cold,
        heartbeats_page_total: beats.page,
        heartbeats_ping_total: beats.ping,
        pid: std::process::id(),
        events_total: events.emitted,
        events_dropped_total: events.dropped,
        denials: core
            .denials()
            .into_iter()
            .map(|d| (d.caller, d.target, d.count))
            .collect(),
    }
}

/// `moduleCrashed(name, status, uptimeMs, stderr, restarts)` as a [`Crash`].
fn crash_of(data: &[Value]) -> Option<Crash> {
    Some(Crash {
        module: data.first()?.as_str()?.to_owned(),
        status: data.get(1).and_then(Value::as_str).unwrap_or("").to_owned(),
        uptime_ms: data.get(2).and_then(Value::as_u64).unwrap_or(0),
        stderr: data
            .get(3)
            .and_then(Value::as_list)
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        at_ms: now_ms(),
    })
}

async fn run(core: Core, tx: watch::Sender<Arc<View>>) {
    let mut totals = Totals::default();
    let mut events = match core.subscribe("core", "") {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("observe: no live state changes ({e}); the view updates every second");
            None
        }
    };
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The current collection runs beside the event loop, so a module slow to answer `$stats`
    // never holds up a state change; at most one collection runs at a time.
    let mut collecting: Option<JoinHandle<Vec<logos_core::ModuleStats>>> = None;
    loop {
        let next_event = async {
            match events.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let idle = collecting.is_none();
        let collected = async {
            match collecting.as_mut() {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick(), if idle => {
                let core = core.clone();
                collecting = Some(tokio::spawn(async move { core.stats().await }));
            }
            stats = collected => {
                collecting = None;
                if let Ok(stats) = stats {
                    let previous = tx.borrow().clone();
                    let view = View::collected(&stats, &previous, &mut totals, core_view(&core));
                    tx.send_replace(Arc::new(view));
                }
            }
            note = next_event => match note {
                None => break, // the core is gone
                Some(Notification::Event { event, data, .. }) => {
                    let current = tx.borrow().clone();
                    let mut view = current.with_states(&core.modules());
                    if event == "moduleCrashed"
                        && let Some(crash) = crash_of(&data)
                    {
                        view = view.with_crash(crash);
                    }
                    tx.send_replace(Arc::new(view));
                }
                Some(_) => {
                    let current = tx.borrow().clone();
                    tx.send_replace(Arc::new(current.with_states(&core.modules())));
                }
            },
        }
        if tx.is_closed() {
            break;
        }
    }
    if let Some(task) = collecting {
        task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_event_is_read() {
        let data = vec![
            Value::from("calc"),
            Value::from("killed by signal 9 (SIGKILL)"),
            Value::from(1234u64),
            Value::List(vec![Value::from("boom")]),
            Value::from(1u64),
        ];
        let c = crash_of(&data).unwrap_or_else(|| panic!("not read"));
        assert_eq!(c.module, "calc");
        assert_eq!(c.uptime_ms, 1234);
        assert_eq!(c.stderr, vec!["boom".to_owned()]);
        assert!(crash_of(&[Value::from(3u64)]).is_none());
    }
}
