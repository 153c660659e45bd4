//! The core `logoscore dev` serves the module in: one it starts in this process (the staging
//! dir and the `-m` dirs as its modules dirs; stopped with `dev`), or a running one it attaches
//! to over the control socket (the module registered there with `core.processPlugin`, and
//! unloaded again when `dev` ends). Both offer the same four steps: load, hot swap, cold
//! reload (for a metadata change, which a hot swap does not pick up), and close.
//!
//! Never builds or stages, and never decides when to swap.

use crate::Ctx;
use crate::client::{CORE, Client, LIFECYCLE_TIMEOUT};
use crate::error::Error;
use logos_core::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a swap did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Swapped {
    pub old_pid: Option<u32>,
    pub new_pid: Option<u32>,
    /// New process started and ready, while the old one served.
    pub start: Duration,
    /// Old process finished its calls and went.
    pub retire: Duration,
}

/// The core serving the module.
pub(crate) enum Host {
    /// Started by `dev`, in this process.
    Own(logos_core::Core),
    /// A core that was already running.
    Attached(Client),
}

/// How `dev` starts its own core.
pub(crate) struct OwnCore {
    pub runtime_dir: PathBuf,
    pub modules_dirs: Vec<PathBuf>,
    pub data_dir: Option<PathBuf>,
}

impl Host {
    /// Starts a core of its own.
    ///
    /// # Errors
    /// [`Error::Usage`] when a core already serves the runtime dir (naming `--attach`),
    /// [`Error::Start`] for the rest.
    pub async fn start(own: OwnCore) -> Result<Host, Error> {
        let mut b = logos_core::Core::builder().runtime_dir(&own.runtime_dir);
        for d in &own.modules_dirs {
            b = b.modules_dir(d);
        }
        if let Some(d) = &own.data_dir {
            b = b.data_dir(d);
        }
        let built = b.build().map_err(Error::Start)?;
        match built.start().await {
            Ok(core) => Ok(Host::Own(core)),
            Err(logos_core::Error::AlreadyRunning { socket }) => Err(Error::Usage(format!(
                "a core already serves {} ; add --attach to develop against it, or give --runtime-dir DIR for a core of dev's own",
                socket.display()
            ))),
            Err(e) => Err(Error::Start(e)),
        }
    }

    /// Attaches to the running core the usual options name (`--runtime-dir`, `--config-dir`).
    ///
    /// # Errors
    /// [`Error::NoCore`] and friends when it cannot be reached.
    pub async fn attach(ctx: &Ctx) -> Result<Host, Error> {
        Ok(Host::Attached(Client::connect(ctx).await?))
    }

    /// Resolves when the core has gone: `Ok` when an own core was stopped (`logoscore
    /// stop`), [`Error::Lost`] when the attached core's connection closed.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn ended(&self) -> Result<String, Error> {
        match self {
            Host::Own(core) => {
                core.stopped().await;
                Ok("the core was stopped".to_owned())
            }
            Host::Attached(client) => Err(Error::Lost {
                reason: client.on_close().await,
            }),
        }
    }

    /// The control socket clients reach the core at.
    pub fn socket(&self) -> Option<PathBuf> {
        match self {
            Host::Own(core) => Some(core.control_socket()),
            Host::Attached(_) => None,
        }
    }

    /// Whether the module is `ready` (a hot swap needs that; a crashed or failed one is
    /// reloaded cold instead).
    pub async fn is_ready(&self, name: &str) -> bool {
        match self {
            Host::Own(core) => core
                .module(name)
                .is_ok_and(|m| m.state == logos_core::State::Ready),
            Host::Attached(client) => crate::cmd::states(client)
                .await
                .ok()
                .and_then(|s| s.get(name).map(|r| r.state == "ready"))
                .unwrap_or(false),
        }
    }

    /// Loads the module staged in `dir` (its dependencies first) and returns its pid.
    pub async fn load(&self, name: &str, dir: &Path) -> Result<Option<u32>, Error> {
        match self {
            Host::Own(core) => {
                core.refresh().await.map_err(remote)?;
                core.load(name).await.map_err(remote)?;
                Ok(core.module(name).ok().and_then(|m| m.pid))
            }
            Host::Attached(client) => {
                let path = Value::from(dir.display().to_string());
                client.core("processPlugin", vec![path]).await?;
                client
                    .call(
                        CORE,
                        "loadPlugin",
                        vec![Value::from(name)],
                        LIFECYCLE_TIMEOUT,
                    )
                    .await?;
                Ok(pid_of(client, name).await)
            }
        }
    }

    /// Hot-swaps the module onto what is staged now.
    pub async fn swap(&self, name: &str) -> Result<Swapped, Error> {
        match self {
            Host::Own(core) => {
                let r = core.reload_hot(name).await.map_err(remote)?;
                Ok(Swapped {
                    old_pid: r.old_pid,
                    new_pid: r.new_pid,
                    start: r.start,
                    retire: r.retire,
                })
            }
            Host::Attached(client) => {
                let args = vec![Value::from(name), Value::Bool(true)];
                let r = client
                    .call(CORE, "reloadPlugin", args, LIFECYCLE_TIMEOUT)
                    .await?;
                let ms = |k: &str| {
                    let v = match r.get(k) {
                        Some(Value::Float(f)) => *f,
                        Some(Value::Int(i)) => *i as f64,
                        _ => 0.0,
                    };
                    Duration::from_secs_f64(v.max(0.0) / 1000.0)
                };
                let pid = |k: &str| r.get(k).and_then(Value::as_u64).map(|p| p as u32);
                Ok(Swapped {
                    old_pid: pid("oldPid"),
                    new_pid: pid("pid"),
                    start: ms("startMs"),
                    retire: ms("retireMs"),
                })
            }
        }
    }

    /// Stops the module and starts it again from its re-read metadata (a gap: calls in it
    /// fail with `unavailable`).
    pub async fn cold_reload(&self, name: &str, dir: &Path) -> Result<Option<u32>, Error> {
        match self {
            Host::Own(core) => {
                core.reload(name).await.map_err(remote)?;
                Ok(core.module(name).ok().and_then(|m| m.pid))
            }
            Host::Attached(client) => {
                // Not loaded any more (it failed, or someone unloaded it) is fine here.
                let args = vec![Value::from(name), Value::Bool(false)];
                let _ = client
                    .call(CORE, "unloadPlugin", args, LIFECYCLE_TIMEOUT)
                    .await;
                self.load(name, dir).await
            }
        }
    }

    /// Ends: an own core stops with every module; an attached one unloads the module (whose
    /// staged files are about to go) if `loaded`.
    pub async fn close(self, name: &str, loaded: bool) {
        match self {
            Host::Own(core) => core.shutdown().await,
            Host::Attached(client) if loaded => {
                let args = vec![Value::from(name), Value::Bool(false)];
                if let Err(e) = client
                    .call(CORE, "unloadPlugin", args, LIFECYCLE_TIMEOUT)
                    .await
                {
                    tracing::warn!("could not unload {name} from the core: {e}");
                }
            }
            Host::Attached(_) => {}
        }
    }
}

/// The pid of `name` as the core lists it.
async fn pid_of(client: &Client, name: &str) -> Option<u32> {
    crate::cmd::states(client)
        .await
        .ok()?
        .get(name)?
        .pid
        .map(|p| p as u32)
}

/// A core error, worded as the core words it.
fn remote(e: logos_core::Error) -> Error {
    Error::Remote {
        code: e.code(),
        message: crate::error::tidy(e.to_string()),
    }
}
