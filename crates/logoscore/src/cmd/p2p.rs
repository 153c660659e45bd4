//! `logoscore p2p …`: shortcuts to the running core's libp2p node, the `p2p` module
//! (docs/p2p.md): `id`, `addrs`, `peers`, `dial ADDR`, `protocols`.
//!
//! Each is one call of `p2p` over the operator's connection, as `logoscore call p2p …` would
//! make it, printed for people (one line per address, peer or registration) or, with
//! `--json`, as the method's result. Owns only the argument forms and the printing; the node
//! and its errors are `p2p`'s.

use crate::Ctx;
use crate::client::{CALL_TIMEOUT, Client, with_context};
use crate::error::Error;
use crate::output;
use logos_wire::Value;
use std::time::Duration;

/// The module the shortcuts call.
const MODULE: &str = "p2p";

/// `logoscore p2p` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Print this node's peer id.
    Id,
    /// Print the addresses the node listens on, one per line (each ends in /p2p/<id>).
    Addrs,
    /// List connected peers: id, direction, ping round trip, addresses, agent.
    Peers,
    /// Dial a multiaddr (with or without /p2p/<id>) and print the peer id it proved.
    Dial {
        /// The address, e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW….
        addr: String,
        /// Give up after this long, e.g. 10s.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::config::parse_duration)]
        timeout: Duration,
    },
    /// List the protocols modules registered: id, owner, protocols, pending and open streams.
    Protocols,
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn number(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_u64)
        .map_or_else(|| "-".to_owned(), |n| n.to_string())
}

fn texts(v: &Value, key: &str) -> String {
    let list: Vec<&str> = v
        .get(key)
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if list.is_empty() {
        "-".to_owned()
    } else {
        list.join(",")
    }
}

/// The lines printed for people.
fn lines(sub: &Sub, v: &Value) -> Vec<String> {
    let items = || v.as_list().unwrap_or_default().iter();
    match sub {
        Sub::Id | Sub::Dial { .. } => vec![output::value_text(v)],
        Sub::Addrs => items()
            .map(|a| a.as_str().unwrap_or_default().to_owned())
            .collect(),
        Sub::Peers => items()
            .map(|p| {
                let rtt = p
                    .get("rttMs")
                    .and_then(Value::as_u64)
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms"));
                format!(
                    "{}  {}  rtt {rtt}  {}  {}",
                    text(p, "peer"),
                    text(p, "direction"),
                    texts(p, "addrs"),
                    text(p, "agent"),
                )
            })
            .collect(),
        Sub::Protocols => items()
            .map(|r| {
                format!(
                    "{}  {}  {}  pending {}  open {}",
                    number(r, "registration"),
                    text(r, "owner"),
                    texts(r, "protocols"),
                    number(r, "pending"),
                    number(r, "open"),
                )
            })
            .collect(),
    }
}

/// Runs `logoscore p2p …`.
pub(crate) async fn run(ctx: &Ctx, args: Args) -> Result<(), Error> {
    let (method, call_args, deadline) = match &args.command {
        Sub::Id => ("peerId", vec![], CALL_TIMEOUT),
        Sub::Addrs => ("listenAddrs", vec![], CALL_TIMEOUT),
        Sub::Peers => ("peers", vec![], CALL_TIMEOUT),
        Sub::Dial { addr, timeout } => {
            let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            (
                "dial",
                vec![Value::Text(addr.clone()), Value::UInt(ms)],
                *timeout + CALL_TIMEOUT,
            )
        }
        Sub::Protocols => ("protocols", vec![], CALL_TIMEOUT),
    };
    let client = Client::connect(ctx).await?;
    let v = client
        .call_mapped(MODULE, method, call_args, deadline, |f| {
            with_context(f, MODULE, method)
        })
        .await?;
    if ctx.json {
        output::json(&output::value_json(&v), false)?;
    } else {
        for l in lines(&args.command, &v) {
            output::line(&l)?;
        }
    }
    Ok(())
}
