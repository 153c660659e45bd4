//! `logoscore load NAME…`: loads modules one after another through `core.loadPlugin` (each
//! with its dependencies) and reports which modules this started.
//!
//! Never retries and never rolls back a module it loaded before a later one failed: the core
//! already makes each single load all-or-nothing, and the error says which one failed.

use crate::Ctx;
use crate::client::{CORE, Client, LIFECYCLE_TIMEOUT};
use crate::cmd::{changed, states};
use crate::error::Error;
use crate::output;
use logos_wire::Value;

pub(crate) async fn run(ctx: &Ctx, names: Vec<String>) -> Result<(), Error> {
    let client = Client::connect(ctx).await?;
    let mut started_all: Vec<String> = Vec::new();
    let mut before = states(&client).await?;
    for name in &names {
        client
            .call(
                CORE,
                "loadPlugin",
                vec![Value::from(name.as_str())],
                LIFECYCLE_TIMEOUT,
            )
            .await?;
        let after = states(&client).await?;
        let started = changed(&before, &after, |s| s == "ready");
        if !ctx.json {
            let text = if started.is_empty() {
                format!("{name} was already loaded")
            } else if started == [name.clone()] {
                format!("loaded {name}")
            } else {
                format!("loaded {name} (started {})", started.join(", "))
            };
            output::line(&text)?;
        }
        started_all.extend(started);
        before = after;
    }
    if ctx.json {
        output::json(
            &serde_json::json!({ "loaded": names, "started": started_all }),
            true,
        )?;
    }
    Ok(())
}
