//! The heartbeats of local modules: one task and one timer for all of them.
//!
//! Every `heartbeat` interval, on the core's shared grid ([`next_beat`]), the task looks at
//! each module's heartbeat page first: a count that moved since the last tick is a beat (the
//! module's event loop ran its timer and it reports itself healthy; no `ping` is sent). A
//! count that stood still for two ticks in a row (one is the drift between the module's timer
//! and this one) falls back to the `ping`, as does a module with no page or one that never
//! counts (an older SDK, or a module written without one), and a counting module is still
//! pinged once every [`PROOF_EVERY`] ticks, which proves its control connection as well as
//! its runtime. Then
//! the last `ping` is looked at: answered (record the health the `pong` carried, and send the
//! next if one is due), unanswered for two intervals (a miss; the third miss in a row kills
//! the process, and the supervisor's crash handling restarts it), or still within its time
//! (wait). A module joins with [`watch`] when it becomes ready and
//! leaves at the first tick that finds its connection closed or its record at another
//! generation.
//!
//! Why a page: a `ping` cost the core a `sendto`, a wake-up and a `recvmsg` per module per
//! beat, and the module a `recvmsg` and a `sendto` besides its wake-up; reading a count costs
//! the core a load, and the module a timer (docs/performance.md, "Twenty-first step").
//!
//! Why one task: with a task per module, each beat cost the core per module a task woken by
//! its timer, a timeout timer armed and cancelled around the ping, and a second wake-up for
//! the `pong`. Arming a timer that falls before the runtime's next planned wake-up also
//! writes the runtime's eventfd, so an idle core with 100 modules made about 100 extra
//! system calls per beat (`strace`, docs/performance.md). Here a `pong` only fills a
//! one-shot slot ([`logos_session::PendingPing`]) that nothing awaits, and the only timer is
//! this task's.
//!
//! Never signals anything but [`Signal::Kill`] after the misses, and never holds the
//! registry lock while it sends or records.

use super::{MISSED_HEARTBEATS, signal};
use crate::counters::Way;
use crate::state::Inner;
use crate::sys::Signal;
use logos_session::{BeatWatch, PendingPing, Session};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// Modules waiting to join the heartbeat task, and whether that task is running.
#[derive(Default)]
pub(crate) struct Heartbeats {
    joining: Mutex<Joining>,
}

#[derive(Default)]
struct Joining {
    beats: Vec<Beat>,
    running: bool,
    /// Modules that joined so far: spreads the turns of their proof pings ([`PROOF_EVERY`]).
    joined: u32,
}

/// One module's heartbeat state.
struct Beat {
    name: String,
    generation: u64,
    session: Session,
    missed: u32,
    last_health: Option<String>,
    /// The ping in flight and the tick it was sent on.
    ping: Option<(Instant, PendingPing)>,
    page: Option<Page>,
}

/// A module's heartbeat page as the task last read it.
struct Page {
    watch: BeatWatch,
    /// The count read at the last tick.
    seen: u64,
    /// Ticks in a row that found the count where it was.
    still: u32,
    /// Ticks since the last ping was sent.
    since_ping: u32,
    /// Whether the count ever moved.
    counted: bool,
}

/// A module that counts is still pinged once every this many ticks, so a control connection
/// that stalls while the module's runtime turns (a reader stuck behind an `await`) is found
/// out too, about 36 intervals after it stalled. Modules take their turns on different ticks
/// ([`watch`] spreads them), so a tick pings a thirtieth of them, not all at once.
const PROOF_EVERY: u32 = 30;

impl Heartbeats {
    /// Whether the heartbeat task is running (tests).
    #[cfg(test)]
    pub(crate) fn is_running(&self) -> bool {
        self.joining
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .running
    }
}

/// Starts the heartbeat of `name` (at `generation`) on its control connection `session` and
/// its heartbeat page `beat`, and the heartbeat task if it is not running.
pub(crate) fn watch(
    inner: &Arc<Inner>,
    name: String,
    generation: u64,
    session: Session,
    beat: Option<BeatWatch>,
) {
    let mut joining = inner
        .heartbeats
        .joining
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let turn = joining.joined % PROOF_EVERY;
    joining.joined = joining.joined.wrapping_add(1);
    joining.beats.push(Beat {
        name,
        generation,
        session,
        missed: 0,
        last_health: None,
        ping: None,
        page: beat.map(|watch| Page {
            seen: watch.count(),
            watch,
            still: 0,
            since_ping: turn,
            counted: false,
        }),
    });
    if !joining.running {
        joining.running = true;
        tokio::spawn(run(
            Arc::downgrade(inner),
            inner.beat_epoch,
            inner.settings.heartbeat,
        ));
    }
}

/// The heartbeat task: ends when no module is left to watch (the next [`watch`] starts it
/// again) or when the core is gone.
async fn run(core: Weak<Inner>, epoch: Instant, every: Duration) {
    // Dropped with the task (its runtime shut down, say) the guard lets the next `watch`
    // start a new one.
    let mut running = Running(Some(core.clone()));
    let mut beats: Vec<Beat> = Vec::new();
    loop {
        let tick = next_beat(epoch, every, Instant::now());
        tokio::time::sleep_until(tick).await;
        let Some(inner) = core.upgrade() else {
            return;
        };
        {
            let mut joining = inner
                .heartbeats
                .joining
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            beats.append(&mut joining.beats);
            if beats.is_empty() {
                joining.running = false;
                running.0 = None;
                return;
            }
        }
        // Connections that ended and records that moved on leave before anything is sent,
        // under one look at the registry.
        {
            let registry = inner.registry();
            beats.retain(|b| {
                !b.session.is_closed()
                    && registry.record(&b.name).map(|r| r.generation()) == Some(b.generation)
            });
        }
        beats.retain_mut(|b| b.tick(&inner, tick, every));
    }
}

/// Marks the heartbeat task stopped when it ends other than by finding nothing to watch.
struct Running(Option<Weak<Inner>>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take().and_then(|core| core.upgrade()) {
            inner
                .heartbeats
                .joining
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .running = false;
        }
    }
}

impl Beat {
    /// Looks at the module's count and its last ping at `tick`, and sends a ping where one is
    /// due; `false` when this module leaves the heartbeat.
    fn tick(&mut self, inner: &Inner, tick: Instant, every: Duration) -> bool {
        // The count first, the pong after: of two health reports in one tick, the `pong` is
        // the later one more often (the count was made half an interval before the tick).
        let name = &self.name;
        let moved = self.page.as_mut().map(|page| {
            page.since_ping = page.since_ping.saturating_add(1);
            let count = page.watch.count();
            if count == page.seen {
                page.still = page.still.saturating_add(1);
                // Said once, when a module that counted stops: which module the pings in
                // `logos_heartbeats_total{way="ping"}` are for (a module that never counted
                // is pinged from its start, and says nothing here).
                if page.still == 2 && page.counted {
                    tracing::info!(module = %name, "module's heartbeat count stood still for two beats; pinging it");
                }
                false
            } else {
                if page.still >= 2 && page.counted {
                    tracing::info!(module = %name, "module counts its heartbeats again");
                }
                page.seen = count;
                page.still = 0;
                page.counted = true;
                true
            }
        });
        if moved == Some(true) {
            inner.counters.beat(Way::Page);
            // The SDK counts only while the module reports itself healthy.
            self.record_health(inner, None);
        }
        if let Some((sent, ping)) = &mut self.ping {
            match ping.answer() {
                Some(Ok(health)) => {
                    self.ping = None;
                    self.missed = 0;
                    inner.counters.beat(Way::Ping);
                    self.record_health(inner, health);
                }
                // The connection ended: the supervisor's exit handling takes over.
                Some(Err(_)) => return false,
                None if tick.saturating_duration_since(*sent) >= every * 2 => {
                    self.ping = None;
                    self.missed += 1;
                    if self.missed >= MISSED_HEARTBEATS {
                        tracing::error!(
                            module = %self.name,
                            "module missed {} heartbeats; killing it",
                            self.missed
                        );
                        signal(inner, &self.name, Signal::Kill);
                        return false;
                    }
                }
                // Unanswered but within its two intervals.
                None => return true,
            }
        }
        // A ping is due for a module that does not count, one whose count stood still for
        // two ticks (one is the drift between its timer and this one), one that missed the
        // last ping, and a counting one whose turn came.
        let due = match &self.page {
            None => true,
            Some(page) => page.still >= 2 || page.since_ping >= PROOF_EVERY || self.missed > 0,
        };
        if !due {
            return true;
        }
        match self.session.send_ping() {
            Ok(ping) => {
                self.ping = Some((tick, ping));
                if let Some(page) = &mut self.page {
                    page.since_ping = 0;
                }
                true
            }
            Err(_) => false,
        }
    }

    fn record_health(&mut self, inner: &Inner, health: Option<String>) {
        if health == self.last_health {
            return;
        }
        match &health {
            Some(reason) => {
                tracing::warn!(module = %self.name, "module reports itself unhealthy: {reason}")
            }
            None => tracing::info!(module = %self.name, "module reports itself healthy again"),
        }
        inner
            .registry()
            .set_health(&self.name, self.generation, health.clone());
        self.last_health = health;
    }
}

/// The origin of the core's heartbeat grid: its ticks fall half an interval after the instants
/// modules count at ([`logos_session::count_instant_after`]), so each tick reads counts made
/// half an interval earlier, and neither side's lateness, up to half an interval, makes a
/// count look still.
pub(crate) fn grid_epoch(every: Duration) -> Instant {
    let now = Instant::now();
    let mono = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let mono = Duration::new(
        u64::try_from(mono.tv_sec).unwrap_or(0),
        u32::try_from(mono.tv_nsec).unwrap_or(0),
    );
    let half = every / 2;
    // The first tick after now: half an interval after a count instant.
    let tick = logos_session::count_instant_after(mono.saturating_sub(half), every) + half;
    now + tick.saturating_sub(mono)
}

/// The first beat of the core's shared grid (`epoch` + k × `every`) after `now`.
///
/// Every heartbeat falls on the same ticks (the local modules' task above, and each remote
/// module's), so the core wakes once per beat for all of its modules, and their pongs
/// arrive together (one `epoll_wait` returns many), instead of once per module spread over
/// the second.
pub(crate) fn next_beat(epoch: Instant, every: Duration, now: Instant) -> Instant {
    let every_ns = every.as_nanos().max(1);
    let ticks = now.saturating_duration_since(epoch).as_nanos() / every_ns + 1;
    u64::try_from(ticks * every_ns)
        .ok()
        .and_then(|ns| epoch.checked_add(Duration::from_nanos(ns)))
        .unwrap_or(now + every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_ticks_half_an_interval_after_the_modules_count() {
        let every = Duration::from_millis(1000);
        let epoch = grid_epoch(every);
        let now = Instant::now();
        let mono = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let mono_ms = i128::from(mono.tv_sec) * 1000 + i128::from(mono.tv_nsec) / 1_000_000;
        // The epoch on the monotonic clock, in ms; a tick is the epoch plus whole intervals.
        let epoch_ms = mono_ms + (epoch.saturating_duration_since(now).as_millis() as i128)
            - (now.saturating_duration_since(epoch).as_millis() as i128);
        let phase = epoch_ms.rem_euclid(1000);
        assert!(
            (498..=502).contains(&phase),
            "ticks at {phase} ms past the modules' count"
        );
        assert!(epoch <= now + every, "{epoch:?} {now:?}");
    }

    #[test]
    fn heartbeats_fall_on_the_shared_grid_strictly_after_now() {
        let epoch = Instant::now();
        let every = Duration::from_secs(1);
        let at = |ms| epoch + Duration::from_millis(ms);
        assert_eq!(next_beat(epoch, every, epoch), at(1000));
        assert_eq!(next_beat(epoch, every, at(1)), at(1000));
        assert_eq!(next_beat(epoch, every, at(999)), at(1000));
        assert_eq!(next_beat(epoch, every, at(1000)), at(2000));
        // A task that woke late: the next tick, not one interval after it woke.
        assert_eq!(next_beat(epoch, every, at(3001)), at(4000));
        // Modules started at different moments share the ticks.
        assert_eq!(
            next_beat(epoch, every, at(5123)),
            next_beat(epoch, every, at(5987))
        );
    }
}
