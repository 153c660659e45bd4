//! `logos_host --spare`: a host started before its module is known, which waits for one
//! order, confines itself by it, and only then loads the module library.
//!
//! The core keeps one such spare ready so that a library module's start skips creating a
//! process, `exec` and the loader (docs/architecture.md, "Spare hosts"). The core started the
//! spare with what does not depend on the module (parent-death signal, its own process group
//! and cgroup, fd 3 = the future control connection, no capabilities, every other descriptor
//! closed); the order brings the rest, and this file applies it in the order the cold path's
//! child applies it before `exec` (`logos-core/src/sys/linux.rs`, `Prepared::in_child`):
//! the listening socket onto fd 4, the working directory, the whole environment, the
//! resource limits, the Landlock ruleset, the seccomp filter last. So every confinement is in
//! force before the library is opened, and with it before the module's first instruction,
//! its constructors included.
//!
//! Never runs module code before the order is applied in full: any failure ends the process
//! with [`EXIT_ORDER`] and a line naming the step. Never reads more than one order.
//!
//! Once it waits, the spare sends `ready` on fd 4. The order is one `SOCK_SEQPACKET` message
//! on fd 4: JSON (below), with the listening socket
//! and, when `"ruleset": true`, the Landlock ruleset attached as `SCM_RIGHTS`.
//!
//! ```json
//! {"module": "/m/libcalc.so", "name": "calc", "version": "1.2.0", "cwd": "/data/calc",
//!  "env": [["LOGOS_MODULE", "calc"], ...], "limits": {"open_files": 256},
//!  "ruleset": true, "seccomp": [...]}
//! ```
//!
//! `seccomp` is the filter program, one number per instruction: `code << 48 | jt << 40 |
//! jf << 32 | k`, as `struct sock_filter` holds them.

use serde_json::Value;
use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Exit code when the order cannot be read or applied (the module never ran).
pub const EXIT_ORDER: i32 = 4;

/// Where the order arrives (and where the listening socket goes once it has).
const ORDER_FD: RawFd = 4;

/// The largest order read; the core never sends a larger one (its seccomp program and
/// environment are a few KiB).
const MAX_ORDER: usize = 256 * 1024;

/// What to run, once confined.
pub struct Order {
    pub module: PathBuf,
    pub name: String,
    pub version: Option<String>,
    cwd: PathBuf,
    env: Vec<(String, String)>,
    limits: Vec<(Limit, u64)>,
    ruleset: bool,
    seccomp: Vec<libc::sock_filter>,
}

/// A resource limit an order may set.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Limit {
    AddressSpace,
    OpenFiles,
    Processes,
}

impl Limit {
    fn resource(self) -> libc::__rlimit_resource_t {
        match self {
            Limit::AddressSpace => libc::RLIMIT_AS,
            Limit::OpenFiles => libc::RLIMIT_NOFILE,
            Limit::Processes => libc::RLIMIT_NPROC,
        }
    }
}

/// Before the wait: nothing of another process of this uid may read or write this one's
/// memory through `/proc` while it holds no confinement (`exec` resets the flag, so the
/// order sets it back, as a cold start would have it).
pub fn prepare() {
    // SAFETY: PR_SET_DUMPABLE takes a number and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

/// What the spare sends on fd 4 once it waits for its order: the core keeps only a spare
/// that said it (one still starting could yet fail, and fail its module's start with it).
const READY: &[u8] = b"ready";

/// Tells the core this spare waits for its order. `Ok(false)`: the core has let it go.
///
/// # Errors
/// The send failed otherwise.
pub fn say_ready() -> Result<bool, String> {
    // SAFETY: send reads READY, a static buffer, for the call.
    let n = unsafe {
        libc::send(
            ORDER_FD,
            READY.as_ptr().cast::<c_void>(),
            READY.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n >= 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EPIPE | libc::ECONNRESET) => Ok(false),
        _ => Err(format!("saying ready on fd {ORDER_FD}: {e}")),
    }
}

/// Waits for the order on fd 4 and applies it. `Ok(None)`: the core closed the order
/// socket without sending one (it stopped, or dropped this spare): nothing to do.
///
/// # Errors
/// A line naming what was wrong with the order, or which step of applying it failed.
pub fn receive_and_apply() -> Result<Option<Order>, String> {
    let Some((text, fds)) = receive(ORDER_FD)? else {
        return Ok(None);
    };
    let order = parse(&text)?;
    apply(&order, fds)?;
    Ok(Some(order))
}

/// One message: its bytes and the descriptors that came with it.
type Message = (Vec<u8>, Vec<OwnedFd>);

/// Reads one message with its descriptors (close-on-exec); `None` at end of file.
fn receive(fd: RawFd) -> Result<Option<Message>, String> {
    // The order's size first (it waits here for the order), so the buffer is as large as the
    // order and no larger: a 256 KiB buffer freed would raise glibc's mmap threshold for the
    // module's whole life.
    let size = loop {
        // SAFETY: with MSG_PEEK | MSG_TRUNC and no buffer, recv writes nothing and returns
        // the length of the next message.
        let n = unsafe {
            libc::recv(
                fd,
                std::ptr::null_mut(),
                0,
                libc::MSG_PEEK | libc::MSG_TRUNC,
            )
        };
        if let Ok(n) = usize::try_from(n) {
            break n;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            // The core closed its end with our `ready` unread: it let this spare go, as at
            // end of file.
            Some(libc::ECONNRESET) => return Ok(None),
            _ => return Err(format!("reading the order on fd {fd}: {e}")),
        }
    };
    if size > MAX_ORDER {
        return Err(format!(
            "the order is larger than {MAX_ORDER} bytes ({size})"
        ));
    }
    // One byte more than the order, so an empty message (end of file) still has a buffer.
    let mut buf = vec![0u8; size + 1];
    // Room for two descriptors, aligned as `cmsghdr` wants.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast::<c_void>(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed `msghdr` is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast::<c_void>();
    msg.msg_controllen = std::mem::size_of_val(&control);
    let n = loop {
        // SAFETY: `msg` points at `buf` and `control`, both alive and writable for the call.
        let n = unsafe { libc::recvmsg(fd, &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("reading the order on fd {fd}: {e}"));
        }
    };
    let fds = received_fds(&msg);
    if n == 0 {
        return Ok(None);
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(format!("the order is larger than {MAX_ORDER} bytes"));
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err("the order carries more than two descriptors".to_owned());
    }
    buf.truncate(usize::try_from(n).unwrap_or(0));
    Ok(Some((buf, fds)))
}

/// The descriptors of `SCM_RIGHTS` messages, owned (so closed if unused).
fn received_fds(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: `msg` was filled by `recvmsg`: the CMSG_* macros walk its control buffer
    // within `msg_controllen`, and each SCM_RIGHTS payload is an array of received fds, which
    // this process now owns.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    fds
}

/// Parses the order's JSON; an error names the field.
fn parse(text: &[u8]) -> Result<Order, String> {
    let doc: Value =
        serde_json::from_slice(text).map_err(|e| format!("the order is not JSON: {e}"))?;
    let text_of = |key: &str| -> Result<String, String> {
        doc.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("the order's \"{key}\" is missing or not a string"))
    };
    let env = doc
        .get("env")
        .and_then(Value::as_array)
        .ok_or("the order's \"env\" is missing or not an array")?
        .iter()
        .map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([Value::String(k), Value::String(v)]) if !k.is_empty() && !k.contains('=') => {
                Ok((k.clone(), v.clone()))
            }
            _ => Err(format!(
                "the order's \"env\" holds {pair}, not a [name, value] pair of strings"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut limits = Vec::new();
    if let Some(l) = doc.get("limits") {
        let l = l
            .as_object()
            .ok_or("the order's \"limits\" is not an object")?;
        for (key, value) in l {
            let limit = match key.as_str() {
                "address_space" => Limit::AddressSpace,
                "open_files" => Limit::OpenFiles,
                "processes" => Limit::Processes,
                other => return Err(format!("the order's \"limits\" names {other:?}")),
            };
            let v = value
                .as_u64()
                .ok_or_else(|| format!("the order's limit {key:?} is not a number"))?;
            limits.push((limit, v));
        }
    }
    let seccomp = doc
        .get("seccomp")
        .and_then(Value::as_array)
        .ok_or("the order's \"seccomp\" is missing or not an array")?
        .iter()
        .map(|i| {
            let i = i.as_u64().ok_or_else(|| {
                format!("the order's \"seccomp\" holds {i}, not an instruction number")
            })?;
            Ok(libc::sock_filter {
                code: (i >> 48) as u16,
                jt: (i >> 40) as u8,
                jf: (i >> 32) as u8,
                k: i as u32,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Order {
        module: text_of("module")?.into(),
        name: text_of("name")?,
        version: doc
            .get("version")
            .and_then(Value::as_str)
            .map(str::to_owned),
        cwd: text_of("cwd")?.into(),
        env,
        limits,
        ruleset: doc
            .get("ruleset")
            .and_then(Value::as_bool)
            .ok_or("the order's \"ruleset\" is missing or not true/false")?,
        seccomp,
    })
}

/// Applies `order`, with `fds` = [listening socket, Landlock ruleset if `order.ruleset`].
fn apply(order: &Order, fds: Vec<OwnedFd>) -> Result<(), String> {
    let mut fds = fds.into_iter();
    let (Some(listen), ruleset) = (fds.next(), fds.next()) else {
        return Err("the order carries no listening socket".to_owned());
    };
    if fds.next().is_some() || ruleset.is_some() != order.ruleset {
        return Err("the order's descriptors do not match its \"ruleset\"".to_owned());
    }
    // SAFETY: dup2 onto fd 4 replaces the order socket, read already; the new fd 4 is not
    // close-on-exec, as the module process contract has it.
    if unsafe { libc::dup2(listen.as_raw_fd(), ORDER_FD) } < 0 {
        return Err(step("placing the listening socket at fd 4"));
    }
    drop(listen);
    std::env::set_current_dir(&order.cwd)
        .map_err(|e| format!("entering {}: {e}", order.cwd.display()))?;
    let old: Vec<_> = std::env::vars_os().map(|(k, _)| k).collect();
    // SAFETY: this process has one thread and has loaded no module yet: nothing reads the
    // environment concurrently.
    unsafe {
        for k in old {
            std::env::remove_var(k);
        }
        for (k, v) in &order.env {
            std::env::set_var(k, v);
        }
    }
    for &(limit, value) in &order.limits {
        set_limit(limit, value)?;
    }
    // SAFETY: PR_SET_DUMPABLE takes a number; set back as `exec` would have it (the SDK
    // clears it again for a protected module).
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    if order.ruleset || !order.seccomp.is_empty() {
        // SAFETY: PR_SET_NO_NEW_PRIVS takes numbers; Landlock and seccomp need it.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(step("setting no_new_privs"));
        }
    }
    if let Some(ruleset) = ruleset {
        // SAFETY: landlock_restrict_self takes an fd and flags; `ruleset` is open.
        let r =
            unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) };
        if r != 0 {
            return Err(step("enforcing the Landlock ruleset"));
        }
    }
    if !order.seccomp.is_empty() {
        let len = libc::c_ushort::try_from(order.seccomp.len())
            .map_err(|_| "the order's seccomp program is too long".to_owned())?;
        let prog = libc::sock_fprog {
            len,
            filter: order.seccomp.as_ptr().cast_mut(),
        };
        // SAFETY: seccomp(SET_MODE_FILTER) reads `prog` and the `len` instructions it
        // points to, alive for the call; it writes nothing of ours.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_LOG,
                std::ptr::from_ref(&prog),
            )
        };
        if r != 0 {
            return Err(step("installing the seccomp filter"));
        }
    }
    Ok(())
}

/// Sets `limit` as both soft and hard limit, clamped to the current hard limit (as the
/// cold path does: raising it needs privileges, and the hard limit restricts more).
fn set_limit(limit: Limit, value: u64) -> Result<(), String> {
    let mut now = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` on this stack frame.
    if unsafe { libc::getrlimit(limit.resource(), &raw mut now) } != 0 {
        return Err(step(&format!("reading the limit {limit:?}")));
    }
    let v = value.min(now.rlim_max);
    let new = libc::rlimit {
        rlim_cur: v,
        rlim_max: v,
    };
    // SAFETY: setrlimit reads one `rlimit` on this stack frame.
    if unsafe { libc::setrlimit(limit.resource(), &raw const new) } != 0 {
        return Err(step(&format!("setting the limit {limit:?} to {v}")));
    }
    Ok(())
}

/// `"<what>: <errno text>"`, for the step that just failed.
fn step(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::{Limit, parse};

    #[test]
    fn an_order_parses_and_bad_ones_name_their_field() {
        let order = parse(
            br#"{"module": "/m/lib.so", "name": "calc", "version": "1.2.0", "cwd": "/d",
                "env": [["A", "1"]], "limits": {"open_files": 64}, "ruleset": false,
                "seccomp": [1970324836974592]}"#,
        )
        .expect("a good order");
        assert_eq!(order.name, "calc");
        assert_eq!(order.env, vec![("A".to_owned(), "1".to_owned())]);
        assert_eq!(order.limits, vec![(Limit::OpenFiles, 64)]);
        let i = order.seccomp[0];
        assert_eq!((i.code, i.jt, i.jf, i.k), (7, 0, 0, 0));

        let bad = |text: &str, says: &str| {
            let Err(e) = parse(text.as_bytes()) else {
                panic!("{text} must be refused")
            };
            assert!(e.contains(says), "{e:?} should name {says:?}");
        };
        bad("{", "not JSON");
        let base = r#""module": "/m", "name": "n", "cwd": "/", "ruleset": false, "seccomp": []"#;
        bad(&format!(r#"{{{base}}}"#), "\"env\"");
        bad(
            &format!(r#"{{{base}, "env": [["A=B", "1"]]}}"#),
            "[name, value]",
        );
        bad(
            &format!(r#"{{{base}, "env": [], "limits": {{"cpu": 1}}}}"#),
            "\"cpu\"",
        );
        bad(
            &format!(r#"{{{base}, "env": [], "limits": {{"open_files": -1}}}}"#),
            "\"open_files\" is not a number",
        );
        bad(
            r#"{"module": "/m", "cwd": "/", "ruleset": false, "seccomp": [], "env": []}"#,
            "\"name\"",
        );
        bad(
            r#"{"module": "/m", "name": "n", "cwd": "/", "seccomp": ["x"], "env": [], "ruleset": true}"#,
            "instruction number",
        );
    }
}
