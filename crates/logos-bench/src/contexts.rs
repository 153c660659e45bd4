//! The contexts rows: a delegated 10-line script with one storage write, end to end, against
//! a bare Rhai evaluation of the same compiled script (in-memory `put` and `caller`),
//! measured in the same run, sample by sample alternating.
//!
//! - `contexts` (in process, `logos_contexts::Worker::submit`): decode the envelope and
//!   verify its signature, expiry, nonce, Cedar policy for `submit` and for the write,
//!   evaluation on an evaluation thread, and one SQLite commit holding the write, the nonce
//!   and the audit record.
//! - `contexts_module` (the `contexts` module in a real core, `core.call("contexts",
//!   "submit", [envelope])`): the same plus one module call; its baseline adds a trivial
//!   call to the same module (`mode`) to the bare evaluation. Skipped, saying so, when the
//!   `contexts` executable is not built beside this one.
//!
//! Envelopes are signed before timing: signing is the caller's cost. Extra figures split
//! the overhead into its fixed parts, each measured alone in the same run: `verify_us`
//! (Ed25519 `verify_strict` of the envelope), `decode_us` (decoding with its one key
//! decompression and the verification), `handoff_us` (a job handed to another thread and its
//! answer handed back, as the worker does to keep evaluations on its own threads). In
//! process, `cpu_us` is the CPU time the whole process spent per submission (every thread),
//! and `bare_cpu_us` the same for the bare evaluation: on a loaded machine waiting inflates
//! wall times, CPU time much less.

use crate::report::{Figure, Row, Status};
use crate::runtime::World;
use crate::stats::{Summary, summarize};
use anyhow::{Context as _, Result};
use logos_contexts::{
    ContextId, Envelope, Keypair, PeerId, ScriptRef, SignedEnvelope, Statement, Worker, now_ms,
    sha256,
};
use logos_sdk::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};
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

/// Samples discarded first, to warm caches up.
const WARMUP: usize = 50;

/// The target of both rows, in ns of overhead over the bare evaluation.
const TARGET_NS: f64 = 10_000.0;

/// Alice owns the context; Bob submits.
struct Peers {
    alice: Keypair,
    bob: Keypair,
    ctx: ContextId,
}

impl Peers {
    fn new() -> Peers {
        let alice = Keypair::from_seed(&[1; 32]);
        let bob = Keypair::from_seed(&[2; 32]);
        let ctx = ContextId::of(alice.peer());
        Peers { alice, bob, ctx }
    }

    fn install_signature(&self) -> [u8; 64] {
        self.alice.sign_statement(&Statement::InstallScript {
            context: self.ctx,
            revision: 1,
            name: "bench",
            source_hash: sha256(SCRIPT.as_bytes()),
        })
    }

    fn policy(&self) -> String {
        format!(
            "permit(principal == Logos::Peer::\"{b}\", action in [Logos::Action::\"submit\", Logos::Action::\"write\"], resource);",
            b = self.bob.peer()
        )
    }

    fn policy_signature(&self) -> [u8; 64] {
        self.alice.sign_statement(&Statement::SetPolicy {
            context: self.ctx,
            revision: 2,
            policy_hash: sha256(self.policy().as_bytes()),
        })
    }

    /// `n` envelopes from Bob, each with its own nonce.
    fn envelopes(&self, n: usize) -> Vec<SignedEnvelope> {
        (0..n)
            .map(|i| {
                let mut nonce = vec![0u8; 16];
                nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
                SignedEnvelope::sign(
                    Envelope {
                        caller: self.bob.peer(),
                        target: self.ctx,
                        nonce,
                        expires_at_ms: now_ms() + 600_000,
                        script: ScriptRef::Hash(sha256(SCRIPT.as_bytes())),
                        params: Value::Map(BTreeMap::from([(
                            "n".to_owned(),
                            Value::Int(i as i64),
                        )])),
                        expose: Value::Null,
                        grant: None,
                        parent: None,
                    },
                    &self.bob,
                )
            })
            .collect()
    }
}

/// The bare side: the same script compiled once by a raw engine, `put` into a map.
struct Bare {
    engine: rhai::Engine,
    ast: rhai::AST,
}

impl Bare {
    fn new(caller: PeerId) -> Result<Bare> {
        let store: Arc<Mutex<BTreeMap<String, rhai::Dynamic>>> = Arc::default();
        let mut engine = rhai::Engine::new_raw();
        engine.set_max_operations(1_000_000).set_max_call_levels(32);
        engine.register_iterator::<std::ops::Range<i64>>();
        engine.register_fn("put", move |k: &str, v: rhai::Dynamic| {
            store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(k.to_owned(), v);
        });
        let who = caller.to_string();
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
        Ok(Bare { engine, ast })
    }

    /// Evaluates with `params.n = i`; the time taken, in ns.
    fn eval(&self, i: usize) -> Result<f64> {
        let mut scope = rhai::Scope::new();
        let mut p = rhai::Map::new();
        p.insert("n".into(), rhai::Dynamic::from_int(i as i64));
        scope.push_constant("params", p);
        let t = Instant::now();
        let v: rhai::Dynamic = self
            .engine
            .eval_ast_with_scope(&mut scope, &self.ast)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let b = t.elapsed().as_nanos() as f64;
        anyhow::ensure!(v.is_int(), "bare evaluation returned {v}");
        Ok(b)
    }
}

/// A thread that runs jobs handed to it and answers each: the worker's hand-off, alone.
struct Handoff {
    jobs: Option<mpsc::SyncSender<Box<dyn FnOnce() + Send>>>,
    done: mpsc::Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handoff {
    fn new() -> Result<Handoff> {
        let (jobs, inbox) = mpsc::sync_channel::<Box<dyn FnOnce() + Send>>(1);
        let (answer, done) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("bench-handoff".into())
            .spawn(move || {
                for job in inbox {
                    job();
                    if answer.send(()).is_err() {
                        break;
                    }
                }
            })
            .context("starting the hand-off thread")?;
        Ok(Handoff {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    /// One round trip, in ns.
    fn round_trip(&self) -> Result<f64> {
        let t = Instant::now();
        self.jobs
            .as_ref()
            .context("hand-off closed")?
            .send(Box::new(|| {}))
            .map_err(|_| anyhow::anyhow!("hand-off thread gone"))?;
        self.done.recv().context("hand-off thread gone")?;
        Ok(t.elapsed().as_nanos() as f64)
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Ed25519 `verify_strict` of `env`'s signature alone, in ns.
fn verify_alone(env: &SignedEnvelope) -> Result<f64> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(env.envelope.caller.as_bytes())
        .context("the caller's key")?;
    let mut message = logos_contexts::envelope::DOMAIN.to_vec();
    message.extend_from_slice(&env.body);
    let signature = ed25519_dalek::Signature::from_bytes(&env.signature);
    let t = Instant::now();
    key.verify_strict(&message, &signature)
        .context("the envelope's signature")?;
    Ok(t.elapsed().as_nanos() as f64)
}

/// CPU time of this process (all threads), in ns.
fn process_cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // CLOCK_PROCESS_CPUTIME_ID is always supported on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// Keeps sample `i` unless it is part of the warm-up.
fn keep(samples: &mut Vec<f64>, i: usize, v: f64) {
    if i >= WARMUP {
        samples.push(v);
    }
}

/// Fills in what both rows share.
fn finish(row: &mut Row, ours: &Summary, baseline: &Summary, parts: &[(&str, &Summary)]) {
    let overhead = ours.median - baseline.median;
    row.ours = Some(Figure::latency(ours));
    row.baseline = Some(Figure::latency(baseline));
    row.ratio = Some(ours.median / baseline.median);
    row.target = Some("≤ 10 µs overhead".into());
    row.status = Status::check(overhead <= TARGET_NS);
    let verify = parts
        .iter()
        .find(|(k, _)| *k == "verify_us")
        .map_or(0.0, |(_, s)| s.median);
    row.note = Some(format!(
        "overhead {:.1} µs, of which {:.1} µs is the Ed25519 verification alone ({:.1} µs beyond it)",
        overhead / 1e3,
        verify / 1e3,
        (overhead - verify) / 1e3
    ));
    row.extra("samples", ours.n as u64)
        .extra("overhead_us", overhead / 1e3)
        .extra("beyond_verify_us", (overhead - verify) / 1e3);
    for (k, s) in parts {
        row.extra(k, s.median / 1e3);
    }
}

/// The in-process row, `n` samples of each side.
pub fn row(n: usize) -> Result<Row> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let peers = Peers::new();
    let worker = Worker::builder(dir.path()).open()?;
    worker.create_context(peers.alice.peer(), None)?;
    worker.install_script(peers.ctx, "bench", SCRIPT, &peers.install_signature())?;
    worker.set_policy(peers.ctx, &peers.policy(), &peers.policy_signature())?;
    let envelopes = peers.envelopes(n + WARMUP);
    let bare = Bare::new(peers.bob.peer())?;
    let handoff = Handoff::new()?;

    let (mut ours, mut base) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut verify, mut decode, mut hand) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu, mut bare_cpu) = (Vec::new(), Vec::new());
    for (i, env) in envelopes.iter().enumerate() {
        let bytes = env.to_bytes();
        let c = process_cpu_ns();
        let t = Instant::now();
        let r = worker.submit(&bytes)?;
        keep(&mut ours, i, t.elapsed().as_nanos() as f64);
        keep(&mut cpu, i, process_cpu_ns() - c);
        anyhow::ensure!(
            matches!(r.value, Value::Int(_)),
            "unexpected result {:?}",
            r.value
        );
        let c = process_cpu_ns();
        keep(&mut base, i, bare.eval(i)?);
        keep(&mut bare_cpu, i, process_cpu_ns() - c);
        keep(&mut verify, i, verify_alone(env)?);
        let t = Instant::now();
        SignedEnvelope::decode(&bytes)?;
        keep(&mut decode, i, t.elapsed().as_nanos() as f64);
        keep(&mut hand, i, handoff.round_trip()?);
    }
    drop(worker);
    let mut row = Row::new("contexts", "delegated script end to end, in process");
    row.baseline_name = Some("bare Rhai eval of the same script".into());
    finish(
        &mut row,
        &summarize(&mut ours),
        &summarize(&mut base),
        &[
            ("verify_us", &summarize(&mut verify)),
            ("decode_us", &summarize(&mut decode)),
            ("handoff_us", &summarize(&mut hand)),
            ("cpu_us", &summarize(&mut cpu)),
            ("bare_cpu_us", &summarize(&mut bare_cpu)),
        ],
    );
    Ok(row)
}

/// The module row's id and name.
pub const MODULE_ID: &str = "contexts_module";
pub const MODULE_NAME: &str = "delegated script end to end, module call";

/// The module-call row: the `contexts` module in the benchmark's core.
pub async fn module_row(world: &World, n: usize) -> Result<Row> {
    if !world.contexts {
        return Ok(Row::skipped(
            MODULE_ID,
            MODULE_NAME,
            "the contexts executable is not built beside logos-bench (cargo build -p contexts)",
        ));
    }
    let core = &world.core;
    core.load("contexts").await.context("loading contexts")?;
    let peers = Peers::new();
    let call = |method: &'static str, args: Vec<Value>| async move {
        core.call("contexts", method, args)
            .await
            .with_context(|| format!("contexts.{method}"))
    };
    call(
        "createContext",
        vec![Value::Text(peers.alice.peer().to_string()), Value::Null],
    )
    .await?;
    let ctx = Value::Text(peers.ctx.to_string());
    call(
        "installScript",
        vec![
            ctx.clone(),
            Value::Text("bench".into()),
            Value::Text(SCRIPT.into()),
            Value::Bytes(peers.install_signature().to_vec().into()),
        ],
    )
    .await?;
    call(
        "setPolicy",
        vec![
            ctx,
            Value::Text(peers.policy()),
            Value::Bytes(peers.policy_signature().to_vec().into()),
        ],
    )
    .await?;
    let envelopes = peers.envelopes(n + WARMUP);
    let bare = Bare::new(peers.bob.peer())?;

    let (mut ours, mut base) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut rtt, mut eval, mut verify) = (Vec::new(), Vec::new(), Vec::new());
    for (i, env) in envelopes.iter().enumerate() {
        let bytes = Value::Bytes(env.to_bytes().into());
        let t = Instant::now();
        let r = call("submit", vec![bytes]).await?;
        keep(&mut ours, i, t.elapsed().as_nanos() as f64);
        anyhow::ensure!(
            r.get("ok") == Some(&Value::Bool(true)),
            "unexpected reply {r:?}"
        );
        let t = Instant::now();
        call("mode", Vec::new()).await?;
        let r = t.elapsed().as_nanos() as f64;
        let b = bare.eval(i)?;
        keep(&mut rtt, i, r);
        keep(&mut eval, i, b);
        keep(&mut base, i, r + b);
        keep(&mut verify, i, verify_alone(env)?);
    }
    core.unload("contexts", false)
        .await
        .context("unloading contexts")?;
    let mut row = Row::new(MODULE_ID, MODULE_NAME);
    row.baseline_name =
        Some("a trivial call to the same module + bare Rhai eval of the same script".into());
    finish(
        &mut row,
        &summarize(&mut ours),
        &summarize(&mut base),
        &[
            ("verify_us", &summarize(&mut verify)),
            ("call_us", &summarize(&mut rtt)),
            ("eval_us", &summarize(&mut eval)),
        ],
    );
    Ok(row)
}
