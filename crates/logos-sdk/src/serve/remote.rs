//! The module-side runtime of a remote module: `LOGOS_REMOTE=<credential file>` (set by the
//! operator for an SDK executable, or by `logos_host --remote` for a library) makes the same
//! module serve a core on another machine instead of the core that started it.
//!
//! Owns the control link's life: dial the core (`logos_remote::dial`: TCP, TLS 1.3 with the
//! pinned certificate, the credential) and speak the very protocol of a local module's fd 3
//! over it, the session running on the TLS connection itself (`logos_session::Transport`) (same `hello` plus the module's `metadata.json`,
//! same `Conn` handler); ping the core so a silent link is found within three heartbeats;
//! reconnect with capped exponential backoff after a lost link (the module's state lives on:
//! only the connection is new); answer `$dial` by opening a link for a peer connection the
//! core relays to it. Exits on `shutdown`, on SIGTERM, and when the core refuses the
//! credential for good (revoked, expired, another module's, a wrong pin). Never listens on a
//! socket and never trusts anything but the pinned core.

use super::conn::{Conn, Kind};
use super::in_flight::InFlight;
use super::{Served, Stop, drain, named_interface, wait_for_stop, watch_sigterm};
use crate::context::{Context, lock};
use crate::error::Error;
use crate::instance::Instance;
use crate::module::Module;
use crate::stats::CallStats;
use bytes::Bytes;
use logos_remote::{Backoff, Credential, DialError, Purpose};
use logos_session::{Fault, Session, SessionError};
use logos_wire::{Attrs, ErrorCode, Hello, PROTOCOL_MAJOR, PROTOCOL_MINOR, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The environment variable naming the credential file.
pub const LOGOS_REMOTE: &str = "LOGOS_REMOTE";
/// The environment variable naming the module's `metadata.json` (`logos_host` sets it).
pub const LOGOS_METADATA: &str = "LOGOS_METADATA";
/// Deadline of opening one link.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat interval when the core did not say one.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Heartbeats in a row the core may leave unanswered before the link is dropped.
const MISSED_HEARTBEATS: u32 = 3;
/// A link that lasted this long resets the reconnect backoff.
const STABLE: Duration = Duration::from_secs(30);

/// The credential file named by `LOGOS_REMOTE`, if set.
pub(super) fn credential_path() -> Option<PathBuf> {
    std::env::var_os(LOGOS_REMOTE)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The module's `metadata.json` as a value: `LOGOS_METADATA`, else `metadata.json` beside the
/// program as invoked. `Ok(None)` when there is none (the module then declares no dependencies
/// and no permissions).
fn metadata(name: &str) -> Result<Option<Value>, Error> {
    let path = match std::env::var_os(LOGOS_METADATA).filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => match std::env::args_os()
            .next()
            .map(PathBuf::from)
            .and_then(|p| p.parent().map(|d| d.join("metadata.json")))
        {
            Some(p) if p.is_file() => p,
            _ => return Ok(None),
        },
    };
    let bad = |reason: String| Error::Remote {
        module: name.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| bad(format!("{} is not JSON: {e}", path.display())))?;
    Ok(Some(Value::from_json(json)))
}

/// Runs module `T` as a remote module with the credential at `path`; the exit code.
pub(super) fn run<T: Module>(name: &str, path: &Path) -> i32 {
    let prepared = prepare::<T>(name, path);
    let (credential, metadata) = match prepared {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(module = name, "{e}");
            return super::EXIT_START_FAILED;
        }
    };
    let data_dir = match std::env::var_os("LOGOS_DATA_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(module = name, "{}", Error::Runtime(e));
            return super::EXIT_START_FAILED;
        }
    };
    let result = runtime.block_on(serve::<T>(name, credential, metadata, data_dir));
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(module = name, "{e}");
            super::EXIT_START_FAILED
        }
    }
}

fn prepare<T: Module>(name: &str, path: &Path) -> Result<(Arc<Credential>, Option<Value>), Error> {
    let credential = Credential::read(path).map_err(|e| Error::Remote {
        module: name.to_owned(),
        reason: e.to_string(),
    })?;
    if credential.module != name {
        return Err(Error::Remote {
            module: name.to_owned(),
            reason: format!(
                "{} is the credential of module {:?}; this module is {name:?}, and the core accepts a credential for its own module only",
                path.display(),
                credential.module
            ),
        });
    }
    let _ = T::VERSION;
    Ok((Arc::new(credential), metadata(name)?))
}

/// Why one connection ended, for the loop.
enum Ended {
    /// Stop the module with this reason.
    Stop(Stop),
    /// Connect again after a pause.
    Retry,
    /// The core refused for good.
    Fatal(String),
}

async fn serve<T: Module>(
    name: &str,
    credential: Arc<Credential>,
    metadata: Option<Value>,
    data_dir: PathBuf,
) -> Result<i32, Error> {
    let sigterm = watch_sigterm();
    let ctx = Context::new_remote(name, data_dir, Arc::clone(&credential));
    let module = Instance::new(T::init(&ctx)?);
    let state = Arc::new(Served {
        name: Arc::from(name),
        ctx,
        module,
        grants: Default::default(),
        peers: Mutex::new(HashMap::new()),
        control: Mutex::new(None),
        in_flight: InFlight::default(),
        stats: CallStats::default(),
        stop: watch::Sender::new(None),
        link: Some(Arc::clone(&credential)),
    });
    let mut attrs = Attrs::from([
        ("interface".to_owned(), named_interface::<T>(name)),
        ("version".to_owned(), Value::from(T::VERSION)),
    ]);
    if let Some(m) = metadata {
        attrs.insert("metadata".to_owned(), m);
    }
    let stopping = async {
        let mut term = sigterm;
        wait_for_stop(&state, term.take()).await
    };
    tokio::pin!(stopping);
    let mut backoff = Backoff::default();
    let reason = loop {
        let ended = tokio::select! {
            stop = &mut stopping => Ended::Stop(stop),
            ended = connection(&state, &credential, &attrs, &mut backoff) => ended,
        };
        match ended {
            Ended::Stop(stop) => break stop,
            Ended::Fatal(why) => {
                tracing::error!(module = name, "{why}");
                return Ok(super::EXIT_START_FAILED);
            }
            Ended::Retry => {
                let pause = backoff.next_delay();
                tracing::info!(module = name, "connecting to the core again in {pause:?}");
                tokio::select! {
                    stop = &mut stopping => break stop,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    };
    tracing::info!(module = name, "stopping: {reason}");
    state.request_stop(reason.clone());
    state.ctx.run_shutdown_hooks(reason.grace()).await;
    drain(&state, reason.grace()).await;
    let control = lock(&state.control).take();
    if let Some(s) = control {
        s.close(Fault::new(ErrorCode::Unavailable, "module stopped"));
        s.flush().await;
    }
    Ok(0)
}

/// One control link, from dialing to its end.
async fn connection<T: Module>(
    state: &Arc<Served<T>>,
    credential: &Credential,
    attrs: &Attrs,
    backoff: &mut Backoff,
) -> Ended {
    let name = state.name.to_string();
    let dialed = match logos_remote::dial(credential, &Purpose::Control, DIAL_TIMEOUT).await {
        Ok(d) => d,
        Err(e) if e.is_permanent() => return Ended::Fatal(permanent(&e)),
        Err(e) => {
            tracing::warn!(module = %name, "{e}");
            return Ended::Retry;
        }
    };
    let heartbeat = dialed.heartbeat().unwrap_or(DEFAULT_HEARTBEAT);
    let addr = dialed.addr.clone();
    // The session speaks TLS on the TCP socket itself (logos-session's `Transport`): the same
    // code as over an inherited fd 3, without a copy through a socketpair.
    let (tcp, conn) = dialed.stream.into_inner();
    let transport = logos_session::Transport::tls(tcp, conn);
    let hello = Hello {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        identity: name.clone(),
        token: Bytes::new(),
        attrs: attrs.clone(),
    };
    let handler = Arc::new(Conn {
        state: Arc::clone(state),
        kind: Kind::Control,
        access: None,
    });
    let session = match logos_session::connect_over(
        transport,
        dialed.leftover,
        hello,
        handler,
        state.ctx.inner.session_config(),
    )
    .await
    {
        Ok((s, welcome)) => {
            state.ctx.inner.start_spans(&welcome.attrs);
            s
        }
        Err(SessionError::Refused(f)) if f.code != ErrorCode::Unavailable => {
            return Ended::Fatal(format!("the core at {addr} refused this module: {f}"));
        }
        Err(e) => {
            tracing::warn!(module = %name, "handshake with the core at {addr} failed: {e}");
            return Ended::Retry;
        }
    };
    *lock(&state.control) = Some(session.clone());
    tracing::info!(module = %name, core = %addr, "ready (remote)");
    state.ctx.start(session.clone());
    let since = Instant::now();
    let reason = tokio::select! {
        r = session.closed() => r,
        r = ping(&session, heartbeat) => r,
    };
    session.close(Fault::new(ErrorCode::Unavailable, reason.clone()));
    if since.elapsed() >= STABLE {
        backoff.reset();
    }
    if let Some(stop) = state.stop.borrow().clone() {
        return Ended::Stop(stop);
    }
    tracing::warn!(module = %name, core = %addr, "lost the link to the core: {reason}");
    Ended::Retry
}

/// Pings the core every `every`; resolves when [`MISSED_HEARTBEATS`] in a row went
/// unanswered within one interval each.
async fn ping(session: &Session, every: Duration) -> String {
    let mut missed = 0;
    loop {
        let started = tokio::time::Instant::now();
        match session.ping(every).await {
            Ok(_) => {
                missed = 0;
                tokio::time::sleep_until(started + every).await;
            }
            Err(f) if f.code == ErrorCode::Timeout => {
                missed += 1;
                if missed >= MISSED_HEARTBEATS {
                    return format!(
                        "the core answered none of {missed} heartbeats in {:?}",
                        every * missed
                    );
                }
            }
            Err(f) => return f.message,
        }
    }
}

/// The message for a refusal that retrying cannot fix.
fn permanent(e: &DialError) -> String {
    match e {
        DialError::Tls { pin: true, .. } => format!("{e}"),
        _ => format!("{e}; not retrying (ask the core's operator for a valid credential)"),
    }
}

/// `$dial(ticket)`: opens an `accept` link and serves the peer connection the core relays
/// over it as if it had arrived on a listening socket.
pub(super) fn dial<T: Module>(state: &Arc<Served<T>>, args: Vec<Value>) -> Result<Value, Fault> {
    let Some(credential) = state.link.clone() else {
        return Err(Fault::new(
            ErrorCode::UnknownMethod,
            "$dial is for remote modules only",
        ));
    };
    let ticket = match args.as_slice() {
        [Value::Bytes(t)] if t.len() == 16 => t.to_vec(),
        _ => {
            return Err(Fault::new(
                ErrorCode::InvalidArgs,
                "$dial takes (ticket: 16 bytes)",
            ));
        }
    };
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let purpose = Purpose::Accept { ticket };
        let dialed = match logos_remote::dial(&credential, &purpose, DIAL_TIMEOUT).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("could not open the connection the core asked for: {e}");
                return;
            }
        };
        let (tcp, conn) = dialed.stream.into_inner();
        let transport = logos_session::Transport::tls(tcp, conn);
        match logos_session::read_hello_over(
            transport,
            dialed.leftover,
            state.ctx.inner.session_config(),
        )
        .await
        {
            Ok(pending) => super::grant::admit_pending(state, pending).await,
            Err(e) => tracing::debug!("relayed peer handshake failed: {e}"),
        }
    });
    Ok(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_refusals_say_not_retrying() {
        let e = DialError::Refused {
            addr: "x:1".to_owned(),
            code: ErrorCode::Unauthorized,
            message: "revoked".to_owned(),
        };
        assert!(e.is_permanent());
        assert!(permanent(&e).contains("not retrying"));
    }
}
