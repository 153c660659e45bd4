//! [`Error`]: every way a C API call fails, the thread's last error, and the guard every
//! `extern "C"` function runs its body in.
//!
//! Owns the mapping of each failure to a stable wire [`ErrorCode`] (one function,
//! [`Error::code`]) and the text applications see: `"<code>: <what, which, why; fix>"`, the
//! same shape as a failed call's callback message, so a host can branch on the prefix. Owns
//! the thread-local last error behind `logos_core_last_error`. Never touches a raw pointer and
//! never calls into the core.

use logos::ErrorCode;
use std::any::Any;
use std::cell::RefCell;
use std::ffi::CString;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Everything a C API call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum Error {
    /// A pointer argument is NULL.
    #[error("{name} is NULL; pass a NUL-terminated UTF-8 string")]
    Null {
        /// The parameter, as named in the header.
        name: &'static str,
    },

    /// A string argument is not UTF-8.
    #[error("{name} is not valid UTF-8 (bad byte at offset {offset}); pass UTF-8 text")]
    Utf8 {
        /// The parameter, as named in the header.
        name: &'static str,
        /// Offset of the first byte that is not UTF-8.
        offset: usize,
    },

    /// An argument is well-formed C but not acceptable.
    #[error("invalid {name}: {reason}")]
    Invalid {
        /// The parameter, as named in the header.
        name: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// The call needs a started core.
    #[error(
        "the core is not started; call logos_core_start first (after logos_core_cleanup, start it again)"
    )]
    NotStarted,

    /// The call configures the core, which only works before it starts.
    #[error(
        "{function} must be called before logos_core_start; the running core keeps its settings until logos_core_cleanup"
    )]
    Started {
        /// The refused function.
        function: &'static str,
    },

    /// The core refused or failed the operation (its own error carries the code).
    #[error("{}", .0.to_fault().message)]
    Core(#[from] logos::Error),

    /// A synchronous call did not finish within the caller's deadline.
    #[error(
        "{target}.{method} did not answer within {ms} ms; raise timeout_ms or pass 0 for the core's call timeout"
    )]
    Timeout {
        /// The called module.
        target: String,
        /// The method.
        method: String,
        /// The deadline given by the caller.
        ms: u64,
    },

    /// The core was cleaned up (or stopped) while the operation was under way.
    #[error("the core was cleaned up before {what} finished")]
    CleanedUp {
        /// The interrupted operation, e.g. `"loading chat"`.
        what: String,
    },

    /// A load without dependencies found some of them not loaded.
    #[error(
        "{module} needs {} loaded first and was asked to load without its dependencies; load them first, or pass with_dependencies = true",
        .missing.join(", ")
    )]
    DependenciesNotLoaded {
        /// The module to load.
        module: String,
        /// Its dependencies that are not loaded.
        missing: Vec<String>,
    },

    /// The application asked for a token it may not have.
    #[error("{reason}")]
    Token {
        /// Why, and what to use instead.
        reason: String,
    },

    /// The operating system refused something the library needs (threads, memory, files).
    #[error("{what}: {source}")]
    Os {
        /// What was attempted.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A bug: Rust code panicked inside the library. The panic was caught at the boundary.
    #[error(
        "internal error in {function}: {message}; this is a bug in liblogos_core, please report it"
    )]
    Panic {
        /// The C function whose body panicked.
        function: &'static str,
        /// The panic message.
        message: String,
    },
}

impl Error {
    /// The stable code that prefixes this error's text.
    ///
    /// The choices that are not obvious: a core that is not started, was cleaned up, or hit an
    /// OS failure is `unavailable` (the operation cannot be served now); a configuration call
    /// after start is `invalid_args` (the call itself is wrong at this point); a panic is
    /// `unavailable` too, since there is no code for our own bugs.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Error::Null { .. } | Error::Utf8 { .. } | Error::Invalid { .. } => {
                ErrorCode::InvalidArgs
            }
            Error::Started { .. } => ErrorCode::InvalidArgs,
            Error::NotStarted | Error::CleanedUp { .. } | Error::Os { .. } => {
                ErrorCode::Unavailable
            }
            Error::Core(e) => e.code(),
            Error::Timeout { .. } => ErrorCode::Timeout,
            Error::Token { .. } => ErrorCode::Unauthorized,
            Error::DependenciesNotLoaded { .. } => ErrorCode::NotLoaded,
            Error::Panic { .. } => ErrorCode::Unavailable,
        }
    }

    /// `"<code>: <message>"`, what applications see.
    pub(crate) fn text(&self) -> String {
        format!("{}: {self}", self.code())
    }
}

thread_local! {
    /// The last error of this thread; empty when the last call succeeded.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `text` as this thread's last error (an interior NUL cuts it there).
pub(crate) fn set_last_error(text: &str) {
    let text = text.split('\0').next().unwrap_or_default();
    let c = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Clears this thread's last error.
pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|e| *e.borrow_mut() = CString::default());
}

/// A pointer to this thread's last error text (`""` when none). It stays valid until the next
/// `logos_core_*` call on this thread: the string lives in a thread-local that only such a
/// call replaces.
pub(crate) fn last_error_ptr() -> *const std::ffi::c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// This thread's last error as Rust text (for tests).
#[cfg(test)]
pub(crate) fn last_error() -> String {
    LAST_ERROR.with(|e| e.borrow().to_string_lossy().into_owned())
}

/// Runs the body of the C function `function`: catches panics (a panic never unwinds into C),
/// turns an error into `on_error` plus the last error, and clears the last error on success.
pub(crate) fn guard<T>(
    function: &'static str,
    on_error: T,
    body: impl FnOnce() -> Result<T, Error>,
) -> T {
    clear_last_error();
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        Err(Error::Panic {
            function,
            message: panic_message(panic.as_ref()),
        })
    });
    match outcome {
        Ok(v) => {
            // Callbacks run inside process_events/exec may have failed calls of their own.
            clear_last_error();
            v
        }
        Err(e) => {
            set_last_error(&e.text());
            on_error
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// `text` as a C string for a callback, cutting at an interior NUL (JSON never has one).
pub(crate) fn c_message(text: &str) -> CString {
    let text = text.split('\0').next().unwrap_or_default();
    CString::new(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_starts_with_the_code() {
        let e = Error::Null {
            name: "plugin_name",
        };
        assert_eq!(
            e.text(),
            "invalid_args: plugin_name is NULL; pass a NUL-terminated UTF-8 string"
        );
        let e = Error::Core(logos::Error::NotStarted);
        assert!(e.text().starts_with("unavailable: the core is not started"));
    }

    #[test]
    fn guard_catches_panics_and_sets_the_last_error() {
        let v = guard("logos_core_test", -1, || -> Result<i32, Error> {
            panic!("boom")
        });
        assert_eq!(v, -1);
        let last = last_error();
        assert!(
            last.starts_with("unavailable: internal error in logos_core_test: boom"),
            "{last}"
        );
        let v = guard("logos_core_test", -1, || Ok(3));
        assert_eq!(v, 3);
        assert_eq!(last_error(), "");
    }

    #[test]
    fn messages_cut_at_nul() {
        assert_eq!(c_message("a\0b").to_bytes(), b"a");
        set_last_error("x\0y");
        assert_eq!(last_error(), "x");
    }
}
