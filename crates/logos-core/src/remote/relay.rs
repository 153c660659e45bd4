//! Peer connections across the link: the core relays them, and vouches for the caller.
//!
//! Modules call each other over peer connections admitted by a token and the caller's pid
//! (docs/architecture.md). Across machines neither side can see the other's pid, so the core
//! stands in the middle and checks what the target cannot:
//!
//! - **local caller → remote target**: the core binds the target's usual socket path
//!   (`<runtime>/modules/<name>.sock`) itself and answers `requestModule` with its own pid
//!   there. On each connection it reads the caller's `hello`, checks that the connecting
//!   process (`SO_PEERCRED`) is the module the `hello` names and that the token is the one
//!   minted for that pair, asks the target to open a link back (`$dial` with a one-time
//!   ticket, since a remote module may sit behind NAT), and splices the two, passing the
//!   `hello` on unchanged. The target checks the token again; its grant carries no pid.
//! - **remote caller → any target**: the caller opens a `call` link naming the target. The
//!   core requires the peer `hello` on it to name the module the link authenticated (so a
//!   remote module can never act as another), checks the token, connects to the target (a
//!   local one's socket, whose pid it checks, or a remote one's dial-back) and splices. A
//!   local target's grant names the core's pid: only the core can present that token.
//!
//! Owns the proxy sockets, the tickets and those checks. Every relayed connection is cut
//! when either module disconnects, is unloaded or is revoked (`Remote::cut_links`), so a call
//! in flight over a dead link fails with `unavailable` at once. Never changes module state.

use super::{Held, Remote, ServerTls, Waiting};
use crate::name::ModuleName;
use crate::registry::State;
use crate::state::Inner;
use bytes::{Bytes, BytesMut};
use logos_remote::link::{self, ReadError};
use logos_session::{Acceptor, DEFAULT_MAX_HANDSHAKES, Fault};
use logos_wire::{ErrorCode, Hello, MAX_HANDSHAKE_FRAME, Message, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};

/// How long a peer has for its `hello`, and a target for its dial-back.
const PEER_HANDSHAKE: Duration = Duration::from_secs(5);
/// How long a refusal may take to reach a peer.
const REFUSAL: Duration = Duration::from_secs(1);

/// Binds the proxy socket of remote module `name` and serves it until the task is aborted
/// (its link ends). Returns the accept task.
///
/// # Errors
/// The socket cannot be bound.
pub(crate) fn open_proxy(
    inner: &Arc<Inner>,
    name: &str,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let path = inner.socket_path(name);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let weak = Arc::downgrade(inner);
    let target = name.to_owned();
    Ok(tokio::spawn(async move {
        let mut acceptor = Acceptor::new(listener, DEFAULT_MAX_HANDSHAKES);
        loop {
            let (stream, mut ticket) = acceptor.accept().await;
            let (weak, target) = (weak.clone(), target.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = proxy_one(weak, target, stream) => {}
                    () = ticket.evicted() => {}
                }
            });
        }
    }))
}

/// Reads one frame from a unix stream within [`PEER_HANDSHAKE`].
async fn first_frame<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<(Hello, Bytes), String> {
    match tokio::time::timeout(
        PEER_HANDSHAKE,
        link::read_frame(stream, buf, MAX_HANDSHAKE_FRAME),
    )
    .await
    {
        Ok(Ok((Message::Hello(h), raw))) => Ok((h, raw)),
        Ok(Ok((other, _))) => Err(format!("expected hello, got {}", other.kind_name())),
        Ok(Err(ReadError::Wire(e))) => Err(format!("invalid hello: {e}")),
        Ok(Err(e)) => Err(format!("no hello: {e}")),
        Err(_) => Err(format!("no hello within {PEER_HANDSHAKE:?}")),
    }
}

/// A local module's connection to remote `target`'s proxy socket.
async fn proxy_one(weak: Weak<Inner>, target: String, mut stream: UnixStream) {
    let mut buf = BytesMut::new();
    let (hello, raw) = match first_frame(&mut stream, &mut buf).await {
        Ok(x) => x,
        Err(why) => {
            tracing::debug!(%target, "proxy: {why}");
            return;
        }
    };
    let Some(inner) = weak.upgrade() else { return };
    let Some(remote) = inner.remote.get().cloned() else {
        return;
    };
    let caller = hello.identity.clone();
    let pid = stream
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .and_then(|p| u32::try_from(p).ok());
    let checked = (|| {
        let registry = inner.registry();
        let rec = registry.record(&caller);
        let Some(rec) = rec.filter(|r| r.remote().is_none() && r.state() == State::Ready) else {
            return Err(format!(
                "{caller:?} is not a ready local module; only modules connect here"
            ));
        };
        if rec.pid().is_none() || rec.pid() != pid {
            return Err(format!(
                "the connecting process (pid {}) is not module {caller:?} (pid {})",
                pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                rec.pid().map_or_else(|| "?".to_owned(), |p| p.to_string())
            ));
        }
        drop(registry);
        if !inner.tokens().verify(&caller, &target, &hello.token) {
            return Err(format!(
                "the token presented is not the live token of {caller:?} for {target:?}; ask capability_module.requestModule again"
            ));
        }
        Ok(())
    })();
    if let Err(why) = checked {
        tracing::warn!(%target, caller = %caller.chars().take(80).collect::<String>(), "refused a connection to a remote module: {why}");
        refuse_unix(stream, ErrorCode::Unauthorized, &why).await;
        return;
    }
    let far = match dial_back(&inner, &remote, &target).await {
        Ok(far) => far,
        Err(f) => {
            tracing::warn!(%target, %caller, "cannot reach the remote module for a peer connection: {}", f.message);
            refuse_unix(stream, f.code, &f.message).await;
            return;
        }
    };
    let (mut far, far_buf) = far;
    let splice = async move {
        far.write_all(&raw).await?;
        far.write_all(&buf).await?;
        far.flush().await?;
        if !far_buf.is_empty() {
            stream.write_all(&far_buf).await?;
        }
        logos_remote::splice(stream, far).await
    };
    remote.track(&caller, &target, splice);
    tracing::debug!(%caller, %target, "relaying a peer connection to a remote module");
}

async fn refuse_unix(mut stream: UnixStream, code: ErrorCode, why: &str) {
    link::refuse(&mut stream, code, why, REFUSAL).await;
}

/// Asks remote module `target` to open a link back (`$dial` with a fresh ticket) and waits
/// for it.
async fn dial_back(
    inner: &Arc<Inner>,
    remote: &Arc<Remote>,
    target: &str,
) -> Result<(Held<ServerTls>, BytesMut), Fault> {
    let unavailable = |why: String| Fault::new(ErrorCode::Unavailable, why);
    let session = inner
        .registry()
        .ready_session(target)
        .ok_or_else(|| unavailable(format!("remote module {target} is not connected")))?;
    let mut ticket = [0u8; 16];
    getrandom::fill(&mut ticket).map_err(|e| unavailable(format!("no randomness: {e}")))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    remote.tickets.lock().insert(
        ticket,
        Waiting {
            module: target.to_owned(),
            tx,
        },
    );
    let asked = session
        .call(
            target,
            "$dial",
            vec![Value::Bytes(ticket.to_vec().into())],
            PEER_HANDSHAKE,
        )
        .await;
    let answered = match asked {
        Ok(_) => tokio::time::timeout(PEER_HANDSHAKE, rx).await,
        Err(f) => {
            remote.tickets.lock().remove(&ticket);
            return Err(unavailable(format!(
                "remote module {target} could not be asked to open a connection: {f}"
            )));
        }
    };
    remote.tickets.lock().remove(&ticket);
    match answered {
        Ok(Ok(link)) => Ok(link),
        _ => Err(unavailable(format!(
            "remote module {target} did not open the connection it was asked for within {PEER_HANDSHAKE:?}"
        ))),
    }
}

/// A remote module's link asking for a peer connection to `target`.
pub(super) async fn call_link(
    inner: Arc<Inner>,
    remote: Arc<Remote>,
    mut tls: Held<ServerTls>,
    mut buf: BytesMut,
    caller: ModuleName,
    target: String,
    peer: SocketAddr,
) {
    let caller = caller.as_str().to_owned();
    let refuse_link = |why: &str| {
        tracing::warn!(%peer, %caller, target = %target.chars().take(80).collect::<String>(), "refused a call link: {why}");
    };
    let ready = |name: &str| {
        let registry = inner.registry();
        registry
            .record(name)
            .map(|r| (r.state(), r.remote().is_some(), r.pid()))
    };
    match ready(&caller) {
        Some((State::Ready, true, _)) => {}
        _ => {
            let why = format!(
                "{caller} has no control link up here; a remote module connects its control link first"
            );
            refuse_link(&why);
            link::refuse(&mut tls, ErrorCode::Unavailable, &why, REFUSAL).await;
            return;
        }
    }
    let (target_remote, target_pid) = match ready(&target) {
        Some((State::Ready, r, pid)) => (r, pid),
        Some((s, _, _)) => {
            let why = format!("module {target} is {s}");
            refuse_link(&why);
            link::refuse(&mut tls, ErrorCode::Unavailable, &why, REFUSAL).await;
            return;
        }
        None => {
            let why = format!("module {target} is not loaded");
            refuse_link(&why);
            link::refuse(&mut tls, ErrorCode::NotLoaded, &why, REFUSAL).await;
            return;
        }
    };
    if link::write_message(&mut tls, &link::welcome(inner.settings.heartbeat, peer))
        .await
        .is_err()
    {
        return;
    }
    let (hello, raw) = match first_frame(&mut tls, &mut buf).await {
        Ok(x) => x,
        Err(why) => {
            refuse_link(&why);
            link::refuse(&mut tls, ErrorCode::ProtocolError, &why, REFUSAL).await;
            return;
        }
    };
    // The core vouches for the caller: the hello must name the module the link proved to be.
    if hello.identity != caller {
        let why = format!(
            "this link is authenticated as module {caller:?}, but its hello says {:?}; a remote module cannot act as another",
            hello.identity.chars().take(80).collect::<String>()
        );
        refuse_link(&why);
        link::refuse(&mut tls, ErrorCode::Unauthorized, &why, REFUSAL).await;
        return;
    }
    if !inner.tokens().verify(&caller, &target, &hello.token) {
        let why = format!(
            "the token presented is not the live token of {caller:?} for {target:?}; ask capability_module.requestModule again"
        );
        refuse_link(&why);
        link::refuse(&mut tls, ErrorCode::Unauthorized, &why, REFUSAL).await;
        return;
    }
    if target_remote {
        let (mut far, far_buf) = match dial_back(&inner, &remote, &target).await {
            Ok(x) => x,
            Err(f) => {
                refuse_link(&f.message);
                link::refuse(&mut tls, f.code, &f.message, REFUSAL).await;
                return;
            }
        };
        let splice = async move {
            far.write_all(&raw).await?;
            far.write_all(&buf).await?;
            far.flush().await?;
            if !far_buf.is_empty() {
                tls.write_all(&far_buf).await?;
            }
            logos_remote::splice(tls, far).await
        };
        remote.track(&caller, &target, splice);
        return;
    }
    let path = inner.socket_path(&target);
    let local = match UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e) => {
            let why = format!("cannot connect to module {target}: {e}");
            refuse_link(&why);
            link::refuse(&mut tls, ErrorCode::Unavailable, &why, REFUSAL).await;
            return;
        }
    };
    let found = local
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .and_then(|p| u32::try_from(p).ok());
    if found.is_none() || found != target_pid {
        let why = format!(
            "the socket of module {target} is served by another process than the module; the token was not passed on"
        );
        refuse_link(&why);
        link::refuse(&mut tls, ErrorCode::Unauthorized, &why, REFUSAL).await;
        return;
    }
    let mut local = local;
    let splice = async move {
        local.write_all(&raw).await?;
        local.write_all(&buf).await?;
        logos_remote::splice(tls, local).await
    };
    remote.track(&caller, &target, splice);
    tracing::debug!(%caller, %target, "relaying a remote module's peer connection");
}

/// A remote module's link answering a `$dial`.
pub(super) async fn accept_link(
    inner: Arc<Inner>,
    remote: Arc<Remote>,
    mut tls: Held<ServerTls>,
    buf: BytesMut,
    module: ModuleName,
    ticket: Vec<u8>,
    peer: SocketAddr,
) {
    let key: Option<[u8; 16]> = ticket.as_slice().try_into().ok();
    let waiting = key.and_then(|k| {
        let mut tickets = remote.tickets.lock();
        match tickets.get(&k) {
            Some(w) if w.module == module.as_str() => tickets.remove(&k),
            _ => None,
        }
    });
    let Some(waiting) = waiting else {
        let why = format!(
            "no connection is waiting for module {module} with this ticket (expired, used, or issued to another module)"
        );
        tracing::warn!(%peer, %module, "refused an accept link: {why}");
        link::refuse(&mut tls, ErrorCode::Unauthorized, &why, REFUSAL).await;
        return;
    };
    if link::write_message(&mut tls, &link::welcome(inner.settings.heartbeat, peer))
        .await
        .is_err()
    {
        return;
    }
    let _ = waiting.tx.send((tls, buf));
}
