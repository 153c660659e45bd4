//! [`Instance`]: a module value as the runtime holds it while calls run.
//!
//! Owns the concurrency rules of module methods. A module whose methods all take `&self` is
//! shared without a lock: its calls run fully concurrently, and its own state is what it puts
//! behind a `Mutex`. A module with at least one `&mut self` method is held in a
//! [`tokio::sync::RwLock`]: `&self` methods share it (a read lock each, still concurrent with
//! one another), and a `&mut self` method takes it exclusively (the write lock) for as long as
//! it runs, `.await`s included. Never decodes arguments (that is the generated dispatch) and
//! never does I/O.
//!
//! # Caveats
//!
//! - The lock is fair: a `&mut self` call waits until the calls running before it end, and
//!   calls that arrive while it waits or runs wait behind it. A `&self` method that waits long
//!   (on another module, a timer, a stream) therefore delays every `&mut self` call, and
//!   through it everything after. Keep long waits out of modules that mutate through
//!   `&mut self`, or use `&self` with a `Mutex` for those.
//! - A `&mut self` method that, directly or through other modules, calls its own module waits
//!   for itself until the call's deadline (the exclusive lock is not re-entrant).
//! - A `&mut self` method that panics or is cancelled (the caller's deadline, a `cancel`)
//!   stops where it was; what it changed so far stays changed (tokio's lock has no poisoning).
//! - The core's heartbeat pings, `$grant`, `$revoke` and `$stats` never take the lock, so a
//!   long `&mut self` call does not make the module look hung.

use crate::context::Context;
use crate::module::Module;
use futures::future::BoxFuture;
use logos_session::Fault;
use logos_wire::Value;
use tokio::sync::RwLock;

/// A module value with the locking its methods need; what the runtime calls.
///
/// Built by the runtime for a served module, and by tests that run methods without a core.
///
/// # Examples
///
/// ```
/// use logos_sdk::{Context, Instance, Value, module};
///
/// #[derive(Default)]
/// struct Counter {
///     n: i64,
/// }
///
/// #[module(name = "counter")]
/// impl Counter {
///     pub fn add(&mut self, by: i64) -> i64 {
///         self.n += by;
///         self.n
///     }
///
///     pub fn get(&self) -> i64 {
///         self.n
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let ctx = Context::standalone("counter", std::env::temp_dir());
/// let counter = Instance::new(Counter::default());
/// assert_eq!(counter.call(&ctx, "add", vec![Value::Int(2)]).await, Ok(Value::Int(2)));
/// assert_eq!(counter.call(&ctx, "get", vec![]).await, Ok(Value::Int(2)));
/// # });
/// ```
pub struct Instance<T> {
    held: Held<T>,
}

enum Held<T> {
    /// Every method takes `&self`: no lock.
    Shared(T),
    /// Some method takes `&mut self`.
    Locked(RwLock<T>),
}

impl<T: Module> Instance<T> {
    /// Holds `module`, in a lock if it has `&mut self` methods ([`Module::HAS_MUT_METHODS`]).
    pub fn new(module: T) -> Instance<T> {
        let held = if T::HAS_MUT_METHODS {
            Held::Locked(RwLock::new(module))
        } else {
            Held::Shared(module)
        };
        Instance { held }
    }

    /// Runs `method` with positional `args`: shared for a `&self` method, exclusively for a
    /// `&mut self` one (see the module docs for the order of calls).
    ///
    /// # Errors
    /// As [`Module::call`].
    ///
    /// # Cancel safety
    /// As [`Module::call`]; a call dropped while it waits for the lock leaves the queue.
    pub fn call<'a>(
        &'a self,
        ctx: &'a Context,
        method: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, Result<Value, Fault>> {
        match &self.held {
            Held::Shared(module) => module.call(ctx, method, args),
            Held::Locked(lock) if T::takes_mut(method) => Box::pin(async move {
                let mut module = lock.write().await;
                module.call_mut(ctx, method, args).await
            }),
            Held::Locked(lock) => Box::pin(async move {
                let module = lock.read().await;
                module.call(ctx, method, args).await
            }),
        }
    }
}

impl<T: Module> Instance<T> {
    /// The module, lent at once for a synchronous `&self` method ([`Module::sync_method`]):
    /// always when no method takes `&mut self`, else when no exclusive call holds or waits
    /// for the lock. `None` otherwise: the call then goes through [`Instance::call`].
    pub(crate) fn lend_now(&self, method: &str) -> Option<Lent<'_, T>> {
        if !T::sync_method(method) {
            return None;
        }
        match &self.held {
            Held::Shared(module) => Some(Lent::Shared(module)),
            Held::Locked(_) if T::takes_mut(method) => None,
            Held::Locked(lock) => lock.try_read().ok().map(Lent::Read),
        }
    }
}

/// The module lent for one synchronous call ([`Instance::lend_now`]).
pub(crate) enum Lent<'a, T> {
    Shared(&'a T),
    Read(tokio::sync::RwLockReadGuard<'a, T>),
}

impl<T> std::ops::Deref for Lent<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Lent::Shared(module) => module,
            Lent::Read(guard) => guard,
        }
    }
}

impl<T> std::fmt::Debug for Instance<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let locked = matches!(self.held, Held::Locked(_));
        f.debug_struct("Instance")
            .field("locked", &locked)
            .finish_non_exhaustive()
    }
}
