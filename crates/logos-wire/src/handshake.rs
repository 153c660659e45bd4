//! Protocol version and the version check done on `hello`/`welcome`.
//!
//! Owns the version numbers. Never reads a socket.

use crate::error::WireError;

/// Protocol major version. A peer with another major is refused.
pub const PROTOCOL_MAJOR: u16 = 1;
/// Protocol minor version. Minors are compatible in both directions; a side sends nothing
/// newer than the minor its peer announced. 1.1 added the `invalid_metadata` error code; 1.2
/// the optional `trace` item of `call`.
pub const PROTOCOL_MINOR: u16 = 2;
/// The first minor whose `call` may carry a `trace` item.
pub const TRACE_MINOR: u16 = 2;
/// Default cap on a `hello` or `welcome` frame body read before the peer is authenticated
/// (64 KiB), far below the frame cap: an unauthenticated peer must not make the receiver
/// reserve, and decode into values, 16 MiB (docs/protocol.md §5.1).
pub const MAX_HANDSHAKE_FRAME: usize = 64 * 1024;

/// Checks that a peer speaking `major.minor` can talk to us.
///
/// # Errors
/// [`WireError::VersionMismatch`] when the majors differ, with both versions in the message.
pub fn check_version(major: u16, minor: u16) -> Result<(), WireError> {
    if major == PROTOCOL_MAJOR {
        Ok(())
    } else {
        Err(WireError::VersionMismatch {
            peer_major: major,
            peer_minor: minor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_major_any_minor_is_accepted() {
        assert!(check_version(PROTOCOL_MAJOR, 0).is_ok());
        assert!(check_version(PROTOCOL_MAJOR, 99).is_ok());
    }

    #[test]
    fn other_major_is_refused_with_both_versions() {
        let e = check_version(PROTOCOL_MAJOR + 1, 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2.3"), "{e}");
        assert!(e.contains("1.x"), "{e}");
    }
}
