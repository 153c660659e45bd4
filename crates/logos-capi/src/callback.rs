//! The delivery queue: every callback the application registered is queued here and called only
//! from `logos_core_process_events` (what is queued now, without blocking) or `logos_core_exec`
//! (blocking until cleanup or an exit request), on the thread that calls them. Single-threaded
//! hosts (Node, Python) are therefore safe: their callbacks never run on one of our threads.
//!
//! Owns the queue, the exit request and the "core went away" epoch that end `exec`, [`Reply`]
//! (a call's callback, delivered exactly once) and [`forward`] (one event listener). Bounds:
//! events waiting for delivery are capped per core ([`EVENTS_WAITING`]); when the application
//! does not drain fast enough, the core's own bounded subscription queue drops events and the
//! listener gets one `limit:` callback saying how many. Call results are not capped here: there
//! is exactly one per call the application made. Never calls the core and never holds the queue
//! lock while the application's code runs (a callback may call any `logos_core_*` function,
//! including `logos_core_process_events`).

use crate::error::{Error, c_message};
use crate::params;
use crate::strings::Callback;
use logos::{Notification, Subscription, Value};
use std::collections::VecDeque;
use std::ffi::{CString, c_int};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Events that may wait for delivery at once, per core; past this, listeners wait and the
/// core's per-listener queue (1024) absorbs, then drops and counts.
pub(crate) const EVENTS_WAITING: usize = 4096;

/// One callback waiting for delivery.
struct Pending {
    cb: Callback,
    result: c_int,
    message: CString,
    /// Held by events: returns its slot of [`EVENTS_WAITING`] when delivered.
    _slot: Option<OwnedSemaphorePermit>,
}

#[derive(Default)]
struct State {
    items: VecDeque<Pending>,
    /// Incremented when the core goes away (cleanup, or stopped from outside): ends `exec`.
    epoch: u64,
    /// Set by `logos_core_exit`; taken by `exec`.
    exit: Option<c_int>,
}

/// The process-wide queue (it outlives every core: failures of calls made before start or
/// during cleanup are delivered through it too).
pub(crate) struct Queue {
    state: Mutex<State>,
    ready: Condvar,
}

/// The one queue.
pub(crate) static QUEUE: Queue = Queue {
    state: Mutex::new(State {
        items: VecDeque::new(),
        epoch: 0,
        exit: None,
    }),
    ready: Condvar::new(),
};

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every panic point (plain pushes and pops).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, p: Pending) {
        self.lock().items.push_back(p);
        self.ready.notify_all();
    }

    /// Queues `cb(result, message)`.
    pub(crate) fn send(&self, cb: Callback, result: c_int, message: &str) {
        self.push(Pending {
            cb,
            result,
            message: c_message(message),
            _slot: None,
        });
    }

    /// Delivers what is queued now (not what those callbacks queue in turn); returns how many.
    pub(crate) fn process(&self) -> usize {
        let n = self.lock().items.len();
        let mut delivered = 0;
        while delivered < n {
            let Some(p) = self.lock().items.pop_front() else {
                break;
            };
            p.cb.invoke(p.result, &p.message);
            delivered += 1;
        }
        delivered
    }

    /// The current epoch, captured by `exec` before it waits.
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Delivers callbacks as they come until an exit request (returns its code) or until the
    /// core goes away after `epoch` was read (returns 0).
    pub(crate) fn exec(&self, epoch: u64) -> c_int {
        loop {
            let next = {
                let mut s = self.lock();
                loop {
                    if let Some(code) = s.exit.take() {
                        return code;
                    }
                    if s.epoch != epoch {
                        return 0;
                    }
                    if let Some(p) = s.items.pop_front() {
                        break p;
                    }
                    s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
                }
            };
            next.cb.invoke(next.result, &next.message);
        }
    }

    /// Makes a running `exec` (or the next one) return `code`.
    pub(crate) fn request_exit(&self, code: c_int) {
        self.lock().exit = Some(code);
        self.ready.notify_all();
    }

    /// The core went away: every `exec` waiting on an older epoch returns; a pending exit
    /// request is dropped.
    pub(crate) fn end_epoch(&self) {
        let mut s = self.lock();
        s.epoch += 1;
        s.exit = None;
        drop(s);
        self.ready.notify_all();
    }
}

/// A call's callback: delivered exactly once, with the outcome given to [`Reply::send`] or
/// [`Reply::fail`], or, if the call is dropped unfinished (the core was cleaned up under it),
/// with a failure saying so.
pub(crate) struct Reply {
    cb: Option<Callback>,
    what: String,
}

impl Reply {
    /// `what` names the operation for the cleaned-up message, e.g. `"the call chat.send"`.
    pub(crate) fn new(cb: Option<Callback>, what: impl Into<String>) -> Reply {
        Reply {
            cb,
            what: what.into(),
        }
    }

    /// Names the operation once its arguments are known.
    pub(crate) fn set_what(&mut self, what: impl Into<String>) {
        self.what = what.into();
    }

    /// Delivers a call's outcome: `1` and the result as JSON, or `0` and `"<code>: …"`.
    pub(crate) fn send(mut self, outcome: Result<Value, Error>) {
        if let Some(cb) = self.cb.take() {
            match outcome {
                Ok(v) => QUEUE.send(cb, 1, &params::result_json(&v)),
                Err(e) => QUEUE.send(cb, 0, &e.text()),
            }
        }
    }

    /// Delivers a failure.
    pub(crate) fn fail(mut self, e: &Error) {
        if let Some(cb) = self.cb.take() {
            QUEUE.send(cb, 0, &e.text());
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(cb) = self.cb.take() {
            let e = Error::CleanedUp {
                what: std::mem::take(&mut self.what),
            };
            QUEUE.send(cb, 0, &e.text());
        }
    }
}

/// Feeds one event listener: each event of `sub` becomes `cb(1, {"event","data"})`; events the
/// core dropped because delivery lagged become one `cb(0, "limit: …")`. Ends when the core
/// shuts down (the subscription closes) or the runtime is dropped.
///
/// # Cancel safety
/// Cancel safe: an event taken from `sub` is queued before the next await.
pub(crate) async fn forward(
    mut sub: Subscription,
    cb: Callback,
    slots: Arc<Semaphore>,
    source: String,
    event: String,
) {
    while let Some(n) = sub.recv().await {
        // Wait for room: while the application does not drain, events back up into the core's
        // bounded subscription queue, which drops and counts (reported below).
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (result, message) = match n {
            Notification::Event { event, data, .. } => (1, params::event_json(&event, &data)),
            Notification::Lagged { dropped } => {
                let which = if event.is_empty() { "*" } else { &event };
                (
                    0,
                    format!(
                        "{}: {dropped} events of {source}.{which} were dropped because callbacks were not delivered fast enough; call logos_core_process_events more often",
                        logos::ErrorCode::Limit
                    ),
                )
            }
            _ => continue,
        };
        QUEUE.push(Pending {
            cb,
            result,
            message: c_message(&message),
            _slot: Some(slot),
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! The queue is process-wide, so these tests use their own `Queue` values where they can
    //! and serialise on `SERIAL` where they need `QUEUE`.

    use super::*;
    use std::ffi::{CStr, c_char, c_void};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static SERIAL: Mutex<()> = Mutex::new(());

    fn queue() -> Queue {
        Queue {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
        }
    }

    type Seen = Mutex<Vec<(c_int, String)>>;

    unsafe extern "C" fn record(result: c_int, message: *const c_char, user_data: *mut c_void) {
        // SAFETY: tests pass a &Seen and a valid message.
        let (seen, msg) = unsafe {
            (
                &*user_data.cast::<Seen>(),
                CStr::from_ptr(message).to_string_lossy().into_owned(),
            )
        };
        seen.lock().unwrap().push((result, msg));
    }

    fn cb(seen: &Seen) -> Callback {
        Callback::new(Some(record), std::ptr::from_ref(seen).cast_mut().cast()).unwrap()
    }

    #[test]
    fn process_delivers_in_order_on_the_calling_thread() {
        let q = queue();
        let seen = Seen::default();
        q.send(cb(&seen), 1, "a");
        q.send(cb(&seen), 0, "b");
        assert_eq!(q.process(), 2);
        assert_eq!(q.process(), 0);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(1, "a".to_owned()), (0, "b".to_owned())]
        );
    }

    #[test]
    fn exec_returns_on_exit_request_or_new_epoch() {
        let q = Arc::new(queue());
        let seen = Seen::default();
        q.send(cb(&seen), 1, "x");
        let epoch = q.epoch();
        let q2 = Arc::clone(&q);
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            q2.request_exit(7);
        });
        assert_eq!(q.exec(epoch), 7);
        t.join().unwrap();
        assert_eq!(seen.lock().unwrap().len(), 1);

        let epoch = q.epoch();
        let q2 = Arc::clone(&q);
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            q2.end_epoch();
        });
        assert_eq!(q.exec(epoch), 0);
        t.join().unwrap();
        // An exec that starts after the epoch ended returns at once.
        assert_eq!(q.exec(epoch), 0);
    }

    #[test]
    fn reply_is_delivered_exactly_once() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        QUEUE.process();
        let seen = Seen::default();
        Reply::new(Some(cb(&seen)), "the call a.b").send(Ok(Value::from(5)));
        Reply::new(Some(cb(&seen)), "the call a.b").fail(&Error::NotStarted);
        drop(Reply::new(Some(cb(&seen)), "the call a.c"));
        Reply::new(None, "no callback").send(Ok(Value::Null));
        assert_eq!(QUEUE.process(), 3);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0], (1, "5".to_owned()));
        assert_eq!(seen[1].0, 0);
        assert!(
            seen[1]
                .1
                .starts_with("unavailable: the core is not started")
        );
        assert_eq!(
            seen[2],
            (
                0,
                "unavailable: the core was cleaned up before the call a.c finished".to_owned()
            )
        );
    }

    #[test]
    fn callbacks_may_reenter_process() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        unsafe extern "C" fn reenter(_: c_int, _: *const c_char, _: *mut c_void) {
            CALLS.fetch_add(1, Ordering::SeqCst);
            QUEUE.process();
        }
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        QUEUE.process();
        let c = Callback::new(Some(reenter), std::ptr::null_mut()).unwrap();
        QUEUE.send(c, 1, "a");
        QUEUE.send(c, 1, "b");
        assert_eq!(QUEUE.process() + CALLS.load(Ordering::SeqCst), 3);
        assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    }
}
