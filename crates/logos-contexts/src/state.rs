//! A context's own state: `<state dir>/<context id>/state.sqlite`, holding its settings
//! (quota, revision), its scripts, every policy version, the nonces it has seen, its audit
//! log and, with the default `sqlite` storage backend, its data (`kv`, see
//! `storage/sqlite.rs`).
//!
//! One database per context, so deleting a context deletes one directory, a flood of audit
//! records in one context never slows another, and nothing of one context sits in another's
//! file. Opened with `SQLITE_OPEN_NOFOLLOW`; WAL with `synchronous=NORMAL` (a commit is one
//! append to the WAL, no `fsync`; it survives the worker crashing, which is what nonce
//! replay protection across restarts needs; after an OS crash the last moments may be lost,
//! bounded by envelope validity). Statements are prepared once per connection
//! (`prepare_cached`).
//!
//! Nonces and a submission's effects are one [`Journal`] commit where the data lives here:
//! a nonce is first *reserved* in memory (so a concurrent replay is refused at once), then
//! written in the same transaction as the script's writes and its audit records. A crash
//! before that commit loses the nonce together with the effects it guarded, so running the
//! envelope again after a restart runs it once. With a storage backend elsewhere (fs, s3),
//! the worker commits the nonces before the script runs instead.
//!
//! Never decides anything: the worker checks signatures and policy, this file stores.

use crate::audit::AuditRecord;
use crate::error::Error;
use crate::storage::{Change, sqlite};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// One nonce of a submission: `nonce` from `caller` towards `target`, remembered until
/// `expires_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nonce {
    /// The caller's key.
    pub caller: [u8; 32],
    /// The target context.
    pub target: [u8; 32],
    /// The nonce.
    pub nonce: Vec<u8>,
    /// Until when it must be remembered.
    pub expires_ms: u64,
}

/// What a submission leaves in its context's state: its nonces and audit records.
#[derive(Debug, Default, Clone)]
pub struct Journal {
    /// Reserved nonces to remember.
    pub nonces: Vec<Nonce>,
    /// Audit records to append (their `seq` is assigned when written).
    pub audit: Vec<AuditRecord>,
}

/// A context's state database, shared by the worker and (with the `sqlite` backend) the
/// context's storage. Opaque outside this crate.
#[derive(Debug, Clone)]
pub struct ContextState(Arc<Mutex<StateDb>>);

impl ContextState {
    /// Opens (creating) a context's state database at `path`, with `quota` and creation
    /// time `now_ms` when it is new.
    ///
    /// # Errors
    /// [`Error::State`].
    pub fn open(path: &Path, quota: u64, now_ms: u64) -> Result<ContextState, Error> {
        StateDb::open(path, Some((quota, now_ms))).map(ContextState::new)
    }

    pub(crate) fn new(db: StateDb) -> ContextState {
        ContextState(Arc::new(Mutex::new(db)))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, StateDb> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Opens a database file for the worker's use: no symlinks, WAL, busy timeout.
pub(crate) fn open_db(path: &Path) -> Result<Connection, Error> {
    let fail = |why: String| Error::State {
        path: path.to_path_buf(),
        why,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NOFOLLOW
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| fail(format!("opening (symlinks are refused): {e}")))?;
    // Exclusive locking: one worker process owns a context's file (a second one is refused
    // with "database is locked" instead of interleaving), and SQLite takes no file lock per
    // transaction (with WAL, the WAL index then lives in heap memory, not a -shm file).
    conn.execute_batch(
        "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
    )
    .map_err(|e| fail(format!("configuring: {e}")))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// One installed script, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredScript {
    /// Its name (what `import` uses).
    pub name: String,
    /// The source.
    pub source: String,
    /// SHA-256 of the source.
    pub hash: [u8; 32],
    /// The revision that installed it.
    pub revision: u64,
}

/// Everything loaded at activation.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Quota in bytes.
    pub quota: u64,
    /// Revision of the last owner change.
    pub revision: u64,
    /// Creation time (ms since the epoch).
    pub created_ms: u64,
    /// Installed scripts.
    pub scripts: Vec<StoredScript>,
    /// The current policy: (version, text); version 0 and "" when never set.
    pub policy: (u64, String),
}

/// A context's state database.
#[derive(Debug)]
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
    inserts: u64,
    /// Nonces reserved by accepted submissions and not yet committed.
    pending: HashSet<Nonce>,
}

fn err(path: &Path, what: &str) -> impl FnOnce(rusqlite::Error) -> Error {
    let path = path.to_path_buf();
    let what = what.to_owned();
    move |e| Error::State {
        path,
        why: format!("{what}: {e}"),
    }
}

impl StateDb {
    /// Opens (creating when `create`) the database at `path`.
    ///
    /// # Errors
    /// [`Error::State`].
    pub fn open(path: &Path, create: Option<(u64, u64)>) -> Result<StateDb, Error> {
        let conn = open_db(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY NOT NULL, v INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS scripts (name TEXT PRIMARY KEY NOT NULL, source TEXT NOT NULL,
                 hash BLOB NOT NULL, revision INTEGER NOT NULL, signature BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS policies (version INTEGER PRIMARY KEY, text TEXT NOT NULL,
                 signature BLOB NOT NULL, set_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS nonces (caller BLOB NOT NULL, target BLOB NOT NULL, nonce BLOB NOT NULL,
                 expires_ms INTEGER NOT NULL, PRIMARY KEY (caller, target, nonce)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL,
                 caller TEXT, action TEXT NOT NULL, resource TEXT NOT NULL, allowed INTEGER NOT NULL,
                 code TEXT NOT NULL, reason TEXT NOT NULL, policy_version INTEGER NOT NULL, envelope TEXT);",
        )
        // `seq` without AUTOINCREMENT: the log is trimmed from the oldest end only, so the
        // largest seq is never removed and never reused, and SQLite skips a bookkeeping
        // table write per record.
        .map_err(err(path, "creating tables"))?;
        if let Some((quota, now)) = create {
            conn.execute(
                "INSERT OR IGNORE INTO meta (k, v) VALUES ('quota', ?1), ('revision', 0), ('created', ?2)",
                params![quota as i64, now as i64],
            )
            .map_err(err(path, "initialising"))?;
        }
        sqlite::create_table(&conn).map_err(err(path, "creating the kv table"))?;
        Ok(StateDb {
            conn,
            path: path.to_path_buf(),
            inserts: 0,
            pending: HashSet::new(),
        })
    }

    fn meta(&self, k: &str) -> Result<u64, Error> {
        self.conn
            .query_row("SELECT v FROM meta WHERE k = ?1", params![k], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map_err(err(&self.path, "reading settings"))?
            .map(|v| v.max(0) as u64)
            .ok_or_else(|| Error::State {
                path: self.path.clone(),
                why: format!("setting {k:?} is missing: not a context's state file"),
            })
    }

    /// Everything needed to activate the context.
    ///
    /// # Errors
    /// [`Error::State`].
    pub fn load(&self) -> Result<Loaded, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, source, hash, revision FROM scripts ORDER BY name")
            .map_err(err(&self.path, "reading scripts"))?;
        let scripts = stmt
            .query_map([], |r| {
                let hash: Vec<u8> = r.get(2)?;
                Ok(StoredScript {
                    name: r.get(0)?,
                    source: r.get(1)?,
                    hash: hash.try_into().unwrap_or([0; 32]),
                    revision: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(err(&self.path, "reading scripts"))?;
        let policy = self
            .conn
            .query_row(
                "SELECT version, text FROM policies ORDER BY version DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(err(&self.path, "reading the policy"))?
            .unwrap_or((0, String::new()));
        Ok(Loaded {
            quota: self.meta("quota")?,
            revision: self.meta("revision")?,
            created_ms: self.meta("created")?,
            scripts,
            policy,
        })
    }

    /// Stores a script and the new revision, in one transaction.
    ///
    /// # Errors
    /// [`Error::State`].
    pub fn install_script(&mut self, script: &StoredScript, signature: &[u8]) -> Result<(), Error> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(err(&path, "installing a script"))?;
        tx.execute(
            "INSERT OR REPLACE INTO scripts (name, source, hash, revision, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                script.name,
                script.source,
                script.hash.as_slice(),
                script.revision as i64,
                signature
            ],
        )
        .and_then(|_| {
            tx.execute(
                "UPDATE meta SET v = ?1 WHERE k = 'revision'",
                params![script.revision as i64],
            )
        })
        .map_err(err(&path, "installing a script"))?;
        tx.commit().map_err(err(&path, "installing a script"))
    }

    /// Stores policy `version` (also the new revision), in one transaction.
    ///
    /// # Errors
    /// [`Error::State`].
    pub fn set_policy(
        &mut self,
        version: u64,
        text: &str,
        signature: &[u8],
        now_ms: u64,
    ) -> Result<(), Error> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(err(&path, "setting the policy"))?;
        tx.execute(
            "INSERT INTO policies (version, text, signature, set_ms) VALUES (?1, ?2, ?3, ?4)",
            params![version as i64, text, signature, now_ms as i64],
        )
        .and_then(|_| {
            tx.execute(
                "UPDATE meta SET v = ?1 WHERE k = 'revision'",
                params![version as i64],
            )
        })
        .map_err(err(&path, "setting the policy"))?;
        tx.commit().map_err(err(&path, "setting the policy"))
    }

    /// Reserves `n`: `false` if it was seen before (committed, or reserved by a submission
    /// still running). A reserved nonce is remembered by the next [`StateDb::commit`] that
    /// carries it.
    ///
    /// # Errors
    /// [`Error::State`].
    pub fn reserve_nonce(&mut self, n: &Nonce) -> Result<bool, Error> {
        if self.pending.contains(n) {
            return Ok(false);
        }
        let seen = self
            .conn
            .prepare_cached("SELECT 1 FROM nonces WHERE caller = ?1 AND target = ?2 AND nonce = ?3")
            .and_then(|mut s| {
                s.query_row(params![n.caller, n.target, n.nonce], |_| Ok(()))
                    .optional()
            })
            .map_err(err(&self.path, "looking up a nonce"))?;
        if seen.is_some() {
            return Ok(false);
        }
        self.pending.insert(n.clone());
        Ok(true)
    }

    /// Forgets reservations that will never be committed (none of their effects happened).
    pub fn release(&mut self, nonces: &[Nonce]) {
        for n in nonces {
            self.pending.remove(n);
        }
    }

    /// Applies `changes` to the `kv` table and writes `journal`, in one transaction. Nonces
    /// expired before `forget_before_ms` are dropped now and then; audit records beyond
    /// `keep` too.
    ///
    /// # Errors
    /// [`Error::State`] (nothing written).
    pub fn commit(
        &mut self,
        changes: &[Change],
        journal: &Journal,
        keep: u64,
        forget_before_ms: u64,
    ) -> Result<(), Error> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(err(&path, "starting a commit"))?;
        sqlite::write(&tx, changes).map_err(err(&path, "writing data"))?;
        for n in &journal.nonces {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO nonces (caller, target, nonce, expires_ms) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    n.caller,
                    n.target,
                    n.nonce,
                    n.expires_ms.min(i64::MAX as u64) as i64
                ])
            })
            .map_err(err(&path, "remembering a nonce"))?;
        }
        self.inserts += journal.nonces.len() as u64;
        if self.inserts >= 256 {
            self.inserts = 0;
            tx.execute(
                "DELETE FROM nonces WHERE expires_ms < ?1",
                params![forget_before_ms.min(i64::MAX as u64) as i64],
            )
            .map_err(err(&path, "forgetting old nonces"))?;
        }
        for r in &journal.audit {
            tx.prepare_cached(
                "INSERT INTO audit (time_ms, caller, action, resource, allowed, code, reason, policy_version, envelope)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    r.time_ms.min(i64::MAX as u64) as i64,
                    r.caller,
                    r.action,
                    r.resource,
                    r.allowed,
                    r.code,
                    r.reason,
                    r.policy_version.min(i64::MAX as u64) as i64,
                    r.envelope
                ])
            })
            .map_err(err(&path, "writing the audit log"))?;
            let seq = tx.last_insert_rowid().max(0) as u64;
            if seq > keep && seq.is_multiple_of(64) {
                tx.execute(
                    "DELETE FROM audit WHERE seq <= ?1",
                    params![(seq - keep) as i64],
                )
                .map_err(err(&path, "trimming the audit log"))?;
            }
        }
        tx.commit().map_err(err(&path, "committing"))?;
        for n in &journal.nonces {
            self.pending.remove(n);
        }
        Ok(())
    }

    /// The connection, for the `kv` reads of the `sqlite` backend.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Audit records after `after`, at most `limit`, oldest first.
    ///
    /// # Errors
    /// [`Error::State`].
    pub fn read_audit(&self, after: u64, limit: u64) -> Result<Vec<AuditRecord>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, time_ms, caller, action, resource, allowed, code, reason, policy_version, envelope
                 FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(err(&self.path, "reading the audit log"))?;
        stmt.query_map(
            params![
                after.min(i64::MAX as u64) as i64,
                limit.min(i64::MAX as u64) as i64
            ],
            |r| {
                Ok(AuditRecord {
                    seq: r.get::<_, i64>(0)?.max(0) as u64,
                    time_ms: r.get::<_, i64>(1)?.max(0) as u64,
                    caller: r.get(2)?,
                    action: r.get(3)?,
                    resource: r.get(4)?,
                    allowed: r.get(5)?,
                    code: r.get(6)?,
                    reason: r.get(7)?,
                    policy_version: r.get::<_, i64>(8)?.max(0) as u64,
                    envelope: r.get(9)?,
                })
            },
        )
        .and_then(|rows| rows.collect())
        .map_err(err(&self.path, "reading the audit log"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::key::StorageKey;

    fn nonce(b: u8) -> Nonce {
        Nonce {
            caller: [1; 32],
            target: [2; 32],
            nonce: vec![b; 16],
            expires_ms: u64::MAX / 2,
        }
    }

    #[test]
    fn a_nonce_is_spent_once_reserved_and_remembered_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let mut db = StateDb::open(&path, Some((1000, 0))).unwrap();
        assert!(db.reserve_nonce(&nonce(1)).unwrap());
        // Reserved by a submission still running: a replay now is refused.
        assert!(!db.reserve_nonce(&nonce(1)).unwrap());
        // Released (never run): usable again.
        db.release(&[nonce(1)]);
        assert!(db.reserve_nonce(&nonce(1)).unwrap());
        assert!(db.reserve_nonce(&nonce(2)).unwrap());
        // Committed with the data and the audit record, in one transaction.
        let k = StorageKey::parse("a").unwrap();
        let journal = Journal {
            nonces: vec![nonce(1)],
            audit: vec![AuditRecord {
                seq: 0,
                time_ms: 1,
                caller: None,
                action: "outcome".into(),
                resource: "x".into(),
                allowed: true,
                code: "ok".into(),
                reason: "evaluated".into(),
                policy_version: 0,
                envelope: None,
            }],
        };
        db.commit(&[Change::Put(k, vec![7])], &journal, 100, 0)
            .unwrap();
        drop(db);
        // After a restart: the committed nonce is remembered, the reserved-only one is not
        // (nothing it guarded was committed).
        let mut db = StateDb::open(&path, None).unwrap();
        assert!(!db.reserve_nonce(&nonce(1)).unwrap());
        assert!(db.reserve_nonce(&nonce(2)).unwrap());
        assert_eq!(db.read_audit(0, 10).unwrap().len(), 1);
    }
}
