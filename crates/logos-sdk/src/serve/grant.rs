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
use std::collections::{HashMap, HashSet};
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
    /// Which methods its caller may call; `None`: every method.
    access: Option<Arc<Access>>,
}

/// Most methods an access list may name (an interface is far smaller; this bounds memory).
const MAX_ACCESS_METHODS: usize = 4096;
/// Longest refusal reason kept.
const MAX_REASON_LEN: usize = 4096;

/// Which methods one caller may call, as the core decided it (the fourth argument of
/// `$grant`, docs/architecture.md "Module process contract" §6): the allowed methods, the
/// reason for each refused method of the interface, and the reason for any other name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Access {
    allow: HashSet<String>,
    deny: HashMap<String, String>,
    /// With `{method}` where the called name goes; `None`: other names may be called.
    other: Option<String>,
}

impl Access {
    /// `None` when `method` may be called, else the reason it may not.
    pub(super) fn refusal(&self, method: &str) -> Option<String> {
        if self.allow.contains(method) {
            return None;
        }
        if let Some(why) = self.deny.get(method) {
            return Some(why.clone());
        }
        let shown: String = method.chars().take(80).collect();
        self.other.as_ref().map(|o| o.replace("{method}", &shown))
    }

    /// Reads `{"allow": [text], "deny": {text: text}, "other": text | null}`; `null` is
    /// `None` (every method).
    fn from_value(v: Value) -> Result<Option<Access>, String> {
        let Value::Map(mut m) = v else {
            return match v {
                Value::Null => Ok(None),
                _ => Err("access must be a map or null".to_owned()),
            };
        };
        let text = |v: Value, what: &str| match v {
            Value::Text(t) if t.len() <= MAX_REASON_LEN => Ok(t),
            _ => Err(format!(
                "{what} must be text of at most {MAX_REASON_LEN} bytes"
            )),
        };
        let mut access = Access::default();
        match m.remove("allow") {
            Some(Value::List(items)) if items.len() <= MAX_ACCESS_METHODS => {
                for i in items {
                    access.allow.insert(text(i, "an allowed method")?);
                }
            }
            None => {}
            _ => {
                return Err(format!(
                    "allow must be a list of at most {MAX_ACCESS_METHODS} methods"
                ));
            }
        }
        match m.remove("deny") {
            Some(Value::Map(items)) if items.len() <= MAX_ACCESS_METHODS => {
                for (k, v) in items {
                    access.deny.insert(k, text(v, "a reason")?);
                }
            }
            None => {}
            _ => {
                return Err(format!(
                    "deny must be a map of at most {MAX_ACCESS_METHODS} methods"
                ));
            }
        }
        access.other = match m.remove("other") {
            None | Some(Value::Null) => None,
            Some(v) => Some(text(v, "other")?),
        };
        if let Some(k) = m.keys().next() {
            return Err(format!("access has an unknown key {k:?}"));
        }
        Ok(Some(access))
    }
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
    ) -> Result<Option<Arc<Access>>, String> {
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
    let access = match state.check_grant(&caller, &token, pid) {
        Ok(access) => access,
        Err(why) => {
            tracing::warn!(%caller, ?pid, "refused a peer connection: {why}");
            pending
                .refuse(Fault::new(ErrorCode::Unauthorized, why))
                .await;
            return;
        }
    };
    let welcome = Welcome {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        identity: state.name.to_string(),
        attrs: Attrs::new(),
    };
    let handler = Arc::new(Conn {
        state: Arc::clone(&state),
        kind: Kind::Peer,
        access,
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
    fn check_grant(
        &self,
        caller: &str,
        token: &[u8],
        pid: Option<u32>,
    ) -> Result<Option<Arc<Access>>, String> {
        self.grants.check(&self.name, caller, token, pid)
    }

    /// `$grant(caller, token, pid, access)`: accept `caller` with `token` (from `pid`, if
    /// given), for the methods `access` allows (every one when it is null or left out).
    pub(super) fn grant(&self, args: Vec<Value>) -> Result<Value, Fault> {
        let (caller, token, pid, access) = grant_args(args)?;
        tracing::debug!(%caller, ?pid, restricted = access.is_some(), "token granted");
        let access = access.map(Arc::new);
        add_grant(
            &mut lock(&self.grants.0),
            caller,
            Grant { token, pid, access },
        );
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
) -> Result<Option<Arc<Access>>, String> {
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
        Some(g) => Ok(g.access.clone()),
    }
}

/// What `$grant` carries: caller, token, pid, access.
type GrantArgs = (String, Vec<u8>, Option<u32>, Option<Access>);

/// Reads `(caller: text, token: bytes, pid: int | null, access: map | null)`; `pid` and
/// `access` may be left out.
fn grant_args(args: Vec<Value>) -> Result<GrantArgs, Fault> {
    let bad = |why: &str| {
        Fault::new(
            ErrorCode::InvalidArgs,
            format!(
                "$grant takes (caller: text, token: bytes, pid: int | null, access: map | null): {why}"
            ),
        )
    };
    let mut it = args.into_iter();
    let caller = match it.next() {
        Some(Value::Text(c)) if !c.is_empty() => c,
        _ => return Err(bad("caller must be non-empty text")),
    };
    let token = match it.next() {
        Some(Value::Bytes(t)) if !t.is_empty() && t.len() <= MAX_TOKEN_LEN => t.to_vec(),
        _ => return Err(bad("token must be 1 to 1024 bytes")),
    };
    let pid = match it.next() {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().and_then(|p| u32::try_from(p).ok()) {
            Some(p) => Some(p),
            None => return Err(bad("pid must be a process id or null")),
        },
    };
    let access = match it.next() {
        None => None,
        Some(v) => Access::from_value(v).map_err(|why| bad(&why))?,
    };
    if it.next().is_some() {
        return Err(bad("too many arguments"));
    }
    Ok((caller, token, pid, access))
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
            access: None,
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
            Value::Bytes(vec![1; 32].into()),
            Value::from(42u32),
        ])
        .unwrap();
        assert_eq!(ok, ("greeter".to_owned(), vec![1; 32], Some(42), None));
        let no_pid = grant_args(vec![
            Value::from("a"),
            Value::Bytes(vec![1].into()),
            Value::Null,
        ])
        .unwrap();
        assert_eq!(no_pid.2, None);
        let omitted = grant_args(vec![Value::from("a"), Value::Bytes(vec![1].into())]).unwrap();
        assert_eq!(omitted.2, None);
        for bad in [
            vec![],
            vec![Value::from(""), Value::Bytes(vec![1].into())],
            vec![Value::from("a"), Value::from("text token")],
            vec![Value::from("a"), Value::Bytes(vec![].into())],
            vec![
                Value::from("a"),
                Value::Bytes(vec![1].into()),
                Value::from(-1),
            ],
            vec![
                Value::from("a"),
                Value::Bytes(vec![1].into()),
                Value::Null,
                Value::Null,
                Value::Null,
            ],
            vec![
                Value::from("a"),
                Value::Bytes(vec![1].into()),
                Value::Null,
                Value::from("all"),
            ],
        ] {
            let f = grant_args(bad).unwrap_err();
            assert_eq!(f.code, ErrorCode::InvalidArgs);
        }
    }

    #[test]
    fn access_lists_decide_per_method() {
        let v = Value::Map(
            [
                ("allow".to_owned(), Value::List(vec![Value::from("add")])),
                (
                    "deny".to_owned(),
                    Value::Map([("mul".to_owned(), Value::from("no mul: rule"))].into()),
                ),
                ("other".to_owned(), Value::from("no {method}: only add")),
            ]
            .into(),
        );
        let (_, _, _, access) = grant_args(vec![
            Value::from("greeter"),
            Value::Bytes(vec![1].into()),
            Value::Null,
            v,
        ])
        .unwrap();
        let a = access.unwrap();
        assert_eq!(a.refusal("add"), None);
        assert_eq!(a.refusal("mul").as_deref(), Some("no mul: rule"));
        assert_eq!(a.refusal("pow").as_deref(), Some("no pow: only add"));
        let open = Access::from_value(Value::Map(
            [("allow".to_owned(), Value::List(vec![]))].into(),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(open.refusal("anything"), None);
        assert!(Access::from_value(Value::Map([("typo".to_owned(), Value::Null)].into())).is_err());
        assert_eq!(Access::from_value(Value::Null), Ok(None));
    }

    #[test]
    fn grants_are_checked_per_caller_token_and_pid() {
        let grants = HashMap::from([(
            "greeter".to_owned(),
            vec![
                Grant {
                    token: vec![1; 32],
                    pid: None,
                    access: None,
                },
                Grant {
                    token: vec![2; 32],
                    pid: Some(77),
                    access: None,
                },
            ],
        )]);
        let check =
            |caller: &str, token: &[u8], pid| check_grant("calc", &grants, caller, token, pid);
        assert_eq!(check("greeter", &[1; 32], Some(5)), Ok(None));
        assert_eq!(check("greeter", &[1; 32], None), Ok(None));
        assert_eq!(check("greeter", &[2; 32], Some(77)), Ok(None));
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
