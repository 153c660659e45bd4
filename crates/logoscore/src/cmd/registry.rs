//! `logoscore registry serve --dir DIR --listen ADDR`: runs a registry (the axum server of
//! `logos_pkg::server`) in the foreground until SIGINT/SIGTERM, flushing counts on the way
//! out. Prints one readiness line (`--json`: `{"status","listen","url","dir"}`) once it
//! accepts connections. Never signs or installs anything.

use crate::error::Error;
use crate::{Ctx, output};
use std::path::PathBuf;

/// `registry` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RegistryCommand {
    /// Serve a registry dir over HTTP: JSON API, static layout, and an HTML page.
    Serve {
        /// The registry's dir (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Address to listen on, e.g. 127.0.0.1:7878 (port 0: any free port).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
        listen: String,
    },
}

pub(crate) fn run(ctx: &Ctx, cmd: RegistryCommand) -> Result<(), Error> {
    let RegistryCommand::Serve { dir, listen } = cmd;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    rt.block_on(async move {
        let reg = logos_pkg::server::Registry::open(&dir)?;
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| Error::io(format!("cannot listen on {listen}"), e))?;
        let addr = listener.local_addr().map_err(|e| Error::io("cannot read the bound address", e))?;
        let url = format!("http://{addr}");
        if ctx.json {
            output::json(&serde_json::json!({"status": "ok", "listen": addr.to_string(), "url": url, "dir": dir}), false)?;
        } else {
            output::line(&format!("registry {} serving on {url} (page: {url}/, API: {url}/api/v1/)", dir.display()))?;
        }
        let shutdown = async {
            use tokio::signal::unix::{SignalKind, signal};
            match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
                (Ok(mut i), Ok(mut t)) => {
                    tokio::select! { _ = i.recv() => {}, _ = t.recv() => {} }
                }
                _ => std::future::pending::<()>().await,
            }
        };
        reg.serve(listener, shutdown).await?;
        Ok(())
    })
}
