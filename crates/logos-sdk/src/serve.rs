//! The module-side runtime: the module half of docs/architecture.md "Module process contract".
//!
//! Owns the process: the inherited descriptors (control connection on `LOGOS_CONTROL_FD`,
//! listening socket on `LOGOS_LISTEN_FD`), logging, the async runtime, the handshake with the
//! core, the reserved `$grant`/`$revoke`/`$stats` methods and the token check on peer connections,
//! routing of calls, subscriptions and streams to the module, and the exit rules (shutdown,
//! control connection gone, SIGTERM). Never decides policy (who may call whom is the core's
//! decision, expressed as grants) and never reads identity from anything but a connection.
//!
//! # Why a current-thread runtime
//!
//! A module is one process serving one module. On a current-thread runtime every task —
//! connection readers and writers, calls, event handlers — runs on the thread that called
//! [`run`], so the hot path (frame in, dispatch, reply out) never pays for cross-thread
//! wake-ups or work stealing, and module state needs no more than an uncontended `Mutex`.
//! The price is explicit: a handler that blocks (a long computation, blocking I/O) blocks the
//! whole module, including its answers to the core's pings, and the core's heartbeat then
//! declares it hung and restarts it. Long work belongs in `tokio::task::spawn_blocking`.

use crate::context::{Context, lock};
use crate::error::Error;
use crate::module::Module;
use crate::stats::CallStats;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use logos_session::{
    Acceptor, ByteStream, Config, DEFAULT_MAX_HANDSHAKES, Fault, Handler, Session, Ticket,
};
use logos_wire::{Attrs, Call, ErrorCode, Hello, PROTOCOL_MAJOR, PROTOCOL_MINOR, Value, Welcome};
use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// Descriptor of the control connection unless `LOGOS_CONTROL_FD` says otherwise.
pub const DEFAULT_CONTROL_FD: RawFd = 3;
/// Descriptor of the listening socket unless `LOGOS_LISTEN_FD` says otherwise.
pub const DEFAULT_LISTEN_FD: RawFd = 4;
/// Exit code when the module cannot start (bad descriptors, refused handshake, failing init).
pub const EXIT_START_FAILED: i32 = 1;
/// Exit code when the module's code panicked outside a call (see `abi.rs`).
pub const EXIT_PANIC: i32 = 101;

/// How long in-flight calls may finish after SIGTERM (the core sends it only once the
/// shutdown grace has passed, so this is short).
const SIGTERM_GRACE: Duration = Duration::from_secs(1);
/// How long replies already queued may take to reach their sockets before exit.
const FLUSH_LIMIT: Duration = Duration::from_millis(500);
/// Live grants kept per caller; the oldest goes first beyond this.
const MAX_GRANTS_PER_CALLER: usize = 64;
/// Largest token accepted in `$grant` (tokens are 32 bytes; this only bounds memory).
const MAX_TOKEN_LEN: usize = 1024;

/// Set when a `run` took the inherited descriptors: they can be owned once per process.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Runs module `T` as this process per the module process contract and returns the exit code:
/// 0 after a shutdown, a closed control connection or SIGTERM; [`EXIT_START_FAILED`] when it
/// cannot start (the reason is logged to stderr).
///
/// Builds its own runtime, so call it from a plain thread, not from async code. The C ABI
/// entry (`export_module!`) and [`main`] call this.
pub fn run<T: Module>() -> i32 {
    run_named::<T>(T::NAME)
}

/// Like [`run`], but serves module `T` under `name` instead of [`Module::NAME`]: for one
/// executable that backs several module directories (generated test and benchmark modules),
/// typically with the name the core passes in `LOGOS_MODULE`.
///
/// This asserts nothing the core has to believe: the core still requires the `hello` identity
/// to equal the module's metadata name and refuses the handshake otherwise, so a process can
/// only ever serve as the module the core started it as.
///
/// ```no_run
/// # #[derive(Default)] struct Bench;
/// # #[logos_sdk::module(name = "bench")] impl Bench {}
/// fn main() {
///     let name = std::env::var("LOGOS_MODULE").unwrap_or_else(|_| "bench".to_owned());
///     std::process::exit(logos_sdk::run_named::<Bench>(&name))
/// }
/// ```
pub fn run_named<T: Module>(name: &str) -> i32 {
    init_tracing();
    let inherited = match Inherited::take() {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(module = name, "{e}");
            return EXIT_START_FAILED;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(module = name, "{}", Error::Runtime(e));
            return EXIT_START_FAILED;
        }
    };
    let result = runtime.block_on(serve::<T>(name, inherited));
    // Tasks still parked (slow handlers past the grace) are dropped; blocking-pool work gets
    // a moment, then the process exits regardless.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(module = name, "{e}");
            EXIT_START_FAILED
        }
    }
}

/// Runs module `T` and exits the process with [`run`]'s code: the `main` of a module built
/// as a plain executable (`main` in its metadata names the binary).
///
/// ```no_run
/// # #[derive(Default)] struct Calc;
/// # #[logos_sdk::module(name = "calc")] impl Calc {}
/// fn main() {
///     logos_sdk::main::<Calc>()
/// }
/// ```
pub fn main<T: Module>() -> ! {
    std::process::exit(run::<T>())
}

/// `T`'s interface with its `name` entry set to the name actually served.
fn named_interface<T: Module>(name: &str) -> Value {
    let mut interface = T::interface();
    if let Value::Map(map) = &mut interface {
        map.insert("name".to_owned(), Value::from(name));
    }
    interface
}

/// Logs to stderr (the core keeps its tail), filtered by `LOGOS_LOG` (default `info`).
fn init_tracing() {
    use std::io::IsTerminal;
    let (filter, bad) = match tracing_subscriber::EnvFilter::try_from_env("LOGOS_LOG") {
        Ok(f) => (f, None),
        Err(e) => (
            tracing_subscriber::EnvFilter::new("info"),
            std::env::var("LOGOS_LOG").ok().map(|v| (v, e)),
        ),
    };
    // Under the core, stderr is a pipe the core reads line by line and stamps with its own
    // time; a line then starts with the level, which the core keeps. On a terminal, log in
    // full.
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(terminal);
    let installed = if terminal {
        builder.try_init().is_ok()
    } else {
        builder.without_time().try_init().is_ok()
    };
    if installed && let Some((value, e)) = bad {
        tracing::warn!("LOGOS_LOG={value:?} is not a valid filter ({e}); logging at info");
    }
}

/// What the process inherited from the core.
struct Inherited {
    control: OwnedFd,
    listen: OwnedFd,
    data_dir: PathBuf,
}

impl Inherited {
    fn take() -> Result<Inherited, Error> {
        if TAKEN.swap(true, Ordering::SeqCst) {
            return Err(Error::Descriptor {
                var: "LOGOS_CONTROL_FD",
                value: "(already taken)".to_owned(),
                reason: "the module runtime was started twice in one process".to_owned(),
            });
        }
        let control = take_fd("LOGOS_CONTROL_FD", DEFAULT_CONTROL_FD)?;
        let listen = take_fd("LOGOS_LISTEN_FD", DEFAULT_LISTEN_FD)?;
        let data_dir = match std::env::var_os("LOGOS_DATA_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        };
        Ok(Inherited {
            control,
            listen,
            data_dir,
        })
    }
}

/// Takes ownership of the socket descriptor named by `var` (or `default`), after checking
/// it is an open socket, and marks it close-on-exec so the module's own children never get it.
fn take_fd(var: &'static str, default: RawFd) -> Result<OwnedFd, Error> {
    let value = std::env::var(var).unwrap_or_else(|_| default.to_string());
    let fail = |reason: String| Error::Descriptor {
        var,
        value: value.clone(),
        reason,
    };
    let fd: RawFd = value
        .trim()
        .parse()
        .ok()
        .filter(|fd| *fd >= 0)
        .ok_or_else(|| fail("not a descriptor number".to_owned()))?;
    // SAFETY: `st` is a properly sized, writable `stat` buffer; `fstat` accepts any integer and
    // reports EBADF for one that is not an open descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `&mut st` is valid for the duration of the call.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(fail(format!("descriptor {fd} is not open: {e}")));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(fail(format!("descriptor {fd} is not a socket")));
    }
    // SAFETY: `fd` is open (checked above); F_SETFD only changes its close-on-exec flag.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(fail(format!(
            "cannot set close-on-exec on descriptor {fd}: {e}"
        )));
    }
    // SAFETY: the contract hands this descriptor to the module for its whole life and nothing
    // else in the process uses it; `TAKEN` guarantees it is wrapped at most once, so the
    // `OwnedFd` is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Why the module stops.
#[derive(Debug, Clone)]
enum Stop {
    /// The core sent `shutdown`.
    Shutdown(Duration),
    /// The control connection closed: the core is gone.
    ControlClosed(String),
    /// SIGTERM.
    Terminated,
}

impl Stop {
    fn grace(&self) -> Duration {
        match self {
            Stop::Shutdown(g) => *g,
            Stop::ControlClosed(_) => Duration::ZERO,
            Stop::Terminated => SIGTERM_GRACE,
        }
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Shutdown(g) => write!(f, "shutdown requested (grace {} ms)", g.as_millis()),
            Stop::ControlClosed(r) => write!(f, "control connection closed ({r})"),
            Stop::Terminated => f.write_str("SIGTERM"),
        }
    }
}

/// One token granted by the core.
struct Grant {
    token: Vec<u8>,
    pid: Option<u32>,
}

/// Everything the connections of one running module share.
struct Served<T> {
    /// The name served under ([`Module::NAME`] unless [`run_named`] says otherwise).
    name: Arc<str>,
    ctx: Context,
    module: Arc<T>,
    /// caller → live grants.
    grants: Mutex<HashMap<String, Vec<Grant>>>,
    /// Accepted peer connections by session id.
    peers: Mutex<HashMap<u64, Session>>,
    control: Mutex<Option<Session>>,
    /// Calls running now.
    in_flight: watch::Sender<usize>,
    /// Calls served so far, errors, latency (`$stats`).
    stats: CallStats,
    stop: watch::Sender<Option<Stop>>,
}

/// Counts one running call until dropped. Only the drop to zero notifies (`drain` waits for
/// nothing else), so a call costs no wake-up bookkeeping here.
struct Busy<'a>(&'a watch::Sender<usize>);

impl<'a> Busy<'a> {
    fn enter(counter: &'a watch::Sender<usize>) -> Busy<'a> {
        counter.send_if_modified(|n| {
            *n += 1;
            false
        });
        Busy(counter)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.send_if_modified(|n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

async fn serve<T: Module>(name: &str, inherited: Inherited) -> Result<i32, Error> {
    let Inherited {
        control,
        listen,
        data_dir,
    } = inherited;
    // Watch SIGTERM before anything else, so a signal right after `ready` is never fatal.
    let sigterm = watch_sigterm();
    let control = adopt_stream(control)?;
    let listener = adopt_listener(listen)?;
    let ctx = Context::new(name, data_dir);
    let module = Arc::new(T::init(&ctx)?);
    let state = Arc::new(Served {
        name: Arc::from(name),
        ctx,
        module,
        grants: Mutex::new(HashMap::new()),
        peers: Mutex::new(HashMap::new()),
        control: Mutex::new(None),
        in_flight: watch::Sender::new(0),
        stats: CallStats::default(),
        stop: watch::Sender::new(None),
    });

    let hello = Hello {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        identity: name.to_owned(),
        token: Bytes::new(),
        attrs: Attrs::from([
            ("interface".to_owned(), named_interface::<T>(name)),
            ("version".to_owned(), Value::from(T::VERSION)),
        ]),
    };
    let handler = Arc::new(Conn {
        state: Arc::clone(&state),
        kind: Kind::Control,
    });
    let (session, welcome) = logos_session::connect(control, hello, handler, Config::default())
        .await
        .map_err(|source| Error::Handshake {
            module: name.to_owned(),
            source,
        })?;
    *lock(&state.control) = Some(session.clone());
    tracing::info!(
        module = name,
        version = T::VERSION,
        core = %welcome.identity,
        "ready"
    );
    state.ctx.start(session);

    let accepting = tokio::spawn(accept_loop(Arc::clone(&state), listener));
    let reason = wait_for_stop(&state, sigterm).await;
    tracing::info!(module = name, "stopping: {reason}");
    state.stop.send_if_modified(|s| {
        if s.is_none() {
            *s = Some(reason.clone());
            true
        } else {
            false
        }
    });
    // Stop accepting before draining, so no new peer arrives while calls finish.
    let _ = accepting.await;
    drain(&state, reason.grace()).await;
    Ok(0)
}

fn adopt_stream(fd: OwnedFd) -> Result<UnixStream, Error> {
    let std_stream = std::os::unix::net::UnixStream::from(fd);
    std_stream
        .set_nonblocking(true)
        .and_then(|()| UnixStream::from_std(std_stream))
        .map_err(|e| Error::Descriptor {
            var: "LOGOS_CONTROL_FD",
            value: DEFAULT_CONTROL_FD.to_string(),
            reason: format!("cannot use it as a stream socket ({e})"),
        })
}

/// Takes over the listening socket the core bound. Calling `listen` again re-stamps the
/// socket's credentials with this process: a peer's `SO_PEERCRED` then reports this module's
/// pid (not the core's, which called `listen` first), which is what peers check before they
/// send a token (docs/architecture.md, "Module process contract").
fn adopt_listener(fd: OwnedFd) -> Result<UnixListener, Error> {
    use std::os::fd::AsRawFd;
    // SAFETY: listen(2) on an fd we own has no memory-safety preconditions.
    if unsafe { libc::listen(fd.as_raw_fd(), libc::SOMAXCONN) } != 0 {
        return Err(Error::Descriptor {
            var: "LOGOS_LISTEN_FD",
            value: DEFAULT_LISTEN_FD.to_string(),
            reason: format!("cannot listen on it ({})", std::io::Error::last_os_error()),
        });
    }
    let std_listener = std::os::unix::net::UnixListener::from(fd);
    std_listener
        .set_nonblocking(true)
        .and_then(|()| UnixListener::from_std(std_listener))
        .map_err(|e| Error::Descriptor {
            var: "LOGOS_LISTEN_FD",
            value: DEFAULT_LISTEN_FD.to_string(),
            reason: format!("cannot use it as a listening socket ({e})"),
        })
}

fn watch_sigterm() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            None
        }
    }
}

async fn wait_for_stop<T: Module>(
    state: &Arc<Served<T>>,
    mut term: Option<tokio::signal::unix::Signal>,
) -> Stop {
    let mut stop = state.stop.subscribe();
    let sigterm = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        r = stop.wait_for(Option::is_some) => match r {
            Ok(v) => v.clone().unwrap_or(Stop::Terminated),
            // The sender lives in `state`, which we hold.
            Err(_) => Stop::Terminated,
        },
        () = sigterm => Stop::Terminated,
    }
}

/// Lets in-flight calls finish within `grace`, then gives queued replies a moment to leave.
async fn drain<T: Module>(state: &Served<T>, grace: Duration) {
    let mut running = state.in_flight.subscribe();
    if tokio::time::timeout(grace, running.wait_for(|n| *n == 0))
        .await
        .is_err()
    {
        let n = *state.in_flight.borrow();
        tracing::warn!(
            "{n} call(s) still running after the {} ms grace; exiting anyway",
            grace.as_millis()
        );
    }
    let sessions: Vec<Session> = lock(&state.peers)
        .values()
        .cloned()
        .chain(lock(&state.control).clone())
        .collect();
    let deadline = tokio::time::Instant::now() + FLUSH_LIMIT;
    while sessions
        .iter()
        .any(|s| !s.is_closed() && s.queued_bytes() > 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn accept_loop<T: Module>(state: Arc<Served<T>>, listener: UnixListener) {
    // At most DEFAULT_MAX_HANDSHAKES peers wait for their hello at once, a newer one pushing
    // out the one that waited longest (so idle connections cannot lock real callers out), and
    // accept errors (EMFILE) back off instead of spinning: see logos-session's `Acceptor`.
    let mut acceptor = Acceptor::new(listener, DEFAULT_MAX_HANDSHAKES);
    let mut stop = state.stop.subscribe();
    loop {
        let (stream, ticket) = tokio::select! {
            a = acceptor.accept() => a,
            _ = stop.wait_for(Option::is_some) => return,
        };
        let state = Arc::clone(&state);
        tokio::spawn(admit(state, stream, ticket));
    }
}

/// Runs the handshake of one peer connection and admits it only with a live grant.
async fn admit<T: Module>(state: Arc<Served<T>>, stream: UnixStream, ticket: Ticket) {
    let pending = match logos_session::read_hello_admitted(stream, Config::default(), ticket).await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!("peer handshake failed: {e}");
            return;
        }
    };
    let caller = pending.hello.identity.clone();
    let token = pending.hello.token.clone();
    let pid = pending.pid;
    if let Err(why) = state.check_grant(&caller, &token, pid) {
        tracing::warn!(%caller, ?pid, "refused a peer connection: {why}");
        pending
            .refuse(Fault::new(ErrorCode::Unauthorized, why))
            .await;
        return;
    }
    let welcome = Welcome {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        identity: state.name.to_string(),
        attrs: Attrs::new(),
    };
    let handler = Arc::new(Conn {
        state: Arc::clone(&state),
        kind: Kind::Peer,
    });
    match pending.accept(caller.clone(), welcome, handler).await {
        Ok(session) => {
            lock(&state.peers).insert(session.id(), session.clone());
            // A `$revoke` may have run between the check and the insert: check again, so a
            // revoked caller never keeps a connection.
            if state.check_grant(&caller, &token, pid).is_err() {
                session.close(Fault::new(
                    ErrorCode::Unauthorized,
                    format!("the token of \"{caller}\" was revoked"),
                ));
            }
            if session.is_closed() {
                lock(&state.peers).remove(&session.id());
            }
            tracing::debug!(%caller, "peer connected");
        }
        Err(e) => tracing::debug!(%caller, "welcome could not be sent: {e}"),
    }
}

impl<T: Module> Served<T> {
    fn check_grant(&self, caller: &str, token: &[u8], pid: Option<u32>) -> Result<(), String> {
        check_grant(&self.name, &lock(&self.grants), caller, token, pid)
    }

    /// Serves one incoming call.
    async fn dispatch(&self, kind: Kind, call: Call) -> Result<Value, Fault> {
        let Call {
            target,
            method,
            args,
            ..
        } = call;
        let name = &*self.name;
        if target != name {
            return Err(Fault::new(
                ErrorCode::UnknownModule,
                format!("this is module \"{name}\"; it does not serve calls to \"{target}\""),
            ));
        }
        if method.starts_with('$') {
            return match kind {
                Kind::Control => self.reserved(&method, args),
                Kind::Peer => Err(Fault::new(
                    ErrorCode::Unauthorized,
                    format!("{name}.{method} is reserved for the core's control connection"),
                )),
            };
        }
        let _busy = Busy::enter(&self.in_flight);
        // Dropped unfinished (cancel, deadline) it counts the call as an error.
        let timer = self.stats.start();
        let run = self.module.call(&self.ctx, &method, args);
        let result = match AssertUnwindSafe(run).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => {
                let msg = panic_message(panic.as_ref());
                tracing::error!(%method, "method panicked: {msg}");
                Err(Fault::new(
                    ErrorCode::MethodFailed,
                    format!("{name}.{method} panicked: {msg}"),
                ))
            }
        };
        timer.finish(result.is_ok());
        result
    }

    /// `$grant(caller, token, pid)`, `$revoke(module)` and `$stats()`, control connection only.
    fn reserved(&self, method: &str, args: Vec<Value>) -> Result<Value, Fault> {
        match method {
            "$grant" => {
                let (caller, token, pid) = grant_args(args)?;
                tracing::debug!(%caller, ?pid, "token granted");
                add_grant(&mut lock(&self.grants), caller, Grant { token, pid });
                Ok(Value::Null)
            }
            "$revoke" => {
                let module = match args.as_slice() {
                    [Value::Text(m)] => m.clone(),
                    _ => {
                        return Err(Fault::new(
                            ErrorCode::InvalidArgs,
                            "$revoke takes (module: text)",
                        ));
                    }
                };
                lock(&self.grants).remove(&module);
                let doomed: Vec<Session> = lock(&self.peers)
                    .values()
                    .filter(|s| s.peer().identity == module)
                    .cloned()
                    .collect();
                tracing::debug!(%module, connections = doomed.len(), "tokens revoked");
                for s in doomed {
                    s.close(Fault::new(
                        ErrorCode::Unauthorized,
                        format!("the tokens of \"{module}\" were revoked"),
                    ));
                }
                Ok(Value::Null)
            }
            "$stats" => {
                if !args.is_empty() {
                    return Err(Fault::new(
                        ErrorCode::InvalidArgs,
                        "$stats takes no arguments",
                    ));
                }
                Ok(self.stats.snapshot(*self.in_flight.borrow()))
            }
            other => Err(Fault::new(
                ErrorCode::UnknownMethod,
                format!("unknown reserved method \"{other}\""),
            )),
        }
    }

    fn request_stop(&self, reason: Stop) {
        self.stop.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

/// Records a grant for `caller`. One live grant per (caller, pid): the core mints a new token
/// for a process only to replace the old one, so the old one stops working here at once
/// rather than lingering among the [`MAX_GRANTS_PER_CALLER`] kept (connections already made
/// with it stay). Beyond that bound the oldest grant goes first.
fn add_grant(grants: &mut HashMap<String, Vec<Grant>>, caller: String, grant: Grant) {
    let list = grants.entry(caller).or_default();
    list.retain(|g| g.pid != grant.pid);
    if list.len() >= MAX_GRANTS_PER_CALLER {
        list.remove(0);
    }
    list.push(grant);
}

/// Checks `token` against every live grant of module `name` for `caller` (constant-time per
/// comparison, and every grant compared), then the grant's pid. The error says why, for the
/// refusal sent to the peer.
fn check_grant(
    name: &str,
    grants: &HashMap<String, Vec<Grant>>,
    caller: &str,
    token: &[u8],
    pid: Option<u32>,
) -> Result<(), String> {
    if caller.is_empty() || token.is_empty() {
        return Err(format!(
            "module \"{name}\" accepts only connections that name their caller and present a token from capability_module.requestModule"
        ));
    }
    let Some(list) = grants.get(caller) else {
        return Err(format!(
            "no token was granted to \"{caller}\" for module \"{name}\"; ask capability_module.requestModule(\"{name}\") first"
        ));
    };
    let mut matched: Option<&Grant> = None;
    for g in list {
        let equal: bool = g.token.as_slice().ct_eq(token).into();
        if equal && matched.is_none() {
            matched = Some(g);
        }
    }
    match matched {
        None => Err(format!(
            "the token presented by \"{caller}\" is not a live token granted to it for module \"{name}\""
        )),
        Some(Grant {
            pid: Some(want), ..
        }) if pid != Some(*want) => Err(format!(
            "the token of \"{caller}\" is bound to pid {want}, but the connection comes from {}",
            pid.map_or_else(|| "an unknown pid".to_owned(), |p| format!("pid {p}"))
        )),
        Some(_) => Ok(()),
    }
}

/// Reads `(caller: text, token: bytes, pid: int | null)`; `pid` may be left out.
fn grant_args(args: Vec<Value>) -> Result<(String, Vec<u8>, Option<u32>), Fault> {
    let bad = |why: &str| {
        Fault::new(
            ErrorCode::InvalidArgs,
            format!("$grant takes (caller: text, token: bytes, pid: int | null): {why}"),
        )
    };
    let mut it = args.into_iter();
    let caller = match it.next() {
        Some(Value::Text(c)) if !c.is_empty() => c,
        _ => return Err(bad("caller must be non-empty text")),
    };
    let token = match it.next() {
        Some(Value::Bytes(t)) if !t.is_empty() && t.len() <= MAX_TOKEN_LEN => t,
        _ => return Err(bad("token must be 1 to 1024 bytes")),
    };
    let pid = match it.next() {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().and_then(|p| u32::try_from(p).ok()) {
            Some(p) => Some(p),
            None => return Err(bad("pid must be a process id or null")),
        },
    };
    if it.next().is_some() {
        return Err(bad("too many arguments"));
    }
    Ok((caller, token, pid))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-text panic payload)".to_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The inherited connection to the core.
    Control,
    /// A connection another module made with a token.
    Peer,
}

/// The handler of one connection (control or peer) of a serving module.
struct Conn<T> {
    state: Arc<Served<T>>,
    kind: Kind,
}

impl<T: Module> Handler for Conn<T> {
    fn call(&self, _session: Session, call: Call) -> BoxFuture<'static, Result<Value, Fault>> {
        let state = Arc::clone(&self.state);
        let kind = self.kind;
        Box::pin(async move { state.dispatch(kind, call).await })
    }

    fn subscribe(&self, session: &Session, source: &str, event: &str) {
        if source != &*self.state.name {
            tracing::debug!(%source, %event, "ignoring a subscription to another module's events");
            return;
        }
        self.state.ctx.add_subscriber(session, event);
    }

    fn unsubscribe(&self, session: &Session, source: &str, event: &str) {
        if source == &*self.state.name {
            self.state.ctx.remove_subscriber(session, event);
        }
    }

    fn event(&self, session: &Session, source: String, event: String, data: Vec<Value>) {
        match self.kind {
            Kind::Control => self.state.ctx.dispatch_event(&source, &event, data),
            Kind::Peer => tracing::debug!(
                peer = %session.peer().identity,
                %source,
                %event,
                "ignoring an event sent on an incoming connection"
            ),
        }
    }

    fn lagged(&self, _session: &Session, source: String, dropped: u64) {
        tracing::warn!(%source, dropped, "events were dropped: this module read them too slowly");
    }

    fn stream(&self, session: &Session, protocol: String, stream: ByteStream) {
        match self.state.ctx.stream_handler(&protocol) {
            Some(handler) => {
                let peer = session.peer().identity.clone();
                let fut = handler(stream);
                tokio::spawn(async move {
                    if AssertUnwindSafe(fut).catch_unwind().await.is_err() {
                        tracing::error!(%peer, %protocol, "stream handler panicked");
                    }
                });
            }
            None => {
                let msg = format!(
                    "module \"{}\" has no handler for stream protocol \"{protocol}\"",
                    self.state.name
                );
                stream.reset(ErrorCode::UnknownMethod, &msg);
            }
        }
    }

    fn health(&self) -> Option<String> {
        self.state.ctx.unhealthy()
    }

    fn shutdown(&self, session: &Session, grace: Duration) {
        match self.kind {
            Kind::Control => self.state.request_stop(Stop::Shutdown(grace)),
            Kind::Peer => tracing::warn!(
                peer = %session.peer().identity,
                "ignoring shutdown sent by a peer module"
            ),
        }
    }

    fn closed(&self, session: &Session, reason: &str) {
        self.state.ctx.forget_session(session.id());
        match self.kind {
            Kind::Control => self
                .state
                .request_stop(Stop::ControlClosed(reason.to_owned())),
            Kind::Peer => {
                lock(&self.state.peers).remove(&session.id());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_grant_for_the_same_caller_process_replaces_the_old_one() {
        let mut grants = HashMap::new();
        let grant = |t: u8, pid| Grant {
            token: vec![t; 32],
            pid,
        };
        add_grant(&mut grants, "probe".into(), grant(1, Some(10)));
        assert!(check_grant("relay", &grants, "probe", &[1; 32], Some(10)).is_ok());
        add_grant(&mut grants, "probe".into(), grant(2, Some(10)));
        let refused = check_grant("relay", &grants, "probe", &[1; 32], Some(10));
        assert!(
            refused
                .as_ref()
                .is_err_and(|why| why.contains("not a live token")),
            "{refused:?}"
        );
        assert!(check_grant("relay", &grants, "probe", &[2; 32], Some(10)).is_ok());
        // Another process of the caller (before the core revokes the old one) keeps its own.
        add_grant(&mut grants, "probe".into(), grant(3, Some(11)));
        assert!(check_grant("relay", &grants, "probe", &[2; 32], Some(10)).is_ok());
        assert!(check_grant("relay", &grants, "probe", &[3; 32], Some(11)).is_ok());
        // Distinct pids are still bounded.
        for pid in 100..100 + 2 * MAX_GRANTS_PER_CALLER as u32 {
            add_grant(&mut grants, "probe".into(), grant(4, Some(pid)));
        }
        assert_eq!(grants["probe"].len(), MAX_GRANTS_PER_CALLER);
    }

    #[test]
    fn grant_args_are_checked() {
        let ok = grant_args(vec![
            Value::from("greeter"),
            Value::Bytes(vec![1; 32]),
            Value::from(42u32),
        ])
        .unwrap();
        assert_eq!(ok, ("greeter".to_owned(), vec![1; 32], Some(42)));
        let no_pid =
            grant_args(vec![Value::from("a"), Value::Bytes(vec![1]), Value::Null]).unwrap();
        assert_eq!(no_pid.2, None);
        let omitted = grant_args(vec![Value::from("a"), Value::Bytes(vec![1])]).unwrap();
        assert_eq!(omitted.2, None);
        for bad in [
            vec![],
            vec![Value::from(""), Value::Bytes(vec![1])],
            vec![Value::from("a"), Value::from("text token")],
            vec![Value::from("a"), Value::Bytes(vec![])],
            vec![Value::from("a"), Value::Bytes(vec![1]), Value::from(-1)],
            vec![
                Value::from("a"),
                Value::Bytes(vec![1]),
                Value::Null,
                Value::Null,
            ],
        ] {
            let f = grant_args(bad).unwrap_err();
            assert_eq!(f.code, ErrorCode::InvalidArgs);
        }
    }

    #[test]
    fn grants_are_checked_per_caller_token_and_pid() {
        let grants = HashMap::from([(
            "greeter".to_owned(),
            vec![
                Grant {
                    token: vec![1; 32],
                    pid: None,
                },
                Grant {
                    token: vec![2; 32],
                    pid: Some(77),
                },
            ],
        )]);
        let check =
            |caller: &str, token: &[u8], pid| check_grant("calc", &grants, caller, token, pid);
        assert_eq!(check("greeter", &[1; 32], Some(5)), Ok(()));
        assert_eq!(check("greeter", &[1; 32], None), Ok(()));
        assert_eq!(check("greeter", &[2; 32], Some(77)), Ok(()));
        let e = check("greeter", &[2; 32], Some(78)).unwrap_err();
        assert!(e.contains("bound to pid 77") && e.contains("pid 78"), "{e}");
        let e = check("greeter", &[3; 32], None).unwrap_err();
        assert!(e.contains("not a live token"), "{e}");
        // The token of one caller is worthless to another.
        let e = check("chat", &[1; 32], None).unwrap_err();
        assert!(e.contains("no token was granted to \"chat\""), "{e}");
        let e = check("greeter", &[1; 31], None).unwrap_err();
        assert!(e.contains("not a live token"), "{e}");
        assert!(check("", &[1; 32], None).is_err());
        assert!(check("greeter", &[], None).is_err());
    }

    #[test]
    fn panic_messages_are_read() {
        let p: Box<dyn std::any::Any + Send> = Box::new("boom");
        assert_eq!(panic_message(p.as_ref()), "boom");
        let p: Box<dyn std::any::Any + Send> = Box::new(String::from("bang"));
        assert_eq!(panic_message(p.as_ref()), "bang");
    }
}
