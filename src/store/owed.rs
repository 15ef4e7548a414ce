//! Months owed: a month stays owed until a run has synced it in full after it
//! closed (every employee written or unchanged, nobody skipped for the budget).

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{month_of, ts, Result, Store};
use crate::month::Month;

impl Store {
    /// Records that these months (and when each closes in the job's
    /// timezone) are due for the job (a run's default months): each stays owed
    /// until [`Store::settle_month`].
    pub fn owe_months(
        &self,
        job: &str,
        months: &[(Month, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (month, closes_at) in months {
            tx.execute(
                "INSERT OR IGNORE INTO months_owed (job, month, since, closes_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![job, month, ts(now), ts(*closes_at)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The job's owed months (oldest first), the current one included when it
    /// is due.
    pub fn owed_months(&self, job: &str) -> Result<Vec<Month>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT month FROM months_owed WHERE job = ?1 ORDER BY month")?;
        let rows = stmt.query_map(params![job], |r| r.get::<_, String>(0))?;
        rows.map(|text| month_of(&text?, "months_owed", "month", job))
            .collect()
    }

    /// Months owed as of `now` (of `job`, or every job), for `status`: (job,
    /// month, since) of those closed by `now` in their job's timezone. A
    /// database from before months were owed has none.
    pub fn all_owed(
        &self,
        job: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, Month, String)>> {
        let conn = self.conn();
        let known: i64 = conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'months_owed'",
            [],
            |r| r.get(0),
        )?;
        if known == 0 {
            return Ok(Vec::new());
        }
        let mut stmt = conn.prepare(
            "SELECT job, month, since FROM months_owed
             WHERE (?1 IS NULL OR job = ?1) AND closes_at <= ?2 ORDER BY job, month",
        )?;
        let rows = stmt.query_map(params![job, ts(now)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })?;
        rows.map(|row| {
            let (job, month, since) = row?;
            let month = month_of(&month, "months_owed", "month", &job)?;
            Ok((job, month, since))
        })
        .collect()
    }

    /// The month was synced in full after it closed: it is owed no more.
    pub fn settle_month(&self, job: &str, month: Month) -> Result<()> {
        self.conn().execute(
            "DELETE FROM months_owed WHERE job = ?1 AND month = ?2",
            params![job, month],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_is_owed_once_until_settled_and_listed_once_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("t.db")).expect("open");
        let now = Utc::now();
        let (past, later) = (
            now - chrono::Duration::days(1),
            now + chrono::Duration::days(1),
        );
        let m = super::super::tests::m;
        let dec = (m("2026-12"), past);
        let jan = (m("2027-01"), later);
        s.owe_months("j", &[dec, jan], now).expect("owe");
        s.owe_months("j", std::slice::from_ref(&jan), now)
            .expect("owe again");
        s.owe_months("k", &[(m("2026-11"), past)], now)
            .expect("owe k");
        assert_eq!(s.owed_months("j").expect("owed"), ["2026-12", "2027-01"]);
        // `status` lists only months closed by now: January is in progress.
        let listed = s.all_owed(Some("j"), now).expect("j");
        let months: Vec<Month> = listed.iter().map(|r| r.1).collect();
        assert_eq!(months, ["2026-12"]);
        s.settle_month("j", m("2026-12")).expect("settle");
        assert_eq!(s.owed_months("j").expect("owed"), ["2027-01"]);
        assert_eq!(s.all_owed(None, now).expect("all").len(), 1);
        assert_eq!(s.all_owed(None, later).expect("all later").len(), 2);
    }

    #[test]
    fn a_stored_month_that_is_not_yyyy_mm_is_a_store_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("t.db")).expect("open");
        s.conn()
            .execute(
                "INSERT INTO months_owed (job, month, since, closes_at) VALUES ('j', '2026-13', '', '')",
                [],
            )
            .expect("insert");
        let e = s.owed_months("j").expect_err("bad month");
        assert!(
            matches!(e, super::super::StoreError::BadMonth { .. }),
            "{e}"
        );
        assert!(e.to_string().contains("2026-13"), "{e}");
        let e = s.all_owed(None, Utc::now()).expect_err("bad month");
        assert!(
            matches!(e, super::super::StoreError::BadMonth { .. }),
            "{e}"
        );
    }
}
