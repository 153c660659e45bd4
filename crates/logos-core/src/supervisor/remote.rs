//! The lifecycle of remote modules: a control link becomes a ready module, a lost link a
//! `disconnected` one, an operator's unload a stopped one. The supervisor's part of
//! docs/remote-modules.md; the network part is `crate::remote`.
//!
//! Owns admitting a remote module's own `hello` (name bound to its credential, version,
//! interface, metadata whose dependencies and permissions the credential allows, dependencies
//! loaded as for a local module), under the lifecycle lock like every change of what runs;
//! the remote heartbeat (three pings in a row unanswered, each given one interval, close the
//! link: a silent peer is found within three intervals of the first missed ping); and what a
//! lost link leads to (`moduleDown`, tokens revoked, relayed connections cut, the proxy
//! socket removed). Never restarts a remote module: the core did not start it, and it comes
//! back by connecting again. Never signals a process.

use super::{announce, load_locked, operation, refuse_after_shutdown, revoke};
use crate::manifest::Manifest;
use crate::name::{CORE_MODULE, ModuleName};
use crate::registry::{RemoteRunning, State};
use crate::remote::{Authenticated, Held, PeerSlot, Remote, ServerTls};
use crate::state::Inner;
use bytes::BytesMut;
use logos_session::{Fault, PendingSession, Session};
use logos_wire::{ErrorCode, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Pings in a row a remote module may leave unanswered before its link is closed.
const MISSED_HEARTBEATS: u32 = 3;

/// A control link whose credential checked out: welcome it, read the module's `hello` over
/// the link (the session speaks TLS on the TCP socket itself), and admit the module.
pub(crate) async fn control_link(
    inner: Arc<Inner>,
    remote: Arc<Remote>,
    mut tls: Held<ServerTls>,
    buf: BytesMut,
    who: Authenticated,
    peer: SocketAddr,
) {
    let Authenticated {
        name,
        allow,
        expires_at,
    } = who;
    let welcome = logos_remote::link::welcome(inner.settings.heartbeat, peer);
    if logos_remote::link::write_message(&mut tls, &welcome)
        .await
        .is_err()
    {
        return;
    }
    // From here the session itself speaks TLS on the TCP socket (logos-session's
    // `Transport`), with the very code a local module's control connection runs. The stream
    // keeps its place in the per-peer count for as long as the module's session lives.
    let (tls, slot) = tls.into_parts();
    let (tcp, conn) = tls.into_inner();
    let transport = logos_session::Transport::tls(tcp, conn);
    // Authenticated: the module's hello carries its whole interface, so the full frame cap.
    let mut cfg = inner.settings.session.clone();
    cfg.max_handshake_frame = cfg.max_frame;
    let pending = match logos_session::read_hello_over(transport, buf, cfg).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(%peer, module = %name, "remote module: no valid hello on its control link: {e}");
            return;
        }
    };
    let module = name.as_str().to_owned();
    match admit(
        &inner,
        &remote,
        pending,
        name,
        allow,
        peer,
        (slot, expires_at),
    )
    .await
    {
        Ok(()) => tracing::info!(%peer, module = %module, "remote module ready"),
        Err(why) => {
            tracing::warn!(%peer, module = %module, "remote module refused: {why}");
        }
    }
}

/// Checks the module's `hello` and makes it ready, under the lifecycle lock. `Err` with the
/// reason after refusing the hello.
async fn admit(
    inner: &Arc<Inner>,
    remote: &Arc<Remote>,
    pending: PendingSession,
    name: ModuleName,
    allow: BTreeSet<String>,
    peer: SocketAddr,
    slot: (PeerSlot, Option<SystemTime>),
) -> Result<(), String> {
    let manifest = match manifest_of(&pending, &name, &allow, &peer) {
        Ok(m) => m,
        Err(fault) => {
            let why = fault.message.clone();
            pending.refuse(fault).await;
            return Err(why);
        }
    };
    let remote = Arc::clone(remote);
    let outcome = operation(inner, move |inner| async move {
        Ok(admit_locked(&inner, &remote, pending, manifest, peer, slot).await)
    })
    .await;
    match outcome {
        Ok(r) => r,
        Err(e) => Err(e.to_string()),
    }
}

/// The manifest of a remote module from its hello, or the refusal.
fn manifest_of(
    pending: &PendingSession,
    name: &ModuleName,
    allow: &BTreeSet<String>,
    peer: &SocketAddr,
) -> Result<Manifest, Fault> {
    let hello = &pending.hello;
    let unauthorized = |m: String| Fault::new(ErrorCode::Unauthorized, m);
    if hello.identity != name.as_str() {
        return Err(unauthorized(format!(
            "this link is authenticated as module {:?}, but the module's hello says {:?}",
            name.as_str(),
            hello.identity.chars().take(80).collect::<String>()
        )));
    }
    let Some(version) = hello.attrs.get("version").and_then(Value::as_str) else {
        return Err(Fault::new(
            ErrorCode::ProtocolError,
            "a remote module's hello must carry attrs.version (its version)",
        ));
    };
    let metadata = hello.attrs.get("metadata").map(Value::to_json);
    let manifest = Manifest::from_remote(name, version, metadata, &peer.to_string())
        .map_err(|e| Fault::new(ErrorCode::InvalidMetadata, e.to_string()))?;
    let wants: Vec<&ModuleName> = manifest
        .dependencies
        .keys()
        .chain(manifest.permissions.iter())
        .filter(|m| !m.is_reserved() || m.as_str() == CORE_MODULE)
        .filter(|m| !allow.contains(m.as_str()))
        .collect();
    if !wants.is_empty() {
        let list: Vec<&str> = wants.iter().map(|m| m.as_str()).collect();
        let flags: Vec<String> = list.iter().map(|m| format!("--allow {m}")).collect();
        return Err(unauthorized(format!(
            "module {name}'s metadata names {} in its dependencies or permissions, which its credential does not allow; a remote module's metadata is its own word, so the operator decides: `logoscore remote grant {name} {}`",
            list.join(", "),
            flags.join(" ")
        )));
    }
    Ok(manifest)
}

async fn admit_locked(
    inner: &Arc<Inner>,
    remote: &Arc<Remote>,
    pending: PendingSession,
    manifest: Manifest,
    peer: SocketAddr,
    (slot, expires_at): (PeerSlot, Option<SystemTime>),
) -> Result<(), String> {
    let name = manifest.name.as_str().to_owned();
    if let Err(e) = refuse_after_shutdown(inner) {
        let why = e.to_string();
        pending
            .refuse(Fault::new(ErrorCode::Unavailable, why.clone()))
            .await;
        return Err(why);
    }
    // A newer link replaces an older one that still looks alive (half-open, not yet found out
    // by the heartbeat): the module is one process, and it says it is here now.
    let older = {
        let registry = inner.registry();
        registry
            .record(&name)
            .filter(|r| r.remote().is_some() && r.state() == State::Ready)
            .and_then(|r| r.session().cloned())
    };
    if let Some(old) = older {
        tracing::info!(module = %name, %peer, "a new control link replaces the module's older one");
        old.close(Fault::new(
            ErrorCode::Unavailable,
            format!("replaced by a newer link from {peer}"),
        ));
        remote.cut_links(&name);
        revoke(inner, &name).await;
    }
    let registered = inner.registry().register_remote(manifest.clone());
    if let Err(why) = registered {
        pending
            .refuse(Fault::new(ErrorCode::Unavailable, why.clone()))
            .await;
        return Err(why);
    }
    let deps: Vec<String> = manifest
        .dependencies
        .keys()
        .map(|d| d.as_str().to_owned())
        .collect();
    if !deps.is_empty() {
        let refs: Vec<&str> = deps.iter().map(String::as_str).collect();
        if let Err(e) = load_locked(inner, &refs).await {
            let why = format!("its dependencies cannot be loaded here: {e}");
            pending.refuse(Fault::new(e.code(), why.clone())).await;
            return Err(why);
        }
    }
    let (generation, change) = inner.registry().begin_start(&name);
    announce(inner, change);
    let (interface, accepted) = super::welcome_module(inner, &name, pending).await;
    let session = match accepted {
        Ok(s) => s,
        Err(e) => {
            let change = inner
                .registry()
                .start_failed(&name, generation, None, State::Stopped);
            announce(inner, change);
            return Err(format!("handshake failed: {e}"));
        }
    };
    let proxy = match crate::remote::relay::open_proxy(inner, &name) {
        Ok(p) => p,
        Err(e) => {
            session.close(Fault::new(
                ErrorCode::Unavailable,
                "the core cannot open this module's endpoint",
            ));
            let change = inner
                .registry()
                .start_failed(&name, generation, None, State::Stopped);
            announce(inner, change);
            return Err(format!(
                "cannot bind {}: {e}",
                inner.socket_path(&name).display()
            ));
        }
    };
    let (exit_tx, exit_rx) = watch::channel(false);
    let change = inner.registry().ready_remote(
        &name,
        RemoteRunning {
            session: session.clone(),
            interface,
            addr: peer.to_string(),
            exited: exit_rx,
        },
    );
    announce(inner, change);
    if inner.hub.has_subscribers(&name) {
        let _ = session.subscribe(&name, "");
    }
    inner
        .hub
        .publish(CORE_MODULE, "moduleUp", &[Value::from(name.as_str())]);
    let watcher = Arc::clone(inner);
    let (watched, wname) = (session.clone(), name.clone());
    tokio::spawn(async move {
        let reason = watched.closed().await;
        drop(slot);
        proxy.abort();
        link_ended(&watcher, &wname, generation, &reason).await;
        exit_tx.send_replace(true);
    });
    if let Some(at) = expires_at {
        // A credential that expires ends the link it opened, as a revocation does.
        let (expiring, ename) = (session.clone(), name.clone());
        tokio::spawn(async move {
            let left = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = expiring.closed() => {}
                () = tokio::time::sleep(left) => {
                    tracing::warn!(module = %ename, "the remote module's credential expired; closing its link");
                    expiring.close(Fault::new(
                        ErrorCode::Unauthorized,
                        format!("the credential of module {ename} expired at {}", crate::operators::rfc3339(at)),
                    ));
                }
            }
        });
    }
    tokio::spawn(heartbeat(Arc::clone(inner), name, generation, session));
    Ok(())
}

/// The control link of start `generation` of `name` ended.
async fn link_ended(inner: &Arc<Inner>, name: &str, generation: u64, reason: &str) {
    let Some((session, change)) = inner.registry().disconnected(name, generation) else {
        // A newer link owns the module now; it cleaned up after this one.
        return;
    };
    let path = inner.socket_path(name);
    let _ = std::fs::remove_file(&path);
    if let Some(remote) = inner.remote.get() {
        remote.cut_links(name);
    }
    if let Some(s) = session {
        s.close(Fault::new(
            ErrorCode::Unavailable,
            format!("remote module {name} disconnected"),
        ));
    }
    if change.is_none() {
        // An operator's stop: `stop_module` says and revokes what it must.
        tracing::info!(module = name, "remote module's link closed: {reason}");
        return;
    }
    tracing::warn!(
        module = name,
        "remote module disconnected: {reason}; it is unavailable until it connects again"
    );
    announce(inner, change);
    inner.hub.publish(
        CORE_MODULE,
        "moduleDown",
        &[Value::from(name), Value::from("disconnected")],
    );
    revoke(inner, name).await;
}

/// Pings a remote module; closes its link after [`MISSED_HEARTBEATS`] pings in a row were
/// not answered within one interval each.
///
/// An answered ping waits for the next tick of the core's shared heartbeat grid
/// (`super::heartbeat::next_beat`), as local modules' heartbeats do, so the core wakes once per beat for
/// all of them; an unanswered one is followed at once by the next, so a silent peer is still
/// found within three intervals of the first missed ping.
async fn heartbeat(inner: Arc<Inner>, name: String, generation: u64, session: Session) {
    let every = inner.settings.heartbeat;
    let mut missed = 0;
    let mut last_health: Option<String> = None;
    loop {
        if missed == 0 {
            let now = tokio::time::Instant::now();
            tokio::time::sleep_until(super::heartbeat::next_beat(inner.beat_epoch, every, now))
                .await;
        }
        if session.is_closed() || super::current_generation(&inner, &name) != Some(generation) {
            return;
        }
        match session.ping(every).await {
            Ok(health) => {
                missed = 0;
                if health != last_health {
                    inner
                        .registry()
                        .set_health(&name, generation, health.clone());
                    last_health = health;
                }
            }
            Err(f) if f.code == ErrorCode::Timeout => {
                missed += 1;
                if missed >= MISSED_HEARTBEATS {
                    let why = format!(
                        "remote module {name} answered none of {missed} heartbeats in {:?}; its link is closed (the peer is gone or stopped)",
                        every * missed
                    );
                    tracing::warn!(module = %name, "{why}");
                    session.close(Fault::new(ErrorCode::Unavailable, why));
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Stops a remote module on an operator's request: `shutdown`, then after `grace` the link
/// is closed. Returns once the link is gone.
pub(super) async fn stop(
    session: Option<Session>,
    exited: Option<watch::Receiver<bool>>,
    grace: Duration,
    name: &str,
) {
    let Some(mut exited) = exited else { return };
    if let Some(s) = &session {
        s.send_shutdown(grace);
    }
    if tokio::time::timeout(grace, exited.wait_for(|e| *e))
        .await
        .is_ok()
    {
        return;
    }
    tracing::warn!(
        module = name,
        "remote module did not close its link within {grace:?} of shutdown; closing it"
    );
    if let Some(s) = &session {
        s.close(Fault::new(
            ErrorCode::Unavailable,
            format!("module {name} was unloaded"),
        ));
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), exited.wait_for(|e| *e)).await;
}
