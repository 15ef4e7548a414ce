//! Monthly check-in figures: a per-employee profile, a simulated day, and the
//! WeCom rendering of a month or period.

use chrono::{Datelike, NaiveDate, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use super::{Org, User};
use crate::mix;

pub(super) const DAY: i64 = 86_400;
pub(super) const HOUR: i64 = 3_600;
pub(super) const STANDARD_DAY: i64 = 8 * HOUR;

/// Public holidays the simulator knows (fixed dates only): (month, first day, last day).
pub(super) const HOLIDAYS: &[(u32, u32, u32)] = &[(1, 1, 1), (5, 1, 5), (10, 1, 7)];

pub(super) fn is_holiday(date: NaiveDate) -> bool {
    HOLIDAYS
        .iter()
        .any(|&(m, a, b)| date.month() == m && (a..=b).contains(&date.day()))
}

/// How a person's check-in rule and habits look; stable for the person.
pub(super) struct Profile {
    record_type: u32,
    groupid: i64,
    groupname: &'static str,
    late_p: f64,
    field_p: f64,
    shift_offset: i64,
    /// 0: overtime paid, 1: as time off, 2: workdays paid and rest days as time off.
    overtime_policy: u8,
    omit_rest_days: bool,
    omit_regular_days: bool,
    omit_holidays_over: bool,
    omit_over_as: bool,
}

pub(super) fn profile(org: &Org, user: &User) -> Profile {
    let h = mix(org.seed, &[b"profile", user.userid.as_bytes()]);
    let mut rng = StdRng::seed_from_u64(h);
    let centre = user
        .departments
        .first()
        .and_then(|&d| org.top_level_department(d))
        .map(|d| d.name.as_str())
        .unwrap_or("");
    let (record_type, groupid, groupname) = if rng.random_bool(0.02) {
        (7, 0, "")
    } else {
        match centre {
            "客服中心" => (3, 13, "客服排班"),
            "生产中心" => (3, 14, "车间倒班"),
            "销售中心" => (4, 15, "销售自由签到"),
            "研发中心" | "产品中心" => (1, 12, "研发弹性工时"),
            _ => (1, 11, "标准工时"),
        }
    };
    Profile {
        record_type,
        groupid,
        groupname,
        late_p: rng.random_range(0.01..0.12),
        field_p: if record_type == 4 { 0.35 } else { 0.02 },
        shift_offset: rng.random_range(0..6),
        overtime_policy: rng.random_range(0..3),
        omit_rest_days: rng.random_bool(0.2),
        omit_regular_days: rng.random_bool(0.35),
        omit_holidays_over: rng.random_bool(0.2),
        omit_over_as: rng.random_bool(0.15),
    }
}

/// Occurrences and their summed duration in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: i64,
    pub seconds: i64,
}

impl Tally {
    fn once(seconds: i64) -> Tally {
        Tally { count: 1, seconds }
    }

    fn add(&mut self, other: Tally) {
        self.count += other.count;
        self.seconds += other.seconds;
    }
}

/// One person's check-in figures over some days of one month, vendor-neutral
/// (the WeCom simulator renders them as a `datas[]` element; a DingTalk one can
/// render them as report columns). Durations are seconds; leave durations are
/// whole days of 86 400 s except personal leave and outings, which are hours.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonthFigures {
    /// WeCom rule type: 1 fixed hours, 3 shifts, 4 free check-in, 7 no rule.
    pub record_type: u32,
    pub rule_id: i64,
    pub rule_name: String,
    /// Calendar days covered.
    pub days: i64,
    /// Days that required check-in.
    pub work_days: i64,
    /// Work days with an exception (late, early leave, missing punch, absent).
    pub except_days: i64,
    pub regular_work_sec: i64,
    pub standard_work_sec: i64,
    pub late: Tally,
    pub early_leave: Tally,
    /// Missing punches (no duration).
    pub missing_punch: Tally,
    pub absent: Tally,
    pub annual_leave: Tally,
    pub personal_leave: Tally,
    pub sick_leave: Tally,
    pub punch_corrections: Tally,
    pub business_trip: Tally,
    pub outing: Tally,
    pub field_work: Tally,
    pub workday_overtime_sec: i64,
    pub restday_overtime_sec: i64,
    pub holiday_overtime_sec: i64,
}

impl MonthFigures {
    fn add(&mut self, d: &MonthFigures) {
        self.days += d.days;
        self.work_days += d.work_days;
        self.except_days += d.except_days;
        self.regular_work_sec += d.regular_work_sec;
        self.standard_work_sec += d.standard_work_sec;
        self.late.add(d.late);
        self.early_leave.add(d.early_leave);
        self.missing_punch.add(d.missing_punch);
        self.absent.add(d.absent);
        self.annual_leave.add(d.annual_leave);
        self.personal_leave.add(d.personal_leave);
        self.sick_leave.add(d.sick_leave);
        self.punch_corrections.add(d.punch_corrections);
        self.business_trip.add(d.business_trip);
        self.outing.add(d.outing);
        self.field_work.add(d.field_work);
        self.workday_overtime_sec += d.workday_overtime_sec;
        self.restday_overtime_sec += d.restday_overtime_sec;
        self.holiday_overtime_sec += d.holiday_overtime_sec;
    }
}

/// Simulates one day. Draws from `rng` whether or not the day is counted, so a
/// shorter window sees the same days as the whole month.
pub(super) fn simulate_day(p: &Profile, date: NaiveDate, rng: &mut StdRng) -> MonthFigures {
    let mut d = MonthFigures {
        days: 1,
        ..MonthFigures::default()
    };
    let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
    let workday = match p.record_type {
        7 => false,
        3 => (i64::from(date.num_days_from_ce()) + p.shift_offset) % 6 < 4,
        _ => !weekend && !is_holiday(date),
    };
    let r: f64 = rng.random();
    if p.record_type == 7 {
        // No rule: nothing is recorded.
    } else if workday {
        d.work_days = 1;
        d.standard_work_sec = STANDARD_DAY;
        if r < 0.025 {
            d.annual_leave = Tally::once(DAY);
        } else if r < 0.035 {
            let hours = [2, 4, 8][rng.random_range(0..3)];
            d.personal_leave = Tally::once(hours * HOUR);
            d.regular_work_sec = STANDARD_DAY - hours * HOUR;
        } else if r < 0.043 {
            d.sick_leave = Tally::once(DAY);
        } else if r < 0.05 {
            d.business_trip = Tally::once(DAY);
            d.regular_work_sec = STANDARD_DAY;
        } else if r < 0.054 {
            d.absent = Tally::once(STANDARD_DAY);
            d.except_days = 1;
        } else {
            let noise = if p.record_type == 4 { 3600 } else { 1500 };
            let mut worked = STANDARD_DAY + rng.random_range(-noise / 3..=noise);
            if rng.random_bool(p.late_p) {
                let late = rng.random_range(1..=30) * 60;
                d.late = Tally::once(late);
                worked -= late;
            }
            if rng.random_bool(0.02) {
                let early = rng.random_range(1..=60) * 60;
                d.early_leave = Tally::once(early);
                worked -= early;
            }
            if rng.random_bool(0.02) {
                d.missing_punch = Tally::once(0);
                if rng.random_bool(0.6) {
                    d.punch_corrections = Tally::once(0);
                }
            }
            if rng.random_bool(0.02) {
                d.outing = Tally::once(rng.random_range(2..=4) * HOUR);
            }
            if rng.random_bool(p.field_p) {
                d.field_work = Tally::once(0);
            }
            if rng.random_bool(0.15) {
                d.workday_overtime_sec = rng.random_range(1..=6) * 1800;
            }
            d.regular_work_sec = worked;
            if d.late.count + d.early_leave.count + d.missing_punch.count > 0 {
                d.except_days = 1;
            }
        }
    } else if r < 0.06 {
        let over = rng.random_range(8..=18) * 1800;
        if is_holiday(date) {
            d.holiday_overtime_sec = over;
        } else {
            d.restday_overtime_sec = over;
        }
    }
    d
}

/// First and last day of a month; `None` for an invalid month.
pub fn month_bounds(year: i32, month: u32) -> Option<(NaiveDate, NaiveDate)> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year.checked_add(1)?, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    Some((first, next.pred_opt()?))
}

/// The figures of `user` for the days `first..=last` (both inclusive), clamped
/// to the month that contains `first`; deterministic in (org seed, userid,
/// year, month, revision). The days are simulated one by one from the month's
/// first day, so a shorter window (the month in progress) is a prefix of the
/// whole month. A revision adds a correction (30 minutes of work time and one
/// punch correction per revision), so bumping it always changes the figures.
pub fn month_figures(
    org: &Org,
    user: &User,
    first: NaiveDate,
    last: NaiveDate,
    revision: u32,
) -> MonthFigures {
    figures(org, user, &profile(org, user), first, last, revision)
}

pub(super) fn figures(
    org: &Org,
    user: &User,
    profile: &Profile,
    first: NaiveDate,
    last: NaiveDate,
    revision: u32,
) -> MonthFigures {
    let mut totals = MonthFigures {
        record_type: profile.record_type,
        rule_id: profile.groupid,
        rule_name: profile.groupname.to_owned(),
        ..MonthFigures::default()
    };
    if let Some((month_first, month_last)) = month_bounds(first.year(), first.month()) {
        let last = last.min(month_last);
        let mut rng = StdRng::seed_from_u64(mix(
            org.seed,
            &[
                b"month",
                user.userid.as_bytes(),
                &first.year().to_le_bytes(),
                &first.month().to_le_bytes(),
            ],
        ));
        for date in month_first.iter_days().take_while(|d| *d <= month_last) {
            let day = simulate_day(profile, date, &mut rng);
            if date >= first && date <= last {
                totals.add(&day);
            }
        }
    }
    let revision = i64::from(revision);
    totals.regular_work_sec += revision * 1800;
    totals.punch_corrections.count += revision;
    totals
}

/// One element of `getcheckin_monthdata`'s `datas[]` for this user and the
/// whole month, deterministic in (org seed, userid, year, month, revision).
/// See [`wecom_period_record`].
pub fn wecom_month_record(org: &Org, user: &User, year: i32, month: u32, revision: u32) -> Value {
    let profile = profile(org, user);
    let figures = match month_bounds(year, month) {
        Some((first, last)) => figures(org, user, &profile, first, last, revision),
        None => MonthFigures {
            record_type: profile.record_type,
            rule_id: profile.groupid,
            rule_name: profile.groupname.to_owned(),
            ..MonthFigures::default()
        },
    };
    render(org, user, &profile, &figures)
}

/// Like [`wecom_month_record`], for the days `first..=last` of the month that
/// contains `first` (see [`month_figures`]). This is what the WeCom simulator
/// answers for a request from `first` 00:00 to `last` 00:00.
pub fn wecom_period_record(
    org: &Org,
    user: &User,
    first: NaiveDate,
    last: NaiveDate,
    revision: u32,
) -> Value {
    let profile = profile(org, user);
    let figures = figures(org, user, &profile, first, last, revision);
    render(org, user, &profile, &figures)
}

pub(super) fn render(org: &Org, user: &User, p: &Profile, t: &MonthFigures) -> Value {
    let departs_name = user
        .departments
        .iter()
        .map(|&d| org.department_path(d))
        .collect::<Vec<_>>()
        .join(";");

    let mut summary = Map::new();
    summary.insert("work_days".into(), json!(t.work_days));
    if !p.omit_regular_days {
        summary.insert("regular_days".into(), json!(t.work_days - t.except_days));
    }
    summary.insert("except_days".into(), json!(t.except_days));
    if !p.omit_rest_days {
        let rest = if t.record_type == 7 {
            0
        } else {
            t.days - t.work_days
        };
        summary.insert("rest_days".into(), json!(rest));
    }
    summary.insert("regular_work_sec".into(), json!(t.regular_work_sec));
    summary.insert("standard_work_sec".into(), json!(t.standard_work_sec));

    let exceptions: Vec<Value> = [
        (1, t.late),
        (2, t.early_leave),
        (3, t.missing_punch),
        (4, t.absent),
    ]
    .into_iter()
    .filter(|(_, tally)| tally.count > 0)
    .map(
        |(code, tally)| json!({"exception": code, "count": tally.count, "duration": tally.seconds}),
    )
    .collect();

    let sp = |ty: u32, vacation_id: u32, name: &str, tally: Tally, time_type: u32| {
        json!({
            "type": ty, "vacation_id": vacation_id, "name": name,
            "count": tally.count, "duration": tally.seconds, "time_type": time_type
        })
    };
    let sp_items = vec![
        sp(1, 2, "年假", t.annual_leave, 0),
        sp(1, 1, "事假", t.personal_leave, 1),
        sp(1, 3, "病假", t.sick_leave, 0),
        sp(2, 0, "补卡次数", t.punch_corrections, 0),
        sp(3, 0, "出差", t.business_trip, 0),
        sp(4, 0, "外出", t.outing, 1),
        sp(100, 0, "外勤次数", t.field_work, 0),
    ];

    let mut over = Map::new();
    over.insert("workday_over_sec".into(), json!(t.workday_overtime_sec));
    over.insert("restdays_over_sec".into(), json!(t.restday_overtime_sec));
    if !p.omit_holidays_over {
        over.insert("holidays_over_sec".into(), json!(t.holiday_overtime_sec));
    }
    if !p.omit_over_as {
        let split = |sec: i64, as_money: bool| if as_money { (0, sec) } else { (sec, 0) };
        let (wv, wm) = split(t.workday_overtime_sec, p.overtime_policy != 1);
        let (rv, rm) = split(t.restday_overtime_sec, p.overtime_policy == 0);
        let (hv, hm) = split(t.holiday_overtime_sec, p.overtime_policy != 1);
        over.insert("workdays_over_as_vacation".into(), json!(wv));
        over.insert("workdays_over_as_money".into(), json!(wm));
        over.insert("restdays_over_as_vacation".into(), json!(rv));
        over.insert("restdays_over_as_money".into(), json!(rm));
        over.insert("holidays_over_as_vacation".into(), json!(hv));
        over.insert("holidays_over_as_money".into(), json!(hm));
    }

    json!({
        "base_info": {
            "record_type": t.record_type,
            "name": user.name,
            "name_ex": user.name_ex,
            "departs_name": departs_name,
            "acctid": user.userid,
            "rule_info": { "groupid": t.rule_id, "groupname": t.rule_name }
        },
        "summary_info": Value::Object(summary),
        "exception_infos": exceptions,
        "sp_items": sp_items,
        "overwork_info": Value::Object(over)
    })
}
