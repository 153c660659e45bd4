//! Exit codes and messages a person can act on: no core, unknown module (with the known ones
//! and a suggestion), module and method errors with the module's own message, bad arguments,
//! bad config files, usage errors, `--json` error documents.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::World;

#[test]
fn no_core_running_says_where_it_looked_and_how_to_start_one() {
    let w = World::new();
    for args in [
        &["list"][..],
        &["load", "calc"],
        &["unload", "calc"],
        &["reload", "calc"],
        &["info", "calc"],
        &["call", "calc", "add", "1", "2"],
        &["watch"],
        &["stats"],
        &["stop"],
    ] {
        let out = w.cli(args);
        out.expect_code(2);
        let socket = w.socket().display().to_string();
        assert!(
            out.stderr
                .contains(&format!("no core is running at {socket}")),
            "{args:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("logoscore run -m DIR"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
    // With --json a script still gets one document.
    let out = w.cli(&["--json", "list"]);
    out.expect_code(2);
    let doc = out.json();
    assert_eq!(doc["error"]["kind"], "no_core");
    assert_eq!(doc["error"]["exit"], 2);
}

#[test]
fn runtime_dir_comes_from_the_environment_too() {
    let w = World::new();
    let out = support::finish(
        {
            let mut c = std::process::Command::new(support::bin());
            c.arg("list").env("LOGOS_RUNTIME_DIR", &w.runtime);
            c
        },
        support::COMMAND,
    );
    out.expect_code(2);
    assert!(out.stderr.contains("$LOGOS_RUNTIME_DIR"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&w.runtime.display().to_string()),
        "{}",
        out.stderr
    );
}

#[test]
fn errors_name_the_module_the_method_and_the_cause() {
    let w = World::new();
    w.stage_all(&["calc", "kv"]);
    let _d = w.daemon(&["--load", "calc"]);

    // unknown module: exit 3, the known ones listed, the closest suggested
    for args in [
        &["call", "calk", "add", "1", "2"][..],
        &["load", "calk"],
        &["info", "calk"],
        &["watch", "calk"],
        &["unload", "calk"],
    ] {
        let out = w.cli(args);
        out.expect_code(3);
        assert!(out.stderr.contains("calk"), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("calc"), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("kv"),
            "{args:?}: lists known: {}",
            out.stderr
        );
    }

    // not loaded: exit 3
    let out = w.cli(&["call", "kv", "get", "k"]);
    out.expect_code(3);
    assert!(out.stderr.contains("not loaded"), "{}", out.stderr);

    // the module's own error: exit 4 with its message
    let out = w.cli(&["call", "calc", "div", "1", "0"]);
    out.expect_code(4);
    assert!(out.stderr.contains("calc.div"), "{}", out.stderr);
    assert!(out.stderr.contains("division by zero"), "{}", out.stderr);
    let out = w.cli(&["--json", "call", "calc", "div", "1", "0"]);
    out.expect_code(4);
    let doc = out.json();
    assert_eq!(doc["error"]["kind"], "method_failed");
    assert_eq!(doc["error"]["exit"], 4);

    // unknown method and invalid arguments: exit 4
    let out = w.cli(&["call", "calc", "pow", "2", "3"]);
    out.expect_code(4);
    assert!(out.stderr.contains("pow"), "{}", out.stderr);
    let out = w.cli(&["call", "calc", "add", "two", "3"]);
    out.expect_code(4);
    assert!(out.stderr.contains("calc.add"), "{}", out.stderr);

    // a wrong client token: the core refuses (exit 2: this client cannot use the core), and
    // says where the right one is
    std::fs::write(w.token(), format!("{}\n", "ab".repeat(32))).expect("overwrite token");
    let out = w.cli(&["list"]);
    out.expect_code(2);
    assert!(out.stderr.contains("refused this client"), "{}", out.stderr);
    assert!(out.stderr.contains("client.token"), "{}", out.stderr);
    // A token file that is not a token at all is caught before connecting.
    std::fs::write(w.token(), "garbage").expect("overwrite token");
    let out = w.cli(&["list"]);
    out.expect_code(2);
    assert!(out.stderr.contains("64 hex digits"), "{}", out.stderr);
}

#[test]
fn bad_arguments_say_which_and_why() {
    let w = World::new();
    // Checked before connecting: no core is needed to be told.
    let out = w.cli(&["call", "calc", "add", "0x10", "1"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("argument 1 (\"0x10\"): not valid JSON"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("'\"0x10\"'"),
        "shows how to quote: {}",
        out.stderr
    );

    let missing = w.dir.path().join("missing.json");
    let arg = format!("@{}", missing.display());
    let out = w.cli(&["call", "calc", "add", "1", &arg]);
    out.expect_code(1);
    assert!(out.stderr.contains("argument 2"), "{}", out.stderr);
    assert!(out.stderr.contains("missing.json"), "{}", out.stderr);

    let bad = w.write("bad.json", "{oops");
    let arg = format!("json:@{}", bad.display());
    let out = w.cli(&["call", "calc", "add", &arg]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("bad.json is not valid JSON"),
        "{}",
        out.stderr
    );
}

#[test]
fn usage_errors_exit_1_not_2() {
    let w = World::new();
    w.cli(&["frobnicate"]).expect_code(1);
    w.cli(&["call", "calc"]).expect_code(1);
    w.cli(&["load"]).expect_code(1);
    w.cli(&["--timeout", "soon", "list"]).expect_code(1);
    let help = w.cli(&["--help"]);
    help.ok();
    assert!(help.stdout.contains("Exit codes"), "{}", help.stdout);
}

#[test]
fn config_errors_name_the_key_and_the_line() {
    let w = World::new();
    let config = w.write(
        "logoscore.toml",
        "modules_dirs = [\"modules\"]\n\n[modules.calc]\nrestart = \"never\"\ntimeout = \"5s\"\n",
    );
    let out = w.cli(&["run", "-c", &config.display().to_string()]);
    out.expect_code(1);
    let expected = format!(
        "{}:5:1: `modules.calc.timeout`: unknown field `timeout`",
        config.display()
    );
    assert!(out.stderr.contains(&expected), "{}", out.stderr);

    let config = w.write("types.toml", "load_all = \"yes\"\n");
    let out = w.cli(&["run", "-c", &config.display().to_string()]);
    out.expect_code(1);
    assert!(out.stderr.contains("types.toml:1:"), "{}", out.stderr);
    assert!(out.stderr.contains("`load_all`"), "{}", out.stderr);

    let out = w.cli(&["run", "-c", "/nonexistent/logoscore.toml"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("cannot read config file /nonexistent/logoscore.toml"),
        "{}",
        out.stderr
    );
}

#[test]
fn run_refuses_a_missing_modules_dir_and_a_second_core() {
    let w = World::new();
    let out = w.cli(&["run", "-m", "/nonexistent/modules"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("modules dir /nonexistent/modules does not exist"),
        "{}",
        out.stderr
    );

    w.stage("calc");
    let _d = w.daemon(&[]);
    let out = w.cli(&["run", "-m", &w.modules.display().to_string()]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("cannot start the core"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_boot_module_that_cannot_load_stops_run_with_exit_3() {
    let w = World::new();
    w.stage("calc");
    let data = w.data.display().to_string();
    let modules = w.modules.display().to_string();
    let out = w.cli(&["run", "-m", &modules, "--data-dir", &data, "--load", "calk"]);
    out.expect_code(3);
    assert!(
        out.stderr.contains("calc"),
        "suggests the known one: {}",
        out.stderr
    );
    assert!(!w.socket().exists());
}

#[test]
fn a_call_past_its_deadline_is_a_method_error() {
    let w = World::new();
    w.stage("probe");
    let _d = w.daemon(&["--load", "probe"]);
    let out = w.cli(&["--timeout", "300ms", "call", "probe", "sleep", "10000"]);
    out.expect_code(4);
    assert!(out.stderr.contains("probe.sleep"), "{}", out.stderr);
    // The module is still fine afterwards.
    assert_eq!(
        w.cli_json(&["call", "probe", "echo", "[1,2]"])["result"],
        serde_json::json!([1, 2])
    );
}
