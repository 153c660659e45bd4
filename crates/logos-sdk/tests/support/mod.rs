//! A stand-in for the core, for testing the module side of the module process contract.
//!
//! Owns what the real core does for a module, reduced to the contract: spawn
//! `logos_host --module lib<name>.so --name <name>` with the control socketpair on fd 3 and a
//! bound listener on fd 4, accept the module's `hello`, serve `capability_module.requestModule`
//! (mint a token, `$grant` it to the target with the caller's pid, return the endpoint),
//! publish `core.moduleUp`, and collect events the module sends to the core. Every child is
//! killed and reaped on drop, and everything lives in one temp dir. No policy: every module
//! may call every other.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use logos_sdk::{ErrorCode, Fault, Value};
use logos_session::{Config, Handler, Session};
use logos_wire::{Attrs, Call, PROTOCOL_MAJOR, PROTOCOL_MINOR, Welcome};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// Builds the host and the modules once per test binary; returns the directory holding them.
///
/// Builds the whole workspace, as the README's `cargo build --workspace` does, rather than
/// only the packages used here: a build of a subset unifies dependency features differently,
/// so it would rebuild the modules and overwrite their unhashed `lib<name>.rlib` in the middle
/// of `cargo test --workspace`, whose later doc tests of those modules then fail to find the
/// `logos_sdk` they were built against. After the README's build this one is a no-op.
pub fn artifacts() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--quiet", "--workspace"])
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build of the workspace failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("debug")
    })
}

/// One module process the fake core started.
pub struct Running {
    pub session: Session,
    pub child: Child,
    pub pid: u32,
    /// The attrs of the module's `hello` (interface, version).
    pub attrs: Attrs,
}

/// An event a module sent on its control connection.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreEvent {
    pub source: String,
    pub event: String,
    pub data: Vec<Value>,
}

struct State {
    dir: PathBuf,
    modules: Mutex<HashMap<String, Running>>,
    /// Control sessions subscribed to `core.moduleUp`.
    up_subscribers: Mutex<Vec<Session>>,
    tokens: AtomicU64,
    events: mpsc::UnboundedSender<CoreEvent>,
}

pub struct FakeCore {
    pub dir: tempfile::TempDir,
    state: Arc<State>,
    events: mpsc::UnboundedReceiver<CoreEvent>,
}

impl FakeCore {
    pub fn new() -> FakeCore {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("modules")).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            dir: dir.path().to_path_buf(),
            modules: Mutex::new(HashMap::new()),
            up_subscribers: Mutex::new(Vec::new()),
            tokens: AtomicU64::new(1),
            events: tx,
        });
        FakeCore {
            dir,
            state,
            events: rx,
        }
    }

    pub fn socket(&self, name: &str) -> PathBuf {
        self.state.dir.join("modules").join(format!("{name}.sock"))
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.state.dir.join("data").join(name)
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.state.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Starts module `name` under `logos_host` and waits until its handshake is done.
    pub async fn start(&self, name: &str) -> Session {
        let lib = artifacts().join(format!("lib{name}.so"));
        let host = artifacts().join("logos_host");
        let sock = self.socket(name);
        let _ = std::fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let (core_end, module_end) = std::os::unix::net::UnixStream::pair().unwrap();
        let data = self.data_dir(name);
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.dir.join(format!("{name}.log")))
            .unwrap();

        let mut cmd = Command::new(host);
        cmd.arg("--module")
            .arg(&lib)
            .arg("--name")
            .arg(name)
            .current_dir(&data)
            .env("LOGOS_MODULE", name)
            .env("LOGOS_CONTROL_FD", "3")
            .env("LOGOS_LISTEN_FD", "4")
            .env("LOGOS_DATA_DIR", &data)
            .env("LOGOS_RUNTIME_DIR", &self.state.dir)
            .env("LOGOS_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let (control_fd, listen_fd) = (module_end.as_raw_fd(), listener.as_raw_fd());
        // SAFETY: the closure runs between fork and exec and only calls async-signal-safe libc
        // functions on descriptors that stay open in the parent until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                // Move both out of the way first, so dup2 to 3/4 cannot clobber either.
                let c = libc::fcntl(control_fd, libc::F_DUPFD_CLOEXEC, 10);
                let l = libc::fcntl(listen_fd, libc::F_DUPFD_CLOEXEC, 10);
                if c < 0 || l < 0 || libc::dup2(c, 3) < 0 || libc::dup2(l, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(module_end);
        drop(listener);
        let pid = child.id();

        core_end.set_nonblocking(true).unwrap();
        let stream = tokio::net::UnixStream::from_std(core_end).unwrap();
        let pending = logos_session::read_hello(stream, Config::default())
            .await
            .unwrap_or_else(|e| panic!("{name} did not say hello: {e}\n{}", self.log(name)));
        assert_eq!(pending.hello.identity, name);
        assert!(pending.hello.token.is_empty());
        let attrs = pending.hello.attrs.clone();
        let handler = Arc::new(ControlHandler {
            state: Arc::clone(&self.state),
            module: name.to_owned(),
        });
        let welcome = Welcome {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            identity: "core".to_owned(),
            attrs: Attrs::from([("module".to_owned(), Value::from(name))]),
        };
        let session = pending
            .accept(name.to_owned(), welcome, handler)
            .await
            .unwrap();
        self.state.modules.lock().unwrap().insert(
            name.to_owned(),
            Running {
                session: session.clone(),
                child,
                pid,
                attrs,
            },
        );
        let subscribers: Vec<Session> = self.state.up_subscribers.lock().unwrap().clone();
        for s in subscribers {
            s.send_event("core", "moduleUp", vec![Value::from(name)]);
        }
        session
    }

    pub fn session(&self, name: &str) -> Session {
        self.state.modules.lock().unwrap()[name].session.clone()
    }

    pub fn pid(&self, name: &str) -> u32 {
        self.state.modules.lock().unwrap()[name].pid
    }

    pub fn attrs(&self, name: &str) -> Attrs {
        self.state.modules.lock().unwrap()[name].attrs.clone()
    }

    /// Calls `name.method(args)` over its control connection.
    pub async fn call(&self, name: &str, method: &str, args: Vec<Value>) -> Result<Value, Fault> {
        self.session(name)
            .call(name, method, args, Duration::from_secs(20))
            .await
    }

    /// Waits for module `name` to exit and returns its exit code.
    pub async fn wait_exit(&self, name: &str, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            {
                let mut modules = self.state.modules.lock().unwrap();
                let running = modules.get_mut(name).unwrap();
                if let Some(status) = running.child.try_wait().unwrap() {
                    return status.code();
                }
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills module `name` (SIGKILL), reaps it and revokes its tokens everywhere.
    pub async fn kill(&self, name: &str) {
        let running = self.state.modules.lock().unwrap().remove(name);
        if let Some(mut r) = running {
            let _ = r.child.kill();
            let _ = r.child.wait();
            r.session.closed().await;
        }
        let others: Vec<(String, Session)> = self
            .state
            .modules
            .lock()
            .unwrap()
            .iter()
            .map(|(n, r)| (n.clone(), r.session.clone()))
            .collect();
        for (n, s) in others {
            let _ = s
                .call(
                    &n,
                    "$revoke",
                    vec![Value::from(name)],
                    Duration::from_secs(5),
                )
                .await;
        }
    }

    /// Sends signal `sig` to module `name`.
    pub fn signal(&self, name: &str, sig: i32) {
        let pid = self.pid(name);
        // SAFETY: plain kill(2) on a child we spawned and have not reaped.
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }

    /// The next event a module sent on its control connection, within `limit`.
    pub async fn next_event(&mut self, limit: Duration) -> Option<CoreEvent> {
        tokio::time::timeout(limit, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Mints a token for `caller` at `target` the way the core does, with an optional pid.
    pub async fn grant(&self, caller: &str, target: &str, pid: Option<u32>) -> Vec<u8> {
        grant(&self.state, caller, target, pid).await.unwrap()
    }

    /// Connects to `target`'s endpoint as `identity` with `token`.
    pub async fn connect_peer(
        &self,
        target: &str,
        identity: &str,
        token: Vec<u8>,
    ) -> Result<Session, logos_session::SessionError> {
        let stream = tokio::net::UnixStream::connect(self.socket(target)).await?;
        let hello = logos_wire::Hello {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            identity: identity.to_owned(),
            token: token.into(),
            attrs: Attrs::new(),
        };
        logos_session::connect(
            stream,
            hello,
            Arc::new(logos_session::Refuse),
            Config::default(),
        )
        .await
        .map(|(s, _)| s)
    }
}

impl Drop for FakeCore {
    fn drop(&mut self) {
        let mut modules = self.state.modules.lock().unwrap_or_else(|p| p.into_inner());
        for (_, mut r) in modules.drain() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

async fn grant(
    state: &State,
    caller: &str,
    target: &str,
    pid: Option<u32>,
) -> Result<Vec<u8>, Fault> {
    let session = state
        .modules
        .lock()
        .unwrap()
        .get(target)
        .map(|r| r.session.clone())
        .filter(|s| !s.is_closed())
        .ok_or_else(|| Fault::new(ErrorCode::Unavailable, format!("module {target} is down")))?;
    let n = state.tokens.fetch_add(1, Ordering::Relaxed);
    let mut token = vec![0u8; 32];
    token[..8].copy_from_slice(&n.to_le_bytes());
    token[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    session
        .call(
            target,
            "$grant",
            vec![
                Value::from(caller),
                Value::Bytes(token.clone().into()),
                pid.map_or(Value::Null, Value::from),
            ],
            Duration::from_secs(5),
        )
        .await?;
    Ok(token)
}

/// The fake core's side of one module's control connection.
struct ControlHandler {
    state: Arc<State>,
    module: String,
}

impl Handler for ControlHandler {
    fn call(
        &self,
        _session: Session,
        call: Call,
    ) -> futures::future::BoxFuture<'static, Result<Value, Fault>> {
        let state = Arc::clone(&self.state);
        let caller = self.module.clone();
        Box::pin(async move {
            match (call.target.as_str(), call.method.as_str()) {
                ("capability_module", "requestModule") => {
                    let Some(target) = call.args.first().and_then(Value::as_str) else {
                        return Err(Fault::new(ErrorCode::InvalidArgs, "requestModule(module)"));
                    };
                    let (pid, target_pid) = {
                        let modules = state.modules.lock().unwrap();
                        (
                            modules.get(&caller).map(|r| r.pid),
                            modules.get(target).map(|r| r.pid),
                        )
                    };
                    let token = grant(&state, &caller, target, pid).await?;
                    Ok(Value::Map(BTreeMap::from([
                        ("module".to_owned(), Value::from(target)),
                        ("token".to_owned(), Value::Bytes(token.into())),
                        (
                            "endpoint".to_owned(),
                            Value::from(
                                state
                                    .dir
                                    .join("modules")
                                    .join(format!("{target}.sock"))
                                    .to_string_lossy()
                                    .into_owned(),
                            ),
                        ),
                        (
                            "pid".to_owned(),
                            target_pid.map_or(Value::Null, Value::from),
                        ),
                    ])))
                }
                (t, m) => Err(Fault::new(
                    ErrorCode::UnknownMethod,
                    format!("the fake core does not serve {t}.{m}"),
                )),
            }
        })
    }

    fn subscribe(&self, session: &Session, source: &str, event: &str) {
        if source == "core" && event == "moduleUp" {
            self.state
                .up_subscribers
                .lock()
                .unwrap()
                .push(session.clone());
        }
    }

    fn event(&self, _session: &Session, source: String, event: String, data: Vec<Value>) {
        let _ = self.state.events.send(CoreEvent {
            source,
            event,
            data,
        });
    }
}

/// Polls `check` every 20 ms until it returns `Some` or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
