//! Capability tokens: the secrets that let one module call another, and the client token that
//! lets a local client (the CLI) talk to the core.
//!
//! Owns [`Token`] (256 bits from the OS generator, compared in constant time, never printed),
//! [`Tokens`] (the table of live tokens, each bound to exactly one `(caller, target)` pair,
//! revoked when either side unloads or restarts) and the client-token file (created 0600 in one
//! step). Never decides whether a pair may have a token (that is `policy.rs`), never talks to a
//! module (the `capability_module` built-in hands tokens out) and never logs a secret.

use crate::error::Error;
use crate::name::ModuleName;
use crate::sys;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::Path;
use subtle::ConstantTimeEq;

/// Length of a token in bytes (256 bits).
pub const TOKEN_LEN: usize = 32;

/// A 256-bit secret.
///
/// `Debug` prints `Token(..)`; equality is constant-time. There is deliberately no `Display`.
#[derive(Clone)]
pub struct Token([u8; TOKEN_LEN]);

impl Token {
    /// A fresh token from the operating system's generator.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] if the generator fails (on Linux: only before the kernel's entropy
    /// pool is initialised, or under a seccomp filter forbidding `getrandom`).
    pub fn generate() -> Result<Token, Error> {
        let mut bytes = [0u8; TOKEN_LEN];
        getrandom::fill(&mut bytes).map_err(|source| Error::Random {
            purpose: "generate a token",
            source,
        })?;
        Ok(Token(bytes))
    }

    /// The secret, to send in a `hello` or a `$grant`.
    pub fn as_bytes(&self) -> &[u8; TOKEN_LEN] {
        &self.0
    }

    /// Wraps received bytes; `None` unless exactly [`TOKEN_LEN`] long.
    pub fn from_slice(bytes: &[u8]) -> Option<Token> {
        <[u8; TOKEN_LEN]>::try_from(bytes).ok().map(Token)
    }

    /// Whether `presented` is this token. Constant-time in the contents; a wrong length is
    /// refused at once (the length is not secret).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_slice().ct_eq(presented).into()
    }

    /// Lowercase hex (64 digits): how tokens are written to files and typed by people.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits (either case); `None` for anything else.
    pub fn from_hex(s: &str) -> Option<Token> {
        let mut out = [0u8; TOKEN_LEN];
        // Fails unless `s` is exactly 2 × TOKEN_LEN hex digits.
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Token(out))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for Token {}

/// The live tokens, one per `(caller, target)` pair.
///
/// Not synchronised: the owner (the `capability_module` built-in) keeps it behind its lock.
/// Lookups by name never allocate.
#[derive(Default)]
pub struct Tokens {
    /// caller → target → token.
    by_caller: BTreeMap<ModuleName, BTreeMap<ModuleName, Token>>,
}

impl Tokens {
    /// An empty table.
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Mints a fresh token for `caller` to call `target`, replacing (and so revoking) any
    /// earlier token of that pair.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] if the generator fails; the table is unchanged.
    pub fn mint(&mut self, caller: &ModuleName, target: &ModuleName) -> Result<Token, Error> {
        let token = Token::generate()?;
        self.by_caller
            .entry(caller.clone())
            .or_default()
            .insert(target.clone(), token.clone());
        Ok(token)
    }

    /// The live token of the pair, if any.
    pub fn get(&self, caller: &str, target: &str) -> Option<&Token> {
        self.by_caller.get(caller)?.get(target)
    }

    /// Whether `presented` is the live token minted for exactly `caller` calling `target`.
    /// The comparison is constant-time.
    pub fn verify(&self, caller: &str, target: &str, presented: &[u8]) -> bool {
        self.get(caller, target)
            .is_some_and(|t| t.matches(presented))
    }

    /// Drops the token of one pair; whether there was one.
    pub fn revoke(&mut self, caller: &str, target: &str) -> bool {
        let Some(targets) = self.by_caller.get_mut(caller) else {
            return false;
        };
        let removed = targets.remove(target).is_some();
        if targets.is_empty() {
            self.by_caller.remove(caller);
        }
        removed
    }

    /// Drops every token naming `name` as caller or target (on unload or restart of `name`)
    /// and returns the revoked pairs as `(caller, target)`, sorted, so the other sides can be
    /// told.
    pub fn revoke_module(&mut self, name: &str) -> Vec<(ModuleName, ModuleName)> {
        let mut revoked = Vec::new();
        if let Some((caller, targets)) = self.by_caller.remove_entry(name) {
            revoked.extend(targets.into_keys().map(|t| (caller.clone(), t)));
        }
        self.by_caller.retain(|caller, targets| {
            if let Some((target, _)) = targets.remove_entry(name) {
                revoked.push((caller.clone(), target));
            }
            !targets.is_empty()
        });
        revoked.sort();
        revoked
    }

    /// How many tokens are live.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_caller.values().map(BTreeMap::len).sum()
    }

    /// Whether no token is live.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_caller.is_empty()
    }
}

/// Lists the pairs, never the secrets.
impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(
                self.by_caller
                    .iter()
                    .flat_map(|(c, ts)| ts.keys().map(move |t| format!("{c} -> {t}"))),
            )
            .finish()
    }
}

/// Whether `presented` equals `secret`, in constant time in the contents (a length mismatch
/// is refused at once). For secrets held as plain bytes, e.g. a client token read back.
pub fn secret_matches(secret: &[u8], presented: &[u8]) -> bool {
    secret.ct_eq(presented).into()
}

/// Generates a client token and writes it to `path` as 64 hex digits and a newline.
///
/// The file is created with mode 0600 and `O_EXCL` in one step, so there is no moment when it
/// is readable by others and a planted file or symlink makes this fail instead of being
/// followed. A stale file from an earlier run is removed first.
///
/// # Errors
///
/// [`Error::Random`] if the generator fails; [`Error::Io`] if the file cannot be removed,
/// created or written (a partly written file is removed).
pub fn create_client_token(path: &Path) -> Result<Token, Error> {
    let token = Token::generate()?;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                what: format!("removing the stale client token {}", path.display()),
                source,
            });
        }
    }
    let io_err = |action: &str, source| Error::Io {
        what: format!("{action} the client token {}", path.display()),
        source,
    };
    let mut file = sys::create_private_file(path).map_err(|e| io_err("creating", e))?;
    let written = file
        .write_all(format!("{}\n", token.to_hex()).as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(io_err("writing", e));
    }
    Ok(token)
}

/// Reads a client token as the core writes it at start (`client.token` in its runtime dir).
///
/// # Errors
///
/// [`Error::Io`] if it cannot be read; [`Error::ClientToken`] if it is not a regular file, is
/// accessible to others or writable by its group, or does not hold 64 hex digits.
pub fn read_client_token(path: &Path) -> Result<Token, Error> {
    let bad = |problem: String| Error::ClientToken {
        path: path.to_path_buf(),
        problem,
    };
    let io_err = |source| Error::Io {
        what: format!("reading the client token {}", path.display()),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mode = sys::file_mode(&file).map_err(io_err)?;
    if !mode.is_file {
        return Err(bad(
            "it is not a regular file; remove it and restart the core".into(),
        ));
    }
    // Group read (0640) is how a core shares itself with an access group; anything more is
    // a mistake.
    if mode.permissions & 0o037 != 0 {
        return Err(bad(format!(
            "its mode is {:04o}, so others may read it; remove it and restart the core, which recreates it as 0600",
            mode.permissions
        )));
    }
    let mut text = String::new();
    file.take(TOKEN_LEN as u64 * 2 + 16)
        .read_to_string(&mut text)
        .map_err(io_err)?;
    Token::from_hex(text.trim_end()).ok_or_else(|| {
        bad(format!(
            "it does not hold {} hex digits; remove it and restart the core",
            TOKEN_LEN * 2
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn n(s: &str) -> ModuleName {
        match ModuleName::new(s) {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn tokens_are_random_and_bound_to_the_pair() -> TestResult {
        let mut t = Tokens::new();
        let ab = t.mint(&n("a"), &n("b"))?;
        let ac = t.mint(&n("a"), &n("c"))?;
        assert_ne!(ab, ac);
        assert_ne!(ab.as_bytes(), &[0u8; TOKEN_LEN]);
        assert!(t.verify("a", "b", ab.as_bytes()));
        assert!(
            !t.verify("a", "c", ab.as_bytes()),
            "token used for another target"
        );
        assert!(!t.verify("b", "a", ab.as_bytes()), "token used in reverse");
        assert!(
            !t.verify("x", "b", ab.as_bytes()),
            "token used by another caller"
        );
        assert!(!t.verify("a", "b", &ab.as_bytes()[..31]));
        assert!(!t.verify("a", "b", b""));
        assert_eq!(t.len(), 2);
        Ok(())
    }

    #[test]
    fn minting_again_replaces_the_old_token() -> TestResult {
        let mut t = Tokens::new();
        let old = t.mint(&n("a"), &n("b"))?;
        let new = t.mint(&n("a"), &n("b"))?;
        assert!(!t.verify("a", "b", old.as_bytes()));
        assert!(t.verify("a", "b", new.as_bytes()));
        assert_eq!(t.len(), 1);
        Ok(())
    }

    #[test]
    fn revoke_module_drops_both_sides() -> TestResult {
        let mut t = Tokens::new();
        let ab = t.mint(&n("a"), &n("b"))?;
        let ba = t.mint(&n("b"), &n("a"))?;
        let cb = t.mint(&n("c"), &n("b"))?;
        let ca = t.mint(&n("c"), &n("a"))?;
        let revoked = t.revoke_module("b");
        assert_eq!(
            revoked,
            vec![(n("a"), n("b")), (n("b"), n("a")), (n("c"), n("b"))]
        );
        assert!(!t.verify("a", "b", ab.as_bytes()));
        assert!(!t.verify("b", "a", ba.as_bytes()));
        assert!(!t.verify("c", "b", cb.as_bytes()));
        assert!(t.verify("c", "a", ca.as_bytes()));
        assert_eq!(t.len(), 1);
        assert!(t.revoke("c", "a"));
        assert!(!t.revoke("c", "a"));
        assert!(t.is_empty());
        assert!(t.revoke_module("nobody").is_empty());
        Ok(())
    }

    #[test]
    fn debug_never_prints_secrets() -> TestResult {
        let mut t = Tokens::new();
        let tok = t.mint(&n("a"), &n("b"))?;
        let hex = tok.to_hex();
        let shown = format!("{t:?} {tok:?} {:?}", Some(&tok));
        assert!(!shown.contains(&hex[..8]), "{shown}");
        assert!(shown.contains("a -> b"), "{shown}");
        assert_eq!(format!("{tok:?}"), "Token(..)");
        Ok(())
    }

    #[test]
    fn secret_matches_is_exact() {
        assert!(secret_matches(b"abc", b"abc"));
        assert!(!secret_matches(b"abc", b"abd"));
        assert!(!secret_matches(b"abc", b"ab"));
        assert!(!secret_matches(b"", b"x"));
    }

    #[test]
    fn hex_round_trips() -> TestResult {
        let tok = Token::generate()?;
        assert_eq!(Token::from_hex(&tok.to_hex()), Some(tok.clone()));
        assert_eq!(Token::from_hex(&tok.to_hex().to_uppercase()), Some(tok));
        assert_eq!(Token::from_hex("zz"), None);
        assert_eq!(Token::from_hex(&"g".repeat(64)), None);
        assert!(Token::from_slice(&[1u8; 31]).is_none());
        assert!(Token::from_slice(&[1u8; 32]).is_some());
        Ok(())
    }

    #[test]
    fn client_token_file_is_private_and_round_trips() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("client.token");
        let tok = create_client_token(&path)?;
        let mode = sys::file_mode(&std::fs::File::open(&path)?)?;
        assert_eq!(mode.permissions, 0o600);
        let read = read_client_token(&path)?;
        assert!(read.matches(tok.as_bytes()));

        // A second core run replaces the stale file with a new secret.
        let again = create_client_token(&path)?;
        assert_ne!(again, tok);
        assert!(read_client_token(&path)?.matches(again.as_bytes()));
        Ok(())
    }

    #[test]
    fn client_token_refuses_loose_mode_and_garbage() -> TestResult {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("client.token");
        create_client_token(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        let msg = read_client_token(&path).err().map(|e| e.to_string());
        assert!(msg.is_some_and(|m| m.contains("0644")));

        // An access group reads it through the group bit.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640))?;
        assert!(read_client_token(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
        assert!(read_client_token(&path).is_err());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        std::fs::write(&path, "not a token\n")?;
        assert!(matches!(
            read_client_token(&path),
            Err(Error::ClientToken { .. })
        ));
        assert!(matches!(
            read_client_token(&dir.path().join("missing")),
            Err(Error::Io { .. })
        ));
        Ok(())
    }

    #[test]
    fn client_token_does_not_follow_a_planted_symlink() -> TestResult {
        let dir = tempfile::tempdir()?;
        let target = dir.path().join("victim");
        std::fs::write(&target, "keep")?;
        let path = dir.path().join("client.token");
        std::os::unix::fs::symlink(&target, &path)?;
        // The stale-file removal unlinks the symlink itself, never its target.
        create_client_token(&path)?;
        assert_eq!(std::fs::read_to_string(&target)?, "keep");
        Ok(())
    }
}
