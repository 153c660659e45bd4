//! The `contexts` row: a delegated script end to end through `logos_contexts::Worker`
//! (decode and verify the signed envelope, expiry, nonce remembered in SQLite, Cedar policy
//! for `submit` and for the write, evaluation of a 10-line script on an evaluation thread, one
//! storage write committed to SQLite, the audit record) against a bare Rhai evaluation of the
//! same compiled script with in-memory `put`/`caller`, measured in the same run. Envelopes are
//! signed before timing: signing is the caller's cost. The extra figure `verify_us` is the
//! signature check alone, the largest fixed part of the overhead.
//!
//! In-process: the module adds one module call (the `rtt` row) on top.

use crate::report::{Figure, Row, Status, Unit};
use crate::stats::summarize;
use anyhow::{Context as _, Result};
use logos_contexts::{
    ContextId, Envelope, Keypair, ScriptRef, SignedEnvelope, Statement, Worker, now_ms, sha256,
};
use logos_sdk::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Ten lines, one write.
const SCRIPT: &str = r#"let n = params.n;
let total = 0;
for i in 0..10 { total += i * n; }
let who = caller();
let entry = #{ from: who.id, n: n, total: total };
if total < 0 { throw "negative"; }
let key = "bench/" + to_string(n % 16);
put(key, entry);
let done = true;
total"#;

/// Runs the row with `n` samples of each side.
pub fn row(n: usize) -> Result<Row> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let alice = Keypair::from_seed(&[1; 32]);
    let bob = Keypair::from_seed(&[2; 32]);
    let ctx = ContextId::of(alice.peer());
    let worker = Worker::builder(dir.path()).open()?;
    worker.create_context(alice.peer(), None)?;
    let sig = alice.sign_statement(&Statement::InstallScript {
        context: ctx,
        revision: 1,
        name: "bench",
        source_hash: sha256(SCRIPT.as_bytes()),
    });
    worker.install_script(ctx, "bench", SCRIPT, &sig)?;
    let policy = format!(
        "permit(principal == Logos::Peer::\"{b}\", action in [Logos::Action::\"submit\", Logos::Action::\"write\"], resource);",
        b = bob.peer()
    );
    let sig = alice.sign_statement(&Statement::SetPolicy {
        context: ctx,
        revision: 2,
        policy_hash: sha256(policy.as_bytes()),
    });
    worker.set_policy(ctx, &policy, &sig)?;

    let envelopes: Vec<Vec<u8>> = (0..n + 50)
        .map(|i| {
            let mut nonce = vec![0u8; 16];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            SignedEnvelope::sign(
                Envelope {
                    caller: bob.peer(),
                    target: ctx,
                    nonce,
                    expires_at_ms: now_ms() + 600_000,
                    script: ScriptRef::Hash(sha256(SCRIPT.as_bytes())),
                    params: Value::Map(BTreeMap::from([("n".to_owned(), Value::Int(i as i64))])),
                    expose: Value::Null,
                    grant: None,
                    parent: None,
                },
                &bob,
            )
            .to_bytes()
        })
        .collect();

    // The bare side: the same script, compiled once, `put` into a map.
    let store: Arc<Mutex<BTreeMap<String, rhai::Dynamic>>> = Arc::default();
    let mut engine = rhai::Engine::new_raw();
    engine.set_max_operations(1_000_000).set_max_call_levels(32);
    engine.register_iterator::<std::ops::Range<i64>>();
    let s = store.clone();
    engine.register_fn("put", move |k: &str, v: rhai::Dynamic| {
        s.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k.to_owned(), v);
    });
    let who = bob.peer().to_string();
    engine.register_fn("caller", move || {
        let mut m = rhai::Map::new();
        m.insert("id".into(), who.clone().into());
        m
    });
    engine.register_fn("to_string", |d: rhai::Dynamic| d.to_string());
    let mut scope = rhai::Scope::new();
    scope.push("params", rhai::Dynamic::UNIT);
    let ast = engine
        .compile_with_scope(&scope, SCRIPT)
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let mut ours = Vec::with_capacity(n);
    let mut bare = Vec::with_capacity(n);
    let mut verify = Vec::with_capacity(n);
    for (i, env) in envelopes.iter().enumerate() {
        let t = Instant::now();
        let r = worker.submit(env)?;
        let e2e = t.elapsed().as_nanos() as f64;
        anyhow::ensure!(
            matches!(r.value, Value::Int(_)),
            "unexpected result {:?}",
            r.value
        );

        let mut scope = rhai::Scope::new();
        let mut p = rhai::Map::new();
        p.insert("n".into(), rhai::Dynamic::from_int(i as i64));
        scope.push_constant("params", p);
        let t = Instant::now();
        let v: rhai::Dynamic = engine
            .eval_ast_with_scope(&mut scope, &ast)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let b = t.elapsed().as_nanos() as f64;
        anyhow::ensure!(v.is_int(), "bare evaluation returned {v}");

        let t = Instant::now();
        SignedEnvelope::decode(env)?;
        let d = t.elapsed().as_nanos() as f64;
        // The first 50 warm caches up.
        if i >= 50 {
            ours.push(e2e);
            bare.push(b);
            verify.push(d);
        }
    }
    let ours = summarize(&mut ours);
    let bare = summarize(&mut bare);
    let verify = summarize(&mut verify);
    let overhead = ours.median - bare.median;
    let mut row = Row::new("contexts", "delegated script end to end");
    row.ours = Some(Figure::latency(&ours));
    row.baseline = Some(Figure::latency(&bare));
    row.baseline_name = Some("bare Rhai eval of the same script".into());
    row.ratio = Some(ours.median / bare.median);
    row.target = Some("≤ 10 µs overhead".into());
    row.status = Status::check(overhead <= 10_000.0);
    row.note = Some(format!(
        "overhead {:.1} µs, of which {:.1} µs is the Ed25519 verification alone",
        overhead / 1e3,
        verify.median / 1e3
    ));
    row.extra("overhead_us", overhead / 1e3);
    row.extra("verify_us", verify.median / 1e3);
    let _ = Unit::Nanos;
    drop(worker);
    Ok(row)
}
