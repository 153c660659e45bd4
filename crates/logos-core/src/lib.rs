//! `logos-core`: the logos runtime.
//!
//! A [`Core`] discovers modules (`<dir>/<name>/metadata.json`), resolves their dependencies,
//! starts each in its own process, supervises it, and routes calls, events and tokens between
//! modules, operators and the embedding application. The parts, each in its own file:
//! `name` (module names), [`manifest`] (metadata), [`discovery`], [`resolver`] (semver, cycles), `registry` (states),
//! `supervisor` (processes, restarts, heartbeats), `stats` (per-module figures),
//! [`token`] (tokens), [`operators`] (named operator tokens), [`policy`] (who may call whom), `events` (fan-out), `conn` (connections), `builtin` (`core`,
//! `capability_module`), `sys` (Linux specifics).
//!
//! # Examples
//! ```no_run
//! # async fn run() -> Result<(), logos_core::Error> {
//! use logos_core::{Core, Value};
//! let core = Core::builder().modules_dir("modules").build()?.start().await?;
//! core.load("greeter").await?; // starts calc and chat first
//! let greeting = core.call("greeter", "greet", vec![Value::from("Ada")]).await?;
//! println!("{greeting}");
//! let mut chat = core.subscribe("chat", "chatMessage")?;
//! if let Some(note) = chat.recv().await {
//!     println!("{note:?}");
//! }
//! core.shutdown().await;
//! # Ok(()) }
//! ```

mod api;
mod builder;
mod builtin;
mod conn;
pub mod discovery;
mod error;
mod events;
pub mod manifest;
mod name;
pub mod operators;
pub mod policy;
mod registry;
pub mod resolver;
mod state;
mod stats;
mod supervisor;
pub mod sys;
pub mod token;

pub use crate::api::Core;
pub use crate::builder::{
    Builder, ModuleSettings, RestartSettings, default_data_dir, default_runtime_dir,
};
pub use crate::error::Error;
pub use crate::events::{Notification, Subscription};
pub use crate::manifest::{Manifest, RestartPolicy};
pub use crate::name::{CAPABILITY_MODULE, CORE_MODULE, ModuleName};
pub use crate::registry::{ExitReport, ModuleInfo, State};
pub use crate::stats::{Latency, ModuleStats, STATS_TIMEOUT};
pub use logos_session::Fault;
pub use logos_wire::{ErrorCode, Value};
