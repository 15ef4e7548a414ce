//! What a WeCom approval touches: `oa/getapprovaldetail` read into the
//! applicant and the days of their attendance the approval changes
//! (docs/vendors/wecom.md "Approval details", docs/vendors/events.md "WeCom
//! approval callbacks"). A callback names only the approval (`SpNo`); this is
//! the look-up made after the event is acknowledged.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use serde_json::Value;

use super::client::WecomClient;
use super::{Wecom, APPROVAL_DETAIL};
use crate::source::SourceError;

/// The errcodes WeCom answers when the app may not call the approval API:
/// 301055 "no approval auth" (the app is not listed under the approval app's
/// 可调用接口的应用) and 48002 "api forbidden".
pub const NOT_ALLOWED_CODES: &[i64] = &[301055, 48002];

/// The longest approval read, in days: a date range past it is not believed
/// (a re-pull of every month for years would follow), its listed days are.
const MAX_SPAN_DAYS: i64 = 366;

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The text says what to switch on: the caller shows it as it is.
    #[error(
        "WeCom {APPROVAL_DETAIL}: errcode {code}: this app may not read approvals. In the WeCom admin \
         console open 应用管理 → 审批 → API, add the self-built app whose secret this job uses to \
         可调用接口的应用, and set the app's callback to receive 审批状态变化 (approval status changes)"
    )]
    NotAllowed { code: i64 },
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// `sp_status` values (docs/vendors/wecom.md "Approval details").
mod status {
    pub const APPROVED: i64 = 2;
    pub const REVOKED_AFTER_APPROVAL: i64 = 6;
    pub const DELETED: i64 = 7;
}

/// Whether an approval in this status changes what WeCom reports for its
/// days. Approved: the leave (or correction) now counts. Revoked after
/// approval: it counted and no longer does. Deleted: the detail does not say
/// whether it was approved first, and a re-pull that finds nothing changed
/// costs one call, while a missed change stays wrong until the next full pull.
/// Pending (1), rejected (3) and withdrawn before a decision (4) never counted.
pub fn status_touches(sp_status: i64) -> bool {
    matches!(
        sp_status,
        status::APPROVED | status::REVOKED_AFTER_APPROVAL | status::DELETED
    )
}

/// A Unix time in seconds, written as a number or as text.
fn seconds(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn local_date(secs: i64, tz: Tz) -> Option<NaiveDate> {
    Some(
        DateTime::from_timestamp(secs, 0)?
            .with_timezone(&tz)
            .date_naive(),
    )
}

/// The days of a `Vacation` or `Attendance` control's `attendance` object:
/// each day from `new_begin` to `new_end` (both in the job's timezone, both
/// included) and each `slice_info.day_items[].daytime`.
fn attendance_days(attendance: &Value, tz: Tz, days: &mut BTreeSet<NaiveDate>) {
    let range = &attendance["date_range"];
    let begin = seconds(&range["new_begin"]).and_then(|s| local_date(s, tz));
    let end = seconds(&range["new_end"]).and_then(|s| local_date(s, tz));
    match (begin, end) {
        (Some(begin), Some(end)) if (end - begin).num_days() <= MAX_SPAN_DAYS => {
            days.extend(begin.iter_days().take_while(|d| *d <= end));
        }
        (begin, end) => days.extend(begin.into_iter().chain(end)),
    }
    let items = attendance["slice_info"]["day_items"].as_array();
    for item in items.into_iter().flatten() {
        if let Some(day) = seconds(&item["daytime"]).and_then(|s| local_date(s, tz)) {
            days.insert(day);
        }
    }
}

/// The days one control of `apply_data.contents` names: a leave
/// (`Vacation`), a trip, outing or overtime (`Attendance`), a 补卡
/// (`PunchCorrection`: the punch's time, or the day it corrects).
fn control_days(content: &Value, tz: Tz, days: &mut BTreeSet<NaiveDate>) {
    let value = &content["value"];
    match content["control"].as_str().unwrap_or("") {
        "Vacation" => attendance_days(&value["vacation"]["attendance"], tz, days),
        "Attendance" => attendance_days(&value["attendance"], tz, days),
        "PunchCorrection" => {
            let correction = &value["punch_correction"];
            for key in ["time", "daymonthyear"] {
                if let Some(day) = seconds(&correction[key]).and_then(|s| local_date(s, tz)) {
                    days.insert(day);
                }
            }
        }
        _ => {}
    }
}

/// A `getapprovaldetail` answer read: the applicant and the days in `tz`
/// whose attendance the approval changes, or `None` when it changes none
/// (a status that never counted, no attendance control, no applicant).
pub fn read_detail(answer: &Value, tz: Tz) -> Option<(String, Vec<NaiveDate>)> {
    let info = &answer["info"];
    let sp_status = seconds(&info["sp_status"])?;
    if !status_touches(sp_status) {
        return None;
    }
    let applicant = info["applyer"]["userid"].as_str()?.trim();
    if applicant.is_empty() {
        return None;
    }
    let mut days = BTreeSet::new();
    let contents = info["apply_data"]["contents"].as_array();
    for content in contents.into_iter().flatten() {
        control_days(content, tz, &mut days);
    }
    if days.is_empty() {
        return None;
    }
    Some((applicant.to_string(), days.into_iter().collect()))
}

fn not_allowed(e: SourceError) -> ApprovalError {
    match e {
        SourceError::Api { code, .. } if NOT_ALLOWED_CODES.contains(&code) => {
            ApprovalError::NotAllowed { code }
        }
        other => ApprovalError::Source(other),
    }
}

/// Looks an approval up: its applicant and the days it changes, in `tz`.
pub async fn approval_days(
    client: &WecomClient,
    sp_no: &str,
    tz: Tz,
) -> Result<Option<(String, Vec<NaiveDate>)>, ApprovalError> {
    let answer = client.approval_detail(sp_no).await.map_err(not_allowed)?;
    Ok(read_detail(&answer, tz))
}

/// Whether the app may call the approval API, for `check --remote`: the
/// look-up of an approval that cannot exist. WeCom checks the permission
/// before the number, so any other refusal (the number unknown) means the
/// permission is there.
pub async fn check_approval_access(client: &WecomClient) -> Result<(), ApprovalError> {
    match client.approval_detail("0").await.map_err(not_allowed) {
        Ok(_) | Err(ApprovalError::Source(SourceError::Api { .. })) => Ok(()),
        Err(e) => Err(e),
    }
}

impl Wecom {
    /// [`approval_days`] with this job's client.
    pub async fn approval_days(
        &self,
        sp_no: &str,
        tz: Tz,
    ) -> Result<Option<(String, Vec<NaiveDate>)>, ApprovalError> {
        approval_days(&self.client, sp_no, tz).await
    }

    /// [`check_approval_access`] with this job's client.
    pub async fn check_approval_access(&self) -> Result<(), ApprovalError> {
        check_approval_access(&self.client).await
    }
}

#[cfg(test)]
mod tests;
