//! Remote modules: modules on other machines that join this core over TCP + TLS 1.3
//! (docs/remote-modules.md).
//!
//! Owns the network side: the listener and its limits (`listener.rs`), the core's TLS
//! identity (`identity.rs`), the credential store (`credential.rs`) and the relay of peer
//! connections between local and remote modules (`relay.rs`). Once a remote module's control
//! link is authenticated, its lifecycle (ready, disconnected, stopped) is the supervisor's
//! (`supervisor/remote.rs`), and its connection runs the same `ModuleConn` a local module's
//! fd 3 does, with the session speaking TLS itself (`logos_session::Transport`). Never
//! starts or signals a process.

pub(crate) mod credential;
mod identity;
mod listener;
pub(crate) mod relay;

pub use credential::RemoteCredentialInfo;
pub(crate) use credential::{Store, Verdict};

use crate::error::Error;
use crate::state::Inner;
use logos_remote::Pin;
use logos_session::Admission;
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin as StdPin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

/// A TLS link accepted by the listener.
pub(crate) type ServerTls = tokio_rustls::server::TlsStream<TcpStream>;

/// What [`crate::Core::grant_remote`] made: the credential file's text (holding the secret)
/// and the listing entry.
#[derive(Debug)]
#[non_exhaustive]
pub struct Granted {
    /// The credential file's text, to write 0600 and hand to the remote machine.
    pub document: String,
    /// The listing entry (never the secret).
    pub info: RemoteCredentialInfo,
}

/// What a link's credential proved: the module, the modules it may call, and until when.
pub(crate) struct Authenticated {
    pub name: crate::name::ModuleName,
    pub allow: BTreeSet<String>,
    pub expires_at: Option<SystemTime>,
}

/// A dial-back waiting for its link: the module asked (`$dial`) and where to hand the link.
struct Waiting {
    module: String,
    tx: oneshot::Sender<(Held<ServerTls>, bytes::BytesMut)>,
}

/// One relayed peer connection, cut when either end's module goes away.
struct Relayed {
    caller: String,
    target: String,
    abort: tokio::task::AbortHandle,
}

/// The listener's state, shared by its tasks.
pub(crate) struct Remote {
    /// Where the listener is bound.
    pub addr: SocketAddr,
    /// The core certificate's pin.
    pub pin: Pin,
    pub store: Store,
    acceptor: TlsAcceptor,
    peers: Arc<Mutex<HashMap<IpAddr, usize>>>,
    admission: Admission,
    tickets: Mutex<HashMap<[u8; 16], Waiting>>,
    relayed: Mutex<HashMap<u64, Relayed>>,
    next_relay: AtomicU64,
}

/// Opens the listener when the settings ask for one: identity, store, bound socket, accept
/// loop.
///
/// # Errors
/// [`Error::RemoteSetup`] (identity or store unusable), [`Error::Io`] (cannot bind).
pub(crate) async fn start(inner: &Arc<Inner>) -> Result<(), Error> {
    let Some(listen) = inner.settings.listen.clone() else {
        return Ok(());
    };
    let dir = inner.settings.remote_dir();
    if let Some(parent) = dir.parent() {
        crate::sys::create_private_dir(parent)?;
    }
    crate::sys::create_private_dir(&dir)?;
    let id = identity::load_or_create(&dir)?;
    let store = Store::open(dir.join("credentials.json"))?;
    let tls =
        logos_remote::tls::server_config(id.cert, id.key).map_err(|e| Error::RemoteSetup {
            reason: format!("the core's TLS identity: {e}"),
        })?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|source| Error::Io {
            what: format!("binding the remote module listener to {listen}"),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        what: format!("reading the address of the remote module listener ({listen})"),
        source,
    })?;
    let limits = inner.settings.remote;
    let remote = Arc::new(Remote {
        addr,
        pin: id.pin,
        store,
        acceptor: TlsAcceptor::from(tls),
        peers: Arc::default(),
        admission: Admission::new(limits.max_handshakes),
        tickets: Mutex::new(HashMap::new()),
        relayed: Mutex::new(HashMap::new()),
        next_relay: AtomicU64::new(1),
    });
    if inner.remote.set(Arc::clone(&remote)).is_err() {
        return Ok(());
    }
    tracing::info!(%addr, pin = %remote.pin, "listening for remote modules (TLS 1.3)");
    let task = tokio::spawn(listener::run(Arc::downgrade(inner), remote, listener));
    inner.tasks.lock().push(task);
    Ok(())
}

/// The listener, or the error saying how to turn it on.
pub(crate) fn get(inner: &Inner) -> Result<Arc<Remote>, Error> {
    inner.remote.get().cloned().ok_or_else(|| Error::RemoteSetup {
        reason: "this core does not listen for remote modules; start it with `logoscore run --listen HOST:PORT` (config `listen`, Builder::listen)".to_owned(),
    })
}

/// Issues a credential for `module`: `addresses` where the module should connect (default:
/// the bound listen address, unless it is a wildcard like 0.0.0.0, which names no host).
///
/// # Errors
/// No listener, an invalid name or address, a wildcard listen address without `addresses`,
/// or the store cannot be written.
pub(crate) fn grant(
    inner: &Inner,
    module: &str,
    expires_at: Option<SystemTime>,
    allow: Vec<String>,
    addresses: Vec<String>,
) -> Result<Granted, Error> {
    let remote = get(inner)?;
    let name = crate::name::ModuleName::new(module)?;
    if name.is_reserved() {
        return Err(Error::RemoteSetup {
            reason: format!("{module} is a built-in module of the core; it cannot be remote"),
        });
    }
    let mut allowed = BTreeSet::new();
    for a in allow {
        crate::name::ModuleName::new(&a)?;
        allowed.insert(a);
    }
    let addresses = if addresses.is_empty() {
        if remote.addr.ip().is_unspecified() {
            return Err(Error::RemoteSetup {
                reason: format!(
                    "this core listens on {}, which names no host a remote machine can reach; say where it is reached with --address HOST:PORT",
                    remote.addr
                ),
            });
        }
        vec![remote.addr.to_string()]
    } else {
        for a in &addresses {
            if logos_remote::credential::split_host_port(a).is_none() {
                return Err(Error::RemoteSetup {
                    reason: format!("address {a:?} is not host:port"),
                });
            }
        }
        addresses
    };
    let granted = remote.grant(&name, expires_at, allowed, addresses)?;
    tracing::info!(module, "issued a remote module credential");
    Ok(granted)
}

/// Revokes `module`'s credential and closes its live link at once. `Ok(false)` when it had
/// no live credential.
///
/// # Errors
/// No listener, or the store cannot be written.
pub(crate) fn revoke(inner: &Inner, module: &str) -> Result<bool, Error> {
    let remote = get(inner)?;
    let revoked = remote.store.revoke(module)?;
    if revoked {
        tracing::warn!(module, "remote module credential revoked; closing its link");
        let session = {
            let registry = inner.registry();
            registry
                .record(module)
                .filter(|r| r.remote().is_some())
                .and_then(|r| r.session().cloned())
        };
        if let Some(s) = session {
            s.close(logos_session::Fault::new(
                logos_wire::ErrorCode::Unauthorized,
                format!("the credential of module {module} was revoked"),
            ));
        }
        remote.cut_links(module);
    }
    Ok(revoked)
}

impl Remote {
    /// Takes a place among the connections of `ip`; `None` when it has
    /// `max` already.
    fn enter_peer(&self, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut peers = self.peers.lock();
        let n = peers.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            ip,
            peers: Arc::clone(&self.peers),
        })
    }

    /// Issues a new credential for `module` (replacing its live one).
    ///
    /// # Errors
    /// The store cannot be written, or `addresses` is empty.
    pub fn grant(
        &self,
        module: &crate::name::ModuleName,
        expires_at: Option<SystemTime>,
        allow: BTreeSet<String>,
        addresses: Vec<String>,
    ) -> Result<Granted, Error> {
        let (secret, info) = self.store.grant(module, expires_at, allow)?;
        let credential = logos_remote::Credential {
            module: module.as_str().to_owned(),
            core: addresses,
            pin: self.pin,
            secret,
            issued_at: Some(crate::operators::rfc3339(info.issued_at)),
            expires_at: info.expires_at.map(crate::operators::rfc3339),
        };
        Ok(Granted {
            document: credential.to_json(),
            info,
        })
    }

    /// Cuts every relayed peer connection `module` is an end of (it disconnected, was
    /// unloaded or revoked).
    pub fn cut_links(&self, module: &str) {
        let cut: Vec<Relayed> = {
            let mut relayed = self.relayed.lock();
            let ids: Vec<u64> = relayed
                .iter()
                .filter(|(_, r)| r.caller == module || r.target == module)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| relayed.remove(id)).collect()
        };
        if !cut.is_empty() {
            tracing::debug!(module, links = cut.len(), "cutting relayed connections");
        }
        for r in cut {
            r.abort.abort();
        }
    }

    /// Runs `splice` as a relayed connection between `caller` and `target`, cut when either
    /// goes away.
    fn track<F>(self: &Arc<Self>, caller: &str, target: &str, splice: F)
    where
        F: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let id = self.next_relay.fetch_add(1, Ordering::Relaxed);
        let me = Arc::downgrade(self);
        let (c, t) = (caller.to_owned(), target.to_owned());
        // Registered before the copying starts, so a cut right away finds it.
        let mut relayed = self.relayed.lock();
        let task = tokio::spawn(async move {
            if let Err(e) = splice.await {
                tracing::debug!(caller = %c, target = %t, "relayed connection ended: {e}");
            }
            if let Some(me) = me.upgrade() {
                me.relayed.lock().remove(&id);
            }
        });
        relayed.insert(
            id,
            Relayed {
                caller: caller.to_owned(),
                target: target.to_owned(),
                abort: task.abort_handle(),
            },
        );
    }
}

/// One connection's place in the per-peer count; freed on drop.
pub(crate) struct PeerSlot {
    ip: IpAddr,
    peers: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut peers = self.peers.lock();
        if let Some(n) = peers.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                peers.remove(&self.ip);
            }
        }
    }
}

/// A stream that holds its connection's [`PeerSlot`] for as long as it lives.
pub(crate) struct Held<S> {
    inner: S,
    _slot: PeerSlot,
}

impl<S> Held<S> {
    /// The stream and its place in the per-peer count, to be kept as long as the stream is.
    pub(crate) fn into_parts(self) -> (S, PeerSlot) {
        (self.inner, self._slot)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Held<S> {
    fn poll_read(
        mut self: StdPin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        StdPin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Held<S> {
    fn poll_write(
        mut self: StdPin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        StdPin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: StdPin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        StdPin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: StdPin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        StdPin::new(&mut self.inner).poll_shutdown(cx)
    }
}
