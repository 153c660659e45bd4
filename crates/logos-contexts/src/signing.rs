//! Owner-signed statements and the keys that sign them.
//!
//! Everything an owner changes in a context (install a script, set the policy, delete the
//! context) and every owner-only read (the audit log) is authorised by an Ed25519 signature
//! over a [`Statement`]: a small canonical CBOR array that starts with a domain tag, so a
//! signature made for one purpose never verifies for another (nor as an envelope, whose tag
//! differs). Changes carry the context's next *revision*: each accepted change bumps it, so
//! an old signed change cannot be replayed to roll a script or policy back.
//!
//! [`Keypair`] generates and parses keys; where a key is kept is the caller's business (the
//! CLI reads a key file). Never reads files, never stores anything.

use crate::error::Error;
use crate::id::{ContextId, PeerId};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// SHA-256, the hash of scripts and policies.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// An Ed25519 key pair.
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.peer())
    }
}

impl Keypair {
    /// A fresh key from the operating system's random source.
    ///
    /// # Errors
    /// [`Error::State`] if the random source fails.
    pub fn generate() -> Result<Keypair, Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::State {
            path: "getrandom".into(),
            why: format!("no random bytes for a key: {e}"),
        })?;
        Ok(Keypair::from_seed(&seed))
    }

    /// The key of a 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Keypair {
        Keypair(SigningKey::from_bytes(seed))
    }

    /// Parses a key file's text: the 64 hex digits of the secret seed, surrounding whitespace
    /// and `#` comment lines ignored.
    ///
    /// # Errors
    /// [`Error::Malformed`] saying what the text holds instead (never the secret itself).
    pub fn from_text(text: &str) -> Result<Keypair, Error> {
        let body: String = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let bad = |why: String| Error::Malformed {
            what: "key file",
            why,
        };
        if body.len() != 64 {
            return Err(bad(format!(
                "expected the 64 hex digits of an Ed25519 secret seed, found {} characters",
                body.len()
            )));
        }
        let mut seed = [0u8; 32];
        hex::decode_to_slice(&body, &mut seed)
            .map_err(|_| bad("the seed is not hex (0-9, a-f)".into()))?;
        Ok(Keypair::from_seed(&seed))
    }

    /// The key file text of this key: a comment naming the public key, then the seed.
    pub fn to_text(&self) -> String {
        format!(
            "# logos-contexts Ed25519 key; public key (peer id) {}\n{}\n",
            self.peer(),
            hex::encode(self.0.to_bytes())
        )
    }

    /// The peer id (public key).
    pub fn peer(&self) -> PeerId {
        PeerId(self.0.verifying_key().to_bytes())
    }

    /// Signs `message` as is.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Signs a statement.
    pub fn sign_statement(&self, statement: &Statement<'_>) -> [u8; 64] {
        self.sign(&statement.to_bytes())
    }
}

/// Verifies `signature` over `message` by `peer`, strictly (no malleable signatures).
///
/// # Errors
/// [`Error::BadSignature`] naming `what` was signed.
pub fn verify(peer: PeerId, message: &[u8], signature: &[u8], what: &str) -> Result<(), Error> {
    verify_with(&peer.key(), peer, message, signature, what)
}

/// [`verify`] with `peer`'s key already decompressed (a decompression costs about a sixth
/// of a verification: the envelope decoder does it once per signer).
pub(crate) fn verify_with(
    key: &VerifyingKey,
    peer: PeerId,
    message: &[u8],
    signature: &[u8],
    what: &str,
) -> Result<(), Error> {
    let bytes: [u8; 64] = signature.try_into().map_err(|_| Error::BadSignature {
        why: format!(
            "the signature of the {what} is {} bytes, not 64",
            signature.len()
        ),
    })?;
    key.verify_strict(message, &Signature::from_bytes(&bytes))
        .map_err(|_| Error::BadSignature {
            why: format!("the signature of the {what} does not verify with key {peer}"),
        })
}

/// What an owner signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement<'a> {
    /// Install (or replace) script `name` with source of hash `source_hash`.
    InstallScript {
        /// The context.
        context: ContextId,
        /// The revision this change makes.
        revision: u64,
        /// Script name.
        name: &'a str,
        /// SHA-256 of the source.
        source_hash: [u8; 32],
    },
    /// Replace the policy with the text of hash `policy_hash`.
    SetPolicy {
        /// The context.
        context: ContextId,
        /// The revision this change makes.
        revision: u64,
        /// SHA-256 of the policy text.
        policy_hash: [u8; 32],
    },
    /// Delete the context and everything in it.
    Delete {
        /// The context.
        context: ContextId,
        /// The revision this change makes.
        revision: u64,
    },
    /// Read the audit log, until `expires_at_ms`.
    ReadAudit {
        /// The context.
        context: ContextId,
        /// When this permission ends (ms since the Unix epoch).
        expires_at_ms: u64,
    },
}

impl Statement<'_> {
    /// The canonical CBOR bytes that are signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        let mut e = minicbor::Encoder::new(&mut out);
        // Writing into a Vec cannot fail.
        let _ = match *self {
            Statement::InstallScript {
                context,
                revision,
                name,
                source_hash,
            } => e
                .array(5)
                .and_then(|e| e.str("logos-contexts/install-script/v1"))
                .and_then(|e| e.bytes(context.as_bytes()))
                .and_then(|e| e.u64(revision))
                .and_then(|e| e.str(name))
                .and_then(|e| e.bytes(&source_hash))
                .map(|_| ()),
            Statement::SetPolicy {
                context,
                revision,
                policy_hash,
            } => e
                .array(4)
                .and_then(|e| e.str("logos-contexts/set-policy/v1"))
                .and_then(|e| e.bytes(context.as_bytes()))
                .and_then(|e| e.u64(revision))
                .and_then(|e| e.bytes(&policy_hash))
                .map(|_| ()),
            Statement::Delete { context, revision } => e
                .array(3)
                .and_then(|e| e.str("logos-contexts/delete/v1"))
                .and_then(|e| e.bytes(context.as_bytes()))
                .and_then(|e| e.u64(revision))
                .map(|_| ()),
            Statement::ReadAudit {
                context,
                expires_at_ms,
            } => e
                .array(3)
                .and_then(|e| e.str("logos-contexts/read-audit/v1"))
                .and_then(|e| e.bytes(context.as_bytes()))
                .and_then(|e| e.u64(expires_at_ms))
                .map(|_| ()),
        };
        out
    }

    /// Verifies `signature` by the context's owner.
    ///
    /// # Errors
    /// [`Error::BadSignature`].
    pub fn verify(&self, signature: &[u8]) -> Result<(), Error> {
        let (context, what) = match self {
            Statement::InstallScript { context, .. } => (context, "script installation"),
            Statement::SetPolicy { context, .. } => (context, "policy"),
            Statement::Delete { context, .. } => (context, "deletion"),
            Statement::ReadAudit { context, .. } => (context, "audit read"),
        };
        verify(context.owner(), &self.to_bytes(), signature, what)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_verifies_only_as_itself() {
        let owner = Keypair::from_seed(&[7; 32]);
        let context = ContextId::of(owner.peer());
        let s = Statement::Delete {
            context,
            revision: 3,
        };
        let sig = owner.sign_statement(&s);
        s.verify(&sig).unwrap();
        let other = Statement::Delete {
            context,
            revision: 4,
        };
        assert_eq!(other.verify(&sig).unwrap_err().code(), "bad_signature");
        let someone = Keypair::from_seed(&[8; 32]);
        assert!(s.verify(&someone.sign_statement(&s)).is_err());
        assert!(s.verify(&sig[..63]).is_err());
    }

    #[test]
    fn key_text_round_trips_and_refuses_garbage() {
        let k = Keypair::from_seed(&[9; 32]);
        let again = Keypair::from_text(&k.to_text()).unwrap();
        assert_eq!(again.peer(), k.peer());
        let e = Keypair::from_text("nothex").unwrap_err().to_string();
        assert!(e.contains("64 hex digits"), "{e}");
    }
}
