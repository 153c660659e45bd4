//! Context storage: one [`Backend`] per worker, one [`Namespace`] per context, and
//! [`Store`], the quota-keeping wrapper the worker uses.
//!
//! A namespace only ever sees validated [`StorageKey`]s and is opened once, when the context
//! is activated, and held: whatever the backend's notion of a root is (a directory handle,
//! a database file, an object prefix) is fixed then, so nothing done to paths later can
//! redirect it. Values are bytes; the worker stores logos `Value`s as CBOR.
//!
//! Backends: [`fs::FsBackend`] (`cap-std`, a directory per context), [`sqlite::SqliteBackend`]
//! (the default: a table in the context's own state database, so a submission's writes,
//! nonces and audit records are one commit) and [`s3::S3Backend`] (`object_store`, a prefix
//! per context on an S3-compatible service). They are synchronous: evaluation runs on the
//! worker's own threads, never on an async runtime's (the S3 backend drives its own).
//!
//! Quotas count, per context, the bytes of every key and value stored. A batch that would go
//! over is refused whole with [`Error::QuotaExceeded`]; other contexts are unaffected.

pub mod fs;
pub mod s3;
pub mod sqlite;

use crate::error::Error;
use crate::id::ContextId;
use crate::key::StorageKey;
use crate::state::{ContextState, Journal};
use std::sync::Mutex;

/// One change of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Store `value` under the key.
    Put(StorageKey, Vec<u8>),
    /// Remove the key.
    Delete(StorageKey),
}

impl Change {
    /// The key changed.
    pub fn key(&self) -> &StorageKey {
        match self {
            Change::Put(k, _) | Change::Delete(k) => k,
        }
    }
}

/// Where contexts keep their data.
pub trait Backend: Send + Sync + 'static {
    /// `fs`, `sqlite` or `s3`.
    fn name(&self) -> &'static str;
    /// Opens (creating when missing) the namespace of `context`, whose own state database
    /// is `state` (a backend keeping data elsewhere ignores it).
    ///
    /// # Errors
    /// [`Error::Storage`] when the namespace cannot be opened safely.
    fn open(&self, context: ContextId, state: &ContextState) -> Result<Box<dyn Namespace>, Error>;
    /// Removes everything of `context`.
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn destroy(&self, context: ContextId) -> Result<(), Error>;
}

/// One context's keys.
pub trait Namespace: Send + Sync {
    /// The value under `key`.
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, Error>;
    /// Size in bytes of the value under `key`, if any.
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn size_of(&self, key: &StorageKey) -> Result<Option<u64>, Error>;
    /// Keys starting with `prefix`, sorted, at most `limit`.
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn list(&self, prefix: &str, limit: usize) -> Result<Vec<StorageKey>, Error>;
    /// Applies `changes` in order (atomically where the backend can: SQLite does; the file
    /// system and S3 apply each key atomically).
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn apply(&self, changes: &[Change]) -> Result<(), Error>;
    /// Whether [`Namespace::apply_journaled`] writes the journal (the namespace lives in
    /// the context's state database).
    fn journals(&self) -> bool {
        false
    }
    /// Applies `changes` and writes `journal` into the context's state in the same
    /// transaction (`true`) when this namespace lives in that state; otherwise applies only
    /// `changes` (`false`), and the worker writes the journal itself. `keep` and
    /// `forget_before_ms` bound the audit log and the nonces remembered.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::State`]: nothing was applied.
    fn apply_journaled(
        &self,
        changes: &[Change],
        journal: &Journal,
        keep: u64,
        forget_before_ms: u64,
    ) -> Result<bool, Error> {
        let _ = (journal, keep, forget_before_ms);
        self.apply(changes).map(|()| false)
    }
    /// Bytes of keys and values stored, counted from scratch (at activation).
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn usage(&self) -> Result<u64, Error>;
}

/// A namespace with its quota.
pub struct Store {
    context: ContextId,
    ns: Box<dyn Namespace>,
    quota: u64,
    used: Mutex<u64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("context", &self.context)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Wraps `ns`, counting what it holds now.
    ///
    /// # Errors
    /// [`Error::Storage`] from counting.
    pub fn new(context: ContextId, ns: Box<dyn Namespace>, quota: u64) -> Result<Store, Error> {
        let used = ns.usage()?;
        Ok(Store {
            context,
            ns,
            quota,
            used: Mutex::new(used),
        })
    }

    /// The value under `key`.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, Error> {
        self.ns.get(key)
    }

    /// Keys under `prefix`.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn list(&self, prefix: &str, limit: usize) -> Result<Vec<StorageKey>, Error> {
        self.ns.list(prefix, limit)
    }

    /// Whether a submission's journal is committed with its writes
    /// ([`Namespace::journals`]).
    pub fn journals(&self) -> bool {
        self.ns.journals()
    }

    /// Bytes in use and the quota.
    pub fn usage(&self) -> (u64, u64) {
        (
            *self.used.lock().unwrap_or_else(|p| p.into_inner()),
            self.quota,
        )
    }

    /// Applies `changes` if the context stays within its quota.
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`] (nothing applied), [`Error::Storage`].
    pub fn apply(&self, changes: &[Change]) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        self.apply_journaled(changes, &Journal::default(), u64::MAX, 0)
            .map(|_| ())
    }

    /// [`Store::apply`] with the submission's `journal` in the same transaction when the
    /// backend keeps data in the context's state (`true`; see
    /// [`Namespace::apply_journaled`]).
    ///
    /// # Errors
    /// [`Error::QuotaExceeded`] (nothing applied), [`Error::Storage`], [`Error::State`].
    pub fn apply_journaled(
        &self,
        changes: &[Change],
        journal: &Journal,
        keep: u64,
        forget_before_ms: u64,
    ) -> Result<bool, Error> {
        // Serialises writers of this context: the size check and the write are one step.
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let mut after = i128::from(*used);
        let mut seen = std::collections::HashMap::new();
        for c in changes {
            let old = match seen.get(c.key()) {
                Some(size) => *size,
                None => self.ns.size_of(c.key())?.map_or(0, |v| v + c.key().cost()),
            };
            let new = match c {
                Change::Put(k, v) => k.cost() + v.len() as u64,
                Change::Delete(_) => 0,
            };
            after += i128::from(new) - i128::from(old);
            // What the key costs once this change is applied, for a later change of it.
            seen.insert(c.key().clone(), new);
        }
        let after = u64::try_from(after.max(0)).unwrap_or(u64::MAX);
        if after > self.quota && after > *used {
            return Err(Error::QuotaExceeded {
                context: self.context.to_string(),
                used: *used,
                quota: self.quota,
                needed: after - *used,
            });
        }
        let journaled = self
            .ns
            .apply_journaled(changes, journal, keep, forget_before_ms)?;
        *used = after;
        Ok(journaled)
    }
}
