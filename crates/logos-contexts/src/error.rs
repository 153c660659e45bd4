//! [`Error`]: everything that can go wrong in this crate, each variant carrying its subject,
//! and [`Error::code`], the one mapping to the stable codes callers (the module, the CLI,
//! remote peers) match on.
//!
//! Never decides what to do about an error: the worker denies, audits and answers; this file
//! only names what happened.

use std::path::PathBuf;

/// A failure of the contexts library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An id, key, name or document given from outside is malformed.
    #[error("{what} {value:?} is invalid: {why}")]
    Invalid {
        /// What was given (`context id`, `storage key`, `script name`, …).
        what: &'static str,
        /// The value as given (shortened when long).
        value: String,
        /// Why it is refused, and the accepted form.
        why: String,
    },
    /// An envelope or signed statement failed to decode.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// `envelope`, `key file`, …
        what: &'static str,
        /// Where and why decoding stopped.
        why: String,
    },
    /// A signature does not verify, or the signer is not who the document names.
    #[error("signature rejected: {why}")]
    BadSignature {
        /// Which signature and why.
        why: String,
    },
    /// An envelope outside its validity window.
    #[error(
        "envelope expired: it expired at {expires_at_ms} ms, now is {now_ms} ms (skew allowed {skew_ms} ms); sign a new one"
    )]
    Expired {
        /// The envelope's `expiresAt`.
        expires_at_ms: u64,
        /// The worker's clock.
        now_ms: u64,
        /// The configured skew window.
        skew_ms: u64,
    },
    /// An envelope whose nonce was already used for this (caller, target).
    #[error("replayed envelope: nonce {nonce} was already used by {caller} towards {target}")]
    Replay {
        /// Caller peer id.
        caller: String,
        /// Target context id.
        target: String,
        /// The nonce (hex).
        nonce: String,
    },
    /// No context with that id in this worker.
    #[error("no context {id} in this worker; create it with createContext")]
    UnknownContext {
        /// The id asked for.
        id: String,
    },
    /// A context with that id exists already.
    #[error("context {id} exists already")]
    ContextExists {
        /// The id.
        id: String,
    },
    /// The worker holds as many contexts as it may (isolated mode: one).
    #[error("this worker holds {limit} context(s), its limit: {why}")]
    Capacity {
        /// The limit.
        limit: usize,
        /// What to do instead.
        why: String,
    },
    /// No installed script with that name or hash.
    #[error("context {context} has no script {script}; install it with installScript")]
    UnknownScript {
        /// The context.
        context: String,
        /// The name or hash asked for.
        script: String,
    },
    /// The policy denied the request (or could not be evaluated, which denies too).
    #[error("denied: {reason} (policy version {policy_version})")]
    Denied {
        /// Why: the deciding policies, or the evaluation error.
        reason: String,
        /// The policy version that decided.
        policy_version: u64,
    },
    /// A policy text that does not parse or does not validate against the schema.
    #[error("policy rejected: {why}")]
    Policy {
        /// The parser's or validator's messages.
        why: String,
    },
    /// The script failed: parse error, runtime error, limit, deadline, engine fault.
    #[error("script {stage} failed: {why}")]
    Script {
        /// `parse`, `evaluation`, `limit`, `deadline`, `engine`.
        stage: &'static str,
        /// The engine's message, with the position.
        why: String,
    },
    /// A write would take the context over its quota.
    #[error(
        "quota exceeded: context {context} uses {used} of {quota} bytes and this needs {needed} more"
    )]
    QuotaExceeded {
        /// The context.
        context: String,
        /// Bytes in use.
        used: u64,
        /// The quota.
        quota: u64,
        /// Bytes the refused write adds.
        needed: u64,
    },
    /// The context's queue is full: try again later.
    #[error("context {context} is busy: {queued} requests queued, the limit; retry later")]
    Busy {
        /// The context.
        context: String,
        /// Requests queued.
        queued: usize,
    },
    /// An owner-signed change signed for another revision.
    #[error(
        "stale revision for context {context}: the statement is signed for revision {signed}, the next is {next}; sign again for revision {next}"
    )]
    StaleRevision {
        /// The context.
        context: String,
        /// The revision the signature is for (when known).
        signed: u64,
        /// The revision expected.
        next: u64,
    },
    /// A storage backend failed.
    #[error("storage ({backend}) failed on {what}: {why}")]
    Storage {
        /// `fs`, `sqlite`, `s3`, `state`.
        backend: &'static str,
        /// The operation and key.
        what: String,
        /// The underlying error.
        why: String,
    },
    /// A file of the worker's own state cannot be used.
    #[error("{path}: {why}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The worker is shutting down.
    #[error("the worker is shutting down")]
    Closed,
}

impl Error {
    /// The stable code of this error, the `code` of a failed call and of an audit record:
    /// `invalid`, `malformed`, `bad_signature`, `expired`, `replay`, `unknown_context`,
    /// `context_exists`, `capacity`, `unknown_script`, `denied`, `policy_invalid`,
    /// `script_error`, `quota_exceeded`, `busy`, `stale_revision`, `storage`, `state`,
    /// `closed`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid { .. } => "invalid",
            Error::Malformed { .. } => "malformed",
            Error::BadSignature { .. } => "bad_signature",
            Error::Expired { .. } => "expired",
            Error::Replay { .. } => "replay",
            Error::UnknownContext { .. } => "unknown_context",
            Error::ContextExists { .. } => "context_exists",
            Error::Capacity { .. } => "capacity",
            Error::UnknownScript { .. } => "unknown_script",
            Error::Denied { .. } => "denied",
            Error::Policy { .. } => "policy_invalid",
            Error::Script { .. } => "script_error",
            Error::QuotaExceeded { .. } => "quota_exceeded",
            Error::Busy { .. } => "busy",
            Error::StaleRevision { .. } => "stale_revision",
            Error::Storage { .. } => "storage",
            Error::State { .. } => "state",
            Error::Closed => "closed",
        }
    }

    /// An [`Error::Invalid`], the value shortened to 80 characters.
    pub(crate) fn invalid(what: &'static str, value: &str, why: impl Into<String>) -> Error {
        let mut shown: String = value.chars().take(80).collect();
        if shown.len() < value.len() {
            shown.push('…');
        }
        Error::Invalid {
            what,
            value: shown,
            why: why.into(),
        }
    }

    /// An [`Error::Storage`].
    pub(crate) fn storage(
        backend: &'static str,
        what: impl Into<String>,
        why: impl ToString,
    ) -> Error {
        Error::Storage {
            backend,
            what: what.into(),
            why: why.to_string(),
        }
    }
}
