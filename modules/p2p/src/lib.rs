//! `p2p`: the platform's libp2p node as a logos module.
//!
//! One swarm per core (TCP + Noise + Yamux, identify, ping; `libp2p-stream` for the custom
//! protocols of other modules), its identity kept in a key file in the module's data dir.
//! Methods: `peerId`, `listenAddrs`, `dial`, `peers`, `disconnect`; docs/p2p.md has each
//! one, its errors and the status of the protocol API.
//!
//! # Layout
//!
//! | file | owns |
//! |---|---|
//! | `config.rs` | [`Config`]: defaults, `p2p.json`, `LOGOS_P2P_*` variables |
//! | `key.rs` | the identity key file (made on first start, 0600) |
//! | `node.rs` | [`Node`]: the swarm and the task that drives it |
//! | `hub.rs` | [`Hub`]: registrations, streams, owners, limits, events, shutdown |
//! | `pump.rs` | one stream's bytes between libp2p and the owner's byte stream |
//! | `calls.rs` | the owner's side of a stream whose data moves with calls |
//! | `error.rs` | [`P2pError`]: the stable error names |
//!
//! # Choices
//!
//! - **`libp2p-stream`** rather than a behaviour of our own: it negotiates a stream for any
//!   protocol id registered at run time and hands it over as a plain `AsyncRead + AsyncWrite`,
//!   which is all the bridge to the runtime's byte streams needs. Its control handle works
//!   beside the swarm task, so opening or accepting a stream never goes through that task.
//! - **Methods never wait on the swarm task for long**: they send it a command and await a
//!   oneshot answer under their own deadline; the task answers from its tables at once.
//! - **No access checks of its own**: who may register protocols or open streams is a
//!   method grant (`"p2p.registerProtocol"`, `"p2p.openStream"` in a caller's permissions,
//!   the operator's `[[grant]]`/`[[deny]]` with `methods`), decided by the core and enforced
//!   by the SDK before a method runs (docs/security.md, "Methods"). What a caller may do
//!   with a registration or stream it was granted is decided here: only its owner's
//!   connection touches it.

pub mod calls;
pub mod config;
pub mod error;
pub mod hub;
pub mod key;
pub mod node;
pub mod pump;

pub use config::Config;
pub use error::P2pError;
pub use hub::{Hub, Limits, Opened, Via};
pub use node::{Node, PeerInfo};

use libp2p::{Multiaddr, PeerId};
use logos_sdk::{ByteBuf, Context, ErrorCode, Events, Fault, Value, module};
use std::sync::Arc;
use std::time::Duration;

/// Deadline of `accept` and `openStream` when the caller gives none.
pub const DEFAULT_STREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// The events `p2p` sends, each to the owning module's connection only (for the interface;
/// they are sent with `Context::emit_to`).
#[derive(Debug, Events)]
pub enum P2pEvent {
    /// An inbound stream waits for `accept`.
    StreamInbound {
        registration: u64,
        stream_id: u64,
        protocol: String,
        peer: String,
    },
    /// The remote finished its half of a stream.
    StreamRemoteClosed { stream_id: u64 },
    /// A stream was reset: `by` is `remote`, `local`, `timeout`, `node_shutdown`, `conn_down`
    /// or `module_gone`.
    StreamReset {
        stream_id: u64,
        by: String,
        message: String,
    },
    /// The node stops within `graceMs`; streams still open then are reset.
    NodeStopping { grace_ms: u64 },
    /// The node stopped.
    NodeStopped,
    /// A registration ended without the owner asking (node stop).
    RegistrationRevoked { registration: u64, reason: String },
}

/// Deadline of `dial` when the caller gives none.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `listenAddrs` waits for the listeners to bind.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// Default `maxBytes` of `read`.
const DEFAULT_READ: u64 = 64 * 1024;

/// Reads `{"via": "stream"|"calls"}` (every key optional) of `accept` and `openStream`.
fn via(options: Option<&Value>) -> Result<Via, P2pError> {
    let Some(options) = options else {
        return Ok(Via::Stream);
    };
    let Value::Map(m) = options else {
        return Err(P2pError::InvalidArgs(
            "the options are a map, e.g. {\"via\": \"calls\"}".into(),
        ));
    };
    if let Some(k) = m.keys().find(|k| k.as_str() != "via") {
        return Err(P2pError::InvalidArgs(format!(
            "unknown option {k:?}; the only option is \"via\": \"stream\" or \"calls\""
        )));
    }
    match m.get("via").map(|v| v.as_str()) {
        None | Some(Some("stream")) => Ok(Via::Stream),
        Some(Some("calls")) => Ok(Via::Calls),
        Some(_) => Err(P2pError::InvalidArgs(
            "\"via\" is \"stream\" (a runtime byte stream, the default) or \"calls\" (the data methods)".into(),
        )),
    }
}

fn ms_or(ms: Option<u64>, default: Duration) -> Duration {
    ms.map_or(default, Duration::from_millis)
}

fn size(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The p2p module: a running libp2p node.
pub struct P2p {
    node: Node,
    hub: Arc<Hub>,
}

impl P2p {
    fn stopping(&self) -> Result<(), P2pError> {
        if self.hub.is_stopping() {
            return Err(P2pError::NodeStopped(
                "the libp2p node is shutting down".into(),
            ));
        }
        Ok(())
    }
}

#[module(events = P2pEvent)]
impl P2p {
    #[init]
    fn new(ctx: &Context) -> Result<Self, String> {
        let config = Config::load(ctx.data_dir(), |k| std::env::var(k).ok())?;
        let key = key::load_or_create(&config.key_file)?;
        let node = Node::start(&config, key)?;
        tracing::info!(peer = %node.peer_id(), "libp2p node started");
        let hub = Hub::new(ctx.clone(), node.clone());
        let stopping = Arc::clone(&hub);
        ctx.on_shutdown(move |grace| {
            let hub = Arc::clone(&stopping);
            async move { hub.shutdown(grace).await }
        });
        Ok(P2p { node, hub })
    }

    /// This node's peer id (`12D3KooW…`).
    pub fn peer_id(&self) -> String {
        self.node.peer_id().to_string()
    }

    /// The addresses the node listens on, each ending in `/p2p/<peer id>` so another node can
    /// dial it as it is. Waits (up to 10 s) for the listeners to bind.
    pub async fn listen_addrs(&self) -> Result<Vec<String>, Fault> {
        let addrs = self.node.listen_addrs(LISTEN_WAIT).await?;
        let me = self.node.peer_id();
        Ok(addrs
            .into_iter()
            .map(|a| a.with_p2p(me).unwrap_or_else(|a| a).to_string())
            .collect())
    }

    /// Connects to `addr` (a multiaddr, with or without `/p2p/<peer id>`) within `timeoutMs`
    /// (default 10 000) and returns the peer id the remote proved.
    pub async fn dial(&self, addr: &str, timeout_ms: Option<u64>) -> Result<String, Fault> {
        let addr = multiaddr(addr)?;
        let timeout = timeout_ms.map_or(DEFAULT_DIAL_TIMEOUT, Duration::from_millis);
        Ok(self.node.dial(&addr, timeout).await?.to_string())
    }

    /// The connected peers: `[{peer, addrs, direction, agent, protocols, rttMs}]`.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, Fault> {
        Ok(self.node.peers().await?)
    }

    /// Closes every connection to `peer`; `false` when it was not connected.
    pub async fn disconnect(&self, peer: &str) -> Result<bool, Fault> {
        Ok(self.node.disconnect(peer_id(peer)?).await?)
    }

    /// Registers `protocols` for the calling module with `options` `{maxPendingInbound, maxOpenInbound, acceptTimeoutMs}`; returns the
    /// registration id.
    pub async fn register_protocol(
        &self,
        protocols: Vec<String>,
        options: Option<Value>,
    ) -> Result<u64, Fault> {
        self.stopping()?;
        let caller = self.hub.caller()?;
        let limits = Limits::from_value(options.as_ref())?;
        Ok(self.hub.register(&caller, protocols, limits)?)
    }

    /// Ends registration `id`: its protocols are refused from now on, its pending streams
    /// reset; accepted streams go on.
    pub fn unregister_protocol(&self, id: u64) -> Result<(), Fault> {
        let caller = self.hub.caller()?;
        Ok(self.hub.unregister(&caller, id)?)
    }

    /// The next inbound stream of registration `id`, waiting at most `timeoutMs` (default
    /// 10 000): `{streamId, protocol, peer}`. Its byte stream `p2p/<streamId>` is opened on
    /// the caller's connection first.
    pub async fn accept(
        &self,
        id: u64,
        timeout_ms: Option<u64>,
        options: Option<Value>,
    ) -> Result<Opened, Fault> {
        self.stopping()?;
        let caller = self.hub.caller()?;
        let via = via(options.as_ref())?;
        let timeout = timeout_ms.map_or(DEFAULT_STREAM_TIMEOUT, Duration::from_millis);
        Ok(self.hub.accept(&caller, id, timeout, via).await?)
    }

    /// Resets inbound stream `streamId`, which waits for `accept`.
    pub fn reject(&self, stream_id: u64) -> Result<(), Fault> {
        let caller = self.hub.caller()?;
        Ok(self.hub.reject(&caller, stream_id)?)
    }

    /// Opens a stream to `peer` for the first of `protocols` it supports, dialling `addrs` when not connected, all within `timeoutMs` (default
    /// 10 000): `{streamId, protocol, peer}`, its byte stream opened as for `accept`.
    pub async fn open_stream(
        &self,
        peer: &str,
        protocols: Vec<String>,
        addrs: Option<Vec<String>>,
        timeout_ms: Option<u64>,
        options: Option<Value>,
    ) -> Result<Opened, Fault> {
        self.stopping()?;
        let caller = self.hub.caller()?;
        let via = via(options.as_ref())?;
        let peer = peer_id(peer)?;
        let addrs = addrs
            .unwrap_or_default()
            .iter()
            .map(|a| multiaddr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let timeout = timeout_ms.map_or(DEFAULT_STREAM_TIMEOUT, Duration::from_millis);
        Ok(self
            .hub
            .open(&caller, peer, protocols, addrs, timeout, via)
            .await?)
    }

    /// Resets stream `streamId` both ways (the remote sees a reset).
    pub fn reset(&self, stream_id: u64) -> Result<(), Fault> {
        let caller = self.hub.caller()?;
        Ok(self.hub.command(&caller, stream_id, false)?)
    }

    /// Gives stream `streamId` up: our half is finished, what the remote still sends is
    /// dropped, the slot is freed.
    pub fn release(&self, stream_id: u64) -> Result<(), Fault> {
        let caller = self.hub.caller()?;
        Ok(self.hub.command(&caller, stream_id, true)?)
    }

    /// `{streamId, protocol, peer, direction, state, registration, owner, bytesIn, bytesOut,
    /// remoteClosed, localClosed, openedAtMs}` of stream `streamId`.
    pub fn stream_info(&self, stream_id: u64) -> Result<Value, Fault> {
        let caller = self.hub.caller()?;
        Ok(self.hub.info(&caller, stream_id)?)
    }

    /// Every registration: `[{registration, protocols, owner, pending, open, accepted,
    /// refused, expired, limits}]`.
    pub fn protocols(&self) -> Value {
        self.hub.protocols()
    }

    /// At least one and at most `maxBytes` (default 64 KiB) bytes of stream `streamId`
    /// (accepted or opened with `{"via": "calls"}`), waiting at most `timeoutMs` (10 000).
    pub async fn read(
        &self,
        stream_id: u64,
        max_bytes: Option<u64>,
        timeout_ms: Option<u64>,
    ) -> Result<ByteBuf, Fault> {
        let side = self.hub.call_side(&self.hub.caller()?, stream_id)?;
        let mut r = side.reader.lock().await;
        let max = size(max_bytes.unwrap_or(DEFAULT_READ));
        let timeout = ms_or(timeout_ms, DEFAULT_STREAM_TIMEOUT);
        Ok(ByteBuf::from(r.read(max, Some(timeout)).await?))
    }

    /// Exactly `n` bytes of stream `streamId` within `timeoutMs` (10 000).
    pub async fn read_exactly(
        &self,
        stream_id: u64,
        n: u64,
        timeout_ms: Option<u64>,
    ) -> Result<ByteBuf, Fault> {
        let side = self.hub.call_side(&self.hub.caller()?, stream_id)?;
        let mut r = side.reader.lock().await;
        let timeout = ms_or(timeout_ms, DEFAULT_STREAM_TIMEOUT);
        Ok(ByteBuf::from(r.read_exactly(size(n), Some(timeout)).await?))
    }

    /// One length-prefixed message (unsigned varint) of at most `maxSize` bytes of stream
    /// `streamId` within `timeoutMs` (10 000).
    pub async fn read_lp(
        &self,
        stream_id: u64,
        max_size: u64,
        timeout_ms: Option<u64>,
    ) -> Result<ByteBuf, Fault> {
        let side = self.hub.call_side(&self.hub.caller()?, stream_id)?;
        let mut r = side.reader.lock().await;
        let timeout = ms_or(timeout_ms, DEFAULT_STREAM_TIMEOUT);
        Ok(ByteBuf::from(
            r.read_lp(size(max_size), Some(timeout)).await?,
        ))
    }

    /// Writes `data` on stream `streamId`, waiting at most `timeoutMs` (10 000) for the
    /// remote to take it.
    pub async fn write(
        &self,
        stream_id: u64,
        data: ByteBuf,
        timeout_ms: Option<u64>,
    ) -> Result<(), Fault> {
        let side = self.hub.call_side(&self.hub.caller()?, stream_id)?;
        let timeout = ms_or(timeout_ms, DEFAULT_STREAM_TIMEOUT);
        Ok(side.write(&data, timeout).await?)
    }

    /// Writes `data` on stream `streamId` as one length-prefixed message.
    pub async fn write_lp(
        &self,
        stream_id: u64,
        data: ByteBuf,
        timeout_ms: Option<u64>,
    ) -> Result<(), Fault> {
        let side = self.hub.call_side(&self.hub.caller()?, stream_id)?;
        let timeout = ms_or(timeout_ms, DEFAULT_STREAM_TIMEOUT);
        Ok(side.write_lp(&data, timeout).await?)
    }

    /// Half-closes stream `streamId`: no more writes; reads go on.
    pub async fn close(&self, stream_id: u64) -> Result<(), Fault> {
        let side = self.hub.call_side(&self.hub.caller()?, stream_id)?;
        Ok(side.close().await?)
    }

    /// Half-closes stream `streamId` and waits at most `timeoutMs` (10 000) for the remote
    /// to finish too, discarding what it still sends; past that the stream is reset and
    /// the call fails with `timeout`.
    pub async fn close_with_eof(
        &self,
        stream_id: u64,
        timeout_ms: Option<u64>,
    ) -> Result<(), Fault> {
        let caller = self.hub.caller()?;
        let side = self.hub.call_side(&caller, stream_id)?;
        side.close().await?;
        let timeout = ms_or(timeout_ms, DEFAULT_STREAM_TIMEOUT);
        let drained = {
            let mut r = side.reader.lock().await;
            tokio::time::timeout(timeout, r.drain()).await
        };
        match drained {
            Ok(r) => Ok(r?),
            Err(_) => {
                let _ = self.hub.command(&caller, stream_id, false);
                Err(Fault::new(
                    ErrorCode::MethodFailed,
                    format!(
                        "timeout: the remote did not finish within {} ms; the stream was reset",
                        timeout.as_millis()
                    ),
                ))
            }
        }
    }
}

logos_sdk::export_module!(P2p);

fn multiaddr(s: &str) -> Result<Multiaddr, P2pError> {
    s.parse().map_err(|e| {
        P2pError::InvalidArgs(format!(
            "{s:?} is not a multiaddr ({e}); write e.g. \"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…\""
        ))
    })
}

fn peer_id(s: &str) -> Result<PeerId, P2pError> {
    s.parse()
        .map_err(|e| P2pError::InvalidArgs(format!("{s:?} is not a peer id ({e})")))
}
