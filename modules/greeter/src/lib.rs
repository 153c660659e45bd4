//! `greeter`: module-to-module calls.
//!
//! Shows a module that depends on others (`calc ^1`, `chat ^1` in its metadata): methods take
//! `ctx: &Context` and call through `ctx.client(..)`, which gets a token from the core,
//! connects, and reconnects by itself after the target restarts. Errors of the called module
//! come back as that module's [`Fault`] (same code, same message) — never a panic, never a
//! hang: a call to a module that is down fails fast with `unavailable`.
//!
//! `sum` calls calc through [`CalcClient`], a typed client generated from calc's interface
//! (`logoscore bindings calc --lang rust -o modules/greeter/src/calc_client.rs`, committed;
//! `crates/logoscore/tests/cli_bindings.rs` fails when it no longer matches what calc
//! serves). `greet` shows the untyped form, naming the method in a string.

// Generated: formatted as the generator writes it, so regeneration gives the same bytes.
#[rustfmt::skip]
mod calc_client;

pub use calc_client::CalcClient;
use logos_sdk::{Context, Fault, module};

/// The greeter module: no state of its own.
#[derive(Debug, Default)]
pub struct Greeter;

#[module]
impl Greeter {
    /// Says hello to `name` in the chat (as nick `greeter`) and returns the greeting.
    pub async fn greet(&self, ctx: &Context, name: &str) -> Result<String, Fault> {
        let greeting = format!("Hello, {name}!");
        ctx.client("chat")
            .call::<()>("send", ("greeter", &greeting))
            .await?;
        Ok(greeting)
    }

    /// `a + b`, computed by `calc.add`.
    pub async fn sum(&self, ctx: &Context, a: i64, b: i64) -> Result<i64, Fault> {
        CalcClient::new(ctx).add(a, b).await
    }
}

logos_sdk::export_module!(Greeter);
