#![doc = include_str!("../README.md")]
//!
//! # Crate layout
//!
//! `module.rs` the [`Module`] and [`Events`] traits (what `#[module]` and `#[derive(Events)]`
//! implement); `instance.rs` [`Instance`], how a module is held and locked while calls run;
//! `context.rs` [`Context`]; `caller.rs` [`Caller`], the connection a call came in on; `client.rs` [`Client`], reconnect and re-subscribe;
//! `serve/` the module-side runtime ([`run`], [`run_named`], [`main`]): `mod.rs` the serve loop
//! and drain, `inherit.rs` descriptors and logging, `grant.rs` peer admission and grants,
//! `conn.rs` one connection's handler; `stats.rs` counts of served calls and their latency for
//! the core's `$stats`; `trace.rs` spans of incoming and outgoing calls and their reports to the core; `abi.rs` the C ABI `logos_host`
//! loads; `export.rs` hidden support for generated code; `error.rs` [`Error`]. This file only
//! declares and re-exports.

// Generated code names `::logos_sdk`; this lets the crate's own tests use the macros.
extern crate self as logos_sdk;

pub mod abi;
mod caller;
mod client;
mod context;
mod error;
#[doc(hidden)]
pub mod export;
mod instance;
mod module;
pub mod p2p;
mod serve;
mod stats;
mod trace;

pub use caller::Caller;
pub use client::{Client, DEFAULT_TIMEOUT};
pub use context::Context;
pub use error::Error;
pub use instance::Instance;
pub use module::{EventInfo, Events, MethodInfo, Module, ParamInfo, interface_value};
pub use serve::{
    DEFAULT_CONTROL_FD, DEFAULT_LISTEN_FD, EXIT_PANIC, EXIT_START_FAILED, LOGOS_METADATA,
    LOGOS_REMOTE, main, run, run_named,
};

pub use logos_sdk_macros::{Events, module};
pub use logos_session::{ByteStream, Fault, StreamReset};
pub use logos_wire::{ErrorCode, Value};
pub use serde_bytes::ByteBuf;

/// The boxed future type of [`Module::call`].
pub use futures::future::BoxFuture;
