//! `logoscore run --http`: a real core serving `/metrics`, scraped while real modules serve
//! calls, crash and restart; the text parsed with a Prometheus parser and checked by
//! `promtool check metrics` (Debian's `prometheus` package, installed when missing), and the
//! figures must move.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
mod web;

use prometheus_parse::{Sample, Scrape, Value};
use std::time::{Duration, Instant};
use support::{COMMAND, World, wait_for};
use web::http;

/// The collector asks modules once a second; give a loaded machine plenty.
const SETTLE: Duration = Duration::from_secs(60);

fn http_base(d: &support::Daemon) -> String {
    web::base(&d.ready)
}

fn scrape_text(base: &str) -> String {
    let r = http().get(format!("{base}/metrics")).send().unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().unwrap()
}

fn scrape(base: &str) -> Scrape {
    let text = scrape_text(base);
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn find<'a>(s: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
}

fn number(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    match &find(s, metric, labels)?.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        _ => None,
    }
}

/// Waits until `metric{labels}` satisfies `ok`, returning the scrape that did.
#[track_caller]
fn until(base: &str, metric: &str, labels: &[(&str, &str)], ok: impl Fn(f64) -> bool) -> Scrape {
    let deadline = Instant::now() + SETTLE;
    loop {
        let s = scrape(base);
        let v = number(&s, metric, labels);
        if v.is_some_and(&ok) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{metric}{labels:?} stayed at {v:?}\n{}",
            scrape_text(base)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `promtool check metrics` (Prometheus's own linter), installed from Debian if missing.
fn promtool(text: &str) {
    use std::io::Write as _;
    let bin = logos_testkit::apt::promtool();
    let mut child = std::process::Command::new(&bin)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n--- the text\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_follow_calls_crashes_and_restarts() {
    let w = World::new();
    w.stage_all(&["calc", "chat", "probe", "relay"]);
    let d = w.daemon(&[
        "--http",
        "127.0.0.1:0",
        "--load",
        "calc",
        "--load",
        "chat",
        "--load",
        "probe",
        "--load",
        "relay",
    ]);
    let base = http_base(&d);
    assert_eq!(
        http()
            .get(format!("{base}/healthz"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "ok\n"
    );

    for i in 0..5 {
        w.cli(&["call", "calc", "add", &i.to_string(), "1"]).ok();
    }
    w.cli(&["call", "calc", "div", "1", "0"]).expect_code(4);
    w.cli(&["call", "calc", "add", "x", "1"]).expect_code(4);
    // Made-up names never become series of their own.
    for name in ["nope", "also-nope", "zz"] {
        w.cli(&["call", "calc", name]).expect_code(4);
    }
    w.cli(&["call", "chat", "send", "ada", "hi"]).ok();
    // A token probe's metadata does not grant: a policy denial.
    w.cli(&["call", "probe", "requestToken", "calc"])
        .expect_code(3);
    // 100 000 bytes from probe to relay over a stream.
    w.cli(&["call", "probe", "streamTo", "relay", "sink", "100000"])
        .ok();

    let add_ok = [("module", "calc"), ("method", "add"), ("outcome", "ok")];
    let s = until(&base, "logos_calls_total", &add_ok, |v| v >= 5.0);
    let calc = [("module", "calc")];
    assert_eq!(number(&s, "logos_module_up", &calc), Some(1.0));
    assert_eq!(
        number(
            &s,
            "logos_module_state",
            &[("module", "calc"), ("state", "ready")]
        ),
        Some(1.0)
    );
    assert_eq!(
        number(
            &s,
            "logos_module_state",
            &[("module", "calc"), ("state", "crashed")]
        ),
        Some(0.0)
    );
    assert!(number(&s, "logos_module_rss_bytes", &calc).is_some_and(|v| v > 0.0));
    assert!(number(&s, "logos_module_cpu_seconds_total", &calc).is_some());
    let s = until(
        &base,
        "logos_calls_total",
        &[
            ("module", "calc"),
            ("method", "div"),
            ("outcome", "method_failed"),
        ],
        |v| v == 1.0,
    );
    assert_eq!(
        number(
            &s,
            "logos_calls_total",
            &[
                ("module", "calc"),
                ("method", "add"),
                ("outcome", "invalid_args")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        number(
            &s,
            "logos_calls_total",
            &[
                ("module", "calc"),
                ("method", "other"),
                ("outcome", "unknown_method")
            ]
        ),
        Some(3.0)
    );
    let methods: std::collections::BTreeSet<&str> = s
        .samples
        .iter()
        .filter(|x| x.metric == "logos_calls_total" && x.labels.get("module") == Some("calc"))
        .filter_map(|x| x.labels.get("method"))
        .collect();
    assert_eq!(
        methods,
        ["add", "div", "other"].into(),
        "methods come from the interface only"
    );
    // The duration histogram of add: 6 calls (5 ok, 1 invalid), cumulative buckets.
    let hist = find(
        &s,
        "logos_call_duration_seconds",
        &[("module", "calc"), ("method", "add")],
    )
    .unwrap_or_else(|| panic!("no histogram for calc.add\n{}", scrape_text(&base)));
    let Value::Histogram(buckets) = &hist.value else {
        panic!("{hist:?}")
    };
    let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
    assert_eq!(inf.count, 6.0);
    assert!(
        buckets.windows(2).all(|b| b[0].count <= b[1].count),
        "{buckets:?}"
    );
    assert_eq!(
        number(
            &s,
            "logos_call_duration_seconds_count",
            &[("module", "calc"), ("method", "add")]
        ),
        Some(6.0)
    );

    let s = until(&base, "logos_events_total", &[("module", "chat")], |v| {
        v >= 1.0
    });
    assert!(number(&s, "logos_events_total", &[("module", "core")]).is_some_and(|v| v > 0.0));
    assert_eq!(
        number(
            &s,
            "logos_policy_denials_total",
            &[("caller", "probe"), ("target", "calc")]
        ),
        Some(1.0)
    );
    let s = until(
        &base,
        "logos_stream_bytes_total",
        &[("module", "relay"), ("direction", "in")],
        |v| v >= 100_000.0,
    );
    assert!(
        number(
            &s,
            "logos_stream_bytes_total",
            &[("module", "probe"), ("direction", "out")]
        )
        .is_some_and(|v| v >= 100_000.0)
    );
    assert_eq!(
        number(&s, "logos_streams_open", &[("module", "probe")]),
        Some(0.0)
    );

    // Kill calc: it crashes, restarts, and its call totals survive the new process.
    let pid = w
        .pids()
        .into_iter()
        .find(|(n, _)| n == "calc")
        .map(|(_, p)| p)
        .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let s = until(&base, "logos_module_crashes_total", &calc, |v| v == 1.0);
    let _ = s;
    let s = until(&base, "logos_module_restarts_total", &calc, |v| v == 1.0);
    let _ = s;
    wait_for("calc ready again", SETTLE, || {
        w.pids().iter().any(|(n, p)| n == "calc" && *p != pid)
    });
    w.cli(&["call", "calc", "add", "1", "1"]).ok();
    let s = until(&base, "logos_calls_total", &add_ok, |v| v >= 6.0);
    assert_eq!(
        number(&s, "logos_calls_total", &add_ok),
        Some(6.0),
        "5 before the crash, 1 after"
    );
    assert_eq!(number(&s, "logos_module_up", &calc), Some(1.0));
    // The restart ran in the spare host the core kept for the next library module
    // (docs/architecture.md, "Spare hosts"); the first starts were cold.
    let s = until(
        &base,
        "logos_module_starts_total",
        &[("way", "spare")],
        |v| v >= 1.0,
    );
    assert!(number(&s, "logos_module_starts_total", &[("way", "cold")]).is_some_and(|v| v >= 1.0));
    // The modules beat on their heartbeat pages (docs/architecture.md §9).
    until(&base, "logos_heartbeats_total", &[("way", "page")], |v| {
        v >= 1.0
    });

    // Calls the core answers for a module that is down count too.
    w.cli(&["unload", "calc"]).ok();
    w.cli(&["call", "calc", "add", "1", "1"]).expect_code(3);
    let s = until(
        &base,
        "logos_calls_total",
        &[
            ("module", "calc"),
            ("method", "add"),
            ("outcome", "not_loaded"),
        ],
        |v| v == 1.0,
    );
    assert_eq!(number(&s, "logos_module_up", &calc), Some(0.0));
    assert_eq!(
        number(
            &s,
            "logos_module_state",
            &[("module", "calc"), ("state", "stopped")]
        ),
        Some(1.0)
    );

    // Scrape cost, for the record (not a timed assertion).
    let start = Instant::now();
    let text = scrape_text(&base);
    eprintln!("scrape of {} bytes took {:?}", text.len(), start.elapsed());
    promtool(&text);
}

#[test]
fn http_refuses_non_loopback_and_bad_addresses() {
    let w = World::new();
    let mut cmd = w.command();
    cmd.args(["run", "--http", "0.0.0.0:0", "-m"])
        .arg(&w.modules);
    let out = support::finish(cmd, COMMAND);
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("not a loopback address") && out.stderr.contains("--http-insecure"),
        "{}",
        out.stderr
    );
    assert!(
        !w.runtime.join("core.sock").exists(),
        "the core is stopped again"
    );

    let out = w.cli(&[
        "run",
        "--http",
        "nowhere",
        "-m",
        &w.modules.display().to_string(),
    ]);
    out.expect_code(1);
    assert!(out.stderr.contains("127.0.0.1:9464"), "{}", out.stderr);

    let cfg = w.write("bad.toml", "http = 9464\n");
    let out = w.cli(&[
        "run",
        "-c",
        &cfg.display().to_string(),
        "-m",
        &w.modules.display().to_string(),
    ]);
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("http"), "{}", out.stderr);

    let out = w.cli(&[
        "run",
        "--http-insecure",
        "-m",
        &w.modules.display().to_string(),
    ]);
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("--http ADDR"), "{}", out.stderr);
}

#[test]
fn http_from_the_config_file() {
    let w = World::new();
    w.stage("calc");
    let cfg = w.write(
        "logoscore.toml",
        "http = \"127.0.0.1:0\"\nload = [\"calc\"]\n",
    );
    let d = w.daemon(&["-c", &cfg.display().to_string()]);
    let base = http_base(&d);
    until(&base, "logos_module_up", &[("module", "calc")], |v| {
        v == 1.0
    });
}
