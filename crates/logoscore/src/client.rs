//! The client side of the control endpoint: find the core (the config dir's `daemon/state.json`,
//! else the runtime dir), connect to its `core.sock`, authenticate with a token
//! (`$LOGOSCORE_TOKEN`, the config dir's `client/auto.json`, else `<runtime dir>/client.token`),
//! call the `core` built-in (or a module through it) and receive events.
//!
//! Owns turning every way "the core is not there" can happen into one actionable message
//! (where it looked, how to start one), telling "the core went away or refused us" (exit 2)
//! from a module's or method's error, and the event queue of `watch`. Never formats output and
//! never decides exit codes.

use crate::Ctx;
use crate::error::Error;
use logos_core::Token;
use logos_session::{Config, Fault, Handler, Session, SessionError};
use logos_wire::{ErrorCode, Hello, Value, Welcome};
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
    pub fn start_hint(&self) -> String {
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

/// Where a client command goes: the socket, the token, and what the core there must be.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub socket: PathBuf,
    /// How messages name the place (the socket, or the config dir).
    place: String,
    /// How to start a core clients will find there.
    hint: String,
    token: TokenSource,
    /// The pid the peer must have (from `daemon/state.json`), checked before the token is sent.
    pub expect_pid: Option<u32>,
    /// The instance id the core must announce in its `welcome`.
    expect_instance: Option<String>,
}

/// Where the token comes from.
#[derive(Debug, Clone)]
enum TokenSource {
    /// `$LOGOSCORE_TOKEN` (64 hex digits).
    Env,
    /// `<runtime dir>/client.token` (hex, 0600).
    ClientToken(PathBuf),
    /// `{"token": "<hex>"}`: `client/auto.json` or a copied named token file.
    Json(PathBuf),
}

impl TokenSource {
    fn read(&self) -> Result<Token, String> {
        match self {
            TokenSource::Env => {
                let v = std::env::var("LOGOSCORE_TOKEN").unwrap_or_default();
                Token::from_hex(v.trim()).ok_or_else(|| {
                    "$LOGOSCORE_TOKEN is not a logoscore token (64 hex digits, as `logoscore issue-token` prints)".to_owned()
                })
            }
            TokenSource::ClientToken(path) => {
                logos_core::read_client_token(path).map_err(|e| match e {
                    // Already says what is wrong and how to fix it.
                    logos_core::Error::ClientToken { .. } => chain(&e),
                    _ => format!(
                        "{}; the core writes it (mode 0600) for the user that runs it",
                        chain(&e)
                    ),
                })
            }
            TokenSource::Json(path) => crate::config_dir::read_token_file(path),
        }
    }

    fn describe(&self) -> String {
        match self {
            TokenSource::Env => "$LOGOSCORE_TOKEN".to_owned(),
            TokenSource::ClientToken(p) | TokenSource::Json(p) => p.display().to_string(),
        }
    }
}

impl Target {
    /// The core this command talks to: the one named by the config dir (`--config-dir`,
    /// `$LOGOSCORE_CONFIG_DIR`) when one is given, else the one of the runtime dir.
    ///
    /// # Errors
    /// [`Error::Usage`] for both a config dir and `--runtime-dir`; [`Error::NoCore`] when the
    /// config dir names no running core.
    pub fn resolve(ctx: &Ctx) -> Result<Target, Error> {
        let env_token = std::env::var_os("LOGOSCORE_TOKEN").is_some_and(|v| !v.is_empty());
        if let Some(config) = &ctx.config_dir {
            if let Some(rt) = &ctx.runtime_dir {
                return Err(Error::Usage(format!(
                    "--runtime-dir {} and the config dir {} both name a core; give one of them",
                    rt.display(),
                    config.shown()
                )));
            }
            let found = config.find()?;
            return Ok(Target {
                place: found.socket.display().to_string(),
                socket: found.socket,
                hint: format!(
                    "the config dir {} names this core; start it with `logoscore -D --config-dir {} -m DIR`",
                    config.shown(),
                    config.path.display()
                ),
                token: if env_token {
                    TokenSource::Env
                } else {
                    TokenSource::Json(found.token_file)
                },
                expect_pid: found.pid,
                expect_instance: found.instance,
            });
        }
        let dir = RuntimeDir::resolve(ctx.runtime_dir.as_deref());
        Ok(Target {
            place: dir.socket().display().to_string(),
            socket: dir.socket(),
            hint: dir.start_hint(),
            token: if env_token {
                TokenSource::Env
            } else {
                TokenSource::ClientToken(dir.token())
            },
            expect_pid: None,
            expect_instance: None,
        })
    }
}

/// One authenticated connection to a running core.
pub(crate) struct Client {
    session: Session,
    events: mpsc::Receiver<Incoming>,
    timeout: Option<Duration>,
    welcome: Welcome,
    place: String,
}

impl Client {
    /// Connects to the core chosen by `ctx` (see [`Target::resolve`]).
    ///
    /// # Errors
    /// [`Error::NoCore`] when nothing listens there, [`Error::Unreachable`] when something
    /// does but cannot be used (permissions, token file, another core), [`Error::Refused`]
    /// when the core refuses the token.
    pub async fn connect(ctx: &Ctx) -> Result<Client, Error> {
        let target = Target::resolve(ctx)?;
        if ctx.verbose {
            eprintln!(
                "logoscore: core at {}, token from {}",
                target.socket.display(),
                target.token.describe()
            );
        }
        Client::connect_to(&target, ctx.timeout).await
    }

    pub async fn connect_to(target: &Target, timeout: Option<Duration>) -> Result<Client, Error> {
        let socket = &target.socket;
        let no_core = || Error::NoCore {
            place: target.place.clone(),
            hint: target.hint.clone(),
        };
        let unreachable = |reason: String| Error::Unreachable {
            place: target.place.clone(),
            reason,
        };
        let stream = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::UnixStream::connect(socket),
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
                        "permission denied ({}); the core belongs to another user, run logoscore as that user (or a member of its --access-group)",
                        e
                    )),
                    _ => unreachable(e.to_string()),
                });
            }
        };
        // Before any secret leaves: is this the core the config dir names?
        if let Some(expected) = target.expect_pid {
            let peer = stream.peer_cred().ok().and_then(|c| c.pid());
            if peer.and_then(|p| u32::try_from(p).ok()) != Some(expected) {
                return Err(unreachable(format!(
                    "the socket is served by pid {}, not by the core (pid {expected}) its config dir names; no token was sent",
                    peer.map_or_else(|| "?".to_owned(), |p| p.to_string())
                )));
            }
        }
        let token = target.token.read().map_err(unreachable)?;
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
        let (session, welcome) = match logos_session::connect(stream, hello, handler, config).await
        {
            Ok(ok) => ok,
            Err(SessionError::Refused(fault)) if fault.code == ErrorCode::Unauthorized => {
                return Err(Error::Refused {
                    place: target.place.clone(),
                    reason: format!(
                        "{} (the token came from {})",
                        fault.message,
                        target.token.describe()
                    ),
                });
            }
            Err(SessionError::Refused(fault)) => return Err(Error::from(fault)),
            Err(SessionError::HandshakeTimeout(t)) => {
                return Err(unreachable(format!(
                    "the core did not answer the handshake within {t:?}"
                )));
            }
            Err(SessionError::Io(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                return Err(no_core());
            }
            Err(e) => return Err(unreachable(e.to_string())),
        };
        if let Some(expected) = &target.expect_instance {
            let announced = welcome.attrs.get("instance").and_then(Value::as_str);
            if announced != Some(expected.as_str()) {
                return Err(unreachable(format!(
                    "the core there is instance {}, not {expected} as its config dir says",
                    announced.unwrap_or("?")
                )));
            }
        }
        Ok(Client {
            session,
            events,
            timeout,
            welcome,
            place: target.place.clone(),
        })
    }

    /// Calls `target.method(args)` with the `--timeout` deadline, else `default`.
    ///
    /// # Errors
    /// [`Error::Remote`] with the core's or module's fault; [`Error::Lost`] (or
    /// [`Error::Refused`]) when the connection ended instead of an answer.
    pub async fn call(
        &self,
        target: &str,
        method: &str,
        args: Vec<Value>,
        default: Duration,
    ) -> Result<Value, Error> {
        self.call_mapped(target, method, args, default, Error::from)
            .await
    }

    /// As [`Client::call`], with `map` turning the core's or module's fault into the error
    /// (e.g. adding context); a connection that ended is always [`Error::Lost`] or
    /// [`Error::Refused`], never a module or method error.
    pub async fn call_mapped(
        &self,
        target: &str,
        method: &str,
        args: Vec<Value>,
        default: Duration,
        map: impl FnOnce(Fault) -> Error,
    ) -> Result<Value, Error> {
        let timeout = self.timeout.unwrap_or(default);
        match self.session.call(target, method, args, timeout).await {
            Ok(v) => Ok(v),
            Err(_) if self.session.is_closed() => Err(self.ended().await),
            Err(f) => Err(map(f)),
        }
    }

    /// The error for a connection that has ended: the core refused this client (its token
    /// was revoked or expired), or it went away.
    pub async fn ended(&self) -> Error {
        let reason = self.session.closed().await;
        self.ended_with(reason)
    }

    /// [`Client::ended`] for a close `reason` already known.
    pub fn ended_with(&self, reason: String) -> Error {
        match reason.strip_prefix("closed by peer: unauthorized: ") {
            Some(why) => Error::Refused {
                place: self.place.clone(),
                reason: why.to_owned(),
            },
            None => Error::Lost { reason },
        }
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

    /// What the core said about itself in its `welcome` (`instance`, `version`).
    pub fn core_attr(&self, key: &str) -> Option<&str> {
        self.welcome.attrs.get(key).and_then(Value::as_str)
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
