//! Module names: [`ModuleName`] (a validated name every other part of the runtime uses), the
//! names of the built-in modules ([`CORE_MODULE`], [`CAPABILITY_MODULE`]) and what to do with a
//! name that came from outside before it is looked up: refuse one longer than any module name
//! can be ([`check_name_len`]) and suggest the closest known name ([`closest`]).
//!
//! Pure: never touches the file system, never knows which modules exist (callers pass the
//! known names in).

use crate::error::Error;
use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

/// Name of the built-in Core Manager module.
pub const CORE_MODULE: &str = "core";
/// Name of the built-in capability module.
pub const CAPABILITY_MODULE: &str = "capability_module";

const NAME_RULE: &str =
    "1 to 64 ASCII letters, digits, \"_\", \"-\" or \".\", not starting with \".\" or \"-\"";

/// A validated module name: 1–64 bytes of ASCII letters, digits, `_`, `-` and `.`, not starting
/// with `.` or `-`.
///
/// The rules make a name safe as a path component (`../x`, `a/b` and `.hidden` are refused),
/// as a socket file name and in log lines. `core` and `capability_module` are valid names but
/// [reserved](ModuleName::is_reserved) for the built-in modules: they may be called and depended
/// on, never declared by a module's metadata.
///
/// # Examples
///
/// ```
/// use logos_core::ModuleName;
///
/// let calc = ModuleName::new("calc")?;
/// assert_eq!(calc.as_str(), "calc");
/// assert!(ModuleName::new("../etc").is_err());
/// assert!(ModuleName::new("core")?.is_reserved());
/// # Ok::<(), logos_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleName(String);

impl ModuleName {
    /// The longest name, in bytes.
    pub const MAX_LEN: usize = 64;
    /// Names no module's metadata may declare: [`CORE_MODULE`] and [`CAPABILITY_MODULE`].
    pub const RESERVED: [&'static str; 2] = [CORE_MODULE, CAPABILITY_MODULE];

    /// Checks `name` and wraps it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] naming the rule that `name` breaks.
    pub fn new(name: &str) -> Result<Self, Error> {
        match name_problem(name) {
            None => Ok(Self(name.to_owned())),
            Some(reason) => Err(invalid_name(name, reason)),
        }
    }

    /// The name of the built-in `core` module.
    pub fn core() -> Self {
        Self(CORE_MODULE.to_owned())
    }

    /// The name of the built-in `capability_module`.
    pub fn capability_module() -> Self {
        Self(CAPABILITY_MODULE.to_owned())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as an owned `String`.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Whether this is the name of a built-in module (`core`, `capability_module`).
    pub fn is_reserved(&self) -> bool {
        Self::RESERVED.contains(&self.0.as_str())
    }
}

/// Why `name` is not a valid module name, or `None` if it is.
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some(format!("it is empty; use {NAME_RULE}"));
    }
    if name.len() > ModuleName::MAX_LEN {
        return Some(format!(
            "it is {} bytes long, at most {} are allowed",
            name.len(),
            ModuleName::MAX_LEN
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Some(format!(
            "it contains {c:?}; only ASCII letters, digits, \"_\", \"-\" and \".\" are allowed"
        ));
    }
    if let Some(c) = name.chars().next().filter(|c| matches!(c, '.' | '-')) {
        return Some(format!(
            "it starts with {c:?}; it must start with a letter, digit or \"_\""
        ));
    }
    None
}

fn invalid_name(name: &str, reason: String) -> Error {
    // Names come from outside (frames, CLI, C API): never echo an unbounded string.
    let shown: String = name.chars().take(80).collect();
    Error::InvalidName {
        name: shown,
        reason,
    }
}

impl fmt::Display for ModuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ModuleName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by `ModuleName` be queried with a `&str`.
impl Borrow<str> for ModuleName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for ModuleName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for ModuleName {
    type Error = Error;

    fn try_from(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for ModuleName {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        match name_problem(&s) {
            None => Ok(Self(s)),
            Some(reason) => Err(invalid_name(&s, reason)),
        }
    }
}

impl From<ModuleName> for String {
    fn from(n: ModuleName) -> String {
        n.0
    }
}

impl PartialEq<str> for ModuleName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ModuleName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl serde::Serialize for ModuleName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ModuleName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ModuleName::try_from(s).map_err(serde::de::Error::custom)
    }
}

/// Refuses a name longer than any module name can be, before it is looked up, compared with
/// known names or echoed in a message: names come from outside (frames, the CLI, the C API),
/// and a huge one must cost no more than a short one.
///
/// # Errors
/// [`Error::InvalidName`] with the name cut to 80 characters.
pub(crate) fn check_name_len(name: &str) -> Result<(), Error> {
    if name.len() <= ModuleName::MAX_LEN {
        return Ok(());
    }
    Err(Error::InvalidName {
        name: name.chars().take(80).collect(),
        reason: format!(
            "it is {} bytes long, at most {} are allowed",
            name.len(),
            ModuleName::MAX_LEN
        ),
    })
}

/// The known name closest to `name` (edit distance ≤ 2, or a third of its length, or a
/// prefix match), for "did you mean".
///
/// Bounded work: a name over [`ModuleName::MAX_LEN`] gets no suggestion, and a known name
/// whose length alone puts it out of reach is never compared.
pub(crate) fn closest(name: &str, known: &[String]) -> Option<String> {
    if name.len() > ModuleName::MAX_LEN {
        return None;
    }
    let reach = 2.max(name.len() / 3);
    known
        .iter()
        .filter(|k| k.starts_with(name) || k.len().abs_diff(name.len()) <= reach)
        .map(|k| (strsim::levenshtein(name, k), k))
        .filter(|(d, k)| *d <= reach || k.starts_with(name))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use logos_wire::ErrorCode;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn names_accept_the_allowed_alphabet() {
        for ok in [
            "a", "calc", "Chat_2", "kv-store", "x.y", "_private", "9lives",
        ] {
            assert!(ModuleName::new(ok).is_ok(), "{ok}");
        }
        assert!(ModuleName::new(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn names_refuse_paths_and_oddities() {
        for bad in [
            "", "../x", "a/b", ".", "..", ".hidden", "-flag", "a b", "é", "a\0b", "a\\b",
        ] {
            let e = ModuleName::new(bad);
            assert!(
                matches!(e, Err(Error::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
        let long = "a".repeat(65);
        let msg = ModuleName::new(&long)
            .map(|_| ())
            .err()
            .map(|e| e.to_string());
        assert!(
            msg.as_deref().is_some_and(|m| m.contains("65 bytes")),
            "{msg:?}"
        );
    }

    #[test]
    fn invalid_name_errors_are_bounded() {
        let huge = "/".repeat(10_000);
        let msg = ModuleName::new(&huge)
            .map(|_| ())
            .err()
            .map(|e| e.to_string());
        assert!(msg.is_some_and(|m| m.len() < 400));
    }

    #[test]
    fn reserved_names() -> TestResult {
        assert!(ModuleName::new("core")?.is_reserved());
        assert!(ModuleName::capability_module().is_reserved());
        assert!(!ModuleName::new("calc")?.is_reserved());
        Ok(())
    }

    #[test]
    fn names_serde_validate() {
        let ok: Result<ModuleName, _> = serde_json::from_str("\"calc\"");
        assert!(ok.is_ok());
        let bad: Result<ModuleName, _> = serde_json::from_str("\"../calc\"");
        assert!(bad.is_err());
    }

    #[test]
    fn suggests_the_closest_name() {
        let known = vec!["calc".to_owned(), "chat".to_owned(), "greeter".to_owned()];
        assert_eq!(closest("calk", &known).as_deref(), Some("calc"));
        assert_eq!(closest("greet", &known).as_deref(), Some("greeter"));
        assert_eq!(closest("zzzzzzzz", &known), None);
    }

    #[test]
    fn a_huge_name_gets_no_suggestion_and_a_short_error() {
        let known = vec!["calc".to_owned()];
        let huge = "c".repeat(1 << 20);
        assert_eq!(closest(&huge, &known), None);
        match check_name_len(&huge) {
            Err(e @ Error::InvalidName { .. }) => {
                assert_eq!(e.code(), ErrorCode::InvalidArgs);
                let msg = e.to_string();
                assert!(msg.len() < 300, "{msg}");
                assert!(msg.contains("1048576 bytes long, at most 64"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        assert!(check_name_len(&"c".repeat(ModuleName::MAX_LEN)).is_ok());
    }
}
