//! `&mut self` methods in `#[module]`: how they are dispatched and what runs concurrently.
//!
//! A module with a `&mut self` method is held in a read-write lock by [`Instance`]: `&self`
//! calls share it, a `&mut self` call has it alone for as long as it runs, `.await`s
//! included. The tests hold calls at a gate the test opens, so they observe the order by
//! polling, never by sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::poll;
use logos_sdk::{Context, ErrorCode, Instance, Module, Value, module};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// Counts, with a gate that held calls wait at until the test opens it.
struct Tally {
    n: i64,
    lines: Vec<String>,
    gate: Arc<Semaphore>,
    /// `&self` calls that got past the lock and are waiting at the gate.
    waiting: Arc<AtomicUsize>,
}

#[module(name = "tally", version = "1.0.0")]
impl Tally {
    #[init]
    fn new() -> Self {
        Tally {
            n: 0,
            lines: Vec::new(),
            gate: Arc::new(Semaphore::new(0)),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn bump(&mut self, by: i64) -> i64 {
        self.n += by;
        self.n
    }

    /// Borrowed arguments work in `&mut self` methods too.
    pub fn push(&mut self, ctx: &Context, line: &str) -> usize {
        self.lines.push(format!("{}: {line}", ctx.name()));
        self.lines.len()
    }

    /// Holds the module exclusively until the gate opens, then bumps.
    pub async fn hold_and_bump(&mut self) -> i64 {
        let gate = Arc::clone(&self.gate);
        gate.acquire().await.unwrap().forget();
        self.n += 1;
        self.n
    }

    /// Shares the module until the gate opens, then reads.
    pub async fn wait_and_get(&self) -> i64 {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        self.n
    }

    pub fn get(&self) -> i64 {
        self.n
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.clone()
    }
}

fn setup() -> (Instance<Tally>, Arc<Semaphore>, Arc<AtomicUsize>, Context) {
    let ctx = Context::standalone("tally", std::env::temp_dir());
    let tally = Tally::init(&ctx).unwrap();
    let (gate, waiting) = (Arc::clone(&tally.gate), Arc::clone(&tally.waiting));
    (Instance::new(tally), gate, waiting, ctx)
}

#[tokio::test]
async fn mut_self_methods_change_the_module() {
    let (tally, _, _, ctx) = setup();
    assert_eq!(
        tally.call(&ctx, "bump", vec![2.into()]).await,
        Ok(Value::Int(2))
    );
    assert_eq!(
        tally.call(&ctx, "bump", vec![3.into()]).await,
        Ok(Value::Int(5))
    );
    assert_eq!(tally.call(&ctx, "get", vec![]).await, Ok(Value::Int(5)));
    assert_eq!(
        tally.call(&ctx, "push", vec!["hi".into()]).await,
        Ok(Value::Int(1))
    );
    assert_eq!(
        tally.call(&ctx, "lines", vec![]).await,
        Ok(Value::List(vec!["tally: hi".into()]))
    );
    const { assert!(Tally::HAS_MUT_METHODS) };
    assert!(Tally::takes_mut("bump") && Tally::takes_mut("holdAndBump"));
    assert!(!Tally::takes_mut("get") && !Tally::takes_mut("nope"));
    assert!(format!("{tally:?}").contains("locked: true"), "{tally:?}");
}

#[tokio::test]
async fn a_mut_self_call_runs_alone_across_its_awaits() {
    let (tally, gate, _, ctx) = setup();
    let mut held = tally.call(&ctx, "holdAndBump", vec![]);
    assert!(poll!(&mut held).is_pending(), "waits at the gate");
    // Neither a `&self` nor another `&mut self` call gets in while it holds the module.
    let mut read = tally.call(&ctx, "get", vec![]);
    let mut write = tally.call(&ctx, "bump", vec![10.into()]);
    assert!(poll!(&mut read).is_pending());
    assert!(poll!(&mut write).is_pending());
    gate.add_permits(1);
    assert_eq!(held.await, Ok(Value::Int(1)));
    // The queued calls then run in order and see the change.
    assert_eq!(read.await, Ok(Value::Int(1)));
    assert_eq!(write.await, Ok(Value::Int(11)));
}

#[tokio::test]
async fn self_calls_share_the_module_and_a_mut_self_call_waits_for_them() {
    let (tally, gate, waiting, ctx) = setup();
    let mut first = tally.call(&ctx, "waitAndGet", vec![]);
    let mut second = tally.call(&ctx, "waitAndGet", vec![]);
    assert!(poll!(&mut first).is_pending());
    assert!(poll!(&mut second).is_pending());
    assert_eq!(waiting.load(Ordering::SeqCst), 2, "both run at once");
    let mut write = tally.call(&ctx, "bump", vec![1.into()]);
    assert!(
        poll!(&mut write).is_pending(),
        "waits for the running reads"
    );
    // The lock is fair: a read that arrives after a waiting write waits behind it.
    let mut late = tally.call(&ctx, "get", vec![]);
    assert!(poll!(&mut late).is_pending());
    gate.add_permits(2);
    assert_eq!(first.await, Ok(Value::Int(0)));
    assert_eq!(second.await, Ok(Value::Int(0)));
    assert_eq!(write.await, Ok(Value::Int(1)));
    assert_eq!(late.await, Ok(Value::Int(1)));
}

#[tokio::test]
async fn a_mut_self_method_needs_exclusive_access() {
    let ctx = Context::standalone("tally", std::env::temp_dir());
    let mut tally = Tally::init(&ctx).unwrap();
    // The shared entry refuses it, naming the way that works.
    let f = tally.call(&ctx, "bump", vec![1.into()]).await.unwrap_err();
    assert_eq!(f.code, ErrorCode::MethodFailed);
    assert!(
        f.message.contains("tally.bump takes `&mut self`"),
        "{}",
        f.message
    );
    // The exclusive entry runs everything.
    assert_eq!(
        tally.call_mut(&ctx, "bump", vec![4.into()]).await,
        Ok(Value::Int(4))
    );
    assert_eq!(tally.call_mut(&ctx, "get", vec![]).await, Ok(Value::Int(4)));
    let f = tally.call_mut(&ctx, "nope", vec![]).await.unwrap_err();
    assert_eq!(f.code, ErrorCode::UnknownMethod);
    let f = tally
        .call_mut(&ctx, "bump", vec!["x".into()])
        .await
        .unwrap_err();
    assert_eq!(f.code, ErrorCode::InvalidArgs);
}

#[derive(Default)]
struct Plain;

#[module(name = "plain")]
impl Plain {
    pub fn one(&self) -> u8 {
        1
    }
}

#[tokio::test]
async fn a_module_without_mut_self_methods_is_not_locked() {
    let ctx = Context::standalone("plain", std::env::temp_dir());
    let plain = Instance::new(Plain);
    const { assert!(!Plain::HAS_MUT_METHODS) };
    assert!(format!("{plain:?}").contains("locked: false"), "{plain:?}");
    assert_eq!(plain.call(&ctx, "one", vec![]).await, Ok(Value::Int(1)));
}

/// Only `&self` methods that do not wait are served at once: a `&mut self` method (sync or
/// async) and an async `&self` one go through their futures.
#[test]
fn only_synchronous_shared_methods_are_served_at_once() {
    assert!(Tally::sync_method("get"));
    assert!(Tally::sync_method("lines"));
    for method in ["bump", "push", "holdAndBump", "waitAndGet"] {
        assert!(
            Tally::methods().iter().any(|m| m.name == method),
            "{method} is exported"
        );
        assert!(!Tally::sync_method(method), "{method}");
    }
}
