//! The module's heartbeat: one count in the heartbeat page per interval while the module
//! reports itself healthy (docs/architecture.md, "Module process contract" §2 and §9).
//!
//! Owns the timer and the count. Never answers pings (the session's reader does, for a core
//! that pings), never decides what a still count means (the core does), and never counts
//! while the module reports itself unhealthy: the core then pings, and the `pong` carries the
//! reason.
//!
//! # Why a `timerfd`, not a tokio timer
//!
//! The count runs on the module's one runtime thread, so an event loop that blocks stops it,
//! as it would stop the answer to a ping. With `tokio::time::interval` an idle module made
//! five system calls and two wake-ups a beat (`strace`): tokio's timer wheel wakes at the
//! coarse slot a 1 s deadline sits in, then again at the deadline, and the timer's wake-up
//! writes the runtime's eventfd, read by one more `epoll_wait`. Its idle CPU rose above that
//! of answering pings (docs/performance.md, "Twenty-first step"). A periodic `timerfd` is an
//! I/O source like the control socket: one wake-up a beat, an `epoll_wait` and a `read`.

use logos_session::Beater;
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

/// A periodic timer of `every`, as a descriptor the runtime's reactor watches.
fn periodic(every: Duration) -> io::Result<AsyncFd<OwnedFd>> {
    let fd = timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
    )?;
    let period = Timespec {
        tv_sec: i64::try_from(every.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(every.subsec_nanos()),
    };
    timerfd_settime(
        &fd,
        TimerfdTimerFlags::empty(),
        &Itimerspec {
            it_interval: period,
            it_value: period,
        },
    )?;
    // SAFETY: `fd` is an open timerfd owned by the `OwnedFd` the `AsyncFd` keeps, so it stays
    // open, and is the same descriptor, until the `AsyncFd` is dropped.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

/// Counts in `beater` every `every` while `healthy()` says so, until `stop` holds a value.
/// A timer that cannot be made or read ends the count with a warning: the core then pings
/// the module, which answers as before.
pub(super) async fn run<S>(
    beater: Beater,
    every: Duration,
    healthy: impl Fn() -> bool,
    mut stop: watch::Receiver<Option<S>>,
) {
    let timer = match periodic(every) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("cannot make the heartbeat timer ({e}); answering pings instead");
            return;
        }
    };
    loop {
        let mut ready = tokio::select! {
            ready = timer.readable() => match ready {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("the heartbeat timer failed ({e}); answering pings instead");
                    return;
                }
            },
            _ = stop.wait_for(Option::is_some) => return,
        };
        let mut expirations = [0u8; 8];
        match rustix::io::read(timer.get_ref(), &mut expirations) {
            // Every expiration so far is read: the next one makes the timer readable again.
            Ok(_) => ready.clear_ready(),
            Err(rustix::io::Errno::AGAIN) => {
                ready.clear_ready();
                continue;
            }
            Err(e) => {
                tracing::warn!("the heartbeat timer failed ({e}); answering pings instead");
                return;
            }
        }
        if healthy() {
            beater.beat();
        }
    }
}
