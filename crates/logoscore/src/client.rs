//! The client side of the control endpoint: find the runtime dir, connect to
//! `<runtime dir>/core.sock`, authenticate with the client token, call the `core` built-in (or a
//! module through it) and receive events.
//!
//! Owns turning every way "the core is not there" can happen into one actionable message
//! (where it looked, how to start one) and the event queue of `watch`. Never formats output and
//! never decides exit codes.

use crate::Ctx;
use crate::error::Error;
use logos_session::{Config, Fault, Handler, Session, SessionError};
use logos_wire::{ErrorCode, Hello, Value};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// The `core` built-in module's name.
pub(crate) const CORE: &str = logos_core::CORE_MODULE;

/// Deadline of a call when `--timeout` is not given: a little above the core's own default
/// call deadline (30 s), so the core's `timeout` error (which names the method) wins.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline of load/unload/reload/stop when `--timeout` is not given: each dependency layer
/// may take the core's start timeout, and stops take the grace period plus SIGTERM.
pub(crate) const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Time allowed to connect and finish the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Events buffered between the connection and the printer of `watch`.
const EVENT_QUEUE: usize = 1024;

/// Where the runtime dir came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Flag,
    Config,
    Env,
    Default,
}

/// The runtime dir a command uses, and why.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeDir {
    pub path: PathBuf,
    pub source: Source,
}

impl RuntimeDir {
    /// `--runtime-dir`, else `$LOGOS_RUNTIME_DIR`, else the core's default.
    pub fn resolve(flag: Option<&Path>) -> RuntimeDir {
        if let Some(p) = flag {
            return RuntimeDir {
                path: p.to_path_buf(),
                source: Source::Flag,
            };
        }
        match std::env::var_os("LOGOS_RUNTIME_DIR").filter(|v| !v.is_empty()) {
            Some(p) => RuntimeDir {
                path: PathBuf::from(p),
                source: Source::Env,
            },
            None => RuntimeDir {
                path: logos_core::default_runtime_dir(),
                source: Source::Default,
            },
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.path.join("core.sock")
    }

    pub fn token(&self) -> PathBuf {
        self.path.join("client.token")
    }

    /// How to start a core clients will find here, and where this dir came from.
    fn start_hint(&self) -> String {
        let dir = self.path.display();
        match self.source {
            Source::Flag | Source::Config => {
                format!("start one with `logoscore run -m DIR --runtime-dir {dir}`")
            }
            Source::Env => format!(
                "the runtime dir {dir} comes from $LOGOS_RUNTIME_DIR; start a core there with `logoscore run -m DIR` in a shell with the same LOGOS_RUNTIME_DIR"
            ),
            Source::Default => format!(
                "start one with `logoscore run -m DIR`; if a core runs with another runtime dir, pass --runtime-dir DIR or set LOGOS_RUNTIME_DIR (default here: {dir})"
            ),
        }
    }
}

/// What arrives on the connection besides replies.
#[derive(Debug)]
pub(crate) enum Incoming {
    Event {
        source: String,
        event: String,
        data: Vec<Value>,
    },
    /// Events lost: by the core (`dropped` reported by it) or here (the printer was slow).
    Lagged { source: String, dropped: u64 },
}

/// Forwards events into a bounded queue; counts what does not fit.
struct Forward {
    tx: mpsc::Sender<Incoming>,
    lost: AtomicU64,
}

impl Forward {
    fn push(&self, item: Incoming) {
        let lost = self.lost.swap(0, Ordering::Relaxed);
        if lost > 0
            && self
                .tx
                .try_send(Incoming::Lagged {
                    source: "logoscore".into(),
                    dropped: lost,
                })
                .is_err()
        {
            self.lost.fetch_add(lost + 1, Ordering::Relaxed);
            return;
        }
        if self.tx.try_send(item).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Handler for Forward {
    fn event(&self, _session: &Session, source: String, event: String, data: Vec<Value>) {
        self.push(Incoming::Event {
            source,
            event,
            data,
        });
    }

    fn lagged(&self, _session: &Session, source: String, dropped: u64) {
        self.push(Incoming::Lagged { source, dropped });
    }
}

/// One authenticated connection to a running core.
pub(crate) struct Client {
    session: Session,
    events: mpsc::Receiver<Incoming>,
    timeout: Option<Duration>,
}

impl Client {
    /// Connects to the core of the runtime dir chosen by `ctx`.
    ///
    /// # Errors
    /// [`Error::NoCore`] when nothing listens there, [`Error::Unreachable`] when something
    /// does but cannot be used (permissions, token, protocol), [`Error::Remote`] when the core
    /// refuses the token.
    pub async fn connect(ctx: &Ctx) -> Result<Client, Error> {
        let dir = RuntimeDir::resolve(ctx.runtime_dir.as_deref());
        Client::connect_to(&dir, ctx.timeout).await
    }

    pub async fn connect_to(dir: &RuntimeDir, timeout: Option<Duration>) -> Result<Client, Error> {
        let socket = dir.socket();
        let no_core = || Error::NoCore {
            socket: socket.clone(),
            hint: dir.start_hint(),
        };
        let unreachable = |reason: String| Error::Unreachable {
            socket: socket.clone(),
            reason,
        };
        let stream = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::UnixStream::connect(&socket),
        )
        .await
        {
            Err(_) => {
                return Err(unreachable(format!(
                    "connecting took longer than {CONNECT_TIMEOUT:?}"
                )));
            }
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    ErrorKind::NotFound | ErrorKind::ConnectionRefused => no_core(),
                    ErrorKind::PermissionDenied => unreachable(format!(
                        "permission denied ({}); the core belongs to another user, run logoscore as that user",
                        e
                    )),
                    _ => unreachable(e.to_string()),
                });
            }
        };
        // The file holds the token as hex; the core also checks it is private to this user.
        let token = logos_core::capability::read_client_token(&dir.token()).map_err(|e| {
            unreachable(match e {
                // Already says what is wrong and how to fix it.
                logos_core::Error::ClientToken { .. } => chain(&e),
                _ => format!(
                    "{}; the core writes it (mode 0600) for the user that runs it",
                    chain(&e)
                ),
            })
        })?;
        let hello = Hello {
            major: logos_wire::PROTOCOL_MAJOR,
            minor: logos_wire::PROTOCOL_MINOR,
            identity: format!("logoscore:{}", std::process::id()),
            token: bytes::Bytes::copy_from_slice(token.as_bytes()),
            attrs: Default::default(),
        };
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        let handler = Arc::new(Forward {
            tx,
            lost: AtomicU64::new(0),
        });
        let mut config = Config::default();
        config.handshake_timeout = CONNECT_TIMEOUT;
        match logos_session::connect(stream, hello, handler, config).await {
            Ok((session, _welcome)) => Ok(Client {
                session,
                events,
                timeout,
            }),
            Err(SessionError::Refused(fault)) => Err(Error::from(fault)),
            Err(SessionError::HandshakeTimeout(t)) => Err(unreachable(format!(
                "the core did not answer the handshake within {t:?}"
            ))),
            Err(SessionError::Io(e)) if e.kind() == ErrorKind::UnexpectedEof => Err(no_core()),
            Err(e) => Err(unreachable(e.to_string())),
        }
    }

    /// Calls `target.method(args)` with the `--timeout` deadline, else `default`.
    ///
    /// # Errors
    /// [`Error::Remote`] with the core's or module's fault.
    pub async fn call(
        &self,
        target: &str,
        method: &str,
        args: Vec<Value>,
        default: Duration,
    ) -> Result<Value, Error> {
        self.call_fault(target, method, args, default)
            .await
            .map_err(Error::from)
    }

    /// As [`Client::call`], keeping the [`Fault`] for callers that add context.
    pub async fn call_fault(
        &self,
        target: &str,
        method: &str,
        args: Vec<Value>,
        default: Duration,
    ) -> Result<Value, Fault> {
        let timeout = self.timeout.unwrap_or(default);
        self.session.call(target, method, args, timeout).await
    }

    /// Calls a read-only `core` method with the call deadline.
    pub async fn core(&self, method: &str, args: Vec<Value>) -> Result<Value, Error> {
        self.call(CORE, method, args, CALL_TIMEOUT).await
    }

    /// Asks the core for `event` of `source` (`""` = every event).
    ///
    /// # Errors
    /// [`Error::Lost`] when the connection has closed.
    pub fn subscribe(&self, source: &str, event: &str) -> Result<(), Error> {
        self.session
            .subscribe(source, event)
            .map_err(|e| Error::Lost {
                reason: e.to_string(),
            })
    }

    /// The next event; `None` only once the connection is gone (see [`Client::on_close`]).
    pub async fn next_event(&mut self) -> Option<Incoming> {
        self.events.recv().await
    }

    /// An event already queued, without waiting.
    pub fn try_next_event(&mut self) -> Option<Incoming> {
        self.events.try_recv().ok()
    }

    /// A future that resolves when the connection has ended, with the reason; it does not
    /// borrow the client, so it can be awaited next to [`Client::next_event`].
    pub fn on_close(&self) -> impl std::future::Future<Output = String> + 'static {
        let session = self.session.clone();
        async move { session.closed().await }
    }

    /// Process id of the core, from the kernel (SO_PEERCRED).
    pub fn core_pid(&self) -> Option<u32> {
        self.session.peer().pid
    }
}

/// `unknown_module` and friends read best as they are; other faults of a call get the
/// `module.method` they came from when the message does not already say it.
pub(crate) fn with_context(fault: Fault, target: &str, method: &str) -> Error {
    let qualified = format!("{target}.{method}");
    let keep = matches!(
        fault.code,
        ErrorCode::UnknownModule
            | ErrorCode::InvalidMetadata
            | ErrorCode::NotLoaded
            | ErrorCode::Unavailable
    ) || fault.message.contains(&qualified)
        || (fault.message.contains(target) && fault.message.contains(method));
    let message = if keep {
        fault.message
    } else {
        format!("{qualified}: {}", fault.message)
    };
    Error::Remote {
        code: fault.code,
        message: crate::error::tidy(message),
    }
}

/// `e: its source: …`, each cause once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
