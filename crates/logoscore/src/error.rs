//! [`Error`]: every way a `logoscore` command can fail, each variant carrying what a person
//! needs to act on it (the socket that was tried, the argument that was refused, the core's or
//! module's own message).
//!
//! Owns the wording of CLI-side failures only. Never decides exit codes (that is `exit_code` in
//! `main.rs`, the one place) and never prints (that is `output.rs`).

use crate::config::ConfigError;
use logos_wire::ErrorCode;
use std::path::PathBuf;
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
    #[error("no core is running at {} ({hint})", socket.display())]
    NoCore {
        /// The control socket that was tried.
        socket: PathBuf,
        /// How to start one, and where the runtime dir came from.
        hint: String,
    },

    /// Something is there but this client cannot use it.
    #[error("cannot reach the core at {}: {reason}", socket.display())]
    Unreachable {
        /// The control socket that was tried.
        socket: PathBuf,
        /// What failed and what to do.
        reason: String,
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
            Error::Remote { code, .. } => code.as_str(),
            Error::Io { .. } => "io",
            Error::Start(_) => "start",
            Error::ShutdownTimeout { .. } => "shutdown_timeout",
        }
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
