//! [`Error`]: why the HTTP endpoint could not start.

use std::net::SocketAddr;

/// Why [`crate::Http::start`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A non-loopback address without the explicit opt-in.
    #[error(
        "refusing to serve HTTP on {addr}: it is not a loopback address, and this endpoint speaks plain HTTP, so operator tokens and session cookies would cross the network in clear; bind to 127.0.0.1 (or [::1]) and put a TLS-terminating proxy in front, or accept the risk with --http-insecure (config: http_insecure = true)"
    )]
    NotLoopback {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address could not be bound.
    #[error(
        "cannot listen for HTTP on {addr}: {source}; pick another port (127.0.0.1:0 picks a free one) or stop what uses it"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
