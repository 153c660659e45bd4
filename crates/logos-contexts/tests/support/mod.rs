//! Shared by the integration tests: peers with keys, a world of workers in a temp dir (one
//! worker holding every context in `Shared` mode, one worker per context in `Isolated`
//! mode), and helpers that sign owner changes and envelopes the way a real client does.
//!
//! Everything is real: SQLite files, the Rhai engine, Cedar, signatures. Each test gets its
//! own temp dir, removed on drop (workers are dropped first, joining their threads).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use logos_contexts::storage::Backend;
use logos_contexts::{
    AuditRecord, Config, ContextId, Envelope, Error, GrantRule, Keypair, PeerId, ScriptRef,
    SignedEnvelope, Statement, Submitted, Worker, now_ms, sha256,
};
use logos_wire::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Deployment modes the attack suite runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One worker holds every context.
    Shared,
    /// One worker per context.
    Isolated,
}

/// A peer and its key.
#[derive(Clone)]
pub struct Peer {
    pub key: Keypair,
}

impl Peer {
    pub fn new(seed: u8) -> Peer {
        Peer {
            key: Keypair::from_seed(&[seed; 32]),
        }
    }
    pub fn id(&self) -> PeerId {
        self.key.peer()
    }
    pub fn ctx(&self) -> ContextId {
        ContextId::of(self.key.peer())
    }
}

pub type MakeBackend = Box<dyn Fn(&std::path::Path) -> Arc<dyn Backend>>;

/// Workers in a temp dir.
pub struct World {
    pub mode: Mode,
    pub config: Config,
    workers: std::sync::Mutex<BTreeMap<Option<ContextId>, Arc<Worker>>>,
    make_backend: Option<MakeBackend>,
    pub dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        self.workers.lock().unwrap().clear();
    }
}

/// A quick test configuration: short deadline, small queue.
pub fn test_config() -> Config {
    let mut c = Config::new();
    c.limits.deadline = std::time::Duration::from_millis(1500);
    c
}

impl World {
    pub fn new(mode: Mode) -> World {
        World::with(mode, test_config(), None)
    }

    pub fn with(mode: Mode, config: Config, make_backend: Option<MakeBackend>) -> World {
        World {
            mode,
            config,
            workers: std::sync::Mutex::new(BTreeMap::new()),
            make_backend,
            dir: tempfile::Builder::new()
                .prefix("contexts-test-")
                .tempdir()
                .unwrap(),
        }
    }

    fn root(&self, slot: Option<ContextId>) -> PathBuf {
        match slot {
            None => self.dir.path().join("shared"),
            Some(c) => self
                .dir
                .path()
                .join(format!("iso-{}", &c.to_string()[..16])),
        }
    }

    fn open(&self, slot: Option<ContextId>) -> Arc<Worker> {
        let root = self.root(slot);
        let mut config = self.config.clone();
        if slot.is_some() {
            config.max_contexts = 1;
        }
        let mut b = Worker::builder(&root).config(config);
        if let Some(make) = &self.make_backend {
            b = b.backend(make(&root.join("data")));
        }
        Arc::new(b.open().unwrap())
    }

    /// The worker hosting `ctx` (opened on first use).
    pub fn worker(&self, ctx: ContextId) -> Arc<Worker> {
        let slot = match self.mode {
            Mode::Shared => None,
            Mode::Isolated => Some(ctx),
        };
        let mut w = self.workers.lock().unwrap();
        w.entry(slot).or_insert_with(|| self.open(slot)).clone()
    }

    /// Drops and reopens every worker (a restart).
    pub fn restart(&self) {
        let mut w = self.workers.lock().unwrap();
        let slots: Vec<_> = w.keys().copied().collect();
        w.clear();
        for s in slots {
            w.insert(s, self.open(s));
        }
    }

    pub fn create(&self, owner: &Peer, quota: Option<u64>) {
        self.worker(owner.ctx())
            .create_context(owner.id(), quota)
            .unwrap();
    }

    pub fn revision(&self, owner: &Peer) -> u64 {
        self.worker(owner.ctx()).info(owner.ctx()).unwrap().revision
    }

    pub fn install(&self, owner: &Peer, name: &str, source: &str) -> Result<u64, Error> {
        let ctx = owner.ctx();
        let sig = owner.key.sign_statement(&Statement::InstallScript {
            context: ctx,
            revision: self.revision(owner) + 1,
            name,
            source_hash: sha256(source.as_bytes()),
        });
        self.worker(ctx).install_script(ctx, name, source, &sig)
    }

    pub fn set_policy(&self, owner: &Peer, text: &str) -> Result<u64, Error> {
        let ctx = owner.ctx();
        let sig = owner.key.sign_statement(&Statement::SetPolicy {
            context: ctx,
            revision: self.revision(owner) + 1,
            policy_hash: sha256(text.as_bytes()),
        });
        self.worker(ctx).set_policy(ctx, text, &sig)
    }

    pub fn audit(&self, owner: &Peer) -> Vec<AuditRecord> {
        let ctx = owner.ctx();
        let exp = now_ms() + 60_000;
        let sig = owner.key.sign_statement(&Statement::ReadAudit {
            context: ctx,
            expires_at_ms: exp,
        });
        self.worker(ctx).audit(ctx, exp, &sig, 0, 1000).unwrap()
    }

    /// The last audit record of `owner`'s context.
    pub fn last_audit(&self, owner: &Peer) -> AuditRecord {
        self.audit(owner).pop().expect("an audit record")
    }

    pub fn submit(&self, env: &SignedEnvelope) -> Result<Submitted, Error> {
        self.worker(env.envelope.target).submit(&env.to_bytes())
    }

    /// Bob runs `script` inline in `target`'s context, with params.
    pub fn run(
        &self,
        caller: &Peer,
        target: &Peer,
        script: &str,
        params: Value,
    ) -> Result<Submitted, Error> {
        self.submit(&envelope(
            caller,
            target,
            ScriptRef::Inline(script.into()),
            params,
        ))
    }

    /// The owner stores `key = value` in their own context.
    pub fn owner_put(&self, owner: &Peer, key: &str, value: i64) {
        self.run(
            owner,
            owner,
            &format!("put(\"{key}\", {value})"),
            Value::Null,
        )
        .unwrap();
    }

    pub fn owner_get(&self, owner: &Peer, key: &str) -> Value {
        self.run(owner, owner, &format!("get(\"{key}\")"), Value::Null)
            .unwrap()
            .value
    }
}

/// A fresh 16-byte nonce.
pub fn nonce() -> Vec<u8> {
    let mut n = vec![0u8; 16];
    getrandom_fill(&mut n);
    n
}

fn getrandom_fill(b: &mut [u8]) {
    // Keys double as a random source here: a fresh key's public half is random enough for
    // a nonce, and keeps the test support free of another dependency.
    let k = Keypair::generate().unwrap();
    let bytes = k.peer();
    b.copy_from_slice(&bytes.as_bytes()[..b.len()]);
}

/// An envelope from `caller` to `target`'s context, valid for a minute.
pub fn envelope(caller: &Peer, target: &Peer, script: ScriptRef, params: Value) -> SignedEnvelope {
    SignedEnvelope::sign(
        Envelope {
            caller: caller.id(),
            target: target.ctx(),
            nonce: nonce(),
            expires_at_ms: now_ms() + 60_000,
            script,
            params,
            expose: Value::Null,
            grant: None,
            parent: None,
        },
        &caller.key,
    )
}

/// The same with a grant.
pub fn envelope_with(
    caller: &Peer,
    target: &Peer,
    script: &str,
    grant: Option<Vec<GrantRule>>,
    parent: Option<SignedEnvelope>,
) -> SignedEnvelope {
    SignedEnvelope::sign(
        Envelope {
            caller: caller.id(),
            target: target.ctx(),
            nonce: nonce(),
            expires_at_ms: now_ms() + 60_000,
            script: ScriptRef::Inline(script.into()),
            params: Value::Null,
            expose: Value::Null,
            grant,
            parent: parent.map(Box::new),
        },
        &caller.key,
    )
}

/// A policy letting `who` submit and do `actions` on every key.
pub fn allow(who: &Peer, actions: &[&str]) -> String {
    let mut p = format!(
        "permit(principal == Logos::Peer::\"{}\", action == Logos::Action::\"submit\", resource);\n",
        who.id()
    );
    for a in actions {
        p.push_str(&format!(
            "permit(principal == Logos::Peer::\"{}\", action == Logos::Action::\"{a}\", resource);\n",
            who.id()
        ));
    }
    p
}
