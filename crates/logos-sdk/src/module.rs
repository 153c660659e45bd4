//! The `Module` and `Events` traits and the interface description they produce.
//!
//! Owns what a module *is* to the runtime: a name, a version, an interface, a constructor and
//! two async dispatch functions (shared and exclusive). `#[module]` and `#[derive(Events)]`
//! implement these traits; hand-written implementations are possible but rarely worth it.
//! Never does I/O: serving the module is `serve/`; holding it (and locking it for `&mut self`
//! methods) is `instance.rs`.

use crate::context::Context;
use crate::error::Error;
use futures::future::BoxFuture;
use logos_session::Fault;
use logos_wire::{Value, WireError};
use std::collections::BTreeMap;

/// A logos module: what `#[logos_sdk::module]` implements for the type of an `impl` block.
///
/// The runtime builds the value once with [`Module::init`], announces [`Module::interface`]
/// to the core, then runs every incoming call through an [`Instance`](crate::Instance), many
/// at once: `&self` methods through [`Module::call`], `&mut self` methods through
/// [`Module::call_mut`] with the module locked exclusively (see `Instance` for the rules).
pub trait Module: Send + Sync + Sized + 'static {
    /// The module's name: must equal `name` in its `metadata.json`.
    const NAME: &'static str;
    /// The module's version (semver text): by default its `Cargo.toml` version, which the
    /// host and the core compare with the `version` in its `metadata.json` at load.
    const VERSION: &'static str;
    /// `true` when at least one method takes `&mut self`; the runtime then holds the module
    /// in a read-write lock instead of sharing it freely.
    const HAS_MUT_METHODS: bool = false;

    /// The exported methods, in declaration order.
    fn methods() -> &'static [MethodInfo];

    /// The events the module emits (from `#[module(events = ...)]`), possibly none.
    fn events() -> &'static [EventInfo];

    /// The interface map sent to the core in `hello` and returned by `core.getPluginMethods`:
    /// `{"name", "version", "methods": [{"name", "params": [{"name", "type"}], "returns",
    /// "readOnly"?}],
    /// "events": [{"name", "params": [...]}]}` (docs/architecture.md §5).
    fn interface() -> Value {
        interface_value(Self::NAME, Self::VERSION, Self::methods(), Self::events())
    }

    /// Builds the module, once, before it connects to the core.
    ///
    /// # Errors
    /// [`Error::Init`] from the module's `#[init]` constructor; the process then exits non-zero.
    fn init(ctx: &Context) -> Result<Self, Error>;

    /// Whether `method` takes `&mut self` (and so runs through [`Module::call_mut`]).
    fn takes_mut(method: &str) -> bool {
        let _ = method;
        false
    }

    /// Runs `method` with positional `args`, sharing the module with other calls.
    ///
    /// # Errors
    /// `unknown_method` for a name the module does not export, `invalid_args` when the
    /// arguments do not decode, `method_failed` (or the method's own [`Fault`]) when it fails;
    /// `method_failed` for a `&mut self` method, which needs [`Module::call_mut`].
    ///
    /// # Cancel safety
    /// The future is dropped when the caller cancels or its deadline passes; a method is then
    /// stopped at its current `.await`.
    fn call<'a>(
        &'a self,
        ctx: &'a Context,
        method: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, Result<Value, Fault>>;

    /// Whether `method` is a synchronous `&self` method: the runtime then serves it through
    /// [`Module::call_sync`], at once and without a future (`#[module]` generates both).
    fn sync_method(method: &str) -> bool {
        let _ = method;
        false
    }

    /// Runs a method that [`Module::sync_method`] names, at once: what [`Module::call`]'s
    /// future would give, without building one.
    ///
    /// # Errors
    /// As [`Module::call`]; `unknown_method` for a name `sync_method` does not give.
    fn call_sync(&self, ctx: &Context, method: &str, args: Vec<Value>) -> Result<Value, Fault> {
        let _ = (ctx, args);
        Err(crate::export::unknown_method(Self::NAME, method))
    }

    /// Runs `method`, `&mut self` methods included, with the module held exclusively.
    ///
    /// # Errors
    /// As [`Module::call`].
    ///
    /// # Cancel safety
    /// As [`Module::call`]: a `&mut self` method stopped at an `.await` keeps whatever it
    /// changed before it.
    fn call_mut<'a>(
        &'a mut self,
        ctx: &'a Context,
        method: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, Result<Value, Fault>> {
        self.call(ctx, method, args)
    }
}

/// Typed events of a module, implemented by `#[derive(logos_sdk::Events)]` on an enum and
/// sent with [`Context::emit`].
pub trait Events {
    /// The event's wire name (`chatMessage`).
    fn name(&self) -> &'static str;
    /// The event's data: its fields, in order, as values.
    ///
    /// # Errors
    /// [`WireError::Value`] when a field's `Serialize` fails (e.g. a map with non-text keys).
    fn into_data(self) -> Result<Vec<Value>, WireError>;
    /// Every event of the enum, for the interface.
    fn describe() -> &'static [EventInfo];
}

/// One parameter of a method or event in the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamInfo {
    /// The parameter's name.
    pub name: &'static str,
    /// Its logos type name (`int`, `list<text>`, `optional<any>`, …).
    pub ty: &'static str,
}

/// One method in the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    /// Wire name.
    pub name: &'static str,
    /// Positional parameters.
    pub params: &'static [ParamInfo],
    /// Logos type name of the result (`null` when the method returns nothing).
    pub returns: &'static str,
    /// Marked `#[read_only]`: it changes no state, so a protected module serves it to every
    /// caller allowed to call it, not only to its writers (docs/security.md, "Protected
    /// modules"). In the interface as `"readOnly": true`.
    pub read_only: bool,
}

/// One event in the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventInfo {
    /// Wire name.
    pub name: &'static str,
    /// The data items, in order.
    pub params: &'static [ParamInfo],
}

fn params_value(params: &[ParamInfo]) -> Value {
    Value::List(
        params
            .iter()
            .map(|p| {
                Value::Map(BTreeMap::from([
                    ("name".to_owned(), Value::from(p.name)),
                    ("type".to_owned(), Value::from(p.ty)),
                ]))
            })
            .collect(),
    )
}

/// Builds the interface map of docs/architecture.md §5.
pub fn interface_value(
    name: &str,
    version: &str,
    methods: &[MethodInfo],
    events: &[EventInfo],
) -> Value {
    let methods = methods
        .iter()
        .map(|m| {
            let mut entry = BTreeMap::from([
                ("name".to_owned(), Value::from(m.name)),
                ("params".to_owned(), params_value(m.params)),
                ("returns".to_owned(), Value::from(m.returns)),
            ]);
            if m.read_only {
                entry.insert("readOnly".to_owned(), Value::Bool(true));
            }
            Value::Map(entry)
        })
        .collect();
    let events = events
        .iter()
        .map(|e| {
            Value::Map(BTreeMap::from([
                ("name".to_owned(), Value::from(e.name)),
                ("params".to_owned(), params_value(e.params)),
            ]))
        })
        .collect();
    Value::Map(BTreeMap::from([
        ("name".to_owned(), Value::from(name)),
        ("version".to_owned(), Value::from(version)),
        ("methods".to_owned(), Value::List(methods)),
        ("events".to_owned(), Value::List(events)),
    ]))
}
