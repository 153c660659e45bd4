//! The contexts module in a real core, in both modes: `shared` (the `contexts` module holds
//! every context) and `isolated` (one worker process per context: module directories
//! `ctx-alice`, `ctx-bob`, `ctx-carol` backed by the same executable). Through real module
//! calls (the "module call" transport), each mode runs the worked example (Alice lets Bob
//! append to her guestbook, not delete) and the attack cases whose behaviour depends on the
//! process and the transport: replay after the worker restarts, a spoofed caller, an endless
//! script, traversal keys, storage exhaustion, a slow host call (`invoke` of `probe.sleep`),
//! and, isolated only, a second context refused by a one-context worker. Each asserts the
//! refusal, the bystander's data intact and an audit record. The rest of the suite runs
//! in-process in `crates/logos-contexts/tests/attacks.rs`, in both modes too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use logos_contexts::{
    ContextId, Envelope, Keypair, ScriptRef, SignedEnvelope, Statement, now_ms, sha256,
};
use logos_core::{Builder, Core, ModuleSettings, Value};
use logos_testkit::{stage_module, target_dir, write_metadata};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Shared,
    Isolated,
}

struct Peer {
    key: Keypair,
    name: &'static str,
}

impl Peer {
    fn new(seed: u8, name: &'static str) -> Peer {
        Peer {
            key: Keypair::from_seed(&[seed; 32]),
            name,
        }
    }
    fn ctx(&self) -> ContextId {
        ContextId::of(self.key.peer())
    }
    fn id(&self) -> String {
        self.key.peer().to_string()
    }
}

struct World {
    core: Core,
    mode: Mode,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start(mode: Mode, peers: &[&Peer]) -> World {
        let dir = tempfile::Builder::new()
            .prefix("contexts-mod-")
            .tempdir()
            .unwrap();
        let modules = dir.path().join("modules");
        std::fs::create_dir_all(&modules).unwrap();
        stage_module(&modules, "probe");
        let mut b: Builder = Core::builder()
            .modules_dir(&modules)
            .runtime_dir(dir.path().join("run"))
            .data_dir(dir.path().join("data"))
            .host_binary(target_dir().join("logos_host"))
            .stop_grace(Duration::from_secs(2));
        let names: Vec<String> = match mode {
            Mode::Shared => {
                stage_module(&modules, "contexts");
                vec!["contexts".into()]
            }
            Mode::Isolated => peers
                .iter()
                .map(|p| {
                    let name = format!("ctx-{}", p.name);
                    let meta = std::fs::read_to_string(
                        logos_testkit::workspace().join("modules/contexts/metadata.json"),
                    )
                    .unwrap()
                    .replace("\"name\": \"contexts\"", &format!("\"name\": \"{name}\""));
                    let d = write_metadata(&modules, &name, &meta);
                    std::os::unix::fs::symlink(target_dir().join("contexts"), d.join("contexts"))
                        .unwrap();
                    name
                })
                .collect(),
        };
        for n in &names {
            let mut s = ModuleSettings::default();
            s.env = vec![
                (
                    "LOGOS_CONTEXTS_MODE".into(),
                    if mode == Mode::Shared {
                        "shared"
                    } else {
                        "isolated"
                    }
                    .into(),
                ),
                ("LOGOS_CONTEXTS_INVOKE".into(), "1".into()),
                ("LOGOS_CONTEXTS_DEADLINE_MS".into(), "800".into()),
            ];
            b = b.module(n.clone(), s).grant(n.clone(), "probe");
        }
        let core = b.build().unwrap().start().await.unwrap();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        core.load_many(&refs).await.unwrap();
        core.load("probe").await.unwrap();
        World {
            core,
            mode,
            _dir: dir,
        }
    }

    fn module(&self, p: &Peer) -> String {
        match self.mode {
            Mode::Shared => "contexts".into(),
            Mode::Isolated => format!("ctx-{}", p.name),
        }
    }

    async fn call(&self, p: &Peer, method: &str, args: Vec<Value>) -> Result<Value, String> {
        self.core
            .call(&self.module(p), method, args)
            .await
            .map_err(|e| e.to_string())
    }

    async fn create(&self, p: &Peer, quota: u64) {
        let opts = Value::Map([("quotaBytes".to_owned(), Value::UInt(quota))].into());
        self.call(p, "createContext", vec![Value::Text(p.id()), opts])
            .await
            .unwrap();
    }

    async fn revision(&self, p: &Peer) -> u64 {
        let info = self
            .call(p, "contextInfo", vec![Value::Text(p.ctx().to_string())])
            .await
            .unwrap();
        info.get("revision").and_then(Value::as_u64).unwrap()
    }

    async fn install(&self, p: &Peer, name: &str, source: &str) {
        let sig = p.key.sign_statement(&Statement::InstallScript {
            context: p.ctx(),
            revision: self.revision(p).await + 1,
            name,
            source_hash: sha256(source.as_bytes()),
        });
        self.call(
            p,
            "installScript",
            vec![
                Value::Text(p.ctx().to_string()),
                Value::Text(name.into()),
                Value::Text(source.into()),
                Value::Bytes(sig.to_vec().into()),
            ],
        )
        .await
        .unwrap();
    }

    async fn policy(&self, p: &Peer, text: &str) {
        let sig = p.key.sign_statement(&Statement::SetPolicy {
            context: p.ctx(),
            revision: self.revision(p).await + 1,
            policy_hash: sha256(text.as_bytes()),
        });
        self.call(
            p,
            "setPolicy",
            vec![
                Value::Text(p.ctx().to_string()),
                Value::Text(text.into()),
                Value::Bytes(sig.to_vec().into()),
            ],
        )
        .await
        .unwrap();
    }

    async fn submit(&self, target: &Peer, env: &SignedEnvelope) -> Result<Value, String> {
        self.call(target, "submit", vec![Value::Bytes(env.to_bytes().into())])
            .await
    }

    async fn run(
        &self,
        caller: &Peer,
        target: &Peer,
        script: ScriptRef,
        params: Value,
    ) -> Result<Value, String> {
        self.submit(target, &envelope(caller, target, script, params))
            .await
    }

    async fn audit(&self, p: &Peer) -> Vec<Value> {
        let exp = now_ms() + 60_000;
        let sig = p.key.sign_statement(&Statement::ReadAudit {
            context: p.ctx(),
            expires_at_ms: exp,
        });
        match self
            .call(
                p,
                "auditLog",
                vec![
                    Value::Text(p.ctx().to_string()),
                    Value::UInt(exp),
                    Value::Bytes(sig.to_vec().into()),
                    Value::UInt(0),
                    Value::UInt(1000),
                ],
            )
            .await
            .unwrap()
        {
            Value::List(l) => l,
            other => panic!("{other:?}"),
        }
    }

    async fn audited(&self, p: &Peer, code: &str) {
        let log = self.audit(p).await;
        assert!(
            log.iter()
                .any(|r| r.get("code").and_then(Value::as_str) == Some(code)
                    && r.get("allowed") == Some(&Value::Bool(false))),
            "no {code} record in {log:#?}"
        );
    }
}

fn envelope(caller: &Peer, target: &Peer, script: ScriptRef, params: Value) -> SignedEnvelope {
    let nonce = Keypair::generate().unwrap().peer().as_bytes()[..16].to_vec();
    SignedEnvelope::sign(
        Envelope {
            caller: caller.key.peer(),
            target: target.ctx(),
            nonce,
            expires_at_ms: now_ms() + 60_000,
            script,
            params,
            expose: Value::Map([("name".to_owned(), Value::Text(caller.name.into()))].into()),
            grant: None,
            parent: None,
        },
        &caller.key,
    )
}

/// The guestbook of docs/contexts.md.
pub const GUESTBOOK: &str = r#"
// guestbook: append an entry signed by the caller's identity; never deletes.
let n = get("count") ?? 0;
let who = caller();
put("entry/" + to_string(n), #{ from: who.id, name: who.exposed.name, text: params.text, at: now() });
put("count", n + 1);
emit("signed", n);
n + 1
"#;

fn guestbook_policy(bob: &Peer) -> String {
    format!(
        r#"permit(principal == Logos::Peer::"{bob}", action == Logos::Action::"submit", resource)
  when {{ context.script == "{hash}" }};
permit(principal == Logos::Peer::"{bob}", action in [Logos::Action::"read", Logos::Action::"write"], resource)
  when {{ resource.name == "count" || resource.name like "entry/*" }};
permit(principal == Logos::Peer::"{bob}", action == Logos::Action::"emit", resource);
"#,
        bob = bob.id(),
        hash = hex(&sha256(GUESTBOOK.as_bytes()))
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn suite(mode: Mode) {
    let alice = Peer::new(1, "alice");
    let bob = Peer::new(2, "bob");
    let carol = Peer::new(3, "carol");
    let w = World::start(mode, &[&alice, &bob, &carol]).await;
    assert_eq!(
        w.call(&alice, "mode", vec![]).await.unwrap(),
        Value::Text(format!("{mode:?}").to_lowercase())
    );
    for p in [&alice, &bob, &carol] {
        w.create(p, 4096).await;
    }
    w.run(
        &carol,
        &carol,
        ScriptRef::Inline("put(\"canary\", 42)".into()),
        Value::Null,
    )
    .await
    .unwrap();
    // The worked example.
    w.install(&alice, "guestbook", GUESTBOOK).await;
    w.policy(&alice, &guestbook_policy(&bob)).await;
    // contextInfo lists the script with the revision that installed it (1; the policy is 2).
    let info = w
        .call(
            &alice,
            "contextInfo",
            vec![Value::Text(alice.ctx().to_string())],
        )
        .await
        .unwrap();
    let Some(Value::List(scripts)) = info.get("scripts") else {
        panic!("no scripts in {info:?}");
    };
    assert_eq!(scripts.len(), 1, "{info:?}");
    assert_eq!(
        scripts[0].get("revision"),
        Some(&Value::UInt(1)),
        "{info:?}"
    );
    assert_eq!(info.get("policyVersion"), Some(&Value::UInt(2)), "{info:?}");
    let sign = |text: &str| Value::Map([("text".to_owned(), Value::Text(text.into()))].into());
    let hash = ScriptRef::Hash(sha256(GUESTBOOK.as_bytes()));
    let r = w
        .run(&bob, &alice, hash.clone(), sign("hello Alice"))
        .await
        .unwrap();
    assert_eq!(r.get("value"), Some(&Value::Int(1)), "{r:?}");
    let e = w
        .run(
            &bob,
            &alice,
            ScriptRef::Inline("delete(\"entry/0\")".into()),
            Value::Null,
        )
        .await
        .unwrap_err();
    assert!(e.contains("denied"), "{e}");
    let e = w
        .run(
            &bob,
            &alice,
            ScriptRef::Inline("put(\"count\", 0)".into()),
            Value::Null,
        )
        .await
        .unwrap_err();
    assert!(e.contains("denied"), "Bob may only run the guestbook: {e}");
    w.audited(&alice, "denied").await;
    let entry = w
        .run(
            &alice,
            &alice,
            ScriptRef::Inline("get(\"entry/0\")".into()),
            Value::Null,
        )
        .await
        .unwrap();
    let entry = entry.get("value").unwrap();
    assert_eq!(entry.get("text"), Some(&Value::Text("hello Alice".into())));
    assert_eq!(entry.get("from"), Some(&Value::Text(bob.id())));

    // Replay, also after the worker restarts.
    let env = envelope(&bob, &alice, hash.clone(), sign("once"));
    w.submit(&alice, &env).await.unwrap();
    assert!(w.submit(&alice, &env).await.unwrap_err().contains("replay"));
    w.core.reload(&w.module(&alice)).await.unwrap();
    assert!(w.submit(&alice, &env).await.unwrap_err().contains("replay"));
    w.audited(&alice, "replay").await;

    // Spoofed caller: Mallory signs Bob's envelope.
    let mallory = Peer::new(9, "mallory");
    let mut forged = envelope(&bob, &alice, hash.clone(), sign("forged"));
    forged.signature = SignedEnvelope::sign(forged.envelope.clone(), &mallory.key).signature;
    assert!(
        w.submit(&alice, &forged)
            .await
            .unwrap_err()
            .contains("bad_signature")
    );
    w.audited(&alice, "bad_signature").await;

    // An endless script, traversal keys, a slow host call, a full quota: Alice's own.
    let e = w
        .run(
            &alice,
            &alice,
            ScriptRef::Inline("loop {}".into()),
            Value::Null,
        )
        .await
        .unwrap_err();
    assert!(e.contains("script_error"), "{e}");
    let e = w
        .run(
            &alice,
            &alice,
            ScriptRef::Inline("put(\"../carol\", 1)".into()),
            Value::Null,
        )
        .await
        .unwrap_err();
    assert!(e.contains("invalid"), "{e}");
    let e = w
        .run(
            &alice,
            &alice,
            ScriptRef::Inline("invoke(\"probe\", \"sleep\", [60000])".into()),
            Value::Null,
        )
        .await
        .unwrap_err();
    assert!(e.contains("deadline") || e.contains("no answer"), "{e}");
    let e = w
        .run(
            &alice,
            &alice,
            ScriptRef::Inline(format!("put(\"big\", \"{}\")", "x".repeat(8000))),
            Value::Null,
        )
        .await
        .unwrap_err();
    assert!(e.contains("quota_exceeded"), "{e}");
    w.audited(&alice, "quota_exceeded").await;
    w.audited(&alice, "script_error").await;

    // The bystander saw none of it.
    let v = w
        .run(
            &carol,
            &carol,
            ScriptRef::Inline("put(\"after\", 1); get(\"canary\")".into()),
            Value::Null,
        )
        .await
        .unwrap();
    assert_eq!(v.get("value"), Some(&Value::Int(42)));
    assert!(
        w.audit(&carol)
            .await
            .iter()
            .all(|r| r.get("allowed") == Some(&Value::Bool(true)))
    );

    if mode == Mode::Isolated {
        // A one-context worker refuses a second context.
        let dave = Peer::new(4, "dave");
        let e = w
            .call(
                &alice,
                "createContext",
                vec![Value::Text(dave.id()), Value::Null],
            )
            .await
            .unwrap_err();
        assert!(e.contains("capacity"), "{e}");
        assert_eq!(
            w.call(&alice, "listContexts", vec![]).await.unwrap(),
            Value::List(vec![Value::Text(alice.ctx().to_string())])
        );
    } else {
        let all = w.call(&alice, "listContexts", vec![]).await.unwrap();
        assert!(matches!(all, Value::List(ref l) if l.len() == 3), "{all:?}");
    }
    w.core.shutdown().await;
}

#[tokio::test]
async fn shared_mode() {
    suite(Mode::Shared).await;
}

#[tokio::test]
async fn isolated_mode() {
    suite(Mode::Isolated).await;
}
