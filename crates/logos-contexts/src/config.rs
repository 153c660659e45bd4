//! [`Config`] and [`Limits`]: every knob of a worker, each default documented and checked.
//!
//! Never reads files or the environment: the module maps its settings onto these.

use crate::error::Error;
use std::time::Duration;

/// Bounds on one script evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest script source accepted, checked before parsing (default 64 KiB).
    pub script_bytes: usize,
    /// Engine operations per evaluation (default 1 000 000).
    pub operations: u64,
    /// Nested function calls (default 32).
    pub call_depth: usize,
    /// Expression nesting, at the top level and inside functions (default 48 / 32): bounds
    /// the parser's recursion too, so a parser bomb is refused, not a stack overflow.
    pub expr_depth: (usize, usize),
    /// Longest string in bytes (default 64 KiB).
    pub string_bytes: usize,
    /// Most items of an array (default 4096).
    pub array_items: usize,
    /// Most entries of a map (default 1024).
    pub map_entries: usize,
    /// Most modules imported in one evaluation (default 16).
    pub modules: usize,
    /// Wall-clock deadline of one evaluation, host calls included (default 2 s).
    pub deadline: Duration,
    /// Most storage operations of one evaluation (default 1000).
    pub storage_ops: usize,
    /// Most keys one `list` returns (default 1000).
    pub list_keys: usize,
    /// Most events one evaluation emits (default 64).
    pub events: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            script_bytes: 64 * 1024,
            operations: 1_000_000,
            call_depth: 32,
            expr_depth: (48, 32),
            string_bytes: 64 * 1024,
            array_items: 4096,
            map_entries: 1024,
            modules: 16,
            deadline: Duration::from_secs(2),
            storage_ops: 1000,
            list_keys: 1000,
            events: 64,
        }
    }
}

/// Which host functions scripts get, beyond storage of the target context, `caller()`,
/// `target()`, `now()` and a few pure helpers, which every profile has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Profile {
    /// `emit(event, data)`.
    pub emit: bool,
    /// `call(module, method, args)` (each call still needs the policy's `call`).
    pub call: bool,
}

/// Everything a worker can be told.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Evaluation limits.
    pub limits: Limits,
    /// Host functions granted to scripts (default: `emit` only).
    pub profile: Profile,
    /// Clock skew tolerated on `expiresAt` (default 30 s).
    pub skew: Duration,
    /// Longest validity an envelope may claim from now (default 1 h): bounds how long
    /// nonces must be remembered.
    pub max_validity: Duration,
    /// Deepest nested delegation (parents in an envelope; default 2).
    pub max_delegation_depth: usize,
    /// Requests waiting per context before `busy` (default 32).
    pub queue: usize,
    /// Evaluations running at once per context (default 1, which also serialises a
    /// context's read-modify-write scripts).
    pub per_context: usize,
    /// Evaluation threads of the worker (default 2).
    pub threads: usize,
    /// Stack of each evaluation thread (default 8 MiB, at least [`Config::MIN_STACK`]).
    pub stack_size: usize,
    /// Most contexts this worker holds (default unlimited; isolated mode: 1).
    pub max_contexts: usize,
    /// Quota given when `createContext` names none (default 16 MiB).
    pub default_quota: u64,
    /// Largest quota `createContext` may ask for (default 1 GiB).
    pub max_quota: u64,
    /// Audit records kept per context, oldest dropped first (default 10 000).
    pub audit_records: u64,
    /// Compiled scripts cached (default 256).
    pub ast_cache: usize,
}

impl Config {
    /// The smallest evaluation stack accepted: what the deepest evaluation the limits allow
    /// needs in an unoptimised build, with room to spare (measured by the attack suite's
    /// recursion and parser-bomb cases, which run at this size).
    pub const MIN_STACK: usize = 2 * 1024 * 1024;

    /// The defaults above.
    pub fn new() -> Config {
        Config {
            limits: Limits::default(),
            profile: Profile {
                emit: true,
                call: false,
            },
            skew: Duration::from_secs(30),
            max_validity: Duration::from_secs(3600),
            max_delegation_depth: 2,
            queue: 32,
            per_context: 1,
            threads: 2,
            stack_size: 8 * 1024 * 1024,
            max_contexts: usize::MAX,
            default_quota: 16 * 1024 * 1024,
            max_quota: 1024 * 1024 * 1024,
            audit_records: 10_000,
            ast_cache: 256,
        }
    }

    /// With these limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Config {
        self.limits = limits;
        self
    }

    /// With this profile.
    #[must_use]
    pub fn with_profile(mut self, profile: Profile) -> Config {
        self.profile = profile;
        self
    }

    /// At most `n` contexts (isolated mode: 1).
    #[must_use]
    pub fn with_max_contexts(mut self, n: usize) -> Config {
        self.max_contexts = n;
        self
    }

    /// Checks every bound.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |what: &'static str, v: String, why: &str| Err(Error::invalid(what, &v, why));
        if self.stack_size < Self::MIN_STACK {
            return bad(
                "stack_size",
                self.stack_size.to_string(),
                "is below Config::MIN_STACK (2 MiB)",
            );
        }
        if self.threads == 0 || self.threads > 256 {
            return bad("threads", self.threads.to_string(), "must be 1 to 256");
        }
        if self.per_context == 0 || self.queue == 0 {
            return bad(
                "per_context/queue",
                format!("{}/{}", self.per_context, self.queue),
                "must be at least 1",
            );
        }
        if self.limits.deadline.is_zero() || self.limits.operations == 0 {
            return bad(
                "limits",
                format!("{:?}", self.limits.deadline),
                "deadline and operations must be above zero",
            );
        }
        if self.limits.call_depth > 64
            || self.limits.expr_depth.0 > 64
            || self.limits.expr_depth.1 > 64
        {
            return bad(
                "limits.call_depth/expr_depth",
                format!("{}/{:?}", self.limits.call_depth, self.limits.expr_depth),
                "must be at most 64: deeper nesting needs more stack than MIN_STACK guarantees",
            );
        }
        if self.max_contexts == 0 {
            return bad("max_contexts", "0".into(), "must be at least 1");
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}
