//! A context's own state: `<state dir>/<context id>/state.sqlite`, holding its settings
//! (quota, revision), its scripts, every policy version, the nonces it has seen and its
//! audit log.
//!
//! One database per context, so deleting a context deletes one directory, a flood of audit
//! records in one context never slows another, and nothing of one context sits in another's
//! file. Opened with `SQLITE_OPEN_NOFOLLOW`; WAL with `synchronous=NORMAL` (a record
//! survives the worker crashing, which is what nonce replay protection across restarts
//! needs; after an OS crash the last moments may be lost, bounded by envelope validity).
//!
//! Never decides anything: the worker checks signatures and policy, this file stores.

use crate::audit::AuditRecord;
use crate::error::Error;
use crate::storage::sqlite::open_db;
use rusqlite::{Connection, OptionalExtension as _, params};
use std::path::{Path, PathBuf};

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
        let conn = open_db(path, "state").map_err(|e| Error::State {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY NOT NULL, v INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS scripts (name TEXT PRIMARY KEY NOT NULL, source TEXT NOT NULL,
                 hash BLOB NOT NULL, revision INTEGER NOT NULL, signature BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS policies (version INTEGER PRIMARY KEY, text TEXT NOT NULL,
                 signature BLOB NOT NULL, set_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS nonces (caller BLOB NOT NULL, target BLOB NOT NULL, nonce BLOB NOT NULL,
                 expires_ms INTEGER NOT NULL, PRIMARY KEY (caller, target, nonce)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL,
                 caller TEXT, action TEXT NOT NULL, resource TEXT NOT NULL, allowed INTEGER NOT NULL,
                 code TEXT NOT NULL, reason TEXT NOT NULL, policy_version INTEGER NOT NULL, envelope TEXT);",
        )
        .map_err(err(path, "creating tables"))?;
        if let Some((quota, now)) = create {
            conn.execute(
                "INSERT OR IGNORE INTO meta (k, v) VALUES ('quota', ?1), ('revision', 0), ('created', ?2)",
                params![quota as i64, now as i64],
            )
            .map_err(err(path, "initialising"))?;
        }
        Ok(StateDb {
            conn,
            path: path.to_path_buf(),
            inserts: 0,
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

    /// Remembers a nonce until `expires_ms`; `false` if it was already there. Forgets
    /// nonces expired before `forget_before_ms` now and then.
    ///
    /// # Errors
    /// [`Error::State`].
    pub fn remember_nonce(
        &mut self,
        caller: &[u8],
        target: &[u8],
        nonce: &[u8],
        expires_ms: u64,
        forget_before_ms: u64,
    ) -> Result<bool, Error> {
        let n = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO nonces (caller, target, nonce, expires_ms) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![caller, target, nonce, expires_ms as i64]))
            .map_err(err(&self.path, "remembering a nonce"))?;
        self.inserts += 1;
        if self.inserts.is_multiple_of(256) {
            self.conn
                .execute(
                    "DELETE FROM nonces WHERE expires_ms < ?1",
                    params![forget_before_ms as i64],
                )
                .map_err(err(&self.path, "forgetting old nonces"))?;
        }
        Ok(n == 1)
    }

    /// Appends `record` (its `seq` is assigned) and drops records beyond `keep`.
    ///
    /// # Errors
    /// [`Error::State`].
    pub fn audit(&mut self, record: &AuditRecord, keep: u64) -> Result<u64, Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO audit (time_ms, caller, action, resource, allowed, code, reason, policy_version, envelope)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    record.time_ms as i64,
                    record.caller,
                    record.action,
                    record.resource,
                    record.allowed,
                    record.code,
                    record.reason,
                    record.policy_version as i64,
                    record.envelope
                ])
            })
            .map_err(err(&self.path, "writing the audit log"))?;
        let seq = self.conn.last_insert_rowid().max(0) as u64;
        if seq > keep && seq.is_multiple_of(64) {
            self.conn
                .execute(
                    "DELETE FROM audit WHERE seq <= ?1",
                    params![(seq - keep) as i64],
                )
                .map_err(err(&self.path, "trimming the audit log"))?;
        }
        Ok(seq)
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
