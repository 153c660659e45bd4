//! How envelopes reach a worker: [`Transport`] is the seam, so module calls (today),
//! libp2p (when the p2p module exists), WebSocket or NATS can each deliver to the same
//! [`Worker`] without the worker knowing.
//!
//! A transport receives a signed envelope's bytes from somewhere, hands them to
//! [`Worker::submit_with`] and sends back what it gets. It authenticates nothing itself: the
//! envelope carries its own signatures, so a transport may be as dumb as a pipe. What it
//! must do: bound what it reads ([`crate::envelope::MAX_ENVELOPE`]), never block the worker
//! (use `submit_with`'s callback), and map the result with [`reply`], so every transport
//! answers the same way.
//!
//! - **Module calls** (`modules/contexts`): `contexts.submit(envelope: bytes)` from any
//!   module or operator the core lets call it; local or remote modules alike.
//! - **libp2p** (to come, with `modules/p2p`): the p2p module registers the protocol
//!   `/logos/contexts/1.0.0` on its swarm and, for each inbound substream, opens a runtime
//!   byte stream of the same protocol name to the `contexts` module (module streams,
//!   docs/module-authoring.md §6), copying bytes both ways. On that stream the contexts
//!   module reads one frame (4-byte big-endian length, then the signed envelope, at most
//!   `MAX_ENVELOPE`), submits it, writes one frame with the [`reply`] value as CBOR and
//!   half-closes. The peer's libp2p identity is *not* trusted for anything: the envelope's
//!   signature is.
//! - **WebSocket / NATS**: the same frame on a message, the reply on the response.

use crate::error::Error;
use crate::worker::{Submitted, Worker};
use logos_wire::Value;
use std::collections::BTreeMap;

/// A way envelopes arrive.
pub trait Transport: Send + Sync {
    /// Its name, for logs: `module-call`, `libp2p`, …
    fn name(&self) -> &'static str;
    /// Starts delivering to `worker` (or, for call-driven transports, records it).
    ///
    /// # Errors
    /// When the transport cannot start.
    fn attach(&self, worker: std::sync::Arc<Worker>) -> Result<(), Error>;
}

/// The one answer format of every transport: `{"ok": true, "value", "events",
/// "policyVersion", "context"}` or `{"ok": false, "code", "message"}`.
pub fn reply(result: &Result<Submitted, Error>) -> Value {
    match result {
        Ok(s) => Value::Map(BTreeMap::from([
            ("ok".to_owned(), Value::Bool(true)),
            ("value".to_owned(), s.value.clone()),
            (
                "events".to_owned(),
                Value::List(
                    s.events
                        .iter()
                        .map(|(n, d)| Value::List(vec![Value::Text(n.clone()), d.clone()]))
                        .collect(),
                ),
            ),
            ("policyVersion".to_owned(), Value::UInt(s.policy_version)),
            ("context".to_owned(), Value::Text(s.context.to_string())),
        ])),
        Err(e) => Value::Map(BTreeMap::from([
            ("ok".to_owned(), Value::Bool(false)),
            ("code".to_owned(), Value::Text(e.code().to_owned())),
            ("message".to_owned(), Value::Text(e.to_string())),
        ])),
    }
}
