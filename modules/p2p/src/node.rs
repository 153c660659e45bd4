//! [`Node`]: the libp2p swarm and the one task that drives it.
//!
//! The swarm (TCP + Noise + Yamux; identify, ping and `libp2p-stream`) lives inside a task
//! that only ever waits on two things: its own network events and [`Command`]s from the
//! module's methods. Answers go back through oneshot channels and figures through a watch, so
//! the task never awaits a module, a method or a slow reader: whatever a module does, the
//! node keeps serving every other peer and protocol. Streams themselves never pass through
//! this task: `libp2p-stream`'s [`Control`] opens and accepts them beside it.
//!
//! Never decides who may do what (`registry.rs`) and never touches stream data (`pump.rs`).

use crate::config::Config;
use crate::error::P2pError;
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, identity::Keypair, noise, ping, tcp, yamux};
use libp2p_stream::Control;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// The identify protocol version this node announces.
pub const PROTOCOL_VERSION: &str = "/logos/1.0.0";
/// Commands waiting for the swarm task; a method finding the queue full waits its turn.
const COMMAND_QUEUE: usize = 256;

/// What the swarm runs: identify, ping, and generic streams for the modules' protocols.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// One connected peer, as `peers` reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// The peer id.
    pub peer: String,
    /// The remote address of each connection.
    pub addrs: Vec<String>,
    /// `inbound`, `outbound` or `both`.
    pub direction: String,
    /// The agent the peer announced with identify (empty until it did).
    pub agent: String,
    /// The protocols the peer announced with identify.
    pub protocols: Vec<String>,
    /// The last ping round trip in milliseconds.
    pub rtt_ms: Option<u64>,
}

/// What the listeners have bound so far.
#[derive(Debug, Clone, Default)]
pub struct Listening {
    /// Bound addresses.
    pub addrs: Vec<Multiaddr>,
    /// Listeners that have not reported an address or a failure yet.
    pub pending: usize,
    /// Listeners that failed, with the reason.
    pub failed: Vec<String>,
}

/// Where a dial's outcome goes.
type DialReply = oneshot::Sender<Result<PeerId, P2pError>>;

/// A request to the swarm task.
enum Command {
    Dial {
        opts: DialOpts,
        peer: Option<PeerId>,
        reply: DialReply,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    Stop {
        reply: oneshot::Sender<()>,
    },
}

/// The running node: cheap handles to the swarm task.
#[derive(Clone)]
pub struct Node {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    control: Control,
    listening: watch::Receiver<Listening>,
}

impl Node {
    /// Builds the swarm with `key`, starts listening on `config.listen`, spawns the swarm task
    /// and dials the bootstrap peers. Must run inside the module's tokio runtime.
    ///
    /// # Errors
    /// A message naming what could not be set up (a listen address the transport cannot use,
    /// the transport itself).
    pub fn start(config: &Config, key: Keypair) -> Result<Node, String> {
        let peer_id = key.public().to_peer_id();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| format!("setting up TCP + Noise + Yamux: {e}"))?
            .with_behaviour(|key| Behaviour {
                identify: identify::Behaviour::new(
                    identify::Config::new(PROTOCOL_VERSION.to_owned(), key.public())
                        .with_agent_version(format!("logos-p2p/{}", env!("CARGO_PKG_VERSION"))),
                ),
                ping: ping::Behaviour::new(ping::Config::new()),
                stream: libp2p_stream::Behaviour::new(),
            })
            .map_err(|e| format!("setting up the behaviours: {e}"))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
            .build();
        let mut listening = Listening::default();
        let mut listeners = HashMap::new();
        for addr in &config.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            listeners.insert(id, addr.clone());
            listening.pending += 1;
        }
        let control = swarm.behaviour().stream.new_control();
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let (listen_tx, listen_rx) = watch::channel(listening);
        let task = Task {
            swarm,
            commands: rx,
            dials: HashMap::new(),
            peers: HashMap::new(),
            listeners,
            listening: listen_tx,
        };
        tokio::spawn(task.run());
        let node = Node {
            peer_id,
            commands,
            control,
            listening: listen_rx,
        };
        for addr in &config.bootstrap {
            let node = node.clone();
            let addr = addr.clone();
            tokio::spawn(async move {
                match node.dial(&addr, Duration::from_secs(30)).await {
                    Ok(peer) => tracing::info!(%addr, %peer, "bootstrap peer connected"),
                    Err(e) => tracing::warn!(%addr, "bootstrap peer not reached: {e}"),
                }
            });
        }
        Ok(node)
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// A handle for opening streams and accepting protocols (`libp2p-stream`).
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// The bound listen addresses, once every listener has bound or failed (at most `wait`).
    ///
    /// # Errors
    /// `timeout` when a listener has neither bound nor failed within `wait`; `node_stopped`.
    pub async fn listen_addrs(&self, wait: Duration) -> Result<Vec<Multiaddr>, P2pError> {
        let mut rx = self.listening.clone();
        let done = tokio::time::timeout(wait, rx.wait_for(|l| l.pending == 0)).await;
        match done {
            Ok(Ok(l)) => Ok(l.addrs.clone()),
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(P2pError::Timeout(format!(
                "the listeners did not bind within {wait:?}"
            ))),
        }
    }

    /// Connects to `addr` (with or without a trailing `/p2p/<peer id>`) and returns the peer
    /// id it proved. An address naming a peer already connected returns at once.
    ///
    /// # Errors
    /// `dial_failed` (with the transport's reasons), `timeout` after `timeout`, `node_stopped`.
    ///
    /// # Cancel safety
    /// Cancel safe: a dial still under way finishes in the swarm and is kept or dropped there.
    pub async fn dial(&self, addr: &Multiaddr, timeout: Duration) -> Result<PeerId, P2pError> {
        let peer = peer_of(addr);
        let opts = match peer {
            Some(p) => DialOpts::peer_id(p)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::Disconnected)
                .build(),
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        self.dial_opts(opts, peer, &addr.to_string(), timeout).await
    }

    /// Makes sure `peer` is connected, dialling `addrs` (and any address the swarm knows)
    /// when it is not.
    ///
    /// # Errors
    /// As [`Node::dial`].
    pub async fn connect(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        timeout: Duration,
    ) -> Result<PeerId, P2pError> {
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::Disconnected)
            .extend_addresses_through_behaviour()
            .build();
        self.dial_opts(opts, Some(peer), &peer.to_string(), timeout)
            .await
    }

    async fn dial_opts(
        &self,
        opts: DialOpts,
        peer: Option<PeerId>,
        what: &str,
        timeout: Duration,
    ) -> Result<PeerId, P2pError> {
        let (reply, rx) = oneshot::channel();
        let run = async {
            self.send(Command::Dial { opts, peer, reply }).await?;
            rx.await.map_err(|_| stopped())?
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(P2pError::Timeout(format!(
                "no connection to {what} within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// The connected peers.
    ///
    /// # Errors
    /// `node_stopped`.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, P2pError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Peers { reply }).await?;
        rx.await.map_err(|_| stopped())
    }

    /// Closes every connection to `peer`; `false` when there was none.
    ///
    /// # Errors
    /// `node_stopped`.
    pub async fn disconnect(&self, peer: PeerId) -> Result<bool, P2pError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Disconnect { peer, reply }).await?;
        rx.await.map_err(|_| stopped())
    }

    /// Stops the swarm: every connection closes, listeners unbind. Idempotent.
    pub async fn stop(&self) {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::Stop { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn send(&self, c: Command) -> Result<(), P2pError> {
        self.commands.send(c).await.map_err(|_| stopped())
    }
}

fn stopped() -> P2pError {
    P2pError::NodeStopped("the libp2p node has stopped".into())
}

/// The peer id at the end of `addr` (`…/p2p/<id>`), if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().last().and_then(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// What the swarm task knows of a connected peer.
#[derive(Default)]
struct PeerState {
    conns: HashMap<ConnectionId, (Multiaddr, bool)>,
    agent: String,
    protocols: Vec<String>,
    rtt: Option<Duration>,
}

struct Task {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    /// Dials started by `dial`/`connect`, answered when their connection is up or failed.
    dials: HashMap<ConnectionId, (Option<PeerId>, DialReply)>,
    peers: HashMap<PeerId, PeerState>,
    listeners: HashMap<libp2p::core::transport::ListenerId, Multiaddr>,
    listening: watch::Sender<Listening>,
}

impl Task {
    async fn run(mut self) {
        loop {
            tokio::select! {
                c = self.commands.recv() => match c {
                    Some(Command::Stop { reply }) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(c) => self.command(c),
                    None => break,
                },
                e = self.swarm.select_next_some() => self.event(e),
            }
        }
        tracing::info!("libp2p node stopped");
        // Dropping the swarm closes every connection and listener; dials still waiting and
        // later commands see `node_stopped`.
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Dial { opts, peer, reply } => {
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(id, (peer, reply));
                    }
                    Err(DialError::DialPeerConditionFalse(_)) => {
                        // Already connected: that is what the caller wanted.
                        let result =
                            peer.ok_or_else(|| P2pError::DialFailed("no peer id to dial".into()));
                        let _ = reply.send(result);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(dial_failed(&e)));
                    }
                }
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peer_list());
            }
            Command::Disconnect { peer, reply } => {
                let _ = reply.send(self.swarm.disconnect_peer_id(peer).is_ok());
            }
            Command::Stop { .. } => {}
        }
    }

    fn peer_list(&self) -> Vec<PeerInfo> {
        let mut list: Vec<PeerInfo> = self
            .peers
            .iter()
            .filter(|(_, s)| !s.conns.is_empty())
            .map(|(id, s)| {
                let inbound = s.conns.values().any(|(_, inb)| *inb);
                let outbound = s.conns.values().any(|(_, inb)| !*inb);
                PeerInfo {
                    peer: id.to_string(),
                    addrs: s.conns.values().map(|(a, _)| a.to_string()).collect(),
                    direction: match (inbound, outbound) {
                        (true, true) => "both",
                        (true, false) => "inbound",
                        _ => "outbound",
                    }
                    .to_owned(),
                    agent: s.agent.clone(),
                    protocols: s.protocols.clone(),
                    rtt_ms: s
                        .rtt
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                }
            })
            .collect();
        list.sort_by(|a, b| a.peer.cmp(&b.peer));
        list
    }

    fn event(&mut self, e: SwarmEvent<BehaviourEvent>) {
        match e {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                let first = self.listeners.remove(&listener_id).is_some();
                self.listening.send_modify(|l| {
                    l.addrs.push(address);
                    if first {
                        l.pending = l.pending.saturating_sub(1);
                    }
                });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listening
                    .send_modify(|l| l.addrs.retain(|a| *a != address));
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                let first = self.listeners.remove(&listener_id);
                if let Err(e) = &reason {
                    tracing::warn!(?addresses, "listener closed: {e}");
                }
                self.listening.send_modify(|l| {
                    l.addrs.retain(|a| !addresses.contains(a));
                    if let Some(addr) = first {
                        l.pending = l.pending.saturating_sub(1);
                        l.failed.push(format!("{addr}: {reason:?}"));
                    }
                });
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!("listener error: {error}");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let (addr, inbound) = match endpoint {
                    ConnectedPoint::Dialer { address, .. } => (address, false),
                    ConnectedPoint::Listener { send_back_addr, .. } => (send_back_addr, true),
                };
                tracing::debug!(peer = %peer_id, %addr, inbound, "connected");
                self.peers
                    .entry(peer_id)
                    .or_default()
                    .conns
                    .insert(connection_id, (addr, inbound));
                if let Some((_, reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, ?cause, "connection closed");
                if let Some(s) = self.peers.get_mut(&peer_id) {
                    s.conns.remove(&connection_id);
                    if s.conns.is_empty() {
                        self.peers.remove(&peer_id);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Err(dial_failed(&error)));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if let Some(s) = self.peers.get_mut(&peer_id) {
                    s.agent = info.agent_version;
                    s.protocols = info.protocols.iter().map(ToString::to_string).collect();
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                if let Some(s) = self.peers.get_mut(&peer) {
                    s.rtt = Some(rtt);
                }
            }
            _ => {}
        }
    }
}

fn dial_failed(e: &DialError) -> P2pError {
    // DialError's Display leaves out the per-address transport errors; they say why.
    let detail = match e {
        DialError::Transport(errors) => errors
            .iter()
            .map(|(addr, err)| format!("{addr}: {}", chain(err)))
            .collect::<Vec<_>>()
            .join("; "),
        other => chain(other),
    };
    P2pError::DialFailed(detail)
}

/// An error and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}
