//! Issue 12, failure semantics of the protocol API, with two real cores on 127.0.0.1.
//!
//! Driven by operator calls (the core's own connection may use every `p2p` method): a
//! protocol the peer does not speak, a dead address, the pending-inbound limit with the
//! accept timeout bringing the gauges back to 0, and an unregistered protocol refused with
//! multistream `na`. Driven through the test module `p2p-probe`, which owns streams on each
//! side and acts on them when told: its owner killed mid-stream, a read timeout, a remote
//! reset under a pending read, `p2p` unloaded under open streams, `closeWithEof` against a
//! peer that never closes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};
use support::*;

fn node_world() -> World {
    let w = World::new();
    w.stage("p2p");
    w.p2p_on_loopback();
    w
}

fn p2p(w: &World, args: &[&str]) -> serde_json::Value {
    w.call_result("p2p", args)
}

/// A `p2p` call that must fail with the stable error `name`.
#[track_caller]
fn p2p_fails(w: &World, args: &[&str], name: &str) -> String {
    w.call_fails("p2p", args, name)
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

// ---- through p2p-probe: streams owned by a module on each node ----

/// A world with `p2p` and `p2p-probe` staged, listening on loopback.
fn probe_world() -> World {
    let w = node_world();
    w.stage("p2p-probe");
    w
}

fn start_probe(w: &World) -> (Daemon, String, String) {
    let d = w.daemon_config(P2P_NETWORK, &["--load", "p2p", "--load", "p2p-probe"]);
    let id = p2p(w, &["peerId"]).as_str().unwrap().to_owned();
    let addr = p2p(w, &["listenAddrs"])[0].as_str().unwrap().to_owned();
    (d, format!("str:{id}"), format!("[\"{addr}\"]"))
}

fn probe(w: &World, args: &[&str]) -> serde_json::Value {
    w.call_result("p2p-probe", args)
}

/// A `p2p-probe` call that must fail with the stable error `name`; returns the message.
#[track_caller]
fn probe_fails(w: &World, args: &[&str], name: &str) -> String {
    w.call_fails("p2p-probe", args, name)
}

/// The events p2p-probe logged, as `[name, data…]` lists.
fn events(w: &World) -> Vec<serde_json::Value> {
    probe(w, &["events"]).as_array().unwrap().clone()
}

/// Two nodes; A's probe owns `/probe/1.0.0`, B's probe opened a stream to it and A's probe
/// accepted it; ping and pong crossed it. Dropping it stops both daemons.
struct Pair {
    a: World,
    b: World,
    da: Daemon,
    _db: Daemon,
    sa: String,
    sb: String,
}

fn pair() -> Pair {
    let (a, b) = (probe_world(), probe_world());
    let (da, id_a, addrs_a) = start_probe(&a);
    let (db, _, _) = start_probe(&b);
    let reg = probe(&a, &["register", r#"["/probe/1.0.0"]"#]).to_string();
    let opened = probe(&b, &["open", &id_a, "/probe/1.0.0", &addrs_a]);
    assert_eq!(opened["protocol"], "/probe/1.0.0");
    let accepted = probe(&a, &["accept", &reg, "10000"]);
    let (sa, sb) = (
        accepted["streamId"].to_string(),
        opened["streamId"].to_string(),
    );
    // The stream carries bytes both ways before anything breaks it.
    probe(&b, &["write", &sb, "str:ping"]);
    assert_eq!(probe(&a, &["readExactly", &sa, "4", "10000"]), "ping");
    probe(&a, &["write", &sa, "str:pong"]);
    assert_eq!(probe(&b, &["readExactly", &sb, "4", "10000"]), "pong");
    Pair {
        a,
        b,
        da,
        _db: db,
        sa,
        sb,
    }
}

/// The first `streamReset` event the probe logged for stream `id`.
fn reset_event(events: &[serde_json::Value], id: &str) -> Option<serde_json::Value> {
    events
        .iter()
        .find(|e| e[0] == "streamReset" && e[1] == id.parse::<u64>().unwrap())
        .cloned()
}

#[test]
fn issue_12_the_owner_killed_mid_stream_resets_the_remote_within_a_second() {
    let p = pair();
    let pid =
        p.a.pids()
            .into_iter()
            .find_map(|(n, pid)| (n == "p2p-probe").then_some(pid))
            .unwrap();
    let t = Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    // A process exit is detected at once (its connection closes), so the remote's read
    // fails with `reset` (not `timeout`, not `eof`) within 1 s plus the CLI's own start.
    let msg = probe_fails(&p.b, &["read", &p.sb, "100", "30000"], "reset");
    assert!(
        t.elapsed() < Duration::from_secs(1) + COMMAND / 12,
        "{:?}: {msg}",
        t.elapsed()
    );
    wait_for("streamReset remote on B", Duration::from_secs(10), || {
        reset_event(&events(&p.b), &p.sb).is_some_and(|e| e[2] == "remote")
    });
    // A's node forgot the stream and the registration.
    wait_for("A's registration to go", Duration::from_secs(10), || {
        p2p(&p.a, &["protocols"]).as_array().unwrap().is_empty()
    });
}

#[test]
fn issue_12_a_read_timeout_loses_and_reorders_nothing() {
    let p = pair();
    probe_fails(&p.a, &["read", &p.sa, "100", "200"], "timeout");
    // Part of a message, then a timed-out exact read, then the rest: one whole message.
    let mut expected = String::new();
    for round in 0..5 {
        let (head, tail) = (format!("r{round}-head:"), format!("tail-{round};"));
        probe(&p.b, &["write", &p.sb, &format!("str:{head}")]);
        let want = (head.len() + tail.len()).to_string();
        probe_fails(&p.a, &["readExactly", &p.sa, &want, "300"], "timeout");
        probe(&p.b, &["write", &p.sb, &format!("str:{tail}")]);
        let got = probe(&p.a, &["readExactly", &p.sa, &want, "10000"]);
        assert_eq!(got.as_str().unwrap(), format!("{head}{tail}"));
        expected.push_str(&head);
    }
    // Many small writes, read back with timeouts in between: every byte, in order.
    let mut sent = String::new();
    for i in 0..20 {
        let piece = format!("{i:02},");
        probe(&p.b, &["write", &p.sb, &format!("str:{piece}")]);
        sent.push_str(&piece);
    }
    let mut got = String::new();
    while got.len() < sent.len() {
        let out =
            p.a.cli_json(&["call", "p2p-probe", "read", &p.sa, "7", "300"]);
        if out["status"] == "ok" {
            got.push_str(out["result"].as_str().unwrap());
        }
    }
    assert_eq!(got, sent);
    assert!(!expected.is_empty());
}

#[test]
fn issue_12_a_remote_reset_fails_the_pending_read_with_reset() {
    let p = pair();
    let a = &p.a;
    let sa = p.sa.clone();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| a.cli(&["call", "p2p-probe", "read", &sa, "100", "30000"]));
        wait_for("A's read to wait for data", Duration::from_secs(10), || {
            probe(a, &["reading"]) == 1
        });
        probe(&p.b, &["reset", &p.sb]);
        let out = reader.join().unwrap();
        out.expect_code(4);
        assert!(out.stderr.contains("reset: "), "{}", out.stderr);
    });
    wait_for("streamReset remote on A", Duration::from_secs(10), || {
        reset_event(&events(a), &p.sa).is_some_and(|e| e[2] == "remote")
    });
}

#[test]
fn issue_12_unloading_p2p_under_open_streams_tells_the_owner_and_resets_them() {
    let p = pair();
    p.a.cli(&["unload", "p2p"]).ok();
    let ev = events(&p.a);
    let names: Vec<&str> = ev.iter().map(|e| e[0].as_str().unwrap()).collect();
    let at = |n: &str| {
        names
            .iter()
            .position(|x| *x == n)
            .unwrap_or_else(|| panic!("no {n} in {ev:?}"))
    };
    let reset = ev
        .iter()
        .position(|e| e[0] == "streamReset" && e[1] == p.sa.parse::<u64>().unwrap())
        .unwrap_or_else(|| panic!("no streamReset of {} in {ev:?}", p.sa));
    assert_eq!(ev[reset][2], "node_shutdown", "{ev:?}");
    assert!(
        at("nodeStopping") < reset && reset < at("nodeStopped"),
        "{ev:?}"
    );
    assert!(ev[at("nodeStopping")][1].as_u64().unwrap() > 0, "{ev:?}");
    // A call made while the node stops gets node_stopped.
    let late = &ev[at("lateCall")];
    assert_eq!(late[1], "node_stopped", "{ev:?}");
    // A's held stream is dead (its reset came from the node stopping: `node_stopped`);
    // B's side is reset too.
    probe_fails(&p.a, &["read", &p.sa, "100", "10000"], "node_stopped");
    probe_fails(&p.b, &["read", &p.sb, "100", "30000"], "reset");
    drop(p.da);
}

#[test]
fn issue_12_close_with_eof_against_a_peer_that_never_closes_times_out() {
    let p = pair();
    let t = Instant::now();
    let msg = probe_fails(&p.a, &["closeWithEof", &p.sa, "500"], "timeout");
    assert!(t.elapsed() >= Duration::from_millis(500), "{msg}");
    // Our half was finished before the wait: B reads to its end. (The reset after it cannot
    // reach B: rust-yamux sends nothing for a stream whose write half is finished; see
    // docs/p2p.md, known limits.)
    probe_fails(&p.b, &["read", &p.sb, "100", "10000"], "eof");
    // A's node let the stream go.
    wait_for("A's stream to end", Duration::from_secs(10), || {
        p2p(&p.a, &["protocols"])[0]["open"] == 0
    });
}

// ---- the data methods: streams moved with calls ({"via": "calls"}) ----

/// `b64url` of `text`'s bytes, as `--json` prints bytes.
fn bytes_json(text: &str) -> serde_json::Value {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    serde_json::json!({ "_bytes": out })
}

/// `text` as a bytes argument of `logoscore call`.
fn bytes_arg(text: &str) -> String {
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{{\"$bytes\": \"{hex}\"}}")
}

/// Operators (no byte streams on the core's connection) move a stream's data with calls:
/// both ends `{"via": "calls"}`, bytes and length-prefixed messages both ways, a read
/// timeout that loses nothing, half-close to `eof`, `closeWithEof`, a remote reset under a
/// pending read (`reset`, also for a read that comes after it), `closeWithEof` timing out,
/// and bad options and unknown streams named.
#[test]
fn issue_12_streams_moved_with_calls() {
    let (a, b) = (node_world(), node_world());
    let (_da, id_a, addrs_a) = start(&a);
    let (_db, _, _) = start(&b);
    let calls = r#"{"via": "calls"}"#;
    let reg = p2p(&a, &["registerProtocol", r#"["/calls/1.0.0"]"#]).to_string();
    let open = |b: &World| {
        p2p(
            b,
            &[
                "openStream",
                &id_a,
                r#"["/calls/1.0.0"]"#,
                &addrs_a,
                "5000",
                calls,
            ],
        )["streamId"]
            .to_string()
    };
    let sb = open(&b);
    let sa = p2p(&a, &["accept", &reg, "5000", calls])["streamId"].to_string();

    // A read with nothing there times out; the bytes written next all arrive, in order.
    p2p_fails(&a, &["read", &sa, "100", "200"], "timeout");
    p2p(&b, &["write", &sb, &bytes_arg("hello, ")]);
    p2p_fails(&a, &["readExactly", &sa, "12", "300"], "timeout");
    p2p(&b, &["write", &sb, &bytes_arg("world")]);
    assert_eq!(
        p2p(&a, &["readExactly", &sa, "12", "5000"]),
        bytes_json("hello, world")
    );
    p2p(&a, &["writeLp", &sa, &bytes_arg("a message")]);
    assert_eq!(
        p2p(&b, &["readLp", &sb, "100", "5000"]),
        bytes_json("a message")
    );
    // B finishes its half: A reads to eof, then closes with EOF at once.
    p2p(&b, &["close", &sb]);
    p2p_fails(&b, &["write", &sb, &bytes_arg("late")], "closed");
    p2p_fails(&a, &["read", &sa, "100", "5000"], "eof");
    p2p(&a, &["closeWithEof", &sa, "5000"]);
    p2p_fails(&b, &["read", &sb, "100", "5000"], "eof");

    // A remote reset fails a pending read with `reset`.
    let sb = open(&b);
    let sa = p2p(&a, &["accept", &reg, "5000", calls])["streamId"].to_string();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| a.cli(&["call", "p2p", "read", &sa, "100", "30000"]));
        p2p(&b, &["write", &sb, &bytes_arg("x")]);
        // Once A read the "x", its next read waits; B resets under it.
        let first = reader.join().unwrap();
        first.ok();
        let reader = scope.spawn(|| a.cli(&["call", "p2p", "read", &sa, "100", "30000"]));
        wait_for("A's read to wait", Duration::from_secs(10), || {
            p2p(&a, &["streamInfo", &sa])["bytesIn"] == 1
        });
        p2p(&b, &["reset", &sb]);
        let out = reader.join().unwrap();
        out.expect_code(4);
        assert!(out.stderr.contains("reset: "), "{}", out.stderr);
    });

    // closeWithEof against a peer that never closes: timeout, and the stream is gone.
    let _sb = open(&b);
    let sa = p2p(&a, &["accept", &reg, "5000", calls])["streamId"].to_string();
    p2p_fails(&a, &["closeWithEof", &sa, "300"], "timeout");
    wait_for("A's stream to go", Duration::from_secs(10), || {
        a.cli(&["call", "p2p", "streamInfo", &sa]).code == Some(4)
    });

    // A stream moved over a byte stream is not for the data methods; bad options are named.
    let out = a.cli(&[
        "call",
        "p2p",
        "accept",
        &reg,
        "100",
        r#"{"via": "pigeons"}"#,
    ]);
    out.expect_code(4);
    assert!(
        out.stderr.contains(r#""via" is "stream""#),
        "{}",
        out.stderr
    );
    p2p_fails(&a, &["read", "999", "1", "100"], "not_found");
}
