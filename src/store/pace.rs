//! When each vendor app's recent calls left, kept between runs so that a run
//! starting right after another keeps to the quota windows both share
//! (`http/pace/memory.rs`). Times are Unix microseconds, a JSON list per lane;
//! only the last counting window's calls are kept, so the lists stay short.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::params;

use super::{Result, Store, StoreError};
use crate::http::pace::Departures;

fn micros(t: SystemTime) -> i64 {
    // A time before 1970 cannot come from a call; it would be kept as 1970.
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn time_of(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

impl Store {
    /// The departures kept for `holder` (a vendor app), every lane.
    pub fn recent_departures(&self, holder: &str) -> Result<Departures> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT lane, left_at FROM pace_departures WHERE holder = ?1")?;
        let rows = stmt.query_map(params![holder], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Departures::new();
        for row in rows {
            let (lane, text) = row?;
            // One lane that cannot be read costs that lane only: the others'
            // kept times still hold the next call (the next keep replaces it).
            match serde_json::from_str::<Vec<i64>>(&text) {
                Ok(times) => out.push((lane, times.into_iter().map(time_of).collect())),
                Err(e) => tracing::warn!(%holder, %lane, error = %e,
                    "the kept times of this lane cannot be read; pacing it from now"),
            }
        }
        Ok(out)
    }

    /// Replaces what is kept for `holder` with `departures`.
    pub fn keep_departures(&self, holder: &str, departures: &Departures) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM pace_departures WHERE holder = ?1",
            params![holder],
        )?;
        for (lane, times) in departures {
            let us: Vec<i64> = times.iter().map(|t| micros(*t)).collect();
            let text = serde_json::to_string(&us)
                .map_err(|e| StoreError::Corrupt(format!("pace departures of {holder}: {e}")))?;
            tx.execute(
                "INSERT INTO pace_departures (holder, lane, left_at) VALUES (?1, ?2, ?3)",
                params![holder, lane, text],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn departures_are_kept_per_holder_and_replaced() {
        let s = Store::open_in_memory().expect("open");
        let now = SystemTime::now();
        let first: Departures = vec![
            ("report".into(), vec![now - Duration::from_millis(500), now]),
            ("total".into(), vec![now]),
        ];
        s.keep_departures("wecom a", &first).expect("keep");
        s.keep_departures("wecom b", &vec![("x".into(), vec![now])])
            .expect("keep");
        let mut back = s.recent_departures("wecom a").expect("read");
        back.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, "report");
        let error = back[0].1[1]
            .duration_since(now)
            .unwrap_or_else(|e| e.duration());
        assert!(error < Duration::from_micros(1), "{error:?}");

        // A lane that cannot be read is left out; the others are read.
        s.conn()
            .execute(
                "UPDATE pace_departures SET left_at = '[1, \"x\"' WHERE holder = 'wecom a' AND lane = 'total'",
                [],
            )
            .expect("corrupt");
        let back = s.recent_departures("wecom a").expect("read");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].0, "report");

        s.keep_departures("wecom a", &vec![]).expect("replace");
        assert!(s.recent_departures("wecom a").expect("read").is_empty());
        assert_eq!(s.recent_departures("wecom b").expect("read").len(), 1);
    }
}
