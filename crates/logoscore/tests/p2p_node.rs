//! Issue 12, slice 1: the `p2p` module as a libp2p node. Two real cores on 127.0.0.1, each
//! loading `p2p`, dial each other through `logoscore call`; the identity key is made once
//! (0600) and kept across restarts; bad configuration stops the module with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use support::*;

/// A world with `p2p` staged and configured to listen on loopback only.
fn node_world() -> World {
    let w = World::new();
    w.stage("p2p");
    w.p2p_on_loopback();
    w
}

fn call(w: &World, args: &[&str]) -> serde_json::Value {
    w.call_result("p2p", args)
}

fn peers(w: &World) -> Vec<String> {
    call(w, &["peers"])
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn issue_12_two_cores_dial_each_other_and_disconnect() {
    let (a, b) = (node_world(), node_world());
    let _da = a.daemon_config(P2P_NETWORK, &["--load", "p2p"]);
    let _db = b.daemon_config(P2P_NETWORK, &["--load", "p2p"]);
    let id_a = call(&a, &["peerId"]).as_str().unwrap().to_owned();
    let id_b = call(&b, &["peerId"]).as_str().unwrap().to_owned();
    assert!(id_a.starts_with("12D3KooW"), "{id_a}");
    assert_ne!(id_a, id_b);

    let addrs_a = call(&a, &["listenAddrs"]);
    let addr_a = addrs_a[0].as_str().unwrap().to_owned();
    assert!(
        addr_a.starts_with("/ip4/127.0.0.1/tcp/") && addr_a.ends_with(&format!("/p2p/{id_a}")),
        "{addrs_a}"
    );

    // B dials A: the answer is the peer id A proved in the Noise handshake.
    assert_eq!(call(&b, &["dial", &addr_a]), serde_json::json!(id_a));
    wait_for(
        "each core to list the other",
        Duration::from_secs(30),
        || peers(&a) == [id_b.clone()] && peers(&b) == [id_a.clone()],
    );
    // Identify ran: each side knows the other's agent and protocols.
    wait_for("identify", Duration::from_secs(30), || {
        let list = call(&a, &["peers"]);
        let p = &list[0];
        p["agent"]
            .as_str()
            .is_some_and(|s| s.starts_with("logos-p2p/"))
            && p["protocols"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|x| x == "/ipfs/ping/1.0.0"))
            && p["direction"] == "inbound"
    });

    // A dials B back, without the peer id in the address; B's address from its own answer.
    let addr_b = call(&b, &["listenAddrs"])[0].as_str().unwrap().to_owned();
    let bare = addr_b.split("/p2p/").next().unwrap().to_owned();
    assert_eq!(call(&a, &["dial", &bare]), serde_json::json!(id_b));

    assert_eq!(
        call(&a, &["disconnect", &format!("str:{id_b}")]),
        serde_json::json!(true)
    );
    wait_for(
        "both sides to drop the connection",
        Duration::from_secs(30),
        || peers(&a).is_empty() && peers(&b).is_empty(),
    );
    assert_eq!(
        call(&a, &["disconnect", &format!("str:{id_b}")]),
        serde_json::json!(false)
    );
}

#[test]
fn issue_12_the_identity_is_made_once_0600_and_kept() {
    let w = node_world();
    let key = w.data.join("p2p/identity.key");
    let first = {
        let _d = w.daemon_config(P2P_NETWORK, &["--load", "p2p"]);
        call(&w, &["peerId"])
    };
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", key.display());
    let _d = w.daemon_config(P2P_NETWORK, &["--load", "p2p"]);
    assert_eq!(call(&w, &["peerId"]), first);
}

#[test]
fn issue_12_dial_failures_are_named() {
    let w = node_world();
    let _d = w.daemon_config(P2P_NETWORK, &["--load", "p2p"]);
    // A port nothing listens on (bound then closed): refused at once.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = w.cli(&["call", "p2p", "dial", &format!("/ip4/127.0.0.1/tcp/{port}")]);
    out.expect_code(4);
    assert!(out.stderr.contains("dial_failed: "), "{}", out.stderr);
    let out = w.cli(&["call", "p2p", "dial", "/ip4/127.0.0.1/tcpx/1"]);
    out.expect_code(4);
    assert!(out.stderr.contains("is not a multiaddr"), "{}", out.stderr);
    let out = w.cli(&["call", "p2p", "disconnect", "nobody"]);
    out.expect_code(4);
    assert!(out.stderr.contains("is not a peer id"), "{}", out.stderr);
}

#[test]
fn issue_12_bad_config_and_open_key_files_stop_the_module_with_the_reason() {
    let w = node_world();
    std::fs::write(w.data.join("p2p/p2p.json"), r#"{"listen": ["/ip4/1.2.3"]}"#).unwrap();
    let _d = w.daemon_config(P2P_NETWORK, &[]);
    let out = w.cli(&["load", "p2p"]);
    out.expect_code(3);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("is not a multiaddr"), "{text}");

    std::fs::write(
        w.data.join("p2p/p2p.json"),
        r#"{"listen": ["/ip4/127.0.0.1/tcp/0"]}"#,
    )
    .unwrap();
    let key = w.data.join("p2p/identity.key");
    std::fs::write(&key, b"x").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = w.cli(&["load", "p2p"]);
    out.expect_code(3);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("chmod 600"), "{text}");
}

/// `p2p` declares `"network": true`; without the operator's grant its load is refused
/// naming the config line, before any process starts (docs/security.md).
#[test]
fn issue_12_the_node_needs_the_operators_network_grant() {
    let w = node_world();
    let _d = w.daemon(&[]);
    let out = w.cli(&["load", "p2p"]);
    out.expect_code(3);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("declares \"network\": true and the operator has not granted it"),
        "{text}"
    );
    assert!(text.contains("[modules.p2p] network = true"), "{text}");
}

/// `logoscore p2p id|addrs|peers|dial ADDR|protocols`: the shortcuts print what the methods
/// answer, for people and with `--json`.
#[test]
fn issue_12_the_logoscore_p2p_shortcuts() {
    let (a, b) = (node_world(), node_world());
    let _da = a.daemon_config(P2P_NETWORK, &["--load", "p2p"]);
    let _db = b.daemon_config(P2P_NETWORK, &["--load", "p2p"]);
    let id_a = call(&a, &["peerId"]).as_str().unwrap().to_owned();
    let id_b = call(&b, &["peerId"]).as_str().unwrap().to_owned();

    let out = a.cli(&["p2p", "id"]);
    out.ok();
    assert_eq!(out.stdout.trim(), id_a);
    let out = b.cli(&["p2p", "addrs"]);
    out.ok();
    let addr_b = out.stdout.lines().next().unwrap().to_owned();
    assert!(
        addr_b.starts_with("/ip4/127.0.0.1/tcp/") && addr_b.ends_with(&format!("/p2p/{id_b}")),
        "{}",
        out.stdout
    );

    let out = a.cli(&["p2p", "dial", &addr_b, "--timeout", "10s"]);
    out.ok();
    assert_eq!(out.stdout.trim(), id_b);
    let out = a.cli(&["p2p", "peers"]);
    out.ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with(&id_b) && l.contains("outbound")),
        "{}",
        out.stdout
    );
    let doc = a.cli_json(&["p2p", "peers"]);
    assert!(
        doc.as_array().unwrap().iter().any(|p| p["peer"] == id_b),
        "{doc}"
    );

    call(&a, &["registerProtocol", r#"["/shortcut/1.0.0"]"#]);
    let out = a.cli(&["p2p", "protocols"]);
    out.ok();
    assert!(
        out.stdout
            .contains("core  /shortcut/1.0.0  pending 0  open 0"),
        "{}",
        out.stdout
    );

    // A bad address is the node's error, with the method named.
    let out = a.cli(&["p2p", "dial", "/ip4/nope"]);
    out.expect_code(4);
    assert!(out.stderr.contains("is not a multiaddr"), "{}", out.stderr);
}
