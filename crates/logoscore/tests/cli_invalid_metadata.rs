//! Issue 9, parts 2–4: a module whose metadata is at fault is named with that fault, not "not
//! known", by `load`, `info`, `call` and `run --load` (exit 3, `kind: invalid_metadata` with
//! `--json`), for every kind of fault: bad JSON, bad version, `main` outside the module dir,
//! bad range, wrong name, unknown type, missing `main` and default library, unknown permission;
//! also through a dependency. RFC-verbatim metadata (no `main`) loads and runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::World;

/// Module dir name, metadata.json, and what the fault must say after `<modules>/<dir>/`.
fn broken() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (
            "badjson",
            r#"{"name": "badjson", "version": "1.0.0",,}"#,
            "metadata.json:1:40: invalid JSON: ",
        ),
        (
            "badversion",
            r#"{"name": "badversion", "version": "1.0", "main": "metadata.json"}"#,
            r#"metadata.json: field "version": "1.0" is not a semver version (expected e.g. "1.2.0")"#,
        ),
        (
            "outside",
            r#"{"name": "outside", "version": "1.0.0", "main": "../calc/metadata.json"}"#,
            r#"metadata.json: field "main": "../calc/metadata.json" leaves the module directory"#,
        ),
        (
            "badrange",
            r#"{"name": "badrange", "version": "1.0.0", "main": "metadata.json", "dependencies": {"calc": "^^1"}}"#,
            r#"metadata.json: field "dependencies/calc": "^^1" is not a semver range"#,
        ),
        (
            "wrongname",
            r#"{"name": "other", "version": "1.0.0", "main": "metadata.json"}"#,
            r#"metadata.json: field "name": "other" differs from the module's directory name "wrongname""#,
        ),
        (
            "badtype",
            r#"{"name": "badtype", "version": "1.0.0", "main": "metadata.json", "type": "croe"}"#,
            r#"metadata.json: field "type": "croe" is not a module type (accepted: "core""#,
        ),
        (
            "nomain",
            r#"{"name": "nomain", "version": "1.0.0", "type": "core", "dependencies": []}"#,
            r#"metadata.json: field "main": is missing, and the default "libnomain.so" is not in"#,
        ),
    ]
}

#[test]
fn each_metadata_fault_is_named_by_load_info_and_call() {
    let w = World::new();
    w.stage_all(&["calc", "kv"]);
    for (dir, json, _) in broken() {
        w.write_metadata(dir, json);
    }
    let _d = w.daemon(&[]);
    let modules = w.modules.display().to_string();

    for (dir, _, fault) in broken() {
        let expected = format!("{dir}: {modules}/{dir}/{fault}");
        for args in [
            &["load", dir][..],
            &["info", dir],
            &["call", dir, "anything", "1"],
        ] {
            let out = w.cli(args);
            out.expect_code(3);
            assert!(
                out.stderr.contains(&expected),
                "{args:?} should say\n  {expected}\nbut said\n  {}",
                out.stderr
            );
            assert!(
                !out.stderr.contains("is not known"),
                "{args:?}: {}",
                out.stderr
            );

            let mut json = vec!["--json"];
            json.extend_from_slice(args);
            let out = w.cli(&json);
            out.expect_code(3);
            let doc = out.json();
            assert_eq!(doc["error"]["kind"], "invalid_metadata", "{args:?}: {doc}");
            assert_eq!(doc["error"]["exit"], 3, "{args:?}");
            let message = doc["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(&expected), "{args:?}: {message}");
        }
    }

    // A name nobody has is still "not known", with the known ones listed.
    let out = w.cli(&["--json", "load", "nothere"]);
    out.expect_code(3);
    assert_eq!(out.json()["error"]["kind"], "unknown_module");
}

#[test]
fn a_fault_in_a_dependency_names_the_chain_and_the_dependency_s_file() {
    let w = World::new();
    w.stage("calc");
    let (dir, json, fault) = broken()[1];
    w.write_metadata(dir, json);
    logos_testkit::write_script_module(&w.modules, "needsit", r#"["badversion"]"#, "exit 0");
    let _d = w.daemon(&[]);
    let out = w.cli(&["--json", "load", "needsit"]);
    out.expect_code(3);
    let doc = out.json();
    assert_eq!(doc["error"]["kind"], "invalid_metadata", "{doc}");
    let expected = format!(
        "needsit -> badversion: {}/{dir}/{fault}",
        w.modules.display()
    );
    let message = doc["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&expected), "{message}");
}

#[test]
fn an_unknown_permission_fails_the_load_listing_the_known_ones() {
    let w = World::new();
    w.stage_all(&["calc", "chat"]);
    logos_testkit::write_metadata(
        &w.modules,
        "greedy",
        r#"{"name": "greedy", "version": "1.0.0", "main": "run.sh", "restart": "never",
            "permissions": ["chat", "root-everything", "cal"]}"#,
    );
    let script = w.modules.join("greedy/run.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _d = w.daemon(&[]);

    let out = w.cli(&["load", "greedy"]);
    out.expect_code(3);
    let path = format!("{}/greedy/metadata.json", w.modules.display());
    for part in [
        format!("greedy: {path}: 2 problems"),
        r#"field "permissions/1": "root-everything" is not a known permission (known: core, capability_module, calc, chat, greedy)"#.to_owned(),
        r#"field "permissions/2": "cal" is not a known permission"#.to_owned(),
        r#"did you mean "calc"?"#.to_owned(),
    ] {
        assert!(out.stderr.contains(&part), "should say {part}:\n{}", out.stderr);
    }
    let out = w.cli(&["--json", "load", "greedy"]);
    out.expect_code(3);
    assert_eq!(out.json()["error"]["kind"], "invalid_metadata");
    // Nothing was started.
    let list = w.cli_json(&["list"]);
    let greedy = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "greedy")
        .expect("greedy is known");
    assert!(greedy["pid"].is_null(), "{greedy}");
}

#[test]
fn run_load_of_a_module_with_invalid_metadata_exits_3_with_the_fault() {
    let w = World::new();
    w.stage("calc");
    let (dir, json, fault) = broken()[1];
    w.write_metadata(dir, json);
    let mut cmd = w.command();
    cmd.arg("run")
        .arg("-m")
        .arg(&w.modules)
        .arg("--data-dir")
        .arg(&w.data)
        .args(["--load", "calc", "--load", dir]);
    let out = support::finish(cmd, support::READY);
    out.expect_code(3);
    let expected = format!("{dir}: {}/{dir}/{fault}", w.modules.display());
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
}

/// The RFC's example metadata.json shape, verbatim: no `main` (so `lib<name>.so`),
/// dependencies as a plain list, `capabilities` and `include` lists.
#[test]
fn rfc_verbatim_metadata_loads_and_runs() {
    let w = World::new();
    for (name, deps) in [
        ("calc", "[]"),
        ("chat", "[]"),
        ("greeter", r#"["calc", "chat"]"#),
    ] {
        let dir = w.write_metadata(
            name,
            &format!(
                r#"{{
  "name": "{name}",
  "version": "1.0.0",
  "description": "Module description",
  "author": "Author name",
  "type": "core",
  "dependencies": {deps},
  "capabilities": ["capability_provided"],
  "include": ["external_lib.so", "resources/"]
}}"#
            ),
        );
        let lib = format!("lib{name}.so");
        std::os::unix::fs::symlink(support::target_dir().join(&lib), dir.join(&lib)).unwrap();
    }
    let _d = w.daemon(&["--load", "greeter"]);
    let out = w.cli_json(&["call", "calc", "add", "2", "3"]);
    assert_eq!(out["result"], serde_json::json!(5));
    let out = &w.cli_json(&["call", "greeter", "greet", "Ada"])["result"];
    assert!(out.as_str().is_some_and(|s| s.contains("Ada")), "{out}");
}
