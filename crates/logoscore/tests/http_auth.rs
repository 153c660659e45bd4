//! Who may do what over `logoscore run --http`: data and actions need an operator token
//! (bearer header, or the session cookie of the login form), a cookie's actions need the
//! CSRF token too, and a refused action changes nothing. Also the live streams: the view
//! over SSE, a module's log tail, and the cap on open streams.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
mod web;

use reqwest::StatusCode;
use reqwest::blocking::Response;
use support::{COMMAND, World};
use web::{Events, REQUEST, base, http};

fn token(w: &World) -> String {
    std::fs::read_to_string(w.token())
        .unwrap()
        .trim()
        .to_owned()
}

fn calc_pid(w: &World) -> Option<u32> {
    w.pids()
        .into_iter()
        .find(|(n, _)| n == "calc")
        .map(|(_, p)| p)
}

fn post(url: &str, headers: &[(&str, &str)]) -> Response {
    let mut r = http().post(url).timeout(REQUEST);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().unwrap()
}

fn get(url: &str, headers: &[(&str, &str)]) -> Response {
    let mut r = http().get(url).timeout(REQUEST);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().unwrap()
}

/// `application/x-www-form-urlencoded` escaping of one value.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Logs in with `token`; the session cookie (`name=value`) on success.
fn login(base: &str, token: &str) -> (StatusCode, Option<String>) {
    let r = http()
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", url_encode(token)))
        .send()
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|c| c.to_str().unwrap().to_owned());
    if let Some(c) = &cookie {
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(c.contains(attr), "{c}");
        }
    }
    (
        r.status(),
        cookie.map(|c| c.split(';').next().unwrap().to_owned()),
    )
}

#[test]
fn without_a_token_nothing_is_shown_and_nothing_happens() {
    let w = World::new();
    w.stage("calc");
    let d = w.daemon(&["--http", "127.0.0.1:0", "--load", "calc"]);
    let base = base(&d.ready);
    let pid = calc_pid(&w).unwrap();

    // The page sends strangers to the login form; data and actions are 401.
    let r = get(&format!("{base}/"), &[]);
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login");
    let login_page = get(&format!("{base}/login"), &[]).text().unwrap();
    assert!(login_page.contains("name=\"token\""), "{login_page}");
    for path in [
        "/api/view",
        "/api/session",
        "/api/events",
        "/api/modules/calc/logs",
    ] {
        let r = get(&format!("{base}{path}"), &[]);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.headers().contains_key("www-authenticate"), "{path}");
    }
    let wrong = format!("Bearer {}", "00".repeat(32));
    for (action, headers) in [
        ("unload", vec![]),
        ("reload", vec![("authorization", wrong.as_str())]),
        ("unload", vec![("authorization", "Bearer not-hex")]),
        ("unload", vec![("authorization", "Basic Zm9vOmJhcg==")]),
        ("unload", vec![("cookie", "logos_session=made-up")]),
    ] {
        let r = post(&format!("{base}/api/modules/calc/{action}"), &headers);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{action} {headers:?}");
        let body: serde_json::Value = r.json().unwrap();
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    assert_eq!(calc_pid(&w), Some(pid), "calc untouched");

    // A wrong token at the login form: 401, no cookie.
    let (status, cookie) = login(&base, &"ab".repeat(32));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(cookie, None);
    let (status, cookie) = login(&base, "<script>");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(cookie, None);

    // Metrics stay open on loopback.
    assert_eq!(
        get(&format!("{base}/metrics"), &[]).status(),
        StatusCode::OK
    );
}

#[test]
fn a_logged_in_browser_needs_the_csrf_token_for_actions() {
    let w = World::new();
    w.stage("calc");
    let d = w.daemon(&["--http", "127.0.0.1:0", "--load", "calc"]);
    let base = base(&d.ready);
    let pid = calc_pid(&w).unwrap();
    let (status, cookie) = login(&base, &token(&w));
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.unwrap();
    assert_eq!(
        get(&format!("{base}/"), &[("cookie", &cookie)]).status(),
        StatusCode::OK
    );
    let session: serde_json::Value = get(&format!("{base}/api/session"), &[("cookie", &cookie)])
        .json()
        .unwrap();
    assert_eq!(session["who"], "client");
    let csrf = session["csrf"].as_str().unwrap().to_owned();
    let reload = format!("{base}/api/modules/calc/reload");

    for headers in [
        vec![("cookie", cookie.as_str())],
        vec![("cookie", cookie.as_str()), ("x-csrf-token", "wrong")],
        vec![
            ("cookie", cookie.as_str()),
            ("x-csrf-token", csrf.as_str()),
            ("origin", "http://evil.example"),
        ],
    ] {
        let r = post(&reload, &headers);
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{headers:?}");
    }
    assert_eq!(calc_pid(&w), Some(pid), "refused reloads did nothing");

    let origin = base.clone();
    let r = post(
        &reload,
        &[
            ("cookie", &cookie),
            ("x-csrf-token", &csrf),
            ("origin", &origin),
        ],
    );
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["state"], "ready");
    assert_ne!(calc_pid(&w), Some(pid), "reloaded: a new process");

    // Logged out, the cookie opens nothing.
    post(&format!("{base}/logout"), &[("cookie", &cookie)]);
    assert_eq!(
        get(&format!("{base}/api/view"), &[("cookie", &cookie)]).status(),
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn a_bearer_token_acts_and_a_revoked_named_token_stops_working() {
    let w = World::new();
    w.stage("calc");
    let d = w.daemon(&["--http", "127.0.0.1:0", "--load", "calc"]);
    let base = base(&d.ready);
    let bearer = format!("Bearer {}", token(&w));
    let auth = [("authorization", bearer.as_str())];

    let r = post(&format!("{base}/api/modules/calc/unload"), &auth);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(calc_pid(&w), None);
    let r = post(&format!("{base}/api/modules/calc/load"), &auth);
    assert_eq!(r.status(), StatusCode::OK);
    assert!(calc_pid(&w).is_some());
    let r = post(&format!("{base}/api/modules/nope/load"), &auth);
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = post(&format!("{base}/api/modules/calc/explode"), &auth);
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = post(
        &format!("{base}/api/modules/{}/load", "x".repeat(300)),
        &auth,
    );
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let view: serde_json::Value = get(&format!("{base}/api/view"), &auth).json().unwrap();
    let calc = view["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "calc")
        .unwrap_or_else(|| panic!("{view}"));
    assert!(calc["state"].is_string(), "{calc}");

    // A named token logs in; revoked, its session ends at once.
    let out = w.cli(&["--json", "issue-token", "--name", "ops"]);
    out.ok();
    let named = out.json()["token"].as_str().unwrap().to_owned();
    let (status, cookie) = login(&base, &named);
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.unwrap();
    let session: serde_json::Value = get(&format!("{base}/api/session"), &[("cookie", &cookie)])
        .json()
        .unwrap();
    assert_eq!(session["who"], "ops");
    w.cli(&["revoke-token", "ops"]).ok();
    assert_eq!(
        get(&format!("{base}/api/session"), &[("cookie", &cookie)]).status(),
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn live_streams_carry_the_view_and_the_log_tail_and_are_capped() {
    let w = World::new();
    w.stage("calc");
    let d = w.daemon(&["--http", "127.0.0.1:0", "--load", "calc"]);
    let base = base(&d.ready);
    let bearer = format!("Bearer {}", token(&w));
    let auth = [("authorization", bearer.as_str())];

    let view = Events::open(get(&format!("{base}/api/events"), &auth));
    let first = view.until(COMMAND, |e| {
        e.event == "view" && e.data.contains("\"calc\"")
    });
    let v: serde_json::Value = serde_json::from_str(&first.data).unwrap();
    assert!(v["modules"].is_array(), "{v}");
    // A state change arrives without waiting for anyone to ask.
    w.cli(&["unload", "calc"]).ok();
    view.until(COMMAND, |e| {
        serde_json::from_str::<serde_json::Value>(&e.data).is_ok_and(|v| {
            v["modules"].as_array().is_some_and(|ms| {
                ms.iter()
                    .any(|m| m["name"] == "calc" && m["state"] == "stopped")
            })
        })
    });

    let logs = Events::open(get(&format!("{base}/api/modules/calc/logs"), &auth));
    logs.until(COMMAND, |e| e.event == "reset" && e.data == "calc");
    // The core's own lines about calc are in its tail, in order: its stop comes last.
    logs.until(COMMAND, |e| {
        e.event == "line" && e.data.contains("to=stopped")
    });
    // So a `ready` after it is a live line: load it again.
    w.cli(&["load", "calc"]).ok();
    logs.until(COMMAND, |e| {
        e.event == "line" && e.data.contains("to=ready")
    });
    assert_eq!(
        get(&format!("{base}/api/modules/nope/logs"), &auth).status(),
        StatusCode::NOT_FOUND
    );

    // At most 64 live streams: two are open, so 62 more fit and the next is refused.
    let mut open = Vec::new();
    for _ in 0..62 {
        let r = get(&format!("{base}/api/events"), &auth);
        assert_eq!(r.status(), StatusCode::OK);
        open.push(r);
    }
    assert_eq!(
        get(&format!("{base}/api/events"), &auth).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    drop(open);
    support::wait_for("a stream place to free up", COMMAND, || {
        get(&format!("{base}/api/events"), &auth).status() == StatusCode::OK
    });
}

/// A log follower that stops reading while a module floods its log is told it lagged and
/// cut off; the core buffered nothing for it beyond the bounded channel, and goes on.
#[test]
fn a_log_follower_that_does_not_read_is_cut_off_not_buffered_for() {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    use std::io::{Read as _, Write as _};
    let w = World::new();
    // 20 000 lines of 200 bytes on stderr (4 MB and more: past what socket buffers hold),
    // then it exits without a handshake: its load fails, its lines are logged.
    w.script_module(
        "noisy",
        "line=$(printf '%0200d' 0)\ni=0\nwhile [ $i -lt 20000 ]; do echo \"$line $i\"; i=$((i+1)); done >&2\nexit 1",
    );
    let d = w.daemon(&["--http", "127.0.0.1:0"]);
    let addr: std::net::SocketAddr = d.ready["http"].as_str().unwrap().parse().unwrap();
    // A reader with a tiny receive buffer that reads nothing for now.
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    sockopt::set_socket_recv_buffer_size(&fd, 2048).unwrap();
    rustix::net::connect(&fd, &addr).unwrap();
    let mut slow = std::net::TcpStream::from(fd);
    write!(
        slow,
        "GET /api/modules/noisy/logs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
        token(&w)
    )
    .unwrap();
    w.cli(&["load", "noisy"]).expect_code(3);
    support::wait_for("noisy's last line in the core's log", COMMAND, || {
        d.proc.stderr_text().contains(" 19999")
    });
    // Now read: the stream ends with `lagged` instead of 4 MB of backlog.
    slow.set_read_timeout(Some(COMMAND)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e} after {} bytes", got.len()),
        }
        // The stream's last chunk (the body ends after the lagged event).
        if got.ends_with(b"\r\n0\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(300)]
    );
    assert!(
        text.contains("event: lagged"),
        "no lagged event in {} bytes",
        got.len()
    );
    assert!(
        !text.contains(" 19999\""),
        "the follower got the whole backlog"
    );
    // The core and the endpoint carry on.
    w.cli(&["list"]).ok();
    let r = get(&format!("{}/healthz", base(&d.ready)), &[]);
    assert_eq!(r.status(), StatusCode::OK);
}
