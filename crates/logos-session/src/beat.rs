//! The heartbeat page: a module proves its event loop turns by counting in a page of memory
//! the core reads, instead of answering a `ping` on its control connection each interval
//! (docs/architecture.md "Heartbeat", docs/performance.md "Twenty-first step").
//!
//! Owns the page's two ends: [`BeatWatch`] (the core's: it makes the memory file, seals it,
//! maps it read-only and reads the count) and [`Beater`] (the module's: it checks the file it
//! inherited and counts). Never decides what a still count means (the core's heartbeat does),
//! when to count (the SDK does), or how the descriptor reaches the module (the core's spawn).
//!
//! # Layout
//!
//! One page (4096 bytes) of a memfd sealed against shrinking, growing and further sealing
//! before the module sees it. Its first 8 bytes are a native-endian count the module raises by
//! one each interval while it is healthy; nothing else in the page means anything.
//!
//! # What the page can and cannot do
//!
//! The count is the module's word that its event loop ran a timer task, worth exactly what an
//! answered `ping` is worth: a module can keep counting while it is useless, as it could keep
//! answering pings. The core only ever loads the count (its mapping is read-only and the file
//! cannot shrink under it, so the module cannot make the core fault), and each module has a
//! page of its own, so a module can vouch for no one but itself.

use crate::shm::Map;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::ProtFlags;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The page's size.
const PAGE: usize = 4096;

/// The first instant after `now` at which modules count, both read on the monotonic clock
/// (since its origin): the multiples of `every`. The core reads half an interval after them.
///
/// Why shared instants: the modules of a core (and of a machine) then wake at once and run one
/// after the other, on code and kernel paths the first of them brought into the caches. Each
/// on a phase of its own, 100 idle modules cost a third more CPU than when the core's pings
/// woke them together (docs/performance.md, "Twenty-first step").
pub fn count_instant_after(now: Duration, every: Duration) -> Duration {
    let every_ns = every.as_nanos().max(1);
    let next = (now.as_nanos() / every_ns + 1) * every_ns;
    Duration::from_nanos(u64::try_from(next).unwrap_or(u64::MAX))
}

/// The core's end of a module's heartbeat page.
pub struct BeatWatch {
    map: Map,
}

impl BeatWatch {
    /// A new page and the descriptor to hand the module (close-on-exec set: the spawn moves
    /// it to the module's descriptor number).
    ///
    /// # Errors
    /// The OS error of making, sizing, sealing or mapping the file (`EMFILE`, `ENOMEM`, …).
    pub fn create() -> io::Result<(BeatWatch, OwnedFd)> {
        let fd = rustix::fs::memfd_create(
            c"logos-beat",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, PAGE as u64)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        let map = Map::with(&fd, PAGE, ProtFlags::READ)?;
        Ok((BeatWatch { map }, fd))
    }

    /// The module's count now.
    pub fn count(&self) -> u64 {
        self.map.counter().load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for BeatWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeatWatch")
            .field("count", &self.count())
            .finish()
    }
}

/// The module's end of its heartbeat page.
pub struct Beater {
    map: Map,
}

impl Beater {
    /// Maps the page the module inherited, after checking it is one: a memfd of one page,
    /// sealed against shrinking.
    ///
    /// # Errors
    /// A message naming what is wrong with the descriptor; the module then answers pings
    /// instead.
    pub fn open(fd: OwnedFd) -> Result<Beater, String> {
        let size = crate::shm::sealed_size(&fd, "the heartbeat page")?;
        if size != PAGE as i64 {
            return Err(format!("the heartbeat page holds {size} bytes, not {PAGE}"));
        }
        let map = Map::with(&fd, PAGE, ProtFlags::READ | ProtFlags::WRITE)
            .map_err(|e| format!("cannot map the heartbeat page: {e}"))?;
        Ok(Beater { map })
    }

    /// Counts one beat.
    pub fn beat(&self) {
        self.map.counter().fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Beater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Beater").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn beats_fall_on_the_multiples_of_the_interval_strictly_after_now() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(count_instant_after(ms(0), s(1)), s(1));
        assert_eq!(count_instant_after(ms(999), s(1)), s(1));
        assert_eq!(count_instant_after(s(1), s(1)), s(2));
        assert_eq!(count_instant_after(ms(12_345), ms(100)), ms(12_400));
        assert_eq!(
            count_instant_after(s(5), Duration::ZERO),
            s(5) + Duration::from_nanos(1)
        );
    }

    #[test]
    fn beats_counted_by_the_module_are_seen_by_the_core() -> TestResult {
        let (watch, fd) = BeatWatch::create()?;
        let beater = Beater::open(fd)?;
        assert_eq!(watch.count(), 0);
        beater.beat();
        beater.beat();
        assert_eq!(watch.count(), 2);
        Ok(())
    }

    #[test]
    fn the_page_cannot_be_shrunk_under_the_core() -> TestResult {
        let (watch, fd) = BeatWatch::create()?;
        assert!(rustix::fs::ftruncate(&fd, 0).is_err());
        assert!(rustix::fs::ftruncate(&fd, 2 * PAGE as u64).is_err());
        assert!(rustix::fs::fcntl_add_seals(&fd, SealFlags::WRITE).is_err());
        assert_eq!(watch.count(), 0);
        Ok(())
    }

    #[test]
    fn a_descriptor_that_is_not_a_sealed_page_is_refused_with_its_fault() -> TestResult {
        let (a, _b) = std::os::unix::net::UnixStream::pair()?;
        let e = Beater::open(a.into()).err().ok_or("a socket was taken")?;
        assert!(e.contains("not a memfd"), "{e}");

        let unsealed = rustix::fs::memfd_create(c"t", MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&unsealed, PAGE as u64)?;
        let e = Beater::open(unsealed)
            .err()
            .ok_or("an unsealed file was taken")?;
        assert!(e.contains("not sealed"), "{e}");

        let big = rustix::fs::memfd_create(c"t", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        rustix::fs::ftruncate(&big, 2 * PAGE as u64)?;
        rustix::fs::fcntl_add_seals(&big, SealFlags::SHRINK)?;
        let e = Beater::open(big).err().ok_or("a two-page file was taken")?;
        assert!(e.contains("8192 bytes"), "{e}");
        Ok(())
    }
}
