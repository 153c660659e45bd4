//! `logoscore bindings` (issue 15): typed clients generated from a module's interface.
//!
//! The Rust client of calc that greeter uses (`modules/greeter/src/calc_client.rs`, committed)
//! must be exactly what the generator makes from the interface calc serves now, and greeter's
//! `sum` goes through it in a real call. Generation is deterministic. Every type mapping
//! (`kitchen_sink.interface.json`) compiles as Rust (in a project made by `logoscore new`,
//! target dir cached under `target/scaffold`), compiles as Python (`py_compile`) and
//! type-checks as TypeScript (`tsc --strict`, installed under `target/npm` from the lockfile in
//! `tests/bindings-ts`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;
use support::{World, finish, target_dir, workspace};

fn generate(w: &World, args: &[&str]) -> String {
    let out = w.cli(&[&["bindings"], args].concat());
    out.ok();
    out.stdout
}

#[test]
fn generated_clients_are_deterministic_current_and_work() {
    let w = World::new();
    w.stage_all(&["greeter", "pyecho"]);
    let _daemon = w.daemon(&["--load", "greeter", "--load", "pyecho"]);

    let rust = generate(&w, &["calc", "--lang", "rust"]);
    assert_eq!(
        rust,
        generate(&w, &["calc", "--lang", "rust"]),
        "not deterministic"
    );
    let committed = workspace().join("modules/greeter/src/calc_client.rs");
    assert_eq!(
        rust,
        std::fs::read_to_string(&committed).unwrap(),
        "{} is stale; regenerate it: logoscore bindings calc --lang rust -o {}",
        committed.display(),
        committed.display()
    );
    assert!(
        rust.contains("pub async fn add(&self, a: i64, b: i64) -> Result<i64, logos_sdk::Fault>")
    );
    // `-o` writes the same bytes.
    let file = w.dir.path().join("calc_client.rs");
    w.cli(&[
        "bindings",
        "calc",
        "--lang",
        "rust",
        "-o",
        file.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), rust);

    // greeter.sum calls calc through the generated client.
    assert_eq!(
        w.cli_json(&["call", "greeter", "sum", "2", "3"])["result"],
        5
    );
    let out = w.cli(&["call", "greeter", "sum", "9223372036854775807", "1"]);
    out.expect_code(4);
    assert!(out.stderr.contains("overflow"), "{}", out.stderr);

    // Python and TypeScript of live interfaces (pyecho has an event and `any` types).
    let dir = w.dir.path();
    let mut py_files = Vec::new();
    let mut ts_files = Vec::new();
    for module in ["calc", "pyecho"] {
        let py = generate(&w, &[module, "--lang", "python"]);
        assert_eq!(py, generate(&w, &[module, "--lang", "python"]));
        let ts = generate(&w, &[module, "--lang", "ts"]);
        assert_eq!(ts, generate(&w, &[module, "--lang", "ts"]));
        py_files.push(dir.join(format!("{module}_client.py")));
        std::fs::write(py_files.last().unwrap(), py).unwrap();
        ts_files.push(dir.join(format!("{module}_client.ts")));
        std::fs::write(ts_files.last().unwrap(), ts).unwrap();
    }
    let pyecho = std::fs::read_to_string(&py_files[1]).unwrap();
    assert!(
        pyecho.contains("async def add(self, a: int, b: int) -> int:"),
        "{pyecho}"
    );
    assert!(
        pyecho.contains("def on_echoed(self, handler: Callable[[Any], Any])"),
        "{pyecho}"
    );
    check_python(&py_files);
    check_typescript(&ts_files);
}

#[test]
fn every_type_mapping_compiles_in_each_language() {
    let w = World::new();
    let iface = workspace().join("crates/logoscore/tests/kitchen_sink.interface.json");
    let iface = iface.to_str().unwrap();
    let dir = w.dir.path();
    let py = dir.join("ks_client.py");
    let ts = dir.join("ks_client.ts");
    for (lang, path) in [("python", &py), ("ts", &ts)] {
        w.cli(&[
            "bindings",
            "kitchen-sink",
            "--lang",
            lang,
            "--interface",
            iface,
            "-o",
            path.to_str().unwrap(),
        ])
        .ok();
    }
    check_python(&[py]);
    check_typescript(&[ts]);

    // Rust: into a fresh module project, built with the project's own settings.
    let project = dir.join("ks-user");
    w.cli(&["new", "ks-user", "--dir", project.to_str().unwrap()])
        .ok();
    let client = project.join("src/ks_client.rs");
    w.cli(&[
        "bindings",
        "kitchen-sink",
        "--lang",
        "rust",
        "--interface",
        iface,
        "-o",
        client.to_str().unwrap(),
    ])
    .ok();
    let lib = project.join("src/lib.rs");
    let mut text = std::fs::read_to_string(&lib).unwrap();
    text.push_str(
        "\n#[allow(dead_code)]\nmod ks_client;\n\n/// Uses the client so its signatures are checked.\npub async fn use_it(ctx: &Context) -> Result<i64, logos_sdk::Fault> {\n    let ks = ks_client::KitchenSinkClient::new(ctx);\n    ks.nothing().await?;\n    let _: Option<Vec<String>> = ks.one(\"x\").await?;\n    let _ = ks.stream_to(\"t\", &logos_sdk::ByteBuf::from(vec![1u8]), &[Some(1.5), None], &Default::default(), &logos_sdk::Value::Null).await?;\n    ks.add(1, 2).await\n}\n",
    );
    std::fs::write(&lib, text).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--all-targets"])
        .current_dir(&project)
        .env(
            "CARGO_TARGET_DIR",
            target_dir().parent().unwrap().join("scaffold"),
        )
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("RUSTFLAGS");
    finish(build, Duration::from_secs(20 * 60)).ok();
}

#[test]
fn a_missing_module_or_bad_interface_is_refused() {
    let w = World::new();
    let bad = w.write("bad.json", r#"{"name": "x", "methods": 5}"#);
    let out = w.cli(&[
        "bindings",
        "x",
        "--lang",
        "rust",
        "--interface",
        bad.to_str().unwrap(),
    ]);
    out.expect_code(1);
    assert!(out.stderr.contains("no methods list"), "{}", out.stderr);
    let out = w.cli(&[
        "bindings",
        "x",
        "--lang",
        "rust",
        "--interface",
        "/nonexistent.json",
    ]);
    out.expect_code(1);
    assert!(out.stderr.contains("/nonexistent.json"), "{}", out.stderr);
}

fn check_python(files: &[std::path::PathBuf]) {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "py_compile"])
        .args(files)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    finish(cmd, Duration::from_secs(60)).ok();
}

fn check_typescript(files: &[std::path::PathBuf]) {
    let modules =
        logos_testkit::npm_install(&workspace().join("crates/logoscore/tests/bindings-ts"));
    let mut tsc = Command::new("node");
    tsc.arg(modules.join("typescript/bin/tsc"))
        .args([
            "--noEmit", "--strict", "--target", "es2020", "--lib", "es2020",
        ])
        .args(files);
    finish(tsc, Duration::from_secs(300)).ok();
}
