//! Every form of a `call` argument, end to end through a real core to `pyecho` (`echo(v)`
//! returns `v`), so what arrives is what the form promises: JSON values, words, `-words`,
//! `json:`, `json:@file`, `json:@-`, `str:`, `@file`, `@-`, bytes as `{"_bytes"}` and
//! `{"$bytes"}`, `--`, and refusals (unknown prefixes, number-like text) that never reach the
//! module.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::io::Write as _;
use std::process::Stdio;
use support::{COMMAND, Outcome, Proc, World};

/// `call pyecho echo ARG --json`: the echoed result.
fn echo(w: &World, arg: &str) -> serde_json::Value {
    let doc = w.cli_json(&["call", "pyecho", "echo", "--", arg]);
    assert_eq!(doc["status"], "ok", "{doc}");
    doc["result"].clone()
}

/// `call pyecho echo ARG` with `input` on standard input.
fn echo_stdin(w: &World, arg: &str, input: &str) -> Outcome {
    let mut cmd = w.command();
    cmd.args(["--json", "call", "pyecho", "echo", arg])
        .stdin(Stdio::piped());
    let mut p = Proc::spawn(&mut cmd);
    let mut stdin = p.child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let status = p.wait(COMMAND).expect("finishes");
    Outcome {
        code: status.code(),
        stdout: p.stdout_rest(COMMAND),
        stderr: p.stderr_text(),
    }
}

#[test]
fn every_argument_form_arrives_as_promised() {
    let w = World::new();
    w.stage("pyecho");
    let _d = w.daemon(&["--load", "pyecho"]);

    // JSON values, plain words, words starting with a dash.
    for (arg, want) in [
        ("2", json!(2)),
        ("-7", json!(-7)),
        ("2.5", json!(2.5)),
        ("18446744073709551615", json!(u64::MAX)),
        ("-9223372036854775808", json!(i64::MIN)),
        ("true", json!(true)),
        ("null", json!(null)),
        ("\"42\"", json!("42")),
        ("[1,\"a\",{\"k\":[true]}]", json!([1, "a", {"k": [true]}])),
        ("Ada", json!("Ada")),
        ("hello world", json!("hello world")),
        ("-x", json!("-x")),
        ("--json", json!("--json")),
        ("key:value", json!("key:value")),
    ] {
        assert_eq!(echo(&w, arg), want, "{arg}");
    }

    // json: and str:
    assert_eq!(echo(&w, "json:[1,2,3]"), json!([1, 2, 3]));
    assert_eq!(
        echo(&w, "json:{\"retries\":3,\"debug\":true}"),
        json!({"retries": 3, "debug": true})
    );
    assert_eq!(echo(&w, "json:\"x\""), json!("x"));
    assert_eq!(echo(&w, "str:42"), json!("42"));
    assert_eq!(echo(&w, "str:json:literal"), json!("json:literal"));
    assert_eq!(echo(&w, "str:@x"), json!("@x"));
    assert_eq!(echo(&w, "str:"), json!(""));

    // Files: @FILE is the raw text, json:@FILE one JSON value.
    let file = w.write("config.json", "{\"k\": [1, 2]}\n");
    assert_eq!(
        echo(&w, &format!("@{}", file.display())),
        json!("{\"k\": [1, 2]}\n")
    );
    assert_eq!(
        echo(&w, &format!("json:@{}", file.display())),
        json!({"k": [1, 2]})
    );
    let out = echo_stdin(&w, "@-", "raw text\n");
    out.ok();
    assert_eq!(out.json()["result"], "raw text\n");
    let out = echo_stdin(&w, "json:@-", "[1, 2]");
    out.ok();
    assert_eq!(out.json()["result"], json!([1, 2]));

    // Bytes in both spellings arrive as bytes; results show the reference's _bytes form.
    assert_eq!(
        echo(&w, "json:{\"_bytes\":\"aGVsbG8\"}"),
        json!({"_bytes": "aGVsbG8"})
    );
    assert_eq!(echo(&w, "{\"$bytes\":\"00ff\"}"), json!({"_bytes": "AP8"}));
    assert_eq!(
        echo(&w, "json:[{\"_bytes\":\"AAGAgP8\"}]"),
        json!([{"_bytes": "AAGAgP8"}])
    );
    let text = w.cli(&["call", "pyecho", "echo", "json:{\"_bytes\":\"aGk\"}"]);
    text.ok();
    assert_eq!(text.stdout, "{\"_bytes\":\"aGk\"}\n");

    // After `--`, a flag's spelling is an argument; before it, --json is the flag.
    let doc = w.cli_json(&["call", "pyecho", "echo", "--", "-j"]);
    assert_eq!(doc["result"], "-j");
    let out = w.cli(&["call", "pyecho", "echo", "x", "--json"]);
    out.ok();
    assert_eq!(out.json()["result"], "x");

    // Refused before anything is sent (exit 1), saying how to send it as text.
    for (arg, says) in [
        ("jsn:[1,2,3]", "looks like a prefix"),
        ("JSON:[1]", "looks like a prefix"),
        ("int:5", "looks like a prefix"),
        ("0x10", "not valid JSON"),
        ("01", "not valid JSON"),
        ("json:[1,", "not valid JSON"),
        ("json:{\"_bytes\":\"***\"}", "not base64url"),
        ("{\"$bytes\":\"zz\"}", "not hex"),
    ] {
        let out = w.cli(&["call", "pyecho", "echo", arg]);
        out.expect_code(1);
        assert!(out.stderr.contains(says), "{arg}: {}", out.stderr);
        assert!(out.stderr.contains("argument 1"), "{arg}: {}", out.stderr);
    }
    let out = w.cli(&["call", "pyecho", "echo", "jsn:[1]"]);
    assert!(out.stderr.contains("'str:jsn:[1]'"), "{}", out.stderr);
}
