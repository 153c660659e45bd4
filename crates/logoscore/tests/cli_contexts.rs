//! `logoscore contexts`: the worked example of docs/contexts.md, run with the script and
//! policy taken from that page, against a real daemon with the `contexts` module: keys,
//! a context, an owner-signed script and policy, Bob's signed append accepted, his delete
//! refused (exit 4, the denial named), the audit log readable with Alice's key; and bad
//! input refused with a usage error (exit 1) naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::World;

/// The first fenced block of `lang` in docs/contexts.md.
fn block(lang: &str) -> String {
    let doc = std::fs::read_to_string(support::workspace().join("docs/contexts.md"))
        .expect("docs/contexts.md");
    let start = doc
        .find(&format!("```{lang}\n"))
        .unwrap_or_else(|| panic!("no {lang} block"))
        + lang.len()
        + 4;
    let len = doc[start..].find("```").expect("closing fence");
    doc[start..start + len].to_owned()
}

#[test]
fn the_guestbook_example_of_docs_contexts_md() {
    let w = World::new();
    w.stage("contexts");
    let _d = w.daemon(&["--load", "contexts"]);
    let dir = w.dir.path();
    let (alice_key, bob_key) = (dir.join("alice.key"), dir.join("bob.key"));
    let key = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let alice = w.cli(&["contexts", "keygen", &key(&alice_key)]);
    alice.ok();
    let alice = alice.stdout.trim().to_owned();
    let bob = w
        .cli(&["contexts", "keygen", &key(&bob_key)])
        .stdout
        .trim()
        .to_owned();
    assert_eq!(alice.len(), 64, "{alice}");
    // The key file exists now: keygen refuses to overwrite it.
    w.cli(&["contexts", "keygen", &key(&alice_key)])
        .expect_code(1);

    let created = w.cli_json(&[
        "contexts",
        "create",
        "--key",
        &key(&alice_key),
        "--quota",
        "1048576",
    ]);
    assert_eq!(created["id"], alice.as_str());
    let script = w.write("guestbook.rhai", &block("rhai"));
    let installed = w.cli_json(&[
        "contexts",
        "install-script",
        "--key",
        &key(&alice_key),
        "guestbook",
        script.to_str().unwrap(),
    ]);
    let hash = installed["hash"].as_str().unwrap().to_owned();
    let policy = w.write(
        "guestbook.cedar",
        &block("cedar").replace("BOB", &bob).replace("HASH", &hash),
    );
    let set = w.cli_json(&[
        "contexts",
        "policy",
        "--key",
        &key(&alice_key),
        policy.to_str().unwrap(),
    ]);
    assert_eq!(set["version"], 2);

    let listed = w.cli(&["contexts", "list"]);
    assert!(listed.stdout.contains(&alice), "{}", listed.stdout);
    let signed = w.cli_json(&[
        "contexts",
        "submit",
        "--key",
        &key(&bob_key),
        "--to",
        &alice,
        "--installed",
        "guestbook",
        "--params",
        "{\"text\":\"hello Alice\"}",
    ]);
    assert_eq!(signed["value"], 1, "{signed}");
    assert_eq!(signed["events"][0][0], "signed");

    let evil = w.write("evil.rhai", "delete(\"entry/0\")");
    let refused = w.cli(&[
        "contexts",
        "submit",
        "--key",
        &key(&bob_key),
        "--to",
        &alice,
        "--inline",
        evil.to_str().unwrap(),
    ]);
    refused.expect_code(4);
    assert!(refused.stderr.contains("denied"), "{}", refused.stderr);

    let audit = w.cli(&["contexts", "audit", "--key", &key(&alice_key)]);
    audit.ok();
    assert!(
        audit.stdout.contains("denied") && audit.stdout.contains("install-script"),
        "{}",
        audit.stdout
    );
    // Bob cannot read Alice's audit log: his key signs for his own context, which is not here.
    w.cli(&["contexts", "audit", "--key", &key(&bob_key)])
        .expect_code(4);

    // Bad input: a malformed id, a key file that is not one.
    let bad = w.cli(&["contexts", "info", &alice.to_uppercase()]);
    bad.expect_code(1);
    assert!(bad.stderr.contains("lowercase"), "{}", bad.stderr);
    let notkey = w.write("not.key", "hello");
    let bad = w.cli(&["contexts", "create", "--key", notkey.to_str().unwrap()]);
    bad.expect_code(1);
    assert!(bad.stderr.contains("64 hex digits"), "{}", bad.stderr);
}
