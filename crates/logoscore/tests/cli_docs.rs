//! Shell completions and man pages generated from the clap definitions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::World;

#[test]
fn completions_for_each_shell() {
    let w = World::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = w.cli(&["completions", shell]);
        out.ok();
        assert!(out.stdout.contains("logoscore"), "{shell}");
        for sub in ["run", "watch", "unload"] {
            assert!(out.stdout.contains(sub), "{shell} lacks {sub}");
        }
    }
    w.cli(&["completions", "tcsh"]).expect_code(1);
}

#[test]
fn man_page_on_stdout_and_per_command_files() {
    let w = World::new();
    let out = w.cli(&["man"]);
    out.ok();
    assert!(
        out.stdout.starts_with(".ie") || out.stdout.contains(".TH logoscore"),
        "{}",
        &out.stdout[..out.stdout.len().min(200)]
    );
    assert!(out.stdout.contains("Exit codes"));
    let dir = w.dir.path().join("man");
    w.cli(&["man", "--out-dir", &dir.display().to_string()])
        .ok();
    for page in [
        "logoscore.1",
        "logoscore-run.1",
        "logoscore-call.1",
        "logoscore-watch.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap_or_default();
        assert!(text.contains(".TH"), "{page}: {text}");
    }
}
