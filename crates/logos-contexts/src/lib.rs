#![doc = include_str!("../README.md")]
//!
//! # Crate layout
//!
//! `id.rs` peer and context ids; `key.rs` storage keys; `signing.rs` keys and owner-signed
//! statements; `envelope.rs` delegation envelopes (fuzzed); `policy.rs` Cedar schema and
//! decisions; `script.rs` the Rhai engine, limits and host functions; `storage/` the backend
//! trait, quotas, and the `fs`, `sqlite`, `s3` backends; `state.rs` a context's own
//! database (scripts, policies, nonces, audit); `audit.rs` audit records; `sched.rs` fair
//! queues and the evaluation pool; `worker.rs` [`Worker`], which ties them together;
//! `transport.rs` the seam for ways envelopes arrive; `config.rs`; `error.rs`. This file only
//! declares and re-exports.

mod audit;
mod config;
pub mod envelope;
mod error;
mod id;
mod key;
pub mod policy;
mod sched;
pub mod script;
mod signing;
mod state;
pub mod storage;
pub mod transport;
mod worker;

pub use audit::AuditRecord;
pub use config::{Config, Limits, Profile};
pub use envelope::{Envelope, GrantRule, ScriptRef, SignedEnvelope};
pub use error::Error;
pub use id::{ContextId, PeerId};
pub use key::{MAX_KEY_LEN, StorageKey};
pub use policy::Action;
pub use signing::{Keypair, Statement, sha256};
pub use state::{ContextState, Journal, Nonce};
pub use worker::{Builder, ContextInfo, Submitted, Worker, now_ms};
