//! `hostile`: a test module acting as a compromised module (issue 18, docs/security.md
//! "Declared confinement"). On `attack(plan)` it tries, one after another, to read an
//! `/etc/shadow`-like file and another module's data, to write outside its data dir, to open a
//! TCP connection, to `ptrace` and read the memory of its neighbours, to signal the core and a
//! protected module, to call a protected module's write method, a method outside its grant and
//! `core.unloadPlugin`, and to spoof another module's identity with a token. Each attempt is
//! logged (stderr, which the core forwards to its log) and reported as `allowed: …` or
//! `denied: …`. Its metadata grants it only `calc.add` and `kv` (read-only when kv is
//! protected). Not an example to copy: it is the attacker of the hostile-module tests.

use logos_sdk::{Context, ErrorCode, Fault, Value, module};
use serde::Deserialize;
use std::collections::BTreeMap;

/// What to attack, from the test.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// A file like `/etc/shadow` the module must not read.
    pub secret: String,
    /// A file in another (protected) module's data dir.
    pub neighbour_file: String,
    /// A path outside its data dir it must not create.
    pub outside: String,
    /// A TCP port listening on 127.0.0.1.
    pub tcp_port: u16,
    /// The core's pid.
    pub core_pid: i32,
    /// A neighbour module's pid (not protected).
    pub neighbour_pid: i32,
    /// The protected module's pid.
    pub protected_pid: i32,
    /// The protected module's name, and a write method of it.
    pub protected: String,
    pub protected_write: String,
    /// A module it may call, and a method of it outside its grant.
    pub granted: String,
    pub outside_grant: String,
    /// Another module whose identity it tries to take.
    pub impersonate: String,
}

/// The hostile module.
#[derive(Debug, Default)]
pub struct Hostile;

#[module]
impl Hostile {
    /// Runs every attempt of `plan`; returns attempt → `"allowed: …"` or `"denied: …"`.
    pub async fn attack(&self, ctx: &Context, plan: Plan) -> BTreeMap<String, String> {
        let mut report = BTreeMap::new();
        let mut note = |what: &str, outcome: Result<String, String>| {
            let line = match outcome {
                Ok(how) => format!("allowed: {how}"),
                Err(why) => format!("denied: {why}"),
            };
            eprintln!("hostile attempt {what}: {line}");
            report.insert(what.to_owned(), line);
        };
        note("read_secret", read(&plan.secret));
        note("read_neighbour_data", read(&plan.neighbour_file));
        note(
            "write_outside",
            std::fs::write(&plan.outside, b"hostile")
                .map(|()| format!("wrote {}", plan.outside))
                .map_err(|e| e.to_string()),
        );
        note(
            "tcp_connect",
            std::net::TcpStream::connect(("127.0.0.1", plan.tcp_port))
                .map(|_| format!("connected to 127.0.0.1:{}", plan.tcp_port))
                .map_err(|e| e.to_string()),
        );
        note("ptrace_neighbour", ptrace_attach(plan.neighbour_pid));
        note("ptrace_protected", ptrace_attach(plan.protected_pid));
        note("read_protected_memory", read_memory(plan.protected_pid));
        note("signal_core", signal(plan.core_pid, libc::SIGTERM));
        note(
            "signal_protected",
            signal(plan.protected_pid, libc::SIGKILL),
        );
        note(
            "call_protected_write",
            call(
                ctx,
                &plan.protected,
                &plan.protected_write,
                vec![Value::from("hostile"), Value::from(666)],
            )
            .await,
        );
        note(
            "call_outside_grant",
            call(
                ctx,
                &plan.granted,
                &plan.outside_grant,
                vec![Value::from(6), Value::from(7)],
            )
            .await,
        );
        note(
            "unload_plugin",
            call(
                ctx,
                "core",
                "unloadPlugin",
                vec![Value::from(plan.granted.as_str())],
            )
            .await,
        );
        note(
            "token_in_another_name",
            call(
                ctx,
                "capability_module",
                "requestModule",
                vec![
                    Value::from(plan.granted.as_str()),
                    Value::from(plan.impersonate.as_str()),
                ],
            )
            .await,
        );
        note(
            "spoof_identity",
            spoof(ctx, &plan.granted, &plan.impersonate).await,
        );
        report
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read(path)
        .map(|b| format!("read {} bytes of {path}", b.len()))
        .map_err(|e| format!("{path}: {e}"))
}

fn errno() -> String {
    std::io::Error::last_os_error().to_string()
}

fn ptrace_attach(pid: i32) -> Result<String, String> {
    // SAFETY: PTRACE_ATTACH takes a pid and null pointers; it touches no memory of ours.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_ATTACH,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    if r == 0 {
        Ok(format!("attached to {pid}"))
    } else {
        Err(format!("ptrace(ATTACH, {pid}): {}", errno()))
    }
}

fn read_memory(pid: i32) -> Result<String, String> {
    let mut buf = [0u8; 8];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Any address: a refusal comes before the address is looked at.
    let remote = libc::iovec {
        iov_base: 0x1000 as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` points at `buf`, alive for the call; `remote` is in the other process.
    let r = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    match r {
        n if n >= 0 => Ok(format!("read {n} bytes of {pid}'s memory")),
        _ => {
            let e = std::io::Error::last_os_error();
            // EFAULT means the read was allowed and only the address was bad.
            if e.raw_os_error() == Some(libc::EFAULT) {
                Ok(format!("process_vm_readv({pid}) reached its memory: {e}"))
            } else {
                Err(format!("process_vm_readv({pid}): {e}"))
            }
        }
    }
}

fn signal(pid: i32, sig: i32) -> Result<String, String> {
    // SAFETY: kill takes two numbers.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(format!("sent signal {sig} to {pid}"))
    } else {
        Err(format!("kill({pid}, {sig}): {}", errno()))
    }
}

async fn call(
    ctx: &Context,
    target: &str,
    method: &str,
    args: Vec<Value>,
) -> Result<String, String> {
    match ctx.client(target).call_raw(method, args).await {
        Ok(v) => Ok(format!("{target}.{method} returned {v}")),
        Err(f) => Err(format!("{target}.{method}: {} {}", f.code, f.message)),
    }
}

/// Gets a real token for `target`, then presents it at `target`'s endpoint under the name
/// `other`.
async fn spoof(ctx: &Context, target: &str, other: &str) -> Result<String, String> {
    let grant = ctx
        .client("capability_module")
        .call_raw("requestModule", vec![Value::from(target)])
        .await
        .map_err(|f| format!("no token to start from: {}", f.message))?;
    let (Some(Value::Bytes(token)), Some(Value::Text(endpoint))) =
        (grant.get("token"), grant.get("endpoint"))
    else {
        return Err(format!("requestModule answered {grant}"));
    };
    let stream = tokio::net::UnixStream::connect(endpoint)
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let hello = logos_wire::Hello {
        major: logos_wire::PROTOCOL_MAJOR,
        minor: logos_wire::PROTOCOL_MINOR,
        identity: other.to_owned(),
        token: token.clone(),
        attrs: logos_wire::Attrs::new(),
    };
    let handler = std::sync::Arc::new(logos_session::Refuse);
    match logos_session::connect(stream, hello, handler, logos_session::Config::default()).await {
        Ok((session, _)) => {
            session.close(Fault::new(ErrorCode::Cancelled, "done"));
            Ok(format!("{target} admitted this module as {other}"))
        }
        Err(logos_session::SessionError::Refused(f)) => {
            Err(format!("{target} refused: {}", f.message))
        }
        Err(e) => Err(e.to_string()),
    }
}

logos_sdk::export_module!(Hostile);
