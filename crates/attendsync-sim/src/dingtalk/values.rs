//! Report values: which column measures what, and its value on one day,
//! derived from the shared per-day generator ([`crate::org::month_figures`]).

use std::sync::Arc;

use chrono::NaiveDate;

use super::{ColumnValues, Shared, SHOULD_ATTEND, SHOULD_ATTEND_FRESH_DAYS};
use crate::mix;
use crate::org::{month_figures, MonthFigures, Org, User};

impl Shared {
    /// One user's figures for one day. Computing a day simulates its whole
    /// month, so the days are memoised.
    pub(super) fn day(&self, user: &User, date: NaiveDate) -> Arc<MonthFigures> {
        let revision = self
            .revisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&user.userid)
            .copied()
            .unwrap_or(0);
        let key = (user.userid.clone(), date, revision);
        if let Some(d) = self
            .days
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return d.clone();
        }
        let figures = Arc::new(month_figures(&self.org, user, date, date, revision));
        self.days
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, figures.clone());
        figures
    }

    pub(super) fn values(
        &self,
        user: &User,
        metric: Metric,
        first: NaiveDate,
        last: NaiveDate,
    ) -> ColumnValues {
        if let Some(fixed) = self.fixed_value(user, metric) {
            return ColumnValues::Fixed(fixed);
        }
        let today = self.today();
        let days = first
            .iter_days()
            .take_while(|d| *d <= last)
            .map(|date| {
                let day = self.day(user, date);
                let value = day_value(metric, &day, date, today, &self.org, user);
                (format!("{date} 00:00:00"), value)
            })
            .collect();
        ColumnValues::Daily(days)
    }

    pub(super) fn fixed_value(&self, user: &User, metric: Metric) -> Option<String> {
        match metric {
            Metric::StandardHours => Some("8.0".to_owned()),
            Metric::JobNumber => Some(user.job_number.clone()),
            Metric::Group => {
                // The rule does not depend on the day: ask for any one.
                let day = self.today();
                Some(month_figures(&self.org, user, day, day, 0).rule_name)
            }
            _ => None,
        }
    }
}

/// What a column or leave type measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Metric {
    AttendDays,
    RestDays,
    WorkMinutes,
    LateCount,
    LateMinutes,
    SeriousLateCount,
    SeriousLateMinutes,
    AbsentLateDays,
    EarlyCount,
    EarlyMinutes,
    MissingCount,
    MissingOnCount,
    MissingOffCount,
    AbsentDays,
    ShouldAttendDays,
    OvertimeHours,
    WorkdayOvertimeHours,
    RestdayOvertimeHours,
    HolidayOvertimeHours,
    TripDays,
    OutingHours,
    Corrections,
    FieldWork,
    Shifts,
    StandardHours,
    Group,
    Shift,
    JobNumber,
    AnnualLeaveDays,
    PersonalLeaveHours,
    SickLeaveDays,
    TimeOffHours,
    Zero,
}

pub(super) fn column_metric(name: &str) -> Metric {
    match name {
        "出勤天数" => Metric::AttendDays,
        "休息天数" => Metric::RestDays,
        "工作时长" => Metric::WorkMinutes,
        "迟到次数" => Metric::LateCount,
        "迟到时长" => Metric::LateMinutes,
        "严重迟到次数" => Metric::SeriousLateCount,
        "严重迟到时长" => Metric::SeriousLateMinutes,
        "旷工迟到天数" => Metric::AbsentLateDays,
        "早退次数" => Metric::EarlyCount,
        "早退时长" => Metric::EarlyMinutes,
        "缺卡次数" => Metric::MissingCount,
        "上班缺卡次数" => Metric::MissingOnCount,
        "下班缺卡次数" => Metric::MissingOffCount,
        "旷工天数" => Metric::AbsentDays,
        SHOULD_ATTEND => Metric::ShouldAttendDays,
        "加班时长" => Metric::OvertimeHours,
        "工作日加班" => Metric::WorkdayOvertimeHours,
        "休息日加班" => Metric::RestdayOvertimeHours,
        "节假日加班" => Metric::HolidayOvertimeHours,
        "出差时长" => Metric::TripDays,
        "外出时长" => Metric::OutingHours,
        "补卡次数" => Metric::Corrections,
        "外勤次数" => Metric::FieldWork,
        "出勤班次" => Metric::Shifts,
        "标准工作时长" => Metric::StandardHours,
        "考勤组" => Metric::Group,
        "班次" => Metric::Shift,
        "工号" => Metric::JobNumber,
        _ => Metric::Zero,
    }
}

pub(super) fn leave_metric(name: &str) -> Metric {
    match name {
        "年假" => Metric::AnnualLeaveDays,
        "事假" => Metric::PersonalLeaveHours,
        "病假" => Metric::SickLeaveDays,
        "调休" => Metric::TimeOffHours,
        _ => Metric::Zero,
    }
}

pub(super) fn column_alias(name: &str) -> &'static str {
    match column_metric(name) {
        Metric::AttendDays => "attendance_days",
        Metric::RestDays => "rest_days",
        Metric::WorkMinutes => "attendance_work_time",
        Metric::LateCount => "late_times",
        Metric::LateMinutes => "late_minute",
        Metric::SeriousLateCount => "serious_late_times",
        Metric::SeriousLateMinutes => "serious_late_minute",
        Metric::AbsentLateDays => "absenteeism_late_times",
        Metric::EarlyCount => "leave_early_times",
        Metric::EarlyMinutes => "leave_early_minute",
        Metric::MissingCount => "lack_times",
        Metric::MissingOnCount => "on_work_lack_card_times",
        Metric::MissingOffCount => "off_work_lack_card_times",
        Metric::AbsentDays => "absenteeism_days",
        Metric::ShouldAttendDays => "should_attendance_days",
        Metric::OvertimeHours => "overtime_duration",
        Metric::WorkdayOvertimeHours => "workday_overtime",
        Metric::RestdayOvertimeHours => "restday_overtime",
        Metric::HolidayOvertimeHours => "holiday_overtime",
        Metric::TripDays => "business_trip_time",
        Metric::OutingHours => "go_out_time",
        Metric::Corrections => "making_up_lack_times",
        Metric::FieldWork => "outside_times",
        Metric::Shifts => "attend_classes",
        Metric::StandardHours => "standard_work_time",
        Metric::Group => "attendance_group",
        Metric::Shift => "attendance_class",
        Metric::JobNumber => "job_number",
        _ => "custom_column",
    }
}

/// Whole and tenth units as DingTalk renders them: `"1.0"`, `"482.0"`, `"0.5"`.
pub(super) fn tenths(t: i64) -> String {
    format!("{}.{}", t / 10, (t % 10).abs())
}

pub(super) fn units(n: i64) -> String {
    tenths(n * 10)
}

/// Hours of `secs`, to the tenth (durations here are multiples of 30 minutes).
pub(super) fn hours(secs: i64) -> String {
    tenths(secs / 360)
}

/// The value of one column on one day.
pub(super) fn day_value(
    metric: Metric,
    d: &MonthFigures,
    date: NaiveDate,
    today: NaiveDate,
    org: &Org,
    user: &User,
) -> String {
    let workday = d.work_days > 0;
    let full_day_off = d.annual_leave.count + d.sick_leave.count + d.absent.count > 0;
    // Exception and leave columns are left empty on days off.
    let exception = |v: i64| if workday { units(v) } else { String::new() };
    match metric {
        Metric::AttendDays => units(i64::from(workday && !full_day_off)),
        Metric::RestDays => units(i64::from(d.record_type != 7 && !workday)),
        Metric::WorkMinutes => units(d.regular_work_sec / 60),
        Metric::LateCount => exception(d.late.count),
        Metric::LateMinutes => exception(d.late.seconds / 60),
        Metric::SeriousLateCount => exception(i64::from(d.late.seconds >= 25 * 60)),
        Metric::SeriousLateMinutes => exception(if d.late.seconds >= 25 * 60 {
            d.late.seconds / 60
        } else {
            0
        }),
        Metric::AbsentLateDays => exception(0),
        Metric::EarlyCount => exception(d.early_leave.count),
        Metric::EarlyMinutes => exception(d.early_leave.seconds / 60),
        Metric::MissingCount | Metric::MissingOnCount => exception(d.missing_punch.count),
        Metric::MissingOffCount => exception(0),
        Metric::AbsentDays => exception(d.absent.count),
        Metric::ShouldAttendDays => {
            if (today - date).num_days() > SHOULD_ATTEND_FRESH_DAYS {
                units(0)
            } else {
                units(d.work_days)
            }
        }
        Metric::OvertimeHours => {
            hours(d.workday_overtime_sec + d.restday_overtime_sec + d.holiday_overtime_sec)
        }
        Metric::WorkdayOvertimeHours => hours(d.workday_overtime_sec),
        Metric::RestdayOvertimeHours => hours(d.restday_overtime_sec),
        Metric::HolidayOvertimeHours => hours(d.holiday_overtime_sec),
        Metric::TripDays => units(d.business_trip.count),
        Metric::OutingHours => hours(d.outing.seconds),
        Metric::Corrections => exception(d.punch_corrections.count),
        Metric::FieldWork => units(d.field_work.count),
        Metric::Shifts => units(i64::from(workday && !full_day_off)),
        Metric::Shift => {
            if workday {
                "A 09:00-18:00".to_owned()
            } else {
                "休息".to_owned()
            }
        }
        Metric::AnnualLeaveDays => exception(d.annual_leave.count),
        Metric::PersonalLeaveHours => exception(d.personal_leave.seconds / 3600),
        Metric::SickLeaveDays => exception(d.sick_leave.count),
        Metric::TimeOffHours => {
            // Rare half days off in lieu of overtime, independent of the other figures.
            let h = mix(
                org.seed,
                &[
                    b"time-off",
                    user.userid.as_bytes(),
                    date.to_string().as_bytes(),
                ],
            );
            exception(if workday && h % 40 == 0 { 4 } else { 0 })
        }
        Metric::StandardHours | Metric::Group | Metric::JobNumber | Metric::Zero => units(0),
    }
}
