//! `logos-core`: the logos runtime.
//!
//! A [`Core`] discovers modules (`<dir>/<name>/metadata.json`), resolves their dependencies,
//! starts each in its own process, supervises it, and routes calls, events and tokens between
//! modules, operators and the embedding application.
//!
//! This is the embedding API: [`Core`] and its [`Builder`], what they take and return, the
//! client token a local client presents ([`read_client_token`]) and the store of named
//! [`operators`] tokens a front end manages. Everything else is private; the parts, each in
//! its own file, are mapped in `docs/architecture.md` ("Inside the core"): `api` ([`Core`]),
//! `state` (the shared state), `registry` (module states), `supervisor` (processes, restarts,
//! heartbeats), `name`, `manifest`, `discovery`, `resolver`, `policy`, `token`, `conn`,
//! `events`, `stats`, `builtin` (`core`, `capability_module`) and `sys` (Linux specifics).
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
mod confine;
mod conn;
mod counters;
mod dir_listing;
mod discovery;
mod error;
mod events;
mod manifest;
mod name;
pub mod operators;
mod policy;
mod registry;
mod remote;
mod resolver;
mod spans;
mod state;
mod stats;
mod supervisor;
mod sys;
#[doc(hidden)]
pub mod testing;
mod token;

pub use crate::api::Core;
pub use crate::builder::{
    Builder, FsGrant, ModuleSettings, RemoteLimits, RestartSettings, default_data_dir,
    default_runtime_dir,
};
pub use crate::error::Error;
pub use crate::events::{Notification, Subscription};
pub use crate::manifest::{
    FsPaths, Location, MAX_DECLARED_PATHS, MAX_METHOD_NAME, METADATA_FILE, MODULE_TYPES, Manifest,
    ManifestError, ManifestFault, Methods, ModuleKind, RestartPolicy, check_method_name,
};
pub use crate::name::{CAPABILITY_MODULE, CORE_MODULE, ModuleName};
pub use crate::registry::{ExitReport, ModuleInfo, State};
pub use crate::remote::{Granted, RemoteCredentialInfo};
pub use crate::spans::{DEFAULT_SPANS, Filter as SpanFilter, Node as CallNode, Span, SpanKind};
pub use crate::stats::{
    Denial, EventFigures, HeartbeatFigures, Latency, MethodFigures, ModuleStats, Refused,
    STATS_TIMEOUT, StartFigures, StreamFigures,
};
pub use crate::supervisor::SwapReport;
pub use crate::sys::{Confinement, Limits, ProcessUsage, confinement, process_usage, pss_bytes};
pub use crate::token::{TOKEN_LEN, Token, read_client_token};
pub use logos_session::{Fault, PollingCaller};
pub use logos_wire::{ErrorCode, Value};
