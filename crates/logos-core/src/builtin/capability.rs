//! `capability_module`: mints the token a module needs to call another (the RFC flow).
//!
//! `requestModule(target)`: the caller is the module on whose control connection the request
//! arrived, never an argument. The access policy is checked, a token bound to exactly
//! (caller, target) is minted, handed to the target over its control connection (`$grant`,
//! with the caller's pid and, unless the caller may call every method, which methods it may
//! call and why not the others: `Policy::grant_for` over the target's interface), and returned to the caller with the target's endpoint and pid (which
//! the caller checks with `SO_PEERCRED` before it sends the token). A second
//! argument naming the caller (the RFC's form) is accepted only if it names the caller itself.
//!
//! Tokens never outlive a revocation: only a caller that is ready (or finishing its own
//! start) gets one, since a stopping or crashed module has had its tokens revoked already; and
//! if either side stops or restarts while the grant is on its way, the grant is taken back.

use crate::builtin::{at_most, name_arg};
use crate::conn::Caller;
use crate::name::ModuleName;
use crate::policy::MethodGrant;
use crate::registry::State;
use crate::state::Inner;
use logos_session::Fault;
use logos_wire::{ErrorCode, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Serves one call to `capability_module`.
pub(crate) async fn handle(
    inner: &Arc<Inner>,
    caller: &Caller,
    method: &str,
    args: Vec<Value>,
) -> Result<Value, Fault> {
    match method {
        "requestModule" => request_module(inner, caller, &args).await,
        _ => Err(Fault::new(
            ErrorCode::UnknownMethod,
            format!("capability_module has no method {method:?} (it has: requestModule)"),
        )),
    }
}

/// How often a token request is issued again when it raced a hot swap of its target (the
/// target is still ready, in a new process, which needs its own grant).
const SWAP_RETRIES: usize = 3;
/// Part of the message of a token request that raced a stop, restart or swap.
const RACED: &str = "stopped or restarted while the token was issued";

async fn request_module(
    inner: &Arc<Inner>,
    caller: &Caller,
    args: &[Value],
) -> Result<Value, Fault> {
    let mut tries = 0;
    loop {
        let result = request_module_once(inner, caller, args).await;
        tries += 1;
        let raced = matches!(&result, Err(f) if f.code == ErrorCode::Unavailable && f.message.contains(RACED));
        let target = args.first().and_then(Value::as_str).unwrap_or_default();
        if !raced || tries > SWAP_RETRIES || inner.registry().state(target) != State::Ready {
            return result;
        }
        tracing::debug!(
            target,
            "the target was hot-swapped while its token was issued; issuing again"
        );
    }
}

async fn request_module_once(
    inner: &Arc<Inner>,
    caller: &Caller,
    args: &[Value],
) -> Result<Value, Fault> {
    const M: &str = "capability_module.requestModule";
    at_most(args, 2, M)?;
    let target = name_arg(args, 0, "module", M)?;
    let Caller::Module(me) = caller else {
        return Err(Fault::new(
            ErrorCode::Unauthorized,
            "tokens are for modules: an operator or embedding app calls modules through the core",
        ));
    };
    if args.len() == 2 {
        let claimed = name_arg(args, 1, "caller", M)?;
        if claimed != me {
            tracing::warn!(caller = %me, claimed, target, "denied: module asked for a token in another module's name");
            return Err(Fault::new(
                ErrorCode::Unauthorized,
                format!("the caller is taken from the connection: you are {me:?}, not {claimed:?}"),
            ));
        }
    }
    let (
        target_session,
        caller_pid,
        target_pid,
        generations,
        method_grant,
        caller_remote,
        target_remote,
    ) = {
        let registry = inner.registry();
        if !registry.is_known(target) {
            return Err(registry.unknown(target).to_fault());
        }
        let Some(caller_manifest) = registry.manifest(me.as_str()) else {
            return Err(Fault::new(
                ErrorCode::Unauthorized,
                format!("{me} is not a known module"),
            ));
        };
        let decision = inner.policy().allows(caller_manifest, target);
        if !decision.is_allowed() {
            tracing::warn!(caller = %me, target, "access denied: {decision}");
            inner.counters.denied(me, target);
            return Err(Fault::new(ErrorCode::Unauthorized, decision.to_string()));
        }
        let interface =
            crate::stats::methods_read_only(registry.record(target).and_then(|r| r.interface()));
        let method_grant = inner
            .policy()
            .grant_for(caller_manifest, target, &interface);
        let caller_rec = registry.record(me.as_str());
        let caller_state = caller_rec.map_or(State::Known, |r| r.state());
        if !may_hold_tokens(caller_state) {
            tracing::warn!(caller = %me, target, "denied: {me} asked for a token while {caller_state}");
            return Err(Fault::new(
                ErrorCode::Unavailable,
                format!("module {me} is {caller_state}: only a ready module gets tokens"),
            ));
        }
        let rec = registry.record(target);
        let state = rec.map_or(State::Known, |r| r.state());
        let Some(session) = rec
            .filter(|_| state == State::Ready)
            .and_then(|r| r.session().cloned())
        else {
            let code = if state.is_loaded() {
                ErrorCode::Unavailable
            } else {
                ErrorCode::NotLoaded
            };
            return Err(Fault::new(code, format!("module {target} is {state}")));
        };
        let generations = (
            caller_rec.map_or(0, |r| r.generation()),
            rec.map_or(0, |r| r.generation()),
        );
        (
            session,
            caller_rec.and_then(|r| r.pid()),
            rec.and_then(|r| r.pid()),
            generations,
            method_grant,
            caller_rec.is_some_and(|r| r.remote().is_some()),
            rec.is_some_and(|r| r.remote().is_some()),
        )
    };
    // Across machines the core relays peer connections (remote/relay.rs): a remote caller's
    // connection reaches a local target from the core's own process, so its grant names the
    // core's pid; a remote target cannot see any local pid, so its grant names none, and the
    // core checks the caller's pid itself before it relays.
    let core_pid = std::process::id();
    let caller_pid = if target_remote {
        None
    } else if caller_remote {
        Some(core_pid)
    } else {
        caller_pid
    };
    let target_pid = if target_remote {
        Some(core_pid)
    } else {
        target_pid
    };
    let pair = ModuleName::new(me).and_then(|c| Ok((c, ModuleName::new(target)?)));
    let token = pair
        .and_then(|(c, t)| inner.tokens().mint(&c, &t))
        .map_err(|e| e.to_fault())?;
    let mut grant = vec![
        Value::from(me.as_str()),
        Value::Bytes(token.as_bytes().to_vec().into()),
        caller_pid.map_or(Value::Null, Value::from),
    ];
    // Left out when every method is allowed, so a module written before method grants
    // existed (taking three arguments) keeps working for the callers it serves in full.
    if let Some(g) = &method_grant {
        grant.push(grant_value(g));
    }
    target_session
        .call(target, "$grant", grant, Duration::from_secs(5))
        .await
        .map_err(|f| {
            Fault::new(
                ErrorCode::Unavailable,
                format!("could not hand the token to {target}: {f}"),
            )
        })?;
    if !unchanged(inner, me, target, generations) {
        // A stop or restart of either side revoked tokens while this grant was on its way:
        // take it back, so it does not outlive that revocation.
        inner.tokens().revoke(me, target);
        let _ = target_session
            .call(
                target,
                "$revoke",
                vec![Value::from(me.as_str())],
                Duration::from_secs(2),
            )
            .await;
        return Err(Fault::new(
            ErrorCode::Unavailable,
            format!("{me} or {target} {RACED}; ask again"),
        ));
    }
    tracing::debug!(caller = %me, target, "token minted");
    let mut reply = BTreeMap::new();
    reply.insert("module".to_owned(), Value::from(target));
    reply.insert(
        "token".to_owned(),
        Value::Bytes(token.as_bytes().to_vec().into()),
    );
    let endpoint = if caller_remote {
        // The remote caller opens a `call` link to the core naming the target.
        format!("link:{target}")
    } else {
        inner.socket_path(target).to_string_lossy().into_owned()
    };
    reply.insert("endpoint".to_owned(), Value::from(endpoint));
    // The caller checks the endpoint's peer (SO_PEERCRED) against it before sending the token.
    reply.insert(
        "pid".to_owned(),
        target_pid.map_or(Value::Null, Value::from),
    );
    Ok(Value::Map(reply))
}

/// A [`MethodGrant`] as the fourth argument of `$grant` (docs/architecture.md, "Module
/// process contract" §6): `{"allow": [method], "deny": {method: reason}, "other": reason |
/// null}`.
fn grant_value(g: &MethodGrant) -> Value {
    let mut m = BTreeMap::new();
    m.insert(
        "allow".to_owned(),
        Value::List(g.allow.iter().map(|a| Value::from(a.as_str())).collect()),
    );
    m.insert(
        "deny".to_owned(),
        Value::Map(
            g.deny
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect(),
        ),
    );
    m.insert(
        "other".to_owned(),
        g.other.as_deref().map_or(Value::Null, Value::from),
    );
    Value::Map(m)
}

/// Whether a module in `state` may be given a token: ready, or starting (its handshake is
/// done and the core is recording it as ready). Every other state comes after its tokens
/// were revoked (stopping, crashed, backoff) or has no process.
fn may_hold_tokens(state: State) -> bool {
    matches!(state, State::Ready | State::Starting)
}

/// Whether caller and target are still the processes (`generations`) the grant was made for,
/// the caller still may hold tokens and the target is still ready.
fn unchanged(inner: &Inner, me: &str, target: &str, generations: (u64, u64)) -> bool {
    let registry = inner.registry();
    let (Some(c), Some(t)) = (registry.record(me), registry.record(target)) else {
        return false;
    };
    (c.generation(), t.generation()) == generations
        && may_hold_tokens(c.state())
        && t.state() == State::Ready
}
