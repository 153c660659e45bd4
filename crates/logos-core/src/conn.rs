//! The core's side of every connection: module control connections ([`ModuleConn`]), operator
//! clients on the control endpoint ([`ClientConn`], e.g. `logoscore`), and call routing.
//!
//! Owns who may do what on which connection: a module's calls to the built-ins and its
//! subscriptions to `core` events are put to the access policy (`policy.rs` decides; by
//! default a module may use `capability_module` and read `core`, and changing what runs needs
//! `"core"` in its permissions), and a module never reaches another module through the core; a
//! client holding the token in `client.token`, or a live named operator token
//! (`operators.rs`, checked again on every request), is the operator and may do everything. Identity
//! always comes from the connection. Never spawns processes.

use crate::builtin;
use crate::counters::fold_method;
use crate::error::Error;
use crate::events::{CORE_EVENTS, MAX_SESSION_SUBSCRIPTIONS, Viewer};
use crate::name::{CAPABILITY_MODULE, CORE_MODULE, ModuleName};
use crate::operators::Verdict;
use crate::registry::State;
use crate::state::Inner;
use crate::token::Token;
use futures::future::BoxFuture;
use logos_session::{Acceptor, DEFAULT_MAX_HANDSHAKES, Fault, Handler, PendingSession, Session};
use logos_wire::{Call, ErrorCode, Value, Welcome};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

/// Who is calling, as established by the connection the call came on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// Code embedding the core (Rust API, C API).
    Embedder,
    /// An operator client authenticated with the client token.
    Client,
    /// A module, over its control connection.
    Module(String),
}

impl Caller {
    pub fn is_operator(&self) -> bool {
        matches!(self, Caller::Embedder | Caller::Client)
    }
}

/// Longest event name a client may subscribe to; event names are identifiers.
const MAX_EVENT_NAME: usize = 128;

/// At most 80 characters of an untrusted name, for a log line.
fn cut(name: &str) -> String {
    name.chars().take(80).collect()
}

fn gone() -> Fault {
    Fault::new(ErrorCode::Unavailable, "the core is shutting down")
}

/// Routes one call to a built-in or a module.
pub(crate) async fn route_call(
    inner: &Arc<Inner>,
    caller: &Caller,
    target: &str,
    method: &str,
    args: Vec<Value>,
) -> Result<Value, Fault> {
    crate::name::check_name_len(target).map_err(|e| e.to_fault())?;
    if let Caller::Module(me) = caller
        && target == CORE_MODULE
        && method == DENIED_REPORT
    {
        return denied_report(inner, me, args);
    }
    if let Caller::Module(me) = caller
        && target == CORE_MODULE
        && method == SPANS_REPORT
    {
        return inner.spans.report(me, args);
    }
    if let Caller::Module(me) = caller
        && (target == CORE_MODULE || target == CAPABILITY_MODULE)
    {
        may_call_builtin(inner, me, target, method)?;
    }
    match target {
        CORE_MODULE => builtin::manager::handle(inner, caller, method, args).await,
        CAPABILITY_MODULE => builtin::capability::handle(inner, caller, method, args).await,
        _ if caller.is_operator() => call_module(inner, target, method, args, None).await,
        _ => Err(Fault::new(
            ErrorCode::Unauthorized,
            format!(
                "modules call {target} directly: ask capability_module.requestModule(\"{target}\") for a token and connect to its endpoint"
            ),
        )),
    }
}

/// Calls a module method on behalf of the core or an operator (no token needed: the core
/// holds the module's control connection). A module that is not `ready` fails the call at
/// once: `unavailable` while it is on its way up or down, `not_loaded` when nobody loaded it.
pub(crate) async fn call_module(
    inner: &Inner,
    target: &str,
    method: &str,
    args: Vec<Value>,
    timeout: Option<Duration>,
) -> Result<Value, Fault> {
    if method.starts_with('$') {
        return Err(Fault::new(
            ErrorCode::UnknownMethod,
            format!("{target}.{method}: methods starting with '$' are reserved"),
        ));
    }
    let session = {
        let registry = inner.registry();
        if !registry.is_known(target) {
            return Err(registry.unknown(target).to_fault());
        }
        let rec = registry.record(target);
        // Counted here because the module never sees these calls.
        let refuse = |fault: Fault| {
            let method = fold_method(rec.and_then(|r| r.interface()), method);
            inner.counters.refused(target, method, fault.code.as_str());
            fault
        };
        match registry.state(target) {
            State::Ready => rec.and_then(|r| r.session().cloned()),
            State::Disconnected => {
                let since = rec
                    .and_then(|r| r.remote())
                    .and_then(|p| p.disconnected_since)
                    .map_or_else(String::new, |t| {
                        format!(" since {}", crate::operators::rfc3339(t))
                    });
                return Err(Fault::new(
                    ErrorCode::Unavailable,
                    format!(
                        "remote module {target} is disconnected{since}; it is available again when it reconnects"
                    ),
                ));
            }
            s if s.is_loaded() || s == State::Stopping => {
                return Err(refuse(Fault::new(
                    ErrorCode::Unavailable,
                    format!("module {target} is {s}; try again when it is ready"),
                )));
            }
            State::Failed => {
                return Err(refuse(Fault::new(
                    ErrorCode::Unavailable,
                    format!(
                        "module {target} failed (restart budget exhausted); reload it to bring it back"
                    ),
                )));
            }
            _ => {
                return Err(refuse(Fault::new(
                    ErrorCode::NotLoaded,
                    format!("module {target} is not loaded; load it first"),
                )));
            }
        }
    };
    let Some(session) = session else {
        return Err(Fault::new(
            ErrorCode::Unavailable,
            format!("module {target} has no connection"),
        ));
    };
    let timeout = timeout.unwrap_or_else(|| inner.settings.call_timeout(target));
    // The core's span of the call: the root of a trace, or a child of the operator's context.
    let span = inner
        .spans
        .enabled()
        .then(|| crate::spans::CoreSpan::open(target, method));
    let trace = span.as_ref().map(|s| s.ctx).or_else(crate::spans::incoming);
    let result = session
        .call_traced(target, method, args, timeout, trace)
        .await;
    if let Some(span) = &span {
        inner.spans.record_core(span, result.as_ref().map(|_| ()));
    }
    if let Err(f) = &result
        && f.code == ErrorCode::Unavailable
        && session.is_closed()
    {
        // The process went away with the call in flight: it never counted it.
        let interface = inner
            .registry()
            .record(target)
            .and_then(|r| r.interface().cloned());
        let method = fold_method(interface.as_ref(), method);
        inner.counters.refused(target, method, f.code.as_str());
    }
    result
}

/// Makes sure a ready module sends the core its events when someone here wants them.
pub(crate) fn want_events(inner: &Inner, source: &str) {
    if source == CORE_MODULE {
        return;
    }
    let session = inner.registry().ready_session(source);
    if let Some(s) = session {
        let _ = s.subscribe(source, "");
    }
}

/// What a module calls on its control connection to report finished spans of calls
/// (docs/tracing.md); the reporter is the connection's module, never a name in the report.
pub(crate) const SPANS_REPORT: &str = "$spans";

/// What a module calls on its control connection to report a call it refused because the
/// core's access decision (the `access` of `$grant`) does not allow it.
pub(crate) const DENIED_REPORT: &str = "$denied";

/// `core.$denied(caller, method)` from module `me`: counts the refusal as a policy denial of
/// `caller` to `me` (an unknown caller counts as `other`) and logs it. `me` comes from the
/// connection, so a module can only report refusals of calls to itself.
fn denied_report(inner: &Inner, me: &str, args: Vec<Value>) -> Result<Value, Fault> {
    let [Value::Text(caller), Value::Text(method)] = args.as_slice() else {
        return Err(Fault::new(
            ErrorCode::InvalidArgs,
            "$denied takes (caller: text, method: text)",
        ));
    };
    let caller = if inner.registry().is_known(caller) {
        caller.as_str()
    } else {
        crate::counters::OTHER
    };
    tracing::warn!(
        caller,
        target = me,
        method = cut(method),
        "access denied: {me} refused {caller}'s call to {me}.{} (not in its grant)",
        cut(method)
    );
    inner.counters.denied(caller, me);
    Ok(Value::Null)
}

/// Puts a module's call to a built-in to the access policy (a configured deny of `core` or
/// `capability_module` takes effect here; so does the rule on methods that change what runs).
fn may_call_builtin(inner: &Inner, me: &str, target: &str, method: &str) -> Result<(), Fault> {
    let decision = {
        let registry = inner.registry();
        let Some(manifest) = registry.manifest(me) else {
            return Err(Fault::new(
                ErrorCode::Unauthorized,
                format!("{me} is not a known module"),
            ));
        };
        inner.policy().allows_call(manifest, target, method)
    };
    if decision.is_allowed() {
        return Ok(());
    }
    tracing::warn!(caller = %me, target, method = decision.method().unwrap_or_default(), "access denied: {decision}");
    inner.counters.denied(me, target);
    Err(Fault::new(ErrorCode::Unauthorized, decision.to_string()))
}

/// The core's handler on one module's control connection.
pub(crate) struct ModuleConn {
    inner: Weak<Inner>,
    module: String,
}

impl ModuleConn {
    pub fn new(inner: &Arc<Inner>, module: &str) -> ModuleConn {
        ModuleConn {
            inner: Arc::downgrade(inner),
            module: module.to_owned(),
        }
    }
}

impl Handler for ModuleConn {
    fn call(&self, _session: Session, call: Call) -> BoxFuture<'static, Result<Value, Fault>> {
        let inner = self.inner.clone();
        let caller = Caller::Module(self.module.clone());
        Box::pin(async move {
            let inner = inner.upgrade().ok_or_else(gone)?;
            route_call(&inner, &caller, &call.target, &call.method, call.args).await
        })
    }

    fn subscribe(&self, session: &Session, source: &str, event: &str) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let me = &self.module;
        if source != CORE_MODULE {
            tracing::warn!(
                module = %me,
                "asked the core for events of {}; modules subscribe to other modules directly",
                cut(source)
            );
            return;
        }
        if !event.is_empty() && !CORE_EVENTS.contains(&event) {
            tracing::warn!(
                module = %me,
                "asked for core event {:?}, which does not exist (core has {})",
                cut(event),
                CORE_EVENTS.join(", ")
            );
            return;
        }
        if may_call_builtin(&inner, me, CORE_MODULE, "subscribe").is_err() {
            return;
        }
        let viewer = Viewer::Module(me.clone());
        if inner
            .hub
            .subscribe_session(session, viewer, source, event)
            .is_err()
        {
            tracing::warn!(module = %me, "refused a subscription: it holds {MAX_SESSION_SUBSCRIPTIONS} already");
        }
    }

    fn unsubscribe(&self, session: &Session, source: &str, event: &str) {
        if let Some(inner) = self.inner.upgrade() {
            inner.hub.unsubscribe_session(session.id(), source, event);
        }
    }

    fn event(&self, _session: &Session, source: String, event: String, data: Vec<Value>) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        if source != self.module {
            tracing::warn!(module = %self.module, "dropped an event claiming to come from {source}");
            return;
        }
        inner.hub.publish(&source, &event, &data);
    }

    fn lagged(&self, _session: &Session, source: String, dropped: u64) {
        tracing::warn!(module = %self.module, "the core fell behind on events of {source}: {dropped} dropped");
    }

    fn closed(&self, session: &Session, reason: &str) {
        tracing::debug!(module = %self.module, "control connection closed: {reason}");
        if let Some(inner) = self.inner.upgrade() {
            inner.hub.drop_session(session.id());
        }
    }
}

/// How an operator client proved itself on the control endpoint.
#[derive(Debug, Clone)]
enum Credential {
    /// The boot client token (`client.token`), valid for the core's whole life.
    Client,
    /// A named operator token, valid while the store says so (checked on every request).
    Named { name: String, token: Token },
}

/// How often a connection admitted with a named token is checked between requests, so a
/// revoked token also ends a `watch` that makes no requests.
const RECHECK: Duration = Duration::from_millis(500);

/// The core's handler for one operator client on the control endpoint.
pub(crate) struct ClientConn {
    inner: Weak<Inner>,
    credential: Credential,
}

impl ClientConn {
    /// `Err` with the refusal when the connection's named token no longer opens the core.
    fn recheck(&self, inner: &Inner) -> Result<(), Fault> {
        let Credential::Named { name, token } = &self.credential else {
            return Ok(());
        };
        let Some(store) = &inner.operators else {
            return Err(Fault::new(
                ErrorCode::Unauthorized,
                "named tokens are not accepted by this core",
            ));
        };
        match store.verify(token.as_bytes(), SystemTime::now()) {
            Verdict::Valid { name: now } if &now == name => Ok(()),
            Verdict::Expired { .. } => Err(Fault::new(
                ErrorCode::Unauthorized,
                format!(
                    "the operator token {name:?} has expired; issue a new one (`logoscore issue-token --name {name} --replace`)"
                ),
            )),
            Verdict::Unreadable(why) => Err(Fault::new(
                ErrorCode::Unauthorized,
                format!("the token store cannot be read, so no named token is accepted: {why}"),
            )),
            _ => Err(Fault::new(
                ErrorCode::Unauthorized,
                format!("the operator token {name:?} was revoked"),
            )),
        }
    }

    /// Closes `session` with the refusal when the credential no longer holds.
    fn enforce(&self, inner: &Inner, session: &Session) -> Result<(), Fault> {
        self.recheck(inner).inspect_err(|f| {
            tracing::warn!(pid = ?session.peer().pid, "control endpoint: closing a client: {}", f.message);
            session.close(f.clone());
        })
    }
}

impl Handler for ClientConn {
    fn call(&self, session: Session, call: Call) -> BoxFuture<'static, Result<Value, Fault>> {
        let inner = self.inner.clone();
        let allowed = match inner.upgrade() {
            Some(i) => self.enforce(&i, &session),
            None => Err(gone()),
        };
        Box::pin(async move {
            allowed?;
            let inner = inner.upgrade().ok_or_else(gone)?;
            crate::spans::scope(
                call.trace,
                route_call(
                    &inner,
                    &Caller::Client,
                    &call.target,
                    &call.method,
                    call.args,
                ),
            )
            .await
        })
    }

    fn subscribe(&self, session: &Session, source: &str, event: &str) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        if self.enforce(&inner, session).is_err() {
            return;
        }
        if source.len() > ModuleName::MAX_LEN || event.len() > MAX_EVENT_NAME {
            tracing::warn!(
                "client {}: refused a subscription to {}.{}: names that long exist nowhere",
                session.id(),
                cut(source),
                cut(event)
            );
            return;
        }
        if source == CORE_MODULE && !event.is_empty() && !CORE_EVENTS.contains(&event) {
            tracing::warn!(
                "client {}: core event {event:?} does not exist (core has {})",
                session.id(),
                CORE_EVENTS.join(", ")
            );
            return;
        }
        if inner
            .hub
            .subscribe_session(session, Viewer::Operator, source, event)
            .is_err()
        {
            tracing::warn!(
                "client {}: refused a subscription: it holds {MAX_SESSION_SUBSCRIPTIONS} already",
                session.id()
            );
            return;
        }
        want_events(&inner, source);
    }

    fn unsubscribe(&self, session: &Session, source: &str, event: &str) {
        if let Some(inner) = self.inner.upgrade() {
            inner.hub.unsubscribe_session(session.id(), source, event);
        }
    }

    fn closed(&self, session: &Session, _reason: &str) {
        if let Some(inner) = self.inner.upgrade() {
            inner.hub.drop_session(session.id());
        }
    }
}

/// Binds the control endpoint (0600) and spawns its accept loop.
pub(crate) fn listen(inner: &Arc<Inner>) -> Result<tokio::task::JoinHandle<()>, Error> {
    let path = inner.control_socket();
    let _ = std::fs::remove_file(&path);
    let io = |e: std::io::Error| Error::Io {
        what: format!("binding control endpoint {}", path.display()),
        source: e,
    };
    let listener = tokio::net::UnixListener::bind(&path).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    if let Some(gid) = inner.settings.access_group {
        crate::operators::share_with_group(
            &inner.settings.runtime_dir,
            &path,
            &inner.client_token_path(),
            gid,
        )
        .map_err(|e| Error::Config {
            setting: "access_group".to_owned(),
            reason: e.to_string(),
        })?;
    }
    let weak = Arc::downgrade(inner);
    // Before authentication a peer gets little: a 64 KiB hello, a handshake timeout, and one
    // of DEFAULT_MAX_HANDSHAKES places (a newer connection pushes out the one that waited
    // longest); accept errors (EMFILE) back off instead of spinning. See logos-session's
    // `Acceptor`.
    let mut acceptor = Acceptor::new(listener, DEFAULT_MAX_HANDSHAKES);
    Ok(tokio::spawn(async move {
        loop {
            let (stream, ticket) = acceptor.accept().await;
            let Some(inner) = weak.upgrade() else { return };
            let cfg = inner.settings.session.clone();
            let weak = weak.clone();
            drop(inner);
            tokio::spawn(async move {
                match logos_session::read_hello_admitted(stream, cfg, ticket).await {
                    Ok(pending) => admit_client(weak, pending).await,
                    Err(e) => tracing::debug!("control endpoint: handshake failed: {e}"),
                }
            });
        }
    }))
}

/// Who `presented` belongs to, for front ends that authenticate operators themselves (the
/// HTTP dashboard): `"client"` for the client token, else the named token's name.
pub(crate) fn operator_name(inner: &Inner, presented: &[u8]) -> Result<String, Error> {
    match authenticate(inner, presented) {
        Ok(Credential::Client) => Ok("client".to_owned()),
        Ok(Credential::Named { name, .. }) => Ok(name),
        Err(fault) => Err(Error::NotOperator {
            reason: fault.message,
        }),
    }
}

/// Which credential `presented` is: the boot client token, else a live named token.
fn authenticate(inner: &Inner, presented: &[u8]) -> Result<Credential, Fault> {
    let client = {
        let secret = inner.client_secret.lock();
        secret.as_ref().is_some_and(|t| t.matches(presented))
    };
    if client {
        return Ok(Credential::Client);
    }
    let wrong = || {
        Fault::new(
            ErrorCode::Unauthorized,
            format!(
                "wrong client token: read it from {}{}",
                inner.client_token_path().display(),
                if inner.operators.is_some() {
                    " or use a live token from `logoscore issue-token`"
                } else {
                    ""
                }
            ),
        )
    };
    let Some(store) = &inner.operators else {
        return Err(wrong());
    };
    match store.verify(presented, SystemTime::now()) {
        Verdict::Valid { name } => match Token::from_slice(presented) {
            Some(token) => Ok(Credential::Named { name, token }),
            None => Err(wrong()),
        },
        Verdict::Expired { name } => Err(Fault::new(
            ErrorCode::Unauthorized,
            format!(
                "the operator token {name:?} has expired; issue a new one (`logoscore issue-token --name {name} --replace`)"
            ),
        )),
        Verdict::Unreadable(why) => Err(Fault::new(
            ErrorCode::Unauthorized,
            format!("the token store cannot be read, so no named token is accepted: {why}"),
        )),
        Verdict::Unknown => Err(wrong()),
    }
}

async fn admit_client(weak: Weak<Inner>, pending: PendingSession) {
    let Some(inner) = weak.upgrade() else { return };
    let credential = match authenticate(&inner, &pending.hello.token) {
        Ok(c) => c,
        Err(fault) => {
            tracing::warn!(
                pid = ?pending.pid,
                identity = %pending.hello.identity,
                "control endpoint: refused a client: {}", fault.message
            );
            pending.refuse(fault).await;
            return;
        }
    };
    let identity = match &credential {
        Credential::Client => format!(
            "client:{}",
            pending
                .pid
                .map_or_else(|| "?".to_owned(), |p| p.to_string())
        ),
        Credential::Named { name, .. } => format!(
            "operator:{name}:{}",
            pending
                .pid
                .map_or_else(|| "?".to_owned(), |p| p.to_string())
        ),
    };
    let welcome = Welcome {
        major: logos_wire::PROTOCOL_MAJOR,
        minor: logos_wire::PROTOCOL_MINOR,
        identity: CORE_MODULE.to_owned(),
        attrs: [
            ("instance".to_owned(), Value::from(inner.instance.as_str())),
            ("version".to_owned(), Value::from(env!("CARGO_PKG_VERSION"))),
        ]
        .into_iter()
        .collect(),
    };
    let named = matches!(credential, Credential::Named { .. });
    let handler = Arc::new(ClientConn {
        inner: weak,
        credential,
    });
    drop(inner);
    match pending
        .accept(identity, welcome, Arc::clone(&handler) as Arc<dyn Handler>)
        .await
    {
        Ok(session) if named => {
            // Requests are checked as they come; this ends a quiet connection (a `watch`)
            // soon after its token is revoked or expires.
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = session.closed() => return,
                        () = tokio::time::sleep(RECHECK) => {}
                    }
                    let Some(inner) = handler.inner.upgrade() else {
                        return;
                    };
                    if handler.enforce(&inner, &session).is_err() {
                        return;
                    }
                }
            });
        }
        Ok(_) => {}
        Err(e) => tracing::debug!("control endpoint: accept failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::MAX_SESSION_SUBSCRIPTIONS;
    use crate::manifest::Manifest;
    use logos_session::Refuse;
    use logos_wire::Hello;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A real connection over a socketpair; returns the core's end (what handlers see).
    async fn session() -> Result<(Session, Session), Box<dyn std::error::Error>> {
        let (a, b) = tokio::net::UnixStream::pair()?;
        let server = tokio::spawn(async move {
            let pending = logos_session::read_hello(a, Default::default()).await?;
            let welcome = Welcome {
                major: logos_wire::PROTOCOL_MAJOR,
                minor: logos_wire::PROTOCOL_MINOR,
                identity: CORE_MODULE.to_owned(),
                attrs: Default::default(),
            };
            pending
                .accept("peer".to_owned(), welcome, Arc::new(Refuse))
                .await
        });
        let hello = Hello {
            major: logos_wire::PROTOCOL_MAJOR,
            minor: logos_wire::PROTOCOL_MINOR,
            identity: "peer".to_owned(),
            token: Default::default(),
            attrs: Default::default(),
        };
        let (peer, _) =
            logos_session::connect(b, hello, Arc::new(Refuse), Default::default()).await?;
        Ok((server.await??, peer))
    }

    fn core_with(builder: crate::Builder) -> Result<crate::Core, Error> {
        let core = builder.build()?;
        let registered = core
            .inner
            .registry()
            .register(Manifest::for_test("probe", "1.0.0", &[]));
        assert!(registered.is_ok());
        Ok(core)
    }

    #[tokio::test]
    async fn a_module_holds_only_real_core_events_and_a_client_a_bounded_number() -> TestResult {
        let core = core_with(crate::Core::builder())?;
        let inner = &core.inner;
        let (mine, _peer) = session().await?;
        let module = ModuleConn::new(inner, "probe");
        for i in 0..10_000 {
            module.subscribe(&mine, CORE_MODULE, &format!("noSuchEvent{i}"));
            module.subscribe(&mine, &format!("other{i}"), "");
        }
        assert_eq!(inner.hub.session_subscriptions(mine.id()), 0);
        for event in [
            "",
            "moduleUp",
            "moduleDown",
            "moduleCrashed",
            "stateChanged",
        ] {
            module.subscribe(&mine, CORE_MODULE, event);
            module.subscribe(&mine, CORE_MODULE, event);
        }
        assert_eq!(inner.hub.session_subscriptions(mine.id()), 5);
        module.unsubscribe(&mine, CORE_MODULE, "moduleUp");
        assert_eq!(inner.hub.session_subscriptions(mine.id()), 4);

        let (client_end, _client) = session().await?;
        let client = ClientConn {
            inner: Arc::downgrade(inner),
            credential: Credential::Client,
        };
        for i in 0..10_000 {
            client.subscribe(&client_end, "calc", &format!("event{i}"));
        }
        client.subscribe(&client_end, CORE_MODULE, "noSuchEvent");
        client.subscribe(&client_end, &"x".repeat(1 << 20), "");
        client.subscribe(&client_end, "calc", &"x".repeat(1 << 20));
        assert_eq!(
            inner.hub.session_subscriptions(client_end.id()),
            MAX_SESSION_SUBSCRIPTIONS
        );
        client.closed(&client_end, "done");
        assert_eq!(inner.hub.session_subscriptions(client_end.id()), 0);
        assert!(!inner.hub.has_subscribers("calc"));
        Ok(())
    }

    #[tokio::test]
    async fn a_module_denied_the_core_gets_no_core_events() -> TestResult {
        let core = core_with(crate::Core::builder().deny("probe", "core"))?;
        let (mine, _peer) = session().await?;
        ModuleConn::new(&core.inner, "probe").subscribe(&mine, CORE_MODULE, "moduleUp");
        assert_eq!(core.inner.hub.session_subscriptions(mine.id()), 0);
        Ok(())
    }
}
