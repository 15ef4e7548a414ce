//! Job schedules: a cron expression with seconds, evaluated in the job's timezone.
//!
//! The daemon fires jobs with tokio-cron-scheduler, which computes ticks with a UTC
//! offset fixed when the job is added and has been reported to fire Asia/Shanghai
//! jobs twice. This module is the daemon's own account of when a job is due, from
//! the same parser (croner) evaluated properly in the timezone; every fire is
//! checked against it, so a spurious or repeated fire never starts a run.

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;

#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    timezone: Tz,
    text: String,
}

impl Schedule {
    /// Parses `sec min hour day month weekday`. The error says what is expected.
    pub fn parse(text: &str, timezone: Tz) -> Result<Schedule, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(text)
            .map_err(|e| {
                format!(
                    "invalid schedule \"{text}\" ({e}); expected six fields: sec min hour day month weekday, e.g. \"0 30 2 * * *\""
                )
            })?;
        Ok(Schedule {
            cron,
            timezone,
            text: text.to_string(),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&whole_second(t).with_timezone(&self.timezone), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest fire time at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&whole_second(t).with_timezone(&self.timezone), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// Whether a fire time passed in `(since, now]`: a run was missed.
    pub fn missed(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.next_after(since).is_some_and(|next| next <= now)
    }
}

/// Cron times are whole seconds; croner would match 02:30:00.3 as "02:30:00".
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn shanghai_0230() -> Schedule {
        Schedule::parse("0 30 2 * * *", chrono_tz::Asia::Shanghai).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn shanghai_0230_fires_once_a_day_at_1830_utc() {
        let s = shanghai_0230();
        let mut t = Utc
            .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let mut fires = Vec::new();
        while fires.len() < 60 {
            let Some(next) = s.next_after(t) else { break };
            fires.push(next);
            t = next;
        }
        assert_eq!(fires.len(), 60);
        for (i, f) in fires.iter().enumerate() {
            assert_eq!(
                (f.hour(), f.minute(), f.second()),
                (18, 30, 0),
                "fire {i}: {f}"
            );
        }
        for w in fires.windows(2) {
            assert_eq!(w[1] - w[0], Duration::days(1), "exactly one fire per day");
        }
        // 02:30 UTC is never a fire time.
        let at_0230_utc = Utc
            .with_ymd_and_hms(2026, 11, 5, 2, 30, 0)
            .single()
            .unwrap_or_default();
        assert_ne!(s.latest_at_or_before(at_0230_utc), Some(at_0230_utc));
        assert_eq!(
            s.latest_at_or_before(at_0230_utc),
            Utc.with_ymd_and_hms(2026, 11, 4, 18, 30, 0).single()
        );
    }

    #[test]
    fn missed_runs_are_detected() {
        let s = shanghai_0230();
        let last = Utc
            .with_ymd_and_hms(2026, 11, 3, 18, 30, 5)
            .single()
            .unwrap_or_default();
        assert!(!s.missed(last, last + Duration::hours(20)));
        assert!(s.missed(last, last + Duration::hours(25)));
    }

    #[test]
    fn bad_schedules_are_explained() {
        let err = Schedule::parse("30 2 * * *", chrono_tz::Asia::Shanghai)
            .err()
            .unwrap_or_default();
        assert!(err.contains("six fields"), "{err}");
    }

    proptest! {
        #[test]
        // From 1992: China kept daylight saving time from 1986 to 1991, when
        // 02:30 did not exist on the spring-forward days (what a schedule does
        // then is a DST question of its own).
        fn next_fire_is_in_the_future_and_matches_local_0230(secs in 700_000_000i64..4_000_000_000) {
            let s = shanghai_0230();
            let t = Utc.timestamp_opt(secs, 0).single().unwrap_or_default();
            let next = s.next_after(t).unwrap_or(t);
            prop_assert!(next > t);
            prop_assert!(next - t <= Duration::days(1));
            let local = next.with_timezone(&chrono_tz::Asia::Shanghai);
            prop_assert_eq!((local.hour(), local.minute(), local.second()), (2, 30, 0));
        }
    }
}
