//! Delegation envelopes: "peer `caller` asks context `target` to run this script with these
//! parameters, until `expires_at`", signed by the caller.
//!
//! Wire form (all CBOR, definite lengths, shortest integer forms):
//!
//! ```text
//! signed   = [1, body: bstr, signer: bstr .size 32, signature: bstr .size 64]
//! body     = [caller: bstr .size 32, target: bstr .size 32, nonce: bstr .size (16..32),
//!             expiresAt: uint (ms since the Unix epoch),
//!             script: [0, hash: bstr .size 32] / [1, source: tstr],
//!             params: bstr (a logos Value), expose: bstr (a logos Value),
//!             grant: null / [* [action: tstr, prefix: tstr]],
//!             parent: null / bstr (a signed envelope)]
//! signature over  "logos-contexts/envelope/v1" || 0x00 || body
//! ```
//!
//! The signature covers every field because it covers the body bytes, and the body must be
//! canonical: decoding re-encodes it and refuses any other encoding of the same fields
//! (non-minimal integers, indefinite lengths, trailing bytes), so one envelope has exactly
//! one byte form and its nonce names exactly one request. `signer` is carried beside the
//! body so that an envelope whose `caller` is not its signer is refused as such
//! ([`Error::BadSignature`] "caller … but signed by …"), not just as a bad signature.
//!
//! `parent` is nested delegation: the caller forwards, inside its own envelope, the
//! envelope in which the original caller delegated to it. Chains are at most
//! [`MAX_CHAIN`] deep when decoded; the worker's configured depth limit is lower.
//!
//! Cost: one Ed25519 point decompression (the signer's key) and one `verify_strict` per
//! envelope in the chain; the caller is compared byte for byte with the signer, and the
//! target is not decompressed (a worker looks it up among its contexts).
//!
//! Decoding is fuzzed (`crates/logos-contexts/fuzz`). Never checks expiry, nonces or policy:
//! the worker does, after [`SignedEnvelope::decode`] has verified every signature.

use crate::error::Error;
use crate::id::{ContextId, PeerId};
use crate::policy::Action;
use crate::signing::{Keypair, sha256, verify_with};
use logos_wire::Value;
use minicbor::data::Type;

/// Domain tag prefixed to the body before signing.
pub const DOMAIN: &[u8] = b"logos-contexts/envelope/v1\0";
/// Largest signed envelope accepted, in bytes.
pub const MAX_ENVELOPE: usize = 256 * 1024;
/// Deepest chain of parents the decoder accepts.
pub const MAX_CHAIN: usize = 8;
/// Most rules in a grant.
pub const MAX_GRANT_RULES: usize = 64;

/// The script an envelope asks to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptRef {
    /// An installed script of the target context, by the SHA-256 of its source.
    Hash([u8; 32]),
    /// A script sent along.
    Inline(String),
}

/// One rule of a caller's grant: the script may do `action` on resources starting with
/// `prefix` (a key prefix for storage actions, `module.method` for `call`, an event name for
/// `emit`, the context id for `submit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRule {
    /// The action allowed.
    pub action: Action,
    /// The resource prefix it is allowed on (`""`: every resource).
    pub prefix: String,
}

/// What the caller asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Who asks (must be the signer).
    pub caller: PeerId,
    /// The context asked.
    pub target: ContextId,
    /// 16 to 32 random bytes, never reused towards the same target.
    pub nonce: Vec<u8>,
    /// End of validity, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// The script to run.
    pub script: ScriptRef,
    /// Parameters the script sees as `params`.
    pub params: Value,
    /// What the caller shows of itself: the script sees it as `caller().exposed`.
    pub expose: Value,
    /// The caller's limit on what the script may do; `None`: no limit beyond the target's
    /// policy.
    pub grant: Option<Vec<GrantRule>>,
    /// The envelope in which the original caller delegated to this caller.
    pub parent: Option<Box<SignedEnvelope>>,
}

/// An envelope with its signature, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedEnvelope {
    /// The decoded body.
    pub envelope: Envelope,
    /// The canonical body bytes (what was signed).
    pub body: Vec<u8>,
    /// The signature over [`DOMAIN`] and `body`.
    pub signature: [u8; 64],
}

impl SignedEnvelope {
    /// Signs `envelope` with `key`.
    pub fn sign(envelope: Envelope, key: &Keypair) -> SignedEnvelope {
        let body = encode_body(&envelope);
        let signature = key.sign(&signed_message(&body));
        SignedEnvelope {
            envelope,
            body,
            signature,
        }
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 112);
        let mut e = minicbor::Encoder::new(&mut out);
        let _ = e
            .array(4)
            .and_then(|e| e.u8(1))
            .and_then(|e| e.bytes(&self.body))
            .and_then(|e| e.bytes(self.envelope.caller.as_bytes()))
            .and_then(|e| e.bytes(&self.signature));
        out
    }

    /// SHA-256 of the wire bytes, the envelope's name in audit records.
    pub fn hash(&self) -> [u8; 32] {
        sha256(&self.to_bytes())
    }

    /// Decodes and verifies an envelope and every parent in it: canonical form, sizes, the
    /// caller is the signer, each signature verifies. Nothing else (expiry, nonce, policy).
    ///
    /// # Errors
    /// [`Error::Malformed`] with the field and why, [`Error::BadSignature`].
    pub fn decode(bytes: &[u8]) -> Result<SignedEnvelope, Error> {
        decode_signed(bytes, 0)
    }

    /// The chain from the original caller to this envelope: `[root, …, self]`.
    pub fn chain(&self) -> Vec<&SignedEnvelope> {
        let mut out = vec![self];
        let mut at = self;
        while let Some(p) = &at.envelope.parent {
            out.push(p);
            at = p;
        }
        out.reverse();
        out
    }
}

/// The target an envelope *claims*, without verifying anything: only to write the refusal
/// of a bad envelope into the audit log of the context it was aimed at.
pub fn peek_target(bytes: &[u8]) -> Option<ContextId> {
    let mut d = minicbor::Decoder::new(bytes);
    d.array().ok()?;
    d.u8().ok()?;
    let body = d.bytes().ok()?;
    let mut b = minicbor::Decoder::new(body);
    b.array().ok()?;
    b.bytes().ok()?;
    let target: [u8; 32] = b.bytes().ok()?.try_into().ok()?;
    Some(ContextId(target))
}

/// What is signed: the domain tag, then the body.
fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + body.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(body);
    m
}

fn value_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // A Value from our own decoder always encodes; an unencodable one (NaN payloads aside,
    // none exist) would leave `out` empty and fail the canonical check on decode.
    let _ = logos_wire::encode_value(v, &mut out);
    out
}

/// The canonical body bytes of `env`.
pub fn encode_body(env: &Envelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut e = minicbor::Encoder::new(&mut out);
    let _ = (|| -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
        e.array(9)?;
        e.bytes(env.caller.as_bytes())?;
        e.bytes(env.target.as_bytes())?;
        e.bytes(&env.nonce)?;
        e.u64(env.expires_at_ms)?;
        match &env.script {
            ScriptRef::Hash(h) => e.array(2)?.u8(0)?.bytes(h)?,
            ScriptRef::Inline(s) => e.array(2)?.u8(1)?.str(s)?,
        };
        e.bytes(&value_bytes(&env.params))?;
        e.bytes(&value_bytes(&env.expose))?;
        match &env.grant {
            None => e.null()?,
            Some(rules) => {
                e.array(rules.len() as u64)?;
                for r in rules {
                    e.array(2)?.str(r.action.as_str())?.str(&r.prefix)?;
                }
                &mut e
            }
        };
        match &env.parent {
            None => e.null()?,
            Some(p) => e.bytes(&p.to_bytes())?,
        };
        Ok(())
    })();
    out
}

fn malformed(why: impl Into<String>) -> Error {
    Error::Malformed {
        what: "envelope",
        why: why.into(),
    }
}

fn cbor(field: &str) -> impl Fn(minicbor::decode::Error) -> Error + '_ {
    move |e| malformed(format!("{field}: {e}"))
}

/// A definite-length array of exactly `n` items.
fn array(d: &mut minicbor::Decoder<'_>, n: u64, field: &str) -> Result<(), Error> {
    match d.array().map_err(cbor(field))? {
        Some(len) if len == n => Ok(()),
        Some(len) => Err(malformed(format!(
            "{field}: an array of {len} items, expected {n}"
        ))),
        None => Err(malformed(format!(
            "{field}: indefinite-length arrays are not canonical"
        ))),
    }
}

fn fixed<const N: usize>(d: &mut minicbor::Decoder<'_>, field: &str) -> Result<[u8; N], Error> {
    let b = d.bytes().map_err(cbor(field))?;
    b.try_into()
        .map_err(|_| malformed(format!("{field}: {} bytes, expected {N}", b.len())))
}

fn decode_signed(bytes: &[u8], depth: usize) -> Result<SignedEnvelope, Error> {
    if depth >= MAX_CHAIN {
        return Err(malformed(format!(
            "parents nested more than {MAX_CHAIN} deep"
        )));
    }
    if bytes.len() > MAX_ENVELOPE {
        return Err(malformed(format!(
            "{} bytes, more than the {MAX_ENVELOPE} accepted",
            bytes.len()
        )));
    }
    let mut d = minicbor::Decoder::new(bytes);
    array(&mut d, 4, "signed envelope")?;
    let version = d.u8().map_err(cbor("version"))?;
    if version != 1 {
        return Err(malformed(format!(
            "version {version}; this worker reads version 1"
        )));
    }
    let body = d.bytes().map_err(cbor("body"))?.to_vec();
    let signer_bytes: [u8; 32] = fixed(&mut d, "signer")?;
    let signature: [u8; 64] = fixed(&mut d, "signature")?;
    if d.position() != bytes.len() {
        return Err(malformed(format!(
            "{} trailing bytes after the signature",
            bytes.len() - d.position()
        )));
    }
    // The signer's key is decompressed once, here, and checked (a curve point, not weak);
    // the caller must be the same bytes, so it needs no check of its own.
    let key = crate::id::key_from_bytes("signer", &signer_bytes)?;
    let signer = PeerId(signer_bytes);
    // The signature first: nothing else of an unauthenticated body is looked at.
    verify_with(&key, signer, &signed_message(&body), &signature, "envelope")?;
    let envelope = decode_body(&body, depth, signer)?;
    if encode_body(&envelope) != body {
        return Err(malformed(
            "body not in canonical form (re-encoding its fields differs)",
        ));
    }
    let signed = SignedEnvelope {
        envelope,
        body,
        signature,
    };
    if signed.to_bytes() != bytes {
        return Err(malformed("not in canonical form (re-encoding differs)"));
    }
    Ok(signed)
}

/// The body signed by `signer` (already verified).
fn decode_body(body: &[u8], depth: usize, signer: PeerId) -> Result<Envelope, Error> {
    let mut d = minicbor::Decoder::new(body);
    array(&mut d, 9, "body")?;
    let caller: [u8; 32] = fixed(&mut d, "caller")?;
    if caller != signer.0 {
        return Err(Error::BadSignature {
            why: format!(
                "the envelope names caller {} but is signed by {signer}",
                hex::encode(caller)
            ),
        });
    }
    let caller = signer;
    // Taken as signed, not decompressed: it names a context only if a worker holds one of
    // that id, and contexts exist only for valid keys (see `ContextId`).
    let target = ContextId(fixed(&mut d, "target")?);
    let nonce = d.bytes().map_err(cbor("nonce"))?.to_vec();
    if !(16..=32).contains(&nonce.len()) {
        return Err(malformed(format!(
            "nonce: {} bytes, expected 16 to 32",
            nonce.len()
        )));
    }
    let expires_at_ms = d.u64().map_err(cbor("expiresAt"))?;
    array(&mut d, 2, "script")?;
    let script = match d.u8().map_err(cbor("script kind"))? {
        0 => ScriptRef::Hash(fixed(&mut d, "script hash")?),
        1 => ScriptRef::Inline(d.str().map_err(cbor("script source"))?.to_owned()),
        k => {
            return Err(malformed(format!(
                "script kind {k}; 0 (installed, by hash) or 1 (inline)"
            )));
        }
    };
    let params = logos_wire::decode_value(d.bytes().map_err(cbor("params"))?)
        .map_err(|e| malformed(format!("params: {e}")))?;
    let expose = logos_wire::decode_value(d.bytes().map_err(cbor("expose"))?)
        .map_err(|e| malformed(format!("expose: {e}")))?;
    let grant = if d.datatype().map_err(cbor("grant"))? == Type::Null {
        d.null().map_err(cbor("grant"))?;
        None
    } else {
        let n = match d.array().map_err(cbor("grant"))? {
            Some(n) if n as usize <= MAX_GRANT_RULES => n,
            Some(n) => {
                return Err(malformed(format!(
                    "grant: {n} rules, more than {MAX_GRANT_RULES}"
                )));
            }
            None => return Err(malformed("grant: indefinite-length array")),
        };
        let mut rules = Vec::with_capacity(n as usize);
        for i in 0..n {
            array(&mut d, 2, "grant rule")?;
            let action = d.str().map_err(cbor("grant action"))?;
            let action =
                Action::parse(action).map_err(|e| malformed(format!("grant rule {i}: {e}")))?;
            let prefix = d.str().map_err(cbor("grant prefix"))?.to_owned();
            rules.push(GrantRule { action, prefix });
        }
        Some(rules)
    };
    let parent = if d.datatype().map_err(cbor("parent"))? == Type::Null {
        d.null().map_err(cbor("parent"))?;
        None
    } else {
        let bytes = d.bytes().map_err(cbor("parent"))?;
        Some(Box::new(decode_signed(bytes, depth + 1)?))
    };
    if d.position() != body.len() {
        return Err(malformed("trailing bytes after the body"));
    }
    Ok(Envelope {
        caller,
        target,
        nonce,
        expires_at_ms,
        script,
        params,
        expose,
        grant,
        parent,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(caller: &Keypair, target: &Keypair) -> Envelope {
        Envelope {
            caller: caller.peer(),
            target: ContextId::of(target.peer()),
            nonce: vec![1; 16],
            expires_at_ms: 1_900_000_000_000,
            script: ScriptRef::Inline("put(\"a\", 1)".into()),
            params: Value::Map([("n".to_owned(), Value::Int(3))].into()),
            expose: Value::Null,
            grant: Some(vec![GrantRule {
                action: Action::Write,
                prefix: "guestbook/".into(),
            }]),
            parent: None,
        }
    }

    #[test]
    fn round_trips_and_verifies() {
        let (a, b) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
        let s = SignedEnvelope::sign(sample(&a, &b), &a);
        let back = SignedEnvelope::decode(&s.to_bytes()).unwrap();
        assert_eq!(back, s);
        // Nested: b forwards a's delegation.
        let mut outer = sample(&b, &Keypair::from_seed(&[3; 32]));
        outer.caller = b.peer();
        outer.parent = Some(Box::new(s.clone()));
        let o = SignedEnvelope::sign(outer, &b);
        let back = SignedEnvelope::decode(&o.to_bytes()).unwrap();
        assert_eq!(back.chain().len(), 2);
        assert_eq!(back.chain()[0].envelope.caller, a.peer());
    }

    #[test]
    fn a_flipped_bit_anywhere_is_refused() {
        let (a, b) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
        let bytes = SignedEnvelope::sign(sample(&a, &b), &a).to_bytes();
        for i in 0..bytes.len() {
            let mut m = bytes.clone();
            m[i] ^= 0x01;
            assert!(SignedEnvelope::decode(&m).is_err(), "byte {i}");
        }
        assert!(SignedEnvelope::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SignedEnvelope::decode(&longer).is_err());
    }

    #[test]
    fn a_spoofed_caller_is_named() {
        let (a, b, m) = (
            Keypair::from_seed(&[1; 32]),
            Keypair::from_seed(&[2; 32]),
            Keypair::from_seed(&[4; 32]),
        );
        // Mallory signs an envelope that says it comes from Alice.
        let env = sample(&a, &b);
        let body = encode_body(&env);
        let sig = m.sign(&signed_message(&body));
        let mut wire = Vec::new();
        let mut e = minicbor::Encoder::new(&mut wire);
        e.array(4).unwrap().u8(1).unwrap().bytes(&body).unwrap();
        e.bytes(m.peer().as_bytes()).unwrap().bytes(&sig).unwrap();
        let err = SignedEnvelope::decode(&wire).unwrap_err().to_string();
        assert!(err.contains("but is signed by"), "{err}");
    }
}
