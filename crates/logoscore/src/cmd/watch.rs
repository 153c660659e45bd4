//! `logoscore watch [MODULE [EVENT]]` (the reference's `watch MODULE --event EVENT` too):
//! prints events as they arrive until Ctrl-C.
//!
//! Without MODULE it follows the core's lifecycle events (`stateChanged`, `moduleUp`,
//! `moduleDown`, `moduleCrashed`) and every event of every known module. With `--json` each
//! event is one line of JSON (NDJSON), in the reference's shape: `{"timestamp", "module",
//! "event", "data": {"arg0", …}, "args": […]}`. Lost events (the core's queue for this client
//! overflowed) are reported on stderr, never mixed into stdout. Ends with exit 0 on
//! Ctrl-C/SIGTERM or a closed stdout; with exit 2 when the core goes away or refuses this
//! client, and then the last line of stdout is the (one-line) error document. An unknown
//! module is exit 3 at once, never a wait for events that cannot come.

use crate::Ctx;
use crate::client::{CORE, Client, Incoming};
use crate::error::Error;
use crate::output;
use logos_wire::{ErrorCode, Value};
use std::time::SystemTime;
use tokio::signal::unix::{SignalKind, signal};

pub(crate) async fn run(
    ctx: &Ctx,
    module: Option<String>,
    event: Option<String>,
) -> Result<(), Error> {
    let mut client = Client::connect(ctx).await?;
    let event = event.unwrap_or_default();
    let sources = match &module {
        Some(m) => {
            check(&client, m, &event).await?;
            vec![m.clone()]
        }
        None => {
            let mut all = vec![CORE.to_owned()];
            if let Value::List(names) = client.core("getKnownPlugins", vec![]).await? {
                all.extend(names.iter().filter_map(|n| n.as_str().map(str::to_owned)));
            }
            all
        }
    };
    for s in &sources {
        client.subscribe(s, &event)?;
    }
    // A round trip after the subscriptions: once it returns, the core has recorded them (it
    // reads one connection in order), so nothing emitted from now on is missed.
    client.core("getLoadedPlugins", vec![]).await?;
    let what = match (&module, event.as_str()) {
        (None, _) => "events of the core and every module".to_owned(),
        (Some(m), "") => format!("events of {m}"),
        (Some(m), e) => format!("{m}.{e}"),
    };
    eprintln!("watching {what} (Ctrl-C to stop)");

    let sig = |kind| signal(kind).map_err(|e| Error::io("cannot handle signals", e));
    let mut sigint = sig(SignalKind::interrupt())?;
    let mut sigterm = sig(SignalKind::terminate())?;
    let closed = client.on_close();
    tokio::pin!(closed);
    loop {
        tokio::select! {
            biased;
            _ = sigint.recv() => return Ok(()),
            _ = sigterm.recv() => return Ok(()),
            item = client.next_event() => match item {
                Some(item) => {
                    if !print(ctx.json, item)? {
                        return Ok(());
                    }
                }
                None => return Err(client.ended().await),
            },
            reason = &mut closed => {
                while let Some(item) = client.try_next_event() {
                    if !print(ctx.json, item)? {
                        return Ok(());
                    }
                }
                return Err(client.ended_with(reason));
            }
        }
    }
}

/// Refuses an unknown module (the core's message lists the known ones) and, when the module
/// is loaded and says which events it has, an event it does not emit.
async fn check(client: &Client, module: &str, event: &str) -> Result<(), Error> {
    if module == CORE {
        return Ok(());
    }
    let info = client.core("moduleInfo", vec![Value::from(module)]).await?;
    if event.is_empty() {
        return Ok(());
    }
    let events: Option<Vec<String>> = info
        .get("interface")
        .and_then(|i| i.get("events"))
        .and_then(Value::as_list)
        .map(|l| {
            l.iter()
                .filter_map(|e| e.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        });
    match events {
        Some(names) if !names.iter().any(|n| n == event) => Err(Error::Remote {
            code: ErrorCode::UnknownMethod,
            message: format!(
                "{module} has no event {event:?} (it has: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
        }),
        _ => Ok(()),
    }
}

/// Prints one item; `Ok(false)` when stdout is closed.
fn print(json: bool, item: Incoming) -> Result<bool, Error> {
    match item {
        Incoming::Event {
            source,
            event,
            data,
        } => {
            let time = output::timestamp(SystemTime::now());
            if json {
                let doc = serde_json::json!({
                    "timestamp": time,
                    "module": source,
                    "event": event,
                    "data": crate::reference::event_data(&data),
                    "args": output::value_json(&Value::List(data)),
                });
                output::json(&doc, false)
            } else {
                let data = output::value_json(&Value::List(data)).to_string();
                output::line(&format!("{} {source}.{event} {data}", &time[11..]))
            }
        }
        Incoming::Lagged { source, dropped } => {
            eprintln!(
                "warning: {dropped} event(s) of {source} were dropped: this watcher fell behind"
            );
            Ok(true)
        }
    }
}
