//! The [`Sink`] of a job's events: each verified change becomes employee-months
//! in the dirty set (or lookups), committed before the vendor is acknowledged.
//! Which months count follows `current_month` and `max_age_months`, in the
//! job's timezone.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{Change, CurrentMonth, Day, EventsConfig, Recorded, Sink, SinkError, SinkFuture};
use crate::clock::Clock;
use crate::month::Month;
use crate::store::{EventRecord, Store};

/// Which months of events a job re-pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub current_month: CurrentMonth,
    pub max_age_months: u32,
}

impl Window {
    pub fn of(config: &EventsConfig) -> Window {
        Window {
            current_month: config.current_month,
            max_age_months: config.max_age_months,
        }
    }

    /// Whether events about `month` are re-pulled when the job's month is
    /// `current`: closed months up to `max_age_months` back, the month in
    /// progress only when live, never a month to come.
    pub fn takes(&self, month: Month, current: Month) -> bool {
        if month > current {
            return false;
        }
        if month == current {
            return self.current_month == CurrentMonth::Live;
        }
        let mut oldest = current;
        for _ in 0..self.max_age_months {
            oldest = oldest.prev();
        }
        month >= oldest
    }
}

/// The day an event names, in the job's timezone.
pub fn local_day(day: Day, tz: Tz) -> chrono::NaiveDate {
    match day {
        Day::Date(d) => d,
        Day::At(t) => t.with_timezone(&tz).date_naive(),
    }
}

/// The employee-months of `change` the job re-pulls, each once, and how many
/// it named outside the window.
pub fn marks_of(
    change: &Change,
    tz: Tz,
    window: Window,
    now: DateTime<Utc>,
) -> (Vec<(Month, String)>, usize) {
    let current = Month::current(now, tz);
    let mut marks = BTreeSet::new();
    let mut outside = 0;
    for t in &change.touched {
        let month = Month::containing(local_day(t.day, tz));
        if window.takes(month, current) {
            marks.insert((month, t.employee.clone()));
        } else {
            outside += 1;
        }
    }
    (marks.into_iter().collect(), outside)
}

pub struct Inbox {
    pub store: Store,
    pub job: String,
    pub timezone: Tz,
    pub window: Window,
    pub clock: Clock,
}

impl Inbox {
    async fn commit(&self, change: Change) -> Result<Recorded, SinkError> {
        let now = self.clock.now();
        let (marks, outside) = marks_of(&change, self.timezone, self.window, now);
        if outside > 0 {
            tracing::info!(job = %self.job, event = %change.kind, event_id = %change.event_id, days = outside,
                "event about a month this job does not re-pull (current_month, max_age_months); left to the schedule");
        }
        let nothing = marks.is_empty() && change.lookups.is_empty();
        let (store, job) = (self.store.clone(), self.job.clone());
        let new = store
            .call(move |s| {
                let record = EventRecord {
                    job: &job,
                    event_id: &change.event_id,
                    kind: &change.kind,
                    marks: &marks,
                    lookups: &change.lookups,
                };
                s.record_event(&record, now)
            })
            .await
            .map_err(|e| SinkError(e.to_string()))?;
        Ok(match (new, nothing) {
            (false, _) => Recorded::Duplicate,
            (true, true) => Recorded::Ignored,
            (true, false) => Recorded::New,
        })
    }
}

impl Sink for Inbox {
    fn record(&self, change: Change) -> SinkFuture<'_> {
        Box::pin(self.commit(change))
    }

    fn label(&self) -> &str {
        &self.job
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Touched;
    use chrono::{NaiveDate, TimeZone};
    use proptest::prelude::*;

    const SH: Tz = chrono_tz::Asia::Shanghai;

    fn month(y: i32, m: u32) -> Month {
        Month::new(y, m).expect("month")
    }

    fn change(touched: Vec<Touched>) -> Change {
        Change {
            event_id: "e".into(),
            kind: "k".into(),
            touched,
            lookups: vec![],
        }
    }

    fn at(employee: &str, t: DateTime<Utc>) -> Touched {
        Touched {
            employee: employee.into(),
            day: Day::At(t),
        }
    }

    #[test]
    fn a_punch_at_utc_evening_belongs_to_the_next_local_day_and_month() {
        // 2026-10-31 17:30 UTC is 1 November 01:30 in Beijing.
        let punch = Utc
            .with_ymd_and_hms(2026, 10, 31, 17, 30, 0)
            .single()
            .expect("t");
        let now = Utc
            .with_ymd_and_hms(2026, 12, 3, 2, 0, 0)
            .single()
            .expect("t");
        let window = Window {
            current_month: CurrentMonth::Scheduled,
            max_age_months: 3,
        };
        let (marks, outside) = marks_of(&change(vec![at("u1", punch)]), SH, window, now);
        assert_eq!(marks, vec![(month(2026, 11), "u1".to_string())]);
        assert_eq!(outside, 0);
    }

    #[test]
    fn the_month_in_progress_waits_for_the_schedule_unless_live() {
        let now = Utc
            .with_ymd_and_hms(2026, 12, 3, 2, 0, 0)
            .single()
            .expect("t");
        let today = Touched {
            employee: "u1".into(),
            day: Day::Date(NaiveDate::from_ymd_opt(2026, 12, 2).expect("d")),
        };
        let scheduled = Window {
            current_month: CurrentMonth::Scheduled,
            max_age_months: 3,
        };
        let (marks, outside) = marks_of(&change(vec![today.clone()]), SH, scheduled, now);
        assert!(marks.is_empty());
        assert_eq!(outside, 1);
        let live = Window {
            current_month: CurrentMonth::Live,
            ..scheduled
        };
        let (marks, _) = marks_of(&change(vec![today]), SH, live, now);
        assert_eq!(marks, vec![(month(2026, 12), "u1".to_string())]);
    }

    proptest! {
        /// Closed months are taken exactly `max_age_months` back; the month
        /// in progress only when live; later months never.
        #[test]
        fn the_window_takes_exactly_the_closed_months_in_age(
            year in 2000i32..2100, m in 1u32..=12, back in -3i32..30, age in 1u32..=24, live: bool,
        ) {
            let current = month(year, m);
            let mut probe = current;
            for _ in 0..back.max(0) { probe = probe.prev(); }
            for _ in 0..(-back).max(0) { probe = probe.next(); }
            let window = Window {
                current_month: if live { CurrentMonth::Live } else { CurrentMonth::Scheduled },
                max_age_months: age,
            };
            let expected = match back {
                b if b < 0 => false,
                0 => live,
                b => b as u32 <= age,
            };
            prop_assert_eq!(window.takes(probe, current), expected);
        }
    }
}
