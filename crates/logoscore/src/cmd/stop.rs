//! `logoscore stop`: asks the core to shut down (`core.shutdown`) and waits until it has: the
//! connection closes when `logoscore run` exits, or the control socket disappears when the
//! core is embedded in a process that keeps running.
//!
//! Bounded by `--timeout` (default 5 min). Never signals a process itself. `--json`:
//! `{"stopped": true, "status": "ok", "message"}`, printed once the core has stopped (the
//! reference answers as soon as shutdown begins).

use crate::Ctx;
use crate::client::{CALL_TIMEOUT, CORE, Client, LIFECYCLE_TIMEOUT, Target};
use crate::error::Error;
use crate::output;
use logos_wire::ErrorCode;
use std::time::Duration;

pub(crate) async fn run(ctx: &Ctx) -> Result<(), Error> {
    let target = Target::resolve(ctx)?;
    let client = Client::connect_to(&target, ctx.timeout).await?;
    let closed = client.on_close();
    match client.call(CORE, "shutdown", vec![], CALL_TIMEOUT).await {
        Ok(_) => {}
        // Already shutting down (or it finished while answering): wait for the end either way.
        Err(Error::Remote {
            code: ErrorCode::Unavailable,
            ..
        }) => {}
        // It closed the connection before answering: stopping is what we asked for.
        Err(Error::Lost { .. }) => {}
        Err(e) => return Err(e),
    }
    let limit = ctx.timeout.unwrap_or(LIFECYCLE_TIMEOUT);
    let socket = target.socket.clone();
    let socket_gone = async {
        while socket.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // A core of a config dir is stopped once its process has gone, which is after it removed
    // daemon/state.json and client/auto.json.
    let pid = target.expect_pid;
    let finished = async {
        tokio::select! {
            _ = closed => {}
            () = socket_gone => {}
        }
        if let Some(pid) = pid {
            while crate::config_dir::pid_alive(pid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    if tokio::time::timeout(limit, finished).await.is_err() {
        return Err(Error::Remote {
            code: ErrorCode::Timeout,
            message: format!(
                "the core did not finish shutting down within {limit:?}; it may still be stopping modules (see its log), or raise --timeout"
            ),
        });
    }
    if ctx.json {
        output::json(
            &serde_json::json!({
                "stopped": true,
                "status": "ok",
                "message": "the core has stopped",
            }),
            false,
        )?;
    } else {
        output::line("core stopped")?;
    }
    Ok(())
}
