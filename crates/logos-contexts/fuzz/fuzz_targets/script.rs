//! Script evaluation under the worker's limits: any source text, evaluated with the default
//! limits (a short deadline) by the raw engine with every host function of the default
//! profile, must end in a value or an error, never a panic, a stack overflow or a hang.
//! Storage is a real SQLite namespace (a context state database) in a temp dir; the policy allows the owner.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logos_contexts::policy::{Action, Resource};
use logos_contexts::script::{AstCache, Authorize, Detail, Evaluator, Job, Source};
use logos_contexts::storage::{Backend, Store, sqlite::SqliteBackend};
use logos_contexts::{ContextId, ContextState, Error, Keypair, Limits, Profile, sha256};
use logos_wire::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

struct AllowAll;
impl Authorize for AllowAll {
    fn check(&self, _: Action, _: &Resource<'_>, _: &Detail<'_>) -> Result<(), Error> {
        Ok(())
    }
}

struct Fixture {
    ev: Evaluator,
    store: Arc<Store>,
    ctx: ContextId,
    _dir: std::path::PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("contexts-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ctx = ContextId::of(Keypair::from_seed(&[5; 32]).peer());
        let state = ContextState::open(&dir.join("state.sqlite"), 1 << 20, 0).expect("state");
        let ns = SqliteBackend::new().open(ctx, &state).expect("open");
        let store = Arc::new(Store::new(ctx, ns, 1 << 20).expect("store"));
        let mut limits = Limits::default();
        limits.deadline = Duration::from_millis(200);
        limits.operations = 100_000;
        let profile = Profile::default();
        Fixture {
            ev: Evaluator::new(&limits, profile, Arc::new(AstCache::new(64))),
            store,
            ctx,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let f = fixture();
    let job = Job {
        context: f.ctx,
        store: f.store.clone(),
        main: Source {
            name: "fuzz".into(),
            text: text.into(),
            hash: sha256(data),
        },
        scripts: Arc::new(BTreeMap::new()),
        shared: Arc::new(BTreeMap::new()),
        authorize: Arc::new(AllowAll),
        caller_link: None,
        caller_info: Value::Null,
        params: Value::Null,
        now_ms: 0,
    };
    // The fuzzer runs on its main thread (8 MiB stack), above Config::MIN_STACK.
    let _ = f.ev.run(job);
});
