//! [`StorageKey`]: the only form in which a key reaches a storage backend.
//!
//! A key is 1 to [`MAX_KEY_LEN`] bytes of `A-Z a-z 0-9 _ - . =` in `/`-separated segments, at
//! most [`MAX_SEGMENTS`] of them, none empty, `.` or `..`. That whitelist refuses, by
//! construction, every traversal spelling: `..`, a leading `/`, `%2e%2e` and any other
//! percent-encoding (`%` is not in the set), backslashes, NUL and control characters,
//! Unicode look-alikes; so no backend ever has to sanitise. Refusals name the key and the
//! first offending character or segment.
//!
//! Never maps a key to a path or an object name: each backend does, from a valid key.

use crate::error::Error;
use std::fmt;

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// Most `/`-separated segments in a key.
pub const MAX_SEGMENTS: usize = 16;

/// A validated storage key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageKey(String);

impl StorageKey {
    /// Validates `text` as a key.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the key and what is wrong with it.
    pub fn parse(text: &str) -> Result<StorageKey, Error> {
        let bad = |why: String| Error::invalid("storage key", text, why);
        if text.is_empty() {
            return Err(bad("is empty".into()));
        }
        if text.len() > MAX_KEY_LEN {
            return Err(bad(format!(
                "is {} bytes, more than the {MAX_KEY_LEN} allowed",
                text.len()
            )));
        }
        if let Some((i, c)) = text.char_indices().find(|(_, c)| !allowed(*c)) {
            let hint = match c {
                '\\' => "backslashes are not separators (use '/')".to_owned(),
                '%' => "percent-encoding is not decoded and '%' is refused".to_owned(),
                '\0' => "NUL is refused".to_owned(),
                _ => "only A-Z a-z 0-9 _ - . = and '/' between segments are allowed".to_owned(),
            };
            return Err(bad(format!("has {c:?} at byte {i}: {hint}")));
        }
        let segments: Vec<&str> = text.split('/').collect();
        if segments.len() > MAX_SEGMENTS {
            return Err(bad(format!(
                "has {} segments, more than the {MAX_SEGMENTS} allowed",
                segments.len()
            )));
        }
        for (n, s) in segments.iter().enumerate() {
            match *s {
                "" if n == 0 => return Err(bad("starts with '/': keys are relative".into())),
                "" => {
                    return Err(bad(format!(
                        "segment {} is empty ('//' or a trailing '/')",
                        n + 1
                    )));
                }
                "." | ".." => {
                    return Err(bad(format!(
                        "segment {} is {s:?}: no relative path segments",
                        n + 1
                    )));
                }
                _ => {}
            }
        }
        Ok(StorageKey(text.to_owned()))
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Bytes this key counts against a quota.
    pub fn cost(&self) -> u64 {
        self.0.len() as u64
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '=' | '/')
}

/// Validates a key prefix for `list`: empty, or a key optionally followed by `/`.
///
/// # Errors
/// As [`StorageKey::parse`].
pub fn parse_prefix(text: &str) -> Result<String, Error> {
    if text.is_empty() {
        return Ok(String::new());
    }
    let body = text.strip_suffix('/').unwrap_or(text);
    StorageKey::parse(body)?;
    Ok(text.to_owned())
}

impl fmt::Display for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageKey({:?})", self.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every traversal spelling the attack suite names, and a few more.
    pub(crate) const TRAVERSALS: &[&str] = &[
        "..",
        "../x",
        "a/../b",
        "a/..",
        "/etc/passwd",
        "/",
        "%2e%2e",
        "%2E%2E/x",
        "..%2f",
        "a\\..\\b",
        "..\\x",
        "a\0b",
        "\0",
        ".",
        "./a",
        "a//b",
        "a/",
        "\u{2024}\u{2024}", // one-dot leader look-alike
        "a\nb",
        "",
    ];

    #[test]
    fn traversal_variants_are_refused_with_the_reason() {
        for k in TRAVERSALS {
            let e = StorageKey::parse(k).unwrap_err();
            assert_eq!(e.code(), "invalid", "{k:?}");
        }
        let long = "a".repeat(MAX_KEY_LEN + 1);
        assert!(
            StorageKey::parse(&long)
                .unwrap_err()
                .to_string()
                .contains("more than")
        );
        let deep = vec!["a"; MAX_SEGMENTS + 1].join("/");
        assert!(StorageKey::parse(&deep).is_err());
        assert!(
            StorageKey::parse("%2e%2e")
                .unwrap_err()
                .to_string()
                .contains("percent")
        );
    }

    #[test]
    fn ordinary_keys_pass() {
        for k in [
            "a",
            "guestbook/0001",
            "x.y-z_1=2",
            "a/b/c",
            "..a",
            "a..",
            "a/.b",
        ] {
            assert_eq!(StorageKey::parse(k).unwrap().as_str(), k);
        }
        assert_eq!(parse_prefix("guestbook/").unwrap(), "guestbook/");
        assert!(parse_prefix("../").is_err());
    }
}
