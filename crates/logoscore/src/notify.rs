//! systemd readiness for `logoscore run` under `Type=notify` (the `sd-notify` crate speaks
//! the protocol): `READY=1` once the boot modules are loaded and the core is announced,
//! `WATCHDOG=1` at half the unit's `WatchdogSec=` while the core answers, `STOPPING=1` when
//! shutdown begins, `STATUS=` lines for `systemctl status`.
//!
//! Without `$NOTIFY_SOCKET` every function here does nothing. Modules never see these
//! variables: they start with a cleared environment. A failure to notify is logged, never
//! fatal: the service manager's own timeouts then tell the operator.

use logos_core::Core;
use sd_notify::NotifyState;
use std::time::Duration;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify the service manager ($NOTIFY_SOCKET): {e}");
    }
}

/// The core is up: `READY=1` with a status line.
pub(crate) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Shutdown has begun.
pub(crate) fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping modules"),
    ]);
}

/// With a watchdog configured (`$WATCHDOG_USEC` for this pid), sends `WATCHDOG=1` at half
/// its period for as long as the core's runtime and registry answer (a wedged runtime or a
/// registry lock that is never released stops the pings, and systemd restarts the service).
pub(crate) fn spawn_watchdog(core: &Core) -> Option<tokio::task::JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()?;
    let every = (period / 2).max(Duration::from_millis(10));
    tracing::info!(?period, "systemd watchdog enabled: pinging every {every:?}");
    let core = core.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            // Takes the registry lock: a core that cannot list its modules is not healthy.
            let _ = core.modules().len();
            send(&[NotifyState::Watchdog]);
        }
    }))
}
