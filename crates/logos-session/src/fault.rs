//! [`Fault`]: the typed failure of one call, as it crosses the wire (`error` message).
//!
//! Owns the pairing of an [`ErrorCode`] with a message for people. Never decides which code a
//! failure maps to; the layer that failed does.

use logos_wire::ErrorCode;
use std::fmt;

/// A typed failure of a call: the code that crosses the wire plus a message for people.
/// Both what a [`Handler`](crate::Handler) returns and what [`Session::call`](crate::Session::call)
/// yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

impl Fault {
    /// A fault with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Fault {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Fault {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_code_then_message() {
        let f = Fault::new(ErrorCode::Timeout, "calc.add did not answer within 1s");
        assert_eq!(f.to_string(), "timeout: calc.add did not answer within 1s");
    }
}
