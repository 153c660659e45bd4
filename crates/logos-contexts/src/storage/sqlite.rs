//! The SQLite backend (the default): one database file per context, `<base>/<context id>.sqlite`,
//! one table `kv(key TEXT PRIMARY KEY, value BLOB)`.
//!
//! The file is opened with `SQLITE_OPEN_NOFOLLOW` (a symlink planted in its place is refused)
//! when the context is activated, and the connection is held. A batch is one transaction:
//! all of a script's writes land, or none. WAL journal with `synchronous=NORMAL`: a commit
//! survives the worker crashing; an OS crash may lose the last commits, never corrupt the
//! file. Never runs SQL built from input: keys and values are bound parameters.

use super::{Backend, Change, Namespace};
use crate::error::Error;
use crate::id::ContextId;
use crate::key::StorageKey;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const BACKEND: &str = "sqlite";

/// Contexts as database files in a base directory.
#[derive(Debug)]
pub struct SqliteBackend {
    base: PathBuf,
}

impl SqliteBackend {
    /// Uses (creating when missing) the directory `base`.
    ///
    /// # Errors
    /// [`Error::Storage`] when it cannot be created.
    pub fn new(base: &Path) -> Result<SqliteBackend, Error> {
        std::fs::create_dir_all(base)
            .map_err(|e| Error::storage(BACKEND, format!("creating {}", base.display()), e))?;
        Ok(SqliteBackend {
            base: base.to_path_buf(),
        })
    }

    fn path(&self, context: ContextId) -> PathBuf {
        self.base.join(format!("{context}.sqlite"))
    }
}

/// Opens a database file for the worker's use: no symlinks, WAL, busy timeout.
pub(crate) fn open_db(path: &Path, backend: &'static str) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NOFOLLOW
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        Error::storage(
            backend,
            format!("opening {} (symlinks are refused)", path.display()),
            e,
        )
    })?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
    )
    .map_err(|e| Error::storage(backend, format!("configuring {}", path.display()), e))?;
    Ok(conn)
}

impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn open(&self, context: ContextId) -> Result<Box<dyn Namespace>, Error> {
        let path = self.path(context);
        let conn = open_db(&path, BACKEND)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;",
        )
        .map_err(|e| Error::storage(BACKEND, format!("creating the table in {}", path.display()), e))?;
        Ok(Box::new(SqliteNamespace {
            conn: Mutex::new(conn),
        }))
    }

    fn destroy(&self, context: ContextId) -> Result<(), Error> {
        let path = self.path(context);
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::storage(
                        BACKEND,
                        format!("removing {}", PathBuf::from(p).display()),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One context's database.
#[derive(Debug)]
pub struct SqliteNamespace {
    conn: Mutex<Connection>,
}

impl SqliteNamespace {
    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn err(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
    let what = what.into();
    move |e| Error::storage(BACKEND, what, e)
}

impl Namespace for SqliteNamespace {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, Error> {
        self.conn()
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")
            .and_then(|mut s| s.query_row(params![key.as_str()], |r| r.get(0)).optional())
            .map_err(err(format!("reading {key}")))
    }

    fn size_of(&self, key: &StorageKey) -> Result<Option<u64>, Error> {
        self.conn()
            .prepare_cached("SELECT length(value) FROM kv WHERE key = ?1")
            .and_then(|mut s| {
                s.query_row(params![key.as_str()], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .map(|v| v.map(|n| n.max(0) as u64))
            .map_err(err(format!("sizing {key}")))
    }

    fn list(&self, prefix: &str, limit: usize) -> Result<Vec<StorageKey>, Error> {
        let conn = self.conn();
        let mut stmt = conn
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
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(err("starting a write"))?;
        for c in changes {
            match c {
                Change::Put(k, v) => tx
                    .prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![k.as_str(), v]))
                    .map_err(err(format!("writing {k}")))?,
                Change::Delete(k) => tx
                    .prepare_cached("DELETE FROM kv WHERE key = ?1")
                    .and_then(|mut s| s.execute(params![k.as_str()]))
                    .map_err(err(format!("deleting {k}")))?,
            };
        }
        tx.commit().map_err(err("committing"))
    }

    fn usage(&self) -> Result<u64, Error> {
        self.conn()
            .query_row(
                "SELECT COALESCE(SUM(length(CAST(key AS BLOB)) + length(value)), 0) FROM kv",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(err("counting usage"))
    }
}
