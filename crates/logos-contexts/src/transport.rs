//! How envelopes reach a worker: a [`Transport`] receives signed envelopes from somewhere
//! and hands each to an [`Inbox`] (the [`Worker`], or anything in front of it), which
//! answers once. Module calls (today), libp2p (when the p2p module exists), WebSocket or NATS
//! each deliver to the same worker without the worker knowing which carried what.
//!
//! A transport authenticates nothing itself: the envelope carries its own signatures, so a
//! transport may be as dumb as a pipe, and the peer's transport identity (a libp2p peer id,
//! a TLS name) is never trusted for anything. What a transport must do: bound what it reads
//! ([`MAX_ENVELOPE`]), never block the worker (the inbox answers through a callback), and
//! answer with [`reply`], so every transport answers the same way.
//!
//! - **Module calls**: `contexts.submit(envelope: bytes)` from any module or operator the
//!   core lets call the `contexts` module, local or remote (`modules/contexts`, its
//!   `ModuleCall` transport).
//! - **Byte streams** ([`serve_stream`]): one request per stream, framed as a 4-byte
//!   big-endian length and the signed envelope; the answer is one frame of the same shape
//!   holding the [`reply`] value as CBOR, then the writer half-closes. This is the
//!   `/logos/contexts/1.0.0` protocol ([`PROTOCOL`]): libp2p substreams (bridged by the p2p
//!   module onto runtime byte streams), a WebSocket's binary messages, NATS request/reply
//!   payloads all carry exactly these frames.
//!
//! Never decodes envelopes (the worker does) and never decides anything.

use crate::envelope::MAX_ENVELOPE;
use crate::error::Error;
use crate::worker::{Submitted, Worker};
use logos_wire::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// The protocol name of the byte-stream framing, for libp2p and runtime byte streams.
pub const PROTOCOL: &str = "/logos/contexts/1.0.0";

/// The answer to one envelope, as [`reply`] makes it.
pub type Reply = Box<dyn FnOnce(Value) + Send>;

/// Where a transport delivers envelopes.
pub trait Inbox: Send + Sync {
    /// Submits `envelope`; `reply` is called exactly once with the [`reply`] value, from
    /// this thread or another. Never blocks on the evaluation.
    fn deliver(&self, envelope: &[u8], reply: Reply);
}

impl Inbox for Worker {
    fn deliver(&self, envelope: &[u8], answer: Reply) {
        self.submit_with(envelope, move |r| answer(reply(&r)));
    }
}

/// A way envelopes arrive.
pub trait Transport: Send + Sync {
    /// Its name, for logs: `module-call`, `libp2p`, …
    fn name(&self) -> &'static str;
    /// Starts delivering what arrives to `inbox` (a listening transport starts listening;
    /// a call-driven one keeps `inbox` for its calls).
    ///
    /// # Errors
    /// When the transport cannot start.
    fn start(&self, inbox: Arc<dyn Inbox>) -> Result<(), Error>;
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
        Err(e) => refusal(e),
    }
}

fn refusal(e: &Error) -> Value {
    Value::Map(BTreeMap::from([
        ("ok".to_owned(), Value::Bool(false)),
        ("code".to_owned(), Value::Text(e.code().to_owned())),
        ("message".to_owned(), Value::Text(e.to_string())),
    ]))
}

/// Delivers `envelope` to `inbox` from tokio's blocking pool and waits (asynchronously) for
/// the answer: decoding and verifying an envelope (tens of µs, more for a long chain) never
/// run on an async runtime's thread, so a flood of bad envelopes cannot stall the tasks
/// beside it.
pub async fn deliver(inbox: Arc<dyn Inbox>, envelope: Vec<u8>) -> Value {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The answer comes through `tx`; the task's own handle is not needed.
    drop(tokio::task::spawn_blocking(move || {
        inbox.deliver(
            &envelope,
            Box::new(move |v| {
                let _ = tx.send(v);
            }),
        );
    }));
    rx.await.unwrap_or_else(|_| refusal(&Error::Closed))
}

/// Serves one request on a byte stream (see the module docs): reads one frame, delivers it,
/// writes the answer frame and half-closes. A frame longer than [`MAX_ENVELOPE`], a stream
/// that ends early, or trailing bytes after the frame get a refusal (`malformed`) instead of
/// a delivery.
///
/// # Errors
/// The stream's I/O error, when even the answer cannot be written.
pub async fn serve_stream<S>(stream: &mut S, inbox: Arc<dyn Inbox>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let answer = match read_frame(stream).await {
        Ok(envelope) => deliver(inbox, envelope).await,
        Err(why) => refusal(&Error::Malformed {
            what: "stream frame",
            why,
        }),
    };
    let mut body = Vec::new();
    logos_wire::encode_value(&answer, &mut body).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

/// One length-prefixed envelope, then the end of the writer's half.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| format!("reading the 4-byte length: {e}"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_ENVELOPE {
        return Err(format!(
            "a frame of {len} bytes, more than the {MAX_ENVELOPE} accepted"
        ));
    }
    let mut envelope = vec![0u8; len];
    stream
        .read_exact(&mut envelope)
        .await
        .map_err(|e| format!("reading {len} bytes of envelope: {e}"))?;
    let mut more = [0u8; 1];
    match stream.read(&mut more).await {
        Ok(0) => Ok(envelope),
        Ok(_) => Err("bytes after the frame: one envelope per stream, then half-close".into()),
        Err(e) => Err(format!("waiting for the end of the request: {e}")),
    }
}

/// Reads the answer frame of [`serve_stream`] (the client side of a byte-stream transport).
///
/// # Errors
/// [`Error::Malformed`] when the answer is not one frame holding a value.
pub async fn read_reply<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Value, Error> {
    let bad = |why: String| Error::Malformed {
        what: "stream reply",
        why,
    };
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| bad(format!("reading the 4-byte length: {e}")))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_ENVELOPE {
        return Err(bad(format!("a reply of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| bad(format!("reading {len} bytes of reply: {e}")))?;
    logos_wire::decode_value(&body).map_err(|e| bad(e.to_string()))
}

/// Writes one request frame and half-closes (the client side of a byte-stream transport).
///
/// # Errors
/// The stream's I/O error; an envelope above [`MAX_ENVELOPE`] as `InvalidInput`.
pub async fn write_request<S: AsyncWrite + Unpin>(
    stream: &mut S,
    envelope: &[u8],
) -> std::io::Result<()> {
    if envelope.len() > MAX_ENVELOPE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "an envelope of {} bytes, more than the {MAX_ENVELOPE} accepted",
                envelope.len()
            ),
        ));
    }
    let len = u32::try_from(envelope.len()).map_err(std::io::Error::other)?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(envelope).await?;
    stream.shutdown().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::envelope::{Envelope, ScriptRef, SignedEnvelope};
    use crate::id::ContextId;
    use crate::signing::Keypair;
    use crate::worker::now_ms;

    fn worker(dir: &std::path::Path) -> (Arc<Worker>, Keypair) {
        let w = Worker::builder(dir).open().unwrap();
        let alice = Keypair::from_seed(&[1; 32]);
        w.create_context(alice.peer(), None).unwrap();
        (Arc::new(w), alice)
    }

    fn envelope(alice: &Keypair) -> Vec<u8> {
        SignedEnvelope::sign(
            Envelope {
                caller: alice.peer(),
                target: ContextId::of(alice.peer()),
                nonce: vec![9; 16],
                expires_at_ms: now_ms() + 60_000,
                script: ScriptRef::Inline("put(\"k\", 1); 40 + 2".into()),
                params: Value::Null,
                expose: Value::Null,
                grant: None,
                parent: None,
            },
            alice,
        )
        .to_bytes()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_stream_carries_one_envelope_and_its_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (w, alice) = worker(dir.path());
        let env = envelope(&alice);
        runtime().block_on(async {
            let (mut client, mut server) = tokio::io::duplex(1024);
            let inbox: Arc<dyn Inbox> = w.clone();
            let served = tokio::spawn(async move { serve_stream(&mut server, inbox).await });
            write_request(&mut client, &env).await.unwrap();
            let answer = read_reply(&mut client).await.unwrap();
            assert_eq!(answer.get("ok"), Some(&Value::Bool(true)), "{answer:?}");
            assert_eq!(answer.get("value"), Some(&Value::Int(42)));
            served.await.unwrap().unwrap();
            // The same envelope again, on a new stream: the worker's answer, a replay.
            let (mut client, mut server) = tokio::io::duplex(1024);
            let inbox: Arc<dyn Inbox> = w.clone();
            tokio::spawn(async move { serve_stream(&mut server, inbox).await });
            write_request(&mut client, &env).await.unwrap();
            let answer = read_reply(&mut client).await.unwrap();
            assert_eq!(answer.get("code"), Some(&Value::Text("replay".into())));
        });
    }

    #[test]
    fn bad_frames_are_refused_without_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let (w, _) = worker(dir.path());
        runtime().block_on(async {
            let oversized = ((MAX_ENVELOPE + 1) as u32).to_be_bytes().to_vec();
            let short = [0u8, 0, 0, 10, 1, 2].to_vec();
            let trailing = [0u8, 0, 0, 1, 7, 8].to_vec();
            for (bytes, expect) in [
                (oversized, "more than"),
                (short, "reading 10 bytes"),
                (trailing, "bytes after the frame"),
                (vec![0u8, 1], "4-byte length"),
            ] {
                let (mut client, mut server) = tokio::io::duplex(1024);
                let inbox: Arc<dyn Inbox> = w.clone();
                let served = tokio::spawn(async move { serve_stream(&mut server, inbox).await });
                client.write_all(&bytes).await.unwrap();
                client.shutdown().await.unwrap();
                let answer = read_reply(&mut client).await.unwrap();
                assert_eq!(answer.get("code"), Some(&Value::Text("malformed".into())));
                let message = format!("{:?}", answer.get("message"));
                assert!(message.contains(expect), "{message}");
                served.await.unwrap().unwrap();
            }
            // A frame that is a well-formed frame but not an envelope reaches the worker,
            // which refuses it as malformed.
            let (mut client, mut server) = tokio::io::duplex(1024);
            let inbox: Arc<dyn Inbox> = w.clone();
            tokio::spawn(async move { serve_stream(&mut server, inbox).await });
            write_request(&mut client, b"not cbor").await.unwrap();
            let answer = read_reply(&mut client).await.unwrap();
            assert_eq!(answer.get("code"), Some(&Value::Text("malformed".into())));
        });
        assert!(w.list().len() == 1);
    }
}
