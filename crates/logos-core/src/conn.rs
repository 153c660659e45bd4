//! The core's side of every connection: module control connections ([`ModuleConn`]), operator
//! clients on the control endpoint ([`ClientConn`], e.g. `logoscore`), and call routing.
//!
//! Owns who may do what on which connection: a module may use `capability_module` and read
//! `core` (mutating `core` needs `"core"` in its permissions) but never reach another module
//! through the core; a client holding the token in `client.token`, or a live named operator
//! token (`operators.rs`, checked again on every request), is the operator and may do
//! everything. Identity always comes from the connection. Never spawns processes.

use crate::builtin;
use crate::capability::Token;
use crate::core::{CAPABILITY_MODULE, CORE_MODULE, Inner};
use crate::error::Error;
use crate::operators::Verdict;
use futures::future::BoxFuture;
use logos_session::{Fault, Handler, PendingSession, Session};
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
            if self.enforce(&inner, session).is_err() {
                return;
            }
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
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let Some(inner) = weak.upgrade() else { return };
            let cfg = inner.settings.session.clone();
            let weak = weak.clone();
            drop(inner);
            tokio::spawn(async move {
                match logos_session::read_hello(stream, cfg).await {
                    Ok(pending) => admit_client(weak, pending).await,
                    Err(e) => tracing::debug!("control endpoint: handshake failed: {e}"),
                }
            });
        }
    }))
}

/// Which credential `presented` is: the boot client token, else a live named token.
fn authenticate(inner: &Inner, presented: &[u8]) -> Result<Credential, Fault> {
    let client = {
        let secret = inner
            .client_secret
            .lock()
            .unwrap_or_else(|p| p.into_inner());
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
