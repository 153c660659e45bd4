//! The SQLite backend (the default): a context's data is the table
//! `kv(key TEXT PRIMARY KEY, value BLOB)` in the context's own state database
//! (`<state dir>/<context id>/state.sqlite`, see `state.rs`), one file per context.
//!
//! Living in the state database is the point: a submission's writes, its nonces and its
//! audit records are one transaction ([`Namespace::apply_journaled`]), so the default path
//! costs one WAL append per submission and a crash can never keep the effects of an envelope
//! while forgetting its nonce (nor the reverse). The file was opened with
//! `SQLITE_OPEN_NOFOLLOW` when the context was activated and the connection is held. Never
//! runs SQL built from input: keys and values are bound parameters; every statement is
//! prepared once per connection.

use super::{Backend, Change, Namespace};
use crate::error::Error;
use crate::id::ContextId;
use crate::key::StorageKey;
use crate::state::{ContextState, Journal};
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

const BACKEND: &str = "sqlite";

/// Contexts' data in their state databases.
#[derive(Debug, Default, Clone, Copy)]
pub struct SqliteBackend;

impl SqliteBackend {
    /// The backend (it has no settings: the worker decides where state databases live).
    pub fn new() -> SqliteBackend {
        SqliteBackend
    }
}

/// Creates the `kv` table (the state database does, when it opens).
pub(crate) fn create_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;",
    )
}

/// Applies `changes` inside `tx`.
pub(crate) fn write(tx: &Transaction<'_>, changes: &[Change]) -> rusqlite::Result<()> {
    for c in changes {
        match c {
            Change::Put(k, v) => tx
                .prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")?
                .execute(params![k.as_str(), v])?,
            Change::Delete(k) => tx
                .prepare_cached("DELETE FROM kv WHERE key = ?1")?
                .execute(params![k.as_str()])?,
        };
    }
    Ok(())
}

impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn open(&self, _context: ContextId, state: &ContextState) -> Result<Box<dyn Namespace>, Error> {
        Ok(Box::new(SqliteNamespace {
            state: state.clone(),
        }))
    }

    fn destroy(&self, _context: ContextId) -> Result<(), Error> {
        // The data goes with the state database, which the worker removes.
        Ok(())
    }
}

/// One context's data, in its state database.
#[derive(Debug)]
pub struct SqliteNamespace {
    state: ContextState,
}

fn err(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
    let what = what.into();
    move |e| Error::storage(BACKEND, what, e)
}

impl Namespace for SqliteNamespace {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, Error> {
        self.state
            .lock()
            .conn()
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")
            .and_then(|mut s| s.query_row(params![key.as_str()], |r| r.get(0)).optional())
            .map_err(err(format!("reading {key}")))
    }

    fn size_of(&self, key: &StorageKey) -> Result<Option<u64>, Error> {
        self.state
            .lock()
            .conn()
            .prepare_cached("SELECT length(value) FROM kv WHERE key = ?1")
            .and_then(|mut s| {
                s.query_row(params![key.as_str()], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .map(|v| v.map(|n| n.max(0) as u64))
            .map_err(err(format!("sizing {key}")))
    }

    fn list(&self, prefix: &str, limit: usize) -> Result<Vec<StorageKey>, Error> {
        let state = self.state.lock();
        let mut stmt = state
            .conn()
            .prepare_cached(
                "SELECT key FROM kv WHERE substr(key, 1, ?1) = ?2 ORDER BY key LIMIT ?3",
            )
            .map_err(err("listing"))?;
        let rows = stmt
            .query_map(
                params![
                    prefix.len() as i64,
                    prefix,
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| r.get::<_, String>(0),
            )
            .map_err(err("listing"))?;
        let mut keys = Vec::new();
        for row in rows {
            let k = row.map_err(err("listing"))?;
            // Only valid keys are ever written; anything else was not written by us.
            if let Ok(k) = StorageKey::parse(&k) {
                keys.push(k);
            }
        }
        Ok(keys)
    }

    fn apply(&self, changes: &[Change]) -> Result<(), Error> {
        self.apply_journaled(changes, &Journal::default(), u64::MAX, 0)
            .map(|_| ())
    }

    fn journals(&self) -> bool {
        true
    }

    fn apply_journaled(
        &self,
        changes: &[Change],
        journal: &Journal,
        keep: u64,
        forget_before_ms: u64,
    ) -> Result<bool, Error> {
        self.state
            .lock()
            .commit(changes, journal, keep, forget_before_ms)?;
        Ok(true)
    }

    fn usage(&self) -> Result<u64, Error> {
        self.state
            .lock()
            .conn()
            .query_row(
                "SELECT COALESCE(SUM(length(CAST(key AS BLOB)) + length(value)), 0) FROM kv",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(err("counting usage"))
    }
}
