//! Issue 12, slice 2: external modules serve libp2p protocols through `p2p`. Two real cores
//! on 127.0.0.1, each with `p2p` and the example module `p2p-echo`: a stream from one node
//! reaches the other's echo module over its runtime byte stream and comes back; the
//! registration dies with its module and comes back with it; permissions are enforced.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;
use support::*;

fn node_world() -> World {
    let w = World::new();
    w.stage_all(&["p2p", "p2p-echo"]);
    w.p2p_on_loopback();
    w
}

fn call(w: &World, module: &str, args: &[&str]) -> serde_json::Value {
    w.call_result(module, args)
}

fn registrations(w: &World) -> Vec<serde_json::Value> {
    call(w, "p2p", &["protocols"]).as_array().unwrap().clone()
}

fn echo_registered(w: &World) -> u64 {
    let mut id = 0;
    wait_for(
        "p2p-echo to register its protocol",
        Duration::from_secs(30),
        || {
            let regs = registrations(w);
            match regs.first() {
                Some(r) if r["protocols"][0] == "/logos/echo/1.0.0" && r["owner"] == "p2p-echo" => {
                    id = r["registration"].as_u64().unwrap();
                    true
                }
                _ => false,
            }
        },
    );
    id
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn issue_12_a_stream_reaches_the_echo_module_of_the_other_node_and_comes_back() {
    let (a, b) = (node_world(), node_world());
    let _da = a.daemon_config(P2P_NETWORK, &["--load", "p2p-echo"]);
    let _db = b.daemon_config(P2P_NETWORK, &["--load", "p2p-echo"]);
    let reg = echo_registered(&a);
    let id_a = call(&a, "p2p", &["peerId"]).as_str().unwrap().to_owned();
    let addr_a = call(&a, "p2p", &["listenAddrs"])[0]
        .as_str()
        .unwrap()
        .to_owned();

    // 200 KiB: more than one 64 KiB chunk of the pump, less than one credit window.
    let data: Vec<u8> = (0..200 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    // Too big for one command-line argument: passed as a JSON file.
    let arg = b.write("data.json", &format!("{{\"$bytes\": \"{}\"}}", hex(&data)));
    let arg = format!("json:@{}", arg.display());
    let addrs = format!("[\"{addr_a}\"]");
    let back = call(
        &b,
        "p2p-echo",
        &["ping", &format!("str:{id_a}"), &addrs, &arg],
    );
    assert_eq!(back["_bytes"].as_str().unwrap(), b64url(&data));

    // A's registration counted it and nothing is left open.
    wait_for("the stream to end on A", Duration::from_secs(30), || {
        let r = &registrations(&a)[0];
        r["registration"] == reg && r["accepted"] == 1 && r["open"] == 0 && r["pending"] == 0
    });
}

#[test]
fn issue_12_a_registration_dies_with_its_module_and_comes_back_with_it() {
    let w = node_world();
    let _d = w.daemon_config(P2P_NETWORK, &["--load", "p2p-echo"]);
    let first = echo_registered(&w);
    let pid = w
        .pids()
        .into_iter()
        .find(|(name, _)| name == "p2p-echo")
        .map(|(_, pid)| pid)
        .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    // The core restarts it (on-failure); the new process registers again, under a new id.
    wait_for(
        "a new registration by the restarted module",
        Duration::from_secs(60),
        || {
            let regs = registrations(&w);
            regs.len() == 1 && regs[0]["registration"].as_u64().is_some_and(|r| r != first)
        },
    );
}

/// Who may register and dial is a method grant like any other (docs/p2p.md, "Access"):
/// p2p-echo's permissions narrow its dependency to the methods it uses, an operator's deny
/// takes `registerProtocol` away, and each refusal names the rule; `p2p` never ran the
/// refused method.
#[test]
fn issue_12_registering_and_dialling_are_method_grants() {
    let w = node_world();
    // p2p-echo as installed by someone who left `openStream` out of its permissions.
    let meta = std::fs::read_to_string(w.modules.join("p2p-echo/metadata.json")).unwrap();
    let meta = meta.replace(r#", "p2p.openStream""#, "");
    assert!(!meta.contains("openStream"));
    std::fs::write(w.modules.join("p2p-echo/metadata.json"), meta).unwrap();
    let config = format!(
        "{P2P_NETWORK}\n[[deny]]\ncaller = \"p2p-echo\"\ntarget = \"p2p\"\nmethods = [\"registerProtocol\"]\n"
    );
    let d = w.daemon_config(&config, &["--load", "p2p-echo"]);
    let id = call(&w, "p2p", &["peerId"]).as_str().unwrap().to_owned();
    let out = w.cli(&[
        "call",
        "p2p-echo",
        "ping",
        &format!("str:{id}"),
        "[]",
        r#"{"$bytes": "00"}"#,
    ]);
    out.expect_code(4);
    assert!(
        out.stderr.contains("p2p-echo may not call p2p.openStream"),
        "{}",
        out.stderr
    );
    // The echo's register loop keeps being refused by the operator's deny.
    d.proc.wait_stderr(
        "p2p refused p2p-echo's call to p2p.registerProtocol",
        Duration::from_secs(30),
    );
    assert!(registrations(&w).is_empty());
}

/// The example chat: B's `p2p-chat` sends to A's over `/logos/chat/1.0.0`; A's module
/// emits `chatMessage [B's peer id, text]` (seen by `logoscore watch`) and keeps it.
#[test]
fn issue_12_the_chat_example_delivers_messages_as_events() {
    let (a, b) = (node_world(), node_world());
    a.stage("p2p-chat");
    b.stage("p2p-chat");
    let _da = a.daemon_config(P2P_NETWORK, &["--load", "p2p-chat"]);
    let _db = b.daemon_config(P2P_NETWORK, &["--load", "p2p-chat"]);
    let id_a = call(&a, "p2p", &["peerId"]).as_str().unwrap().to_owned();
    let id_b = call(&b, "p2p", &["peerId"]).as_str().unwrap().to_owned();
    let addrs_a = format!(
        "[\"{}\"]",
        call(&a, "p2p", &["listenAddrs"])[0].as_str().unwrap()
    );
    wait_for("A's chat to register", Duration::from_secs(30), || {
        registrations(&a)
            .iter()
            .any(|r| r["protocols"][0] == "/logos/chat/1.0.0")
    });
    let mut cmd = a.command();
    cmd.args(["--json", "watch", "p2p-chat", "chatMessage"]);
    let watch = Proc::spawn(&mut cmd);
    watch.wait_stderr("watching", COMMAND);

    for text in ["hello, A", "second message"] {
        call(
            &b,
            "p2p-chat",
            &[
                "send",
                &format!("str:{id_a}"),
                &addrs_a,
                &format!("str:{text}"),
            ],
        );
    }
    for text in ["hello, A", "second message"] {
        let line = watch.next_line(COMMAND).expect("a chatMessage event");
        let ev: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(ev["event"], "chatMessage", "{ev}");
        assert_eq!(ev["args"], serde_json::json!([id_b, text]), "{ev}");
    }
    assert_eq!(
        call(&a, "p2p-chat", &["history"]),
        serde_json::json!([[id_b, "hello, A"], [id_b, "second message"]])
    );
}
