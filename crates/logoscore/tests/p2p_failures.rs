//! Issue 12, failure semantics of the protocol API, with two real cores on 127.0.0.1 driven
//! by operator calls (the core's own connection may use every `p2p` method): a protocol the
//! peer does not speak, a dead address, the pending-inbound limit with the accept timeout
//! bringing the gauges back to 0, and an unregistered protocol refused with multistream `na`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};
use support::*;

fn node_world() -> World {
    let w = World::new();
    w.stage("p2p");
    let dir = w.data.join("p2p");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p2p.json"),
        r#"{"listen": ["/ip4/127.0.0.1/tcp/0"]}"#,
    )
    .unwrap();
    w
}

fn p2p(w: &World, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["call", "p2p"];
    all.extend_from_slice(args);
    let doc = w.cli_json(&all);
    assert_eq!(doc["status"], "ok", "{doc}");
    doc["result"].clone()
}

/// A `p2p` call that must fail with the stable error `name`.
#[track_caller]
fn p2p_fails(w: &World, args: &[&str], name: &str) -> String {
    let mut all = vec!["call", "p2p"];
    all.extend_from_slice(args);
    let out = w.cli(&all);
    out.expect_code(4);
    assert!(
        out.stderr.contains(&format!("{name}: ")),
        "expected {name}:\n{}",
        out.stderr
    );
    out.stderr.clone()
}

/// Starts a node and returns (peer id as `str:` argument, its address list as JSON).
fn start(w: &World) -> (Daemon, String, String) {
    let d = w.daemon_config(P2P_NETWORK, &["--load", "p2p"]);
    let id = p2p(w, &["peerId"]).as_str().unwrap().to_owned();
    let addr = p2p(w, &["listenAddrs"])[0].as_str().unwrap().to_owned();
    (d, format!("str:{id}"), format!("[\"{addr}\"]"))
}

#[test]
fn issue_12_unsupported_protocols_and_dead_addresses_are_named_within_the_deadline() {
    let (a, b) = (node_world(), node_world());
    let (_da, id_a, addrs_a) = start(&a);
    let (_db, _, _) = start(&b);
    p2p_fails(
        &b,
        &[
            "openStream",
            &id_a,
            r#"["/nobody/1.0.0", "/nor/2.0.0"]"#,
            &addrs_a,
            "5000",
        ],
        "unsupported_protocol",
    );

    // A peer id at a port nothing listens on: dial_failed, well within the deadline.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("[\"/ip4/127.0.0.1/tcp/{port}\"]");
    let nobody = "str:12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    let t = Instant::now();
    p2p_fails(
        &b,
        &[
            "openStream",
            nobody,
            r#"["/logos/echo/1.0.0"]"#,
            &dead,
            "5000",
        ],
        "dial_failed",
    );
    assert!(
        t.elapsed() < Duration::from_secs(5) + COMMAND / 4,
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn issue_12_pending_inbound_is_bounded_and_unaccepted_streams_expire() {
    let (a, b) = (node_world(), node_world());
    let (_da, id_a, addrs_a) = start(&a);
    let (_db, _, _) = start(&b);
    let reg = p2p(
        &a,
        &[
            "registerProtocol",
            r#"["/limits/1.0.0"]"#,
            r#"{"maxPendingInbound": 32, "acceptTimeoutMs": 20000}"#,
        ],
    );
    let reg = reg.as_u64().unwrap();
    // 100 inbound streams; nobody accepts.
    for _ in 0..100 {
        let out = b.cli(&[
            "call",
            "p2p",
            "openStream",
            &id_a,
            r#"["/limits/1.0.0"]"#,
            &addrs_a,
            "5000",
        ]);
        out.ok();
    }
    let gauges = |w: &World| {
        let list = p2p(w, &["protocols"]);
        let r = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["registration"] == reg)
            .cloned()
            .unwrap();
        (
            r["pending"].as_u64().unwrap(),
            r["refused"].as_u64().unwrap(),
            r["expired"].as_u64().unwrap(),
        )
    };
    wait_for("32 queued, 68 refused", Duration::from_secs(20), || {
        let (pending, refused, _) = gauges(&a);
        pending + refused == 100
    });
    let (pending, refused, expired) = gauges(&a);
    assert_eq!((pending, refused), (32, 68), "expired {expired}");
    // After acceptTimeoutMs every queued stream is reset and the gauges are back to 0.
    wait_for(
        "the queued streams to expire",
        Duration::from_secs(60),
        || {
            let (pending, _, expired) = gauges(&a);
            pending == 0 && expired == 32
        },
    );

    // Unregistered: the protocol is refused in negotiation (multistream `na`).
    p2p(&a, &["unregisterProtocol", &reg.to_string()]);
    p2p_fails(
        &b,
        &[
            "openStream",
            &id_a,
            r#"["/limits/1.0.0"]"#,
            &addrs_a,
            "5000",
        ],
        "unsupported_protocol",
    );
    p2p_fails(&a, &["accept", &reg.to_string(), "100"], "not_found");
}

#[test]
fn issue_12_accept_times_out_and_bad_registrations_are_refused() {
    let w = node_world();
    let (_d, _, _) = start(&w);
    let reg = p2p(&w, &["registerProtocol", r#"["/t/1.0.0"]"#])
        .as_u64()
        .unwrap();
    p2p_fails(&w, &["accept", &reg.to_string(), "200"], "timeout");
    p2p_fails(
        &w,
        &["registerProtocol", r#"["/t/1.0.0"]"#],
        "already_registered",
    );
    let out = w.cli(&["call", "p2p", "registerProtocol", r#"["no-slash"]"#]);
    out.expect_code(4);
    assert!(
        out.stderr.contains("is not a protocol id"),
        "{}",
        out.stderr
    );
    let out = w.cli(&[
        "call",
        "p2p",
        "registerProtocol",
        r#"["/u/1"]"#,
        r#"{"maxPendingInbound": 0}"#,
    ]);
    out.expect_code(4);
    assert!(out.stderr.contains("maxPendingInbound"), "{}", out.stderr);
    p2p_fails(&w, &["streamInfo", "999"], "not_found");
}
