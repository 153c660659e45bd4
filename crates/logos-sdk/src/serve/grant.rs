//! Peer admission and grants: the security-critical part of the module-side runtime.
//!
//! Owns who may connect to this module's listening socket (docs/architecture.md, "Module
//! process contract" §6–7): the grants the core sends over the control connection (`$grant`,
//! `$revoke`), the accept loop with its pre-authentication bounds (logos-session's
//! `Acceptor`), and the check of each peer's `hello` — a live token granted for exactly that
//! caller, compared in constant time, and the grant's pid against the peer's `SO_PEERCRED`.
//! Never decides policy (who may call whom is the core's decision, expressed as grants) and
//! never reads identity from anything but a connection: the caller's name comes from its
//! `hello`, and is believed only together with the token the core minted for that name.

use super::Served;
use super::conn::{Conn, Kind};
use crate::context::lock;
use crate::module::Module;
use logos_session::{Acceptor, DEFAULT_MAX_HANDSHAKES, Fault, PendingSession, Session, Ticket};
use logos_wire::{Attrs, ErrorCode, PROTOCOL_MAJOR, PROTOCOL_MINOR, Value, Welcome};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;
use tokio::net::{UnixListener, UnixStream};

/// Live grants kept per caller; the oldest goes first beyond this.
const MAX_GRANTS_PER_CALLER: usize = 64;
/// Largest token accepted in `$grant` (tokens are 32 bytes; this only bounds memory).
const MAX_TOKEN_LEN: usize = 1024;

/// One token granted by the core.
struct Grant {
    token: Vec<u8>,
    pid: Option<u32>,
}

/// The live grants of a serving module: caller → its grants.
#[derive(Default)]
pub(super) struct Grants(Mutex<HashMap<String, Vec<Grant>>>);

impl Grants {
    /// Whether `caller` may connect with `token` from `pid` (see [`check_grant`]).
    fn check(
        &self,
        name: &str,
        caller: &str,
        token: &[u8],
        pid: Option<u32>,
    ) -> Result<(), String> {
        check_grant(name, &lock(&self.0), caller, token, pid)
    }
}

pub(super) async fn accept_loop<T: Module>(state: Arc<Served<T>>, listener: UnixListener) {
    // At most DEFAULT_MAX_HANDSHAKES peers wait for their hello at once, a newer one pushing
    // out the one that waited longest (so idle connections cannot lock real callers out), and
    // accept errors (EMFILE) back off instead of spinning: see logos-session's `Acceptor`.
    let mut acceptor = Acceptor::new(listener, DEFAULT_MAX_HANDSHAKES);
    let mut stop = state.stop.subscribe();
    loop {
        let (stream, ticket) = tokio::select! {
            a = acceptor.accept() => a,
            _ = stop.wait_for(Option::is_some) => return,
        };
        let state = Arc::clone(&state);
        tokio::spawn(admit(state, stream, ticket));
    }
}

/// Runs the handshake of one peer connection and admits it only with a live grant.
async fn admit<T: Module>(state: Arc<Served<T>>, stream: UnixStream, ticket: Ticket) {
    let config = state.ctx.inner.session_config();
    let pending = match logos_session::read_hello_admitted(stream, config, ticket).await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!("peer handshake failed: {e}");
            return;
        }
    };
    admit_pending(state, pending).await;
}

/// Admits a peer connection whose `hello` has been read, only with a live grant (a remote
/// module's relayed connections arrive here from `serve/remote.rs`).
pub(super) async fn admit_pending<T: Module>(state: Arc<Served<T>>, pending: PendingSession) {
    let caller = pending.hello.identity.clone();
    let token = pending.hello.token.clone();
    let pid = pending.pid;
    if let Err(why) = state.check_grant(&caller, &token, pid) {
        tracing::warn!(%caller, ?pid, "refused a peer connection: {why}");
        pending
            .refuse(Fault::new(ErrorCode::Unauthorized, why))
            .await;
        return;
    }
    let welcome = Welcome {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        identity: state.name.to_string(),
        attrs: Attrs::new(),
    };
    let handler = Arc::new(Conn {
        state: Arc::clone(&state),
        kind: Kind::Peer,
    });
    match pending.accept(caller.clone(), welcome, handler).await {
        Ok(session) => {
            lock(&state.peers).insert(session.id(), session.clone());
            // A `$revoke` may have run between the check and the insert: check again, so a
            // revoked caller never keeps a connection.
            if state.check_grant(&caller, &token, pid).is_err() {
                session.close(Fault::new(
                    ErrorCode::Unauthorized,
                    format!("the token of \"{caller}\" was revoked"),
                ));
            }
            if session.is_closed() {
                lock(&state.peers).remove(&session.id());
            }
            tracing::debug!(%caller, "peer connected");
        }
        Err(e) => tracing::debug!(%caller, "welcome could not be sent: {e}"),
    }
}

impl<T: Module> Served<T> {
    fn check_grant(&self, caller: &str, token: &[u8], pid: Option<u32>) -> Result<(), String> {
        self.grants.check(&self.name, caller, token, pid)
    }

    /// `$grant(caller, token, pid)`: accept `caller` with `token` (from `pid`, if given).
    pub(super) fn grant(&self, args: Vec<Value>) -> Result<Value, Fault> {
        let (caller, token, pid) = grant_args(args)?;
        tracing::debug!(%caller, ?pid, "token granted");
        add_grant(&mut lock(&self.grants.0), caller, Grant { token, pid });
        Ok(Value::Null)
    }

    /// `$revoke(module)`: forget every token of `module` and close its connections.
    pub(super) fn revoke(&self, args: Vec<Value>) -> Result<Value, Fault> {
        let module = match args.as_slice() {
            [Value::Text(m)] => m.clone(),
            _ => {
                return Err(Fault::new(
                    ErrorCode::InvalidArgs,
                    "$revoke takes (module: text)",
                ));
            }
        };
        lock(&self.grants.0).remove(&module);
        let doomed: Vec<Session> = lock(&self.peers)
            .values()
            .filter(|s| s.peer().identity == module)
            .cloned()
            .collect();
        tracing::debug!(%module, connections = doomed.len(), "tokens revoked");
        for s in doomed {
            s.close(Fault::new(
                ErrorCode::Unauthorized,
                format!("the tokens of \"{module}\" were revoked"),
            ));
        }
        Ok(Value::Null)
    }
}

/// Records a grant for `caller`. One live grant per (caller, pid): the core mints a new token
/// for a process only to replace the old one, so the old one stops working here at once
/// rather than lingering among the [`MAX_GRANTS_PER_CALLER`] kept (connections already made
/// with it stay). Beyond that bound the oldest grant goes first.
fn add_grant(grants: &mut HashMap<String, Vec<Grant>>, caller: String, grant: Grant) {
    let list = grants.entry(caller).or_default();
    list.retain(|g| g.pid != grant.pid);
    if list.len() >= MAX_GRANTS_PER_CALLER {
        list.remove(0);
    }
    list.push(grant);
}

/// Checks `token` against every live grant of module `name` for `caller` (constant-time per
/// comparison, and every grant compared), then the grant's pid. The error says why, for the
/// refusal sent to the peer.
fn check_grant(
    name: &str,
    grants: &HashMap<String, Vec<Grant>>,
    caller: &str,
    token: &[u8],
    pid: Option<u32>,
) -> Result<(), String> {
    if caller.is_empty() || token.is_empty() {
        return Err(format!(
            "module \"{name}\" accepts only connections that name their caller and present a token from capability_module.requestModule"
        ));
    }
    let Some(list) = grants.get(caller) else {
        return Err(format!(
            "no token was granted to \"{caller}\" for module \"{name}\"; ask capability_module.requestModule(\"{name}\") first"
        ));
    };
    let mut matched: Option<&Grant> = None;
    for g in list {
        let equal: bool = g.token.as_slice().ct_eq(token).into();
        if equal && matched.is_none() {
            matched = Some(g);
        }
    }
    match matched {
        None => Err(format!(
            "the token presented by \"{caller}\" is not a live token granted to it for module \"{name}\""
        )),
        Some(Grant {
            pid: Some(want), ..
        }) if pid != Some(*want) => Err(format!(
            "the token of \"{caller}\" is bound to pid {want}, but the connection comes from {}",
            pid.map_or_else(|| "an unknown pid".to_owned(), |p| format!("pid {p}"))
        )),
        Some(_) => Ok(()),
    }
}

/// Reads `(caller: text, token: bytes, pid: int | null)`; `pid` may be left out.
fn grant_args(args: Vec<Value>) -> Result<(String, Vec<u8>, Option<u32>), Fault> {
    let bad = |why: &str| {
        Fault::new(
            ErrorCode::InvalidArgs,
            format!("$grant takes (caller: text, token: bytes, pid: int | null): {why}"),
        )
    };
    let mut it = args.into_iter();
    let caller = match it.next() {
        Some(Value::Text(c)) if !c.is_empty() => c,
        _ => return Err(bad("caller must be non-empty text")),
    };
    let token = match it.next() {
        Some(Value::Bytes(t)) if !t.is_empty() && t.len() <= MAX_TOKEN_LEN => t,
        _ => return Err(bad("token must be 1 to 1024 bytes")),
    };
    let pid = match it.next() {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().and_then(|p| u32::try_from(p).ok()) {
            Some(p) => Some(p),
            None => return Err(bad("pid must be a process id or null")),
        },
    };
    if it.next().is_some() {
        return Err(bad("too many arguments"));
    }
    Ok((caller, token, pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_grant_for_the_same_caller_process_replaces_the_old_one() {
        let mut grants = HashMap::new();
        let grant = |t: u8, pid| Grant {
            token: vec![t; 32],
            pid,
        };
        add_grant(&mut grants, "probe".into(), grant(1, Some(10)));
        assert!(check_grant("relay", &grants, "probe", &[1; 32], Some(10)).is_ok());
        add_grant(&mut grants, "probe".into(), grant(2, Some(10)));
        let refused = check_grant("relay", &grants, "probe", &[1; 32], Some(10));
        assert!(
            refused
                .as_ref()
                .is_err_and(|why| why.contains("not a live token")),
            "{refused:?}"
        );
        assert!(check_grant("relay", &grants, "probe", &[2; 32], Some(10)).is_ok());
        // Another process of the caller (before the core revokes the old one) keeps its own.
        add_grant(&mut grants, "probe".into(), grant(3, Some(11)));
        assert!(check_grant("relay", &grants, "probe", &[2; 32], Some(10)).is_ok());
        assert!(check_grant("relay", &grants, "probe", &[3; 32], Some(11)).is_ok());
        // Distinct pids are still bounded.
        for pid in 100..100 + 2 * MAX_GRANTS_PER_CALLER as u32 {
            add_grant(&mut grants, "probe".into(), grant(4, Some(pid)));
        }
        assert_eq!(grants["probe"].len(), MAX_GRANTS_PER_CALLER);
    }

    #[test]
    fn grant_args_are_checked() {
        let ok = grant_args(vec![
            Value::from("greeter"),
            Value::Bytes(vec![1; 32]),
            Value::from(42u32),
        ])
        .unwrap();
        assert_eq!(ok, ("greeter".to_owned(), vec![1; 32], Some(42)));
        let no_pid =
            grant_args(vec![Value::from("a"), Value::Bytes(vec![1]), Value::Null]).unwrap();
        assert_eq!(no_pid.2, None);
        let omitted = grant_args(vec![Value::from("a"), Value::Bytes(vec![1])]).unwrap();
        assert_eq!(omitted.2, None);
        for bad in [
            vec![],
            vec![Value::from(""), Value::Bytes(vec![1])],
            vec![Value::from("a"), Value::from("text token")],
            vec![Value::from("a"), Value::Bytes(vec![])],
            vec![Value::from("a"), Value::Bytes(vec![1]), Value::from(-1)],
            vec![
                Value::from("a"),
                Value::Bytes(vec![1]),
                Value::Null,
                Value::Null,
            ],
        ] {
            let f = grant_args(bad).unwrap_err();
            assert_eq!(f.code, ErrorCode::InvalidArgs);
        }
    }

    #[test]
    fn grants_are_checked_per_caller_token_and_pid() {
        let grants = HashMap::from([(
            "greeter".to_owned(),
            vec![
                Grant {
                    token: vec![1; 32],
                    pid: None,
                },
                Grant {
                    token: vec![2; 32],
                    pid: Some(77),
                },
            ],
        )]);
        let check =
            |caller: &str, token: &[u8], pid| check_grant("calc", &grants, caller, token, pid);
        assert_eq!(check("greeter", &[1; 32], Some(5)), Ok(()));
        assert_eq!(check("greeter", &[1; 32], None), Ok(()));
        assert_eq!(check("greeter", &[2; 32], Some(77)), Ok(()));
        let e = check("greeter", &[2; 32], Some(78)).unwrap_err();
        assert!(e.contains("bound to pid 77") && e.contains("pid 78"), "{e}");
        let e = check("greeter", &[3; 32], None).unwrap_err();
        assert!(e.contains("not a live token"), "{e}");
        // The token of one caller is worthless to another.
        let e = check("chat", &[1; 32], None).unwrap_err();
        assert!(e.contains("no token was granted to \"chat\""), "{e}");
        let e = check("greeter", &[1; 31], None).unwrap_err();
        assert!(e.contains("not a live token"), "{e}");
        assert!(check("", &[1; 32], None).is_err());
        assert!(check("greeter", &[], None).is_err());
    }
}
