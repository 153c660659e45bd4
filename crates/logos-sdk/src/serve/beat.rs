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

use logos_session::{Beater, count_instant_after};
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// A periodic timer of `every`, as a descriptor the runtime's reactor watches, expiring at
/// the multiples of `every` on the monotonic clock: the same instants in every module of the
/// machine (`logos_session::count_instant_after`).
fn periodic(every: Duration) -> io::Result<AsyncFd<OwnedFd>> {
    let fd = timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
    )?;
    timerfd_settime(
        &fd,
        TimerfdTimerFlags::ABSTIME,
        &Itimerspec {
            it_interval: timespec(every),
            it_value: timespec(count_instant_after(monotonic_now()?, every)),
        },
    )?;
    // SAFETY: `fd` is an open timerfd owned by the `OwnedFd` the `AsyncFd` keeps, so it stays
    // open, and is the same descriptor, until the `AsyncFd` is dropped.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

/// The monotonic clock, through the C library's `clock_gettime` (as `Instant::now` reads it),
/// not `rustix`'s: its own vDSO lookup is code an idle module would keep resident for one call.
fn monotonic_now() -> io::Result<Duration> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable `timespec` for the duration of the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    ))
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// Counts in `beater` every `every` while `healthy()` says so, for as long as the runtime
/// runs it (a stopping module still beats: it is alive until it exits). A timer that cannot
/// be made or read ends the count with a warning: the core then pings the module, which
/// answers as before.
pub(super) async fn run(beater: Beater, every: Duration, healthy: impl Fn() -> bool) {
    let timer = match periodic(every) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("cannot make the heartbeat timer ({e}); answering pings instead");
            return;
        }
    };
    loop {
        let mut ready = match timer.readable().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("the heartbeat timer failed ({e}); answering pings instead");
                return;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use logos_session::BeatWatch;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::time::Instant;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    async fn until(what: &str, ok: impl Fn() -> bool) -> TestResult {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok() {
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {what}").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn counts_while_healthy_and_stands_still_while_not() -> TestResult {
        let (watch, fd) = BeatWatch::create()?;
        let beater = Beater::open(fd)?;
        let healthy = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(run(beater, Duration::from_millis(10), {
            let healthy = Arc::clone(&healthy);
            move || healthy.load(Ordering::SeqCst)
        }));
        until("three beats", || watch.count() >= 3).await?;

        healthy.store(false, Ordering::SeqCst);
        // Let a beat that was already past its check land, then nothing more may.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let still = watch.count();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(watch.count(), still, "counted while unhealthy");

        healthy.store(true, Ordering::SeqCst);
        until("beats again", || watch.count() >= still + 3).await?;

        task.abort();
        Ok(())
    }
}
