//! The handler of one connection of a serving module, control or peer.
//!
//! Owns what happens to each message once a connection is up: calls routed to the module (with
//! the in-flight count, the stats timer and the panic guard), the reserved `$grant`, `$revoke`
//! and `$stats` methods (control connection only), subscriptions to this module's events,
//! events from the core, incoming streams, `shutdown` and the end of a connection. Never admits
//! a connection (that is `grant.rs`) and never decides when the process stops (that is
//! `mod.rs`; a handler only asks for it).

use super::grant::Access;
use super::in_flight::Busy;
use super::{Served, Stop};
use crate::caller::Caller;
use crate::context::lock;
use crate::module::Module;
use crate::stats::CallTimer;
use crate::trace;
use futures::FutureExt;
use futures::future::BoxFuture;
use logos_session::{ByteStream, Fault, Handler, Session};
use logos_wire::{Call, ErrorCode, Value};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

impl<T: Module> Served<T> {
    /// Serves one incoming call that arrived on `session`. `access` is what the core allowed
    /// the peer (`None` on the control connection, or when it may call every method).
    pub(super) async fn dispatch(
        &self,
        kind: Kind,
        access: Option<&Access>,
        session: Session,
        call: Call,
    ) -> Result<Value, Fault> {
        let Call {
            target,
            method,
            args,
            trace: parent,
            ..
        } = call;
        let name = &*self.name;
        if target != name {
            return Err(Fault::new(
                ErrorCode::UnknownModule,
                format!("this is module \"{name}\"; it does not serve calls to \"{target}\""),
            ));
        }
        if method.starts_with('$') {
            return match kind {
                Kind::Control => self.reserved(&method, args),
                Kind::Peer => Err(Fault::new(
                    ErrorCode::Unauthorized,
                    format!("{name}.{method} is reserved for the core's control connection"),
                )),
            };
        }
        if let Some(why) = access.and_then(|a| a.refusal(&method)) {
            self.denied(&session.peer().identity, &method, &why);
            return Err(Fault::new(ErrorCode::Unauthorized, why));
        }
        let (run, span) = self.begin(&method, parent);
        let module = self.module.call(&self.ctx, &method, args);
        let caller = Caller::new(session, kind == Kind::Control);
        let module = Caller::scope(caller, AssertUnwindSafe(module).catch_unwind());
        let outcome = trace::scope(run.ctx, module).instrument(span).await;
        self.end(run, method, outcome)
    }

    /// Serves a call at once, without a future, when it can: to a synchronous `&self` method
    /// of this module that may run now ([`Instance::lend_now`](crate::Instance)), which every
    /// check of [`Served::dispatch`] would let through. Gives the call back otherwise, for
    /// `dispatch`. The same statistics, span, caller and trace context as `dispatch`.
    pub(super) fn dispatch_now(
        &self,
        kind: Kind,
        access: Option<&Access>,
        session: &Session,
        call: Call,
    ) -> Result<Result<Value, Fault>, Call> {
        if call.target != *self.name
            || call.method.starts_with('$')
            || access.is_some_and(|a| a.refusal(&call.method).is_some())
        {
            return Err(call);
        }
        let Some(module) = self.module.lend_now(&call.method) else {
            return Err(call);
        };
        let Call {
            method,
            args,
            trace: parent,
            ..
        } = call;
        let (run, span) = self.begin(&method, parent);
        let caller = Caller::new(session.clone(), kind == Kind::Control);
        let outcome = span.in_scope(|| {
            Caller::sync_scope(caller, || {
                trace::sync_scope(run.ctx, || {
                    std::panic::catch_unwind(AssertUnwindSafe(|| {
                        module.call_sync(&self.ctx, &method, args)
                    }))
                })
            })
        });
        drop(module);
        Ok(self.end(run, method, outcome))
    }

    /// What a call that will run records first: the in-flight count, its statistics' timer,
    /// and its span, a child of the caller's (or the root of a new trace), current while the
    /// method runs so the calls it makes are its children.
    fn begin(
        &self,
        method: &str,
        parent: Option<logos_wire::TraceContext>,
    ) -> (Running<'_>, tracing::Span) {
        let busy = self.in_flight.enter();
        // Dropped unfinished (cancel, deadline) it counts the call as an error.
        let timer = self.stats.start(method);
        let ctx = trace::child_of(parent.as_ref());
        let open = self.ctx.inner.spans().open_at(
            ctx,
            parent.map(|p| p.span_id),
            trace::Kind::Server,
            timer.started(),
        );
        let span = tracing::debug_span!(
            "call",
            module = &*self.name,
            method = %method,
            trace = %trace::Hex(&ctx.trace_id),
            span = %trace::Hex(&ctx.span_id),
        );
        let run = Running {
            _busy: busy,
            timer,
            ctx,
            open,
        };
        (run, span)
    }

    /// Records how the call `run` ended, `outcome` being the method's result or its panic.
    fn end(
        &self,
        run: Running<'_>,
        method: String,
        outcome: std::thread::Result<Result<Value, Fault>>,
    ) -> Result<Value, Fault> {
        let result = match outcome {
            Ok(result) => result,
            Err(panic) => {
                let msg = panic_message(panic.as_ref());
                tracing::error!(%method, "method panicked: {msg}");
                Err(Fault::new(
                    ErrorCode::MethodFailed,
                    format!("{}.{method} panicked: {msg}", self.name),
                ))
            }
        };
        let elapsed = run.timer.finish(result.as_ref().err().map(|f| f.code));
        self.ctx.inner.spans().finish_timed(
            run.open,
            elapsed,
            &self.name,
            method,
            result.as_ref().map(|_| ()),
        );
        result
    }

    /// Logs a call the core's access decision refuses and tells the core, which counts it
    /// (`logos_policy_denials_total`) and logs it with both names. Never waits for the core.
    fn denied(&self, peer: &str, method: &str, why: &str) {
        let method: String = method.chars().take(80).collect();
        tracing::warn!(caller = %peer, %method, "refused a call: {why}");
        if let Some(control) = lock(&self.control).clone() {
            let args = vec![Value::from(peer), Value::from(method.as_str())];
            tokio::spawn(async move {
                let _ = control
                    .call("core", "$denied", args, Duration::from_secs(5))
                    .await;
            });
        }
    }

    /// `$grant(caller, token, pid, access)`, `$revoke(module)` and `$stats()`, control
    /// connection only.
    fn reserved(&self, method: &str, args: Vec<Value>) -> Result<Value, Fault> {
        match method {
            "$grant" => self.grant(args),
            "$revoke" => self.revoke(args),
            "$stats" => {
                if !args.is_empty() {
                    return Err(Fault::new(
                        ErrorCode::InvalidArgs,
                        "$stats takes no arguments",
                    ));
                }
                Ok(self.stats.snapshot(
                    self.in_flight.count(),
                    self.ctx.inner.event_figures(),
                    self.ctx.inner.traffic(),
                ))
            }
            other => Err(Fault::new(
                ErrorCode::UnknownMethod,
                format!("unknown reserved method \"{other}\""),
            )),
        }
    }
}

/// A served call between [`Served::begin`] and [`Served::end`].
struct Running<'a> {
    /// Counts the call in flight until it is dropped.
    _busy: Busy<'a>,
    timer: CallTimer<'a>,
    /// The call's own trace context (its span's).
    ctx: logos_wire::TraceContext,
    open: Option<trace::Open>,
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-text panic payload)".to_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// The inherited connection to the core.
    Control,
    /// A connection another module made with a token.
    Peer,
}

/// The handler of one connection (control or peer) of a serving module.
pub(super) struct Conn<T> {
    pub(super) state: Arc<Served<T>>,
    pub(super) kind: Kind,
    /// What the peer may call; `None` on the control connection or for every method.
    pub(super) access: Option<Arc<Access>>,
}

impl<T: Module> Handler for Conn<T> {
    fn call_now(&self, session: &Session, call: Call) -> Result<Result<Value, Fault>, Call> {
        self.state
            .dispatch_now(self.kind, self.access.as_deref(), session, call)
    }

    fn call(&self, session: Session, call: Call) -> BoxFuture<'static, Result<Value, Fault>> {
        let state = Arc::clone(&self.state);
        let kind = self.kind;
        if kind == Kind::Control && call.method == "$dial" && call.target == *state.name {
            let answer = super::remote::dial(&state, call.args);
            return Box::pin(async move { answer });
        }
        let access = self.access.clone();
        Box::pin(async move { state.dispatch(kind, access.as_deref(), session, call).await })
    }

    fn subscribe(&self, session: &Session, source: &str, event: &str) {
        if source != &*self.state.name {
            tracing::debug!(%source, %event, "ignoring a subscription to another module's events");
            return;
        }
        self.state.ctx.add_subscriber(session, event);
    }

    fn unsubscribe(&self, session: &Session, source: &str, event: &str) {
        if source == &*self.state.name {
            self.state.ctx.remove_subscriber(session, event);
        }
    }

    fn event(&self, session: &Session, source: String, event: String, data: Vec<Value>) {
        match self.kind {
            Kind::Control => self.state.ctx.dispatch_event(&source, &event, data),
            Kind::Peer => tracing::debug!(
                peer = %session.peer().identity,
                %source,
                %event,
                "ignoring an event sent on an incoming connection"
            ),
        }
    }

    fn lagged(&self, _session: &Session, source: String, dropped: u64) {
        tracing::warn!(%source, dropped, "events were dropped: this module read them too slowly");
    }

    fn stream(&self, session: &Session, protocol: String, stream: ByteStream) {
        match self.state.ctx.stream_handler(&protocol) {
            Some(handler) => {
                let peer = session.peer().identity.clone();
                let fut = handler(stream);
                tokio::spawn(async move {
                    if AssertUnwindSafe(fut).catch_unwind().await.is_err() {
                        tracing::error!(%peer, %protocol, "stream handler panicked");
                    }
                });
            }
            None => {
                let msg = format!(
                    "module \"{}\" has no handler for stream protocol \"{protocol}\"",
                    self.state.name
                );
                stream.reset(ErrorCode::UnknownMethod, &msg);
            }
        }
    }

    fn health(&self) -> Option<String> {
        self.state.ctx.unhealthy()
    }

    fn shutdown(&self, session: &Session, grace: Duration) {
        match self.kind {
            Kind::Control => self.state.request_stop(Stop::Shutdown(grace)),
            Kind::Peer => tracing::warn!(
                peer = %session.peer().identity,
                "ignoring shutdown sent by a peer module"
            ),
        }
    }

    fn closed(&self, session: &Session, reason: &str) {
        self.state.ctx.forget_session(session.id());
        match self.kind {
            // A remote module's serve loop connects again instead (serve/remote.rs).
            Kind::Control if self.state.link.is_some() => {}
            Kind::Control => self
                .state
                .request_stop(Stop::ControlClosed(reason.to_owned())),
            Kind::Peer => {
                lock(&self.state.peers).remove(&session.id());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_read() {
        let p: Box<dyn std::any::Any + Send> = Box::new("boom");
        assert_eq!(panic_message(p.as_ref()), "boom");
        let p: Box<dyn std::any::Any + Send> = Box::new(String::from("bang"));
        assert_eq!(panic_message(p.as_ref()), "bang");
    }
}
