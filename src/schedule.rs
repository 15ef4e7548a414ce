//! Job schedules: a cron expression with seconds, evaluated in the job's timezone.
//!
//! The daemon sleeps until [`Schedule::next_after`] and computes the next fire
//! again after every fire, so each fire is computed with the offset in force on
//! its own day (croner evaluates the pattern on local wall-clock time).
//!
//! Daylight saving time (croner's rules, kept and tested here):
//! - A wall-clock time that happens twice (fall-back overlap, 01:30 on a day
//!   02:00 → 01:00) runs once, at its first occurrence; the repeated hour has
//!   no fires of its own.
//! - A fixed time that does not exist (spring-forward gap, 02:30 on a day
//!   02:00 → 03:00) runs at the first instant after the gap (03:00:00 local);
//!   a schedule with a wildcard or step hour simply has no fires in the gap.
//! - A schedule that never fires (`0 30 2 31 2 *`) is refused when parsed.

use chrono::{DateTime, TimeZone, Timelike, Utc};
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
        let schedule = Schedule {
            cron,
            timezone,
            text: text.to_string(),
        };
        // Without a year field a pattern that fires once fires again within
        // 400 years (the Gregorian cycle); croner searches up to the year 5000.
        if schedule.next_after(DateTime::<Utc>::UNIX_EPOCH).is_none() {
            return Err(format!(
                "schedule \"{text}\" never fires (no date matches its day, month and weekday)"
            ));
        }
        Ok(schedule)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first fire time strictly after `t`.
    ///
    /// croner searches wall-clock times and answers a time of the fall-back
    /// overlap with its first occurrence, which is already past when `t` is in
    /// the repeated hour: such a time ran (or was due) then, so the search goes
    /// on after its second occurrence.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t = whole_second(t);
        let mut from = t.with_timezone(&self.timezone);
        // At most one per second of a one-hour overlap, plus the answer.
        for _ in 0..=3601 {
            let next = self.cron.find_next_occurrence(&from, false).ok()?;
            if next.with_timezone(&Utc) > t {
                return Some(next.with_timezone(&Utc));
            }
            from = self
                .timezone
                .from_local_datetime(&next.naive_local())
                .latest()?;
        }
        None
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
    use chrono::{Duration, Offset};
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

    fn ny(text: &str) -> Schedule {
        Schedule::parse(text, chrono_tz::America::New_York).unwrap_or_else(|e| panic!("{e}"))
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
    }

    /// Fires in `(from, until]`, each computed from the one before, as the daemon does.
    fn fires(s: &Schedule, from: &str, until: &str) -> Vec<DateTime<Utc>> {
        let (mut t, until) = (at(from), at(until));
        let mut out = Vec::new();
        while let Some(next) = s.next_after(t).filter(|n| *n <= until) {
            out.push(next);
            t = next;
        }
        out
    }

    #[test]
    fn spring_forward_a_time_in_the_gap_runs_at_the_end_of_the_gap() {
        // 2027-03-14: 02:00 EST → 03:00 EDT.
        let f = fires(
            &ny("0 30 2 * * *"),
            "2027-03-13T00:00:00-05:00",
            "2027-03-16T00:00:00-04:00",
        );
        assert_eq!(
            f,
            vec![
                at("2027-03-13T02:30:00-05:00"),
                at("2027-03-14T03:00:00-04:00"),
                at("2027-03-15T02:30:00-04:00"),
            ]
        );
        let f = fires(
            &ny("5 0 3 * * *"),
            "2027-03-14T01:59:50-05:00",
            "2027-03-15T00:00:00-04:00",
        );
        assert_eq!(f, vec![at("2027-03-14T03:00:05-04:00")]);
        // An hourly schedule has no fire in the gap, and no extra one.
        let f = fires(
            &ny("0 30 * * * *"),
            "2027-03-14T00:00:00-05:00",
            "2027-03-14T04:00:00-04:00",
        );
        assert_eq!(f.len(), 3, "{f:?}");
    }

    #[test]
    fn fall_back_a_time_in_the_overlap_runs_once() {
        // 2026-11-01: 02:00 EDT → 01:00 EST; 01:30 happens twice.
        let f = fires(
            &ny("0 30 1 * * *"),
            "2026-10-31T12:00:00-04:00",
            "2026-11-02T12:00:00-05:00",
        );
        assert_eq!(
            f,
            vec![
                at("2026-11-01T01:30:00-04:00"),
                at("2026-11-02T01:30:00-05:00")
            ]
        );
        // Started during the repeated hour: the first 01:30 is past, not due again.
        assert_eq!(
            ny("0 30 1 * * *").next_after(at("2026-11-01T01:10:00-05:00")),
            Some(at("2026-11-02T01:30:00-05:00"))
        );
        // The original bug: 02:30 keeps firing, at 02:30 local, after the change.
        let f = fires(
            &ny("0 30 2 * * *"),
            "2026-10-30T12:00:00-04:00",
            "2026-11-04T12:00:00-05:00",
        );
        assert_eq!(
            f,
            vec![
                at("2026-10-31T02:30:00-04:00"),
                at("2026-11-01T02:30:00-05:00"),
                at("2026-11-02T02:30:00-05:00"),
                at("2026-11-03T02:30:00-05:00"),
                at("2026-11-04T02:30:00-05:00"),
            ]
        );
    }

    #[test]
    fn a_schedule_that_never_fires_is_refused() {
        let err = Schedule::parse("0 30 2 31 2 *", chrono_tz::Asia::Shanghai)
            .err()
            .unwrap_or_default();
        assert!(err.contains("never fires"), "{err}");
        // Once in four years is fine.
        assert!(Schedule::parse("0 0 0 29 2 *", chrono_tz::Asia::Shanghai).is_ok());
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

        #[test]
        // Every zone with DST the daemon is likely to meet, across both changes:
        // the next fire is in the future, is a scheduled wall-clock time (or
        // the end of a gap), and no scheduled time in between was skipped.
        fn next_fire_across_dst_is_the_first_scheduled_wall_time_after_t(
            secs in 1_700_000_000i64..2_100_000_000,
            zone in 0usize..4,
            hour in 0u32..4,
            minute in 0u32..60,
        ) {
            let tz = [
                chrono_tz::America::New_York,
                chrono_tz::Europe::Berlin,
                chrono_tz::Australia::Sydney,
                chrono_tz::America::Santiago,
            ][zone];
            let s = Schedule::parse(&format!("0 {minute} {hour} * * *"), tz)
                .unwrap_or_else(|e| panic!("{e}"));
            let t = Utc.timestamp_opt(secs, 0).single().unwrap_or_default();
            let next = s.next_after(t);
            prop_assert!(next.is_some());
            let next = next.unwrap_or(t);
            prop_assert!(next > t);
            prop_assert!(next - t <= Duration::hours(25), "{} after {}", next, t);
            let local = next.with_timezone(&tz);
            let wanted = (hour, minute, 0);
            let got = (local.hour(), local.minute(), local.second());
            if got != wanted {
                // Only at the end of a gap: a second earlier was another offset.
                let before = (next - Duration::seconds(1)).with_timezone(&tz);
                prop_assert_ne!(
                    before.offset().fix(),
                    local.offset().fix(),
                    "{} local {} is neither the time nor the end of a gap", next, local
                );
            }
            // Nothing scheduled was skipped: every instant in (t, next) whose
            // wall time is the scheduled one is a second occurrence.
            let mut probe = t + Duration::seconds(i64::from(60 - t.second()));
            while probe < next {
                let l = probe.with_timezone(&tz);
                if (l.hour(), l.minute(), l.second()) == wanted {
                    let first = tz.from_local_datetime(&l.naive_local()).earliest();
                    prop_assert!(first.is_some_and(|f| f.with_timezone(&Utc) < probe),
                        "{} skipped", probe);
                }
                probe += Duration::minutes(1);
            }
        }
    }
}
