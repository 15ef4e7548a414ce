//! The SQLite store: runs, per-record checkpoints, pending batches and job leases.
//!
//! Only this module touches SQLite. Methods are synchronous; async code calls them
//! through [`Store::call`], which runs them on the blocking pool so the runtime is
//! never stalled by a busy database.

mod alerts;
mod checkpoints;
mod dirty;
mod events;
mod file;
mod owed;
mod pace;
mod requests;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::ToSqlOutput;
use rusqlite::{params, Connection, OptionalExtension, ToSql, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::month::Month;

pub use alerts::FailureStreak;
pub use dirty::{EventRecord, DUPLICATE_KIND};
pub use events::{EventCount, EventLink, Lookup};
pub use requests::{RequestRow, RequestState, RunMonth, RunRequest};
pub use schema::CURRENT_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no database at {path}: check --db / ATTENDSYNC_DB (no run has written one there yet)"
    )]
    Missing { path: PathBuf },
    #[error("{path} is not an attendsync database (it holds no attendsync data); check --db / ATTENDSYNC_DB")]
    NotAttendsync { path: PathBuf },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this attendsync supports ({supported}); upgrade attendsync")]
    TooNew { found: i64, supported: i64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A month column that does not hold `YYYY-MM`. Every run of the job (or
    /// `status`) meets the row again, so the message names it and how to
    /// remove it.
    #[error(
        "stored data is corrupt: {table} holds {text:?} for job {job}, not a month (YYYY-MM); \
         fix or delete that row, e.g. with sqlite3 on the database: \
         DELETE FROM {table} WHERE job = '{}' AND {column} = '{}'",
        sql_quoted(job),
        sql_quoted(text)
    )]
    BadMonth {
        table: &'static str,
        column: &'static str,
        job: String,
        text: String,
    },
    #[error("database task failed: {0}")]
    Task(String),
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A month is stored as its `YYYY-MM` text.
impl ToSql for Month {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.to_string()))
    }
}

/// A month read back from its `YYYY-MM` text in `table.column`, a row of `job`.
fn month_of(text: &str, table: &'static str, column: &'static str, job: &str) -> Result<Month> {
    text.parse().map_err(|_| StoreError::BadMonth {
        table,
        column,
        job: job.to_string(),
        text: text.to_string(),
    })
}

/// `text` inside an SQL string literal.
fn sql_quoted(text: &str) -> String {
    text.replace('\'', "''")
}

/// A form id as the database holds it: the empty text when not known.
fn id_text(id: Option<&str>) -> &str {
    id.unwrap_or("")
}

/// A form id read back: `None` for the empty text.
fn stored_id(text: String) -> Option<String> {
    Some(text).filter(|t| !t.is_empty())
}

/// What the store knows about one record already in Jiandaoyun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The form's id of the record; `None` when not known (the records of an
    /// acknowledged create batch: the writer reads it by key when it needs it).
    pub data_id: Option<String>,
    pub content_hash: String,
}

/// A record Jiandaoyun acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub key: String,
    /// `None` when not known (see [`Checkpoint::data_id`]).
    pub data_id: Option<String>,
    pub content_hash: String,
}

/// One record of a create batch, as persisted before the batch is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRecord {
    pub key: String,
    pub content_hash: String,
    /// The key fields and their values, to find the record again with `data/list`.
    pub key_values: Vec<(String, serde_json::Value)>,
    /// The record in Jiandaoyun write format, to resend the identical batch.
    pub data: crate::target::WriteData,
}

/// A create batch whose outcome is not known yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingBatch {
    pub transaction_id: String,
    pub job: String,
    pub month: Month,
    /// When the batch was first written ahead under this transaction id.
    pub first_sent_at: DateTime<Utc>,
    /// Until when a send of it may still commit (`None`: never sent).
    pub in_flight_until: Option<DateTime<Utc>>,
    pub records: Vec<PendingRecord>,
}

/// Per job-month counts of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MonthCounts {
    pub pulled: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub failed: u64,
    /// Records in the store that the source no longer returned.
    pub missing: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Ok,
    Partial,
    Failed,
    /// The process stopped (killed, crashed) before it recorded the run's end.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// What `runs.message` says of a run marked [`RunStatus::Interrupted`].
pub const INTERRUPTED_MESSAGE: &str = "the process stopped before the run finished";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: i64,
    pub job: String,
    pub command: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `running` for a run that is in progress or was killed (`status` tells the
    /// two apart by the job's lease); `interrupted` once a later run of the job
    /// found it unfinished.
    pub status: String,
    pub message: Option<String>,
}

impl RunRow {
    /// The columns `RUN_COLUMNS` name, in that order.
    pub(crate) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
        Ok(RunRow {
            id: r.get(0)?,
            job: r.get(1)?,
            command: r.get(2)?,
            started_at: r.get(3)?,
            finished_at: r.get(4)?,
            status: r.get(5)?,
            message: r.get(6)?,
        })
    }
}

/// The columns of a [`RunRow`], for [`RunRow::from_row`].
pub(crate) const RUN_COLUMNS: &str = "id, job, command, started_at, finished_at, status, message";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthRow {
    pub job: String,
    pub month: Month,
    pub run_id: i64,
    pub at: String,
    pub counts: MonthCounts,
    pub error: Option<String>,
    /// Records of this month the store holds (written and acknowledged).
    pub stored: u64,
}

/// Who holds a job's lease, when it is not us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub owner: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<checkpoints::Db>>,
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Switches to WAL. On a brand-new file, two processes doing this at once can get
/// SQLITE_BUSY without the busy handler being consulted, so retry for a while.
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let mut tries = 0;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 100 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// Opens (creating if needed) the database at `path`, in WAL mode, migrated.
    /// The file and its `-wal` and `-shm` companions are owner-only (0600).
    pub fn open(path: &Path) -> Result<Store> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        file::make_private(path)?;
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        set_wal(&conn).map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        schema::migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(checkpoints::Db::new(conn))),
        })
    }

    /// An empty database in memory, for a dry run where none exists yet: a
    /// dry run writes nothing, a new file included.
    pub fn open_in_memory() -> Result<Store> {
        let mut conn = Connection::open_in_memory()?;
        schema::migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(checkpoints::Db::new(conn))),
        })
    }

    /// Opens an existing database to read it (`status`): nothing is created,
    /// migrated or written; a missing file is [`StoreError::Missing`].
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let conn = file::open_read_only(path)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(checkpoints::Db::new(conn))),
        })
    }

    fn conn(&self) -> MutexGuard<'_, checkpoints::Db> {
        // A panic while holding the lock leaves SQLite itself consistent (every
        // write is a transaction), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the blocking pool: how async code uses the store.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    // ---- runs -------------------------------------------------------------

    /// Records the start of a run. Called by the holder of the job's lease, so
    /// any earlier run of the job still marked running was stopped (killed,
    /// crashed) before it could record its end: those are marked interrupted.
    pub fn start_run(&self, job: &str, command: &str, now: DateTime<Utc>) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE runs SET status = ?2, message = COALESCE(message, ?3)
             WHERE job = ?1 AND status = ?4",
            params![
                job,
                RunStatus::Interrupted.as_str(),
                INTERRUPTED_MESSAGE,
                RunStatus::Running.as_str()
            ],
        )?;
        tx.execute(
            "INSERT INTO runs (job, command, started_at, status) VALUES (?1, ?2, ?3, 'running')",
            params![job, command, ts(now)],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Every job the database has a run of, sorted.
    pub fn job_names(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT DISTINCT job FROM runs ORDER BY job")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE runs SET status = ?2, message = ?3, finished_at = ?4 WHERE id = ?1",
            params![run_id, status.as_str(), message, ts(now)],
        )?;
        Ok(())
    }

    pub fn save_month(
        &self,
        run_id: i64,
        job: &str,
        month: Month,
        c: &MonthCounts,
        error: Option<&str>,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO run_months
               (run_id, job, month, pulled, created, updated, unchanged, failed, missing, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                run_id,
                job,
                month,
                c.pulled as i64,
                c.created as i64,
                c.updated as i64,
                c.unchanged as i64,
                c.failed as i64,
                c.missing as i64,
                error
            ],
        )?;
        Ok(())
    }

    /// The newest runs first, optionally of one job.
    pub fn recent_runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE ?1 IS NULL OR job = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![job, limit as i64], RunRow::from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the job's last successful run of its default months (what a
    /// scheduled run does) started: a `run --month` or a `rerun` does not stand
    /// for a missed scheduled run.
    pub fn last_success(&self, job: &str) -> Result<Option<DateTime<Utc>>> {
        let started: Option<String> = self
            .conn()
            .query_row(
                "SELECT started_at FROM runs WHERE job = ?1 AND status = 'ok' AND command = 'run'
                 ORDER BY id DESC LIMIT 1",
                params![job],
                |r| r.get(0),
            )
            .optional()?;
        started
            .map(|s| {
                DateTime::parse_from_rfc3339(&s)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|e| StoreError::Corrupt(format!("run start time {s}: {e}")))
            })
            .transpose()
    }

    /// Per job and month: the counts of the latest run that synced it (a rerun
    /// of some employees does not stand for the month), and how many records
    /// the store holds.
    pub fn month_rows(&self, job: Option<&str>) -> Result<Vec<MonthRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT m.job, m.month, m.run_id, COALESCE(r.finished_at, r.started_at),
                    m.pulled, m.created, m.updated, m.unchanged, m.failed, m.missing, m.error,
                    (SELECT COUNT(*) FROM (
                        SELECT record_key FROM checkpoints c WHERE c.job = m.job AND c.month = m.month
                        UNION
                        SELECT record_key FROM written_log w WHERE w.job = m.job AND w.month = m.month))
             FROM run_months m JOIN runs r ON r.id = m.run_id
             WHERE (?1 IS NULL OR m.job = ?1)
               AND m.run_id = (SELECT MAX(x.run_id) FROM run_months x JOIN runs y ON y.id = x.run_id
                               WHERE x.job = m.job AND x.month = m.month
                                 AND y.command <> 'rerun --employee')
             ORDER BY m.job, m.month DESC",
        )?;
        let mut rows = stmt.query(params![job])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            let job: String = r.get(0)?;
            let month = month_of(&r.get::<_, String>(1)?, "run_months", "month", &job)?;
            out.push(MonthRow {
                job,
                month,
                run_id: r.get(2)?,
                at: r.get(3)?,
                counts: MonthCounts {
                    pulled: n(4)?,
                    created: n(5)?,
                    updated: n(6)?,
                    unchanged: n(7)?,
                    failed: n(8)?,
                    missing: n(9)?,
                },
                error: r.get(10)?,
                stored: n(11)?,
            });
        }
        Ok(out)
    }

    // ---- pending batches --------------------------------------------------

    /// [`Store::save_pending_encoded`] from a whole batch (the writer encodes its
    /// records itself; tests use this).
    #[cfg(test)]
    pub fn save_pending(&self, batch: &PendingBatch) -> Result<()> {
        let records = serde_json::to_string(&batch.records)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.save_pending_encoded(
            &batch.transaction_id,
            &batch.job,
            batch.month,
            batch.first_sent_at,
            &records,
        )
    }

    /// Persists a create batch before it is sent (the write-ahead step), its
    /// records already encoded as a JSON array so the writer need not copy them.
    pub fn save_pending_encoded(
        &self,
        transaction_id: &str,
        job: &str,
        month: Month,
        first_sent_at: DateTime<Utc>,
        records: &str,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO pending_batches (transaction_id, job, month, first_sent_at, records)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (transaction_id) DO UPDATE SET records = excluded.records",
            params![transaction_id, job, month, ts(first_sent_at), records],
        )?;
        Ok(())
    }

    /// Whether a create batch of this job-month is still unsettled.
    pub fn has_pending(&self, job: &str, month: Month) -> Result<bool> {
        let found: Option<i64> = self
            .conn()
            .query_row(
                "SELECT 1 FROM pending_batches WHERE job = ?1 AND month = ?2 LIMIT 1",
                params![job, month],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }

    /// A job's unsettled create batches, oldest first.
    pub fn pending(&self, job: &str) -> Result<Vec<PendingBatch>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT transaction_id, month, first_sent_at, records, in_flight_until FROM pending_batches
             WHERE job = ?1 ORDER BY first_sent_at, transaction_id",
        )?;
        let rows = stmt.query_map(params![job], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (transaction_id, month, sent, records, until) = row?;
            let month = month_of(&month, "pending_batches", "month", job)?;
            let time = |text: &str| {
                DateTime::parse_from_rfc3339(text)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        StoreError::Corrupt(format!("pending batch {transaction_id}: {e}"))
                    })
            };
            let first_sent_at = time(&sent)?;
            let in_flight_until = until.as_deref().map(time).transpose()?;
            let records = serde_json::from_str(&records)
                .map_err(|e| StoreError::Corrupt(format!("pending batch {transaction_id}: {e}")))?;
            out.push(PendingBatch {
                transaction_id,
                job: job.to_string(),
                month,
                first_sent_at,
                in_flight_until,
                records,
            });
        }
        Ok(out)
    }

    pub fn pending_count(&self, job: Option<&str>) -> Result<u64> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM pending_batches WHERE ?1 IS NULL OR job = ?1",
            params![job],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }

    /// Records, just before a send, until when that send may still commit.
    pub fn mark_in_flight(&self, transaction_id: &str, until: DateTime<Utc>) -> Result<()> {
        self.conn().execute(
            "UPDATE pending_batches SET in_flight_until = ?2 WHERE transaction_id = ?1",
            params![transaction_id, ts(until)],
        )?;
        Ok(())
    }

    pub fn drop_pending(&self, transaction_id: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM pending_batches WHERE transaction_id = ?1",
            params![transaction_id],
        )?;
        Ok(())
    }

    // ---- metered calls ----------------------------------------------------

    /// Metered source calls a job spent in a calendar month.
    pub fn metered_spent(&self, job: &str, period: Month) -> Result<u64> {
        let n: Option<i64> = self
            .conn()
            .query_row(
                "SELECT calls FROM metered_calls WHERE job = ?1 AND period = ?2",
                params![job, period],
                |r| r.get(0),
            )
            .optional()?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// (job, calendar month, metered calls), newest month first.
    pub fn metered_rows(&self, job: Option<&str>) -> Result<Vec<(String, Month, u64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT job, period, calls FROM metered_calls WHERE ?1 IS NULL OR job = ?1
             ORDER BY period DESC, job",
        )?;
        let rows = stmt.query_map(params![job], |r| {
            let calls = r.get::<_, i64>(2)?.max(0) as u64;
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, calls))
        })?;
        rows.map(|row| {
            let (job, period, calls) = row?;
            let period = month_of(&period, "metered_calls", "period", &job)?;
            Ok((job, period, calls))
        })
        .collect()
    }

    pub fn add_metered(&self, job: &str, period: Month, calls: u64) -> Result<()> {
        if calls == 0 {
            return Ok(());
        }
        self.conn().execute(
            "INSERT INTO metered_calls (job, period, calls) VALUES (?1, ?2, ?3)
             ON CONFLICT (job, period) DO UPDATE SET calls = calls + excluded.calls",
            params![job, period, calls as i64],
        )?;
        Ok(())
    }

    /// Reserves up to `want` metered calls in `period` without the count
    /// passing `cap`, in one write; returns how many were reserved (0: the cap
    /// is reached). Calls are reserved before they are sent, so a kill can
    /// only over-count (by what was reserved and not yet sent).
    pub fn reserve_metered(&self, job: &str, period: Month, want: u64, cap: u64) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let spent: Option<i64> = tx
            .query_row(
                "SELECT calls FROM metered_calls WHERE job = ?1 AND period = ?2",
                params![job, period],
                |r| r.get(0),
            )
            .optional()?;
        let spent = spent.unwrap_or(0).max(0) as u64;
        let granted = want.min(cap.saturating_sub(spent));
        if granted > 0 {
            tx.execute(
                "INSERT INTO metered_calls (job, period, calls) VALUES (?1, ?2, ?3)
                 ON CONFLICT (job, period) DO UPDATE SET calls = calls + excluded.calls",
                params![job, period, granted as i64],
            )?;
        }
        tx.commit()?;
        Ok(granted)
    }

    /// Gives back `calls` reserved with [`Self::reserve_metered`] and never sent.
    pub fn release_metered(&self, job: &str, period: Month, calls: u64) -> Result<()> {
        if calls == 0 {
            return Ok(());
        }
        self.conn().execute(
            "UPDATE metered_calls SET calls = MAX(0, calls - ?3) WHERE job = ?1 AND period = ?2",
            params![job, period, calls as i64],
        )?;
        Ok(())
    }

    // ---- leases -----------------------------------------------------------

    /// Takes the job's lease for `ttl` unless another live owner holds it
    /// (`is_dead` tells an owner known to be gone). Returns the holder when the
    /// lease is taken.
    pub fn acquire_lease(
        &self,
        job: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
        is_dead: &dyn Fn(&str) -> bool,
    ) -> Result<Option<LeaseHolder>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<(String, i64)> = tx
            .query_row(
                "SELECT owner, expires_at FROM leases WHERE job = ?1",
                params![job],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((holder, expires)) = current {
            if holder != owner && expires > now.timestamp_millis() && !is_dead(&holder) {
                return Ok(Some(LeaseHolder {
                    owner: holder,
                    expires_at: DateTime::from_timestamp_millis(expires).unwrap_or(now),
                }));
            }
        }
        let expires = now.timestamp_millis() + ttl.as_millis() as i64;
        tx.execute(
            "INSERT INTO leases (job, owner, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (job) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at",
            params![job, owner, expires],
        )?;
        tx.commit()?;
        Ok(None)
    }

    /// Extends a lease we hold. False if we lost it (expired and taken over).
    pub fn renew_lease(
        &self,
        job: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let expires = now.timestamp_millis() + ttl.as_millis() as i64;
        let n = self.conn().execute(
            "UPDATE leases SET expires_at = ?3 WHERE job = ?1 AND owner = ?2",
            params![job, owner, expires],
        )?;
        Ok(n == 1)
    }

    /// Who holds the job's lease at `now`, if anyone (an expired or released
    /// lease is held by no one).
    pub fn lease_holder(&self, job: &str, now: DateTime<Utc>) -> Result<Option<LeaseHolder>> {
        let row: Option<(String, i64)> = self
            .conn()
            .query_row(
                "SELECT owner, expires_at FROM leases WHERE job = ?1 AND expires_at > ?2",
                params![job, now.timestamp_millis()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.map(|(owner, expires)| LeaseHolder {
            owner,
            expires_at: DateTime::from_timestamp_millis(expires).unwrap_or(now),
        }))
    }

    pub fn release_lease(&self, job: &str, owner: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM leases WHERE job = ?1 AND owner = ?2",
            params![job, owner],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
