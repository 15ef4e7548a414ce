//! Approvals looked up after their event (docs/vendors/events.md "DingTalk
//! HTTP push and the failed list"): `attendance_approve_status_change` and
//! `bpms_instance_change` name a process instance, not its employee or days.
//! `GET /v1.0/workflow/processInstances?processInstanceId=…` on the new-style
//! API (its host is the job's gateway, `https://api.dingtalk.com`; the
//! `gettoken` token goes in the `x-acs-dingtalk-access-token` header) answers
//! the originator and the form, whose leave or date-range field holds the days.

use chrono::{Duration, NaiveDate};
use reqwest::StatusCode;
use serde_json::Value;

use super::wire::{errcode, read_answer, text, Read};
use super::DingtalkClient;
use crate::events::{Day, Touched};
use crate::http::call::{self, no_hook, Call, Decoded, Resend};
use crate::http::{codes, endpoint_url, Url, BODY_CAP};
use crate::secret::Secret;
use crate::source::SourceError;

pub const PROCESS_INSTANCES: &str = "v1.0/workflow/processInstances";
pub const TOKEN_HEADER: &str = "x-acs-dingtalk-access-token";
/// Days of one approval marked at most: a longer range is cut at its start's
/// month and the next (the scheduled pull covers the rest).
pub const MAX_DAYS: i64 = 62;

/// The oapi code of an invalid token: the new-style API says
/// `InvalidAuthentication` (HTTP 401) instead, and a fresh token is fetched
/// the same way.
const INVALID_TOKEN: i64 = 40014;

fn read(status: StatusCode, bytes: &[u8]) -> Decoded<Value> {
    if status == StatusCode::UNAUTHORIZED
        || (!status.is_success()
            && String::from_utf8_lossy(bytes).contains("InvalidAuthentication"))
    {
        return Decoded::Code {
            code: INVALID_TOKEN,
            message: format!("HTTP {status}: the access token was refused"),
        };
    }
    match read_answer(status, bytes) {
        Read::Body(body) => match errcode(&body) {
            0 => Decoded::Done(body),
            code => Decoded::Code {
                code,
                message: text(&body["errmsg"]),
            },
        },
        Read::Banned(what) => Decoded::Blocked(what),
        Read::Transient(reason) => Decoded::Transient(reason),
        Read::Protocol(message) => Decoded::Protocol(message),
    }
}

/// The employee and days of process instance `id`, looked up at `api_base`;
/// `None` when it touches none (see [`touched`]).
pub async fn lookup(
    client: &DingtalkClient,
    api_base: &Url,
    id: &str,
) -> Result<Option<Vec<Touched>>, SourceError> {
    let at = Call {
        endpoint: PROCESS_INSTANCES,
        cap: BODY_CAP,
        table: codes::dingtalk,
        resend: Resend::Safe,
    };
    let url = endpoint_url(api_base, &[PROCESS_INSTANCES]);
    let request = |token: Option<&Secret>| {
        client
            .http
            .get(url.clone())
            .query(&[("processInstanceId", id)])
            .header(TOKEN_HEADER, token.map_or("", Secret::expose))
    };
    let reader = |s: StatusCode, b: &mut Vec<u8>| read(s, b);
    let r = call::call_with_token(client, &at, request, reader, no_hook).await;
    let body = r.map_err(|e| client.error(PROCESS_INSTANCES, e))?;
    Ok(touched(&body["result"]))
}

/// The originator's days in an instance's form: every field whose value is a
/// list starting with two dates (a leave `DDHolidayField`, a trip's
/// `DDDateRangeField`), each day of the range once. `None` for an approval
/// still under way or refused (attendance is unchanged until it is approved;
/// its end raises another event), and for a form without dates. One ended
/// otherwise (approved, withdrawn, terminated: it may undo an approved leave)
/// touches its days.
pub fn touched(instance: &Value) -> Option<Vec<Touched>> {
    let employee = text(&instance["originatorUserId"]);
    let status = text(&instance["status"]).to_ascii_uppercase();
    let refused = text(&instance["result"]).eq_ignore_ascii_case("refuse");
    if employee.is_empty() || status == "RUNNING" || status == "NEW" || refused {
        return None;
    }
    let mut days: Vec<NaiveDate> = Vec::new();
    let fields = instance["formComponentValues"].as_array();
    for field in fields.into_iter().flatten() {
        let Some((first, last)) = range(&field["value"]) else {
            continue;
        };
        let last = last.min(first + Duration::days(MAX_DAYS - 1));
        let mut day = first;
        while day <= last {
            if !days.contains(&day) {
                days.push(day);
            }
            day += Duration::days(1);
        }
    }
    days.sort_unstable();
    let touched: Vec<Touched> = days
        .into_iter()
        .map(|d| Touched {
            employee: employee.clone(),
            day: Day::Date(d),
        })
        .collect();
    (!touched.is_empty()).then_some(touched)
}

/// `["2026-10-05 上午", "2026-10-06 下午", 1.5, "halfDay", …]` (JSON text or a
/// list) → its first and last date, in order.
fn range(value: &Value) -> Option<(NaiveDate, NaiveDate)> {
    let parsed;
    let list = match value {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s).ok()?;
            parsed.as_array()?
        }
        Value::Array(list) => list,
        _ => return None,
    };
    let date = |v: Option<&Value>| {
        let s = v?.as_str()?.trim();
        NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()
    };
    let (a, b) = (date(list.first())?, date(list.get(1))?);
    Some((a.min(b), a.max(b)))
}

#[cfg(test)]
mod tests;
