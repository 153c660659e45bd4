//! `logoscore run` without `-m` (issue 9, part 5): the first of `$XDG_DATA_HOME/logos/modules`
//! and `/usr/local/lib/logos/modules` that exists is the modules dir; `run` says which it used,
//! and how to add modules when it holds none or none exists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use support::{Daemon, World};

/// `logoscore --json run --data-dir <data>` (no -m) with `$XDG_DATA_HOME` = `xdg`.
fn run_without_m(w: &World, xdg: &Path) -> Daemon {
    let mut cmd = w.command();
    cmd.env("XDG_DATA_HOME", xdg)
        .args(["--json", "run", "--data-dir"])
        .arg(&w.data);
    let mut d = Daemon::spawn(cmd);
    d.ready = d.wait_ready();
    d
}

#[test]
fn the_default_modules_dir_is_used_and_named() {
    let w = World::new();
    let xdg = w.dir.path().join("xdg");
    let dir = xdg.join("logos/modules");
    std::fs::create_dir_all(&dir).unwrap();
    logos_testkit::stage_module(&dir, "calc");
    let d = run_without_m(&w, &xdg);
    assert_eq!(d.ready["modulesDirs"], serde_json::json!([dir]));
    assert_eq!(d.ready["known"], 1);
    d.proc.wait_stderr(
        &format!("modules dir {} (the default", dir.display()),
        support::COMMAND,
    );
    w.cli(&["load", "calc"]).ok();
}

#[test]
fn an_empty_default_modules_dir_says_how_to_add_modules() {
    let w = World::new();
    let xdg = w.dir.path().join("xdg");
    let dir = xdg.join("logos/modules");
    std::fs::create_dir_all(&dir).unwrap();
    let d = run_without_m(&w, &xdg);
    assert_eq!(d.ready["known"], 0);
    d.proc.wait_stderr("holds no modules", support::COMMAND);
    d.proc
        .wait_stderr("<dir>/<name>/metadata.json", support::COMMAND);
    assert!(d.proc.stderr_text().contains(&dir.display().to_string()));
}

#[test]
fn no_default_modules_dir_says_where_it_looked() {
    let w = World::new();
    let xdg = w.dir.path().join("nothing-here");
    let d = run_without_m(&w, &xdg);
    let usr = Path::new("/usr/local/lib/logos/modules");
    if usr.is_dir() {
        // This machine has one: it is what run uses.
        assert_eq!(d.ready["modulesDirs"], serde_json::json!([usr]));
    } else {
        assert_eq!(d.ready["modulesDirs"], serde_json::json!([]));
        d.proc
            .wait_stderr("none of the defaults exists", support::COMMAND);
        let err = d.proc.stderr_text();
        assert!(
            err.contains(&xdg.join("logos/modules").display().to_string()),
            "{err}"
        );
        assert!(err.contains("/usr/local/lib/logos/modules"), "{err}");
    }
}
