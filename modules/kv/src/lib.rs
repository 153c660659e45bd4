//! `kv`: a key-value store persisted in the module's data dir.
//!
//! Shows a module with durable state: values of any type (`any`) are kept in memory and
//! written, whole, to `<data dir>/kv.cbor` on every change — to a temporary file that is
//! synced and then renamed over the old one, so a crash leaves the old or the new state,
//! never a torn file. The write runs on the blocking pool, so the module keeps answering
//! (pings included) while the disk works; changes are serialised by one async lock, and the
//! in-memory state changes only once its write succeeded. Never holds more than it was given
//! and never reads outside its data dir.

use logos_sdk::{Context, Value, module};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the store inside the data dir.
pub const STORE_FILE: &str = "kv.cbor";

/// The kv module.
#[derive(Debug)]
pub struct Kv {
    path: PathBuf,
    entries: tokio::sync::Mutex<BTreeMap<String, Value>>,
}

/// Reads the store; a missing file is an empty store, a corrupt one an error (never silently
/// replaced by an empty store: that would lose data on the next write).
fn load(path: &Path) -> Result<BTreeMap<String, Value>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    match logos_wire::decode_value(&bytes) {
        Ok(Value::Map(m)) => Ok(m),
        Ok(other) => Err(format!(
            "{} holds a {}, not a map; move it away to start empty",
            path.display(),
            other.type_name()
        )),
        Err(e) => Err(format!(
            "{} is corrupt ({e}); move it away to start empty",
            path.display()
        )),
    }
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("cbor.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl Kv {
    /// Persists `entries`; the caller holds the lock so writes happen in order.
    async fn persist(&self, entries: &BTreeMap<String, Value>) -> Result<(), String> {
        let mut bytes = Vec::new();
        logos_wire::encode_value(&Value::Map(entries.clone()), &mut bytes)
            .map_err(|e| format!("cannot encode the store: {e}"))?;
        let path = self.path.clone();
        let shown = path.display().to_string();
        match tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot write {shown}: {e}")),
            Err(e) => Err(format!("writing {shown} failed: {e}")),
        }
    }
}

#[module]
impl Kv {
    #[init]
    fn new(ctx: &Context) -> Result<Self, String> {
        let path = ctx.data_dir().join(STORE_FILE);
        let entries = load(&path)?;
        Ok(Kv {
            path,
            entries: tokio::sync::Mutex::new(entries),
        })
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub async fn set(&self, key: String, value: Value) -> Result<(), String> {
        let mut entries = self.entries.lock().await;
        let previous = entries.insert(key.clone(), value);
        if let Err(e) = self.persist(&entries).await {
            match previous {
                Some(v) => entries.insert(key, v),
                None => entries.remove(&key),
            };
            return Err(e);
        }
        Ok(())
    }

    /// The value under `key`, or null.
    #[read_only]
    pub async fn get(&self, key: String) -> Option<Value> {
        self.entries.lock().await.get(&key).cloned()
    }

    /// Removes `key`; `true` if it was there.
    pub async fn delete(&self, key: String) -> Result<bool, String> {
        let mut entries = self.entries.lock().await;
        let Some(previous) = entries.remove(&key) else {
            return Ok(false);
        };
        if let Err(e) = self.persist(&entries).await {
            entries.insert(key, previous);
            return Err(e);
        }
        Ok(true)
    }

    /// Every key, sorted.
    #[read_only]
    pub async fn keys(&self) -> Vec<String> {
        self.entries.lock().await.keys().cloned().collect()
    }
}

logos_sdk::export_module!(Kv);

#[cfg(test)]
mod tests {
    use super::*;
    use logos_sdk::Module;

    #[tokio::test]
    async fn values_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::standalone("kv", dir.path());
        let kv = Kv::init(&ctx).unwrap();
        kv.set("a".into(), Value::Bytes(vec![1, 2].into()))
            .await
            .unwrap();
        kv.set("b".into(), Value::from(7)).await.unwrap();
        kv.set("a".into(), Value::from("text")).await.unwrap();
        assert!(kv.delete("b".into()).await.unwrap());
        assert!(!kv.delete("b".into()).await.unwrap());
        kv.set("c".into(), Value::List(vec![Value::Null]))
            .await
            .unwrap();
        drop(kv);

        let again = Kv::init(&ctx).unwrap();
        assert_eq!(again.keys().await, ["a", "c"]);
        assert_eq!(again.get("a".into()).await, Some(Value::from("text")));
        assert_eq!(again.get("b".into()).await, None);
        assert!(!dir.path().join("kv.cbor.tmp").exists());
    }

    #[test]
    fn corrupt_store_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STORE_FILE), b"\xff\x00garbage").unwrap();
        let ctx = Context::standalone("kv", dir.path());
        let e = Kv::init(&ctx).unwrap_err().to_string();
        assert!(e.contains("is corrupt"), "{e}");
        assert!(e.starts_with("module \"kv\" failed to initialise"), "{e}");
    }
}
