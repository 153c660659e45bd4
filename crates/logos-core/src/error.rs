//! The one error type of `logos-core`, and its mapping to wire error codes.
//!
//! Owns [`Error`]: every failure the runtime reports, each variant carrying its subject (the
//! module, the chain, the path) so a message can say what failed, which thing, why, and how to
//! fix it. Owns [`Error::code`], the single place where a core failure becomes a stable
//! [`ErrorCode`]. Never formats for a particular front end (CLI, C API) and never logs: callers
//! decide what to show and where.
//!
//! Adding a variant: give it the subject as fields, write the message lowercase as "what, which,
//! why; fix", and add one arm to [`Error::code`] (the match has no wildcard, so the compiler
//! points there).

use crate::manifest::ManifestError;
use crate::name::ModuleName;
use logos_wire::ErrorCode;
use semver::{Version, VersionReq};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// How many names an error lists before it says "and N more".
const LIST_MAX: usize = 12;

/// Everything that can go wrong in the runtime.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A string is not a valid module name.
    #[error("invalid module name {name:?}: {reason}")]
    InvalidName {
        /// The refused input (cut to 80 characters).
        name: String,
        /// Why it was refused, with the rule.
        reason: String,
    },

    /// A module's `metadata.json` is invalid; the module is not registered.
    #[error(transparent)]
    Manifest(#[from] ManifestError),

    /// A module directory of that name was found but its `metadata.json` is invalid (or, at
    /// load, names a permission nobody knows), so the module cannot be loaded. The message is
    /// the chain, then every fault with its file and field, e.g.
    /// `calc: modules/calc/metadata.json: field "version": "1.0" is not a semver version
    /// (expected e.g. "1.2.0")`.
    #[error("{}: {error}", arrows(.chain))]
    InvalidMetadata {
        /// From the requested module to the one whose metadata is at fault (just that one when
        /// it was requested itself).
        chain: Vec<String>,
        /// The faults, each with file and field.
        error: ManifestError,
    },

    /// No module of that name is known (discovered) to the core.
    #[error(
        "module {name:?} is not known (known: {}){}; put it in a modules dir as <dir>/{name}/metadata.json",
        list(.known),
        suggestion.as_ref().map(|s| format!("; did you mean {s:?}?")).unwrap_or_default()
    )]
    UnknownModule {
        /// The requested name (cut to 80 characters if it came from outside).
        name: String,
        /// Every known module, sorted.
        known: Vec<String>,
        /// The known name closest to `name`, for "did you mean".
        suggestion: Option<String>,
    },

    /// The module is known but not loaded.
    #[error("module {name} is not loaded; load it first")]
    NotLoaded {
        /// The module.
        name: String,
    },

    /// A built-in module (`core`, `capability_module`) cannot be loaded, unloaded or replaced.
    #[error("{name} is a built-in module of the core; it is always loaded and cannot be {action}")]
    BuiltIn {
        /// The built-in's name.
        name: ModuleName,
        /// What was attempted, e.g. `"unloaded"`.
        action: &'static str,
    },

    /// A dependency along `chain` is not a known module. The last element is the missing one.
    #[error(
        "{}: {} is not a known module (known: {}); install it into a modules dir or remove it from {}'s dependencies",
        arrows(.chain), last(.chain), list(.known), before_last(.chain)
    )]
    MissingDependency {
        /// From the requested module to the missing one.
        chain: Vec<ModuleName>,
        /// Known modules, sorted, without the module that declared the dependency.
        known: Vec<ModuleName>,
    },

    /// A dependency exists but its version does not satisfy the range declared along `chain`.
    #[error(
        "{} ({required}): only {found} is {}; install a version of {} matching {required} or relax the range in {}'s metadata.json",
        arrows(.chain), if *.loaded { "loaded" } else { "known" }, last(.chain), before_last(.chain)
    )]
    VersionMismatch {
        /// From the requested module to the mismatching dependency (the last element).
        chain: Vec<ModuleName>,
        /// The range declared by the second-to-last module of the chain.
        required: VersionReq,
        /// The version that is loaded (if `loaded`) or known.
        found: Version,
        /// Whether `found` is the version of the running module (it would have to be unloaded
        /// first) rather than of the discovered one.
        loaded: bool,
    },

    /// The dependencies form a cycle; `chain` starts and ends with the same module.
    #[error(
        "dependency cycle {}; remove one of these dependencies",
        arrows(.chain)
    )]
    DependencyCycle {
        /// The cycle, e.g. `[a, b, c, a]`.
        chain: Vec<ModuleName>,
    },

    /// Loaded modules depend on the module, so it cannot be unloaded alone.
    #[error(
        "cannot unload {name}: loaded modules depend on it ({}); unload them first or unload with cascade",
        list(.dependents)
    )]
    HasDependents {
        /// The module asked to unload.
        name: String,
        /// The loaded modules that directly depend on it, sorted.
        dependents: Vec<String>,
    },

    /// The access policy refuses a call.
    #[error("call refused: {reason}")]
    Denied {
        /// The calling module.
        caller: String,
        /// The module it tried to reach.
        target: String,
        /// The policy's reason, naming both.
        reason: String,
    },

    /// A token presented as an operator's is not a live one.
    #[error("{reason}")]
    NotOperator {
        /// Why, with the fix (where the token is, or that it expired).
        reason: String,
    },

    /// A call made through the embedding API failed; `fault` carries the wire code.
    #[error("call {target}.{method} failed: {fault}")]
    Call {
        /// The called module.
        target: String,
        /// The method.
        method: String,
        /// The wire error: code and message.
        fault: logos_session::Fault,
    },

    /// A setting given to the builder (or read from configuration) is invalid.
    #[error("invalid setting {setting}: {reason}")]
    Config {
        /// The setting, e.g. `"grants"`.
        setting: String,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// Another core already serves this runtime dir.
    #[error(
        "another core is already running on {}; stop it (`logoscore stop`) or use another runtime dir",
        socket.display()
    )]
    AlreadyRunning {
        /// The control socket that answered.
        socket: PathBuf,
    },

    /// The core has not been started. (A unit variant: the subject is the one core.)
    #[error("the core is not started; call `Core::start` first")]
    NotStarted,

    /// The core is shutting down or has shut down. (A unit variant: the subject is the one
    /// core.)
    #[error("the core is shutting down; no new operations are accepted")]
    ShutDown,

    /// The operating system's random number generator failed.
    #[error("cannot {purpose}: the system random number generator failed: {source}")]
    Random {
        /// What the randomness was for, e.g. `"mint a token"`.
        purpose: &'static str,
        /// The generator's error.
        #[source]
        source: getrandom::Error,
    },

    /// An operating-system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted, with its subject, e.g. `"creating runtime dir /run/user/1000/logos"`.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A directory that must be private to this user is not.
    #[error("{} is not a private directory: {problem}", path.display())]
    PrivateDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong and how to fix it.
        problem: String,
    },

    /// A client token file exists but is unusable.
    #[error("client token {} is unusable: {problem}", path.display())]
    ClientToken {
        /// The token file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        problem: String,
    },

    /// The module's process could not be created.
    #[error("cannot start module {module}: {reason}")]
    Spawn {
        /// The module.
        module: String,
        /// The failed step and the OS error.
        reason: String,
    },

    /// The module may not start as confined as required: a declared path is not granted or
    /// would expose what modules may never reach, or strict confinement is on and the kernel
    /// cannot confine it.
    #[error("module {module} may not start: {reason}")]
    Unconfined {
        /// The module.
        module: String,
        /// What is missing and how to fix it.
        reason: String,
    },

    /// The module's process started but exited or broke the handshake before it was ready.
    #[error(
        "module {module} failed to start: {reason}{}{}",
        status.as_ref().map(|s| format!(" ({s})")).unwrap_or_default(),
        tail(.stderr_tail)
    )]
    StartFailed {
        /// The module.
        module: String,
        /// What went wrong.
        reason: String,
        /// How the process ended, e.g. `"exit code 1"`, when it did.
        status: Option<String>,
        /// Its last stderr lines, oldest first.
        stderr_tail: Vec<String>,
    },

    /// A remote module cannot be started or restarted by the core: it joins by connecting.
    #[error(
        "module {module} is a remote module: the core did not start it and cannot {action} it; start it on its own machine (`logos_host --remote CREDENTIAL …`), and it joins when it connects"
    )]
    Remote {
        /// The module.
        module: String,
        /// What was asked: `start`, `reload`.
        action: &'static str,
    },

    /// The remote module listener or a credential could not be set up or used.
    #[error("remote modules: {reason}")]
    RemoteSetup {
        /// What failed and how to fix it.
        reason: String,
    },

    /// The module's process did not say `hello` in time.
    #[error(
        "module {module} did not become ready within {timeout:?}; it was killed (raise the start timeout if it is slow to start){}",
        tail(.stderr_tail)
    )]
    StartTimeout {
        /// The module.
        module: String,
        /// The start timeout that passed.
        timeout: Duration,
        /// Its last stderr lines, oldest first.
        stderr_tail: Vec<String>,
    },
}

impl Error {
    /// The stable wire code for this error: what a remote caller (a module, the CLI, the C API)
    /// sees.
    ///
    /// The choices that are not obvious:
    /// - [`Error::InvalidMetadata`] and [`Error::Manifest`] → `invalid_metadata` (protocol
    ///   1.1; a 1.0 peer gets `unknown_module`, see [`ErrorCode::for_peer`]): the module is
    ///   there but unusable as it stands, and the message says why.
    /// - [`Error::MissingDependency`] → `unknown_module`: a dependency nobody has installed.
    /// - [`Error::VersionMismatch`] and [`Error::DependencyCycle`] → `not_loaded`: every module
    ///   involved is known, but the set cannot be loaded as it stands.
    /// - [`Error::HasDependents`] and [`Error::BuiltIn`] → `method_failed`: the request is
    ///   well-formed and names a real module; the `core` built-in refuses it, which is that
    ///   module's own error.
    /// - I/O, randomness, spawn failures and a core that is not running → `unavailable`: the
    ///   target cannot be brought up now; [`Error::StartTimeout`] → `timeout`.
    /// - [`Error::Call`] → the remote fault's own code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidName { .. } => ErrorCode::InvalidArgs,
            Error::InvalidMetadata { .. } => ErrorCode::InvalidMetadata,
            Error::Manifest(_) => ErrorCode::InvalidMetadata,
            Error::UnknownModule { .. } => ErrorCode::UnknownModule,
            Error::NotLoaded { .. } => ErrorCode::NotLoaded,
            Error::Remote { .. } => ErrorCode::Unavailable,
            Error::RemoteSetup { .. } => ErrorCode::Unavailable,
            Error::BuiltIn { .. } => ErrorCode::MethodFailed,
            Error::MissingDependency { .. } => ErrorCode::UnknownModule,
            Error::VersionMismatch { .. } => ErrorCode::NotLoaded,
            Error::DependencyCycle { .. } => ErrorCode::NotLoaded,
            Error::HasDependents { .. } => ErrorCode::MethodFailed,
            Error::Denied { .. } => ErrorCode::Unauthorized,
            Error::NotOperator { .. } => ErrorCode::Unauthorized,
            Error::Random { .. } => ErrorCode::Unavailable,
            Error::Io { .. } => ErrorCode::Unavailable,
            Error::PrivateDir { .. } => ErrorCode::Unavailable,
            Error::ClientToken { .. } => ErrorCode::Unauthorized,
            Error::Spawn { .. } => ErrorCode::Unavailable,
            Error::Unconfined { .. } => ErrorCode::Unauthorized,
            Error::StartFailed { .. } => ErrorCode::Unavailable,
            Error::StartTimeout { .. } => ErrorCode::Timeout,
            Error::Call { fault, .. } => fault.code,
            Error::Config { .. } => ErrorCode::InvalidArgs,
            Error::AlreadyRunning { .. } => ErrorCode::Unavailable,
            Error::NotStarted => ErrorCode::Unavailable,
            Error::ShutDown => ErrorCode::Unavailable,
        }
    }

    /// This error as a wire fault: [`Error::code`] and the message. A [`Error::Call`] gives
    /// back the remote fault unchanged.
    pub fn to_fault(&self) -> logos_session::Fault {
        match self {
            Error::Call { fault, .. } => fault.clone(),
            other => logos_session::Fault::new(other.code(), other.to_string()),
        }
    }
}

/// `a -> b -> c`.
fn arrows<S: AsRef<str>>(chain: &[S]) -> String {
    let mut out = String::new();
    for (i, n) in chain.iter().enumerate() {
        if i > 0 {
            out.push_str(" -> ");
        }
        out.push_str(n.as_ref());
    }
    out
}

fn last(chain: &[ModuleName]) -> &str {
    chain.last().map_or("?", ModuleName::as_str)
}

fn before_last(chain: &[ModuleName]) -> &str {
    chain
        .len()
        .checked_sub(2)
        .and_then(|i| chain.get(i))
        .map_or("the requesting module", ModuleName::as_str)
}

/// `a, b, c` (at most [`LIST_MAX`] names), or `none`.
pub(crate) fn list<S: AsRef<str>>(names: &[S]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    let mut out = String::new();
    for (i, n) in names.iter().take(LIST_MAX).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(n.as_ref());
    }
    if names.len() > LIST_MAX {
        let _ = write!(out, " and {} more", names.len() - LIST_MAX);
    }
    out
}

/// `; stderr: …` with the last lines, or nothing.
fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    format!("; last stderr lines:\n  {}", lines.join("\n  "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> ModuleName {
        match ModuleName::new(s) {
            Ok(n) => n,
            Err(e) => panic!("test name {s}: {e}"),
        }
    }

    fn names(v: &[&str]) -> Vec<ModuleName> {
        v.iter().map(|s| n(s)).collect()
    }

    #[test]
    fn missing_dependency_names_chain_and_known() {
        let e = Error::MissingDependency {
            chain: names(&["greeter", "calc"]),
            known: names(&["chat", "kv"]),
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with("greeter -> calc: calc is not a known module (known: chat, kv)"),
            "{msg}"
        );
        assert!(
            msg.contains("remove it from greeter's dependencies"),
            "{msg}"
        );
        assert_eq!(e.code(), ErrorCode::UnknownModule);
    }

    #[test]
    fn version_mismatch_message() {
        let e = Error::VersionMismatch {
            chain: names(&["greeter", "calc"]),
            required: VersionReq::parse("^2.0").unwrap_or(VersionReq::STAR),
            found: Version::new(1, 4, 0),
            loaded: false,
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with("greeter -> calc (^2.0): only 1.4.0 is known;"),
            "{msg}"
        );
        assert_eq!(e.code(), ErrorCode::NotLoaded);
    }

    #[test]
    fn cycle_message() {
        let e = Error::DependencyCycle {
            chain: names(&["a", "b", "c", "a"]),
        };
        assert!(
            e.to_string()
                .starts_with("dependency cycle a -> b -> c -> a")
        );
        assert_eq!(e.code(), ErrorCode::NotLoaded);
    }

    #[test]
    fn long_lists_are_cut() {
        let many: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
        let e = Error::UnknownModule {
            name: "x".into(),
            known: many,
            suggestion: None,
        };
        let msg = e.to_string();
        assert!(msg.contains("m11 and 8 more"), "{msg}");
        assert!(!msg.contains("m12"), "{msg}");
    }

    #[test]
    fn empty_list_says_none() {
        let e = Error::UnknownModule {
            name: "x".into(),
            known: vec![],
            suggestion: None,
        };
        assert!(e.to_string().contains("(known: none)"));
        let e = Error::UnknownModule {
            name: "calk".into(),
            known: vec!["calc".into()],
            suggestion: Some("calc".into()),
        };
        assert!(
            e.to_string()
                .contains("(known: calc); did you mean \"calc\"?")
        );
    }

    #[test]
    fn start_failed_carries_tail() {
        let e = Error::StartFailed {
            module: "calc".into(),
            reason: "exited before it became ready".into(),
            status: Some("exit code 1".into()),
            stderr_tail: vec!["boom".into(), "bye".into()],
        };
        let msg = e.to_string();
        assert!(msg.contains("(exit code 1)"), "{msg}");
        assert!(msg.ends_with("\n  boom\n  bye"), "{msg}");
    }

    #[test]
    fn messages_start_lowercase() {
        let errors = [
            Error::NotLoaded {
                name: "calc".into(),
            },
            Error::HasDependents {
                name: "calc".into(),
                dependents: vec!["greeter".into()],
            },
            Error::NotStarted,
            Error::ShutDown,
            Error::Spawn {
                module: "calc".into(),
                reason: "x".into(),
            },
        ];
        for e in errors {
            let first = e.to_string().chars().next().unwrap_or('?');
            assert!(!first.is_uppercase(), "{e}");
        }
    }

    #[test]
    fn to_fault_keeps_remote_codes() {
        let remote = logos_session::Fault::new(ErrorCode::MethodFailed, "division by zero");
        let e = Error::Call {
            target: "calc".into(),
            method: "div".into(),
            fault: remote.clone(),
        };
        assert_eq!(e.code(), ErrorCode::MethodFailed);
        assert_eq!(e.to_fault(), remote);
        let f = Error::NotLoaded { name: "kv".into() }.to_fault();
        assert_eq!(f.code, ErrorCode::NotLoaded);
        assert!(f.message.contains("kv"));
    }
}
