//! The durable dirty set: (job, month, employee) rows a vendor event says
//! changed, written before the event is acknowledged and cleared only when a
//! re-pull wrote that employee-month or found it unchanged. Event ids seen are
//! kept for a while, so a redelivered or duplicated event marks nothing twice.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::{month_of, ts, Result, Store};
use crate::month::Month;

/// What one event comes to in the store: the employee-months it marks and
/// the approvals still to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord<'a> {
    pub job: &'a str,
    pub event_id: &'a str,
    /// The vendor's event type, counted by `status`.
    pub kind: &'a str,
    pub marks: &'a [(Month, String)],
    pub lookups: &'a [String],
}

/// The kind under which duplicates and redeliveries are counted.
pub const DUPLICATE_KIND: &str = "(duplicate)";

impl Store {
    /// Records one event, in one transaction, unless its id was seen before:
    /// its marks, its lookups and its count. Whether it was new. Called before
    /// the event is acknowledged.
    pub fn record_event(&self, e: &EventRecord<'_>, at: DateTime<Utc>) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let seen: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM events_seen WHERE job = ?1 AND event_id = ?2",
                params![e.job, e.event_id],
                |r| r.get(0),
            )
            .optional()?;
        let count = |kind: &str| {
            tx.execute(
                "INSERT INTO event_counts (job, kind, received, last_at) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (job, kind) DO UPDATE SET received = received + 1, last_at = excluded.last_at",
                params![e.job, kind, ts(at)],
            )
        };
        if seen.is_some() {
            count(DUPLICATE_KIND)?;
            tx.commit()?;
            return Ok(false);
        }
        count(e.kind)?;
        tx.execute(
            "INSERT INTO events_seen (job, event_id, seen_at) VALUES (?1, ?2, ?3)",
            params![e.job, e.event_id, ts(at)],
        )?;
        insert_marks(&tx, e.job, e.marks, at)?;
        for reference in e.lookups {
            tx.execute(
                // Again while a lookup of it may be under way: looked up anew
                // (the approval's status may have changed since).
                "INSERT INTO event_lookups (job, reference, event_id, added_at, next_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (job, reference) DO UPDATE SET event_id = excluded.event_id,
                   added_at = excluded.added_at, next_at = excluded.next_at, tries = 0",
                params![e.job, reference, e.event_id, ts(at)],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// The job's dirty employees whose last event is at least `quiet` old at
    /// `now` (coalesced: events that keep coming wait), by month, oldest first.
    pub fn due_dirty(
        &self,
        job: &str,
        now: DateTime<Utc>,
        quiet: chrono::Duration,
    ) -> Result<BTreeMap<Month, Vec<String>>> {
        let conn = self.conn();
        // A mark whose re-pull was tried (and failed) waits `quiet` again.
        let mut stmt = conn.prepare(
            "SELECT month, employee FROM dirty WHERE job = ?1 AND last_at <= ?2
               AND (tried_at IS NULL OR tried_at <= ?2) ORDER BY month, employee",
        )?;
        let rows = stmt.query_map(params![job, ts(now - quiet)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out: BTreeMap<Month, Vec<String>> = BTreeMap::new();
        for row in rows {
            let (month, employee) = row?;
            out.entry(month_of(&month, "dirty", "month", job)?)
                .or_default()
                .push(employee);
        }
        Ok(out)
    }

    /// A re-pull that started at `started` wrote (or found unchanged) these
    /// employees' records of `month`: their marks go, unless an event came
    /// in since the re-pull started.
    pub fn clear_dirty(
        &self,
        job: &str,
        month: Month,
        employees: &[String],
        started: DateTime<Utc>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for e in employees {
            tx.execute(
                "DELETE FROM dirty WHERE job = ?1 AND month = ?2 AND employee = ?3 AND last_at <= ?4",
                params![job, month, e, ts(started)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A re-pull of these employees' `month` starts at `at`: if it does not
    /// clear them, they wait a whole `delay` before the next try.
    pub fn tried_dirty(
        &self,
        job: &str,
        month: Month,
        employees: &[String],
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for e in employees {
            tx.execute(
                "UPDATE dirty SET tried_at = ?4 WHERE job = ?1 AND month = ?2 AND employee = ?3",
                params![job, month, e, ts(at)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// How many employee-months of the job wait for a re-pull.
    pub fn dirty_count(&self, job: &str) -> Result<u64> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM dirty WHERE job = ?1",
            params![job],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Forgets event ids seen before `before`: a vendor redelivers within
    /// minutes, not weeks.
    pub fn forget_events(&self, before: DateTime<Utc>) -> Result<u64> {
        let n = self.conn().execute(
            "DELETE FROM events_seen WHERE seen_at < ?1",
            params![ts(before)],
        )?;
        Ok(n as u64)
    }
}

/// Marks employee-months dirty (or moves their last event on).
pub(super) fn insert_marks(
    tx: &rusqlite::Transaction<'_>,
    job: &str,
    marks: &[(Month, String)],
    at: DateTime<Utc>,
) -> Result<()> {
    for (month, employee) in marks {
        tx.execute(
            "INSERT INTO dirty (job, month, employee, first_at, last_at, events)
             VALUES (?1, ?2, ?3, ?4, ?4, 1)
             ON CONFLICT (job, month, employee) DO UPDATE SET
               last_at = MAX(last_at, excluded.last_at), events = events + 1",
            params![job, month, employee, ts(at)],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(m: u32) -> Month {
        Month::new(2026, m).expect("month")
    }

    fn at(minute: u32) -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 3, 2, minute, 0)
            .single()
            .expect("time")
    }

    fn mark(employee: &str, m: u32) -> (Month, String) {
        (month(m), employee.to_string())
    }

    trait MarkDirty {
        fn mark_dirty(
            &self,
            event_id: &str,
            marks: &[(Month, String)],
            at: DateTime<Utc>,
        ) -> Result<bool>;
    }

    impl MarkDirty for Store {
        fn mark_dirty(
            &self,
            event_id: &str,
            marks: &[(Month, String)],
            at: DateTime<Utc>,
        ) -> Result<bool> {
            let e = EventRecord {
                job: "j",
                event_id,
                kind: "k",
                marks,
                lookups: &[],
            };
            self.record_event(&e, at)
        }
    }

    #[test]
    fn an_event_id_marks_once_however_often_it_comes() {
        let store = Store::open_in_memory().expect("store");
        assert!(store
            .mark_dirty("ev-1", &[mark("u1", 10)], at(0))
            .expect("mark"));
        assert!(!store
            .mark_dirty("ev-1", &[mark("u1", 10)], at(1))
            .expect("mark"));
        assert!(!store
            .mark_dirty("ev-1", &[mark("u2", 10)], at(2))
            .expect("mark"));
        assert_eq!(store.dirty_count("j").expect("count"), 1);
        assert!(store
            .mark_dirty("ev-2", &[mark("u1", 10), mark("u1", 11)], at(3))
            .expect("mark"));
        assert_eq!(store.dirty_count("j").expect("count"), 2);
    }

    #[test]
    fn events_that_keep_coming_wait_until_quiet() {
        let store = Store::open_in_memory().expect("store");
        let quiet = chrono::Duration::minutes(10);
        store
            .mark_dirty("a", &[mark("u1", 10)], at(0))
            .expect("mark");
        store
            .mark_dirty("b", &[mark("u2", 10)], at(0))
            .expect("mark");
        store
            .mark_dirty("c", &[mark("u2", 10)], at(8))
            .expect("mark");
        let due = store.due_dirty("j", at(11), quiet).expect("due");
        assert_eq!(due.get(&month(10)), Some(&vec!["u1".to_string()]));
        let due = store.due_dirty("j", at(18), quiet).expect("due");
        assert_eq!(due.get(&month(10)).map(Vec::len), Some(2));
    }

    #[test]
    fn a_mark_is_cleared_only_by_a_re_pull_that_started_after_its_last_event() {
        let store = Store::open_in_memory().expect("store");
        store
            .mark_dirty("a", &[mark("u1", 10), mark("u2", 10)], at(0))
            .expect("mark");
        // An event for u2 while the re-pull (started at minute 5) runs.
        store
            .mark_dirty("b", &[mark("u2", 10)], at(6))
            .expect("mark");
        let both = ["u1".to_string(), "u2".to_string()];
        store
            .clear_dirty("j", month(10), &both, at(5))
            .expect("clear");
        let left = store
            .due_dirty("j", at(30), chrono::Duration::zero())
            .expect("due");
        assert_eq!(left.get(&month(10)), Some(&vec!["u2".to_string()]));
    }

    #[test]
    fn old_event_ids_are_forgotten() {
        let store = Store::open_in_memory().expect("store");
        store
            .mark_dirty("a", &[mark("u1", 10)], at(0))
            .expect("mark");
        assert_eq!(store.forget_events(at(1)).expect("forget"), 1);
        assert!(
            store
                .mark_dirty("a", &[mark("u1", 10)], at(2))
                .expect("mark"),
            "seen too long ago"
        );
    }
}
