//! [`Error`]: why the HTTP endpoint could not start.

use std::net::SocketAddr;

/// Why [`crate::Http::start`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A non-loopback address without TLS or the explicit opt-in.
    #[error(
        "refusing to serve HTTP on {addr}: it is not a loopback address and no TLS is configured, so operator tokens and session cookies would cross the network in clear; give a certificate and key (--http-tls-cert, --http-tls-key), or bind to 127.0.0.1 (or [::1]), or accept the risk with --http-insecure (config: http_insecure = true)"
    )]
    NotLoopback {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The TLS certificate or key cannot be used.
    #[error("TLS for the HTTP endpoint: {}: {reason}", path.display())]
    Tls {
        /// The file at fault.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
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
