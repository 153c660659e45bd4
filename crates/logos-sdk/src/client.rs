//! `Client`: calls, streams and event subscriptions to one other module.
//!
//! Owns the module-to-module connection life cycle of docs/architecture.md §6–7: ask the core
//! for a token (`capability_module.requestModule`), connect to the target's endpoint, check
//! that the process answering there is the target (`SO_PEERCRED` against the pid the core
//! gave with the token) *before* sending `hello{identity: own name, token}`, cache the
//! session, and after the target restarts get a
//! fresh token, reconnect and re-subscribe by itself (on the core's `moduleUp`, and with
//! backoff). Calls while the target is down fail fast with `unavailable`; a call is never
//! retried, because it may already have run. Never accepts connections and never decides who
//! may call whom: the core's policy does that when it mints tokens.

use crate::context::{Inner, is_builtin, lock, subscribe_logged};
use bytes::Bytes;
use logos_session::{ByteStream, Fault, Handler, Session, SessionError, Transport};
use logos_wire::{Attrs, ErrorCode, Hello, PROTOCOL_MAJOR, PROTOCOL_MINOR, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::net::UnixStream;
use tokio::sync::Notify;

/// Deadline of a call unless [`Client::with_timeout`] says otherwise (30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// First wait before re-connecting a dropped subscription (then doubled up to
/// [`RESUBSCRIBE_MAX_DELAY`]); a `moduleUp` from the core cuts any wait short.
const RESUBSCRIBE_FIRST_DELAY: Duration = Duration::from_millis(50);
const RESUBSCRIBE_MAX_DELAY: Duration = Duration::from_secs(5);
/// Deadline of one re-subscription attempt.
const RESUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle for calling one module (or the core). Cheap to clone; clones made by
/// [`crate::Context::client`] for the same module share one connection.
///
/// # Examples
///
/// ```no_run
/// # async fn f(ctx: &logos_sdk::Context) -> Result<(), logos_sdk::Fault> {
/// let sum: i64 = ctx.client("calc").call("add", (2, 3)).await?;
/// assert_eq!(sum, 5);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.shared.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

struct Shared {
    ctx: Weak<Inner>,
    /// Where this client's call spans go (the module's span queue).
    spans: Arc<crate::trace::Spans>,
    /// Shared with the spans of this client's calls.
    target: Arc<str>,
    /// The current connection, if any (closed ones are replaced on next use), and whether
    /// the target asked it to go away (`shutdown`: its process is being replaced or
    /// stopped), after which new calls make a new connection.
    live: Mutex<Option<(Session, Arc<AtomicBool>)>>,
    /// Serialises connection attempts, so concurrent first calls make one connection.
    connecting: tokio::sync::Mutex<()>,
    /// Events of `target` this module subscribed to. Installing a connection and adding an
    /// event both happen under this lock, so no subscription is lost between them.
    events: Mutex<BTreeSet<String>>,
    /// Cuts the re-subscription backoff short (the core reported a module up).
    wake: Notify,
    /// A re-subscription task is running.
    maintaining: AtomicBool,
    /// Streams the target opened on this connection that no `on_stream` handler took.
    mailbox: Arc<Mailbox>,
}

/// Streams parked at most this long for [`Client::take_stream`]; older ones are reset.
const PARK_TTL: Duration = Duration::from_secs(60);
/// Streams parked at most at once per target; one more is reset with `limit`.
const PARK_MAX: usize = 256;

/// Streams opened by a target on the connection this module made to it (a `p2p` node handing
/// over a libp2p stream), waiting for [`Client::take_stream`].
#[derive(Default)]
struct Mailbox {
    streams: Mutex<HashMap<String, (Instant, ByteStream)>>,
    arrived: Notify,
}

impl Mailbox {
    fn park(&self, protocol: String, stream: ByteStream) {
        let mut expired = Vec::new();
        let refused = {
            let mut streams = lock(&self.streams);
            let stale: Vec<String> = streams
                .iter()
                .filter(|(_, (at, _))| at.elapsed() > PARK_TTL)
                .map(|(p, _)| p.clone())
                .collect();
            for p in stale {
                if let Some((_, s)) = streams.remove(&p) {
                    expired.push(s);
                }
            }
            if streams.len() >= PARK_MAX && !streams.contains_key(&protocol) {
                Some(stream)
            } else {
                if let Some((_, old)) = streams.insert(protocol, (Instant::now(), stream)) {
                    expired.push(old);
                }
                None
            }
        };
        for s in expired {
            s.reset(
                ErrorCode::Timeout,
                "stream was never taken by the module it was opened to",
            );
        }
        if let Some(s) = refused {
            s.reset(
                ErrorCode::Limit,
                &format!("{PARK_MAX} streams already wait to be taken"),
            );
        }
        self.arrived.notify_waiters();
    }

    async fn take(&self, protocol: &str, within: Duration) -> Option<ByteStream> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some((_, s)) = lock(&self.streams).remove(protocol) {
                return Some(s);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }
}

impl Client {
    pub(crate) fn new(ctx: Weak<Inner>, target: &str) -> Client {
        let spans = ctx
            .upgrade()
            .map_or_else(Arc::default, |inner| Arc::clone(inner.spans()));
        Client {
            shared: Arc::new(Shared {
                ctx,
                spans,
                target: Arc::from(target),
                live: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                events: Mutex::new(BTreeSet::new()),
                wake: Notify::new(),
                maintaining: AtomicBool::new(false),
                mailbox: Arc::default(),
            }),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The module this client calls.
    pub fn target(&self) -> &str {
        &self.shared.target
    }

    /// The deadline of each call (and of connecting first, when needed).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The same client with another call deadline; the connection stays shared.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// `true` when a live connection to the target exists (always `true` for the core once
    /// the module is connected).
    pub fn is_connected(&self) -> bool {
        if is_builtin(&self.shared.target) {
            return self
                .shared
                .ctx
                .upgrade()
                .and_then(|c| c.control())
                .is_some_and(|s| !s.is_closed());
        }
        self.shared.live_session().is_some()
    }

    /// Calls `method` with `args` and decodes the result as `R`.
    ///
    /// `args` is serialized with serde: a tuple or sequence is the argument list (`(2, 3)`,
    /// `()` for none, `(x,)` for one), any other value is the single argument.
    ///
    /// # Errors
    /// The target's [`Fault`]; `invalid_args` when `args` cannot be encoded or the result does
    /// not decode as `R`; `unavailable` when the target is down; `timeout` past the deadline.
    ///
    /// # Cancel safety
    /// Dropping the future cancels the call on the target.
    pub async fn call<R: DeserializeOwned>(
        &self,
        method: &str,
        args: impl Serialize,
    ) -> Result<R, Fault> {
        let target = &self.shared.target;
        let args = match logos_wire::to_value(&args) {
            Ok(Value::List(items)) => items,
            Ok(Value::Null) => Vec::new(),
            Ok(single) => vec![single],
            Err(e) => {
                return Err(Fault::new(
                    ErrorCode::InvalidArgs,
                    format!("cannot encode the arguments of {target}.{method}: {e}"),
                ));
            }
        };
        let value = self.call_raw(method, args).await?;
        let found = value.type_name();
        logos_wire::from_value(value).map_err(|e| {
            Fault::new(
                ErrorCode::InvalidArgs,
                format!(
                    "{target}.{method} returned {found}, which does not decode as {}: {e}",
                    std::any::type_name::<R>()
                ),
            )
        })
    }

    /// Calls `method` with positional `args` and returns the raw result.
    ///
    /// # Errors
    /// As for [`Client::call`], without the decoding step.
    ///
    /// # Cancel safety
    /// Dropping the future cancels the call on the target.
    pub async fn call_raw(&self, method: &str, args: Vec<Value>) -> Result<Value, Fault> {
        let target = &self.shared.target;
        if is_builtin(target) {
            // Calls to the core's built-ins are plumbing, not part of a trace.
            return self.send_call(method, args, None).await;
        }
        // The outgoing call's span: a child of the call this task serves, if any.
        let parent = crate::trace::current();
        let ctx = crate::trace::child_of(parent.as_ref());
        let open =
            self.shared
                .spans
                .open(ctx, parent.map(|p| p.span_id), crate::trace::Kind::Client);
        let result = self.send_call(method, args, Some(ctx)).await;
        self.shared
            .spans
            .finish(open, target, method, result.as_ref().map(|_| ()));
        result
    }

    async fn send_call(
        &self,
        method: &str,
        args: Vec<Value>,
        trace: Option<logos_wire::TraceContext>,
    ) -> Result<Value, Fault> {
        let target = &self.shared.target;
        if !is_builtin(target)
            && let Some(session) = self.shared.live_session()
        {
            // Connected: `Session::call` enforces the deadline itself, so the hot path pays
            // for one timer, not two.
            return session
                .call_traced(target, method, args, self.timeout, trace)
                .await;
        }
        let attempt = async {
            let session = self.session().await?;
            session
                .call_traced(target, method, args, self.timeout, trace)
                .await
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Fault::new(
                ErrorCode::Timeout,
                format!(
                    "{target}.{method} did not complete within {} ms",
                    self.timeout.as_millis()
                ),
            )),
        }
    }

    /// Opens a byte stream to the target for `protocol`; the target must have registered a
    /// handler with [`crate::Context::on_stream`] (else the stream is reset).
    ///
    /// # Errors
    /// `unavailable` when the target cannot be reached; `timeout` when connecting first takes
    /// longer than the deadline.
    pub async fn open_stream(&self, protocol: &str) -> Result<ByteStream, Fault> {
        let target = &self.shared.target;
        let session = match tokio::time::timeout(self.timeout, self.session()).await {
            Ok(s) => s?,
            Err(_) => {
                return Err(Fault::new(
                    ErrorCode::Timeout,
                    format!(
                        "could not reach module \"{target}\" within {} ms",
                        self.timeout.as_millis()
                    ),
                ));
            }
        };
        session.open_stream(protocol).map_err(|e| {
            Fault::new(
                ErrorCode::Unavailable,
                format!("cannot open a \"{protocol}\" stream to module \"{target}\": {e}"),
            )
        })
    }

    /// Takes the stream for `protocol` that the target opened on this client's connection,
    /// waiting for it at most `within`. Streams the target opens back (a `p2p` node handing
    /// over an accepted libp2p stream) go to an [`on_stream`](crate::Context::on_stream)
    /// handler for their protocol if there is one, else they wait here (at most 60 s, and at
    /// most 256 at once per target).
    ///
    /// # Errors
    /// `timeout` when no such stream arrived within `within`.
    ///
    /// # Cancel safety
    /// Cancel safe: a stream that arrives later stays parked.
    pub async fn take_stream(&self, protocol: &str, within: Duration) -> Result<ByteStream, Fault> {
        self.shared
            .mailbox
            .take(protocol, within)
            .await
            .ok_or_else(|| {
                Fault::new(
                    ErrorCode::Timeout,
                    format!(
                        "module \"{}\" opened no \"{protocol}\" stream within {} ms",
                        self.shared.target,
                        within.as_millis()
                    ),
                )
            })
    }

    /// Subscribes this module to `event` of the target (from `Context::on_event`).
    pub(crate) fn add_event(&self, event: &str) {
        let fresh = {
            let mut events = lock(&self.shared.events);
            let fresh = events.insert(event.to_owned());
            if fresh && let Some(s) = self.shared.live_session() {
                subscribe_logged(&s, &self.shared.target, event);
                return;
            }
            fresh
        };
        if fresh {
            self.shared.kick();
        }
    }

    /// Re-establishes a dropped subscription now (the core reported a module up).
    pub(crate) fn wake(&self) {
        if lock(&self.shared.events).is_empty() {
            return;
        }
        self.shared.wake.notify_one();
        self.shared.kick();
    }

    /// The connection to use: the control connection for built-ins, else the cached
    /// connection to the target, made first if there is none.
    async fn session(&self) -> Result<Session, Fault> {
        let target = &self.shared.target;
        let ctx = self.shared.ctx.upgrade().ok_or_else(|| {
            Fault::new(
                ErrorCode::Unavailable,
                format!("cannot reach \"{target}\": this module is shutting down"),
            )
        })?;
        if ctx.is_detached() {
            return Err(Fault::new(
                ErrorCode::Unavailable,
                format!(
                    "cannot reach \"{target}\": module \"{}\" runs without a core (Context::standalone)",
                    ctx.name()
                ),
            ));
        }
        let control = ctx.wait_control().await;
        if is_builtin(target) {
            return Ok(control);
        }
        if let Some(s) = self.shared.live_session() {
            return Ok(s);
        }
        let _one_at_a_time = self.shared.connecting.lock().await;
        if let Some(s) = self.shared.live_session() {
            return Ok(s);
        }
        let mailbox = Arc::clone(&self.shared.mailbox);
        let (session, retiring) = connect(&ctx, &control, target, self.timeout, mailbox).await?;
        self.shared.install(&session, retiring);
        let shared = Arc::clone(&self.shared);
        let watched = session.clone();
        tokio::spawn(async move {
            let reason = watched.closed().await;
            tracing::debug!(target = %shared.target, "connection closed: {reason}");
            if !lock(&shared.events).is_empty() {
                shared.kick();
            }
        });
        Ok(session)
    }
}

impl Shared {
    fn live_session(&self) -> Option<Session> {
        lock(&self.live)
            .as_ref()
            .filter(|(s, retiring)| !s.is_closed() && !retiring.load(Ordering::Acquire))
            .map(|(s, _)| s.clone())
    }

    /// Makes `session` the current connection and subscribes it to every wanted event.
    fn install(&self, session: &Session, retiring: Arc<AtomicBool>) {
        let events = lock(&self.events);
        *lock(&self.live) = Some((session.clone(), retiring));
        for event in events.iter() {
            subscribe_logged(session, &self.target, event);
        }
    }

    /// Starts the re-subscription task unless one runs or nothing needs it yet.
    fn kick(self: &Arc<Self>) {
        let started = self
            .ctx
            .upgrade()
            .is_some_and(|c| c.control().is_some() && !c.is_detached());
        if !started || self.maintaining.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(maintain(Arc::clone(self)));
    }
}

/// Reconnects until the target's events are subscribed again, with capped exponential
/// backoff; a `moduleUp` from the core wakes it early.
async fn maintain(shared: Arc<Shared>) {
    let mut delay = RESUBSCRIBE_FIRST_DELAY;
    let mut abandoned = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.wake.notified() => {}
        }
        if lock(&shared.events).is_empty() || shared.live_session().is_some() {
            break;
        }
        if shared.ctx.strong_count() == 0 {
            break;
        }
        let client = Client {
            shared: Arc::clone(&shared),
            timeout: RESUBSCRIBE_TIMEOUT,
        };
        match tokio::time::timeout(RESUBSCRIBE_TIMEOUT, client.session()).await {
            Ok(Ok(_)) => {
                tracing::info!(target = %shared.target, "subscribed to events");
                break;
            }
            Ok(Err(f)) if matches!(f.code, ErrorCode::Unauthorized | ErrorCode::UnknownModule) => {
                // Retrying cannot help until the policy or the module set changes; the core's
                // next `moduleUp` tries again.
                tracing::warn!(target = %shared.target, "cannot subscribe to events: {f}");
                abandoned = true;
                break;
            }
            Ok(Err(f)) => {
                tracing::debug!(target = %shared.target, "re-subscribing failed: {f}");
            }
            Err(_) => tracing::debug!(target = %shared.target, "re-subscribing timed out"),
        }
        delay = (delay * 2).min(RESUBSCRIBE_MAX_DELAY);
    }
    shared.maintaining.store(false, Ordering::Release);
    // The connection may have dropped again between the success and the flag reset.
    if !abandoned && !lock(&shared.events).is_empty() && shared.live_session().is_none() {
        shared.kick();
    }
}

/// Asks the core for a token to `target`, connects to its endpoint and says hello.
async fn connect(
    ctx: &Arc<Inner>,
    control: &Session,
    target: &str,
    timeout: Duration,
    mailbox: Arc<Mailbox>,
) -> Result<(Session, Arc<AtomicBool>), Fault> {
    let mut tries = 0;
    // What went wrong first is what the caller hears if no attempt succeeds: a process that
    // is not the target on the socket, say, rather than the refusal of a later attempt.
    let mut first: Option<Fault> = None;
    loop {
        tries += 1;
        match connect_once(ctx, control, target, timeout, Arc::clone(&mailbox)).await {
            // The socket is served by another pid than the grant named: the target was
            // hot-swapped between the grant and the connect (the core moves the new process's
            // socket in place as it switches). Nothing was sent; ask again. A real
            // impersonator keeps failing the check.
            Err(Connect::Retry(f)) if tries < CONNECT_TRIES => {
                tracing::debug!(%target, "{}; asking for a new token", f.message);
                first.get_or_insert(f);
            }
            Err(Connect::Retry(f) | Connect::Failed(f)) => return Err(first.unwrap_or(f)),
            Ok(c) => return Ok(c),
        }
    }
}

/// Attempts at connecting when the target's pid changed under a grant (a hot swap).
const CONNECT_TRIES: usize = 3;

/// Why one connection attempt failed.
enum Connect {
    /// Worth asking for a new grant: the endpoint is served by another process than the grant
    /// named, or the process that accepted went away before the handshake (a swapped-out
    /// process drops the connections still waiting in its listen queue).
    Retry(Fault),
    Failed(Fault),
}

impl From<Fault> for Connect {
    fn from(f: Fault) -> Connect {
        Connect::Failed(f)
    }
}

async fn connect_once(
    ctx: &Arc<Inner>,
    control: &Session,
    target: &str,
    timeout: Duration,
    mailbox: Arc<Mailbox>,
) -> Result<(Session, Arc<AtomicBool>), Connect> {
    let grant = control
        .call(
            "capability_module",
            "requestModule",
            vec![Value::from(target)],
            timeout,
        )
        .await?;
    let Grant {
        token,
        endpoint,
        pid,
    } = read_grant(target, &grant)?;
    let (stream, leftover, path) = match endpoint.strip_prefix("link:") {
        // A remote module: the core relays the connection and vouches for both ends
        // (docs/remote-modules.md), so there is no local peer to check.
        Some(_) => {
            let (transport, leftover) = link_to(ctx, target, timeout).await?;
            (transport, leftover, endpoint.clone())
        }
        None => {
            let path = endpoint
                .strip_prefix("unix:")
                .unwrap_or(&endpoint)
                .to_owned();
            let stream = UnixStream::connect(&path).await.map_err(|e| {
                Fault::new(
                    ErrorCode::Unavailable,
                    format!("cannot connect to module \"{target}\" at {path}: {e}"),
                )
            })?;
            check_peer(target, &path, pid, &stream).map_err(Connect::Retry)?;
            let transport = Transport::unix(stream).map_err(|e| {
                Fault::new(
                    ErrorCode::Unavailable,
                    format!("cannot use the connection to module \"{target}\" at {path}: {e}"),
                )
            })?;
            (transport, bytes::BytesMut::new(), path)
        }
    };
    let hello = Hello {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        identity: ctx.name().to_owned(),
        token: Bytes::from(token),
        attrs: Attrs::new(),
    };
    let retiring = Arc::new(AtomicBool::new(false));
    let handler = Arc::new(TargetEvents {
        ctx: Arc::downgrade(ctx),
        target: target.to_owned(),
        retiring: Arc::clone(&retiring),
        mailbox,
    });
    let (session, welcome) =
        logos_session::connect_over(stream, leftover, hello, handler, ctx.session_config())
            .await
            .map_err(|e| match e {
                SessionError::Refused(f) => Connect::Failed(Fault::new(
                    f.code,
                    format!("module \"{target}\" refused the connection: {}", f.message),
                )),
                other => Connect::Retry(Fault::new(
                    ErrorCode::Unavailable,
                    format!("cannot connect to module \"{target}\": {other}"),
                )),
            })?;
    if welcome.identity != target {
        let fault = Fault::new(
            ErrorCode::Unauthorized,
            format!(
                "the endpoint of module \"{target}\" ({path}) answered as \"{}\"",
                welcome.identity
            ),
        );
        session.close(fault.clone());
        return Err(fault.into());
    }
    Ok((session, retiring))
}

/// Opens a `call` link to the core for `target` (this module runs remote): the TLS connection
/// to run the peer session over, and bytes the core sent after its welcome.
async fn link_to(
    ctx: &Arc<Inner>,
    target: &str,
    timeout: Duration,
) -> Result<(Transport, bytes::BytesMut), Fault> {
    let Some(credential) = ctx.link() else {
        return Err(Fault::new(
            ErrorCode::ProtocolError,
            format!("the core answered a link endpoint for \"{target}\", but this module is local"),
        ));
    };
    let purpose = logos_remote::Purpose::Call {
        target: target.to_owned(),
    };
    let dialed = logos_remote::dial(credential, &purpose, timeout)
        .await
        .map_err(|e| match e {
            logos_remote::DialError::Refused { code, message, .. } => Fault::new(
                code,
                format!("the core refused a connection to \"{target}\": {message}"),
            ),
            other => Fault::new(
                ErrorCode::Unavailable,
                format!("cannot reach \"{target}\" through the core: {other}"),
            ),
        })?;
    let (tcp, conn) = dialed.stream.into_inner();
    Ok((Transport::tls(tcp, conn), dialed.leftover))
}

/// What `requestModule` answers: the token, where the target listens, and its pid.
#[derive(Debug, PartialEq, Eq)]
struct Grant {
    token: Vec<u8>,
    endpoint: String,
    pid: u32,
}

/// Reads `{"module", "token": bytes, "endpoint": text, "pid": int}` from `requestModule`.
fn read_grant(target: &str, grant: &Value) -> Result<Grant, Fault> {
    let token = match grant.get("token") {
        Some(Value::Bytes(b)) if !b.is_empty() => Some(b.to_vec()),
        _ => None,
    };
    let endpoint = grant.get("endpoint").and_then(Value::as_str);
    let pid = grant
        .get("pid")
        .and_then(Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0);
    match (token, endpoint, pid) {
        (Some(token), Some(endpoint), Some(pid)) if !endpoint.is_empty() => Ok(Grant {
            token,
            endpoint: endpoint.to_owned(),
            pid,
        }),
        _ => Err(Fault::new(
            ErrorCode::ProtocolError,
            format!(
                "capability_module.requestModule(\"{target}\") returned {grant}; expected {{\"module\", \"token\": bytes, \"endpoint\": text, \"pid\": int}}"
            ),
        )),
    }
}

/// Refuses to go on (and so to send the token) unless the process that listens on `path` is
/// the target's process `pid`. Whoever else answers there (a module that re-bound the path, a
/// target that does not re-`listen` on its fd 4) never sees the token.
fn check_peer(target: &str, path: &str, pid: u32, stream: &UnixStream) -> Result<(), Fault> {
    let peer = stream.peer_cred().map_err(|e| {
        Fault::new(
            ErrorCode::Unavailable,
            format!("cannot check who serves module \"{target}\" at {path} (SO_PEERCRED): {e}"),
        )
    })?;
    let found = peer.pid().and_then(|p| u32::try_from(p).ok());
    if found == Some(pid) {
        return Ok(());
    }
    let found = found.map_or_else(|| "an unknown process".to_owned(), |p| format!("pid {p}"));
    tracing::warn!(
        target = %target,
        path,
        expected = pid,
        "the endpoint is served by {found}, not by the module; the token was not sent"
    );
    Err(Fault::new(
        ErrorCode::Unauthorized,
        format!(
            "the endpoint of module \"{target}\" ({path}) is served by {found}, not by {target} (pid {pid}); the token was not sent. Either another process took the socket over, or {target} does not call listen() on its fd 4 (docs/architecture.md, \"Module process contract\")"
        ),
    ))
}

/// Handler of a connection this module opened: it receives the target's events and the
/// streams the target opens back.
struct TargetEvents {
    ctx: Weak<Inner>,
    target: String,
    /// Set when the target sends `shutdown`; shared with the client's `live` slot.
    retiring: Arc<AtomicBool>,
    mailbox: Arc<Mailbox>,
}

/// How often a retiring connection checks whether its calls are all answered.
const RETIRE_POLL: Duration = Duration::from_millis(2);

impl Handler for TargetEvents {
    fn event(&self, _session: &Session, source: String, event: String, data: Vec<Value>) {
        if source != self.target {
            tracing::warn!(
                target = %self.target,
                %source,
                %event,
                "dropping an event that claims another source"
            );
            return;
        }
        if let Some(ctx) = self.ctx.upgrade() {
            ctx.dispatch_event(&source, &event, data);
        }
    }

    fn lagged(&self, _session: &Session, source: String, dropped: u64) {
        tracing::warn!(%source, dropped, "events were dropped: this module read them too slowly");
    }

    /// The target is going away (stopped, or replaced by a hot swap): new calls take a new
    /// connection (to the new process), the calls sent here get their answers, then this side
    /// closes, which tells the target that nothing more will come (it waits for that, a
    /// little, before it exits: see `serve::drain`). Nothing sent here is lost that way.
    fn shutdown(&self, session: &Session, grace: Duration) {
        self.retiring.store(true, Ordering::Release);
        let session = session.clone();
        let target = self.target.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + grace;
            while session.calls_pending() > 0
                && !session.is_closed()
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(RETIRE_POLL).await;
            }
            session.close(Fault::new(
                ErrorCode::Unavailable,
                format!("module \"{target}\" is going away"),
            ));
        });
    }

    fn stream(&self, _session: &Session, protocol: String, stream: ByteStream) {
        let handler = self
            .ctx
            .upgrade()
            .and_then(|c| crate::context::stream_handler_of(&c, &protocol));
        match handler {
            Some(handler) => {
                let fut = handler(stream);
                let target = self.target.clone();
                tokio::spawn(async move {
                    if futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(fut))
                        .await
                        .is_err()
                    {
                        tracing::error!(%target, %protocol, "stream handler panicked");
                    }
                });
            }
            None => self.mailbox.park(protocol, stream),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn grant_is_read() {
        let grant = Value::Map(BTreeMap::from([
            ("module".to_owned(), Value::from("calc")),
            ("token".to_owned(), Value::Bytes(vec![7; 32].into())),
            (
                "endpoint".to_owned(),
                Value::from("/run/logos/modules/calc.sock"),
            ),
            ("pid".to_owned(), Value::from(4242u32)),
        ]));
        let g = read_grant("calc", &grant).unwrap();
        assert_eq!(g.token, vec![7; 32]);
        assert_eq!(g.endpoint, "/run/logos/modules/calc.sock");
        assert_eq!(g.pid, 4242);
    }

    #[test]
    fn a_grant_without_the_targets_pid_is_a_protocol_error() {
        let grant = Value::Map(BTreeMap::from([
            ("token".to_owned(), Value::Bytes(vec![7; 32].into())),
            ("endpoint".to_owned(), Value::from("/run/calc.sock")),
        ]));
        let f = read_grant("calc", &grant).unwrap_err();
        assert_eq!(f.code, ErrorCode::ProtocolError);
        assert!(f.message.contains("\"pid\": int"), "{}", f.message);
    }

    #[tokio::test]
    async fn the_peer_is_checked_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calc.sock");
        let _listener = tokio::net::UnixListener::bind(&path).unwrap();
        let stream = UnixStream::connect(&path).await.unwrap();
        let path = path.to_string_lossy();
        // This process listens, so it is the peer.
        check_peer("calc", &path, std::process::id(), &stream).unwrap();
        let f = check_peer("calc", &path, 1, &stream).unwrap_err();
        assert_eq!(f.code, ErrorCode::Unauthorized);
        assert!(f.message.contains("not by calc (pid 1)"), "{}", f.message);
        assert!(
            f.message.contains("the token was not sent"),
            "{}",
            f.message
        );
    }

    #[test]
    fn malformed_grant_is_a_protocol_error() {
        let grant = Value::Map(BTreeMap::from([(
            "token".to_owned(),
            Value::from("not bytes"),
        )]));
        let f = read_grant("calc", &grant).unwrap_err();
        assert_eq!(f.code, ErrorCode::ProtocolError);
        assert!(
            f.message.contains("requestModule(\"calc\")"),
            "{}",
            f.message
        );
    }

    #[tokio::test]
    async fn standalone_clients_fail_fast() {
        let ctx = crate::Context::standalone("greeter", std::env::temp_dir());
        let f = ctx
            .client("calc")
            .call::<i64>("add", (1, 2))
            .await
            .unwrap_err();
        assert_eq!(f.code, ErrorCode::Unavailable);
    }
}
