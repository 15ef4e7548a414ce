//! Failure streaks: what alerting remembers between runs (`notify`).
//!
//! A streak opens with a job's first failed run, counts the failed runs that
//! follow, remembers when an alert about it was last delivered, and closes with
//! the job's next successful run. Runs that do not count (dry runs, busy skips,
//! runs stopped by a shutdown) leave it as it is.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{ts, Result, Store, StoreError};

/// A job's open failure streak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureStreak {
    /// When the first failed run of the streak ended.
    pub since: DateTime<Utc>,
    /// Failed runs in the streak, the first included.
    pub failures: u64,
    /// When an alert about the streak was last delivered; `None`: never.
    pub alerted_at: Option<DateTime<Utc>>,
}

fn parse_time(what: &str, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("alert streak {what} {text}: {e}")))
}

impl Store {
    /// The job's open failure streak, if any.
    pub fn failure_streak(&self, job: &str) -> Result<Option<FailureStreak>> {
        let row: Option<(String, i64, Option<String>)> = self
            .conn()
            .query_row(
                "SELECT since, failures, alerted_at FROM alert_streaks WHERE job = ?1",
                params![job],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((since, failures, alerted_at)) = row else {
            return Ok(None);
        };
        Ok(Some(FailureStreak {
            since: parse_time("start", &since)?,
            failures: u64::try_from(failures).unwrap_or(0),
            alerted_at: alerted_at
                .map(|a| parse_time("alert time", &a))
                .transpose()?,
        }))
    }

    /// Counts a failed run of `job` that ended at `now`: opens a streak, or adds
    /// one failure to the open one. Returns the streak as it now is.
    pub fn record_failure(&self, job: &str, now: DateTime<Utc>) -> Result<FailureStreak> {
        {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO alert_streaks (job, since, failures) VALUES (?1, ?2, 1)
                 ON CONFLICT (job) DO UPDATE SET failures = failures + 1",
                params![job, ts(now)],
            )?;
            tx.commit()?;
        }
        self.failure_streak(job)?
            .ok_or_else(|| StoreError::Corrupt(format!("alert streak of job {job} not saved")))
    }

    /// Remembers that an alert about the job's open streak was delivered at `at`.
    pub fn mark_alerted(&self, job: &str, at: DateTime<Utc>) -> Result<()> {
        self.conn().execute(
            "UPDATE alert_streaks SET alerted_at = ?2 WHERE job = ?1",
            params![job, ts(at)],
        )?;
        Ok(())
    }

    /// Closes the job's failure streak (a run succeeded); returns it, if one was open.
    pub fn end_streak(&self, job: &str) -> Result<Option<FailureStreak>> {
        let streak = self.failure_streak(job)?;
        if streak.is_some() {
            self.conn()
                .execute("DELETE FROM alert_streaks WHERE job = ?1", params![job])?;
        }
        Ok(streak)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn a_streak_opens_counts_remembers_its_alert_and_closes() -> Result<()> {
        let store = Store::open_in_memory()?;
        assert_eq!(store.failure_streak("j")?, None);
        assert_eq!(store.end_streak("j")?, None);
        let first = store.record_failure("j", at("2026-11-03T02:30:05Z"))?;
        assert_eq!(
            first,
            FailureStreak {
                since: at("2026-11-03T02:30:05Z"),
                failures: 1,
                alerted_at: None
            }
        );
        store.mark_alerted("j", at("2026-11-03T02:30:06Z"))?;
        let second = store.record_failure("j", at("2026-11-03T02:35:05Z"))?;
        assert_eq!(second.since, first.since);
        assert_eq!(second.failures, 2);
        assert_eq!(second.alerted_at, Some(at("2026-11-03T02:30:06Z")));
        // Another job's streak is its own.
        assert_eq!(
            store
                .record_failure("k", at("2026-11-04T00:00:00Z"))?
                .failures,
            1
        );
        assert_eq!(store.end_streak("j")?, Some(second));
        assert_eq!(store.failure_streak("j")?, None);
        assert_eq!(store.failure_streak("k")?.map(|s| s.failures), Some(1));
        Ok(())
    }
}
