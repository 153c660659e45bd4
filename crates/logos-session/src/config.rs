//! [`Config`]: the tunables of one connection, each default documented on its field.
//!
//! Owns only numbers. Never opens a socket or spawns a task; the rest of the crate reads these
//! values when a connection starts.

use crate::Traffic;
use std::sync::Arc;
use std::time::Duration;

/// Tunables of one connection. Every default is documented on its field.
///
/// `Config` is `#[non_exhaustive]`: start from [`Config::default`] and assign the fields you
/// want to change.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let mut config = logos_session::Config::default();
/// config.handshake_timeout = Duration::from_secs(1);
/// assert_eq!(config.max_calls_in_flight, 1024);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame accepted (default 16 MiB). A bigger one closes the connection with `limit`.
    pub max_frame: usize,
    /// Largest `hello` (on [`read_hello`](crate::read_hello)) or `welcome` (on
    /// [`connect`](crate::connect)) accepted, before the peer is authenticated (default 64 KiB,
    /// [`logos_wire::MAX_HANDSHAKE_FRAME`]). A bigger one is refused with `limit` as soon as
    /// its length prefix arrives, so an unauthenticated peer never makes this side reserve
    /// more than this, nor decode more than this into values. Raise it only where the peer is
    /// authenticated by other means (the core does, for a module's inherited control
    /// connection, whose `hello` carries the module's interface).
    pub max_handshake_frame: usize,
    /// Incoming calls allowed to run at once (default 1024); more fail with `limit`.
    pub max_calls_in_flight: usize,
    /// Events queued for the peer before newer ones are dropped and counted in a `lagged`
    /// notice (default 1024).
    pub event_queue: usize,
    /// Bytes of encoded events queued for the peer before newer ones are dropped and counted
    /// in a `lagged` notice (default 16 MiB). An event is queued while it fits this budget, or
    /// when no event is queued at all (so one event up to `max_frame` always gets through).
    /// Bounds a slow reader's memory in bytes, where `event_queue` bounds it in events.
    pub event_queue_bytes: usize,
    /// Initial credit per stream and direction (default 256 KiB, the protocol's
    /// [`logos_wire::credit::DEFAULT_WINDOW`]). Both peers must use the same value: each side
    /// assumes the other starts with exactly this much credit.
    pub stream_window: u64,
    /// Time allowed for `hello`/`welcome` (default 5 s). Also bounds how long a closing
    /// connection keeps trying to flush its final `error` frame to a peer that does not read.
    pub handshake_timeout: Duration,
    /// Deadline for incoming calls that carry `timeout_ms = 0` (default 30 s).
    pub default_call_timeout: Duration,
    /// Streams open at once on this connection (default 1024). A `stream_open` from the peer
    /// beyond this is answered with `stream_reset` code `limit`.
    pub max_streams: usize,
    /// How long the reader keeps polling the socket after a call, a reply or a stream's data
    /// or credit went by, before it goes to sleep until the kernel wakes it (default 50 µs;
    /// zero turns polling off).
    ///
    /// Waking a sleeping process costs more than a whole call on many machines (an idle CPU
    /// of a virtual machine takes tens of µs to wake), and after a call or a reply the next
    /// one usually follows within microseconds: a caller waits for its answer, a callee gets
    /// the caller's next call. Polling briefly catches it without that wake-up. It costs at
    /// most this much CPU after each burst of traffic, never on idle connections or on
    /// events; between polls the thread yields to other tasks and to other
    /// processes on the same CPU. A module's reader whose yields keep running another
    /// thread (often the peer it polls for, placed on the same CPU) moves its thread to
    /// another CPU it is allowed, at most once per 10 ms, and leaves its affinity as it was
    /// (`shared_cpu.rs`).
    pub busy_poll: Duration,
    /// Where this connection counts its streams and stream bytes (default none). Give the
    /// connections of one process the same [`Traffic`] to get that process's totals.
    pub traffic: Option<Arc<Traffic>>,
    /// Frames whose body is at least this many bytes (and at most half the ring, 2 MiB) go
    /// through shared memory instead of the socket, on a Unix connection whose peer announced
    /// it takes them (docs/protocol.md §2.1): the body is copied into this connection's ring
    /// of shared memory (4 MiB, made at the first such frame) and the socket carries a 4-byte
    /// prefix; the peer copies it out. `None` neither announces nor sends them. Default
    /// 64 KiB, from where it measured faster (docs/performance.md, "Seventh step"); the
    /// environment variable `LOGOS_SHM` (`off`, or a size in bytes) sets the default of every
    /// connection of a process, and the core passes it on to the modules it starts.
    pub shared_min: Option<usize>,
}

/// The default [`Config::shared_min`].
pub const DEFAULT_SHARED_MIN: usize = 64 * 1024;

/// [`Config::shared_min`]'s default: `LOGOS_SHM` (`off`/`0`, or bytes), read once per process;
/// a value that is neither is ignored with a warning.
fn default_shared_min() -> Option<usize> {
    static FROM_ENV: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *FROM_ENV.get_or_init(|| match std::env::var("LOGOS_SHM") {
        Err(_) => Some(DEFAULT_SHARED_MIN),
        Ok(v) if v == "off" || v == "0" => None,
        Ok(v) => match v.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                tracing::warn!(
                    "LOGOS_SHM={v:?} is neither `off` nor a size in bytes; using {DEFAULT_SHARED_MIN}"
                );
                Some(DEFAULT_SHARED_MIN)
            }
        },
    })
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame: logos_wire::codec::DEFAULT_MAX_FRAME,
            max_handshake_frame: logos_wire::MAX_HANDSHAKE_FRAME,
            max_calls_in_flight: 1024,
            event_queue: 1024,
            event_queue_bytes: 16 * 1024 * 1024,
            stream_window: logos_wire::credit::DEFAULT_WINDOW,
            handshake_timeout: Duration::from_secs(5),
            default_call_timeout: Duration::from_secs(30),
            max_streams: 1024,
            busy_poll: Duration::from_micros(50),
            traffic: None,
            shared_min: default_shared_min(),
        }
    }
}
