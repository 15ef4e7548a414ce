//! What the daemon keeps about vendor events besides the dirty set
//! (store/dirty.rs): approvals still to look up, events received by type, and
//! how each job's event connection stands — `status` runs in another process
//! and reads them here.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::dirty::insert_marks;
use super::{ts, Result, Store};
use crate::month::Month;

/// An approval whose employee and days are still to be looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub reference: String,
    pub event_id: String,
    pub tries: u32,
}

/// Events of one type a job received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCount {
    pub kind: String,
    pub received: u64,
    pub last_at: String,
}

/// A job's event connection as the daemon last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLink {
    pub job: String,
    /// `connected`, `connecting`, `retrying`, `listening`, `stopped`.
    pub state: String,
    pub detail: String,
    pub at: String,
}

impl Store {
    /// The job's lookups due at `now`, oldest first.
    pub fn due_lookups(&self, job: &str, now: DateTime<Utc>, limit: u32) -> Result<Vec<Lookup>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT reference, event_id, tries FROM event_lookups
             WHERE job = ?1 AND next_at <= ?2 ORDER BY added_at LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![job, ts(now), limit], |r| {
            Ok(Lookup {
                reference: r.get(0)?,
                event_id: r.get(1)?,
                tries: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A lookup that started at `at` resolved: its marks written and the
    /// lookup gone, in one transaction (a crash in between looks it up
    /// again) — unless an event named the approval again since `at`: then it
    /// stays, to be looked up anew.
    pub fn resolve_lookup(
        &self,
        job: &str,
        reference: &str,
        marks: &[(Month, String)],
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        insert_marks(&tx, job, marks, at)?;
        tx.execute(
            "DELETE FROM event_lookups WHERE job = ?1 AND reference = ?2 AND added_at <= ?3",
            params![job, reference, ts(at)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// A lookup failed: tried again at `next`.
    pub fn retry_lookup(&self, job: &str, reference: &str, next: DateTime<Utc>) -> Result<()> {
        self.conn().execute(
            "UPDATE event_lookups SET tries = tries + 1, next_at = ?3 WHERE job = ?1 AND reference = ?2",
            params![job, reference, ts(next)],
        )?;
        Ok(())
    }

    /// How many lookups of the job wait.
    pub fn lookup_count(&self, job: &str) -> Result<u64> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM event_lookups WHERE job = ?1",
            params![job],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Events the job received, by type.
    pub fn event_counts(&self, job: &str) -> Result<Vec<EventCount>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT kind, received, last_at FROM event_counts WHERE job = ?1 ORDER BY kind",
        )?;
        let rows = stmt.query_map(params![job], |r| {
            Ok(EventCount {
                kind: r.get(0)?,
                received: r.get::<_, i64>(1)? as u64,
                last_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The daemon's word on a job's event connection.
    pub fn set_event_link(
        &self,
        job: &str,
        state: &str,
        detail: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO event_links (job, state, detail, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (job) DO UPDATE SET state = excluded.state, detail = excluded.detail, at = excluded.at",
            params![job, state, detail, ts(at)],
        )?;
        Ok(())
    }

    /// Jobs with anything about events: a link, an event received, a mark.
    pub fn event_jobs(&self, job: Option<&str>) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT job FROM event_links UNION SELECT job FROM event_counts
             UNION SELECT job FROM dirty UNION SELECT job FROM event_lookups ORDER BY job",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let all: Vec<String> = rows.collect::<rusqlite::Result<_>>()?;
        Ok(all
            .into_iter()
            .filter(|j| job.is_none_or(|k| k == j))
            .collect())
    }

    /// One job's event connection as last reported.
    pub fn event_link(&self, job: &str) -> Result<Option<EventLink>> {
        Ok(self.event_links()?.into_iter().find(|l| l.job == job))
    }

    /// Every job's event connection as last reported.
    pub fn event_links(&self) -> Result<Vec<EventLink>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT job, state, detail, at FROM event_links ORDER BY job")?;
        let rows = stmt.query_map([], |r| {
            Ok(EventLink {
                job: r.get(0)?,
                state: r.get(1)?,
                detail: r.get(2)?,
                at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventRecord;

    fn at(minute: u32) -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 3, 2, minute, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn a_lookup_is_kept_until_resolved_and_its_marks_come_with_it() {
        let store = Store::open_in_memory().expect("store");
        let lookups = ["sp-1".to_string()];
        let e = EventRecord {
            job: "j",
            event_id: "e1",
            kind: "sys_approval_change",
            marks: &[],
            lookups: &lookups,
        };
        assert!(store.record_event(&e, at(0)).expect("record"));
        assert!(!store.record_event(&e, at(1)).expect("again"));
        let due = store.due_lookups("j", at(2), 10).expect("due");
        assert_eq!(due.len(), 1);
        store.retry_lookup("j", "sp-1", at(10)).expect("retry");
        assert!(store.due_lookups("j", at(5), 10).expect("due").is_empty());
        let month = Month::new(2026, 10).expect("month");
        store
            .resolve_lookup("j", "sp-1", &[(month, "u1".into())], at(11))
            .expect("resolve");
        assert_eq!(store.lookup_count("j").expect("n"), 0);
        assert_eq!(store.dirty_count("j").expect("n"), 1);
        // Named again while a lookup (started at minute 20) is under way:
        // that lookup's end leaves it for another.
        let again = EventRecord {
            event_id: "e2",
            ..e.clone()
        };
        assert!(store.record_event(&again, at(19)).expect("record"));
        let third = EventRecord {
            event_id: "e3",
            ..e
        };
        assert!(store.record_event(&third, at(21)).expect("record"));
        store
            .resolve_lookup("j", "sp-1", &[], at(20))
            .expect("resolve");
        assert_eq!(store.lookup_count("j").expect("n"), 1);
        store
            .resolve_lookup("j", "sp-1", &[], at(22))
            .expect("resolve");
        assert_eq!(store.lookup_count("j").expect("n"), 0);
        let counts = store.event_counts("j").expect("counts");
        let kinds: Vec<(&str, u64)> = counts
            .iter()
            .map(|c| (c.kind.as_str(), c.received))
            .collect();
        assert_eq!(kinds, [("(duplicate)", 1), ("sys_approval_change", 3)]);
    }

    #[test]
    fn the_last_word_on_a_link_wins() {
        let store = Store::open_in_memory().expect("store");
        store
            .set_event_link("j", "connecting", "", at(0))
            .expect("set");
        store
            .set_event_link("j", "connected", "since 02:01", at(1))
            .expect("set");
        let links = store.event_links().expect("links");
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].state, "connected");
    }
}
