//! Whether a polling thread has a CPU to itself, judged from its yields, and the move to
//! another CPU when it has not.
//!
//! A poll loop gives the CPU away (`sched_yield`) between reads that find nothing. With a CPU
//! of its own the yield comes back at once (a few hundred ns: the system call). When another
//! runnable thread shares the CPU the yield runs that thread first and takes microseconds.
//! That thread is often the very peer the loop waits for. When a message wakes a module,
//! the scheduler may put it on its waker's CPU (here it always did: on this 2-vCPU machine
//! every wake-up of a module landed on its waker's CPU, the other one idle or not), and two
//! threads that never sleep are then seldom pulled apart (each has always just run, so the
//! load balancer finds moving either one too costly). The two then take turns on one CPU, a
//! context switch per message, while the other CPU idles: a module → module round trip took
//! 6.0–6.3 µs so, and 4.8–4.9 µs once the two ran on two CPUs (docs/performance.md,
//! eighteenth step).
//!
//! Blocking instead, to let the wake-up place the thread anew, did not help: the wake-up put
//! it back on its waker's CPU, and the round trip took 6.9–7.4 µs. So the thread moves
//! itself: it narrows its CPU affinity to the other CPUs it may use, which makes the kernel
//! migrate it at once, and puts the affinity back as it was. The operator's placement
//! (`taskset`, a cpuset) is kept: only CPUs the thread was already allowed are used, a thread
//! allowed one CPU never moves, and the mask is restored right away. A move is at most one
//! per [`MOVE_PAUSE`], so a machine whose every CPU is busy costs a few system calls a
//! second, not a migration per turn. The reader lets only the side of a connection that
//! connected move: both sides of a pair on one CPU see their yields run the other, and if
//! both moved they would land together again.
//!
//! Owns the judgement and the move; the poll loop decides when to ask. Never sleeps; reads
//! the clock once per yield.

use std::time::{Duration, Instant};

/// A yield at least this long ran another thread first: the system call alone takes a few
/// hundred nanoseconds, a turn of another thread (two context switches and its work) longer.
pub(crate) const LONG_YIELD: Duration = Duration::from_micros(1);

/// Consecutive long yields that mean the CPU is shared, not merely that the hypervisor or an
/// interrupt took it once.
pub(crate) const SHARED_AFTER: u32 = 3;

/// The least time between two moves of one thread.
pub(crate) const MOVE_PAUSE: Duration = Duration::from_millis(10);

/// The yields of one poll loop: how many in a row ran another thread first, the verdict, and
/// the last move.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SharedCpu {
    long_in_a_row: u32,
    shared: bool,
    moved_at: Option<Instant>,
}

impl SharedCpu {
    /// Yields the CPU and judges the yield. `before` is the caller's clock reading just
    /// before (the poll loop reads the clock anyway, to know whether its window is over).
    pub(crate) fn yield_now(&mut self, before: Instant) {
        std::thread::yield_now();
        self.judge(before.elapsed());
    }

    /// `true` once after this yield and the [`SHARED_AFTER`]` - 1` before it each ran another
    /// thread first: the CPU is shared.
    pub(crate) fn take_shared(&mut self) -> bool {
        std::mem::take(&mut self.shared)
    }

    /// Moves this thread to another CPU it may run on and leaves its affinity as it was.
    /// `false` when it did not move: it may run on one CPU only, it moved less than
    /// [`MOVE_PAUSE`] ago, or the system refused.
    pub(crate) fn move_off(&mut self) -> bool {
        let now = Instant::now();
        if self
            .moved_at
            .is_some_and(|at| now.saturating_duration_since(at) < MOVE_PAUSE)
        {
            return false;
        }
        let Ok(allowed) = rustix::thread::sched_getaffinity(None) else {
            return false;
        };
        let here = rustix::thread::sched_getcpu();
        if allowed.count() < 2 || !allowed.is_set(here) {
            return false;
        }
        self.moved_at = Some(now);
        let mut elsewhere = allowed;
        elsewhere.unset(here);
        // The kernel migrates a thread whose CPU leaves its mask before the call returns.
        let moved = rustix::thread::sched_setaffinity(None, &elsewhere).is_ok();
        let restored = rustix::thread::sched_setaffinity(None, &allowed);
        if let Err(e) = restored {
            tracing::warn!("could not restore this thread's CPU affinity after a move: {e}");
        }
        moved
    }

    /// Counts a yield that took `took`.
    fn judge(&mut self, took: Duration) {
        if took < LONG_YIELD {
            self.long_in_a_row = 0;
            return;
        }
        self.long_in_a_row += 1;
        if self.long_in_a_row >= SHARED_AFTER {
            self.long_in_a_row = 0;
            self.shared = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::thread::{CpuSet, sched_getaffinity, sched_getcpu, sched_setaffinity};

    const SHORT: Duration = Duration::from_nanos(300);
    const LONG: Duration = Duration::from_micros(4);

    #[test]
    fn only_long_yields_in_a_row_mean_a_shared_cpu() {
        let mut cpu = SharedCpu::default();
        // A long yield now and then (an interrupt, the hypervisor) is not sharing.
        for took in [LONG, LONG, SHORT, LONG, SHORT, SHORT, LONG, LONG, SHORT] {
            cpu.judge(took);
            assert!(!cpu.take_shared(), "after {took:?}");
        }
        cpu.judge(LONG);
        cpu.judge(LONG);
        assert!(!cpu.shared);
        cpu.judge(LONG);
        // The verdict stays until taken, through short yields, and is given once.
        cpu.judge(SHORT);
        assert!(cpu.take_shared(), "three long yields in a row");
        assert!(!cpu.take_shared());
        // Counted afresh after the verdict.
        cpu.judge(LONG);
        cpu.judge(LONG);
        assert!(!cpu.take_shared());
        cpu.judge(LONG);
        assert!(cpu.take_shared());
    }

    /// Runs `f` on a thread of its own, so the affinity it changes is that thread's.
    fn on_a_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().expect("the test thread ends")
    }

    #[test]
    fn a_yield_beside_a_busy_thread_on_the_same_cpu_is_long() {
        let shared = on_a_thread(|| {
            // This thread and a spinner pinned to one CPU: each yield runs the spinner first.
            let mut one = CpuSet::new();
            one.set(sched_getcpu());
            sched_setaffinity(None, &one).expect("pin the test thread");
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let spinner = {
                let stop = std::sync::Arc::clone(&stop);
                std::thread::spawn(move || {
                    sched_setaffinity(None, &one).expect("pin the spinner");
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            };
            let mut cpu = SharedCpu::default();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut shared = false;
            while !shared && Instant::now() < deadline {
                cpu.yield_now(Instant::now());
                shared = cpu.take_shared();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            spinner.join().expect("the spinner ends");
            shared
        });
        assert!(
            shared,
            "a CPU shared with a spinning thread was never seen as shared"
        );
    }

    #[test]
    fn a_move_changes_the_cpu_and_keeps_the_affinity() {
        let (allowed, attempts, again) = on_a_thread(|| {
            let allowed = sched_getaffinity(None).expect("read the affinity");
            // (CPU before, moved, CPU after, affinity after) for a few fresh moves: the
            // scheduler may move the thread itself between a reading and the move.
            let attempts: Vec<_> = (0..3)
                .map(|_| {
                    let before = sched_getcpu();
                    let moved = SharedCpu::default().move_off();
                    let after = sched_getcpu();
                    (
                        before,
                        moved,
                        after,
                        sched_getaffinity(None).expect("read it again"),
                    )
                })
                .collect();
            // Within the pause, a second move of the same loop is refused.
            let mut cpu = SharedCpu::default();
            cpu.move_off();
            (allowed, attempts, cpu.move_off())
        });
        assert!(!again, "a second move within {MOVE_PAUSE:?}");
        for (_, moved, after, kept) in &attempts {
            assert_eq!(*kept, allowed, "the affinity is restored");
            assert!(allowed.is_set(*after), "only to a CPU it was allowed");
            assert_eq!(
                *moved,
                allowed.count() >= 2,
                "moves if allowed more than one CPU"
            );
        }
        if allowed.count() >= 2 {
            assert!(
                attempts.iter().any(|(before, _, after, _)| before != after),
                "no move changed the CPU: {attempts:?}"
            );
        }
    }

    #[test]
    fn a_thread_allowed_one_cpu_stays() {
        let (moved, stayed) = on_a_thread(|| {
            let mut one = CpuSet::new();
            let here = sched_getcpu();
            one.set(here);
            sched_setaffinity(None, &one).expect("pin the test thread");
            let moved = SharedCpu::default().move_off();
            (moved, sched_getcpu() == here)
        });
        assert!(!moved);
        assert!(stayed);
    }
}
