//! `logos-pkg`: modules as packages. The `.lgx` format ([`archive`], [`manifest`]), Ed25519
//! signatures and the trust store ([`sign`]), the content-addressed store with atomic
//! switching and rollback ([`store`]), `logos.lock` ([`lockfile`]), PubGrub resolution
//! ([`resolve`]), quality reports ([`quality`]), and the registry: its documents
//! ([`index`]), client ([`client`]), server ([`server`]) and page ([`page`]).
//!
//! The user guide is `docs/packages.md`. This crate never links `logos-core`: starting
//! modules (for `logoscore check` and the probation after an upgrade) is the CLI's job.
//!
//! Choices worth knowing: tar (the `tar` crate) inside zstd, because both are streamable and
//! every tool can inspect them; Ed25519 through `ed25519-dalek` with `verify_strict`; the
//! root hash is over a line per file rather than a Merkle tree, because packages are small
//! and installs read every byte anyway; reqwest is built on rustls with ring (no OpenSSL, no
//! C++ build of aws-lc); the registry keeps counts in memory with one writer task so
//! concurrent downloads never race on `counts.json`.

pub mod archive;
pub mod client;
mod error;
pub mod index;
pub mod lockfile;
pub mod manifest;
pub mod page;
pub mod quality;
pub mod resolve;
pub mod server;
pub mod sign;
pub mod store;

pub use crate::error::{Error, Result};
pub use crate::manifest::Manifest;
pub use crate::sign::{KeyPair, Keyring, Policy, PublicKey};
pub use crate::store::Store;
