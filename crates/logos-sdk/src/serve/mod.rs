//! The module-side runtime: the module half of docs/architecture.md "Module process contract".
//!
//! Owns the process: the async runtime, the handshake with the core, the serve loop and the
//! exit rules (shutdown, control connection gone, SIGTERM) with the drain of running calls.
//! Beside it: `inherit.rs` the descriptors, environment and logging the process starts with;
//! `beat.rs` the count in the heartbeat page;
//! `grant.rs` peer admission and the grants behind it (the security-critical part); `conn.rs`
//! the handler of each connection (calls, reserved methods, events, streams). Never decides
//! policy (who may call whom is the core's decision, expressed as grants) and never reads
//! identity from anything but a connection.
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

mod beat;
mod conn;
mod grant;
mod in_flight;
mod inherit;
mod remote;

pub use inherit::{DEFAULT_CONTROL_FD, DEFAULT_LISTEN_FD};
pub use remote::{LOGOS_METADATA, LOGOS_REMOTE};

use crate::context::{Context, lock};
use crate::error::Error;
use crate::instance::Instance;
use crate::module::Module;
use crate::stats::CallStats;
use bytes::Bytes;
use conn::{Conn, Kind};
use grant::Grants;
use in_flight::InFlight;
use inherit::Inherited;
use logos_session::Session;
use logos_wire::{Attrs, Hello, PROTOCOL_MAJOR, PROTOCOL_MINOR, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Exit code when the module cannot start (bad descriptors, refused handshake, failing init).
pub const EXIT_START_FAILED: i32 = 1;
/// Exit code when the module's code panicked outside a call (see `abi.rs`).
pub const EXIT_PANIC: i32 = 101;

/// How long in-flight calls may finish after SIGTERM (the core sends it only once the
/// shutdown grace has passed, so this is short).
const SIGTERM_GRACE: Duration = Duration::from_secs(1);
/// How long replies already queued may take to reach their sockets before exit.
const FLUSH_LIMIT: Duration = Duration::from_millis(500);
/// How long a stopping module waits for its peers to close their connections after it sent
/// them `shutdown` (a Rust SDK client closes as soon as its calls are answered; anyone else
/// costs this much at most).
const PEER_GOODBYE: Duration = Duration::from_millis(250);

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
    inherit::init_tracing();
    inherit::harden();
    if let Some(credential) = remote::credential_path() {
        return remote::run::<T>(name, &credential);
    }
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

/// Everything the connections of one running module share.
struct Served<T> {
    /// The name served under ([`Module::NAME`] unless [`run_named`] says otherwise).
    name: Arc<str>,
    ctx: Context,
    module: Instance<T>,
    /// Who may connect, with which token.
    grants: Grants,
    /// Accepted peer connections by session id.
    peers: Mutex<HashMap<u64, Session>>,
    control: Mutex<Option<Session>>,
    /// Calls running now.
    in_flight: InFlight,
    /// Calls served so far, errors, latency (`$stats`).
    stats: CallStats,
    stop: watch::Sender<Option<Stop>>,
    /// The credential of a remote module (`LOGOS_REMOTE`); `None` for a local one.
    link: Option<Arc<logos_remote::Credential>>,
}

async fn serve<T: Module>(name: &str, inherited: Inherited) -> Result<i32, Error> {
    let Inherited {
        control,
        listen,
        data_dir,
        beat,
    } = inherited;
    // Watch SIGTERM before anything else, so a signal right after `ready` is never fatal.
    let sigterm = watch_sigterm();
    let control = inherit::adopt_stream(control)?;
    let listener = inherit::adopt_listener(listen)?;
    let ctx = Context::new(name, data_dir);
    let module = Instance::new(T::init(&ctx)?);
    let state = Arc::new(Served {
        name: Arc::from(name),
        ctx,
        module,
        grants: Grants::default(),
        peers: Mutex::new(HashMap::new()),
        control: Mutex::new(None),
        in_flight: InFlight::default(),
        stats: CallStats::new(&named_interface::<T>(name)),
        stop: watch::Sender::new(None),
        link: None,
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
        access: None,
    });
    let config = state.ctx.inner.session_config();
    let (session, welcome) = logos_session::connect(control, hello, handler, config)
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
    state.ctx.inner.start_spans(&welcome.attrs);

    if let Some((beater, every)) = beat {
        let healthy = {
            let state = Arc::clone(&state);
            move || state.ctx.unhealthy().is_none()
        };
        tokio::spawn(beat::run(beater, every, healthy));
    }
    let accepting = tokio::spawn(grant::accept_loop(Arc::clone(&state), listener));
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
    // Stop accepting before draining, so no new peer arrives while calls finish; tell the
    // peers, so their next calls go elsewhere (a hot swap's new process) and not into a
    // closing socket.
    let _ = accepting.await;
    // The module's own shutdown hooks first (a p2p node tells its owners it is stopping),
    // while peers still take events; then the peers are told.
    state.ctx.run_shutdown_hooks(reason.grace()).await;
    for peer in lock(&state.peers).values() {
        peer.send_shutdown(reason.grace());
    }
    drain(&state, reason.grace()).await;
    Ok(0)
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
    // Calls a peer sent before it read our `shutdown` are still arriving: serve them until the
    // peer closes its side (bounded by `PEER_GOODBYE`).
    let goodbye = tokio::time::Instant::now() + PEER_GOODBYE.min(grace);
    while tokio::time::Instant::now() < goodbye
        && lock(&state.peers).values().any(|s| !s.is_closed())
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if tokio::time::timeout(grace, state.in_flight.idle())
        .await
        .is_err()
    {
        let n = state.in_flight.count();
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

impl<T: Module> Served<T> {
    /// Asks the serve loop to stop (the first reason wins).
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
