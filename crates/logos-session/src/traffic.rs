//! [`Traffic`]: counters of what the connections of one process carry, for its own figures
//! (a module's `$stats`).
//!
//! Owns four relaxed atomic counters shared by every connection configured with the same
//! [`Traffic`] (see [`Config::traffic`](crate::Config::traffic)): byte streams opened and
//! closed, and stream payload bytes read and written. Never locks, never allocates per
//! message and never decides anything: the session adds, the owner reads.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by the connections of one process. Cheap to update (one relaxed atomic
/// add per stream open, close, read or write).
#[derive(Debug, Default)]
pub struct Traffic {
    opened: AtomicU64,
    closed: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// What [`Traffic::read`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrafficFigures {
    /// Byte streams opened so far, by either side.
    pub streams_opened: u64,
    /// Byte streams open now (opened and not yet dropped).
    pub streams_open: u64,
    /// Stream payload bytes read by this side.
    pub bytes_in: u64,
    /// Stream payload bytes written by this side (accepted by the connection).
    pub bytes_out: u64,
}

impl Traffic {
    pub(crate) fn stream_opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stream_closed(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn wrote(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn figures(&self) -> TrafficFigures {
        let opened = self.opened.load(Ordering::Relaxed);
        let closed = self.closed.load(Ordering::Relaxed);
        TrafficFigures {
            streams_opened: opened,
            streams_open: opened.saturating_sub(closed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}
