//! [`Error`]: every way a package operation can fail, each variant carrying its subject (the
//! package, the entry, the key, the registry) and saying what to do.
//!
//! Owns wording only. Never prints, never decides exit codes (the CLI does).

use std::path::PathBuf;

/// A failed package operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The archive breaks a rule of the `.lgx` format (see `docs/packages.md`): a forbidden
    /// entry kind, a bad path, a duplicate, an unlisted file, a size over a cap, a hash
    /// mismatch. `entry` is the archive member at fault, when there is one.
    #[error("package {package}: {}{reason}", entry.as_ref().map(|e| format!("entry {e:?}: ")).unwrap_or_default())]
    Refused {
        /// The package file (or `<stream>`).
        package: String,
        /// The archive member.
        entry: Option<String>,
        /// What is wrong.
        reason: String,
    },

    /// The signature check failed under the configured policy.
    #[error("package {package}: {reason}")]
    Untrusted {
        /// `name version` or the file.
        package: String,
        /// Unsigned, bad signature, unknown or mismatched key, and the fix.
        reason: String,
    },

    /// A manifest or module metadata is invalid.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which document (and field).
        what: String,
        /// Why.
        reason: String,
    },

    /// A key that does not exist, exists already, or cannot be used.
    #[error("key {name:?}: {reason}")]
    Key {
        /// The key's name.
        name: String,
        /// What is wrong and what to do.
        reason: String,
    },

    /// Nothing in the store or the registries matches.
    #[error("{0}")]
    NotFound(String),

    /// Dependency resolution failed; `report` is PubGrub's chain of reasons.
    #[error("cannot resolve {request}:\n{report}")]
    Conflict {
        /// What was asked for.
        request: String,
        /// Each derivation step, one per line.
        report: String,
    },

    /// The store is in a state this operation cannot work with.
    #[error("store {}: {reason}", dir.display())]
    Store {
        /// The package dir.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A registry answered with an error, or could not be reached.
    #[error("registry {url}: {reason}")]
    Registry {
        /// Base URL.
        url: String,
        /// Status and message, or the transport error.
        reason: String,
    },

    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted, naming the path.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A failed file operation on `path`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// An invalid document.
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// A stable name of the class, for JSON error documents.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Refused { .. } => "refused",
            Error::Untrusted { .. } => "untrusted",
            Error::Invalid { .. } => "invalid",
            Error::Key { .. } => "key",
            Error::NotFound(_) => "not_found",
            Error::Conflict { .. } => "conflict",
            Error::Store { .. } => "store",
            Error::Registry { .. } => "registry",
            Error::Io { .. } => "io",
        }
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;
