//! `logos-observe`: a logos core seen from outside, over HTTP.
//!
//! Serves, on the core's own tokio runtime and off by default (`logoscore run --http
//! 127.0.0.1:9464`):
//!
//! - `/metrics` in the Prometheus text format (`metrics.rs`, written by `prometheus-client`),
//! - a live dashboard at `/` (`assets/`, embedded in the binary with `include_str!`: no build
//!   step, no CDN) fed by Server-Sent Events,
//! - lifecycle actions (load, unload, reload) for operators holding the client token or a
//!   named operator token (`auth.rs`).
//!
//! The parts: `view.rs` the data ([`View`]) with counters that survive module restarts;
//! `collect.rs` the one task that refreshes it (every [`INTERVAL`], and at once on a state
//! change); `metrics.rs` the exposition; `logs.rs` the per-module log tail ([`LogTap`], a
//! `tracing` layer); `auth.rs` logins, bearer tokens and CSRF; `tls.rs` HTTPS; `server.rs`
//! the routes ([`Http`]).
//!
//! This crate is a front end of the core, like `logoscore` and the C API: it uses only the
//! public [`logos_core::Core`] API, and the core knows nothing of it. Why the core is asked
//! rather than told: modules call each other directly, so only a module knows what it
//! served; each answers the reserved `$stats` with per-method counters (see
//! docs/architecture.md), and the collector asks every ready module once per interval, only
//! while this endpoint runs. Nothing is counted twice: the core adds only the calls it
//! answered itself because the module never saw them.
//!
//! # Examples
//! ```no_run
//! # async fn f(core: logos_core::Core) -> Result<(), logos_observe::Error> {
//! let config = logos_observe::HttpConfig::new("127.0.0.1:9464".parse().expect("address"));
//! let http = logos_observe::Http::start(&core, &config, None).await?;
//! println!("dashboard at http://{}/", http.local_addr());
//! core.stopped().await;
//! http.stop().await;
//! # Ok(()) }
//! ```

mod auth;
mod collect;
mod error;
mod logs;
pub mod metrics;
mod server;
mod tls;
mod view;

pub use crate::auth::{COOKIE, SESSION_TTL};
pub use crate::collect::INTERVAL;
pub use crate::error::Error;
pub use crate::logs::{KEEP, LogLine, LogTap};
pub use crate::server::{Http, HttpConfig, MAX_LIVE};
pub use crate::tls::{HANDSHAKE_TIMEOUT, HANDSHAKES, TlsFiles};
pub use crate::view::{CoreView, Crash, MethodTotals, ModuleView, View};
