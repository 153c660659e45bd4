//! `Context`: what a running module can do besides answering calls.
//!
//! Owns the module's process-wide state that methods reach through `ctx`: its name and data
//! dir, who subscribed to which of its events (so [`Context::emit`] reaches exactly them), the
//! handlers registered for other modules' events and for incoming streams, the cached
//! [`Client`]s, and the health reported in `pong`. Never accepts connections or decides who
//! may connect: that is `serve/grant.rs`; never connects to other modules itself: that is
//! `client.rs`.

use crate::caller::Caller;
use crate::client::Client;
use crate::error::Error;
use crate::module::Events;
use futures::FutureExt;
use futures::future::BoxFuture;
use logos_session::{ByteStream, Config, Session, Traffic, TrafficFigures};
use logos_wire::Value;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// Names served by the core itself over the control connection.
pub(crate) const BUILTINS: [&str; 2] = ["core", "capability_module"];

/// `true` for `core` and `capability_module`.
pub(crate) fn is_builtin(name: &str) -> bool {
    BUILTINS.contains(&name)
}

/// Locks a mutex, recovering from poisoning: every critical section here leaves its data
/// consistent, so a panic elsewhere must not take the module's routing down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An event handler, erased: sync handlers run inline and return `None`, async ones return
/// the future to spawn.
type EventFn = dyn Fn(Vec<Value>) -> Option<BoxFuture<'static, ()>> + Send + Sync;
/// A stream handler, erased.
type StreamFn = dyn Fn(ByteStream) -> BoxFuture<'static, ()> + Send + Sync;
/// A shutdown hook, erased: gets the grace period.
type ShutdownFn = dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync;

struct Route {
    source: String,
    event: String,
    handler: Arc<EventFn>,
}

/// One connection that subscribed to some of this module's events.
struct Subscriber {
    session: Session,
    /// Event names; `""` means every event.
    events: HashSet<String>,
}

pub(crate) struct Inner {
    name: String,
    /// Built by [`Context::standalone`]: never connected, so clients fail at once.
    detached: bool,
    /// Set when this module runs remote (`LOGOS_REMOTE`): the credential its links use.
    link: Option<Arc<logos_remote::Credential>>,
    data_dir: PathBuf,
    /// The control connection, once the handshake with the core is done.
    control: watch::Sender<Option<Session>>,
    subscribers: Mutex<HashMap<u64, Subscriber>>,
    routes: Mutex<Vec<Route>>,
    /// `(source, event)` pairs of built-ins (`core`) subscribed on the control connection.
    core_subscriptions: Mutex<BTreeSet<(String, String)>>,
    streams: Mutex<HashMap<String, Arc<StreamFn>>>,
    /// Run once when the module stops, before in-flight calls are drained.
    shutdown: Mutex<Vec<Arc<ShutdownFn>>>,
    clients: Mutex<HashMap<String, Client>>,
    unhealthy: Mutex<Option<String>>,
    /// Events emitted, and deliveries dropped because a subscriber's queue was full (`$stats`).
    events_emitted: AtomicU64,
    events_dropped: AtomicU64,
    /// Streams and stream bytes of every connection of this process (`$stats`).
    traffic: Arc<Traffic>,
    /// Finished spans of calls, waiting to be reported to the core.
    spans: Arc<crate::trace::Spans>,
}

impl Inner {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn spans(&self) -> &Arc<crate::trace::Spans> {
        &self.spans
    }

    /// Starts span reports if the core's `welcome` asked for them.
    pub(crate) fn start_spans(&self, welcome_attrs: &logos_wire::Attrs) {
        self.spans.start(self.control.subscribe(), welcome_attrs);
    }

    pub(crate) fn is_detached(&self) -> bool {
        self.detached
    }

    /// The session settings of every connection of this module: defaults, counting streams
    /// into this process's [`Traffic`].
    pub(crate) fn session_config(&self) -> Config {
        let mut config = Config::default();
        config.traffic = Some(Arc::clone(&self.traffic));
        config
    }

    /// `(emitted, dropped)` events so far.
    pub(crate) fn event_figures(&self) -> (u64, u64) {
        (
            self.events_emitted.load(Ordering::Relaxed),
            self.events_dropped.load(Ordering::Relaxed),
        )
    }

    /// Streams and stream bytes so far.
    pub(crate) fn traffic(&self) -> TrafficFigures {
        self.traffic.figures()
    }

    /// The credential of a remote module's links; `None` for a local module.
    pub(crate) fn link(&self) -> Option<&Arc<logos_remote::Credential>> {
        self.link.as_ref()
    }

    /// The control connection if the handshake is done.
    pub(crate) fn control(&self) -> Option<Session> {
        self.control.borrow().clone()
    }

    /// Waits for the control connection (calls made from tasks spawned during `init` wait
    /// here until the module is connected).
    pub(crate) async fn wait_control(&self) -> Session {
        let mut rx = self.control.subscribe();
        loop {
            if let Some(s) = rx.borrow_and_update().clone() {
                return s;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`, so this cannot happen while we hold `&self`.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Runs every handler registered for `source`/`event`.
    pub(crate) fn dispatch_event(self: &Arc<Self>, source: &str, event: &str, data: Vec<Value>) {
        if source == "core" && event == "moduleUp" {
            // `moduleUp(name)`: only the client of that module has anything to redo.
            match data.first().and_then(Value::as_str) {
                Some(up) => {
                    let client = lock(&self.clients).get(up).cloned();
                    if let Some(c) = client {
                        c.wake();
                    }
                }
                None => self.wake_clients(),
            }
        }
        let handlers: Vec<Arc<EventFn>> = lock(&self.routes)
            .iter()
            .filter(|r| r.source == source && (r.event == event || r.event.is_empty()))
            .map(|r| Arc::clone(&r.handler))
            .collect();
        for handler in handlers {
            let data = data.clone();
            match std::panic::catch_unwind(AssertUnwindSafe(|| handler(data))) {
                Ok(Some(fut)) => {
                    let (source, event) = (source.to_owned(), event.to_owned());
                    tokio::spawn(async move {
                        if AssertUnwindSafe(fut).catch_unwind().await.is_err() {
                            tracing::error!(%source, %event, "event handler panicked");
                        }
                    });
                }
                Ok(None) => {}
                Err(_) => tracing::error!(%source, %event, "event handler panicked"),
            }
        }
    }

    /// Reconnects (and so re-subscribes) every client that has event subscriptions and no
    /// live connection; called when the core reports a module up.
    pub(crate) fn wake_clients(&self) {
        let clients: Vec<Client> = lock(&self.clients).values().cloned().collect();
        for c in clients {
            c.wake();
        }
    }
}

/// A running module's handle to its runtime: name, data dir, events, clients, streams,
/// health. Cheap to clone; every clone is the same module.
///
/// Methods get it through an optional first parameter `ctx: &Context`; the `#[init]`
/// constructor gets it too, to register event and stream handlers before the module serves.
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.inner.name)
            .field("data_dir", &self.inner.data_dir)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(name: &str, data_dir: PathBuf) -> Context {
        Context::build(name, data_dir, false, None)
    }

    /// The context of a remote module, whose links to other modules go through its core.
    pub(crate) fn new_remote(
        name: &str,
        data_dir: PathBuf,
        link: Arc<logos_remote::Credential>,
    ) -> Context {
        Context::build(name, data_dir, false, Some(link))
    }

    fn build(
        name: &str,
        data_dir: PathBuf,
        detached: bool,
        link: Option<Arc<logos_remote::Credential>>,
    ) -> Context {
        Context {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                detached,
                link,
                data_dir,
                control: watch::Sender::new(None),
                subscribers: Mutex::new(HashMap::new()),
                routes: Mutex::new(Vec::new()),
                core_subscriptions: Mutex::new(BTreeSet::new()),
                streams: Mutex::new(HashMap::new()),
                shutdown: Mutex::new(Vec::new()),
                clients: Mutex::new(HashMap::new()),
                unhealthy: Mutex::new(None),
                events_emitted: AtomicU64::new(0),
                events_dropped: AtomicU64::new(0),
                traffic: Arc::new(Traffic::default()),
                spans: Arc::default(),
            }),
        }
    }

    /// A context connected to nothing, for unit tests of a module's methods: `emit` reaches
    /// no one and every client call fails at once with `unavailable`.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = logos_sdk::Context::standalone("kv", std::env::temp_dir());
    /// assert_eq!(ctx.name(), "kv");
    /// assert_eq!(ctx.emit_raw("changed", vec![]), 0);
    /// ```
    pub fn standalone(name: &str, data_dir: impl Into<PathBuf>) -> Context {
        Context::build(name, data_dir.into(), true, None)
    }

    /// This module's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The module's private data directory (`LOGOS_DATA_DIR`, also the working directory).
    /// Persist state here; write atomically (temp file, then rename).
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Sends a typed event to every connection subscribed to it (or to all of this module's
    /// events) and returns how many it was queued for. A subscriber whose queue is full
    /// misses it and is told with `lagged`.
    ///
    /// # Errors
    /// [`Error::EncodeEvent`] when a field cannot be encoded; nothing is sent then.
    pub fn emit<E: Events>(&self, event: E) -> Result<usize, Error> {
        let name = event.name();
        let data = event.into_data().map_err(|source| Error::EncodeEvent {
            event: name.to_owned(),
            source,
        })?;
        Ok(self.emit_raw(name, data))
    }

    /// Sends event `event` with `data` to its subscribers; see [`Context::emit`].
    pub fn emit_raw(&self, event: &str, data: Vec<Value>) -> usize {
        // Pick the subscribers under the lock, send outside it: the session layer never runs
        // while this module's routing table is locked.
        let targets: Vec<Session> = lock(&self.inner.subscribers)
            .values()
            .filter(|sub| sub.events.contains(event) || sub.events.contains(""))
            .filter(|sub| !sub.session.is_closed())
            .map(|sub| sub.session.clone())
            .collect();
        let delivered = targets
            .iter()
            .filter(|s| s.send_event(&self.inner.name, event, data.clone()))
            .count();
        self.inner.events_emitted.fetch_add(1, Ordering::Relaxed);
        let dropped = targets.len() - delivered;
        if dropped > 0 {
            self.inner
                .events_dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        delivered
    }

    /// Sends event `event` with `data` to the one connection `caller` came in on, if it
    /// subscribed to that event (or to all of this module's events); `true` when it was
    /// queued. For events meant for one module only (its own registration's news), which
    /// [`Context::emit_raw`] would send to every subscriber.
    pub fn emit_to(&self, caller: &Caller, event: &str, data: Vec<Value>) -> bool {
        let wants = lock(&self.inner.subscribers)
            .get(&caller.connection())
            .is_some_and(|sub| sub.events.contains(event) || sub.events.contains(""));
        if !wants || caller.is_closed() {
            return false;
        }
        self.inner.events_emitted.fetch_add(1, Ordering::Relaxed);
        let sent = caller.session().send_event(&self.inner.name, event, data);
        if !sent {
            self.inner.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// The connection of the method call running in this task: who is calling. `None`
    /// outside a method call (in `#[init]`, in a task the method spawned, in unit tests
    /// calling [`Module::call`](crate::Module::call) directly).
    pub fn caller(&self) -> Option<Caller> {
        Caller::current()
    }

    /// Runs `hook` once when the module is asked to stop (the core's `shutdown`, SIGTERM, the
    /// core going away), with the grace period, before running calls are drained: the place
    /// to tell peers and close what the module holds. The module waits for the hooks at most
    /// the grace period.
    pub fn on_shutdown<F, Fut>(&self, hook: F)
    where
        F: Fn(Duration) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        lock(&self.inner.shutdown).push(Arc::new(move |grace| hook(grace).boxed()));
    }

    /// Resolves once every event emitted so far has been handed to the sockets of its
    /// subscribers (or their connections have closed).
    ///
    /// A subscriber's queue holds at most 1024 events (`logos_session::Config::event_queue`);
    /// beyond that events are dropped and reported as `lagged`. A publisher that must not drop
    /// emits fewer than that between two awaits of this: the slowest subscriber then paces it.
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is sent or dropped by waiting.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(ctx: &logos_sdk::Context) {
    /// for chunk in 0..100u64 {
    ///     for i in 0..512 {
    ///         ctx.emit_raw("tick", vec![logos_sdk::Value::from(chunk * 512 + i)]);
    ///     }
    ///     ctx.events_flushed().await;
    /// }
    /// # }
    /// ```
    pub async fn events_flushed(&self) {
        let sessions: Vec<Session> = lock(&self.inner.subscribers)
            .values()
            .map(|sub| sub.session.clone())
            .collect();
        for session in sessions {
            session.flush().await;
        }
    }

    /// A client for calls to `module` (`core` and `capability_module` go over the control
    /// connection). Clients are cached: every call for the same name shares one connection.
    pub fn client(&self, module: &str) -> Client {
        lock(&self.inner.clients)
            .entry(module.to_owned())
            .or_insert_with(|| Client::new(Arc::downgrade(&self.inner), module))
            .clone()
    }

    /// The client for the core's own methods (`core.listModules`, …).
    pub fn core(&self) -> Client {
        self.client("core")
    }

    /// Runs `handler` with the data of every `event` of module `source` (`event` `""` = every
    /// event of `source`). The subscription is made as soon as the module is connected, and
    /// re-made by itself whenever `source` restarts.
    ///
    /// The handler runs on the connection's reader: keep it short, or use
    /// [`Context::on_event_async`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(ctx: &logos_sdk::Context) {
    /// ctx.on_event("chat", "chatMessage", |data| {
    ///     tracing::info!("chat: {data:?}");
    /// });
    /// # }
    /// ```
    pub fn on_event<F>(&self, source: &str, event: &str, handler: F)
    where
        F: Fn(Vec<Value>) + Send + Sync + 'static,
    {
        self.route(
            source,
            event,
            Arc::new(move |data| {
                handler(data);
                None
            }),
        );
    }

    /// Like [`Context::on_event`], for an async handler: each event runs in its own task, so
    /// handlers of successive events may overlap.
    pub fn on_event_async<F, Fut>(&self, source: &str, event: &str, handler: F)
    where
        F: Fn(Vec<Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.route(
            source,
            event,
            Arc::new(move |data| Some(handler(data).boxed())),
        );
    }

    fn route(&self, source: &str, event: &str, handler: Arc<EventFn>) {
        lock(&self.inner.routes).push(Route {
            source: source.to_owned(),
            event: event.to_owned(),
            handler,
        });
        if is_builtin(source) {
            self.subscribe_builtin(source, event);
        } else {
            // `core.moduleUp` is the cue to re-subscribe once `source` restarts. Only modules
            // with such subscriptions ask for it, so the others are not woken by every module
            // start (with N modules loaded that would make loading them O(N²)).
            self.subscribe_builtin("core", "moduleUp");
            self.client(source).add_event(event);
        }
    }

    /// Subscribes to `event` of a built-in on the control connection, once (now if connected,
    /// else in [`Context::start`]).
    fn subscribe_builtin(&self, source: &str, event: &str) {
        let fresh =
            lock(&self.inner.core_subscriptions).insert((source.to_owned(), event.to_owned()));
        if fresh && let Some(control) = self.inner.control() {
            subscribe_logged(&control, source, event);
        }
    }

    /// Serves incoming streams for `protocol`: `handler` gets each stream (read it with
    /// `AsyncRead`, answer with `AsyncWrite`, `shutdown()` to half-close). A stream for a
    /// protocol without a handler is reset. Registering again replaces the handler.
    pub fn on_stream<F, Fut>(&self, protocol: &str, handler: F)
    where
        F: Fn(ByteStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        lock(&self.inner.streams).insert(
            protocol.to_owned(),
            Arc::new(move |stream| handler(stream).boxed()),
        );
    }

    /// Reports the module unhealthy (`Some(reason)`) or healthy again (`None`); the core
    /// sees it in the next `pong`.
    pub fn set_unhealthy(&self, reason: Option<String>) {
        *lock(&self.inner.unhealthy) = reason;
    }

    /// The health currently reported: `None` when healthy.
    pub fn unhealthy(&self) -> Option<String> {
        lock(&self.inner.unhealthy).clone()
    }

    // ---- runtime side (serve/) ----

    /// Called once the control handshake is done: remembers the connection, subscribes to
    /// what the module needs from the core, and starts the module-to-module subscriptions.
    pub(crate) fn start(&self, control: Session) {
        self.inner.control.send_replace(Some(control.clone()));
        let builtin: Vec<(String, String)> = lock(&self.inner.core_subscriptions)
            .iter()
            .cloned()
            .collect();
        for (source, event) in builtin {
            subscribe_logged(&control, &source, &event);
        }
        self.inner.wake_clients();
    }

    /// Records that `session` wants `event` of this module.
    pub(crate) fn add_subscriber(&self, session: &Session, event: &str) {
        lock(&self.inner.subscribers)
            .entry(session.id())
            .or_insert_with(|| Subscriber {
                session: session.clone(),
                events: HashSet::new(),
            })
            .events
            .insert(event.to_owned());
    }

    /// Withdraws one subscription of `session`.
    pub(crate) fn remove_subscriber(&self, session: &Session, event: &str) {
        let mut subs = lock(&self.inner.subscribers);
        if let Some(sub) = subs.get_mut(&session.id()) {
            sub.events.remove(event);
            if sub.events.is_empty() {
                subs.remove(&session.id());
            }
        }
    }

    /// Forgets every subscription of a closed connection.
    pub(crate) fn forget_session(&self, id: u64) {
        lock(&self.inner.subscribers).remove(&id);
    }

    /// Runs the handlers registered for `source`/`event`.
    pub(crate) fn dispatch_event(&self, source: &str, event: &str, data: Vec<Value>) {
        self.inner.dispatch_event(source, event, data);
    }

    /// Runs the shutdown hooks, all at once, for at most `grace`.
    pub(crate) async fn run_shutdown_hooks(&self, grace: Duration) {
        let hooks: Vec<Arc<ShutdownFn>> = lock(&self.inner.shutdown).drain(..).collect();
        if hooks.is_empty() {
            return;
        }
        let all = futures::future::join_all(
            hooks
                .iter()
                .map(|h| AssertUnwindSafe(h(grace)).catch_unwind()),
        );
        match tokio::time::timeout(grace, all).await {
            Ok(done) => {
                if done.iter().any(Result::is_err) {
                    tracing::error!("a shutdown hook panicked");
                }
            }
            Err(_) => tracing::warn!(
                "shutdown hooks still running after the {} ms grace",
                grace.as_millis()
            ),
        }
    }

    /// The handler for streams of `protocol`, if any.
    pub(crate) fn stream_handler(&self, protocol: &str) -> Option<Arc<StreamFn>> {
        lock(&self.inner.streams).get(protocol).cloned()
    }
}

/// The handler for streams of `protocol` registered on the context `inner`, if any.
pub(crate) fn stream_handler_of(inner: &Inner, protocol: &str) -> Option<Arc<StreamFn>> {
    lock(&inner.streams).get(protocol).cloned()
}

pub(crate) fn subscribe_logged(session: &Session, source: &str, event: &str) {
    if let Err(e) = session.subscribe(source, event) {
        tracing::warn!(%source, %event, "cannot subscribe: {e}");
    }
}
