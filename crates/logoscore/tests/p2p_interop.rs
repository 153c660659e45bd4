//! Issue 12, interop: libp2p peers no one here wrote talk to a protocol owned by an external
//! module (`p2p-probe`) through a real core's `p2p`, on 127.0.0.1 only.
//!
//! - **js-libp2p 3.3** (TCP + Noise + Yamux, identify) from `tests/p2p_interop/js-libp2p`
//!   (`package.json` + lockfile, installed with `npm ci` into `target/npm/` by the test). js
//!   libp2p 3 wants Node ≥ 22 and the machine has Node 20, so the lockfile also pins the npm
//!   package `node` (22.x), which ships a Node 22 binary; the peer runs on it.
//!
//! - **py-libp2p 0.8.1** (PyPI `libp2p`, TCP + Noise + Yamux) from
//!   `tests/p2p_interop/py-libp2p/requirements.txt`, installed into a venv under
//!   `target/venv/` by the test (once; later runs reuse it).
//!
//! - **A remote module**: `p2p-echo` run by `logos_host --remote` against a core with `p2p`
//!   (issue 11): a js peer's stream to `/logos/echo/1.0.0` reaches it and is echoed, and
//!   killing that process resets the js stream.
//!
//! Each direction exchanges length-prefixed messages (unsigned varint, as js-libp2p's
//! `lpStream`) both ways, one of them 1 MiB: the peer dials our module, and our module dials
//! the peer's handler. Resets cross both ways: js `abort()` → our module's read fails `reset`
//! and it gets `streamReset [id, "remote"]`; our `reset` → the js handler fails with
//! `StreamResetError` (js only: py-libp2p 0.8 reports a reset as the end of the stream). A
//! set-up failure (npm, the registry, Node) fails the test with the
//! reason; nothing is skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod remote_support;
mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::time::Duration;
use support::*;

/// The protocol `p2p-probe` registers and the peers handle.
const PROTOCOL: &str = "/logos/interop/1.0.0";

/// How long a peer may take to start (the first run installs its packages first).
const PEER_START: Duration = Duration::from_secs(120);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/p2p_interop")
}

/// A world with `p2p` and `p2p-probe` on loopback, the daemon running, and its address.
fn node() -> (World, Daemon, String) {
    let w = World::new();
    w.stage_all(&["p2p", "p2p-probe"]);
    w.p2p_on_loopback();
    let d = w.daemon_config(P2P_NETWORK, &["--load", "p2p", "--load", "p2p-probe"]);
    let addr = call(&w, "p2p", &["listenAddrs"])[0]
        .as_str()
        .unwrap()
        .to_owned();
    (w, d, addr)
}

#[track_caller]
fn call(w: &World, module: &str, args: &[&str]) -> serde_json::Value {
    w.call_result(module, args)
}

/// A `p2p-probe` call that must fail with the stable error `name`.
#[track_caller]
fn probe_fails(w: &World, args: &[&str], name: &str) {
    w.call_fails("p2p-probe", args, name);
}

/// `text` as a `json:@file` argument (1 MiB does not fit on a command line).
fn text_arg(w: &World, name: &str, text: &str) -> String {
    let path = w.write(name, &serde_json::to_string(text).unwrap());
    format!("json:@{}", path.display())
}

/// `len` letters, starting at `seed`: big messages whose every byte is checked.
fn letters(len: usize, seed: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + ((i * 7 + seed) % 26) as u8))
        .collect()
}

/// A peer process of another libp2p implementation, driven by JSON lines.
struct Peer {
    proc: Proc,
    stdin: ChildStdin,
    id: String,
    addr: String,
}

impl Peer {
    fn spawn(mut cmd: Command, what: &str) -> Peer {
        cmd.stdin(Stdio::piped());
        let mut proc = Proc::spawn(&mut cmd);
        let stdin = proc.child.stdin.take().unwrap();
        let Some(line) = proc.next_line(PEER_START) else {
            let status = proc.wait(Duration::from_secs(1));
            panic!(
                "the {what} peer did not start within {PEER_START:?} (exit: {status:?})\n--- stderr\n{}",
                proc.stderr_text()
            );
        };
        let ready: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{what} peer said {line:?}: {e}"));
        Peer {
            id: ready["peer"].as_str().unwrap().to_owned(),
            addr: ready["addrs"][0].as_str().unwrap().to_owned(),
            proc,
            stdin,
        }
    }

    /// Sends one command and returns its answer.
    fn ask(&mut self, cmd: &serde_json::Value) -> serde_json::Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let Some(line) = self.proc.next_line(COMMAND) else {
            panic!(
                "the peer did not answer {} within {COMMAND:?}\n--- stderr\n{}",
                cmd["op"],
                self.proc.stderr_text()
            );
        };
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("peer said {line:?}: {e}"))
    }
}

/// The js-libp2p peer: installs the locked packages (once, cached under `target/npm/`) and
/// runs `peer.mjs` on the Node 22 they include.
fn js_peer(w: &World) -> Peer {
    let modules = logos_testkit::install::npm_install(&interop_dir().join("js-libp2p"));
    let node = modules.join("node/bin/node");
    assert!(
        node.is_file(),
        "the npm package `node` left no binary at {}",
        node.display()
    );
    // ES modules resolve packages next to the script, not through NODE_PATH: run a copy of
    // the script beside a link to the installed packages.
    let dir = w.dir.path().join("js");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        interop_dir().join("js-libp2p/peer.mjs"),
        dir.join("peer.mjs"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&modules, dir.join("node_modules")).unwrap();
    let mut cmd = Command::new(node);
    cmd.current_dir(&dir).arg("peer.mjs").arg(PROTOCOL);
    Peer::spawn(cmd, "js-libp2p")
}

/// The py-libp2p peer: a venv with the pinned `libp2p` (once, cached under `target/venv/`)
/// running `peer.py`.
fn py_peer() -> Peer {
    let dir = interop_dir().join("py-libp2p");
    let venv = logos_testkit::install::python_venv(&dir.join("requirements.txt"));
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.arg(dir.join("peer.py")).arg(PROTOCOL);
    Peer::spawn(cmd, "py-libp2p")
}

/// Data both ways, both directions: the peer dials our module, our module dials the peer.
fn exchange_both_ways(w: &World, our_addr: &str, peer: &mut Peer) {
    let reg = call(w, "p2p-probe", &["register", &format!("[\"{PROTOCOL}\"]")]).to_string();
    let (big_in, big_out) = (letters(1 << 20, 0), letters(1 << 20, 5));

    // The peer dials us: two messages in (one of 1 MiB), two out, each side half-closes.
    let big_out_arg = text_arg(w, "big_out.json", &big_out);
    let send = serde_json::json!({
        "op": "exchange",
        "addr": our_addr,
        "send": ["hello from the peer", big_in],
    });
    let answer = std::thread::scope(|scope| {
        let asked = scope.spawn(|| peer.ask(&send));
        let s = call(w, "p2p-probe", &["accept", &reg, "30000"]);
        assert_eq!(s["protocol"], PROTOCOL);
        let s = s["streamId"].to_string();
        let max = (2 << 20).to_string();
        assert_eq!(
            call(w, "p2p-probe", &["readLp", &s, &max, "30000"]),
            "hello from the peer"
        );
        let got = call(w, "p2p-probe", &["readLp", &s, &max, "30000"]);
        assert!(got.as_str() == Some(big_in.as_str()), "1 MiB in differs");
        call(w, "p2p-probe", &["writeLp", &s, "str:hello from logos"]);
        call(w, "p2p-probe", &["writeLp", &s, &big_out_arg]);
        call(w, "p2p-probe", &["close", &s]);
        // The peer finished its half after its messages.
        probe_fails(w, &["read", &s, "10", "30000"], "eof");
        asked.join().unwrap()
    });
    assert_eq!(answer["ok"], true, "{answer}");
    let got = answer["got"].as_array().unwrap();
    assert_eq!(got.len(), 2, "{answer}");
    assert_eq!(got[0], "hello from logos");
    assert!(
        got[1].as_str() == Some(big_out.as_str()),
        "1 MiB out differs"
    );

    // Our module dials the peer's handler, which echoes every message and then finishes.
    let opened = call(
        w,
        "p2p-probe",
        &[
            "open",
            &format!("str:{}", peer.id),
            PROTOCOL,
            &format!("[\"{}\"]", peer.addr),
        ],
    );
    assert_eq!(opened["peer"].as_str(), Some(peer.id.as_str()));
    let s = opened["streamId"].to_string();
    let big_arg = text_arg(w, "big_in.json", &big_in);
    call(w, "p2p-probe", &["writeLp", &s, "str:first"]);
    call(w, "p2p-probe", &["writeLp", &s, &big_arg]);
    call(w, "p2p-probe", &["close", &s]);
    let max = (2 << 20).to_string();
    assert_eq!(
        call(w, "p2p-probe", &["readLp", &s, &max, "30000"]),
        "first"
    );
    let back = call(w, "p2p-probe", &["readLp", &s, &max, "30000"]);
    assert!(back.as_str() == Some(big_in.as_str()), "1 MiB echo differs");
    probe_fails(w, &["read", &s, "10", "30000"], "eof");
    let handled = peer.ask(&serde_json::json!({"op": "handled"}));
    assert_eq!(
        handled["handled"],
        serde_json::json!([{"ok": true, "messages": 2}]),
        "{handled}"
    );
}

#[test]
fn issue_12_js_libp2p_and_our_module_exchange_length_prefixed_messages_both_ways() {
    let (w, _d, addr) = node();
    let mut js = js_peer(&w);
    exchange_both_ways(&w, &addr, &mut js);
}

#[test]
fn issue_12_py_libp2p_and_our_module_exchange_length_prefixed_messages_both_ways() {
    let (w, _d, addr) = node();
    let mut py = py_peer();
    exchange_both_ways(&w, &addr, &mut py);
}

#[test]
fn issue_12_resets_cross_between_js_libp2p_and_our_module() {
    let (w, _d, addr) = node();
    let mut js = js_peer(&w);
    let reg = call(&w, "p2p-probe", &["register", &format!("[\"{PROTOCOL}\"]")]).to_string();

    // js abort() → our module's read fails `reset`, and it hears streamReset remote.
    let cmd = serde_json::json!({"op": "abortAfterReply", "addr": addr, "send": "bye"});
    let answer = std::thread::scope(|scope| {
        let asked = scope.spawn(|| js.ask(&cmd));
        let s = call(&w, "p2p-probe", &["accept", &reg, "30000"])["streamId"].to_string();
        assert_eq!(
            call(&w, "p2p-probe", &["readLp", &s, "100", "30000"]),
            "bye"
        );
        call(&w, "p2p-probe", &["writeLp", &s, "str:ack"]);
        let answer = asked.join().unwrap();
        probe_fails(&w, &["read", &s, "10", "30000"], "reset");
        let id: u64 = s.parse().unwrap();
        wait_for("streamReset remote", Duration::from_secs(10), || {
            call(&w, "p2p-probe", &["events"])
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e[0] == "streamReset" && e[1] == id && e[2] == "remote")
        });
        answer
    });
    assert_eq!(answer, serde_json::json!({"ok": true, "got": "ack"}));

    // Our reset → the js handler fails with StreamResetError.
    let opened = call(
        &w,
        "p2p-probe",
        &[
            "open",
            &format!("str:{}", js.id),
            PROTOCOL,
            &format!("[\"{}\"]", js.addr),
        ],
    );
    let s = opened["streamId"].to_string();
    call(&w, "p2p-probe", &["writeLp", &s, "str:x"]);
    assert_eq!(call(&w, "p2p-probe", &["readLp", &s, "100", "30000"]), "x");
    call(&w, "p2p-probe", &["reset", &s]);
    let mut handled = serde_json::Value::Null;
    wait_for("the js handler to end", Duration::from_secs(20), || {
        handled = js.ask(&serde_json::json!({"op": "handled"}));
        !handled["handled"].as_array().unwrap().is_empty()
    });
    assert_eq!(
        handled["handled"][0]["error"], "StreamResetError",
        "{handled}"
    );
}

/// `p2p-echo` runs as a remote module (`logos_host --remote`, its own temp dir, a credential
/// allowing `p2p`): a js peer's stream to the core's node reaches it through `p2p` and the
/// remote link and is echoed; SIGKILL of the remote process resets the js stream.
#[test]
fn issue_12_a_js_stream_reaches_a_remote_module_and_is_reset_when_it_dies() {
    let w = World::new();
    w.stage("p2p");
    w.p2p_on_loopback();
    let _d = remote_support::core(&w, P2P_NETWORK, &["p2p"]);
    let addr = call(&w, "p2p", &["listenAddrs"])[0]
        .as_str()
        .unwrap()
        .to_owned();
    let mut echo = remote_support::remote(&w, "p2p-echo", &["--allow", "p2p"]);
    wait_for(
        "the remote p2p-echo to register its protocol",
        Duration::from_secs(30),
        || {
            call(&w, "p2p", &["protocols"])
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["protocols"][0] == "/logos/echo/1.0.0" && r["owner"] == "p2p-echo")
        },
    );
    let mut js = js_peer(&w);
    let big = letters(1 << 20, 3);
    let answer = js.ask(&serde_json::json!({
        "op": "exchange",
        "addr": addr,
        "protocol": "/logos/echo/1.0.0",
        "send": ["through a remote module", big],
    }));
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["got"][0], "through a remote module");
    assert!(
        answer["got"][1].as_str() == Some(big.as_str()),
        "1 MiB echo differs"
    );

    // A stream held open, then the remote process is killed: the js side sees a reset.
    let held = js.ask(&serde_json::json!({
        "op": "hold",
        "addr": addr,
        "protocol": "/logos/echo/1.0.0",
        "send": "still there?",
    }));
    assert_eq!(held["got"], "still there?", "{held}");
    echo.proc.kill();
    let end = js.ask(&serde_json::json!({"op": "waitEnd", "id": held["id"]}));
    assert_eq!(end["error"], "StreamResetError", "{end}");
}
