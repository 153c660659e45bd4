//! Core-side event fan-out: who inside or outside the core wants which events of which source.
//!
//! Owns the subscriber table for embedding subscribers ([`Subscription`]) and for connected
//! sessions (modules subscribed to `core` events, CLI clients watching modules). Every queue is
//! bounded, in events and in bytes: a slow local subscriber loses events and is told how many
//! (`Notification::Lagged`), a slow session is handled by its own bounded queue in
//! `logos-session` (`Config::event_queue`, `Config::event_queue_bytes`), which tells the
//! client with a `lagged` message. The table itself is
//! bounded too: a session holds at most [`MAX_SESSION_SUBSCRIPTIONS`], and every operation is
//! a map lookup, never a scan of what others hold, under the hub's lock. Never subscribes to
//! a module by itself: the core asks a module for its events when this hub says someone wants
//! them. Never decides who may subscribe to what (`conn.rs` does, before asking here).

use logos_session::Session;
use logos_wire::Value;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// Capacity of one embedding subscriber's queue, in events.
pub const SUBSCRIPTION_QUEUE: usize = 1024;
/// Capacity of one embedding subscriber's queue, in bytes of memory its events hold (an
/// estimate: the values' own size plus their text, bytes and keys). An event is queued while
/// it fits, or when the queue is empty, so one event of any size always gets through.
pub const SUBSCRIPTION_BYTES: usize = 16 * 1024 * 1024;

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Notification {
    /// An event.
    Event {
        /// Module (or `core`) that emitted it.
        source: String,
        /// Event name.
        event: String,
        /// Event data.
        data: Vec<Value>,
    },
    /// `dropped` events were lost because this subscriber did not keep up.
    Lagged {
        /// How many.
        dropped: u64,
    },
}

/// A stream of events of one source (and optionally one event name) for embedding code.
/// Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Queued>,
    /// Bytes of the notifications in `rx`, shared with the sink.
    queued_bytes: Arc<AtomicUsize>,
    held: Option<Notification>,
    hub: Arc<Hub>,
    id: u64,
}

impl Subscription {
    /// The next notification; `None` once the core has shut down.
    ///
    /// # Cancel safety
    /// Cancel safe: a notification is never lost by dropping this future.
    pub async fn recv(&mut self) -> Option<Notification> {
        if let Some(n) = self.held.take() {
            return Some(n);
        }
        let Queued {
            notification: n,
            lost_before,
            bytes,
        } = self.rx.recv().await?;
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        if lost_before > 0 {
            self.held = Some(n);
            return Some(Notification::Lagged {
                dropped: lost_before,
            });
        }
        Some(n)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}

/// The events the built-in `core` publishes; a session may subscribe to these (or to `""`,
/// all of them) and nothing else of `core`.
pub(crate) const CORE_EVENTS: [&str; 4] =
    ["moduleDown", "moduleUp", "moduleCrashed", "stateChanged"];

/// Most subscriptions (source, event pairs) one session may hold: the table a peer can make
/// the core keep is bounded.
pub(crate) const MAX_SESSION_SUBSCRIPTIONS: usize = 256;

/// Who reads what a session subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Viewer {
    /// An operator client: sees everything.
    Operator,
    /// A module: sees another module's private data (its stderr) only in redacted form.
    Module(String),
}

/// One entry of an embedding subscriber's queue.
#[derive(Debug)]
struct Queued {
    notification: Notification,
    /// Events lost just before this one.
    lost_before: u64,
    /// What it counts against [`SUBSCRIPTION_BYTES`].
    bytes: usize,
}

/// Where a subscriber's events go.
#[derive(Debug)]
enum Sink {
    /// An embedding [`Subscription`]: bounded queue, losses counted and reported in order.
    Local {
        tx: mpsc::Sender<Queued>,
        dropped: AtomicU64,
        /// Bytes in the queue (see [`SUBSCRIPTION_BYTES`]).
        queued_bytes: Arc<AtomicUsize>,
    },
    /// A connected session (module or client); its own queue bounds it.
    Session { session: Session, viewer: Viewer },
}

#[derive(Debug)]
struct Subscriber {
    sink: Sink,
}

/// (source, event) of one subscription; event `""` is every event of the source.
type Key = (String, String);

/// The subscriber table. Every lookup is a map access, so no operation scans what other
/// subscribers hold, and what one session can add is capped.
#[derive(Debug, Default)]
struct Table {
    /// source → event (`""` = all) → subscriber id → subscriber.
    by_source: HashMap<String, HashMap<String, HashMap<u64, Arc<Subscriber>>>>,
    /// session id → its subscriptions → subscriber id.
    by_session: HashMap<u64, HashMap<Key, u64>>,
    /// Embedding subscriber id → its subscription, for removal on drop.
    local: HashMap<u64, Key>,
}

impl Table {
    fn insert(&mut self, (source, event): Key, id: u64, sub: Arc<Subscriber>) {
        self.by_source
            .entry(source)
            .or_default()
            .entry(event)
            .or_default()
            .insert(id, sub);
    }

    /// Removes subscriber `id` of `(source, event)`, pruning empty maps so that a source with
    /// an entry always has a subscriber.
    fn remove(&mut self, (source, event): &Key, id: u64) {
        let Some(events) = self.by_source.get_mut(source) else {
            return;
        };
        if let Some(ids) = events.get_mut(event) {
            ids.remove(&id);
            if ids.is_empty() {
                events.remove(event);
            }
        }
        if events.is_empty() {
            self.by_source.remove(source);
        }
    }
}

/// Why [`Hub::subscribe_session`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManySubscriptions;

/// The subscriber table, keyed by source.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    table: Mutex<Table>,
    next_id: AtomicU64,
    /// The core's own events published, and deliveries of them dropped (a full queue).
    core_published: AtomicU64,
    core_dropped: AtomicU64,
}

impl Hub {
    /// `(published, dropped)` of the core's own events (`core.*`) so far.
    pub fn core_event_figures(&self) -> (u64, u64) {
        (
            self.core_published.load(Ordering::Relaxed),
            self.core_dropped.load(Ordering::Relaxed),
        )
    }

    /// Adds an embedding subscriber.
    pub fn subscribe_local(self: &Arc<Self>, source: &str, event: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_QUEUE);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = (source.to_owned(), event.to_owned());
        let sub = Arc::new(Subscriber {
            sink: Sink::Local {
                tx,
                dropped: AtomicU64::new(0),
                queued_bytes: Arc::clone(&queued_bytes),
            },
        });
        self.with_table(|t| {
            t.local.insert(id, key.clone());
            t.insert(key, id, sub);
        });
        Subscription {
            rx,
            queued_bytes,
            held: None,
            hub: Arc::clone(self),
            id,
        }
    }

    /// Adds a session subscriber (idempotent per session, source and event).
    ///
    /// # Errors
    /// [`TooManySubscriptions`] when the session already holds
    /// [`MAX_SESSION_SUBSCRIPTIONS`]; nothing is added.
    pub fn subscribe_session(
        &self,
        session: &Session,
        viewer: Viewer,
        source: &str,
        event: &str,
    ) -> Result<(), TooManySubscriptions> {
        let key = (source.to_owned(), event.to_owned());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.with_table(|t| {
            let mine = t.by_session.entry(session.id()).or_default();
            if mine.contains_key(&key) {
                return Ok(());
            }
            if mine.len() >= MAX_SESSION_SUBSCRIPTIONS {
                return Err(TooManySubscriptions);
            }
            mine.insert(key.clone(), id);
            let sub = Arc::new(Subscriber {
                sink: Sink::Session {
                    session: session.clone(),
                    viewer,
                },
            });
            t.insert(key, id, sub);
            Ok(())
        })
    }

    /// Removes a session subscriber.
    pub fn unsubscribe_session(&self, session_id: u64, source: &str, event: &str) {
        let key = (source.to_owned(), event.to_owned());
        self.with_table(|t| {
            let Some(mine) = t.by_session.get_mut(&session_id) else {
                return;
            };
            let Some(id) = mine.remove(&key) else {
                return;
            };
            if mine.is_empty() {
                t.by_session.remove(&session_id);
            }
            t.remove(&key, id);
        });
    }

    /// Removes every subscription of a session (it closed).
    pub fn drop_session(&self, session_id: u64) {
        self.with_table(|t| {
            for (key, id) in t.by_session.remove(&session_id).unwrap_or_default() {
                t.remove(&key, id);
            }
        });
    }

    /// How many subscriptions a session holds.
    #[cfg(test)]
    pub fn session_subscriptions(&self, session_id: u64) -> usize {
        self.with_table(|t| t.by_session.get(&session_id).map_or(0, HashMap::len))
    }

    /// Whether anyone wants events of `source`.
    pub fn has_subscribers(&self, source: &str) -> bool {
        self.with_table(|t| t.by_source.contains_key(source))
    }

    /// Delivers an event to every matching subscriber without waiting on any of them.
    pub fn publish(&self, source: &str, event: &str, data: &[Value]) {
        self.deliver(source, event, |_| data);
    }

    /// [`Hub::publish`] for an event carrying private data of module `owner`: embedding
    /// subscribers, operators and `owner` itself get `data`, every other module `redacted`.
    pub fn publish_private(
        &self,
        source: &str,
        event: &str,
        data: &[Value],
        owner: &str,
        redacted: &[Value],
    ) {
        self.deliver(source, event, |viewer| match viewer {
            Viewer::Module(m) if m != owner => redacted,
            _ => data,
        });
    }

    fn deliver<'a>(&self, source: &str, event: &str, data_for: impl Fn(&Viewer) -> &'a [Value]) {
        let targets: Vec<Arc<Subscriber>> = self.with_table(|t| {
            let Some(events) = t.by_source.get(source) else {
                return Vec::new();
            };
            let all = events.get("").into_iter();
            let named = events.get(event).filter(|_| !event.is_empty()).into_iter();
            all.chain(named)
                .flat_map(|ids| ids.values().cloned())
                .collect()
        });
        let own = source == crate::name::CORE_MODULE;
        if own {
            self.core_published.fetch_add(1, Ordering::Relaxed);
        }
        let lost = |n: u64| {
            if own {
                self.core_dropped.fetch_add(n, Ordering::Relaxed);
            }
        };
        let mut bytes = None;
        for s in targets {
            match &s.sink {
                Sink::Local {
                    tx,
                    dropped,
                    queued_bytes,
                } => {
                    let bytes = *bytes.get_or_insert_with(|| {
                        source.len()
                            + event.len()
                            + data_for(&Viewer::Operator)
                                .iter()
                                .map(footprint)
                                .sum::<usize>()
                    });
                    let reserved =
                        queued_bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                            (q == 0 || q.saturating_add(bytes) <= SUBSCRIPTION_BYTES)
                                .then(|| q.saturating_add(bytes))
                        });
                    if reserved.is_err() {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        lost(1);
                        continue;
                    }
                    let lost_before = dropped.swap(0, Ordering::Relaxed);
                    let queued = Queued {
                        notification: Notification::Event {
                            source: source.to_owned(),
                            event: event.to_owned(),
                            data: data_for(&Viewer::Operator).to_vec(),
                        },
                        lost_before,
                        bytes,
                    };
                    if tx.try_send(queued).is_err() {
                        queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                        dropped.fetch_add(lost_before + 1, Ordering::Relaxed);
                        lost(1);
                    }
                }
                Sink::Session { session, viewer } => {
                    if !session.send_event(source, event, data_for(viewer).to_vec()) {
                        lost(1);
                    }
                }
            }
        }
    }

    fn remove(&self, id: u64) {
        self.with_table(|t| {
            if let Some(key) = t.local.remove(&id) {
                t.remove(&key, id);
            }
        });
    }

    /// Runs `f` under the lock; a poisoned lock is recovered (the data is plain maps).
    fn with_table<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        let mut guard = self.table.lock();
        f(&mut guard)
    }
}

/// Memory a value holds, estimated: its own size, plus its text, bytes, keys and items.
fn footprint(v: &Value) -> usize {
    let own = std::mem::size_of::<Value>();
    own + match v {
        Value::Text(t) => t.len(),
        Value::Bytes(b) => b.len(),
        Value::List(items) => items.iter().map(footprint).sum(),
        Value::Map(map) => map
            .iter()
            .map(|(k, v)| std::mem::size_of::<String>() + k.len() + footprint(v))
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: i64) -> Vec<Value> {
        vec![Value::Int(n)]
    }

    #[tokio::test]
    async fn local_subscriber_gets_matching_events_in_order() {
        let hub = Arc::new(Hub::default());
        let mut all = hub.subscribe_local("chat", "");
        let mut one = hub.subscribe_local("chat", "b");
        hub.publish("chat", "a", &ev(1));
        hub.publish("chat", "b", &ev(2));
        hub.publish("other", "b", &ev(3));
        for want in [1, 2] {
            match all.recv().await {
                Some(Notification::Event { data, .. }) => assert_eq!(data, ev(want)),
                other => panic!("unexpected {other:?}"),
            }
        }
        match one.recv().await {
            Some(Notification::Event { event, .. }) => assert_eq!(event, "b"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn slow_subscriber_is_bounded_and_told_how_many_it_lost() {
        let hub = Arc::new(Hub::default());
        let mut sub = hub.subscribe_local("m", "");
        let total = SUBSCRIPTION_QUEUE as i64 + 10;
        // Nobody reads: the queue fills, the last 10 are dropped and counted.
        for i in 0..total {
            hub.publish("m", "e", &ev(i));
        }
        let mut seen = Vec::new();
        for _ in 0..SUBSCRIPTION_QUEUE {
            match sub.recv().await {
                Some(Notification::Event { data, .. }) => seen.push(data[0].as_i64()),
                other => panic!("expected an event, got {other:?}"),
            }
        }
        assert_eq!(
            seen,
            (0..SUBSCRIPTION_QUEUE as i64).map(Some).collect::<Vec<_>>()
        );
        // The next event that fits carries the gap, reported just before it.
        hub.publish("m", "e", &ev(total));
        assert_eq!(sub.recv().await, Some(Notification::Lagged { dropped: 10 }));
        match sub.recv().await {
            Some(Notification::Event { data, .. }) => assert_eq!(data, ev(total)),
            other => panic!("expected the last event, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn issue_10_slow_subscriber_is_bounded_in_bytes_too() {
        use futures::FutureExt;
        let hub = Arc::new(Hub::default());
        let mut sub = hub.subscribe_local("m", "");
        let big = |i: i64| vec![Value::Int(i), Value::Bytes(vec![0; 1024 * 1024].into())];
        // Far fewer events than SUBSCRIPTION_QUEUE, far more bytes than SUBSCRIPTION_BYTES.
        let total = 40;
        for i in 0..total {
            hub.publish("m", "e", &big(i));
        }
        let mut kept = Vec::new();
        while let Some(Some(n)) = sub.recv().now_or_never() {
            match n {
                Notification::Event { data, .. } => kept.push(data[0].as_i64()),
                other => panic!("expected an event, got {other:?}"),
            }
        }
        let budget = SUBSCRIPTION_BYTES / (1024 * 1024);
        assert!(
            !kept.is_empty() && kept.len() <= budget,
            "kept {} events of 1 MiB with a budget of {budget} MiB",
            kept.len()
        );
        assert_eq!(kept, (0..kept.len() as i64).map(Some).collect::<Vec<_>>());
        // Drained: the next event fits again and carries the count of those lost.
        hub.publish("m", "e", &big(total));
        let lost = total as u64 - kept.len() as u64;
        assert_eq!(
            sub.recv().await,
            Some(Notification::Lagged { dropped: lost })
        );
        match sub.recv().await {
            Some(Notification::Event { data, .. }) => assert_eq!(data[0].as_i64(), Some(total)),
            other => panic!("expected the last event, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn dropping_a_subscription_unsubscribes() {
        let hub = Arc::new(Hub::default());
        let sub = hub.subscribe_local("m", "");
        assert!(hub.has_subscribers("m"));
        drop(sub);
        assert!(!hub.has_subscribers("m"));
    }
}
