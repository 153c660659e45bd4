//! CPU time spent by processes and by the calling thread, so that a waiting strategy shows
//! what it costs: a busy-polling exchange can beat a blocking one on latency while burning a
//! CPU, and the report must say both.
//!
//! Owns reading `/proc` (`schedstat`: nanoseconds on a CPU, per thread). Not
//! `logos_core::process_usage`'s `cpu_time` on purpose: that comes from `/proc/PID/stat` in
//! clock ticks (10 ms here), too coarse for a loop of a few hundred milliseconds divided
//! into microseconds per call. Never measures wall
//! time and never fails a row: a figure that cannot be read is `None`. Across several
//! processes, [`Snapshot`] compares thread by thread: a thread that exits between two
//! readings (a tokio blocking-pool thread timing out, say) loses only its time since the
//! first, where a difference of sums would subtract its whole past and could read as zero.

use std::collections::HashMap;
use std::path::Path;

/// CPU time of every live thread of a set of processes at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(HashMap<(u32, u32), u64>);

impl Snapshot {
    /// Every live thread of `pids`; `None` when a process cannot be read (it exited).
    pub fn of(pids: &[u32]) -> Option<Snapshot> {
        let mut threads = HashMap::new();
        for &pid in pids {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
            for task in tasks.flatten() {
                let tid = task
                    .file_name()
                    .to_str()
                    .and_then(|t| t.parse::<u32>().ok());
                let ns = schedstat_ns(&task.path().join("schedstat"));
                if let (Some(tid), Some(ns)) = (tid, ns) {
                    threads.insert((pid, tid), ns);
                }
            }
        }
        Some(Snapshot(threads))
    }

    /// Nanoseconds on a CPU since `earlier`: each thread's growth, a thread born since
    /// counted whole, one gone since not at all.
    pub fn since(&self, earlier: &Snapshot) -> u64 {
        self.0
            .iter()
            .map(|(k, &ns)| ns.saturating_sub(earlier.0.get(k).copied().unwrap_or(0)))
            .fold(0u64, u64::saturating_add)
    }
}

/// Nanoseconds on a CPU of every live thread of `pid`.
pub fn process_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    let mut read_any = false;
    for task in tasks.flatten() {
        if let Some(ns) = schedstat_ns(&task.path().join("schedstat")) {
            total = total.saturating_add(ns);
            read_any = true;
        }
    }
    read_any.then_some(total)
}

/// Nanoseconds on a CPU of this whole process, threads that exited included, up to this
/// instant (`CLOCK_PROCESS_CPUTIME_ID`). For this process a `schedstat` file is stale: the
/// kernel adds a running thread's time to it only at a scheduler tick or a switch, so a
/// reading taken right after some work can leave that work out and hand it to the next
/// reading.
pub fn own_process_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Nanoseconds on a CPU of the calling thread.
pub fn thread_ns() -> Option<u64> {
    schedstat_ns(Path::new("/proc/thread-self/schedstat"))
}

/// The first field of a `schedstat` file: time spent on a CPU, in nanoseconds.
fn schedstat_ns(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spins until this thread has spent `ms` more of CPU time.
    fn spin_cpu(ms: u64) {
        let start = thread_ns().expect("schedstat");
        let mut x = 0u64;
        while thread_ns().expect("schedstat") - start < ms * 1_000_000 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    #[test]
    fn a_snapshot_ignores_threads_that_exit_instead_of_subtracting_their_past() {
        let me = std::process::id();
        let (ready, go) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let (ready_tx, ready_rx) = ready;
        let (go_tx, go_rx) = go;
        let worker = std::thread::spawn(move || {
            spin_cpu(60);
            ready_tx.send(()).expect("ready");
            go_rx.recv().expect("go");
        });
        ready_rx.recv().expect("worker spun");
        let before = Snapshot::of(&[me]).expect("snapshot");
        let summed_before = process_ns(me).expect("sum");
        go_tx.send(()).expect("go");
        worker.join().expect("worker");
        spin_cpu(20);
        let after = Snapshot::of(&[me]).expect("snapshot");
        let summed_after = process_ns(me).expect("sum");
        let spent = after.since(&before);
        assert!(
            spent >= 20_000_000,
            "the 20 ms spun between the snapshots: {spent} ns"
        );
        assert!(
            summed_after.saturating_sub(summed_before) < spent,
            "a difference of sums loses the exited thread's 60 ms"
        );
        assert!(Snapshot::of(&[u32::MAX]).is_none());
    }

    #[test]
    fn this_process_is_seen_spending_cpu_up_to_the_instant() {
        let before = own_process_ns().expect("process CPU clock");
        spin_cpu(5);
        let spent = own_process_ns().expect("process CPU clock") - before;
        // The process clock counts at least this thread's time, which `schedstat` (never
        // ahead of the truth) saw reach 5 ms.
        assert!(spent >= 5_000_000, "{spent} ns");
    }

    #[test]
    fn a_spinning_thread_is_seen_spending_cpu() {
        let before = thread_ns().expect("schedstat of this thread");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let spent = thread_ns().expect("schedstat") - before;
        assert!(spent > 0, "{spent}");
        let me = process_ns(std::process::id()).expect("this process");
        assert!(me >= spent, "{me} < {spent}");
        assert_eq!(process_ns(u32::MAX), None);
    }
}
