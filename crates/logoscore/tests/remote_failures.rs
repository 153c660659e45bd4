//! Issue 11: a remote module that goes silent or whose connection drops mid-call. Real
//! processes: SIGSTOP of the remote `logos_host`, and a TCP proxy on 127.0.0.1 (in this test)
//! between the remote and the core whose connections the test cuts. The caller gets
//! `unavailable` within the heartbeat budget (the core runs a 200 ms heartbeat) and never
//! hangs, whether it calls through the core or from a local module over a relayed peer
//! connection; once the remote resumes or reconnects, it is back and callable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod remote_support;
mod support;

use remote_support::{CONNECT, core, grant, listen, remote, spawn_remote, wait_state};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use support::{COMMAND, Proc, World, wait_for};

/// Calls `module` is serving now, from `logoscore stats`.
fn in_flight(w: &World, module: &str) -> u64 {
    let stats = w.cli_json(&["stats"]);
    stats
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == module))
        .and_then(|m| m["inFlight"].as_u64())
        .unwrap_or(0)
}

/// Starts `logoscore call ARGS…` in the background.
fn call_in_background(w: &World, args: &[&str]) -> Proc {
    let mut cmd = w.command();
    cmd.arg("call").args(args);
    Proc::spawn(&mut cmd)
}

/// Waits for a background call to fail with `unavailable` (exit 3) and returns its stderr.
#[track_caller]
fn fails_unavailable(mut call: Proc) -> String {
    let status = call.wait(COMMAND).expect("the call returned");
    let err = call.stderr_text();
    assert_eq!(status.code(), Some(3), "{err}");
    err
}

#[test]
fn issue_11_a_stopped_remote_fails_calls_in_flight_within_the_heartbeat_and_comes_back() {
    let w = World::new();
    w.stage_all(&["relay"]);
    let d = core(&w, "", &["relay"]);
    let probe = remote(&w, "probe", &["--allow", "relay", "--allow", "chat"]);

    // Through the core (the operator's call rides the remote's control link).
    let call = call_in_background(&w, &["probe", "sleep", "60000"]);
    wait_for("the call in flight", CONNECT, || {
        in_flight(&w, "probe") >= 1
    });
    probe.stop();
    let err = fails_unavailable(call);
    assert!(err.contains("heartbeat"), "{err}");
    wait_state(&w, "probe", "disconnected");
    assert!(
        remote_support::log(&d).contains("answered none of 3 heartbeats"),
        "{}",
        remote_support::log(&d)
    );
    probe.resume();
    probe.wait_connected(2);
    wait_state(&w, "probe", "ready");

    // From a local module over a relayed peer connection: relay → probe.
    let call = call_in_background(&w, &["relay", "forward", "probe", "sleep", "[60000]"]);
    wait_for("the relayed call in flight", CONNECT, || {
        in_flight(&w, "probe") >= 1
    });
    probe.stop();
    let err = fails_unavailable(call);
    assert!(
        err.contains("unavailable") || err.contains("closed"),
        "{err}"
    );
    probe.resume();
    probe.wait_connected(3);
    wait_state(&w, "probe", "ready");
    assert_eq!(
        w.cli_json(&["call", "relay", "forward", "probe", "echo", "[7]"])["result"],
        7
    );
}

/// A TCP proxy on 127.0.0.1 whose live connections the test can cut, and whose upstream it
/// can move (a core restarted on another port).
struct Proxy {
    addr: String,
    live: Arc<Mutex<Vec<TcpStream>>>,
    upstream: Arc<Mutex<String>>,
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let keep = Arc::clone(&live);
        let upstream = Arc::new(Mutex::new(upstream));
        let target = Arc::clone(&upstream);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let to = target.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let Ok(server) = TcpStream::connect(&to) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                if let (Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone()) {
                    let mut live = keep.lock().unwrap_or_else(|p| p.into_inner());
                    live.push(c3);
                    live.push(s3);
                }
                std::thread::spawn(move || pipe(client, s2));
                std::thread::spawn(move || pipe(server, c2));
            }
        });
        Proxy {
            addr,
            live,
            upstream,
        }
    }

    fn set_upstream(&self, to: String) {
        *self.upstream.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }

    /// Drops every connection it carries (both ends, at once).
    fn cut(&self) {
        for s in self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

/// Grants probe and starts it remote, its credential naming `proxy` as the core's address.
fn behind(w: &World, proxy: &Proxy) -> remote_support::Remote {
    let credential = grant(w, "probe", &["--allow", "relay", "--allow", "chat"]);
    // The operator hands over a credential that names the proxy as the core's address.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&credential).expect("credential"))
            .expect("credential JSON");
    doc["core"] = serde_json::json!([proxy.addr]);
    std::fs::write(&credential, doc.to_string()).expect("rewrite the credential");
    spawn_remote("probe", &credential)
}

#[test]
fn issue_11_a_connection_cut_mid_call_fails_the_call_at_once_and_the_remote_reconnects() {
    let w = World::new();
    let d = core(&w, "", &[]);
    let proxy = Proxy::start(listen(&d));
    let probe = behind(&w, &proxy);
    probe.wait_connected(1);
    wait_state(&w, "probe", "ready");

    let call = call_in_background(&w, &["probe", "sleep", "60000"]);
    wait_for("the call in flight", CONNECT, || {
        in_flight(&w, "probe") >= 1
    });
    proxy.cut();
    let err = fails_unavailable(call);
    assert!(
        err.contains("unavailable") || err.contains("closed"),
        "{err}"
    );
    // The remote notices, backs off and connects again through the proxy.
    probe.wait_connected(2);
    wait_state(&w, "probe", "ready");
    assert_eq!(w.cli_json(&["call", "probe", "echo", "5"])["result"], 5);
    assert!(
        probe
            .proc
            .stderr_text()
            .contains("lost the link to the core"),
        "{}",
        probe.proc.stderr_text()
    );
}

#[test]
fn issue_11_a_remote_module_outlives_a_core_restart_and_joins_the_new_core() {
    let w = World::new();
    let mut d = core(&w, "", &[]);
    let proxy = Proxy::start(listen(&d));
    let probe = behind(&w, &proxy);
    probe.wait_connected(1);
    wait_state(&w, "probe", "ready");

    // The core stops: it closes the link without `shutdown`, so the module keeps running.
    w.cli(&["stop"]).ok();
    d.wait_exit(support::EXIT);
    probe
        .proc
        .wait_stderr("lost the link to the core", remote_support::CONNECT);
    assert!(
        support::alive(probe.proc.pid()),
        "the remote module exited with its core"
    );

    // The same core (its data dir: key and credentials) comes back on another port.
    let d2 = core(&w, "", &[]);
    proxy.set_upstream(listen(&d2));
    probe.wait_connected(2);
    wait_state(&w, "probe", "ready");
    assert_eq!(w.cli_json(&["call", "probe", "echo", "9"])["result"], 9);
}
