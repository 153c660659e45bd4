//! Procedural macros of `logos-sdk`: `#[module]` and `#[derive(Events)]`.
//!
//! This crate is the thin entry: each macro hands its tokens to an `expand` function
//! (`module.rs`, `events.rs`) and turns a `syn::Error` into a compile error with its span. Use
//! the macros through `logos_sdk` (`#[logos_sdk::module]`, `#[derive(logos_sdk::Events)]`);
//! the generated code names only `::logos_sdk` paths. Never depend on this crate directly.

use proc_macro::TokenStream;

mod events;
mod module;
mod names;

/// Turns an inherent `impl` block into a logos module: implements `logos_sdk::Module` for the
/// type, with one wire method per exported function.
///
/// # Which functions become methods
///
/// Every `pub fn` (sync or `async`) whose first parameter is `&self` or `&mut self`. Private
/// functions and associated functions without `self` are left alone; `self` by value is a
/// compile error.
///
/// - **Concurrency**: `&self` methods run concurrently; keep their mutable state behind a
///   `Mutex`. A module with at least one `&mut self` method is held in a read-write lock
///   (`logos_sdk::Instance`): `&self` calls share it, and a `&mut self` call has the module
///   alone for as long as it runs, `.await`s included, after the calls before it end and
///   before the calls after it start. A module without `&mut self` methods takes no lock.
/// - **Synchronous methods**: a `pub fn` (not `async`) taking `&self` is also generated into
///   `Module::call_sync` (and named by `Module::sync_method`): the runtime answers it as soon
///   as its call is read, on the connection's reader, without a future. Keep such methods
///   quick; make one that computes for long `async` and hand its work to
///   `tokio::task::spawn_blocking`.
/// - **Context**: an optional first parameter `ctx: &Context` (after the receiver) gives the
///   method the module's [`Context`](../logos_sdk/struct.Context.html) (emit events, call other
///   modules, data dir). It is not a wire argument. It is recognised by its type, so an alias
///   (`use logos_sdk::Context as Ctx`) works and a type of your own named `Context` is an
///   ordinary argument.
/// - **Arguments**: every other parameter is one positional wire argument, decoded from its
///   `Value` with serde. Owned types (`String`, `Vec<T>`, your structs) take the value over;
///   borrowed ones (`&str`, `&[u8]`, `Option<&str>`, `Cow<str>`, structs with
///   `#[serde(borrow)]` fields) borrow it for the call, without a copy. `&mut` parameters are
///   a compile error. A wrong argument count or type fails the call with `invalid_args`,
///   naming the method and the parameter. A missing trailing argument of type `Option<T>` is
///   `None`.
/// - **Return**: any `T: Serialize` is the reply (`()` or no return type replies null).
///   `Result<T, E>` replies `T` on `Ok`; on `Err`, `E = logos_sdk::Fault` is sent as is (its
///   own code), and any other `E: Display` fails the call with `method_failed` and
///   `e.to_string()` as the message.
/// - **Wire name**: lowerCamelCase of the Rust name (`stream_to` → `streamTo`).
///
/// # Attributes
///
/// - `#[module(name = "calc", version = "1.0.0", events = CalcEvent)]`, every argument
///   optional: `name` defaults to `env!("CARGO_PKG_NAME")` and `version` to
///   `env!("CARGO_PKG_VERSION")` (the version `logos_host` and the core compare with
///   `metadata.json` at load, refusing a mismatch); `events` names a `#[derive(Events)]` enum
///   whose variants are listed in the interface.
/// - `#[logos(name = "wireName")]` on a method overrides its wire name.
/// - `#[logos(skip)]` on a `pub fn` keeps it out of the interface.
/// - `#[read_only]` on an exported method says it changes no state: the interface marks it
///   `"readOnly": true`, and when the module is protected (`"protected": true`, confirmed by
///   the operator) every caller allowed to call it may, while the other methods are kept for
///   the writers the operator lists (docs/security.md, "Protected modules"). The SDK does not
///   check the claim: marking a writing method read-only opens it to every caller.
/// - `#[init]` on one associated function marks the constructor, called once at start-up
///   before the module connects to the core: `fn new(ctx: &Context) -> Result<Self, E>` (with
///   `E: Display`; an error stops the module with a non-zero exit), or `-> Self`, with or
///   without the `ctx` parameter. Without `#[init]` the type must implement `Default`.
///
/// The type must be `Send + Sync + 'static`, and async methods' futures `Send`.
///
/// # Example
///
/// ```
/// use logos_sdk::{Context, Events, module};
///
/// #[derive(Events)]
/// enum CounterEvent {
///     /// Data: `[value, by]`.
///     Changed { value: i64, by: String },
/// }
///
/// #[derive(Default)]
/// struct Counter {
///     value: i64,
/// }
///
/// #[module(name = "counter", version = "1.0.0", events = CounterEvent)]
/// impl Counter {
///     /// Wire name `addTo`: `counter.addTo(5, "ada")`. `&mut self`: one call at a time.
///     pub fn add_to(&mut self, ctx: &Context, n: i64, by: &str) -> Result<i64, String> {
///         self.value = self.value.checked_add(n).ok_or("overflow")?;
///         ctx.emit(CounterEvent::Changed { value: self.value, by: by.to_owned() })?;
///         Ok(self.value)
///     }
///
///     pub async fn get(&self) -> i64 {
///         self.value
///     }
/// }
/// ```
#[proc_macro_attribute]
pub fn module(attr: TokenStream, item: TokenStream) -> TokenStream {
    module::expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes an enum the typed events of a module: implements `logos_sdk::Events`.
///
/// Each variant is one event named lowerCamelCase of the variant (`ChatMessage` →
/// `chatMessage`), or `#[logos(name = "...")]`. The event data is the variant's fields in
/// declaration order, each encoded with serde (`Tick(u64)` → `[i]`,
/// `ChatMessage { timestamp, nick, message }` → `[timestamp, nick, message]`). Named fields
/// give the parameter names in the interface; tuple fields are named `0`, `1`, ….
///
/// ```
/// #[derive(logos_sdk::Events)]
/// enum ChatEvent {
///     ChatMessage { timestamp: i64, nick: String, message: String },
///     #[logos(name = "cleared")]
///     HistoryCleared,
/// }
/// ```
#[proc_macro_derive(Events, attributes(logos))]
pub fn derive_events(input: TokenStream) -> TokenStream {
    events::expand(input.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
