//! The attendance report endpoints: `topapi/attendance/getattcolumns`,
//! `getcolumnval` and `getleavetimebynames`.

use std::collections::HashSet;

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{json, Value};

use super::serve::{text_field, Fields};
use super::values::{column_alias, column_metric, leave_metric, Metric};
use super::{Answer, ColumnValues, Shared, SimState, DATE_FORMAT, MAX_IDS, MAX_SPAN_SECS};
use crate::org::User;

pub(super) fn getattcolumns(shared: &Shared, state: &mut SimState) -> Answer {
    let mut columns: Vec<Value> = shared
        .config
        .columns
        .iter()
        .map(|(id, name)| {
            let text = matches!(
                column_metric(name),
                Metric::Group | Metric::Shift | Metric::JobNumber
            );
            json!({"id": id, "name": name, "alias": column_alias(name), "type": 0,
                   "sub_type": i32::from(text), "status": 0, "expression_id": id - 5000})
        })
        .collect();
    // Leave columns come without an id (docs/vendors/dingtalk.md "The calls").
    columns.extend(shared.config.leave_names.iter().map(
        |name| json!({"name": name, "alias": "leave_", "type": 2, "sub_type": 0, "status": 0}),
    ));
    state.ok(json!({"columns": columns}))
}

/// Validated report request: the user and the days asked for.
pub(super) struct ReportRequest<'a> {
    user: &'a User,
    first: NaiveDate,
    last: NaiveDate,
}

pub(super) fn report_request<'a>(
    shared: &'a Shared,
    state: &mut SimState,
    fields: &Fields,
) -> Result<ReportRequest<'a>, Answer> {
    let Some(userid) = text_field(fields, "userid") else {
        return Err(state.error(400002, "缺少参数userid"));
    };
    let (Some(from), Some(to)) = (
        text_field(fields, "from_date"),
        text_field(fields, "to_date"),
    ) else {
        return Err(state.error(400002, "缺少参数from_date或to_date"));
    };
    let (Ok(from), Ok(to)) = (
        NaiveDateTime::parse_from_str(from, DATE_FORMAT),
        NaiveDateTime::parse_from_str(to, DATE_FORMAT),
    ) else {
        return Err(state.error(41100, "时间格式错误，应为yyyy-MM-dd HH:mm:ss"));
    };
    let span = (to - from).num_seconds();
    if !(0..=MAX_SPAN_SECS).contains(&span) {
        return Err(state.error(850012, "查询时间跨度不能超过31天"));
    }
    let Some(user) = shared.user(userid) else {
        return Err(state.error(33012, "无效的USERID"));
    };
    Ok(ReportRequest {
        user,
        first: from.date(),
        last: to.date(),
    })
}

/// A comma-separated list field (a JSON array is accepted too).
pub(super) fn list_field(fields: &Fields, key: &str) -> Vec<String> {
    match fields.get(key) {
        Some(Value::String(s)) => s
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.trim().to_owned(),
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn dated(shared: &Shared, values: ColumnValues, last: NaiveDate) -> Vec<Value> {
    let ColumnValues::Daily(mut days) = values else {
        return Vec::new();
    };
    if shared.config.messy_dates {
        if let Some(next) = last.succ_opt() {
            days.push((format!("{next} 00:00:00"), "1.0".to_owned()));
        }
        if let Some(first) = days.first().cloned() {
            days.push(first);
        }
    }
    days.into_iter()
        .map(|(date, value)| json!({"date": date, "value": value}))
        .collect()
}

pub(super) fn getcolumnval(shared: &Shared, state: &mut SimState, fields: &Fields) -> Answer {
    let ids = list_field(fields, "column_id_list");
    if ids.is_empty() || ids.len() > MAX_IDS {
        return state.error(400002, "column_id_list不能为空且不能超过20个");
    }
    let mut columns = Vec::new();
    for id in &ids {
        match id
            .parse::<i64>()
            .ok()
            .and_then(|id| shared.config.columns.iter().find(|(c, _)| *c == id))
        {
            Some(column) => {
                if !columns.contains(&column) {
                    columns.push(column);
                }
            }
            None => return state.error(400002, "无效的参数column_id_list"),
        }
    }
    let request = match report_request(shared, state, fields) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let vals: Vec<Value> = columns
        .iter()
        .map(|(id, name)| {
            let values = shared.values(request.user, column_metric(name), request.first, request.last);
            match values {
                ColumnValues::Fixed(v) => json!({"column_vo": {"id": id}, "fixed_value": v}),
                daily => json!({"column_vo": {"id": id}, "column_vals": dated(shared, daily, request.last)}),
            }
        })
        .collect();
    state.ok(json!({"column_vals": vals}))
}

pub(super) fn getleavetime(shared: &Shared, state: &mut SimState, fields: &Fields) -> Answer {
    let names = list_field(fields, "leave_names");
    if names.is_empty() || names.len() > MAX_IDS {
        return state.error(400002, "leave_names不能为空且不能超过20个");
    }
    let request = match report_request(shared, state, fields) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let mut seen = HashSet::new();
    let columns: Vec<Value> = names
        .iter()
        .filter(|n| seen.insert(n.as_str()))
        // Unknown leave names are left out of the answer.
        .filter(|n| shared.config.leave_names.contains(n))
        .map(|name| {
            let values = shared.values(request.user, leave_metric(name), request.first, request.last);
            json!({
                "columnvo": {"name": name, "alias": "leave_", "type": 2, "sub_type": 0, "status": 0},
                "columnvals": dated(shared, values, request.last),
            })
        })
        .collect();
    state.ok(json!({"columns": columns}))
}
