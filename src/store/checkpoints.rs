//! Checkpoints: what the store knows about each record already in Jiandaoyun.
//!
//! A write commits to `written_log`, appended in commit order, and is folded into
//! `checkpoints` (clustered on job, month, key) later, in key order. Record keys
//! arrive in the source's order (departments), not key order, so committing a
//! batch's 100 keys straight into `checkpoints` dirtied ~100 scattered B-tree
//! leaves per batch: most of a first run's database work. Appended, a batch fills
//! a few pages; folded in key order, each leaf is written once per fold.
//!
//! Every read sees the log: `checkpoints_for` folds first when one of its keys may
//! be in this handle's unfolded writes, the other reads fold first always, and a
//! sync folds what an earlier, killed process left before it starts
//! ([`Store::fold_written`]).
//!
//! `checkpoints_for` also keeps the hashes of every key a job-month holds (read
//! once per run, then kept by this handle's commits), so a chunk none of whose keys
//! is stored — every chunk of a first run — costs no query.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, TransactionBehavior};

use super::{id_text, stored_id, ts, Checkpoint, Result, Store, StoreError, Written};
use crate::month::Month;

/// Unfolded keys that trigger a fold before the next commit: bounds the log (and
/// the write-ahead log one fold writes) while keeping folds rare. A fold writes
/// every leaf of the checkpoints it touches, so N rows folded every F cost about
/// N²/2F leaf writes: a month of 200,000 employees is folded once, at the end of
/// the run, instead of its leaves being written 2,000 times.
const FOLD_AT: usize = 200_000;

const CHECKPOINTS_FOR: &str = "SELECT c.record_key, c.data_id, c.content_hash
     FROM json_each(?3) AS k
     CROSS JOIN checkpoints AS c
     WHERE c.job = ?1 AND c.month = ?2 AND c.record_key = k.value";

/// `ORDER BY … seq` makes the latest write of a key the one that stays. `WHERE
/// true` keeps SQLite from reading `ON CONFLICT` as part of the `SELECT`.
const FOLD: &str = "
INSERT INTO checkpoints (job, month, record_key, data_id, content_hash, written_at)
    SELECT job, month, record_key, data_id, content_hash, written_at FROM written_log
    WHERE true ORDER BY job, month, record_key, seq
    ON CONFLICT (job, month, record_key) DO UPDATE SET
      data_id = excluded.data_id, content_hash = excluded.content_hash,
      written_at = excluded.written_at;
DELETE FROM written_log;";

/// The connection with what this handle logged and has not folded yet.
pub(super) struct Db {
    pub(super) conn: Connection,
    /// Hashes of (job, month, key) of the unfolded writes: a key not in it is
    /// not in this handle's part of the log (a hash shared by two keys only costs a
    /// fold).
    unfolded: HashSet<u64>,
    fold_at: usize,
    /// Hashes of (job, month, key) of every key stored for the job-months in
    /// `present_months` (hashes of (job, month)). A key whose hash is not in it
    /// has no checkpoint.
    present: HashSet<u64>,
    present_months: HashSet<u64>,
}

impl Db {
    pub(super) fn new(conn: Connection) -> Db {
        Db {
            conn,
            unfolded: HashSet::new(),
            fold_at: FOLD_AT,
            present: HashSet::new(),
            present_months: HashSet::new(),
        }
    }

    /// Reads the keys a job-month holds into `present`, once.
    fn load_present(&mut self, job: &str, month: Month) -> Result<()> {
        if !self.present_months.insert(hash_of((job, month))) {
            return Ok(());
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT record_key FROM checkpoints WHERE job = ?1 AND month = ?2
             UNION ALL
             SELECT record_key FROM written_log WHERE job = ?1 AND month = ?2",
        )?;
        let mut rows = stmt.query(params![job, month])?;
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            self.present.insert(hash_of((job, month, &key)));
        }
        Ok(())
    }

    fn fold(&mut self) -> Result<()> {
        let logged: bool =
            self.conn
                .query_row("SELECT EXISTS (SELECT 1 FROM written_log)", [], |r| {
                    r.get(0)
                })?;
        if logged {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(FOLD)?;
            tx.commit()?;
        }
        self.unfolded.clear();
        Ok(())
    }
}

impl std::ops::Deref for Db {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Db {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

fn hash_of(value: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

impl Store {
    /// Folds every logged write into the checkpoints, including what a process
    /// that was killed left in the log, and forgets which keys are stored: a run
    /// starts from what the database holds, whoever wrote it.
    pub fn fold_written(&self) -> Result<()> {
        let mut db = self.conn();
        db.fold()?;
        db.present.clear();
        db.present_months.clear();
        Ok(())
    }

    /// Whether the store knows any record of the job-month (folded or not).
    pub fn knows_month(&self, job: &str, month: Month) -> Result<bool> {
        let known = self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM checkpoints WHERE job = ?1 AND month = ?2)
                 OR EXISTS (SELECT 1 FROM written_log WHERE job = ?1 AND month = ?2)",
            params![job, month],
            |r| r.get(0),
        )?;
        Ok(known)
    }

    /// Every record of a job-month the store knows, by record key.
    pub fn checkpoints(&self, job: &str, month: Month) -> Result<HashMap<String, Checkpoint>> {
        let mut db = self.conn();
        db.fold()?;
        let mut stmt = db.prepare_cached(
            "SELECT record_key, data_id, content_hash FROM checkpoints WHERE job = ?1 AND month = ?2",
        )?;
        let rows = stmt.query_map(params![job, month], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Checkpoint {
                    data_id: stored_id(r.get(1)?),
                    content_hash: r.get(2)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The checkpoints of the given keys of a job-month (one chunk of records).
    /// `CROSS JOIN` keeps the keys the outer loop, each looked up by primary key:
    /// left to itself, the planner scans the whole table once per key.
    pub fn checkpoints_for(
        &self,
        job: &str,
        month: Month,
        keys: &[String],
    ) -> Result<HashMap<String, Checkpoint>> {
        let mut db = self.conn();
        db.load_present(job, month)?;
        let hashes: Vec<u64> = keys.iter().map(|k| hash_of((job, month, k))).collect();
        let stored: Vec<&String> = keys
            .iter()
            .zip(&hashes)
            .filter(|(_, h)| db.present.contains(h))
            .map(|(k, _)| k)
            .collect();
        if stored.is_empty() {
            return Ok(HashMap::new());
        }
        if hashes.iter().any(|h| db.unfolded.contains(h)) {
            db.fold()?;
        }
        // One statement for the whole chunk: the keys go in as one JSON array.
        let keys =
            serde_json::to_string(&stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut stmt = db.prepare_cached(CHECKPOINTS_FOR)?;
        let mut rows = stmt.query(params![job, month, keys])?;
        let mut out = HashMap::new();
        while let Some(row) = rows.next()? {
            out.insert(
                row.get(0)?,
                Checkpoint {
                    data_id: stored_id(row.get(1)?),
                    content_hash: row.get(2)?,
                },
            );
        }
        Ok(out)
    }

    /// Calls `f` with every record key of a job-month and its form id (`None`:
    /// not known), without loading them all.
    pub fn for_each_key(
        &self,
        job: &str,
        month: Month,
        mut f: impl FnMut(&str, Option<&str>),
    ) -> Result<()> {
        let mut db = self.conn();
        db.fold()?;
        let mut stmt = db.prepare_cached(
            "SELECT record_key, data_id FROM checkpoints WHERE job = ?1 AND month = ?2",
        )?;
        let mut rows = stmt.query(params![job, month])?;
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            let data_id: String = row.get(1)?;
            f(&key, Some(data_id.as_str()).filter(|id| !id.is_empty()));
        }
        Ok(())
    }

    /// Records acknowledged writes in one transaction and, when they settle a
    /// create batch, removes that pending batch in the same transaction.
    pub fn commit_written(
        &self,
        job: &str,
        month: Month,
        written: &[Written],
        settled_batch: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut db = self.conn();
        // Folded before, not after: a failed fold then leaves this commit undone
        // rather than done and reported as failed.
        if db.unfolded.len() >= db.fold_at {
            db.fold()?;
        }
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO written_log (job, month, record_key, data_id, content_hash, written_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let at = ts(now);
            for w in written {
                let id = id_text(w.data_id.as_deref());
                stmt.execute(params![job, month, w.key, id, w.content_hash, at])?;
            }
            if let Some(id) = settled_batch {
                tx.execute(
                    "DELETE FROM pending_batches WHERE transaction_id = ?1",
                    params![id],
                )?;
            }
        }
        tx.commit()?;
        for w in written {
            let h = hash_of((job, month, &w.key));
            db.unfolded.insert(h);
            db.present.insert(h);
        }
        Ok(())
    }

    /// Forgets records (after they were deleted from Jiandaoyun, or found gone).
    pub fn delete_checkpoints(&self, job: &str, month: Month, keys: &[String]) -> Result<()> {
        let mut db = self.conn();
        // A logged write folded after the delete would bring the record back.
        db.fold()?;
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "DELETE FROM checkpoints WHERE job = ?1 AND month = ?2 AND record_key = ?3",
            )?;
            for k in keys {
                stmt.execute(params![job, month, k])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{m, store};
    use super::*;

    fn written(key: &str, id: &str, hash: &str) -> Written {
        Written {
            key: key.into(),
            data_id: Some(id.into()),
            content_hash: hash.into(),
        }
    }

    fn logged_rows(s: &Store) -> i64 {
        s.conn()
            .query_row("SELECT COUNT(*) FROM written_log", [], |r| r.get(0))
            .expect("count")
    }

    #[test]
    fn an_unknown_id_is_stored_as_the_empty_text_and_read_back_as_none() {
        let (_d, s) = store();
        let key = r#"["a","2026-10"]"#;
        let w = Written {
            key: key.into(),
            data_id: None,
            content_hash: "h".into(),
        };
        s.commit_written("j", m("2026-10"), &[w], None, Utc::now())
            .expect("commit");
        let cps = s.checkpoints("j", m("2026-10")).expect("cps");
        assert_eq!(cps[key].data_id, None);
        let text: String = s
            .conn()
            .query_row("SELECT data_id FROM checkpoints", [], |r| r.get(0))
            .expect("row");
        assert_eq!(text, "");
        let mut ids = Vec::new();
        s.for_each_key("j", m("2026-10"), |_, id| ids.push(id.map(str::to_string)))
            .expect("keys");
        assert_eq!(ids, [None]);
    }

    #[test]
    fn checkpoints_for_finds_exactly_the_keys_of_the_job_month() {
        let (_d, s) = store();
        let now = Utc::now();
        let written = |key: &str, id: &str| written(key, id, &format!("h-{id}"));
        let odd = r#"["张\"三\\",{"x":1}]"#;
        s.commit_written(
            "j",
            m("2026-10"),
            &[written(r#"["a","2026-10"]"#, "1"), written(odd, "2")],
            None,
            now,
        )
        .expect("commit");
        s.commit_written(
            "j",
            m("2026-09"),
            &[written(r#"["b","2026-09"]"#, "3")],
            None,
            now,
        )
        .expect("commit");
        s.commit_written(
            "k",
            m("2026-10"),
            &[written(r#"["b","2026-10"]"#, "4")],
            None,
            now,
        )
        .expect("commit");
        let asked: Vec<String> = [
            r#"["a","2026-10"]"#,
            odd,
            r#"["b","2026-10"]"#,
            r#"["b","2026-09"]"#,
        ]
        .map(String::from)
        .to_vec();
        let found = s.checkpoints_for("j", m("2026-10"), &asked).expect("query");
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[r#"["a","2026-10"]"#].data_id.as_deref(), Some("1"));
        assert_eq!(found[odd].content_hash, "h-2");
        assert!(s
            .checkpoints_for("j", m("2026-10"), &[])
            .expect("query")
            .is_empty());
        // Each key is one primary-key look-up, never a scan of the table.
        let plan: Vec<String> = s
            .conn()
            .prepare(&format!("EXPLAIN QUERY PLAN {CHECKPOINTS_FOR}"))
            .and_then(|mut q| {
                q.query_map(params!["j", "2026-10", "[]"], |r| r.get::<_, String>(3))?
                    .collect()
            })
            .expect("plan");
        assert!(
            plan.iter()
                .any(|p| p.starts_with("SEARCH c USING PRIMARY KEY")
                    && p.ends_with("(job=? AND month=? AND record_key=?)")),
            "{plan:?}"
        );
    }

    #[test]
    fn the_latest_write_of_a_key_is_the_one_read_back() {
        let (_d, s) = store();
        let now = Utc::now();
        let key = r#"["a","2026-10"]"#;
        s.commit_written("j", m("2026-10"), &[written(key, "id1", "h1")], None, now)
            .expect("create");
        s.commit_written("j", m("2026-10"), &[written(key, "id1", "h2")], None, now)
            .expect("update");
        let found = s
            .checkpoints_for("j", m("2026-10"), &[key.to_string()])
            .expect("query");
        assert_eq!(found[key].content_hash, "h2");
        // Written again after a fold: the log's newer write still wins.
        s.commit_written("j", m("2026-10"), &[written(key, "id1", "h3")], None, now)
            .expect("update");
        s.fold_written().expect("fold");
        assert_eq!(
            s.checkpoints("j", m("2026-10")).expect("cps")[key].content_hash,
            "h3"
        );
        assert_eq!(logged_rows(&s), 0);
    }

    #[test]
    fn writes_a_killed_process_left_in_the_log_are_seen_by_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let now = Utc::now();
        let keys: Vec<String> = (0..3).map(|n| format!(r#"["u{n}","2026-10"]"#)).collect();
        {
            let killed = Store::open(&path).expect("open");
            let run = killed.start_run("j", "run", now).expect("run");
            killed
                .save_month(run, "j", m("2026-10"), &Default::default(), None)
                .expect("month");
            let w: Vec<Written> = keys.iter().map(|k| written(k, "id", "h")).collect();
            killed
                .commit_written("j", m("2026-10"), &w, None, now)
                .expect("commit");
        }
        let next = Store::open(&path).expect("reopen");
        assert_eq!(logged_rows(&next), 3);
        // `status` counts them before any fold.
        assert_eq!(next.month_rows(Some("j")).expect("rows")[0].stored, 3);
        next.fold_written().expect("fold");
        assert_eq!(
            next.checkpoints_for("j", m("2026-10"), &keys)
                .expect("query")
                .len(),
            3
        );
        let mut listed = Vec::new();
        next.for_each_key("j", m("2026-10"), |k, _| listed.push(k.to_string()))
            .expect("keys");
        listed.sort();
        assert_eq!(listed, keys);
    }

    #[test]
    fn a_run_sees_what_another_process_wrote_since_the_last_run() {
        let (dir, s) = store();
        let now = Utc::now();
        let key = r#"["a","2026-10"]"#.to_string();
        let asked = std::slice::from_ref(&key);
        assert!(s
            .checkpoints_for("j", m("2026-10"), asked)
            .expect("q")
            .is_empty());
        let other = Store::open(&dir.path().join("t.db")).expect("second handle");
        other
            .commit_written("j", m("2026-10"), &[written(&key, "id1", "h1")], None, now)
            .expect("commit");
        other.fold_written().expect("fold");
        // What this handle read of the month before holds until the next run starts.
        s.fold_written().expect("next run");
        assert_eq!(
            s.checkpoints_for("j", m("2026-10"), asked).expect("q")[&key].content_hash,
            "h1"
        );
    }

    #[test]
    fn a_deleted_record_stays_deleted_after_its_logged_write_is_folded() {
        let (_d, s) = store();
        let now = Utc::now();
        let key = r#"["a","2026-10"]"#.to_string();
        s.commit_written("j", m("2026-10"), &[written(&key, "id1", "h1")], None, now)
            .expect("create");
        s.delete_checkpoints("j", m("2026-10"), std::slice::from_ref(&key))
            .expect("delete");
        s.fold_written().expect("fold");
        assert!(s.checkpoints("j", m("2026-10")).expect("cps").is_empty());
    }

    #[test]
    fn the_log_is_folded_once_it_holds_the_fold_threshold() {
        let (_d, s) = store();
        s.conn().fold_at = 4;
        let now = Utc::now();
        let batch = |n: usize| -> Vec<Written> {
            (0..2)
                .map(|i| written(&format!("[\"u{n}-{i}\"]"), "id", "h"))
                .collect()
        };
        s.commit_written("j", m("2026-10"), &batch(0), None, now)
            .expect("1");
        s.commit_written("j", m("2026-10"), &batch(1), None, now)
            .expect("2");
        assert_eq!(logged_rows(&s), 4);
        // The third commit folds the four logged rows first.
        s.commit_written("j", m("2026-10"), &batch(2), None, now)
            .expect("3");
        assert_eq!(logged_rows(&s), 2);
        assert_eq!(s.checkpoints("j", m("2026-10")).expect("cps").len(), 6);
    }
}
