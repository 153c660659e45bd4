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
//! The outbox has three lanes:
//! * `ctrl`: calls, replies, errors, cancels, subscriptions, events, credit, pings; one
//!   contiguous buffer in send order.
//! * events share `ctrl` (so they stay in order with everything else) but are counted, and
//!   [`Inner::send_event`] refuses to queue more than [`Config::event_queue`](crate::Config)
//!   of them: memory stays bounded however slowly the peer reads, and drops are reported as
//!   `lagged` ahead of the next event that fits.
//! * `data`: `stream_data` and `stream_fin` frames, per stream in order. Each writer batch
//!   takes all of `ctrl` and then at most [`DATA_BATCH`] bytes of stream frames, so a call
//!   never waits behind more than one batch of bulk data, and control traffic cannot starve
//!   streams either (every batch carries some data). Stream data needs no other bound: credit
//!   caps it at one window per stream.
//!
//! Async senders (calls, replies) wait while more than [`HIGH_WATER`] bytes are queued, so a
//! peer that stops reading slows its callers instead of growing our memory. Frames the peer
//! provokes from the reader task (pongs, `limit` refusals) cannot wait (that would stop the
//! reader, and two such peers would deadlock), so past [`hard_cap`] the connection is closed
//! with `limit` instead.

use crate::session::{Inner, lock};
use logos_wire::{ErrorCode, Fault as _Unused, Message, Value, encode_frame};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use tokio::net::UnixStream;
use tokio::time::Instant;

// `_Unused` keeps the import list stable across codec versions; see `Fault` in this crate.
#[allow(unused_imports)]
use _Unused as _;
