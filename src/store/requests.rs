//! Runs asked for through the daemon's API: queued here (so a restart keeps
//! them) until the daemon starts them behind the job's run in progress.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{ts, Result, Store, StoreError};

/// What a requested run is to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    pub month: String,
    #[serde(default)]
    pub employees: Vec<String>,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub prune: bool,
}

/// Where a requested run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Queued,
    Running,
    Done,
    /// The daemon stopped while it ran; its run shows how far it got.
    Interrupted,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Queued => "queued",
            RequestState::Running => "running",
            RequestState::Done => "done",
            RequestState::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    pub id: i64,
    pub job: String,
    pub request: RunRequest,
    pub requested_at: String,
    pub state: String,
    pub run_id: Option<i64>,
}

fn row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, String, String, String, String, Option<i64>)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

type Raw = (i64, String, String, String, String, Option<i64>);

fn decode((id, job, request, requested_at, state, run_id): Raw) -> Result<RequestRow> {
    let request = serde_json::from_str(&request)
        .map_err(|e| StoreError::Corrupt(format!("run request {id}: {e}")))?;
    Ok(RequestRow {
        id,
        job,
        request,
        requested_at,
        state,
        run_id,
    })
}

const COLUMNS: &str = "id, job, request, requested_at, state, run_id";

impl Store {
    /// Queues a run of `job`; its id.
    pub fn queue_request(
        &self,
        job: &str,
        request: &RunRequest,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let text =
            serde_json::to_string(request).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let conn = self.conn();
        conn.execute(
            "INSERT INTO run_requests (job, request, requested_at, state) VALUES (?1, ?2, ?3, 'queued')",
            params![job, text, ts(now)],
        )?;
        Ok(conn.last_insert_rowid())
    }

    pub fn request(&self, id: i64) -> Result<Option<RequestRow>> {
        let sql = format!("SELECT {COLUMNS} FROM run_requests WHERE id = ?1");
        let raw = self.conn().query_row(&sql, params![id], row).optional()?;
        raw.map(decode).transpose()
    }

    /// The job's oldest queued request, marked running.
    pub fn take_request(&self, job: &str) -> Result<Option<RequestRow>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM run_requests WHERE job = ?1 AND state = 'queued' ORDER BY id LIMIT 1"
        );
        let raw = tx.query_row(&sql, params![job], row).optional()?;
        if let Some(raw) = &raw {
            tx.execute(
                "UPDATE run_requests SET state = 'running' WHERE id = ?1",
                params![raw.0],
            )?;
        }
        tx.commit()?;
        raw.map(|mut r| {
            r.4 = RequestState::Running.as_str().into();
            decode(r)
        })
        .transpose()
    }

    /// A request's end (or its return to the queue), with the run it made.
    pub fn end_request(&self, id: i64, state: RequestState, run_id: Option<i64>) -> Result<()> {
        self.conn().execute(
            "UPDATE run_requests SET state = ?2, run_id = COALESCE(?3, run_id) WHERE id = ?1",
            params![id, state.as_str(), run_id],
        )?;
        Ok(())
    }

    /// At the daemon's start: requests it was running when it stopped are
    /// interrupted; the jobs with requests still queued.
    ///
    /// A request's run is linked only when it ends; one killed part-way is
    /// linked here to the run it left behind, so that it shows how far it got:
    /// the job's latest run started since the request and still marked
    /// running (under the job's lease nothing else started in between).
    pub fn recover_requests(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        conn.execute(
            "UPDATE run_requests SET run_id = (
                 SELECT r.id FROM runs r
                 WHERE r.job = run_requests.job AND r.status = 'running'
                   AND r.started_at >= run_requests.requested_at
                 ORDER BY r.id DESC LIMIT 1)
             WHERE state = 'running' AND run_id IS NULL",
            [],
        )?;
        conn.execute(
            "UPDATE run_requests SET state = 'interrupted' WHERE state = 'running'",
            [],
        )?;
        let mut stmt = conn
            .prepare("SELECT DISTINCT job FROM run_requests WHERE state = 'queued' ORDER BY job")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Requests of a job still queued.
    pub fn queued_requests(&self, job: &str) -> Result<u64> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM run_requests WHERE job = ?1 AND state = 'queued'",
            params![job],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Proves the database writable (`/healthz`).
    pub fn touch_health(&self, now: DateTime<Utc>) -> Result<()> {
        self.conn().execute(
            "INSERT INTO health (id, at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            params![ts(now)],
        )?;
        Ok(())
    }
}

/// One month of one run, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMonth {
    pub month: String,
    pub counts: super::MonthCounts,
    pub error: Option<String>,
}

impl Store {
    pub fn run_row(&self, id: i64) -> Result<Option<super::RunRow>> {
        let sql = format!("SELECT {} FROM runs WHERE id = ?1", super::RUN_COLUMNS);
        let found = self
            .conn()
            .query_row(&sql, params![id], super::RunRow::from_row)
            .optional()?;
        Ok(found)
    }

    pub fn run_months(&self, run_id: i64) -> Result<Vec<RunMonth>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT month, pulled, created, updated, unchanged, failed, missing, error
             FROM run_months WHERE run_id = ?1 ORDER BY month",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            Ok(RunMonth {
                month: r.get(0)?,
                counts: super::MonthCounts {
                    pulled: n(1)?,
                    created: n(2)?,
                    updated: n(3)?,
                    unchanged: n(4)?,
                    failed: n(5)?,
                    missing: n(6)?,
                },
                error: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl Store {
    /// Requested runs not done yet (queued or running), oldest first.
    pub fn open_requests(&self, limit: usize) -> Result<Vec<RequestRow>> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {COLUMNS} FROM run_requests WHERE state IN ('queued', 'running') ORDER BY id LIMIT ?1"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params![limit as i64], row)?;
        let raw: Vec<Raw> = rows.collect::<rusqlite::Result<_>>()?;
        raw.into_iter().map(decode).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(month: &str) -> RunRequest {
        RunRequest {
            month: month.into(),
            employees: Vec::new(),
            force: false,
            prune: false,
        }
    }

    #[test]
    fn a_request_killed_part_way_is_interrupted_with_the_run_it_left() {
        let (_dir, s) = crate::store::tests::store();
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let before = s.start_run("j", "run", t0).expect("run");
        s.finish_run(before, crate::store::RunStatus::Ok, None, t0)
            .expect("finish");
        let killed = s
            .queue_request("j", &request("2026-10"), t0)
            .expect("queue");
        let waiting = s
            .queue_request("j", &request("2026-11"), t0)
            .expect("queue");
        assert_eq!(
            s.take_request("j").expect("take").map(|r| r.id),
            Some(killed)
        );
        let run = s
            .start_run("j", "rerun", t0 + chrono::Duration::seconds(1))
            .expect("run");
        assert_eq!(
            s.recover_requests().expect("recover"),
            vec!["j".to_string()]
        );
        let row = s.request(killed).expect("read").expect("row");
        assert_eq!((row.state.as_str(), row.run_id), ("interrupted", Some(run)));
        let row = s.request(waiting).expect("read").expect("row");
        assert_eq!((row.state.as_str(), row.run_id), ("queued", None));
    }
}
