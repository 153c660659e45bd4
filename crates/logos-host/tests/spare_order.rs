//! `logos_host --spare` against orders sent by hand: it says `ready` first; a good order is applied in full before the
//! library's code runs (environment replaced, working directory, listening socket at fd 4,
//! limits, no_new_privs and the seccomp filter), a bad one ends the spare with exit 4 and a
//! line naming what is wrong, and a spare whose order socket closes leaves quietly (exit 0).
//!
//! The library is a tiny C-ABI cdylib compiled with `rustc` into the test's temp dir; its `run`
//! writes what it sees into a report file. The order socket is a real `SOCK_SEQPACKET` pair,
//! the spare's end placed at fd 4 as the core places it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Compiles a module library named `spared` whose `run` writes its report to `report`.
fn library(dir: &Path, report: &Path) -> PathBuf {
    let src = format!(
        r#"
use std::ffi::{{c_char, c_int}};
use std::os::fd::FromRawFd;
#[repr(C)]
pub struct Module {{ abi: u32, major: u32, name: *const c_char, version: *const c_char, run: unsafe extern "C" fn() -> c_int }}
unsafe impl Sync for Module {{}}
unsafe extern "C" fn run() -> c_int {{
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let field = |text: &str, key: &str| text.lines().find(|l| l.starts_with(key)).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).unwrap_or_default();
    // SAFETY: fd 4 is the listening socket the order placed there; owned from here on.
    let listener = unsafe {{ std::os::unix::net::UnixListener::from_raw_fd(4) }};
    let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{{k}}={{v}}")).collect();
    let report = format!(
        "env={{}}\ncwd={{}}\nlisten={{:?}}\n{{}}\n{{}}\n{{}}\n",
        vars.join(","),
        std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        listener.local_addr().ok().and_then(|a| a.as_pathname().map(|p| p.to_path_buf())),
        field(&status, "NoNewPrivs"),
        field(&status, "Seccomp:"),
        field(&limits, "Max open files"),
    );
    let _ = std::fs::write({report:?}, report);
    0
}}
static MODULE: Module = Module {{ abi: 1, major: 1, name: c"spared".as_ptr(), version: c"1.0.0".as_ptr(), run }};
#[unsafe(no_mangle)]
pub extern "C" fn logos_module_v1() -> *const Module {{ &MODULE }}
"#
    );
    support::cdylib(dir, "spared", &src)
}

/// A `SOCK_SEQPACKET` pair, close-on-exec.
fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair writes two fds into `fds`, which this function then owns.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Starts `logos_host --spare` with `order` at fd 4 and `LEFTOVER=1` in its environment.
fn spare(order: OwnedFd) -> Child {
    let fd = order.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logos_host"));
    cmd.arg("--spare")
        .env("LEFTOVER", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: dup2 and fcntl are async-signal-safe; `fd` stays open in the parent until
    // after spawn. Already at 4, it only loses close-on-exec (dup2 onto itself keeps it).
    unsafe {
        cmd.pre_exec(move || {
            let r = if fd == 4 {
                libc::fcntl(4, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 4)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop(order);
    child
}

/// Sends `text` with `fds` attached as one message.
fn send(sock: &OwnedFd, text: &[u8], fds: &[RawFd]) {
    let mut space = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: text.as_ptr().cast_mut().cast(),
        iov_len: text.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let bytes = std::mem::size_of_val(fds);
        msg.msg_control = space.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a size.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(bytes as u32) } as usize;
        // SAFETY: the control buffer holds one header and `bytes` of data (64 bytes of
        // room for at most two fds); CMSG_FIRSTHDR points into it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(bytes as u32) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        }
    }
    // SAFETY: `msg` points at `text` and `space`, alive for the call.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    assert_eq!(
        n,
        text.len() as isize,
        "sendmsg: {}",
        std::io::Error::last_os_error()
    );
}

/// Reads the spare's first message: it says it waits.
fn expect_ready(sock: &OwnedFd) {
    let mut buf = [0u8; 16];
    // SAFETY: recv writes at most 16 bytes into `buf`.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert_eq!(
        buf.get(..usize::try_from(n).unwrap_or(0)),
        Some(&b"ready"[..]),
        "the spare's first word"
    );
}

fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_good_order_is_applied_in_full_before_the_library_runs() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let lib = library(dir.path(), &report);
    let socket = dir.path().join("spared.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let cwd = dir.path().join("data");
    std::fs::create_dir(&cwd).unwrap();
    // SECCOMP_RET_ALLOW as the whole program: installed, it changes nothing but the status.
    let allow_all: u64 = (0x06u64 << 48) | 0x7fff_0000;
    let order = serde_json::json!({
        "module": lib, "name": "spared", "version": "1.0.0", "cwd": cwd,
        "env": [["GREETING", "hello"], ["PATH", "/usr/bin:/bin"]],
        "limits": {"open_files": 77},
        "ruleset": false,
        "seccomp": [allow_all],
    });
    let (core, theirs) = seqpacket_pair();
    let child = spare(theirs);
    expect_ready(&core);
    send(&core, order.to_string().as_bytes(), &[listener.as_raw_fd()]);
    let (code, err) = finish(child);
    assert_eq!(code, Some(0), "{err}");
    let report = std::fs::read_to_string(&report).expect("the library ran");
    assert!(
        report.contains("env=GREETING=hello,PATH=/usr/bin:/bin\n"),
        "the environment is the order's and nothing else:\n{report}"
    );
    assert!(
        report.contains(&format!("cwd={}\n", cwd.display())),
        "{report}"
    );
    assert!(
        report.contains(&format!("listen=Some({socket:?})")),
        "{report}"
    );
    assert!(report.contains("NoNewPrivs: 1"), "{report}");
    assert!(report.contains("Seccomp: 2"), "{report}");
    assert!(
        report.contains("Max open files 77 77"),
        "soft and hard limit: {report}"
    );
}

#[test]
fn a_bad_order_ends_the_spare_with_exit_4_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let lib = library(dir.path(), &report);
    let listener = std::os::unix::net::UnixListener::bind(dir.path().join("s.sock")).unwrap();
    let good = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut o = serde_json::json!({
            "module": lib, "name": "spared", "cwd": dir.path(), "env": [],
            "ruleset": false, "seccomp": [],
        });
        f(&mut o);
        o.to_string()
    };
    let cases: [(String, Vec<RawFd>, &str); 5] = [
        (
            "{ not json".into(),
            vec![listener.as_raw_fd()],
            "the order is not JSON",
        ),
        (good(&|_| {}), vec![], "carries no listening socket"),
        (
            good(&|o| o["ruleset"] = true.into()),
            vec![listener.as_raw_fd()],
            "descriptors do not match its \"ruleset\"",
        ),
        (
            good(&|o| o["env"] = serde_json::json!([["A=B", "x"]])),
            vec![listener.as_raw_fd()],
            "not a [name, value] pair",
        ),
        (
            good(&|o| o["cwd"] = "/nonexistent/dir".into()),
            vec![listener.as_raw_fd()],
            "entering /nonexistent/dir",
        ),
    ];
    for (text, fds, says) in cases {
        let (core, theirs) = seqpacket_pair();
        let child = spare(theirs);
        send(&core, text.as_bytes(), &fds);
        let (code, err) = finish(child);
        assert_eq!(code, Some(4), "{text}: {err}");
        assert!(
            err.contains("logos_host: spare host: ") && err.contains(says),
            "{text}: {err}"
        );
        assert!(
            !report.exists(),
            "the library ran after a bad order: {text}"
        );
    }
    // The order names a library that is not a module: refused as any library is (exit 3).
    let (core, theirs) = seqpacket_pair();
    let child = spare(theirs);
    let text = good(&|o| o["module"] = dir.path().join("missing.so").to_str().into());
    send(&core, text.as_bytes(), &[listener.as_raw_fd()]);
    let (code, err) = finish(child);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("cannot load module library"), "{err}");
}

#[test]
fn a_spare_let_go_without_an_order_exits_quietly() {
    // The core closes its end: before the spare said ready, with the `ready` unread (the
    // spare then reads a reset, not an end of file), and after reading it.
    for when in ["at once", "ready unread", "ready read"] {
        let (core, theirs) = seqpacket_pair();
        let child = spare(theirs);
        match when {
            "ready unread" => {
                let mut b = [0u8; 8];
                // SAFETY: recv with MSG_PEEK writes at most 8 bytes into `b` and leaves the
                // message queued.
                let n = unsafe {
                    libc::recv(
                        core.as_raw_fd(),
                        b.as_mut_ptr().cast(),
                        b.len(),
                        libc::MSG_PEEK,
                    )
                };
                assert_eq!(n, 5, "the spare's ready is queued");
            }
            "ready read" => expect_ready(&core),
            _ => {}
        }
        drop(core);
        let (code, err) = finish(child);
        assert_eq!(code, Some(0), "{when}: {err}");
        assert!(err.is_empty(), "{when}: {err}");
    }
}
