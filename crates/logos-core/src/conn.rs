//! The core's side of every connection: module control connections ([`ModuleConn`]), operator
//! clients on the control endpoint ([`ClientConn`], e.g. `logoscore`), and call routing.
//!
//! Owns who may do what on which connection: a module may use `capability_module` and read
//! `core` (mutating `core` needs `"core"` in its permissions) but never reach another module
//! through the core; a client holding the token in `client.token` is the operator and may do
//! everything. Identity always comes from the connection. Never spawns processes.

use crate::builtin;
use crate::core::{CAPABILITY_MODULE, CORE_MODULE, Inner};
use crate::error::Error;
use futures::future::BoxFuture;
use logos_session::{Acceptor, DEFAULT_MAX_HANDSHAKES, Fault, Handler, PendingSession, Session};
use logos_wire::{Call, ErrorCode, Value, Welcome};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Weak};

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
    match target {
        CORE_MODULE => builtin::core::handle(inner, caller, method, args).await,
        CAPABILITY_MODULE => builtin::capability::handle(inner, caller, method, args).await,
        _ if caller.is_operator() => inner.call_module(target, method, args, None).await,
        _ => Err(Fault::new(
            ErrorCode::Unauthorized,
            format!(
                "modules call {target} directly: ask capability_module.requestModule(\"{target}\") for a token and connect to its endpoint"
            ),
        )),
    }
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
        if source == CORE_MODULE {
            inner.hub.subscribe_session(session, source, event);
        } else {
            tracing::warn!(
                module = %self.module,
                "asked the core for events of {source}; modules subscribe to other modules directly"
            );
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

/// The core's handler for one operator client on the control endpoint.
pub(crate) struct ClientConn {
    inner: Weak<Inner>,
}

impl Handler for ClientConn {
    fn call(&self, _session: Session, call: Call) -> BoxFuture<'static, Result<Value, Fault>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let inner = inner.upgrade().ok_or_else(gone)?;
            route_call(
                &inner,
                &Caller::Client,
                &call.target,
                &call.method,
                call.args,
            )
            .await
        })
    }

    fn subscribe(&self, session: &Session, source: &str, event: &str) {
        if let Some(inner) = self.inner.upgrade() {
            inner.hub.subscribe_session(session, source, event);
            inner.want_events(source);
        }
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

async fn admit_client(weak: Weak<Inner>, pending: PendingSession) {
    let Some(inner) = weak.upgrade() else { return };
    let ok = {
        let secret = inner
            .client_secret
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        secret
            .as_ref()
            .is_some_and(|t| t.matches(&pending.hello.token))
    };
    if !ok {
        tracing::warn!(
            pid = ?pending.pid,
            identity = %pending.hello.identity,
            "control endpoint: refused a client with a wrong token"
        );
        pending
            .refuse(Fault::new(
                ErrorCode::Unauthorized,
                format!(
                    "wrong client token: read it from {}",
                    inner.client_token_path().display()
                ),
            ))
            .await;
        return;
    }
    let identity = format!(
        "client:{}",
        pending
            .pid
            .map_or_else(|| "?".to_owned(), |p| p.to_string())
    );
    let welcome = Welcome {
        major: logos_wire::PROTOCOL_MAJOR,
        minor: logos_wire::PROTOCOL_MINOR,
        identity: CORE_MODULE.to_owned(),
        attrs: Default::default(),
    };
    let handler = Arc::new(ClientConn { inner: weak });
    drop(inner);
    if let Err(e) = pending.accept(identity, welcome, handler).await {
        tracing::debug!("control endpoint: accept failed: {e}");
    }
}
