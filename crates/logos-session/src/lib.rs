//! `logos-session`: one authenticated logos connection over a Unix socket, or over TLS on TCP
//! (a remote module's link, [`Transport`]).
//!
//! Both the core (`logos-core`) and modules (`logos-sdk`) speak the protocol through this crate,
//! so the hard parts live once: many calls in flight with replies in any order, per-call
//! deadlines and cancellation, bounded event queues with `lagged` notices, credit-controlled
//! byte streams with half-close and reset, ping/pong. A connection is symmetric after the
//! handshake: either side may call, subscribe, emit or open streams; what each side allows is
//! its [`Handler`]'s business. This crate decides no policy and knows nothing of processes.
//!
//! Handshake: the connecting side calls [`connect`] (sends `hello`, waits for `welcome`); the
//! accepting side calls [`read_hello`], inspects the [`PendingSession`] (hello, peer creds) and
//! then [`PendingSession::accept`]s or [`PendingSession::refuse`]s it. A listening socket accepts
//! through an [`Acceptor`] (back-off on `EMFILE`, at most [`DEFAULT_MAX_HANDSHAKES`] peers
//! waiting for their hello, the oldest pushed out) and reads with [`read_hello_admitted`]; before
//! authentication a `hello` may be at most `Config::max_handshake_frame` (64 KiB).
//!
//! # Layout
//!
//! | file | owns |
//! |---|---|
//! | `admission.rs` | [`Acceptor`]: accept with back-off, [`Admission`] to the handshake |
//! | `beat.rs` | the heartbeat page: [`BeatWatch`] (the core reads a module's count), [`Beater`] (the module counts) |
//! | `config.rs` | [`Config`] |
//! | `fault.rs`, `error.rs` | [`Fault`] (one call failed), [`SessionError`] (the connection failed) |
//! | `handler.rs` | [`Handler`], [`Refuse`] |
//! | `handshake.rs` | [`connect`], [`read_hello`], [`PendingSession`] |
//! | `session.rs` | [`Session`], [`Peer`], outgoing calls, closing |
//! | `deadline.rs` | the deadline task: fails outgoing calls past their deadline |
//! | `socket.rs` | [`Transport`]: non-blocking reads and writes on a Unix socket or on TLS over TCP |
//! | `writer.rs` | the write path: direct write-through, batching writer task, event queue |
//! | `reader.rs` | the reader task and dispatch of incoming frames (also from a thread polling for its answer) |
//! | `incoming.rs` | incoming calls: limits, deadlines, cancel, panics |
//! | `stream.rs` | [`ByteStream`] and stream credit |
//!
//! # Examples
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use logos_session::{Config, Refuse};
//! use logos_wire::{Hello, Welcome, PROTOCOL_MAJOR, PROTOCOL_MINOR};
//! use std::{sync::Arc, time::Duration};
//!
//! let (a, b) = tokio::net::UnixStream::pair()?;
//! let server = tokio::spawn(async move {
//!     let pending = logos_session::read_hello(b, Config::default()).await?;
//!     let identity = pending.hello.identity.clone();
//!     let welcome = Welcome {
//!         major: PROTOCOL_MAJOR,
//!         minor: PROTOCOL_MINOR,
//!         identity: "server".into(),
//!         attrs: Default::default(),
//!     };
//!     pending.accept(identity, welcome, Arc::new(Refuse)).await
//! });
//! let hello = Hello {
//!     major: PROTOCOL_MAJOR,
//!     minor: PROTOCOL_MINOR,
//!     identity: "client".into(),
//!     token: Default::default(),
//!     attrs: Default::default(),
//! };
//! let (client, _welcome) =
//!     logos_session::connect(a, hello, Arc::new(Refuse), Config::default()).await?;
//! let _server = server.await??;
//! let fault = client
//!     .call("server", "nothing", vec![], Duration::from_secs(1))
//!     .await
//!     .unwrap_err();
//! assert_eq!(fault.code, logos_wire::ErrorCode::UnknownMethod);
//! # Ok(()) }
//! ```

mod admission;
mod beat;
mod config;
mod deadline;
mod error;
mod fault;
mod handler;
mod handshake;
mod incoming;
mod reader;
mod session;
mod shared_cpu;
mod shm;
mod socket;
mod stream;
mod traffic;
mod unix_socket;
mod writer;

pub use admission::{Acceptor, Admission, DEFAULT_MAX_HANDSHAKES, Ticket};
pub use beat::{BeatWatch, Beater, count_instant_after};
pub use config::{Config, DEFAULT_SHARED_MIN};
pub use error::SessionError;
pub use fault::Fault;
pub use handler::{Handler, Refuse};
pub use handshake::{
    PendingSession, connect, connect_over, read_hello, read_hello_admitted, read_hello_over,
};
pub use session::{Peer, PendingPing, PollingCaller, Session};
pub use socket::Transport;
pub use stream::{ByteStream, StreamReset};
pub use traffic::{Traffic, TrafficFigures};
