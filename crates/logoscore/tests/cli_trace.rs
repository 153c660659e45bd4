//! `logoscore trace` (issue 15): spans of calls across modules, assembled into call trees by
//! the core, shown by the CLI and exported to an OTLP collector.
//!
//! A real daemon with greeter, calc and pyecho: `greeter.sum` calls `calc.add` through its
//! typed client, and the tree `greeter.sum → calc.add` shows with both durations (text and
//! `--json`), with the nested error when calc fails, filtered by `--module` and `--slow`; a
//! Python module's spans appear too; the ring keeps no more than its configured size; and
//! `--otlp` sends the spans to a collector stand-in on 127.0.0.1 (a small HTTP server in this
//! test decoding `ExportTraceServiceRequest` with `opentelemetry-proto`), parent links intact.
//! Spans reach the core asynchronously (batched every 100 ms), so every check waits, with a
//! deadline, for the tree it expects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use prost::Message as _;
use serde_json::Value as Json;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::time::{Duration, Instant};
use support::{World, wait_for};

const DEADLINE: Duration = Duration::from_secs(30);

/// The trees `logoscore --json trace ARGS` returns.
fn trees(w: &World, args: &[&str]) -> Vec<Json> {
    let doc = w.cli_json(&[&["trace"], args].concat());
    doc["traces"].as_array().cloned().unwrap_or_default()
}

/// The first tree whose root is `call` and that has `children` children, waiting for it.
fn wait_tree(w: &World, args: &[&str], call: &str, children: usize) -> Json {
    let mut found = None;
    wait_for(&format!("a {call} tree"), DEADLINE, || {
        // Complete: the callee of every call reported its span too.
        found = trees(w, args).into_iter().find(|t| {
            let kids = t["root"]["children"].as_array();
            t["root"]["call"] == call
                && t["root"]["served_by"].is_string()
                && kids.map(Vec::len) == Some(children)
                && kids.is_some_and(|k| k.iter().all(|c| c["served_by"].is_string()))
        });
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn greeter_sum_shows_as_a_tree_with_both_durations_errors_and_filters() {
    let w = World::new();
    w.stage_all(&["greeter", "pyecho"]);
    let _daemon = w.daemon(&["--load", "greeter", "--load", "pyecho"]);

    assert_eq!(w.call_result("greeter", &["sum", "2", "3"]), 5);
    let tree = wait_tree(&w, &["--module", "greeter"], "greeter.sum", 1);
    let root = &tree["root"];
    assert_eq!(root["caller"], "core", "{root}");
    assert_eq!(root["served_by"], "greeter", "{root}");
    assert!(root["duration_ns"].as_u64().unwrap() > 0, "{root}");
    assert!(root["served_ns"].as_u64().unwrap() > 0, "{root}");
    let add = &root["children"][0];
    assert_eq!(add["call"], "calc.add", "{root}");
    assert_eq!(add["caller"], "greeter", "{add}");
    assert_eq!(add["served_by"], "calc", "{add}");
    assert!(add["duration_ns"].as_u64().unwrap() > 0, "{add}");
    assert!(add["served_ns"].as_u64().unwrap() > 0, "{add}");
    assert!(
        root["duration_ns"].as_u64() >= add["duration_ns"].as_u64(),
        "the caller's call contains the nested one: {root}"
    );
    assert!(add["error"].is_null(), "{add}");

    // The text form: caller → callee, nested, both durations.
    let out = w.cli(&["trace", "--module", "calc"]);
    out.ok();
    let text = &out.stdout;
    let sum_line = text
        .lines()
        .find(|l| l.starts_with("greeter.sum"))
        .unwrap_or_else(|| panic!("no greeter.sum line in:\n{text}"));
    let add_line = text
        .lines()
        .find(|l| l.starts_with("└─ calc.add"))
        .unwrap_or_else(|| panic!("no nested calc.add line in:\n{text}"));
    for (line, who) in [(sum_line, "core → greeter"), (add_line, "greeter → calc")] {
        assert!(line.contains(who), "{line}");
        assert!(line.contains("served in"), "{line}");
        assert!(
            line.contains("ms") || line.contains("µs"),
            "a duration: {line}"
        );
    }

    // An error in the nested call shows on its node (and on the root's, which it failed).
    w.cli(&["call", "greeter", "sum", "9223372036854775807", "1"])
        .expect_code(4);
    let mut failed = None;
    wait_for("the failed greeter.sum tree", DEADLINE, || {
        failed = trees(&w, &["--module", "greeter"]).into_iter().find(|t| {
            t["root"]["error"].is_string() && t["root"]["children"][0]["served_by"] == "calc"
        });
        failed.is_some()
    });
    let failed = failed.unwrap();
    let nested = &failed["root"]["children"][0];
    assert_eq!(nested["call"], "calc.add", "{failed}");
    let error = nested["error"].as_str().unwrap();
    assert!(
        error.starts_with("method_failed") && error.contains("overflow"),
        "{error}"
    );
    let text = w.cli(&["trace", "--module", "greeter"]).stdout;
    assert!(
        text.lines()
            .any(|l| l.starts_with("└─ calc.add") && l.contains("ERROR method_failed")),
        "{text}"
    );

    // --module keeps only trees the module took part in; --slow only slow roots.
    assert!(trees(&w, &["--module", "chat"]).is_empty());
    assert!(trees(&w, &["--module", "greeter", "--slow", "60s"]).is_empty());
    assert!(!trees(&w, &["--module", "greeter", "--slow", "0ms"]).is_empty());
    assert_eq!(trees(&w, &["--limit", "1"]).len(), 1);
    let bad = w.cli(&["trace", "--slow", "ten"]);
    bad.expect_code(1); // a usage error
    assert!(bad.stderr.contains("not a duration"), "{}", bad.stderr);

    // A Python module's spans: pyecho serves and reports with the Python SDK.
    w.call_result("pyecho", &["upper", "abc"]);
    let py = wait_tree(&w, &["--module", "pyecho"], "pyecho.upper", 0);
    assert_eq!(py["root"]["served_by"], "pyecho", "{py}");
    assert!(py["root"]["served_ns"].as_u64().unwrap() > 0, "{py}");
    w.cli(&["call", "pyecho", "fail", "boom"]).expect_code(4);
    let mut py_err = None;
    wait_for("pyecho.fail with its error", DEADLINE, || {
        py_err = trees(&w, &["--module", "pyecho"])
            .into_iter()
            .find(|t| t["root"]["call"] == "pyecho.fail");
        py_err
            .as_ref()
            .is_some_and(|t| t["root"]["served_by"] == "pyecho")
    });
    let py_err = py_err.unwrap();
    assert_eq!(py_err["root"]["error"], "method_failed: boom", "{py_err}");
}

#[test]
fn the_ring_keeps_no_more_than_its_size() {
    let w = World::new();
    w.stage_all(&["greeter"]);
    // 4 spans per greeter.sum (core, greeter ×2, calc): 10 spans hold 2 whole calls at most.
    let _daemon = w.daemon_config("spans = 10\n", &["--load", "greeter"]);
    for i in 0..6 {
        w.call_result("greeter", &["sum", &i.to_string(), "1"]);
    }
    wait_for("evictions", DEADLINE, || {
        let doc = w.cli_json(&["trace"]);
        doc["evicted"].as_u64().unwrap_or(0) > 0
    });
    let doc = w.cli_json(&["trace"]);
    assert_eq!(doc["capacity"], 10, "{doc}");
    assert!(doc["spans"].as_u64().unwrap() <= 10, "{doc}");
}

#[test]
fn spans_off_records_nothing() {
    let w = World::new();
    w.stage_all(&["greeter"]);
    let _daemon = w.daemon_config("spans = 0\n", &["--load", "greeter"]);
    assert_eq!(w.call_result("greeter", &["sum", "1", "1"]), 2);
    let doc = w.cli_json(&["trace"]);
    assert_eq!(doc["spans"], 0, "{doc}");
    assert_eq!(doc["capacity"], 0, "{doc}");
    assert!(w.cli(&["trace"]).stdout.contains("no call trees"));
}

/// One HTTP/1.1 request on `listener`: its path and body; answers 200 with an empty
/// `ExportTraceServiceResponse`.
fn collect_one(listener: &TcpListener) -> (String, Vec<u8>) {
    let (stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    let mut stream = stream;
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
    (path, body)
}

#[test]
fn otlp_export_reaches_a_collector_with_parent_links() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    let w = World::new();
    w.stage_all(&["greeter"]);
    let _daemon = w.daemon(&["--load", "greeter"]);
    assert_eq!(w.call_result("greeter", &["sum", "20", "22"]), 42);
    wait_tree(&w, &[], "greeter.sum", 1);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // The CLI exports one request per module (its own resource): core, greeter, calc.
    let collector = std::thread::spawn(move || {
        let started = Instant::now();
        let mut got = Vec::new();
        while got.len() < 3 && started.elapsed() < DEADLINE {
            got.push(collect_one(&listener));
        }
        got
    });
    let out = w.cli(&["trace", "--otlp", &url]);
    out.ok();
    assert!(out.stdout.contains("exported 4 spans"), "{}", out.stdout);
    let requests = collector.join().unwrap();

    let mut spans = Vec::new();
    for (path, body) in &requests {
        assert_eq!(path, "/v1/traces");
        let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push((service.clone(), s));
                }
            }
        }
    }
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let by_name = |service: &str, name: &str, kind: i32| {
        spans
            .iter()
            .find(|(svc, s)| svc.contains(service) && s.name == name && s.kind == kind)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("no {name} span of {service} (kind {kind}) in {spans:#?}"))
    };
    // SpanKind: 2 server, 3 client.
    let root = by_name("core", "greeter.sum", 3);
    let sum = by_name("greeter", "greeter.sum", 2);
    let call_add = by_name("greeter", "calc.add", 3);
    let add = by_name("calc", "calc.add", 2);
    assert!(
        root.parent_span_id.is_empty(),
        "the core's span is the root"
    );
    assert_eq!(sum.parent_span_id, root.span_id);
    assert_eq!(call_add.parent_span_id, sum.span_id);
    assert_eq!(add.parent_span_id, call_add.span_id);
    for s in [&root, &sum, &call_add, &add] {
        assert_eq!(s.trace_id, root.trace_id);
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
    }
}
