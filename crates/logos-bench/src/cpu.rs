//! CPU time spent by processes and by the calling thread, so that a waiting strategy shows
//! what it costs: a busy-polling exchange can beat a blocking one on latency while burning a
//! CPU, and the report must say both.
//!
//! Owns reading `/proc` (`schedstat`: nanoseconds on a CPU, per thread). Not
//! `logos_core::process_usage`'s `cpu_time` on purpose: that comes from `/proc/PID/stat` in
//! clock ticks (10 ms here), too coarse for a loop of a few hundred milliseconds divided
//! into microseconds per call. Never measures wall
//! time and never fails a row: a figure that cannot be read is `None`. Threads that exit
//! between two readings take their time with them, which only matters for short-lived
//! threads (none of the measured loops start any).

use std::path::Path;

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

/// Nanoseconds on a CPU of all of `pids` together; `None` when any cannot be read.
pub fn processes_ns(pids: &[u32]) -> Option<u64> {
    pids.iter()
        .try_fold(0u64, |sum, &pid| Some(sum.saturating_add(process_ns(pid)?)))
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
        assert_eq!(processes_ns(&[u32::MAX]), None);
    }
}
