//! Calendar months and their boundaries in a timezone (README "Which months" and
//! "Months owed").
//!
//! A [`Month`] is a plain calendar month; the timezone only enters when a month is
//! turned into instants (`start_in`, `end_in`) or when "now" is turned into a month.
//! All arithmetic is done on `NaiveDate` first-of-month values, and every local-time
//! mapping goes through [`local_midnight`], which handles DST gaps and never panics.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The default number of days into a month during which the previous month is
/// still synced (README "Which months": "through the 5th of the month").
pub const DEFAULT_GRACE_DAYS: u32 = 5;

/// A calendar month, e.g. 2026-10.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    /// Always the first day of the month.
    first: NaiveDate,
}

impl Month {
    /// The month `year`-`month`; `None` unless `month` is 1..=12 and `year` is
    /// within 1..=9999 (the years `YYYY-MM` can spell).
    pub fn new(year: i32, month: u32) -> Option<Month> {
        if !(1..=9999).contains(&year) {
            return None;
        }
        NaiveDate::from_ymd_opt(year, month, 1).map(|first| Month { first })
    }

    pub fn year(&self) -> i32 {
        self.first.year()
    }

    pub fn month(&self) -> u32 {
        self.first.month()
    }

    pub fn first_day(&self) -> NaiveDate {
        self.first
    }

    pub fn last_day(&self) -> NaiveDate {
        (28..=31)
            .rev()
            .find_map(|d| NaiveDate::from_ymd_opt(self.year(), self.month(), d))
            .unwrap_or(self.first)
    }

    /// Number of days in the month (28..=31).
    pub fn days(&self) -> u32 {
        self.last_day().day()
    }

    /// The following month (saturates at the end of chrono's calendar).
    pub fn next(&self) -> Month {
        Month {
            first: self
                .first
                .checked_add_months(Months::new(1))
                .unwrap_or(self.first),
        }
    }

    /// The preceding month (saturates at the start of chrono's calendar).
    pub fn prev(&self) -> Month {
        Month {
            first: self
                .first
                .checked_sub_months(Months::new(1))
                .unwrap_or(self.first),
        }
    }

    /// The month a date falls in.
    pub fn containing(date: NaiveDate) -> Month {
        Month {
            first: date.with_day(1).unwrap_or(date),
        }
    }

    /// The month of the instant `now` as seen in `tz`.
    pub fn current(now: DateTime<Utc>, tz: Tz) -> Month {
        Month::containing(now.with_timezone(&tz).date_naive())
    }

    /// The first day of the month at 00:00 in `tz` (`$month_start`).
    pub fn start_in(&self, tz: Tz) -> DateTime<Utc> {
        local_midnight(self.first_day(), tz)
    }

    /// The last day of the month at 00:00 in `tz` (`$month_end`).
    pub fn end_in(&self, tz: Tz) -> DateTime<Utc> {
        local_midnight(self.last_day(), tz)
    }
}

impl fmt::Debug for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Month({self})")
    }
}

impl fmt::Display for Month {
    /// `YYYY-MM`; a width (`{:<8}`) pads it as it would the text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() {
            return f.pad(&format!("{:04}-{:02}", self.year(), self.month()));
        }
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

/// A month equals its `YYYY-MM` text.
impl PartialEq<str> for Month {
    fn eq(&self, other: &str) -> bool {
        other.parse::<Month>().is_ok_and(|m| m == *self)
    }
}

impl PartialEq<&str> for Month {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

/// A month argument that is not `YYYY-MM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid month \"{input}\": expected YYYY-MM, e.g. 2026-10")]
pub struct MonthParseError {
    pub input: String,
}

impl FromStr for Month {
    type Err = MonthParseError;

    /// Accepts exactly `YYYY-MM` (four-digit year, two-digit month 01..=12).
    fn from_str(s: &str) -> Result<Month, MonthParseError> {
        let err = || MonthParseError {
            input: s.to_string(),
        };
        let bytes = s.as_bytes();
        if bytes.len() != 7 || bytes[4] != b'-' {
            return Err(err());
        }
        let digits = |r: std::ops::Range<usize>| -> Option<u32> {
            let part = s.get(r)?;
            if part.bytes().all(|b| b.is_ascii_digit()) {
                part.parse().ok()
            } else {
                None
            }
        };
        let year = digits(0..4).ok_or_else(err)?;
        let month = digits(5..7).ok_or_else(err)?;
        let year = i32::try_from(year).map_err(|_| err())?;
        Month::new(year, month).ok_or_else(err)
    }
}

/// The first instant of `date` in `tz`: local 00:00 converted to UTC.
///
/// If 00:00 happens twice (clocks set back across midnight) the earlier one is
/// used; if it does not exist (clocks set forward across midnight) the first
/// instant whose local date is `date` — the end of the gap. A date skipped as a
/// whole (Pacific/Apia, 2011-12-30) yields the start of the following day. Never
/// panics.
pub fn local_midnight(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    local_instant(date.and_time(NaiveTime::MIN), tz)
}

/// The first instant whose local time in `tz` is at or after `naive`: the local
/// time itself when it exists (the earlier one when it happens twice), the end
/// of the gap when clocks skip over it. Never panics.
pub(crate) fn local_instant(naive: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    if let Some(t) = tz.from_local_datetime(&naive).earliest() {
        return t.with_timezone(&Utc);
    }
    // A gap: binary-search the first UTC second whose local time is >= `naive`.
    // UTC offsets lie within ±26 h, so the answer is inside this window.
    let guess = naive.and_utc().timestamp();
    let (mut lo, mut hi) = (guess - 26 * 3600, guess + 26 * 3600);
    let local_at =
        |ts: i64| DateTime::from_timestamp(ts, 0).map(|t| t.with_timezone(&tz).naive_local());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match local_at(mid) {
            Some(local) if local >= naive => hi = mid,
            Some(_) => lo = mid + 1,
            None => break,
        }
    }
    DateTime::from_timestamp(lo, 0).unwrap_or_else(|| naive.and_utc())
}

/// Months a run syncs by default (README "Which months"): the current month, and also the
/// previous one while the local day-of-month is <= `grace_days` (default
/// [`DEFAULT_GRACE_DAYS`]). The previous month comes first: it is final, so it
/// has the higher priority when a call budget runs short.
pub fn default_months(now: DateTime<Utc>, tz: Tz, grace_days: u32) -> Vec<Month> {
    let today = now.with_timezone(&tz).date_naive();
    let current = Month::containing(today);
    if today.day() <= grace_days {
        vec![current.prev(), current]
    } else {
        vec![current]
    }
}

/// The months a run without `--month` syncs: its default months plus every
/// owed month (README "Months owed"), oldest first, each once; and apart, owed months
/// closed more than `max_back` months before `current`, which a run no longer
/// pulls on its own (they raise an alert instead). Owed months after
/// `current` (a clock set back) are ignored.
pub fn with_owed(
    defaults: &[Month],
    owed: &[Month],
    current: Month,
    max_back: u32,
) -> (Vec<Month>, Vec<Month>) {
    let oldest = (0..max_back).fold(current, |m, _| m.prev());
    let mut months: Vec<Month> = defaults
        .iter()
        .chain(owed.iter().filter(|m| **m >= oldest && **m <= current))
        .copied()
        .collect();
    months.sort();
    months.dedup();
    let mut too_old: Vec<Month> = owed.iter().filter(|m| **m < oldest).copied().collect();
    too_old.sort();
    too_old.dedup();
    (months, too_old)
}

/// The WeCom report window of `month` as local day starts (docs/vendors/wecom.md "Pulling a month", step 3):
/// start = the 1st at 00:00; end = the last day at 00:00, or, for the month in
/// progress, today at 00:00 (so on the 1st, start == end). `None` for a month that
/// lies entirely in the future.
pub fn report_window(
    month: Month,
    now: DateTime<Utc>,
    tz: Tz,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let today = now.with_timezone(&tz).date_naive();
    let current = Month::containing(today);
    if month > current {
        return None;
    }
    let end_day = if month == current {
        today.min(month.last_day())
    } else {
        month.last_day()
    };
    Some((month.start_in(tz), local_midnight(end_day, tz)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Days, Duration, Timelike};
    use proptest::prelude::*;

    const SH: Tz = chrono_tz::Asia::Shanghai;

    fn m(s: &str) -> Month {
        s.parse().expect("valid month")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid rfc3339")
            .with_timezone(&Utc)
    }

    const ZONES: &[Tz] = &[
        chrono_tz::Asia::Shanghai,
        chrono_tz::UTC,
        chrono_tz::America::New_York,
        chrono_tz::Europe::London,
        chrono_tz::Pacific::Apia,
        chrono_tz::America::Santiago,
        chrono_tz::America::Havana,
        chrono_tz::Asia::Tehran,
        chrono_tz::Australia::Lord_Howe,
        chrono_tz::Pacific::Kiritimati,
        chrono_tz::America::Sao_Paulo,
        chrono_tz::Asia::Kathmandu,
    ];

    fn any_zone() -> impl Strategy<Value = Tz> {
        proptest::sample::select(ZONES)
    }

    fn any_month() -> impl Strategy<Value = Month> {
        (1970i32..=2200, 1u32..=12).prop_map(|(y, mo)| Month::new(y, mo).expect("in range"))
    }

    fn next_day(date: NaiveDate) -> NaiveDate {
        date.checked_add_days(Days::new(1)).expect("in range")
    }

    fn local(t: DateTime<Utc>, tz: Tz) -> NaiveDateTime {
        t.with_timezone(&tz).naive_local()
    }

    /// `t` is the first instant of local `date`: its local date is `date`, and one
    /// second earlier it was still an earlier day.
    fn is_day_start(t: DateTime<Utc>, date: NaiveDate, tz: Tz) -> bool {
        local(t, tz).date() == date && local(t - Duration::seconds(1), tz).date() < date
    }

    #[test]
    fn parses_and_prints_yyyy_mm_only() {
        assert_eq!(m("2026-10").to_string(), "2026-10");
        assert_eq!(m("0001-01").to_string(), "0001-01");
        assert_eq!((m("2026-10").year(), m("2026-10").month()), (2026, 10));
        for bad in [
            "2026-1",
            "2026-13",
            "2026-00",
            "26-10",
            "2026/10",
            "2026-10-01",
            " 2026-10",
            "",
            "+026-10",
            "2026-1a",
            "２０２６-10",
            "0000-01",
        ] {
            let err = bad.parse::<Month>().expect_err(bad);
            assert!(
                err.to_string().contains("expected YYYY-MM, e.g. 2026-10"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_width_pads_the_text_and_the_text_compares_equal() {
        assert_eq!(format!("[{:<8}]", m("2026-10")), "[2026-10 ]");
        assert_eq!(format!("{}", m("2026-10")), "2026-10");
        assert_eq!(m("2026-10"), "2026-10");
        assert_ne!(m("2026-10"), "2026-1");
    }

    #[test]
    fn new_rejects_bad_months() {
        assert!(Month::new(2026, 0).is_none());
        assert!(Month::new(2026, 13).is_none());
        assert!(Month::new(0, 1).is_none());
        assert!(Month::new(10000, 1).is_none());
        assert!(Month::new(2026, 12).is_some());
    }

    #[test]
    fn shanghai_october_2026_matches_the_wecom_example() {
        let oct = m("2026-10");
        assert_eq!(oct.start_in(SH), utc("2026-09-30T16:00:00Z"));
        assert_eq!(oct.start_in(SH).timestamp(), 1_790_784_000);
        assert_eq!(oct.end_in(SH).timestamp(), 1_793_376_000);
        assert_eq!(oct.days(), 31);
    }

    #[test]
    fn late_utc_on_the_last_day_is_already_next_month_in_shanghai() {
        let t = utc("2026-10-31T20:00:00Z");
        assert_eq!(Month::current(t, chrono_tz::UTC), m("2026-10"));
        assert_eq!(Month::current(t, SH), m("2026-11"));
    }

    #[test]
    fn default_months_examples() {
        let at = |s: &str| default_months(utc(s), SH, DEFAULT_GRACE_DAYS);
        assert_eq!(at("2026-11-03T01:00:00Z"), vec![m("2026-10"), m("2026-11")]);
        assert_eq!(at("2026-11-06T01:00:00Z"), vec![m("2026-11")]);
        assert_eq!(at("2027-01-02T01:00:00Z"), vec![m("2026-12"), m("2027-01")]);
        // The 5th is still inside the grace period, the 6th is not (local days).
        assert_eq!(at("2026-11-05T15:59:59Z"), vec![m("2026-10"), m("2026-11")]);
        assert_eq!(at("2026-11-05T16:00:00Z"), vec![m("2026-11")]);
        assert_eq!(
            default_months(utc("2026-11-01T00:00:00Z"), SH, 0),
            vec![m("2026-11")]
        );
    }

    #[test]
    fn report_window_past_current_future() {
        let now = utc("2026-10-15T10:00:00Z"); // 18:00 in Shanghai
        let (s, e) = report_window(m("2026-09"), now, SH).expect("past month");
        assert_eq!(s, utc("2026-08-31T16:00:00Z"));
        assert_eq!(e, utc("2026-09-29T16:00:00Z"));
        let (s, e) = report_window(m("2026-10"), now, SH).expect("current month");
        assert_eq!(s.timestamp(), 1_790_784_000);
        assert_eq!(e, utc("2026-10-14T16:00:00Z"));
        assert_eq!(report_window(m("2026-11"), now, SH), None);
        // On the 1st of the month in progress, start == end.
        let first = utc("2026-10-01T01:00:00Z");
        let (s, e) = report_window(m("2026-10"), first, SH).expect("current");
        assert_eq!(s, e);
    }

    #[test]
    fn midnight_in_a_dst_gap_is_the_end_of_the_gap() {
        // Santiago: 2022-09-11 00:00 does not exist; clocks go from 24:00 to 01:00.
        let tz = chrono_tz::America::Santiago;
        let d = NaiveDate::from_ymd_opt(2022, 9, 11).expect("date");
        let t = local_midnight(d, tz);
        assert_eq!(local(t, tz).date(), d);
        assert_eq!(local(t, tz).hour(), 1);
        assert!(is_day_start(t, d, tz));
    }

    #[test]
    fn a_skipped_day_yields_the_next_day_start() {
        // Pacific/Apia skipped 2011-12-30 entirely.
        let tz = chrono_tz::Pacific::Apia;
        let d = NaiveDate::from_ymd_opt(2011, 12, 30).expect("date");
        let t = local_midnight(d, tz);
        assert_eq!(
            local(t, tz),
            d.succ_opt().expect("d+1").and_time(NaiveTime::MIN)
        );
    }

    #[test]
    fn extremes_do_not_panic() {
        let max = Month::new(9999, 12).expect("max");
        assert_eq!(max.next().to_string(), "10000-01");
        let min = Month::new(1, 1).expect("min");
        assert_eq!(min.prev().year(), 0);
        for tz in ZONES {
            let _ = max.end_in(*tz);
            let _ = min.start_in(*tz);
            let _ = local_midnight(NaiveDate::MAX, *tz);
            let _ = local_midnight(NaiveDate::MIN, *tz);
        }
    }

    #[test]
    fn owed_months_join_the_defaults_oldest_first_within_the_window() {
        let m = |s: &str| s.parse::<Month>().unwrap_or_else(|e| panic!("{s}: {e}"));
        let current = m("2027-01");
        let (months, old) = with_owed(&[current], &[m("2026-12"), current], current, 3);
        assert_eq!(months, [m("2026-12"), current]);
        assert!(old.is_empty());
        let (months, old) = with_owed(
            &[m("2026-12"), current],
            &[m("2026-09"), m("2026-10"), m("2027-03")],
            current,
            3,
        );
        assert_eq!(months, [m("2026-10"), m("2026-12"), current]);
        assert_eq!(old, [m("2026-09")]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn owed_months_are_synced_once_each_or_alerted(
            current in any_month(),
            back in prop::collection::vec(0u32..40, 0..8),
            max_back in 1u32..24,
        ) {
            let owed: Vec<Month> = back
                .iter()
                .map(|n| (0..*n).fold(current, |m, _| m.prev()))
                .collect();
            let (months, old) = with_owed(&[current], &owed, current, max_back);
            prop_assert!(months.windows(2).all(|w| w[0] < w[1]), "oldest first, once each");
            prop_assert!(months.contains(&current));
            for m in &owed {
                prop_assert!(months.contains(m) != old.contains(m), "{m} synced or alerted, not both");
            }
            let oldest = (0..max_back).fold(current, |m, _| m.prev());
            prop_assert!(old.iter().all(|m| *m < oldest));
            prop_assert!(months.iter().all(|m| *m >= oldest && *m <= current));
        }

        #[test]
        fn start_is_the_first_instant_of_the_first_day(mo in any_month(), tz in any_zone()) {
            let start = mo.start_in(tz);
            prop_assert!(is_day_start(start, mo.first_day(), tz));
            prop_assert_eq!(mo.first_day().day(), 1);
            prop_assert_eq!(Month::current(start, tz), mo);
            // Usually literally 00:00 local (always outside DST gaps).
            if tz.from_local_datetime(&mo.first_day().and_time(NaiveTime::MIN)).earliest().is_some() {
                prop_assert_eq!(local(start, tz).time(), NaiveTime::MIN);
            }
        }

        #[test]
        fn next_start_is_midnight_after_the_last_day(mo in any_month(), tz in any_zone()) {
            let after_last = next_day(mo.last_day());
            prop_assert_eq!(mo.next().start_in(tz), local_midnight(after_last, tz));
            prop_assert_eq!(mo.next().first_day(), after_last);
            prop_assert_eq!(mo.next().prev(), mo);
            prop_assert!(mo.next() > mo);
            // One second before the next month starts, it is still this month.
            let before = mo.next().start_in(tz) - Duration::seconds(1);
            prop_assert_eq!(Month::current(before, tz), mo);
        }

        #[test]
        fn end_is_the_start_of_the_last_day(mo in any_month(), tz in any_zone()) {
            // A zone may skip a whole day (Pacific/Kiritimati skipped 1994-12-31):
            // a month whose last day never happened there has no such start.
            let last_day_exists = (0..24).any(|h| {
                mo.last_day()
                    .and_hms_opt(h, 0, 0)
                    .is_some_and(|t| tz.from_local_datetime(&t).earliest().is_some())
            });
            prop_assume!(last_day_exists);
            let end = mo.end_in(tz);
            prop_assert!(is_day_start(end, mo.last_day(), tz));
            prop_assert!(end > mo.start_in(tz));
            prop_assert_eq!(Month::current(end, tz), mo);
        }

        #[test]
        fn day_counts_follow_the_gregorian_calendar(mo in any_month()) {
            let y = mo.year();
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let expected = match mo.month() {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            prop_assert_eq!(mo.days(), expected);
            prop_assert_eq!(mo.last_day().day(), expected);
            prop_assert_eq!(mo.last_day().month(), mo.month());
        }

        #[test]
        fn december_crosses_the_year(y in 1970i32..=2200) {
            let dec = Month::new(y, 12).expect("dec");
            let jan = dec.next();
            prop_assert_eq!((jan.year(), jan.month()), (y + 1, 1));
            prop_assert_eq!(jan.prev(), dec);
            prop_assert_eq!(jan.to_string(), format!("{:04}-01", y + 1));
        }

        #[test]
        fn display_and_parse_round_trip(mo in any_month()) {
            prop_assert_eq!(mo.to_string().parse::<Month>(), Ok(mo));
        }

        #[test]
        fn default_months_for_any_instant(
            ts in 0i64..7_258_118_400, // 1970..2200
            tz in any_zone(),
            grace in 0u32..=10,
        ) {
            let now = DateTime::from_timestamp(ts, 0).expect("in range");
            let today = local(now, tz).date();
            let cur = Month::new(today.year(), today.month()).expect("month");
            let got = default_months(now, tz, grace);
            if today.day() <= grace {
                // The previous month: the one containing the day before the 1st.
                let prev_day = cur.first_day().pred_opt().expect("pred");
                prop_assert_eq!(got, vec![Month::containing(prev_day), cur]);
            } else {
                prop_assert_eq!(got, vec![cur]);
            }
        }

        #[test]
        fn report_window_is_inside_the_month(
            ts in 0i64..7_258_118_400,
            tz in any_zone(),
            back in 0u32..3,
        ) {
            let now = DateTime::from_timestamp(ts, 0).expect("in range");
            let mut mo = Month::current(now, tz);
            for _ in 0..back { mo = mo.prev(); }
            let (start, end) = report_window(mo, now, tz).expect("not future");
            prop_assert_eq!(start, mo.start_in(tz));
            prop_assert!(end >= start && end <= mo.end_in(tz));
            prop_assert!(end <= now);
            if back > 0 { prop_assert_eq!(end, mo.end_in(tz)); }
            prop_assert_eq!(report_window(Month::current(now, tz).next(), now, tz), None);
        }
    }
}
