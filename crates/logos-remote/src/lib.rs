//! `logos-remote`: the link between a remote module and its core, TCP + TLS 1.3.
//!
//! A module on another machine holds a **credential** ([`Credential`]: the core's addresses,
//! the SHA-256 pin of its certificate, a 256-bit secret bound to the module's name). It opens
//! a **link** ([`dial`]): TCP, TLS 1.3 with the pinned certificate ([`tls`]), then one
//! `hello`/`welcome` exchange that authenticates the module and says what the link is for
//! ([`Purpose`]: the control connection, a call to another module, or a connection the core
//! asked for). From then on the link carries the ordinary logos protocol: each side hands the
//! TCP socket and its `rustls` connection to `logos-session` (`Transport::tls`) and runs the
//! very code a local module's connection runs, so nothing above this crate forks for remote
//! modules. [`splice`] copies between two streams for the core's relay of peer connections;
//! [`bridge`] puts a stream behind a Unix socketpair for tools that need one.
//!
//! Shared by the core (`logos-core`'s `remote/`: listener, credential store, relay) and the
//! module side (`logos-sdk`'s remote runtime, `logos_host --remote`). Depends only on
//! `logos-wire`; decides no policy, knows no registry and starts no process.
//!
//! # Layout
//!
//! | file | owns |
//! |---|---|
//! | `credential.rs` | [`Credential`], [`Pin`], [`Secret`]: the file format, read and write |
//! | `tls.rs` | TLS 1.3 configurations, the pin verifier |
//! | `link.rs` | the link handshake, frame reading, [`dial`] |
//! | `bridge.rs` | [`bridge`], [`splice`], TCP options |
//! | `backoff.rs` | reconnect delays |
//! | `error.rs` | [`Error`], [`DialError`] |

pub mod backoff;
pub mod bridge;
pub mod credential;
mod error;
pub mod link;
pub mod tls;

pub use backoff::Backoff;
pub use bridge::{bridge, splice, tune};
pub use credential::{Credential, Pin, Secret};
pub use error::{DialError, Error};
pub use link::{Dialed, Purpose, dial};
