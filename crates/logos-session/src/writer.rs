//! The write path: the per-connection [`Outbox`], the direct write, and the writer task.
//!
//! Owns every byte that goes to the socket after the handshake, and the order they go in.
//! Never reads from the socket and never interprets what it writes.
//!
//! # Design: write-through, with a flusher task only when the socket pushes back
//!
//! Each send encodes its message with `logos_wire::encode_frame` while holding the outbox
//! lock. When nothing is queued (the common case on a healthy connection) the sender then
//! writes the frame to the socket *itself*, still under the lock, with a non-blocking
//! `try_write`: no task hop, no channel, and the encode buffer (`scratch`) is reused so a
//! steady-state call allocates nothing here. Only when the socket would block (or takes part of
//! the frame) does the rest go to the outbox and the writer task take over; from then on every
//! sender appends to the outbox and the writer drains it in batches, one `write` per batch
//! (many frames per syscall), until it finds the outbox empty and hands the socket back to the
//! direct path. Order is total: the direct path is used only while nothing is queued and no
//! batch is being written, and the flag saying so (`active`) only changes under the lock.
//!
//! # Coalescing
//!
//! A direct write also hands the socket to the writer task until that task has run once.
//! Frames sent in the meantime (the rest of a burst: replies to calls that arrived in one
//! read, the next calls of a pipelining caller) are queued, and the writer sends them in one
//! `write` when it runs, after the tasks that were already ready. A lone frame still leaves at
//! once (no hop on the latency path); a burst of N frames costs two `write`s instead of N, and
//! wakes the peer about twice instead of N times. The writer finds nothing queued after a
//! lone frame and hands the socket straight back. Only senders running in a task coalesce:
//! one outside every task (a thread driving a single call) writes through, and so do
//! heartbeat pings and pongs, which never come in bursts. Only small frames do this
//! ([`COALESCE_BELOW`]): bulk stream data keeps writing through.
//!
//! The outbox has three lanes:
//! * `ctrl`: calls, replies, errors, cancels, subscriptions, events, credit, pings; one
//!   contiguous buffer in send order.
//! * events share `ctrl` (so they stay in order with everything else) but are counted, in
//!   number and in bytes, and [`Inner::send_event`] refuses to queue more than
//!   [`Config::event_queue`](crate::Config) of them or more than
//!   [`Config::event_queue_bytes`](crate::Config) of their bytes: memory stays bounded however
//!   slowly the peer reads, and drops are reported as `lagged` ahead of the next event that
//!   fits.
//! * `data`: `stream_data` and `stream_fin` frames, per stream in order, each kept as its
//!   encoded head and the payload `Bytes` the stream handed over: the writer sends them with
//!   one vectored write (`writev`) after the control bytes, so stream data is never copied
//!   into a frame or a batch ([`DataFrame`]). Each writer batch
//!   takes all of `ctrl` and then at most [`DATA_BATCH`] bytes of stream frames, so a call
//!   never waits behind more than one batch of bulk data, and control traffic cannot starve
//!   streams either (every batch carries some data). Credit caps each stream at one window,
//!   but a connection may carry many streams, so the lane has its own bound: a stream write
//!   waits (`Pending`, woken by the writer) while more than [`STREAM_HIGH_WATER`] bytes are in
//!   the lane.
//!
//! # Shared frames
//!
//! A frame whose body is at least [`Config::shared_min`](crate::Config) goes to a peer that
//! takes them as a shared frame (`shm.rs`, docs/protocol.md §2.1): encoded as usual, copied
//! into this connection's ring of shared memory, and replaced by its 4-byte prefix. The ring
//! must be filled in the order the prefixes reach the socket. Every frame is placed when it
//! enters the outbox (a direct write just before writing it: nothing is queued then), and a
//! batch writes the whole control lane before any stream frame, so a control frame is placed
//! only while no placed stream frame waits in the stream lane (otherwise it goes on the
//! socket). A stream chunk is copied into the ring straight from the writer's buffer
//! ([`Inner::send_stream_shared`]): no copy into a frame or an arena first, so a shared
//! chunk costs the sender one copy, as a socket write does. The ring is made at the first
//! such frame; its descriptor waits in `fds` and rides on the next write that sends anything
//! (the direct path's, or the writer's next batch), so it reaches the peer with or before
//! that frame's prefix. When the ring has no room (the peer has not taken enough of it yet) or the body is
//! over half the ring, the frame goes on the socket like any other and counts against
//! [`HIGH_WATER`], so a peer that stops reading still slows its callers: the ring bounds what
//! shared frames can hold, whatever the peer does.
//!
//! Async senders (calls, replies) wait while more than [`HIGH_WATER`] bytes are queued, so a
//! peer that stops reading slows its callers instead of growing our memory. Frames the peer
//! provokes from the reader task (pongs, `limit` refusals) cannot wait (that would stop the
//! reader, and two such peers would deadlock), so past [`hard_cap`] the connection is closed
//! with `limit` instead.

use crate::Fault;
use crate::session::{Inner, deadline_after, lock};
use crate::shm::{Laps, RingOut};
use crate::socket::Socket;
use bytes::Bytes;
use logos_wire::codec::LEN_PREFIX;
use logos_wire::{
    CallRef, ErrorCode, Message, Value, WireError, encode_call_frame, encode_frame,
    encode_stream_data_head, shared_prefix,
};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use tokio::time::Instant;

/// Async senders wait while more than this many bytes are queued.
pub(crate) const HIGH_WATER: usize = 4 * 1024 * 1024;
/// Most stream bytes put in one writer batch (after all control frames).
pub(crate) const DATA_BATCH: usize = 256 * 1024;
/// Stream writes wait while more than this many bytes are in the stream lane. Four batches:
/// enough that the writer never runs dry while writers are woken. The lane can exceed it by
/// at most one chunk per thread writing at the same instant (the check and the push are one
/// synchronous step of `poll_write`).
pub(crate) const STREAM_HIGH_WATER: usize = 4 * DATA_BATCH;
/// Only a direct write smaller than this makes the next frames wait for the writer task
/// (see "Coalescing"): for bigger frames the syscall is already cheap per byte, and queueing
/// them would cost a copy.
const COALESCE_BELOW: usize = 16 * 1024;
/// A buffer bigger than this is freed rather than kept for reuse once empty. Large enough
/// that a connection moving 1 MiB payloads keeps its encode buffers: at 1 MiB (a frame of a
/// 1 MiB payload is a few bytes more) every big call freed and re-grew them, and glibc's heap
/// grew and trimmed around each, faulting in and zeroing fresh pages every time (1 MiB round
/// trip 3.0–3.3 ms → 0.62–0.69 ms, docs/performance.md). The price: a connection that once
/// sent big frames holds up to this much per buffer (scratch, control lane, writer batch)
/// until it closes; idle connections that never did hold nothing extra.
const RETAIN: usize = 4 * 1024 * 1024;

/// Most buffers handed to one `writev` (the kernel's `IOV_MAX` is 1024).
const MAX_IOV: usize = 256;

/// What a send puts on the wire: a message, or a call from its borrowed parts (a caller's
/// target, method and arguments are encoded where they are, not copied into a `Call` first).
#[derive(Clone, Copy)]
pub(crate) enum Outgoing<'a> {
    Message(&'a Message),
    Call(CallRef<'a>),
}

impl<'a> From<&'a Message> for Outgoing<'a> {
    fn from(msg: &'a Message) -> Self {
        Outgoing::Message(msg)
    }
}

impl Outgoing<'_> {
    /// Appends the whole frame to `out`; the body length.
    fn encode(self, out: &mut Vec<u8>) -> Result<usize, WireError> {
        match self {
            Outgoing::Message(msg) => encode_frame(msg, out),
            Outgoing::Call(call) => encode_call_frame(&call, out),
        }
    }
}

/// A frame of the stream lane: `head` (a `stream_data` frame up to its payload, or a whole
/// small frame such as `stream_fin`) and the payload left where the stream put it, so it
/// reaches the socket without a copy in between.
pub(crate) struct DataFrame {
    head: Vec<u8>,
    payload: Bytes,
    /// The frame's body is in the ring; `head` is its prefix.
    shared: bool,
}

impl DataFrame {
    /// The frame of `msg`, refusing bodies over `max_frame`.
    fn of(msg: Outgoing<'_>, max_frame: usize) -> Result<DataFrame, WireError> {
        match msg {
            Outgoing::Message(Message::StreamData { stream, data }) => {
                let mut head = Vec::with_capacity(24);
                let body = encode_stream_data_head(*stream, data.len(), &mut head)?;
                if body > max_frame {
                    return Err(WireError::FrameTooLarge {
                        len: body,
                        max: max_frame,
                    });
                }
                Ok(DataFrame {
                    head,
                    payload: data.clone(),
                    shared: false,
                })
            }
            other => {
                let mut head = Vec::new();
                encode_capped(other, &mut head, max_frame)?;
                Ok(DataFrame {
                    head,
                    payload: Bytes::new(),
                    shared: false,
                })
            }
        }
    }

    /// A frame whose body is already in the ring: only its prefix goes on the socket.
    fn shared(prefix: [u8; LEN_PREFIX]) -> DataFrame {
        DataFrame {
            head: prefix.to_vec(),
            payload: Bytes::new(),
            shared: true,
        }
    }

    fn len(&self) -> usize {
        self.head.len() + self.payload.len()
    }

    /// The bytes of the frame from `from` on, appended to `out`.
    fn copy_rest(&self, from: usize, out: &mut Vec<u8>) {
        if from < self.head.len() {
            out.extend_from_slice(&self.head[from..]);
            out.extend_from_slice(&self.payload);
        } else {
            out.extend_from_slice(&self.payload[from - self.head.len()..]);
        }
    }
}

/// Writes as much of `bufs` as the socket takes right now, advancing `bufs` past it; never
/// waits. Returns the bytes written.
fn try_write_vectored_now(
    sock: &Socket,
    bufs: &mut &mut [io::IoSlice<'_>],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut written = 0;
    while !bufs.is_empty() {
        let n = bufs.len().min(MAX_IOV);
        match write_carrying(sock, &bufs[..n], fds) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => {
                written += k;
                io::IoSlice::advance_slices(bufs, k);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// The non-empty parts of `frames`, in order, after `first`.
fn slices<'a>(first: &'a [u8], frames: &'a [DataFrame], out: &mut Vec<io::IoSlice<'a>>) {
    out.clear();
    if !first.is_empty() {
        out.push(io::IoSlice::new(first));
    }
    for f in frames {
        if !f.head.is_empty() {
            out.push(io::IoSlice::new(&f.head));
        }
        if !f.payload.is_empty() {
            out.push(io::IoSlice::new(&f.payload));
        }
    }
}

/// The outbox's ring of shared memory (see "Shared frames").
enum Ring {
    /// Not made yet: no frame has needed it.
    Unborn,
    Live(RingOut),
    /// Could not be made, or the peer broke it: frames go on the socket.
    Off,
}

/// Writes `bufs` as [`Socket::try_write_vectored`], carrying `fds` with the first write that
/// sends anything; they are sent (and cleared) once it has.
fn write_carrying(
    sock: &Socket,
    bufs: &[io::IoSlice<'_>],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    if fds.is_empty() {
        return sock.try_write_vectored(bufs);
    }
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    let n = sock.try_write_with_fds(bufs, &borrowed)?;
    drop(borrowed);
    if n > 0 {
        fds.clear();
    }
    Ok(n)
}

/// [`try_write_now`] carrying `fds` (see [`write_carrying`]): a contiguous `send` when there
/// are none, as before shared frames.
fn try_write_now_carrying(sock: &Socket, buf: &[u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    if fds.is_empty() {
        return try_write_now(sock, buf);
    }
    try_write_vectored_now(sock, &mut &mut [io::IoSlice::new(buf)][..], fds)
}

/// Queued bytes past which a peer that provokes frames without reading them is cut off.
pub(crate) fn hard_cap(max_frame: usize) -> usize {
    HIGH_WATER
        .saturating_add(max_frame.saturating_mul(2))
        .saturating_add(64 * 1024 * 1024)
}

/// Which lane a frame goes in (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Control traffic, in send order.
    Ctrl,
    /// An event: in the control lane, but counted against the event queue.
    Event,
    /// `stream_data` / `stream_fin`: fair-shared with control by batch.
    Stream,
}

/// Why a frame was not sent.
#[derive(Debug)]
pub(crate) enum NotSent {
    /// The connection is closed (or closing).
    Closed,
    /// The message breaks a protocol limit (nesting depth, frame size); nothing was queued
    /// and the connection is unaffected.
    Unencodable(WireError),
}

/// Frames that never come in a burst, so a direct write of one does not wait for the writer
/// task to coalesce the frames after it: heartbeat pings and their pongs, once a second per
/// module, where the hand-off would be a task wake-up (on the core's multi-threaded runtime,
/// often another worker thread's) for nothing.
fn is_lone(msg: Outgoing<'_>) -> bool {
    matches!(
        msg,
        Outgoing::Message(Message::Ping { .. } | Message::Pong { .. })
    )
}

/// Outcome of a push made under the lock; I/O errors are acted on after unlocking.
enum Pushed {
    Ok,
    Gone,
    Unencodable(WireError),
    Failed(io::Error),
}

/// Appends the frame of `msg` to `out`, refusing bodies over `max_frame` (the peer would
/// close the connection over them). `out` is unchanged on error.
fn encode_capped<'a>(
    msg: impl Into<Outgoing<'a>>,
    out: &mut Vec<u8>,
    max_frame: usize,
) -> Result<(), WireError> {
    let start = out.len();
    let body = msg.into().encode(out)?;
    if body > max_frame {
        out.truncate(start);
        return Err(WireError::FrameTooLarge {
            len: body,
            max: max_frame,
        });
    }
    Ok(())
}

/// Frames waiting for the socket, and who may write to it (see the module docs).
pub(crate) struct Outbox {
    /// The socket for the direct path; `None` once closing.
    sock: Option<Arc<Socket>>,
    /// The writer task owns the socket: senders append instead of writing.
    active: bool,
    /// The connection is closing; nothing more is accepted.
    closing: bool,
    /// Closing without a final frame: the writer drops everything and exits.
    discard: bool,
    /// The unwritten rest of a frame the direct path started (`head[head_pos..]`).
    head: Vec<u8>,
    head_pos: usize,
    head_events: Events,
    /// Control lane.
    ctrl: Vec<u8>,
    ctrl_events: Events,
    /// Stream lane: one frame per entry, payloads not copied.
    data: VecDeque<DataFrame>,
    data_bytes: usize,
    /// Frames of the stream lane whose bodies are in the ring: while there are any, control
    /// frames go on the socket (see "Shared frames").
    data_shared: usize,
    /// Encode buffer of the direct path, reused.
    scratch: Vec<u8>,
    /// Bytes and events in the batch the writer is writing now.
    writing: usize,
    writing_events: Events,
    /// Events dropped per source since the last one that fitted, in first-drop order.
    lagged: Vec<(String, u64)>,
    /// Stream writers waiting for the stream lane to drop below [`STREAM_HIGH_WATER`].
    stream_waiters: Vec<Waker>,
    /// Largest frame body sent (`Config::max_frame`).
    max_frame: usize,
    /// Shared frames: the threshold, the ring, the count.
    sharing: Sharing,
    /// The ring's descriptor, until a write has carried it.
    fds: Vec<OwnedFd>,
}

/// The outbox's side of shared frames (see "Shared frames").
struct Sharing {
    /// Smallest body sent as a shared frame; `None` when the peer does not take them.
    min: Option<usize>,
    /// How bodies go round the ring (agreed with the peer).
    laps: Laps,
    ring: Ring,
    /// Shared frames sent.
    sent: u64,
}

impl Sharing {
    /// Copies a frame body made of `parts` into the ring and returns the prefix that replaces
    /// the frame, when it should go shared; `None` (nothing copied) otherwise. Makes the ring
    /// at the first such body, its descriptor going to `fds`.
    fn put(&mut self, parts: &[&[u8]], fds: &mut Vec<OwnedFd>) -> Option<[u8; LEN_PREFIX]> {
        let min = self.min?;
        let body: usize = parts.iter().map(|p| p.len()).sum();
        if body < min || body > crate::shm::RING / 2 {
            return None;
        }
        let prefix = shared_prefix(body).ok()?;
        if matches!(self.ring, Ring::Unborn) {
            self.ring = match RingOut::create(self.laps) {
                Ok((ring, fd)) => {
                    fds.push(fd);
                    Ring::Live(ring)
                }
                Err(e) => {
                    tracing::debug!("no shared-frame ring ({e}): large frames go on the socket");
                    Ring::Off
                }
            };
        }
        let Ring::Live(ring) = &mut self.ring else {
            return None;
        };
        match ring.put(parts) {
            Ok(true) => {
                self.sent += 1;
                Some(prefix)
            }
            Ok(false) => None,
            Err(e) => {
                tracing::warn!("shared-frame ring abandoned: {e}; large frames go on the socket");
                self.ring = Ring::Off;
                None
            }
        }
    }

    /// `frame`, or its shared form (the prefix alone) when it goes through the ring.
    fn frame(&mut self, frame: DataFrame, fds: &mut Vec<OwnedFd>) -> DataFrame {
        let Some(body) = frame.head.get(LEN_PREFIX..) else {
            return frame;
        };
        match self.put(&[body, &frame.payload], fds) {
            Some(prefix) => DataFrame::shared(prefix),
            None => frame,
        }
    }
}

impl Outbox {
    pub(crate) fn new(
        sock: Arc<Socket>,
        max_frame: usize,
        shared_min: Option<usize>,
        laps: Laps,
    ) -> Outbox {
        Outbox {
            sock: Some(sock),
            active: false,
            closing: false,
            discard: false,
            head: Vec::new(),
            head_pos: 0,
            head_events: Events::NONE,
            ctrl: Vec::new(),
            ctrl_events: Events::NONE,
            data: VecDeque::new(),
            data_bytes: 0,
            data_shared: 0,
            scratch: Vec::new(),
            writing: 0,
            writing_events: Events::NONE,
            lagged: Vec::new(),
            stream_waiters: Vec::new(),
            max_frame,
            sharing: Sharing {
                min: shared_min,
                laps,
                ring: Ring::Unborn,
                sent: 0,
            },
            fds: Vec::new(),
        }
    }

    /// Shared frames sent so far.
    pub(crate) fn shared_sent(&self) -> u64 {
        self.sharing.sent
    }

    /// Turns the frame just encoded at `scratch[start..]` or `ctrl[start..]` into a shared
    /// frame when it should be one (see "Shared frames"): its body goes into the ring, its
    /// prefix replaces it. `false` (the frame untouched) otherwise.
    fn share(&mut self, in_ctrl: bool, start: usize) -> bool {
        if self.data_shared > 0 {
            // A batch writes the control lane first: placed now, this body would sit in the
            // ring after stream bodies whose prefixes the socket gets after its own.
            return false;
        }
        let out = if in_ctrl {
            &mut self.ctrl
        } else {
            &mut self.scratch
        };
        let Some(prefix) = self
            .sharing
            .put(&[&out[start + LEN_PREFIX..]], &mut self.fds)
        else {
            return false;
        };
        out.truncate(start);
        out.extend_from_slice(&prefix);
        true
    }

    /// Bytes queued and not yet handed to the socket.
    pub(crate) fn queued(&self) -> usize {
        self.writing + (self.head.len() - self.head_pos) + self.ctrl.len() + self.data_bytes
    }

    /// Events (and their bytes) queued and not yet handed to the socket.
    pub(crate) fn queued_events(&self) -> Events {
        self.writing_events
            .plus(self.head_events)
            .plus(self.ctrl_events)
    }

    /// Marks the outbox closing, with `send` as the last frame. `false` if already closing.
    pub(crate) fn begin_close(&mut self, send: Option<Fault>) -> bool {
        if self.closing {
            return false;
        }
        self.closing = true;
        self.sock = None;
        self.lagged.clear();
        self.data.clear();
        self.data_bytes = 0;
        self.data_shared = 0;
        // Waiting stream writers find the connection closed.
        for w in self.stream_waiters.drain(..) {
            w.wake();
        }
        let last = send.map(|fault| Message::Error {
            id: 0,
            code: fault.code,
            message: fault.message,
        });
        let queued = last.is_some_and(|last| encode_frame(&last, &mut self.ctrl).is_ok());
        if !queued {
            self.discard = true;
        }
        // From here on only the writer task touches the socket (to flush, or to drop it).
        self.active = true;
        true
    }

    /// Encodes `msg` and either writes it now (nothing queued) or queues it in `lane`.
    fn push<'a>(
        &mut self,
        lane: Lane,
        msg: impl Into<Outgoing<'a>>,
        wake: &tokio::sync::Notify,
    ) -> Pushed {
        let msg = msg.into();
        if self.closing {
            return Pushed::Gone;
        }
        if !self.active && lane == Lane::Stream {
            return self.push_stream_now(msg, wake);
        }
        if !self.active {
            if self.sock.is_none() {
                return Pushed::Gone;
            }
            self.scratch.clear();
            if let Err(e) = encode_capped(msg, &mut self.scratch, self.max_frame) {
                return Pushed::Unencodable(e);
            }
            let shared = self.share(false, 0);
            let Some(sock) = self.sock.as_ref() else {
                return Pushed::Gone;
            };
            let written = match try_write_now_carrying(sock, &self.scratch, &mut self.fds) {
                Ok(n) => n,
                Err(e) => return Pushed::Failed(e),
            };
            if written == self.scratch.len() {
                if self.scratch.capacity() > RETAIN {
                    self.scratch = Vec::new();
                }
                if written < COALESCE_BELOW
                    && !shared
                    && tokio::task::try_id().is_some()
                    && !is_lone(msg)
                {
                    // Frames sent before the writer task gets to run (the rest of a burst:
                    // replies to calls read in one go, a pipelining caller) are queued and go
                    // out together in one write; see "Coalescing" in the module docs. A
                    // sender outside any task (a C API caller's thread, a `block_on`) makes
                    // no such burst, and waking the writer from there would cost it a
                    // cross-thread wake-up per frame for nothing.
                    self.active = true;
                    wake.notify_one();
                }
                return Pushed::Ok;
            }
            // The socket pushed back: the rest goes first, and the writer task takes over.
            std::mem::swap(&mut self.head, &mut self.scratch);
            self.head_pos = written;
            self.head_events = if lane == Lane::Event {
                Events::one(self.head.len() - written)
            } else {
                Events::NONE
            };
            self.active = true;
            wake.notify_one();
            return Pushed::Ok;
        }
        let start = self.ctrl.len();
        let encoded = match lane {
            Lane::Ctrl => encode_capped(msg, &mut self.ctrl, self.max_frame).map(|()| {
                self.share(true, start);
            }),
            Lane::Event => encode_capped(msg, &mut self.ctrl, self.max_frame).map(|()| {
                self.share(true, start);
                self.ctrl_events = self.ctrl_events.plus(Events::one(self.ctrl.len() - start));
            }),
            Lane::Stream => DataFrame::of(msg, self.max_frame).map(|frame| {
                let frame = self.sharing.frame(frame, &mut self.fds);
                self.queue_data(frame);
            }),
        };
        match encoded {
            Ok(()) => Pushed::Ok,
            Err(e) => Pushed::Unencodable(e),
        }
    }

    /// The direct path for a stream frame: head and payload in one vectored write, without
    /// encoding the payload into `scratch`. Only the unwritten rest of a frame the socket
    /// pushed back is copied (into `head`, for the writer task).
    fn push_stream_now(&mut self, msg: Outgoing<'_>, wake: &tokio::sync::Notify) -> Pushed {
        if self.sock.is_none() {
            return Pushed::Gone;
        }
        let frame = match DataFrame::of(msg, self.max_frame) {
            Ok(f) => self.sharing.frame(f, &mut self.fds),
            Err(e) => return Pushed::Unencodable(e),
        };
        self.write_data_now(frame, wake)
    }

    /// Writes a stream-lane frame now (nothing is queued); the writer task takes over the
    /// rest when the socket pushes back.
    fn write_data_now(&mut self, frame: DataFrame, wake: &tokio::sync::Notify) -> Pushed {
        let Some(sock) = self.sock.as_ref() else {
            return Pushed::Gone;
        };
        // On the stack: this is every stream write's path while the socket keeps up.
        let mut parts = [
            io::IoSlice::new(&frame.head),
            io::IoSlice::new(&frame.payload),
        ];
        let written = match try_write_vectored_now(sock, &mut &mut parts[..], &mut self.fds) {
            Ok(n) => n,
            Err(e) => return Pushed::Failed(e),
        };
        if written == frame.len() {
            if written < COALESCE_BELOW && tokio::task::try_id().is_some() {
                // As for small control frames (see "Coalescing").
                self.active = true;
                wake.notify_one();
            }
            return Pushed::Ok;
        }
        self.head.clear();
        frame.copy_rest(written, &mut self.head);
        self.head_pos = 0;
        self.head_events = Events::NONE;
        self.active = true;
        wake.notify_one();
        Pushed::Ok
    }

    /// Appends a frame to the stream lane.
    fn queue_data(&mut self, frame: DataFrame) {
        if frame.shared {
            self.data_shared += 1;
        }
        self.data_bytes += frame.len();
        self.data.push_back(frame);
    }

    /// Sends `data` as stream `stream`'s next `stream_data` frame through the ring, copied
    /// there straight from the caller's buffer; `None` (nothing sent, nothing placed) when
    /// that frame does not go shared, for the caller to send it the usual way.
    fn push_stream_shared(
        &mut self,
        stream: u64,
        data: &[u8],
        wake: &tokio::sync::Notify,
    ) -> Option<Pushed> {
        if self.closing || self.sock.is_none() {
            return Some(Pushed::Gone);
        }
        if data.len() < self.sharing.min? / 2 {
            return None;
        }
        // `scratch` is free between pushes: the frame's head is encoded there.
        self.scratch.clear();
        let body = encode_stream_data_head(stream, data.len(), &mut self.scratch).ok()?;
        if body > self.max_frame {
            return None;
        }
        let head = self.scratch.get(LEN_PREFIX..)?;
        let prefix = self.sharing.put(&[head, data], &mut self.fds)?;
        let frame = DataFrame::shared(prefix);
        if self.active {
            self.queue_data(frame);
            return Some(Pushed::Ok);
        }
        Some(self.write_data_now(frame, wake))
    }

    /// Moves the next batch into `batch` (control bytes, empty on entry) and `frames` (stream
    /// frames, empty on entry); returns where writing starts in `batch`.
    fn take_batch(
        &mut self,
        batch: &mut Vec<u8>,
        frames: &mut Vec<DataFrame>,
        fds: &mut Vec<OwnedFd>,
    ) -> usize {
        let mut pos = 0;
        let mut events = Events::NONE;
        if self.head_pos < self.head.len() {
            std::mem::swap(batch, &mut self.head);
            pos = self.head_pos;
            events = events.plus(self.head_events);
        }
        self.head.clear();
        self.head_pos = 0;
        self.head_events = Events::NONE;
        if !self.ctrl.is_empty() {
            if batch.is_empty() {
                std::mem::swap(batch, &mut self.ctrl);
            } else {
                batch.extend_from_slice(&self.ctrl);
                self.ctrl.clear();
            }
            events = events.plus(self.ctrl_events);
            self.ctrl_events = Events::NONE;
        }
        if self.ctrl.capacity() > RETAIN {
            self.ctrl = Vec::new();
        }
        let mut budget = DATA_BATCH;
        while budget > 0 {
            let Some(frame) = self.data.pop_front() else {
                break;
            };
            budget = budget.saturating_sub(frame.len());
            self.data_bytes -= frame.len();
            if frame.shared {
                self.data_shared -= 1;
            }
            frames.push(frame);
        }
        fds.append(&mut self.fds);
        if self.data_bytes < STREAM_HIGH_WATER {
            for w in self.stream_waiters.drain(..) {
                w.wake();
            }
        }
        self.writing = batch.len() - pos + frames.iter().map(DataFrame::len).sum::<usize>();
        self.writing_events = events;
        pos
    }
}

/// A count of queued events and of their encoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Events {
    pub(crate) count: usize,
    pub(crate) bytes: usize,
}

impl Events {
    const NONE: Events = Events { count: 0, bytes: 0 };

    fn one(bytes: usize) -> Events {
        Events { count: 1, bytes }
    }

    fn plus(self, other: Events) -> Events {
        Events {
            count: self.count + other.count,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// Writes as much of `buf` as the socket takes right now; never waits.
fn try_write_now(sock: &Socket, buf: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < buf.len() {
        match sock.try_write(&buf[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

impl Inner {
    /// Sends `msg` without waiting (see the module docs for where it goes).
    pub(crate) fn send<'a>(&self, lane: Lane, msg: impl Into<Outgoing<'a>>) -> Result<(), NotSent> {
        let pushed = lock(&self.out).push(lane, msg.into(), &self.wake);
        self.pushed(pushed)
    }

    /// Sends `data` as stream `stream`'s next `stream_data` frame through the ring of shared
    /// memory, copied there from `data` itself; `None` (nothing sent) when it would not go
    /// shared (no ring, no room in it, too small), for the caller to copy it into a
    /// [`Message::StreamData`] and [`Inner::send`] that.
    pub(crate) fn send_stream_shared(
        &self,
        stream: u64,
        data: &[u8],
    ) -> Option<Result<(), NotSent>> {
        let pushed = lock(&self.out).push_stream_shared(stream, data, &self.wake)?;
        Some(self.pushed(pushed))
    }

    /// Sends `msg` without waiting if fewer than [`HIGH_WATER`] bytes are queued; `Ok(false)`
    /// (nothing sent) otherwise, for the caller to wait with [`Inner::send_wait`].
    pub(crate) fn send_if_room<'a>(
        &self,
        lane: Lane,
        msg: impl Into<Outgoing<'a>>,
    ) -> Result<bool, NotSent> {
        let msg = msg.into();
        let pushed = {
            let mut out = lock(&self.out);
            if out.closing {
                return Err(NotSent::Closed);
            }
            if out.queued() >= HIGH_WATER {
                return Ok(false);
            }
            out.push(lane, msg, &self.wake)
        };
        self.pushed(pushed).map(|()| true)
    }

    fn pushed(&self, pushed: Pushed) -> Result<(), NotSent> {
        match pushed {
            Pushed::Ok => Ok(()),
            Pushed::Gone => Err(NotSent::Closed),
            Pushed::Unencodable(e) => Err(NotSent::Unencodable(e)),
            Pushed::Failed(e) => {
                self.shut(format!("write failed: {e}"), None);
                Err(NotSent::Closed)
            }
        }
    }

    /// Sends `msg`, first waiting while more than [`HIGH_WATER`] bytes are queued.
    ///
    /// # Cancel safety
    /// Cancel safe: the frame is queued entirely or not at all.
    pub(crate) async fn send_wait<'a>(
        &self,
        lane: Lane,
        msg: impl Into<Outgoing<'a>>,
    ) -> Result<(), NotSent> {
        let msg = msg.into();
        loop {
            {
                let mut out = lock(&self.out);
                if out.closing {
                    return Err(NotSent::Closed);
                }
                if out.queued() < HIGH_WATER {
                    let pushed = out.push(lane, msg, &self.wake);
                    drop(out);
                    return self.pushed(pushed);
                }
            }
            // Over the mark: register for progress, then look again (no lost wake-up).
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            {
                let out = lock(&self.out);
                if out.closing {
                    return Err(NotSent::Closed);
                }
                if out.queued() < HIGH_WATER {
                    continue;
                }
            }
            progress.await;
        }
    }

    /// `Ready` when a stream write may queue its frame: the stream lane is below
    /// [`STREAM_HIGH_WATER`] (or the connection is closing, which the write then reports).
    /// Otherwise registers `cx` to be woken when the writer has taken data from the lane.
    pub(crate) fn poll_stream_room(&self, cx: &mut TaskContext<'_>) -> Poll<()> {
        let mut out = lock(&self.out);
        if out.closing || out.data_bytes < STREAM_HIGH_WATER {
            return Poll::Ready(());
        }
        if !out.stream_waiters.iter().any(|w| w.will_wake(cx.waker())) {
            out.stream_waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Sends a frame the peer provoked (pong, a `limit` refusal) from the reader task. If the
    /// peer keeps provoking frames without reading them, closes the connection with `limit`.
    pub(crate) fn send_provoked(&self, msg: &Message) -> Result<(), NotSent> {
        let (pushed, queued) = {
            let mut out = lock(&self.out);
            let pushed = out.push(Lane::Ctrl, msg, &self.wake);
            (pushed, out.queued())
        };
        self.pushed(pushed)?;
        let cap = hard_cap(self.config.max_frame);
        if queued > cap {
            let message =
                format!("{queued} bytes queued for a peer that does not read them (limit {cap})");
            tracing::warn!(session = self.id, peer = %self.peer.identity, "{message}");
            self.shut(
                format!("limit: {message}"),
                Some(Fault::new(ErrorCode::Limit, message)),
            );
            return Err(NotSent::Closed);
        }
        Ok(())
    }

    /// See [`Session::send_event`](crate::Session::send_event).
    pub(crate) fn send_event(&self, source: &str, event: &str, data: Vec<Value>) -> bool {
        let msg = Message::Event {
            source: source.to_owned(),
            event: event.to_owned(),
            data,
        };
        let mut out = lock(&self.out);
        if out.closing {
            return false;
        }
        if out.active {
            // Something is queued, so the peer may be slow: the event must fit the queue's
            // count and byte budgets, and its size is known only once it is encoded.
            let mut frame = std::mem::take(&mut out.scratch);
            frame.clear();
            let encoded = encode_capped(&msg, &mut frame, out.max_frame);
            let queued = out.queued_events();
            let fits = encoded.is_ok()
                && queued.count < self.config.event_queue
                && (queued.bytes == 0
                    || queued.bytes.saturating_add(frame.len()) <= self.config.event_queue_bytes);
            if !fits {
                out.scratch = frame;
                if encoded.is_err() {
                    return false;
                }
                match out.lagged.iter_mut().find(|(s, _)| s == source) {
                    Some((_, dropped)) => *dropped += 1,
                    None => out.lagged.push((source.to_owned(), 1)),
                }
                tracing::debug!(
                    session = self.id,
                    source,
                    event,
                    events = queued.count,
                    bytes = queued.bytes,
                    "event queue full, event dropped"
                );
                return false;
            }
            let max_frame = out.max_frame;
            for (source, dropped) in std::mem::take(&mut out.lagged) {
                let notice = Message::Lagged { source, dropped };
                if let Err(e) = encode_capped(&notice, &mut out.ctrl, max_frame) {
                    tracing::debug!(session = self.id, "lagged notice not sent: {e}");
                }
            }
            out.ctrl.extend_from_slice(&frame);
            out.ctrl_events = out.ctrl_events.plus(Events::one(frame.len()));
            if frame.capacity() <= RETAIN {
                out.scratch = frame;
            }
            return true;
        }
        for (source, dropped) in std::mem::take(&mut out.lagged) {
            let pushed = out.push(Lane::Ctrl, &Message::Lagged { source, dropped }, &self.wake);
            if !matches!(pushed, Pushed::Ok) {
                drop(out);
                let _ = self.pushed(pushed);
                return false;
            }
        }
        let pushed = out.push(Lane::Event, &msg, &self.wake);
        drop(out);
        self.pushed(pushed).is_ok()
    }

    /// Resolves when nothing is queued (or the connection has closed).
    pub(crate) async fn flushed(&self) {
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            {
                let out = lock(&self.out);
                if out.closing || !out.active {
                    return;
                }
            }
            progress.await;
        }
    }
}

/// What the writer does next.
enum Next {
    Write(usize),
    Idle,
    Exit,
}

/// The writer task: drains the outbox while the socket pushes back, then hands the socket
/// back to the direct path; on close flushes the final frame (bounded by
/// `handshake_timeout`) or discards, and exits, dropping its reference to the socket.
pub(crate) async fn run(inner: Arc<Inner>, sock: Arc<Socket>) {
    let mut batch: Vec<u8> = Vec::new();
    let mut frames: Vec<DataFrame> = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut deadline: Option<Instant> = None;
    loop {
        batch.clear();
        frames.clear();
        if batch.capacity() > RETAIN {
            batch = Vec::new();
        }
        let next = {
            let mut out = lock(&inner.out);
            out.writing = 0;
            out.writing_events = Events::NONE;
            if out.discard {
                Next::Exit
            } else {
                let pos = out.take_batch(&mut batch, &mut frames, &mut fds);
                if pos < batch.len() || !frames.is_empty() {
                    if out.closing && deadline.is_none() {
                        deadline = Some(deadline_after(inner.config.handshake_timeout));
                    }
                    Next::Write(pos)
                } else if out.closing {
                    Next::Exit
                } else {
                    out.active = false;
                    Next::Idle
                }
            }
        };
        let pos = match next {
            Next::Exit => break,
            Next::Idle => {
                sock.write_idle();
                inner.progress.notify_waiters();
                inner.wake.notified().await;
                continue;
            }
            Next::Write(pos) => pos,
        };
        let written = write_batch(
            &inner,
            &sock,
            (&batch[pos..], &frames, &mut fds),
            &mut deadline,
        );
        if let Err(e) = written.await {
            inner.shut(format!("write failed: {e}"), None);
            break;
        }
        inner.progress.notify_waiters();
    }
    {
        let mut out = lock(&inner.out);
        out.writing = 0;
        out.writing_events = Events::NONE;
        out.head = Vec::new();
        out.head_pos = 0;
        out.head_events = Events::NONE;
        out.ctrl = Vec::new();
        out.ctrl_events = Events::NONE;
        out.scratch = Vec::new();
    }
    inner.progress.notify_waiters();
    tracing::debug!(session = inner.id, "writer finished");
}

/// Writes all of `buf` and then `frames` (vectored), the first write carrying `fds`, waiting
/// for writability. Gives up when the connection is closed without a final frame, or when the
/// close `deadline` passes.
async fn write_batch(
    inner: &Inner,
    sock: &Socket,
    (buf, frames, fds): (&[u8], &[DataFrame], &mut Vec<OwnedFd>),
    deadline: &mut Option<Instant>,
) -> io::Result<()> {
    let mut all = Vec::with_capacity(1 + 2 * frames.len());
    slices(buf, frames, &mut all);
    let mut bufs = &mut all[..];
    while !bufs.is_empty() {
        let n = bufs.len().min(MAX_IOV);
        match write_carrying(sock, &bufs[..n], fds) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            Err(_) => match *deadline {
                Some(at) => match tokio::time::timeout_at(at, sock.writable()).await {
                    Ok(ready) => ready?,
                    Err(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "peer did not read the final frames in time",
                        ));
                    }
                },
                None => {
                    tokio::select! {
                        ready = sock.writable() => ready?,
                        () = inner.wake.notified() => {
                            let out = lock(&inner.out);
                            if out.discard {
                                return Err(io::Error::new(
                                    io::ErrorKind::ConnectionAborted,
                                    "connection closed",
                                ));
                            }
                            if out.closing {
                                *deadline =
                                    Some(deadline_after(inner.config.handshake_timeout));
                            }
                        }
                    }
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use logos_wire::FrameDecoder;
    use tokio::net::UnixStream;
    use tokio::sync::Notify;

    /// An outbox whose socket is owned by a (pretend) writer task, so pushes queue.
    fn queued_outbox() -> (Outbox, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        let mut out = Outbox::new(
            Arc::new(Socket::unix(a).expect("register")),
            logos_wire::codec::DEFAULT_MAX_FRAME,
            None,
            Laps::Whole,
        );
        out.active = true;
        (out, b)
    }

    fn kinds(batch: &[u8]) -> Vec<&'static str> {
        let mut buf = BytesMut::from(batch);
        let dec = FrameDecoder::default();
        let mut kinds = Vec::new();
        while let Some(m) = dec.decode(&mut buf).unwrap() {
            kinds.push(m.kind_name());
        }
        assert!(buf.is_empty(), "a partial frame is left");
        kinds
    }

    /// The bytes a batch puts on the wire: the control bytes, then each stream frame.
    fn wire(batch: &[u8], frames: &[DataFrame]) -> Vec<u8> {
        let mut all = batch.to_vec();
        for f in frames {
            f.copy_rest(0, &mut all);
        }
        all
    }

    #[tokio::test]
    async fn a_batch_takes_all_control_then_a_bounded_share_of_stream_data() {
        let (mut out, _peer) = queued_outbox();
        let wake = Notify::new();
        let chunk = Bytes::from(vec![0u8; 64 * 1024]);
        for _ in 0..10 {
            let data = Message::StreamData {
                stream: 1,
                data: chunk.clone(),
            };
            assert!(matches!(out.push(Lane::Stream, &data, &wake), Pushed::Ok));
        }
        assert!(matches!(
            out.push(Lane::Ctrl, &Message::Ping { nonce: 1 }, &wake),
            Pushed::Ok
        ));
        let (mut batch, mut frames) = (Vec::new(), Vec::new());
        let pos = out.take_batch(&mut batch, &mut frames, &mut Vec::new());
        assert_eq!(pos, 0);
        // The payloads are the stream's own buffers, not copies.
        assert!(frames.iter().all(|f| f.payload.as_ptr() == chunk.as_ptr()));
        let k = kinds(&wire(&batch, &frames));
        assert_eq!(k[0], "ping", "control goes first");
        let data = k.iter().filter(|k| **k == "stream_data").count();
        assert_eq!(data, DATA_BATCH / (64 * 1024), "{k:?}");
        assert_eq!(out.queued(), wire(&batch, &frames).len() + out.data_bytes);
        // The next batch carries on with the data.
        let (mut batch, mut frames) = (Vec::new(), Vec::new());
        out.take_batch(&mut batch, &mut frames, &mut Vec::new());
        assert_eq!(kinds(&wire(&batch, &frames)).len(), 4);
    }

    /// What the peer gets from `batch` and `frames` (a writer batch): each frame decoded, a
    /// shared one read out of `ring` by the receiver's rule; `(kind, body size, shared)`.
    fn delivered(
        batch: &[u8],
        frames: &[DataFrame],
        ring: &mut crate::shm::RingIn,
    ) -> Vec<(&'static str, usize, bool)> {
        let mut buf = BytesMut::from(&wire(batch, frames)[..]);
        let dec = FrameDecoder::default();
        let mut got = Vec::new();
        while let Some(frame) = dec.decode_frame(&mut buf, true).unwrap() {
            let (msg, shared) = match frame {
                logos_wire::Frame::Shared { len } => {
                    let body = ring.take(len, &mut BytesMut::new()).unwrap();
                    (logos_wire::decode_body(&body).unwrap(), true)
                }
                logos_wire::Frame::Message(msg) => (msg, false),
            };
            let size = match &msg {
                Message::StreamData { data, .. } => data.len(),
                Message::Call(call) => match call.args.first() {
                    Some(Value::Bytes(b)) => b.len(),
                    _ => 0,
                },
                _ => 0,
            };
            got.push((msg.kind_name(), size, shared));
        }
        assert!(buf.is_empty(), "a partial frame is left");
        got
    }

    #[tokio::test]
    async fn the_ring_is_filled_in_the_order_the_prefixes_reach_the_socket() {
        const K: usize = 64 * 1024;
        let (a, _peer) = UnixStream::pair().unwrap();
        let mut out = Outbox::new(
            Arc::new(Socket::unix(a).expect("register")),
            logos_wire::codec::DEFAULT_MAX_FRAME,
            Some(K),
            Laps::Short,
        );
        out.active = true;
        let wake = Notify::new();
        let call = |len: usize| {
            Message::Call(logos_wire::Call {
                id: 1,
                target: "t".into(),
                method: "m".into(),
                args: vec![Value::Bytes(Bytes::from(vec![3u8; len]))],
                timeout_ms: 0,
                trace: None,
            })
        };
        // Two stream chunks placed straight from the caller's buffer, then a large call: a
        // batch writes control first, so the call must not take the ring behind them.
        for byte in [1u8, 2] {
            let sent = out.push_stream_shared(5, &[byte; K], &wake);
            assert!(matches!(sent, Some(Pushed::Ok)));
        }
        assert!(matches!(
            out.push(Lane::Ctrl, &call(200_000), &wake),
            Pushed::Ok
        ));
        let (mut batch, mut frames, mut fds) = (Vec::new(), Vec::new(), Vec::new());
        out.take_batch(&mut batch, &mut frames, &mut fds);
        let mut ring =
            crate::shm::RingIn::open(fds.pop().expect("the ring's descriptor"), Laps::Short)
                .expect("the ring");
        assert_eq!(
            delivered(&batch, &frames, &mut ring),
            [
                ("call", 200_000, false),
                ("stream_data", K, true),
                ("stream_data", K, true),
            ]
        );
        // With no placed chunk waiting, a large call takes the ring again, and a stream frame
        // queued after it lands behind it.
        assert!(matches!(
            out.push(Lane::Ctrl, &call(100_000), &wake),
            Pushed::Ok
        ));
        let chunk = Message::StreamData {
            stream: 5,
            data: Bytes::from(vec![4u8; K]),
        };
        assert!(matches!(out.push(Lane::Stream, &chunk, &wake), Pushed::Ok));
        let (mut batch, mut frames) = (Vec::new(), Vec::new());
        out.take_batch(&mut batch, &mut frames, &mut fds);
        assert_eq!(
            delivered(&batch, &frames, &mut ring),
            [("call", 100_000, true), ("stream_data", K, true)]
        );
    }

    #[tokio::test]
    async fn stream_frames_reach_the_peer_whole_and_in_order_through_vectored_writes() {
        // A peer that reads slowly: the direct path's vectored write is cut short, its rest
        // and the queued frames go out as the writer task sends them, and the bytes must
        // arrive exactly as `encode_frame` would have put them, in order.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let sock = Arc::new(Socket::unix(UnixStream::from_std(a).unwrap()).expect("register"));
        let mut out = Outbox::new(
            Arc::clone(&sock),
            logos_wire::codec::DEFAULT_MAX_FRAME,
            None,
            Laps::Whole,
        );
        let wake = Notify::new();
        let mut sent = Vec::new();
        for i in 0..40u8 {
            let data = Message::StreamData {
                stream: 7,
                data: Bytes::from(vec![i; 60_000 + usize::from(i)]),
            };
            encode_frame(&data, &mut sent).unwrap();
            assert!(matches!(out.push(Lane::Stream, &data, &wake), Pushed::Ok));
        }
        assert!(out.active, "the socket never pushed back");
        let expected = sent.len();
        let reader = std::thread::spawn(move || {
            use std::io::Read as _;
            let mut b = b;
            let mut got = Vec::new();
            let mut buf = vec![0; 7_000];
            while got.len() < expected {
                std::thread::sleep(std::time::Duration::from_micros(50));
                let n = b.read(&mut buf).unwrap();
                assert!(n > 0, "closed early");
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        // What the writer task does: the rest of the direct write, then batches, each written
        // whole (retrying while the socket is full).
        let mut first = std::mem::take(&mut out.head);
        loop {
            let (mut batch, mut frames) = (Vec::new(), Vec::new());
            let pos = out.take_batch(&mut batch, &mut frames, &mut Vec::new());
            first.extend_from_slice(&batch[pos..]);
            if first.is_empty() && frames.is_empty() {
                break;
            }
            let mut all = Vec::new();
            slices(&first, &frames, &mut all);
            let mut bufs = &mut all[..];
            while !bufs.is_empty() {
                try_write_vectored_now(&sock, &mut bufs, &mut Vec::new()).unwrap();
                std::thread::yield_now();
            }
            first.clear();
        }
        let got = reader.join().unwrap();
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "frames arrived altered or out of order");
    }

    #[tokio::test]
    async fn unencodable_or_oversized_messages_are_refused_without_queueing() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut out = Outbox::new(
            Arc::new(Socket::unix(a).expect("register")),
            64,
            None,
            Laps::Whole,
        );
        out.active = true;
        let wake = Notify::new();
        let big = Message::Event {
            source: "s".into(),
            event: "e".into(),
            data: vec![Value::Bytes(vec![0; 100].into())],
        };
        assert!(matches!(
            out.push(Lane::Event, &big, &wake),
            Pushed::Unencodable(WireError::FrameTooLarge { .. })
        ));
        assert_eq!(out.queued(), 0);
        assert_eq!(out.queued_events(), Events::NONE);
    }

    #[tokio::test]
    async fn close_queues_the_final_error_and_refuses_more() {
        let (mut out, _peer) = queued_outbox();
        let wake = Notify::new();
        assert!(out.begin_close(Some(Fault::new(ErrorCode::Limit, "bye"))));
        assert!(!out.begin_close(None));
        assert!(matches!(
            out.push(Lane::Ctrl, &Message::Ping { nonce: 1 }, &wake),
            Pushed::Gone
        ));
        let (mut batch, mut frames) = (Vec::new(), Vec::new());
        out.take_batch(&mut batch, &mut frames, &mut Vec::new());
        assert_eq!(kinds(&batch), vec!["error"]);
    }
}
