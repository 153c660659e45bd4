//! The delivery queue: every callback the application registered is queued here and called only
//! from `logos_core_process_events` (what is queued now, without blocking) or `logos_core_exec`
//! (blocking until cleanup or an exit request), on the thread that calls them. Single-threaded
//! hosts (Node, Python) are therefore safe: their callbacks never run on one of our threads.
//!
//! Owns the queue, the exit request and the "core went away" epoch that end `exec`, [`Reply`]
//! (a call's callback, delivered exactly once) and [`forward`] (one event listener).
//!
//! Bounds: events waiting for delivery are capped per core by count ([`EVENTS_WAITING`]) and by
//! bytes ([`EVENT_BYTES_WAITING`], the size of the events' JSON text), through one [`Budget`].
//! An event that does not fit is dropped at once (the listener never waits, so nothing backs up
//! into the core either) and counted; the listener gets one `lagged:` callback with the count
//! just before the next event that fits. Events are kept as values and turned into JSON only
//! when delivered, on the application's thread: dropping one costs nothing, so a listener
//! keeps up with any module however slowly the application drains. Call results are not
//! capped: there is exactly one per call the application made.
//!
//! Listener lifetime: a listener's callbacks (its events, its `lagged:` notices, the failure
//! of its registration) carry the listener generation they were registered in. Cleanup starts
//! a new generation ([`Queue::forget_listeners`]): queued listener callbacks are dropped and
//! late ones from the old core's tasks are refused, so no listener callback runs after
//! cleanup, when the application may have freed its `user_data`. Call callbacks stay queued:
//! they are still delivered exactly once.
//!
//! Never calls the core and never holds the queue lock while the application's code runs (a
//! callback may call any `logos_core_*` function, including `logos_core_process_events`).

use crate::error::{Error, c_message};
use crate::params;
use crate::strings::Callback;
use logos::{Notification, Subscription, Value};
use std::collections::VecDeque;
use std::ffi::{CString, c_int};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Events that may wait for delivery at once, per core.
pub(crate) const EVENTS_WAITING: usize = 4096;

/// Bytes of events (their JSON text) that may wait for delivery at once, per core. One event
/// larger than this is still accepted when no other event waits, so any event the core can
/// carry can be delivered; memory stays below this plus one event.
pub(crate) const EVENT_BYTES_WAITING: usize = 16 * 1024 * 1024;

/// Room for events waiting for delivery: [`EVENTS_WAITING`] events and
/// [`EVENT_BYTES_WAITING`] bytes, shared by every listener of one core.
#[derive(Debug)]
pub(crate) struct Budget {
    max_events: usize,
    max_bytes: usize,
    used: Mutex<(usize, usize)>,
}

impl Budget {
    /// The budget of one core.
    pub(crate) fn new() -> Arc<Budget> {
        Budget::with_limits(EVENTS_WAITING, EVENT_BYTES_WAITING)
    }

    fn with_limits(max_events: usize, max_bytes: usize) -> Arc<Budget> {
        Arc::new(Budget {
            max_events,
            max_bytes,
            used: Mutex::new((0, 0)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, (usize, usize)> {
        // Two counters updated together: consistent under every panic point.
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Room for one event of `bytes`, or `None` when it does not fit now.
    fn take(self: &Arc<Self>, bytes: usize) -> Option<Ticket> {
        let mut used = self.lock();
        let (events, held) = *used;
        let fits = events < self.max_events
            && (events == 0 || held.saturating_add(bytes) <= self.max_bytes);
        if !fits {
            return None;
        }
        *used = (events + 1, held.saturating_add(bytes));
        Some(Ticket {
            budget: Arc::clone(self),
            bytes,
        })
    }
}

/// One event's share of a [`Budget`], given back when the event is delivered or dropped.
#[derive(Debug)]
struct Ticket {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut used = self.budget.lock();
        used.0 = used.0.saturating_sub(1);
        used.1 = used.1.saturating_sub(self.bytes);
    }
}

/// What a queued callback will be told.
enum Message {
    /// Text ready to hand over.
    Text(CString),
    /// An event, turned into `{"event","data"}` JSON when delivered.
    Event { event: String, data: Vec<Value> },
}

impl Message {
    fn into_c(self) -> CString {
        match self {
            Message::Text(t) => t,
            Message::Event { event, data } => c_message(&params::event_json(&event, &data)),
        }
    }
}

/// One callback waiting for delivery.
struct Pending {
    cb: Callback,
    result: c_int,
    message: Message,
    /// Listener callbacks: the listener generation they belong to (see the module docs).
    listener: Option<u64>,
    /// Held by events: their share of the core's [`Budget`] until delivered.
    _ticket: Option<Ticket>,
}

impl Pending {
    fn deliver(self) {
        let Pending {
            cb,
            result,
            message,
            _ticket,
            ..
        } = self;
        let message = message.into_c();
        // The event's share is given back before the application runs, so a callback that
        // drains again has room.
        drop(_ticket);
        cb.invoke(result, &message);
    }
}

#[derive(Default)]
struct State {
    items: VecDeque<Pending>,
    /// Incremented when the core goes away (cleanup, or stopped from outside): ends `exec`.
    epoch: u64,
    /// Incremented by cleanup: listener callbacks of older generations are never delivered.
    listeners: u64,
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
        listeners: 0,
        exit: None,
    }),
    ready: Condvar::new(),
};

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every panic point (plain pushes and pops).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `p`; refused (returns false, dropping it) when it belongs to an older listener
    /// generation.
    fn push(&self, p: Pending) -> bool {
        let mut s = self.lock();
        if p.listener.is_some_and(|g| g != s.listeners) {
            return false;
        }
        s.items.push_back(p);
        drop(s);
        self.ready.notify_all();
        true
    }

    /// Queues `cb(result, message)` for a call.
    pub(crate) fn send(&self, cb: Callback, result: c_int, message: &str) {
        self.push(Pending {
            cb,
            result,
            message: Message::Text(c_message(message)),
            listener: None,
            _ticket: None,
        });
    }

    /// Queues the failure of a listener's registration: a listener callback like its events,
    /// dropped by cleanup.
    pub(crate) fn listener_failed(&self, cb: Callback, e: &Error) {
        let generation = self.listener_generation();
        self.push(Pending {
            cb,
            result: 0,
            message: Message::Text(c_message(&e.text())),
            listener: Some(generation),
            _ticket: None,
        });
    }

    /// The generation new listeners belong to. Read it before looking for the running core,
    /// so a cleanup in between makes the listener's callbacks stale rather than late.
    pub(crate) fn listener_generation(&self) -> u64 {
        self.lock().listeners
    }

    /// Cleanup: drops every queued listener callback and refuses the ones still on their way.
    /// Call callbacks stay queued.
    pub(crate) fn forget_listeners(&self) {
        let mut s = self.lock();
        s.listeners += 1;
        let (keep, stale): (VecDeque<Pending>, VecDeque<Pending>) = std::mem::take(&mut s.items)
            .into_iter()
            .partition(|p| p.listener.is_none());
        s.items = keep;
        drop(s);
        // Tickets go back to their budgets outside the queue lock.
        drop(stale);
    }

    /// Delivers what is queued now (not what those callbacks queue in turn); returns how many.
    pub(crate) fn process(&self) -> usize {
        let n = self.lock().items.len();
        let mut delivered = 0;
        while delivered < n {
            let Some(p) = self.lock().items.pop_front() else {
                break;
            };
            p.deliver();
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
            next.deliver();
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

/// The text of a `lagged` notice: `dropped` events of `source.event` (`*`: every event) were
/// lost. The count comes first so applications can read it with `strtol`.
pub(crate) fn lagged_text(dropped: u64, source: &str, event: &str) -> String {
    let which = if event.is_empty() { "*" } else { event };
    format!(
        "lagged: {dropped} events of {source}.{which} were dropped because the application did not call logos_core_process_events often enough (at most {EVENTS_WAITING} events or {} MiB wait for delivery); call it more often or listen to fewer events",
        EVENT_BYTES_WAITING / (1024 * 1024)
    )
}

/// One event listener: each event of `sub` becomes `cb(1, {"event","data"})` if it fits the
/// core's [`Budget`], else it is dropped and counted; the count (plus what the core itself
/// dropped) becomes one `cb(0, "lagged: N events …")` just before the next event that fits.
/// Ends when the core shuts down (the subscription closes), when cleanup has started a new
/// listener generation, or when the runtime is dropped.
///
/// # Cancel safety
/// Cancel safe: an event taken from `sub` is queued or counted before the next await.
pub(crate) async fn forward(
    mut sub: Subscription,
    cb: Callback,
    budget: Arc<Budget>,
    generation: u64,
    source: String,
    event: String,
) {
    let mut dropped: u64 = 0;
    while let Some(n) = sub.recv().await {
        let (name, data) = match n {
            Notification::Event { event, data, .. } => (event, data),
            Notification::Lagged { dropped: d } => {
                dropped = dropped.saturating_add(d);
                continue;
            }
            _ => continue,
        };
        let Some(ticket) = budget.take(params::event_json_len(&name, &data)) else {
            dropped = dropped.saturating_add(1);
            continue;
        };
        if dropped > 0 {
            let notice = Pending {
                cb,
                result: 0,
                message: Message::Text(c_message(&lagged_text(dropped, &source, &event))),
                listener: Some(generation),
                _ticket: None,
            };
            if !QUEUE.push(notice) {
                return;
            }
            dropped = 0;
        }
        let pending = Pending {
            cb,
            result: 1,
            message: Message::Event { event: name, data },
            listener: Some(generation),
            _ticket: Some(ticket),
        };
        if !QUEUE.push(pending) {
            return;
        }
    }
}

#[cfg(test)]
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

    #[test]
    fn budget_counts_events_and_bytes() {
        let budget = Budget::with_limits(3, 100);
        let a = budget.take(60).unwrap();
        // 60 + 50 > 100.
        assert!(budget.take(50).is_none());
        let b = budget.take(40).unwrap();
        assert!(budget.take(1).is_none());
        drop(a);
        let c = budget.take(10).unwrap();
        let d = budget.take(1).unwrap();
        // Three events wait: the count is full too.
        assert!(budget.take(0).is_none());
        drop((b, c, d));
        assert_eq!(*budget.lock(), (0, 0));
        // One event bigger than the whole budget passes when nothing else waits.
        let huge = budget.take(1000).unwrap();
        assert!(budget.take(1).is_none());
        drop(huge);
        assert_eq!(*budget.lock(), (0, 0));
    }

    #[test]
    fn delivery_gives_the_budget_back_before_the_callback_runs() {
        static BUDGET: std::sync::OnceLock<Arc<Budget>> = std::sync::OnceLock::new();
        static HELD: AtomicUsize = AtomicUsize::new(usize::MAX);
        unsafe extern "C" fn look(_: c_int, _: *const c_char, _: *mut c_void) {
            HELD.store(BUDGET.get().unwrap().lock().1, Ordering::SeqCst);
        }
        let budget = BUDGET.get_or_init(|| Budget::with_limits(10, 1000));
        let q = queue();
        let data = vec![Value::from("hello")];
        let bytes = params::event_json_len("e", &data);
        q.push(Pending {
            cb: Callback::new(Some(look), std::ptr::null_mut()).unwrap(),
            result: 1,
            message: Message::Event {
                event: "e".to_owned(),
                data,
            },
            listener: Some(0),
            _ticket: Some(budget.take(bytes).unwrap()),
        });
        assert_eq!(budget.lock().1, bytes);
        assert_eq!(q.process(), 1);
        assert_eq!(HELD.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn forgetting_listeners_drops_their_callbacks_and_keeps_call_results() {
        let q = queue();
        let seen = Seen::default();
        let budget = Budget::with_limits(10, 1000);
        let listener = |generation: u64, text: &str| Pending {
            cb: cb(&seen),
            result: 1,
            message: Message::Event {
                event: text.to_owned(),
                data: vec![],
            },
            listener: Some(generation),
            _ticket: budget.take(10),
        };
        let generation = q.listener_generation();
        assert!(q.push(listener(generation, "early")));
        q.send(cb(&seen), 0, "unavailable: the call was cut short");
        assert!(q.push(listener(generation, "late")));
        assert_eq!(budget.lock().0, 2);
        q.forget_listeners();
        // Their budget is given back at once.
        assert_eq!(budget.lock().0, 0);
        // A listener task of the old core that is still running is refused.
        assert!(!q.push(listener(generation, "after cleanup")));
        // Listeners registered afterwards work.
        assert!(q.push(listener(q.listener_generation(), "next core")));
        assert_eq!(q.process(), 2);
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[0],
            (0, "unavailable: the call was cut short".to_owned())
        );
        assert_eq!(
            seen[1],
            (1, r#"{"event":"next core","data":[]}"#.to_owned())
        );
    }

    #[test]
    fn lagged_text_leads_with_the_count() {
        let t = lagged_text(37, "chat", "chatMessage");
        assert!(
            t.starts_with("lagged: 37 events of chat.chatMessage were dropped"),
            "{t}"
        );
        assert!(lagged_text(1, "probe", "").contains("of probe.* were dropped"));
    }
}
