//! Peer and context ids: both are the 64 lowercase hex digits of an Ed25519 public key.
//!
//! A context's id is its owner's public key, so it is derived, never chosen: there are no
//! free-form aliases, and one spelling per id (parsing refuses upper case, spaces, prefixes,
//! anything but exactly 64 of `0-9a-f`). Keys that are not valid curve points or are of small
//! order ("weak" keys, for which signatures can be forged) are refused as well.
//!
//! Never touches storage and never verifies signatures (see `signing.rs`).

use crate::error::Error;
use ed25519_dalek::VerifyingKey;
use std::fmt;

/// Parses 64 lowercase hex digits into a usable Ed25519 public key.
fn parse_key(what: &'static str, text: &str) -> Result<VerifyingKey, Error> {
    if text.len() != 64 {
        return Err(Error::invalid(
            what,
            text,
            format!(
                "is {} characters; expected the 64 lowercase hex digits of an Ed25519 public key",
                text.len()
            ),
        ));
    }
    if let Some(c) = text.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(Error::invalid(
            what,
            text,
            format!(
                "contains {c:?}; only lowercase hex digits 0-9a-f are accepted (ids are case-exact)"
            ),
        ));
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|e| Error::invalid(what, text, e.to_string()))?;
    key_from_bytes(what, &bytes)
}

/// A usable key from its 32 bytes.
pub(crate) fn key_from_bytes(what: &'static str, bytes: &[u8; 32]) -> Result<VerifyingKey, Error> {
    let shown = hex::encode(bytes);
    let key = VerifyingKey::from_bytes(bytes)
        .map_err(|_| Error::invalid(what, &shown, "is not a point of Ed25519's curve"))?;
    if key.is_weak() {
        return Err(Error::invalid(
            what,
            &shown,
            "is a small-order (weak) key, for which signatures can be forged",
        ));
    }
    Ok(key)
}

/// A peer: whoever holds the private half of this Ed25519 key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub(crate) [u8; 32]);

impl PeerId {
    /// Parses the canonical text form: exactly 64 lowercase hex digits.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming what is wrong (length, a non-hex or upper-case character, not
    /// a curve point, a weak key).
    pub fn parse(text: &str) -> Result<PeerId, Error> {
        parse_key("peer id", text).map(|k| PeerId(k.to_bytes()))
    }

    /// The peer of a public key.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a weak key.
    pub fn from_key(key: &VerifyingKey) -> Result<PeerId, Error> {
        key_from_bytes("peer id", key.as_bytes()).map(|k| PeerId(k.to_bytes()))
    }

    /// The public key (valid: checked when this id was made).
    pub fn key(&self) -> VerifyingKey {
        // Checked on construction; the fallback cannot be reached.
        VerifyingKey::from_bytes(&self.0).unwrap_or_default()
    }

    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// A context: named by its owner's public key.
///
/// Contexts exist only for valid keys: ids parsed from text or made with [`ContextId::of`]
/// are checked. The one exception is an envelope's `target`, taken as its caller signed it
/// (32 bytes, not decompressed into a curve point): it names a context only if a worker
/// holds one of that id, so an invalid one is refused as an unknown context.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContextId(pub(crate) [u8; 32]);

impl ContextId {
    /// Parses the canonical text form: exactly 64 lowercase hex digits.
    ///
    /// # Errors
    /// As [`PeerId::parse`].
    pub fn parse(text: &str) -> Result<ContextId, Error> {
        parse_key("context id", text).map(|k| ContextId(k.to_bytes()))
    }

    /// The context owned by `owner`.
    pub fn of(owner: PeerId) -> ContextId {
        ContextId(owner.0)
    }

    /// The owner of this context.
    pub fn owner(&self) -> PeerId {
        PeerId(self.0)
    }

    /// The owner key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ContextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContextId({self})")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[test]
    fn only_the_canonical_spelling_parses() {
        let id = PeerId::parse(KEY).unwrap();
        assert_eq!(id.to_string(), KEY);
        assert_eq!(ContextId::of(id).to_string(), KEY);
        for bad in [
            KEY.to_uppercase(),
            format!(" {KEY}"),
            format!("{KEY}\n"),
            format!("0x{KEY}"),
            KEY[..63].to_owned(),
            KEY.replace('a', "\u{0430}"), // Cyrillic a
        ] {
            assert!(PeerId::parse(&bad).is_err(), "{bad:?}");
            assert!(ContextId::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point: small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let e = PeerId::parse(&hex::encode(identity))
            .unwrap_err()
            .to_string();
        assert!(e.contains("weak"), "{e}");
    }
}
