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

pub mod config;
pub mod error;
pub mod key;
pub mod node;

pub use config::Config;
pub use error::P2pError;
pub use node::{Node, PeerInfo};

use libp2p::{Multiaddr, PeerId};
use logos_sdk::{Context, Fault, module};
use std::time::Duration;

/// Deadline of `dial` when the caller gives none.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `listenAddrs` waits for the listeners to bind.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// The p2p module: a running libp2p node.
pub struct P2p {
    node: Node,
}

#[module]
impl P2p {
    #[init]
    fn new(ctx: &Context) -> Result<Self, String> {
        let config = Config::load(ctx.data_dir(), |k| std::env::var(k).ok())?;
        let key = key::load_or_create(&config.key_file)?;
        let node = Node::start(&config, key)?;
        tracing::info!(peer = %node.peer_id(), "libp2p node started");
        Ok(P2p { node })
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
