//! The files that make a module (issue 10, item 11; docs/security.md, "Process hygiene"):
//! `main` reached through links another user owns is refused, the operator's own links (how
//! modules are staged) keep working, and a FIFO named `metadata.json` cannot stall discovery.
//!
//! Files owned by another uid can only be made as root, which is how these tests run (CI runs
//! as root); as another user they fail saying so rather than pass without checking.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use logos_core::Manifest;
use std::os::unix::fs::symlink;
use std::time::Duration;
use support::{World, target_dir};

const OTHER_UID: u32 = 12345;

fn module_with_linked_main(w: &World, name: &str) -> std::path::PathBuf {
    let dir = w.write_metadata(
        name,
        &format!(r#"{{"name":"{name}","version":"1.0.0","main":"run.sh"}}"#),
    );
    let real = w.dir.path().join(format!("{name}-real.sh"));
    std::fs::write(&real, "#!/bin/sh\nexit 0\n").unwrap();
    symlink(&real, dir.join("run.sh")).unwrap();
    dir
}

fn give_away(path: &std::path::Path) {
    std::os::unix::fs::lchown(path, Some(OTHER_UID), None).unwrap_or_else(|e| {
        panic!(
            "cannot give {} to uid {OTHER_UID} ({e}): this test needs root",
            path.display()
        )
    });
}

#[test]
fn main_through_the_operators_own_link_is_accepted() {
    let w = World::new();
    let dir = module_with_linked_main(&w, "linked");
    let m = Manifest::load(&dir).expect("the operator's link is trusted");
    assert!(m.main.ends_with("linked/run.sh"));
    // How the tests and `cargo xtask stage` lay out a library module: a link into target/.
    w.stage("calc");
    assert!(Manifest::load(&w.modules.join("calc")).is_ok());
    assert!(target_dir().join("libcalc.so").is_file());
}

#[test]
fn main_through_a_link_of_another_user_is_refused() {
    let w = World::new();
    let dir = module_with_linked_main(&w, "planted");
    give_away(&dir.join("run.sh"));
    let e = Manifest::load(&dir).expect_err("a link of another user");
    let text = e.to_string();
    assert!(text.contains("field \"main\""), "{text}");
    assert!(
        text.contains(&format!("symlink owned by uid {OTHER_UID}")),
        "{text}"
    );
}

#[test]
fn a_link_chain_is_checked_hop_by_hop_and_so_is_the_file_at_its_end() {
    let w = World::new();
    // run.sh -> hop (another user's link) -> real file.
    let dir = w.write_metadata(
        "chain",
        r#"{"name":"chain","version":"1.0.0","main":"run.sh"}"#,
    );
    let real = w.dir.path().join("real.sh");
    std::fs::write(&real, "#!/bin/sh\nexit 0\n").unwrap();
    let hop = w.dir.path().join("hop");
    symlink(&real, &hop).unwrap();
    symlink(&hop, dir.join("run.sh")).unwrap();
    assert!(Manifest::load(&dir).is_ok());
    give_away(&hop);
    let text = Manifest::load(&dir).expect_err("hop").to_string();
    assert!(text.contains(&hop.display().to_string()), "{text}");

    // A direct file of another user is refused too.
    std::os::unix::fs::lchown(&hop, Some(0), None).unwrap();
    give_away(&real);
    let text = Manifest::load(&dir).expect_err("file").to_string();
    assert!(
        text.contains(&format!("owned by uid {OTHER_UID}")),
        "{text}"
    );
}

#[tokio::test]
async fn a_fifo_named_metadata_json_does_not_stall_discovery() {
    let mut w = World::new();
    w.stage("calc");
    let trap = w.modules.join("trap");
    std::fs::create_dir_all(&trap).unwrap();
    let fifo = trap.join("metadata.json");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path; it reads nothing else.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);

    let e = Manifest::load(&trap).expect_err("a FIFO is not metadata");
    assert!(e.to_string().contains("is a FIFO"), "{e}");

    // Before the fix, opening the FIFO blocked the core's start forever.
    let b = w.builder();
    let core = tokio::time::timeout(Duration::from_secs(30), w.start_with(b))
        .await
        .expect("the core starts despite the FIFO");
    assert!(core.modules().iter().any(|m| m.name == "calc"));
    let faults = core
        .call("core", "faults", vec![])
        .await
        .expect("faults")
        .to_string();
    assert!(
        faults.contains("trap") && faults.contains("FIFO"),
        "{faults}"
    );
    core.shutdown().await;
}
