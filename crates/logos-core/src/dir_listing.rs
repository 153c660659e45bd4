//! A directory's listing kept between module starts, read again only when the directory
//! changed ([`ListingCache`]).
//!
//! Owns when a listing may be reused; the caller says which entries it wants. Never decides
//! anything from a listing, and never keeps one it cannot prove current: what it hands out is
//! either freshly read or read after the directory's last change.
//!
//! Adding, removing or renaming an entry sets the directory's modification time, so a listing
//! read after that time stays right until the time moves again. File times come from a coarse
//! clock (one tick is a few milliseconds), so two changes within one tick can leave the same
//! time; a listing is therefore kept only once the directory's time is [`SETTLED`] in the
//! past, when no later change can still be given that same time (the rule git's index uses for
//! "racily clean" files). The directory's device and inode are part of the stamp, so a
//! directory replaced or mounted over is listed again too.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far in the past a directory's modification time must lie before its listing is kept.
pub(crate) const SETTLED: Duration = Duration::from_secs(2);

/// A directory's identity and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(dir: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(dir).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        })
    }

    /// Whether no change to the directory can still be given this stamp's time at `now`.
    fn settled(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let Ok(secs) = u64::try_from(self.mtime) else {
            return false;
        };
        let nanos = u32::try_from(self.mtime_nsec).unwrap_or(0);
        now.saturating_sub(Duration::new(secs, nanos)) >= SETTLED
    }
}

/// The last listing of one directory, with the stamp it was read under.
#[derive(Debug, Default)]
pub(crate) struct ListingCache {
    kept: Mutex<Option<(Stamp, Vec<PathBuf>)>>,
}

impl ListingCache {
    pub(crate) const fn new() -> ListingCache {
        ListingCache {
            kept: Mutex::new(None),
        }
    }

    /// `list(dir)`, or the listing kept from an earlier call when `dir` has not changed since.
    /// `now` is the current time (a parameter so tests can place it).
    pub(crate) fn get(
        &self,
        dir: &Path,
        now: SystemTime,
        list: impl FnOnce(&Path) -> Vec<PathBuf>,
    ) -> Vec<PathBuf> {
        // Stamped before listing: a change made while listing moves the time past this stamp,
        // so the next call lists again.
        let Some(stamp) = Stamp::of(dir) else {
            return list(dir);
        };
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((s, entries)) = &*kept
            && *s == stamp
        {
            return entries.clone();
        }
        let entries = list(dir);
        *kept = stamp.settled(now).then(|| (stamp, entries.clone()));
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn names(dir: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// A time well after every change these tests make.
    fn later() -> SystemTime {
        SystemTime::now() + SETTLED * 10
    }

    #[test]
    fn a_settled_directory_is_listed_once() -> TestResult {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("python3.11"))?;
        let cache = ListingCache::new();
        let lists = Cell::new(0);
        let list = |d: &Path| {
            lists.set(lists.get() + 1);
            names(d)
        };
        let first = cache.get(dir.path(), later(), list);
        let again = cache.get(dir.path(), later(), list);
        assert_eq!(first, vec![dir.path().join("python3.11")]);
        assert_eq!(again, first);
        assert_eq!(lists.get(), 1, "the second call reused the listing");
        Ok(())
    }

    #[test]
    fn a_change_is_seen_at_the_next_call() -> TestResult {
        let dir = tempfile::tempdir()?;
        let cache = ListingCache::new();
        assert!(cache.get(dir.path(), later(), names).is_empty());
        std::fs::create_dir(dir.path().join("python3.12"))?;
        // The tests run fast: make sure the change carries another time than the listing.
        let t = std::fs::metadata(dir.path())?.modified()? + Duration::from_secs(1);
        std::fs::File::open(dir.path())?.set_modified(t)?;
        assert_eq!(
            cache.get(dir.path(), later(), names),
            vec![dir.path().join("python3.12")]
        );
        std::fs::remove_dir(dir.path().join("python3.12"))?;
        std::fs::File::open(dir.path())?.set_modified(t + Duration::from_secs(1))?;
        assert!(cache.get(dir.path(), later(), names).is_empty());
        Ok(())
    }

    #[test]
    fn a_recently_changed_directory_is_listed_every_time() -> TestResult {
        let dir = tempfile::tempdir()?;
        let cache = ListingCache::new();
        let lists = Cell::new(0);
        let list = |d: &Path| {
            lists.set(lists.get() + 1);
            names(d)
        };
        // Within SETTLED of its last change, a second change could carry the same time.
        let now = SystemTime::now();
        cache.get(dir.path(), now, list);
        cache.get(dir.path(), now, list);
        assert_eq!(lists.get(), 2);
        Ok(())
    }

    #[test]
    fn a_directory_that_cannot_be_read_is_listed_by_the_caller() {
        let cache = ListingCache::new();
        let missing = Path::new("/nonexistent/logos-dir-listing");
        let out = cache.get(missing, later(), |_| vec![PathBuf::from("fallback")]);
        assert_eq!(out, vec![PathBuf::from("fallback")]);
    }
}
