//! [`Error`]: every way a `logoscore` command can fail, each variant carrying what a person
//! needs to act on it (the socket that was tried, the argument that was refused, the core's or
//! module's own message).
//!
//! Owns the wording of CLI-side failures and their names in the reference `logoscore`'s JSON
//! documents (`reference_code`). Never decides exit codes (that is `exit_code` in `main.rs`,
//! the one place) and never prints (that is `output.rs`).

use crate::config::ConfigError;
use logos_wire::ErrorCode;
use std::time::Duration;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Bad command-line input found after parsing: which argument, and why.
    #[error("{0}")]
    Usage(String),

    /// The config file is unreadable or invalid (names the key and line).
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// Nothing listens at the control endpoint.
    #[error("no core is running at {place} ({hint})")]
    NoCore {
        /// The control socket that was tried, or the config dir that names none.
        place: String,
        /// How to start one, and where the runtime dir came from.
        hint: String,
    },

    /// Something is there but this client cannot use it.
    #[error("cannot reach the core at {place}: {reason}")]
    Unreachable {
        /// The control socket that was tried, or the config dir.
        place: String,
        /// What failed and what to do.
        reason: String,
    },

    /// The core answered but refused this client's token (wrong, revoked, expired).
    #[error("the core at {place} refused this client: {reason}")]
    Refused {
        /// The control socket.
        place: String,
        /// The core's reason, and where the token came from.
        reason: String,
    },

    /// A named token that is not there to revoke, or already there to issue (exit 3).
    #[error("{message}")]
    Token {
        /// The reference's code: `TOKEN_NOT_FOUND`, `TOKEN_EXISTS`.
        code: &'static str,
        /// What happened and what to do.
        message: String,
    },

    /// `status`: no core runs for this client (exit 1, as the reference's `status`).
    #[error("no core is running: {reason}")]
    NotRunning {
        /// Where it looked and why it gave up.
        reason: String,
    },

    /// The command failed after doing part of its work; `done` says what (it joins the JSON
    /// error document, e.g. the modules `load a b` loaded before `b` failed).
    #[error("{error}")]
    Partial {
        /// What failed.
        error: Box<Error>,
        /// Keys added to the JSON error document.
        done: serde_json::Map<String, serde_json::Value>,
    },

    /// The connection to the core ended before the command finished.
    #[error("lost the connection to the core: {reason}")]
    Lost {
        /// Why, as the session reported it.
        reason: String,
    },

    /// The core, or a module through it, answered with an error.
    #[error("{message}")]
    Remote {
        /// The wire code; decides the exit code.
        code: ErrorCode,
        /// The core's or the module's own message, possibly with a CLI hint appended.
        message: String,
    },

    /// A local operation failed (tokio runtime, signals, files, stdout).
    #[error("{what}")]
    Io {
        /// What was attempted, naming the file.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A package command failed (format, signature, store, resolution, registry).
    #[error(transparent)]
    Package(#[from] logos_pkg::Error),

    /// The core could not start (`run`).
    #[error("cannot start the core")]
    Start(#[source] logos_core::Error),

    /// `run` was asked to stop and the modules did not all stop in time.
    #[error(
        "the core did not stop within {timeout:?}; exiting anyway (its guardian kills what is left); raise `shutdown_timeout` if modules need longer"
    )]
    ShutdownTimeout {
        /// The bound that passed.
        timeout: Duration,
    },
}

impl Error {
    /// A local I/O failure.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// The wire code or class, as JSON error documents spell it.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::Config(_) => "config",
            Error::NoCore { .. } => "no_core",
            Error::Unreachable { .. } => "unreachable",
            Error::Lost { .. } => "lost",
            Error::Refused { .. } => "refused",
            Error::NotRunning { .. } => "not_running",
            Error::Token { .. } => "token",
            Error::Partial { error, .. } => error.kind(),
            Error::Remote { code, .. } => code.as_str(),
            Error::Io { .. } => "io",
            Error::Start(_) => "start",
            Error::Package(e) => e.kind(),
            Error::ShutdownTimeout { .. } => "shutdown_timeout",
        }
    }

    /// The reference `logoscore`'s error code for this failure of `verb` (its JSON documents'
    /// `code`, e.g. `MODULE_NOT_FOUND`); ours is [`Error::kind`].
    pub fn reference_code(&self, verb: Verb) -> &'static str {
        match self {
            Error::Usage(_) => "INVALID_ARGS",
            Error::Config(_) => "CONFIG_ERROR",
            Error::NoCore { .. } | Error::Unreachable { .. } | Error::NotRunning { .. } => {
                "NO_DAEMON"
            }
            Error::Refused { .. } => "UNAUTHORIZED",
            Error::Token { code, .. } => code,
            Error::Lost { .. } => "CONNECTION_LOST",
            Error::Io { .. } => "IO_ERROR",
            Error::Start(_) => "DAEMON_START_FAILED",
            Error::Package(e) => match e.kind() {
                "refused" => "PACKAGE_REFUSED",
                "untrusted" => "PACKAGE_UNTRUSTED",
                "conflict" => "RESOLUTION_FAILED",
                "registry" => "REGISTRY_ERROR",
                "not_found" => "PACKAGE_NOT_FOUND",
                "io" => "IO_ERROR",
                _ => "PACKAGE_ERROR",
            },
            Error::ShutdownTimeout { .. } => "SHUTDOWN_TIMEOUT",
            Error::Partial { error, .. } => error.reference_code(verb),
            Error::Remote { code, .. } => remote_code(*code, verb),
        }
    }
}

/// What a command was, for the reference's error codes and its exit-3 rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Run,
    Status,
    Load,
    Unload,
    Reload,
    List,
    Info,
    Call,
    Watch,
    Stats,
    Stop,
    Tokens,
    Local,
    Package,
}

impl Verb {
    /// Load, unload, reload and info: a failure is a module error (exit 3) whatever the
    /// wire code, as the reference's module-management commands do.
    pub fn manages_modules(self) -> bool {
        matches!(self, Verb::Load | Verb::Unload | Verb::Reload | Verb::Info)
    }
}

/// The reference's code for a wire error during `verb`.
fn remote_code(code: ErrorCode, verb: Verb) -> &'static str {
    // A code added after this build (e.g. invalid_metadata) is matched by name.
    if code.as_str() == "invalid_metadata" {
        return "INVALID_METADATA";
    }
    match (code, verb) {
        (ErrorCode::UnknownModule, _) => "MODULE_NOT_FOUND",
        (ErrorCode::ProtocolError, _) => "PROTOCOL_ERROR",
        (ErrorCode::Unauthorized, _) => "UNAUTHORIZED",
        (ErrorCode::NotLoaded, Verb::Call | Verb::Unload | Verb::Watch) => "MODULE_NOT_LOADED",
        (_, Verb::Load) => "MODULE_LOAD_FAILED",
        (_, Verb::Unload) => "MODULE_UNLOAD_FAILED",
        (_, Verb::Reload) => "MODULE_RELOAD_FAILED",
        (ErrorCode::UnknownMethod, Verb::Watch) => "EVENT_NOT_FOUND",
        (ErrorCode::Unavailable, Verb::Call) => "MODULE_NOT_LOADED",
        (ErrorCode::UnknownMethod, _) => "METHOD_NOT_FOUND",
        (ErrorCode::InvalidArgs, _) => "INVALID_ARGS",
        (_, Verb::Call) => "METHOD_FAILED",
        _ => "MODULE_ERROR",
    }
}

impl From<logos_session::Fault> for Error {
    fn from(f: logos_session::Fault) -> Error {
        Error::Remote {
            code: f.code,
            message: tidy(f.message),
        }
    }
}

/// Joins the core's "did you mean" to the fix that follows it as a sentence, so
/// `…; did you mean "calc"?; put it in…` reads `…; did you mean "calc"? Otherwise, put it in…`.
/// Any other message is left as the core wrote it.
pub(crate) fn tidy(message: String) -> String {
    match message.split_once("?; ") {
        Some((head, tail)) if head.contains("did you mean") => format!("{head}? Otherwise, {tail}"),
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suggestion_reads_as_a_sentence() {
        let m = tidy(
            "module \"calk\" is not known (known: calc, kv); did you mean \"calc\"?; put it in a modules dir as <dir>/calk/metadata.json".into(),
        );
        assert_eq!(
            m,
            "module \"calk\" is not known (known: calc, kv); did you mean \"calc\"? Otherwise, put it in a modules dir as <dir>/calk/metadata.json"
        );
        assert_eq!(tidy("what?; no".into()), "what?; no");
    }
}
