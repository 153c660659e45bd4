//! The hub: who owns which protocol and which stream, and everything that follows from it.
//!
//! Owns the registrations (one owner per protocol id), the inbound queue of each (bounded by
//! `maxPendingInbound`, `maxOpenInbound`, `acceptTimeoutMs`), the table of streams with their
//! pumps, the events each owner gets (sent to the owner's connection only), owner death (a
//! registration and its streams die with the connection that made them) and node shutdown.
//! A module's identity is its connection ([`Caller`]), never anything it says.
//!
//! One `std` mutex guards the tables; it is never held across an await, so the swarm task
//! and the per-protocol accept tasks only ever wait for microseconds. Never reads or writes
//! stream data: `pump.rs` does.

use crate::calls::{self, CallOwner, CallSide};
use crate::error::P2pError;
use crate::node::Node;
use crate::pump::{self, By, Command, Counters, End};
use futures::StreamExt;
use libp2p::{PeerId, Stream, StreamProtocol};
use logos_sdk::{Caller, Context, Value};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;

/// Upper bounds of the registration options, so no module can make the node queue without
/// limit.
pub const MAX_PENDING_LIMIT: u64 = 4096;
/// See [`MAX_PENDING_LIMIT`].
pub const MAX_OPEN_LIMIT: u64 = 65_536;
/// The longest `acceptTimeoutMs` (10 min).
pub const MAX_ACCEPT_TIMEOUT: Duration = Duration::from_secs(600);

/// The limits of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Inbound streams waiting for `accept`.
    pub max_pending_inbound: u64,
    /// Inbound streams pending or open.
    pub max_open_inbound: u64,
    /// How long an inbound stream waits for `accept`, in ms.
    pub accept_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_pending_inbound: 32,
            max_open_inbound: 256,
            accept_timeout_ms: 10_000,
        }
    }
}

impl Limits {
    /// Reads the options map of `registerProtocol` (every key optional).
    ///
    /// # Errors
    /// `invalid_args` naming the key: unknown, not a whole number, 0 or above its bound.
    pub fn from_value(v: Option<&Value>) -> Result<Limits, P2pError> {
        let mut l = Limits::default();
        let Some(v) = v else { return Ok(l) };
        if matches!(v, Value::Null) {
            return Ok(l);
        }
        let Value::Map(m) = v else {
            return Err(P2pError::InvalidArgs(format!(
                "registerProtocol options must be a map like {{\"maxPendingInbound\": 32}}, found {}",
                v.type_name()
            )));
        };
        for (k, v) in m {
            let (slot, max) = match k.as_str() {
                "maxPendingInbound" => (&mut l.max_pending_inbound, MAX_PENDING_LIMIT),
                "maxOpenInbound" => (&mut l.max_open_inbound, MAX_OPEN_LIMIT),
                "acceptTimeoutMs" => (
                    &mut l.accept_timeout_ms,
                    MAX_ACCEPT_TIMEOUT.as_millis() as u64,
                ),
                other => {
                    return Err(P2pError::InvalidArgs(format!(
                        "registerProtocol: unknown option {other:?} (known: maxPendingInbound, maxOpenInbound, acceptTimeoutMs)"
                    )));
                }
            };
            match v.as_u64() {
                Some(n) if (1..=max).contains(&n) => *slot = n,
                _ => {
                    return Err(P2pError::InvalidArgs(format!(
                        "registerProtocol: option {k:?} must be a whole number from 1 to {max}, found {v}"
                    )));
                }
            }
        }
        Ok(l)
    }
}

/// Events sent to the owning module only.
pub mod event {
    /// `streamInbound [registration, streamId, protocol, peer]`: a stream waits for `accept`.
    pub const STREAM_INBOUND: &str = "streamInbound";
    /// `streamRemoteClosed [streamId]`: the remote finished its half.
    pub const STREAM_REMOTE_CLOSED: &str = "streamRemoteClosed";
    /// `streamReset [streamId, by, message]`.
    pub const STREAM_RESET: &str = "streamReset";
    /// `nodeStopping [graceMs]`.
    pub const NODE_STOPPING: &str = "nodeStopping";
    /// `nodeStopped []`.
    pub const NODE_STOPPED: &str = "nodeStopped";
    /// `registrationRevoked [registration, reason]`.
    pub const REGISTRATION_REVOKED: &str = "registrationRevoked";
}

/// Which way a stream was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Inbound,
    Outbound,
}

enum Phase {
    /// Inbound, waiting for `accept`.
    Pending { stream: Stream, expiry: AbortHandle },
    /// Taken by `accept`, its byte stream being opened.
    Opening,
    /// Pumping.
    Open {
        commands: mpsc::Sender<Command>,
        counters: Arc<Counters>,
        /// The calls' end, when the owner moves the data with calls.
        calls: Option<Arc<CallSide>>,
    },
}

/// How the owner moves a stream's data: over the runtime byte stream `p2p/<id>` on its
/// connection, or with the data methods (`read`, `write`, …) (`calls.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    /// A runtime byte stream.
    #[default]
    Stream,
    /// Calls.
    Calls,
}

/// Ended streams moved with calls kept for their owners' next calls.
const FINISHED_KEPT: usize = 1024;

/// The owner's side of a pump about to start.
enum OwnerSide {
    Stream(logos_sdk::ByteStream),
    Calls(CallOwner),
}

struct Entry {
    owner: Caller,
    registration: Option<u64>,
    peer: PeerId,
    protocol: String,
    direction: Direction,
    opened_ms: u64,
    phase: Phase,
}

struct Registration {
    owner: Caller,
    protocols: Vec<String>,
    limits: Limits,
    /// Stream ids waiting for `accept`, oldest first.
    pending: VecDeque<u64>,
    /// Inbound streams accepted and not ended yet.
    open: u64,
    arrived: Arc<Notify>,
    listeners: Vec<AbortHandle>,
    /// Inbound streams refused for a limit, expired unaccepted, accepted.
    refused: u64,
    expired: u64,
    accepted: u64,
}

#[derive(Default)]
struct State {
    stopping: bool,
    next_id: u64,
    registrations: HashMap<u64, Registration>,
    /// Protocol id → registration.
    protocols: HashMap<String, u64>,
    streams: HashMap<u64, Entry>,
    /// Connections whose closing is watched.
    watched: HashSet<u64>,
    /// Streams moved with calls that ended, newest last, so their owner's next read learns
    /// how (a reset is `reset`, not `not_found`): (stream, owner's connection, calls' end).
    finished: VecDeque<(u64, u64, Arc<CallSide>)>,
}

impl State {
    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// The registrations and streams of one node.
pub struct Hub {
    ctx: Context,
    node: Node,
    state: Mutex<State>,
}

/// What `accept` and `openStream` answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Opened {
    /// The stream's id in `p2p`; its byte stream is `p2p/<streamId>`.
    pub stream_id: u64,
    /// The negotiated protocol.
    pub protocol: String,
    /// The remote peer.
    pub peer: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn stopped() -> P2pError {
    P2pError::NodeStopped("the libp2p node is shutting down".into())
}

impl Hub {
    /// A hub for `node`.
    pub fn new(ctx: Context, node: Node) -> Arc<Hub> {
        Arc::new(Hub {
            ctx,
            node,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The caller of the running method.
    ///
    /// # Errors
    /// `unauthorized` outside a call (cannot happen for methods).
    pub fn caller(&self) -> Result<Caller, P2pError> {
        self.ctx
            .caller()
            .ok_or_else(|| P2pError::Unauthorized("no calling connection".into()))
    }

    /// Starts watching `caller`'s connection once: when it closes, its registrations and
    /// streams go.
    fn watch(self: &Arc<Self>, st: &mut State, caller: &Caller) {
        if !st.watched.insert(caller.connection()) {
            return;
        }
        let hub = Arc::downgrade(self);
        let caller = caller.clone();
        tokio::spawn(async move {
            let reason = caller.closed().await;
            if let Some(hub) = hub.upgrade() {
                hub.owner_gone(&caller, &reason);
            }
        });
    }

    fn emit(&self, to: &Caller, event: &str, data: Vec<Value>) {
        self.ctx.emit_to(to, event, data);
    }

    /// `registerProtocol`.
    ///
    /// # Errors
    /// `already_registered`, `invalid_args`, `node_stopped`.
    pub fn register(
        self: &Arc<Self>,
        caller: &Caller,
        protocols: Vec<String>,
        limits: Limits,
    ) -> Result<u64, P2pError> {
        if protocols.is_empty() {
            return Err(P2pError::InvalidArgs(
                "registerProtocol needs at least one protocol id like \"/myapp/sync/1.0.0\"".into(),
            ));
        }
        let mut parsed = Vec::new();
        for p in &protocols {
            let sp = StreamProtocol::try_from_owned(p.clone()).map_err(|e| {
                P2pError::InvalidArgs(format!(
                    "{p:?} is not a protocol id ({e}); write e.g. \"/myapp/sync/1.0.0\""
                ))
            })?;
            parsed.push(sp);
        }
        let mut st = self.lock();
        if st.stopping {
            return Err(stopped());
        }
        for p in &protocols {
            if let Some(other) = st.protocols.get(p).and_then(|id| st.registrations.get(id)) {
                let whose = if other.owner.connection() == caller.connection() {
                    "this module".to_owned()
                } else {
                    format!("module {:?}", other.owner.name())
                };
                return Err(P2pError::AlreadyRegistered(format!(
                    "{p} is registered by {whose}"
                )));
            }
        }
        // The libp2p side: one accept loop per protocol. Taken before anything is entered,
        // so a failure leaves nothing half registered.
        let mut control = self.node.control();
        let mut incoming = Vec::new();
        for sp in &parsed {
            match control.accept(sp.clone()) {
                Ok(i) => incoming.push((sp.to_string(), i)),
                Err(_) => {
                    return Err(P2pError::AlreadyRegistered(format!(
                        "{sp} is still registered in the node; try again in a moment"
                    )));
                }
            }
        }
        let id = st.next();
        let mut listeners = Vec::new();
        for (proto, mut streams) in incoming {
            let hub = Arc::downgrade(self);
            let task = tokio::spawn(async move {
                while let Some((peer, stream)) = streams.next().await {
                    let Some(hub) = hub.upgrade() else { break };
                    hub.inbound(id, &proto, peer, stream);
                }
            });
            listeners.push(task.abort_handle());
        }
        for p in &protocols {
            st.protocols.insert(p.clone(), id);
        }
        st.registrations.insert(
            id,
            Registration {
                owner: caller.clone(),
                protocols,
                limits,
                pending: VecDeque::new(),
                open: 0,
                arrived: Arc::new(Notify::new()),
                listeners,
                refused: 0,
                expired: 0,
                accepted: 0,
            },
        );
        self.watch(&mut st, caller);
        Ok(id)
    }

    /// A negotiated inbound stream for registration `reg`: queued, or reset when a limit
    /// says so. Never waits.
    fn inbound(self: &Arc<Self>, reg: u64, protocol: &str, peer: PeerId, stream: Stream) {
        let mut st = self.lock();
        if st.stopping {
            return; // dropped: reset
        }
        let id = st.next();
        let Some(r) = st.registrations.get_mut(&reg) else {
            return;
        };
        let queued = r.pending.len() as u64;
        if queued >= r.limits.max_pending_inbound || queued + r.open >= r.limits.max_open_inbound {
            r.refused += 1;
            tracing::debug!(%peer, protocol, queued, open = r.open, "inbound stream over the limit: reset");
            return;
        }
        r.pending.push_back(id);
        let owner = r.owner.clone();
        let arrived = Arc::clone(&r.arrived);
        let wait = Duration::from_millis(r.limits.accept_timeout_ms);
        let hub = Arc::downgrade(self);
        let expiry = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if let Some(hub) = hub.upgrade() {
                hub.expire(id);
            }
        })
        .abort_handle();
        st.streams.insert(
            id,
            Entry {
                owner: owner.clone(),
                registration: Some(reg),
                peer,
                protocol: protocol.to_owned(),
                direction: Direction::Inbound,
                opened_ms: now_ms(),
                phase: Phase::Pending { stream, expiry },
            },
        );
        drop(st);
        arrived.notify_waiters();
        self.emit(
            &owner,
            event::STREAM_INBOUND,
            vec![
                Value::from(reg),
                Value::from(id),
                Value::from(protocol),
                Value::from(peer.to_string()),
            ],
        );
    }

    /// The accept timeout of pending stream `id` passed.
    fn expire(&self, id: u64) {
        let mut st = self.lock();
        let Some(Entry {
            phase: Phase::Pending { .. },
            ..
        }) = st.streams.get(&id)
        else {
            return;
        };
        let Some(entry) = st.streams.remove(&id) else {
            return;
        };
        if let Some(r) = entry
            .registration
            .and_then(|r| st.registrations.get_mut(&r))
        {
            r.pending.retain(|p| *p != id);
            r.expired += 1;
        }
        drop(st);
        tracing::debug!(stream = id, "not accepted in time: reset");
        self.emit(
            &entry.owner,
            event::STREAM_RESET,
            vec![
                Value::from(id),
                Value::from(By::Timeout.name()),
                Value::from("not accepted within acceptTimeoutMs"),
            ],
        );
        // Dropping the entry drops the libp2p stream: RST.
    }

    /// `accept(registration, timeoutMs)`.
    ///
    /// # Errors
    /// `not_found`, `unauthorized`, `timeout`, `node_stopped`, `closed` (the caller's
    /// connection closed meanwhile).
    pub async fn accept(
        self: &Arc<Self>,
        caller: &Caller,
        reg: u64,
        timeout: Duration,
        via: Via,
    ) -> Result<Opened, P2pError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (id, stream) = loop {
            let arrived = {
                let mut st = self.lock();
                if st.stopping {
                    return Err(stopped());
                }
                let r = st
                    .registrations
                    .get_mut(&reg)
                    .ok_or_else(|| P2pError::NotFound(format!("no registration {reg}")))?;
                if r.owner.connection() != caller.connection() {
                    return Err(P2pError::Unauthorized(format!(
                        "registration {reg} belongs to module {:?}",
                        r.owner.name()
                    )));
                }
                let popped = r.pending.pop_front();
                let arrived = Arc::clone(&r.arrived);
                if let Some(id) = popped {
                    let entry = st.streams.get_mut(&id);
                    if let Some(Phase::Pending { stream, expiry }) =
                        entry.map(|e| std::mem::replace(&mut e.phase, Phase::Opening))
                    {
                        expiry.abort();
                        if let Some(r) = st.registrations.get_mut(&reg) {
                            r.open += 1;
                            r.accepted += 1;
                        }
                        break (id, stream);
                    }
                    continue;
                }
                arrived
            };
            let notified = arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Re-check after enabling: a stream may have come in between.
            let again = self
                .lock()
                .registrations
                .get(&reg)
                .is_none_or(|r| !r.pending.is_empty());
            if again {
                continue;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(P2pError::Timeout(format!(
                    "no inbound stream for registration {reg} within {} ms",
                    timeout.as_millis()
                )));
            }
        };
        self.start(caller, id, stream, via)
    }

    /// Opens the owner's side of entry `id` (its byte stream, or the pipe of `calls.rs`) and
    /// starts its pump.
    fn start(
        self: &Arc<Self>,
        caller: &Caller,
        id: u64,
        stream: Stream,
        via: Via,
    ) -> Result<Opened, P2pError> {
        let (owner_side, calls) = match via {
            Via::Calls => {
                let (owner, side) = calls::pipe();
                (OwnerSide::Calls(owner), Some(side))
            }
            Via::Stream => match caller.open_stream(&format!("p2p/{id}")) {
                Ok(b) => (OwnerSide::Stream(b), None),
                Err(e) => {
                    self.ended(id, &End::Reset(By::ModuleGone, e.to_string()));
                    return Err(P2pError::Closed(e.to_string()));
                }
            },
        };
        let (tx, rx) = mpsc::channel(4);
        let counters = Arc::new(Counters::default());
        let opened = {
            let mut st = self.lock();
            let Some(e) = st.streams.get_mut(&id) else {
                return Err(P2pError::NotFound(format!("stream {id} ended")));
            };
            e.phase = Phase::Open {
                commands: tx,
                counters: Arc::clone(&counters),
                calls,
            };
            let opened = Opened {
                stream_id: id,
                protocol: e.protocol.clone(),
                peer: e.peer.to_string(),
            };
            self.watch(&mut st, caller);
            opened
        };
        let hub = Arc::downgrade(self);
        let fin_hub = hub.clone();
        let owner = caller.clone();
        tokio::spawn(async move {
            let remote_fin = move || {
                if let Some(h) = fin_hub.upgrade() {
                    h.emit(&owner, event::STREAM_REMOTE_CLOSED, vec![Value::from(id)]);
                }
            };
            let end = match owner_side {
                OwnerSide::Stream(b) => pump::run(stream, b, rx, counters, remote_fin).await,
                OwnerSide::Calls(c) => pump::run(stream, c, rx, counters, remote_fin).await,
            };
            if let Some(hub) = hub.upgrade() {
                hub.ended(id, &end);
            }
        });
        Ok(opened)
    }

    /// Stream `id` ended: forget it, free its registration slot, tell its owner of a reset.
    fn ended(&self, id: u64, end: &End) {
        let entry = {
            let mut st = self.lock();
            let Some(entry) = st.streams.remove(&id) else {
                return;
            };
            if entry.direction == Direction::Inbound
                && let Some(r) = entry
                    .registration
                    .and_then(|r| st.registrations.get_mut(&r))
            {
                r.open = r.open.saturating_sub(1);
            }
            if let Phase::Open {
                calls: Some(side), ..
            } = &entry.phase
            {
                if st.finished.len() >= FINISHED_KEPT {
                    st.finished.pop_front();
                }
                let side = Arc::clone(side);
                st.finished.push_back((id, entry.owner.connection(), side));
            }
            entry
        };
        if let End::Reset(by, why) = end
            && *by != By::ModuleGone
        {
            self.emit(
                &entry.owner,
                event::STREAM_RESET,
                vec![
                    Value::from(id),
                    Value::from(by.name()),
                    Value::from(why.as_str()),
                ],
            );
        }
    }

    /// `openStream(peer, protocols, addrs, timeoutMs)`.
    ///
    /// # Errors
    /// `unsupported_protocol`, `dial_failed`, `timeout`, `conn_down`, `invalid_args`,
    /// `node_stopped`.
    pub async fn open(
        self: &Arc<Self>,
        caller: &Caller,
        peer: PeerId,
        protocols: Vec<String>,
        addrs: Vec<libp2p::Multiaddr>,
        timeout: Duration,
        via: Via,
    ) -> Result<Opened, P2pError> {
        if protocols.is_empty() {
            return Err(P2pError::InvalidArgs(
                "openStream needs at least one protocol id".into(),
            ));
        }
        let mut parsed = Vec::new();
        for p in &protocols {
            parsed.push(
                StreamProtocol::try_from_owned(p.clone()).map_err(|e| {
                    P2pError::InvalidArgs(format!("{p:?} is not a protocol id ({e})"))
                })?,
            );
        }
        if self.lock().stopping {
            return Err(stopped());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let negotiate = async {
            self.node.connect(peer, addrs, timeout).await?;
            let mut control = self.node.control();
            for sp in &parsed {
                match control.open_stream(peer, sp.clone()).await {
                    Ok(s) => return Ok((s, sp.to_string())),
                    Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_)) => continue,
                    Err(e) => return Err(P2pError::ConnDown(e.to_string())),
                }
            }
            Err(P2pError::UnsupportedProtocol(format!(
                "peer {peer} supports none of {}",
                protocols.join(", ")
            )))
        };
        let (stream, protocol) = match tokio::time::timeout_at(deadline, negotiate).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(P2pError::Timeout(format!(
                    "no stream to {peer} within {} ms",
                    timeout.as_millis()
                )));
            }
        };
        let id = {
            let mut st = self.lock();
            if st.stopping {
                return Err(stopped());
            }
            let id = st.next();
            st.streams.insert(
                id,
                Entry {
                    owner: caller.clone(),
                    registration: None,
                    peer,
                    protocol,
                    direction: Direction::Outbound,
                    opened_ms: now_ms(),
                    phase: Phase::Opening,
                },
            );
            id
        };
        self.start(caller, id, stream, via)
    }

    /// Looks up stream `id` for `caller` and hands it to `f`.
    fn with_stream<T>(
        &self,
        caller: &Caller,
        id: u64,
        f: impl FnOnce(&mut State, u64) -> T,
    ) -> Result<T, P2pError> {
        let mut st = self.lock();
        let e = st
            .streams
            .get(&id)
            .ok_or_else(|| P2pError::NotFound(format!("no stream {id}")))?;
        if !caller.is_core() && e.owner.connection() != caller.connection() {
            return Err(P2pError::Unauthorized(format!(
                "stream {id} belongs to module {:?}",
                e.owner.name()
            )));
        }
        Ok(f(&mut st, id))
    }

    /// The calls' end of stream `id`, for the data methods.
    ///
    /// # Errors
    /// `not_found` (no such stream, or it moves its data over its byte stream),
    /// `unauthorized`.
    pub fn call_side(&self, caller: &Caller, id: u64) -> Result<Arc<CallSide>, P2pError> {
        {
            let st = self.lock();
            if !st.streams.contains_key(&id)
                && let Some((_, conn, side)) = st.finished.iter().find(|(s, _, _)| *s == id)
                && (caller.is_core() || *conn == caller.connection())
            {
                return Ok(Arc::clone(side));
            }
        }
        self.with_stream(caller, id, |st, id| match st.streams.get(&id).map(|e| &e.phase) {
            Some(Phase::Open {
                calls: Some(side), ..
            }) => Ok(Arc::clone(side)),
            Some(Phase::Open { calls: None, .. }) => Err(P2pError::NotFound(format!(
                "stream {id} moves its data over its byte stream p2p/{id}, not with calls; accept or open it with {{\"via\": \"calls\"}} for that"
            ))),
            _ => Err(P2pError::NotFound(format!("stream {id} is not open"))),
        })?
    }

    /// `reject(streamId)`: resets a stream still waiting for `accept`.
    ///
    /// # Errors
    /// `not_found` (no such pending stream), `unauthorized`.
    pub fn reject(&self, caller: &Caller, id: u64) -> Result<(), P2pError> {
        self.with_stream(caller, id, |st, id| {
            if !matches!(
                st.streams.get(&id).map(|e| &e.phase),
                Some(Phase::Pending { .. })
            ) {
                return Err(P2pError::NotFound(format!(
                    "stream {id} is not waiting for accept"
                )));
            }
            if let Some(e) = st.streams.remove(&id) {
                if let Some(r) = e.registration.and_then(|r| st.registrations.get_mut(&r)) {
                    r.pending.retain(|p| *p != id);
                }
                if let Phase::Pending { expiry, .. } = e.phase {
                    expiry.abort();
                }
            }
            Ok(())
        })?
    }

    /// `reset(streamId)` and `release(streamId)`.
    ///
    /// # Errors
    /// `not_found`, `unauthorized`.
    pub fn command(&self, caller: &Caller, id: u64, release: bool) -> Result<(), P2pError> {
        self.with_stream(caller, id, |st, id| {
            match st.streams.get(&id).map(|e| &e.phase) {
                Some(Phase::Open { commands, .. }) => {
                    let c = if release {
                        Command::Release
                    } else {
                        Command::Reset(By::Local, "reset by the module".into())
                    };
                    let _ = commands.try_send(c);
                }
                Some(Phase::Pending { .. }) => {
                    if let Some(e) = st.streams.remove(&id)
                        && let Some(r) = e.registration.and_then(|r| st.registrations.get_mut(&r))
                    {
                        r.pending.retain(|p| *p != id);
                    }
                }
                _ => {}
            }
        })
    }

    /// `streamInfo(streamId)`.
    ///
    /// # Errors
    /// `not_found`, `unauthorized`.
    pub fn info(&self, caller: &Caller, id: u64) -> Result<Value, P2pError> {
        self.with_stream(caller, id, |st, id| {
            let Some(e) = st.streams.get(&id) else {
                return Value::Null;
            };
            let (state, bytes_in, bytes_out, remote_closed, local_closed) = match &e.phase {
                Phase::Pending { .. } => ("pending", 0, 0, false, false),
                Phase::Opening => ("opening", 0, 0, false, false),
                Phase::Open { counters, .. } => (
                    "open",
                    counters.bytes_in.load(Ordering::Relaxed),
                    counters.bytes_out.load(Ordering::Relaxed),
                    counters.remote_closed.load(Ordering::Relaxed),
                    counters.local_closed.load(Ordering::Relaxed),
                ),
            };
            let mut m = std::collections::BTreeMap::new();
            m.insert("streamId".to_owned(), Value::from(id));
            m.insert("protocol".to_owned(), Value::from(e.protocol.as_str()));
            m.insert("peer".to_owned(), Value::from(e.peer.to_string()));
            m.insert(
                "direction".to_owned(),
                Value::from(match e.direction {
                    Direction::Inbound => "inbound",
                    Direction::Outbound => "outbound",
                }),
            );
            m.insert("state".to_owned(), Value::from(state));
            m.insert(
                "registration".to_owned(),
                e.registration.map_or(Value::Null, Value::from),
            );
            m.insert("owner".to_owned(), Value::from(e.owner.name()));
            m.insert("bytesIn".to_owned(), Value::from(bytes_in));
            m.insert("bytesOut".to_owned(), Value::from(bytes_out));
            m.insert("remoteClosed".to_owned(), Value::from(remote_closed));
            m.insert("localClosed".to_owned(), Value::from(local_closed));
            m.insert("openedAtMs".to_owned(), Value::from(e.opened_ms));
            Value::Map(m)
        })
    }

    /// `unregisterProtocol(id)`.
    ///
    /// # Errors
    /// `not_found`, `unauthorized`.
    pub fn unregister(&self, caller: &Caller, reg: u64) -> Result<(), P2pError> {
        {
            let st = self.lock();
            let r = st
                .registrations
                .get(&reg)
                .ok_or_else(|| P2pError::NotFound(format!("no registration {reg}")))?;
            if !caller.is_core() && r.owner.connection() != caller.connection() {
                return Err(P2pError::Unauthorized(format!(
                    "registration {reg} belongs to module {:?}",
                    r.owner.name()
                )));
            }
        }
        self.drop_registration(reg, "unregistered", By::Local);
        Ok(())
    }

    /// Ends registration `reg`: its protocols leave the node (new streams get `na`), its
    /// pending streams are reset; open streams go on until they end (or until `by` resets
    /// them, when their owner is gone).
    fn drop_registration(&self, reg: u64, why: &str, by: By) {
        let (owner, pending) = {
            let mut st = self.lock();
            let Some(r) = st.registrations.remove(&reg) else {
                return;
            };
            for p in &r.protocols {
                st.protocols.remove(p);
            }
            for l in &r.listeners {
                l.abort();
            }
            let pending: Vec<Entry> = r
                .pending
                .iter()
                .filter_map(|id| st.streams.remove(id))
                .collect();
            (r.owner, pending)
        };
        tracing::info!(
            registration = reg,
            owner = owner.name(),
            "registration ended: {why}"
        );
        for e in pending {
            if let Phase::Pending { expiry, .. } = &e.phase {
                expiry.abort();
            }
        }
        if by != By::ModuleGone {
            self.emit(
                &owner,
                event::REGISTRATION_REVOKED,
                vec![Value::from(reg), Value::from(why)],
            );
        }
    }

    /// The connection of `owner` closed: its registrations and streams go.
    fn owner_gone(&self, owner: &Caller, reason: &str) {
        let conn = owner.connection();
        let (regs, streams) = {
            let mut st = self.lock();
            st.watched.remove(&conn);
            st.finished.retain(|(_, c, _)| *c != conn);
            let regs: Vec<u64> = st
                .registrations
                .iter()
                .filter(|(_, r)| r.owner.connection() == conn)
                .map(|(id, _)| *id)
                .collect();
            let streams: Vec<u64> = st
                .streams
                .iter()
                .filter(|(_, e)| e.owner.connection() == conn)
                .map(|(id, _)| *id)
                .collect();
            (regs, streams)
        };
        if regs.is_empty() && streams.is_empty() {
            return;
        }
        tracing::info!(
            module = owner.name(),
            registrations = regs.len(),
            streams = streams.len(),
            "module gone ({reason}): its protocols are unregistered and its streams reset"
        );
        for reg in regs {
            self.drop_registration(reg, "the module is gone", By::ModuleGone);
        }
        self.reset_streams(&streams, By::ModuleGone, "the owning module is gone");
    }

    /// Resets streams `ids` with `by`.
    fn reset_streams(&self, ids: &[u64], by: By, why: &str) {
        let mut st = self.lock();
        for id in ids {
            let open = match st.streams.get(id).map(|e| &e.phase) {
                Some(Phase::Open { commands, .. }) => {
                    let _ = commands.try_send(Command::Reset(by, why.to_owned()));
                    true
                }
                _ => false,
            };
            if !open && let Some(e) = st.streams.remove(id) {
                if let Some(r) = e.registration.and_then(|r| st.registrations.get_mut(&r)) {
                    r.pending.retain(|p| p != id);
                }
                if let Phase::Pending { expiry, .. } = &e.phase {
                    expiry.abort();
                }
            }
        }
    }

    /// `protocols()`: every registration with its owner and gauges.
    pub fn protocols(&self) -> Value {
        let st = self.lock();
        let mut list: Vec<(u64, Value)> = st
            .registrations
            .iter()
            .map(|(id, r)| {
                let mut m = std::collections::BTreeMap::new();
                m.insert("registration".to_owned(), Value::from(*id));
                m.insert(
                    "protocols".to_owned(),
                    Value::List(
                        r.protocols
                            .iter()
                            .map(|p| Value::from(p.as_str()))
                            .collect(),
                    ),
                );
                m.insert("owner".to_owned(), Value::from(r.owner.name()));
                m.insert("pending".to_owned(), Value::from(r.pending.len() as u64));
                m.insert("open".to_owned(), Value::from(r.open));
                m.insert("accepted".to_owned(), Value::from(r.accepted));
                m.insert("refused".to_owned(), Value::from(r.refused));
                m.insert("expired".to_owned(), Value::from(r.expired));
                m.insert(
                    "limits".to_owned(),
                    logos_sdk::Value::Map(
                        [
                            (
                                "maxPendingInbound".to_owned(),
                                Value::from(r.limits.max_pending_inbound),
                            ),
                            (
                                "maxOpenInbound".to_owned(),
                                Value::from(r.limits.max_open_inbound),
                            ),
                            (
                                "acceptTimeoutMs".to_owned(),
                                Value::from(r.limits.accept_timeout_ms),
                            ),
                        ]
                        .into(),
                    ),
                );
                (*id, Value::Map(m))
            })
            .collect();
        list.sort_by_key(|(id, _)| *id);
        Value::List(list.into_iter().map(|(_, v)| v).collect())
    }

    /// Streams open right now (all owners).
    pub fn open_streams(&self) -> usize {
        self.lock().streams.len()
    }

    /// `true` once shutdown began.
    pub fn is_stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Node shutdown: `nodeStopping` to every owner, up to half the grace for streams to end,
    /// the rest reset with `node_shutdown`, `nodeStopped`, registrations dropped, swarm
    /// stopped. Later calls get `node_stopped`.
    pub async fn shutdown(&self, grace: Duration) {
        let owners: Vec<Caller> = {
            let mut st = self.lock();
            if st.stopping {
                return;
            }
            st.stopping = true;
            let mut seen = HashSet::new();
            st.registrations
                .values()
                .map(|r| r.owner.clone())
                .chain(st.streams.values().map(|e| e.owner.clone()))
                .filter(|c| seen.insert(c.connection()))
                .collect()
        };
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        for o in &owners {
            self.emit(o, event::NODE_STOPPING, vec![Value::from(grace_ms)]);
        }
        let deadline = tokio::time::Instant::now() + grace / 2;
        while self.open_streams() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ids: Vec<u64> = self.lock().streams.keys().copied().collect();
        self.reset_streams(&ids, By::NodeShutdown, "the node is shutting down");
        // Give the pumps a moment to send their resets.
        let deadline = tokio::time::Instant::now() + grace / 4;
        while self.open_streams() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let regs: Vec<u64> = self.lock().registrations.keys().copied().collect();
        for r in regs {
            self.drop_registration(r, "the node stopped", By::NodeShutdown);
        }
        for o in &owners {
            self.emit(o, event::NODE_STOPPED, vec![]);
        }
        self.node.stop().await;
    }
}
