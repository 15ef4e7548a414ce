//! Writes: decoding submitted records by widget type, and `data/batch_create`
//! with its transaction ids and faults.

use std::time::Instant;

use super::{fail, Failure, JdyState, Reply, Shared, TxEntry, TxMode, MAX_BATCH};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};

pub(super) const READ_ONLY_TYPES: &[&str] = &[
    "sn",
    "linkdata",
    "signature",
    "aggregation",
    "aggregationtext",
    "separator",
    "linkquery",
];

pub(super) fn decode_record(
    shared: &Shared,
    state: &mut JdyState,
    record: Option<&Value>,
    context: &str,
) -> Result<Map<String, Value>, Failure> {
    let Some(Value::Object(record)) = record else {
        return Err(fail(17017, format!("参数错误：{context} 必须是对象")));
    };
    let mut out = Map::new();
    for (key, wrapped) in record {
        let widget = shared.widget(key).ok_or_else(|| {
            fail(
                17032,
                format!("{context}: 字段 \"{key}\" 不存在或字段类型不支持"),
            )
        })?;
        if READ_ONLY_TYPES.contains(&widget.ty.as_str()) {
            return Err(fail(
                17032,
                format!("{context}: 字段 \"{key}\" 的类型 {} 不支持写入", widget.ty),
            ));
        }
        let value = match wrapped {
            Value::Object(m) if m.contains_key("value") => {
                m.get("value").cloned().unwrap_or(Value::Null)
            }
            _ => {
                return Err(fail(
                    17017,
                    format!(
                    "invalid parameters: {context}: 字段 \"{key}\" 的值必须写成 {{\"value\": …}}"
                ),
                ))
            }
        };
        let value = convert(state, &widget.ty, value).map_err(|expected| {
            fail(
                17017,
                format!(
                    "invalid parameters: {context}: 字段 \"{key}\" ({}) 的值无效，需要{expected}",
                    widget.ty
                ),
            )
        })?;
        out.insert(widget.name.clone(), value);
    }
    Ok(out)
}

/// Write value → stored (read) value, by field type. `Err` names what was expected.
pub(super) fn convert(state: &mut JdyState, ty: &str, value: Value) -> Result<Value, &'static str> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let strings = |v: &Value| {
        v.as_array()
            .is_some_and(|items| items.iter().all(Value::is_string))
    };
    match ty {
        "text" | "textarea" | "radiogroup" | "combo" => {
            if value.is_string() {
                Ok(value)
            } else {
                Err("字符串")
            }
        }
        "number" => {
            if value.is_number() {
                Ok(value)
            } else {
                Err("数字")
            }
        }
        "datetime" => parse_datetime(&value)
            .map(|dt| json!(format_datetime(dt)))
            .ok_or("日期时间（UTC ISO 8601，如 2026-09-30T16:00:00.000Z）"),
        "checkboxgroup" | "combocheck" => {
            if strings(&value) {
                Ok(value)
            } else {
                Err("字符串数组")
            }
        }
        "user" => value.as_str().map(member).ok_or("成员编号（字符串）"),
        "usergroup" => {
            if strings(&value) {
                Ok(Value::Array(
                    value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(member)
                        .collect(),
                ))
            } else {
                Err("成员编号数组")
            }
        }
        "dept" => value.as_i64().map(department).ok_or("部门编号（数字）"),
        "deptgroup" => match value.as_array() {
            Some(items) if items.iter().all(Value::is_i64) => Ok(Value::Array(
                items
                    .iter()
                    .filter_map(Value::as_i64)
                    .map(department)
                    .collect(),
            )),
            _ => Err("部门编号数组"),
        },
        "subform" => {
            let Value::Array(rows) = value else {
                return Err("子表单行数组");
            };
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let Value::Object(row) = row else {
                    return Err("子表单行对象");
                };
                let mut bare = Map::new();
                let mut row_id = None;
                for (k, v) in row {
                    if k == "_id" {
                        row_id = v.as_str().map(str::to_owned);
                        continue;
                    }
                    match v {
                        Value::Object(m) if m.contains_key("value") => {
                            bare.insert(k, m.get("value").cloned().unwrap_or(Value::Null));
                        }
                        _ => return Err("子表单字段写成 {\"value\": …}"),
                    }
                }
                let id = match row_id.filter(|id| id.len() == 24) {
                    Some(id) => id,
                    None => state.new_id(),
                };
                let mut with_id = Map::new();
                with_id.insert("_id".into(), json!(id));
                with_id.append(&mut bare);
                out.push(Value::Object(with_id));
            }
            Ok(Value::Array(out))
        }
        _ => Ok(value),
    }
}

pub(super) fn member(username: &str) -> Value {
    json!({"username": username, "name": username, "status": 1, "type": 0})
}

pub(super) fn department(dept_no: i64) -> Value {
    json!({"dept_no": dept_no, "name": format!("部门{dept_no}"), "type": 0, "status": 1})
}

pub(super) fn format_datetime(dt: DateTime<Utc>) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Accepted write formats: UTC ISO / RFC 3339, millisecond timestamps,
/// `yyyy-MM-dd HH:mm:ss` and `yyyy-MM-dd` (both read as Asia/Shanghai time).
/// Rejected: second timestamps, 0, empty strings, slashes, anything else.
pub(super) fn parse_datetime(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(n) => {
            let ms = n.as_i64()?;
            if ms < 100_000_000_000 {
                return None; // seconds (or 0)
            }
            DateTime::from_timestamp_millis(ms)
        }
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() || s.contains('/') {
                return None;
            }
            if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
                return Some(dt.with_timezone(&Utc));
            }
            let local = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .ok()
                .or_else(|| {
                    NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                })?;
            chrono_tz::Asia::Shanghai
                .from_local_datetime(&local)
                .single()
                .map(|dt| dt.with_timezone(&Utc))
        }
        _ => None,
    }
}

pub(super) fn batch_create(
    shared: &Shared,
    state: &mut JdyState,
    request: &Map<String, Value>,
) -> Result<Reply, Failure> {
    let list = request
        .get("data_list")
        .and_then(Value::as_array)
        .ok_or_else(|| fail(17017, "参数错误：缺少 data_list"))?;
    if list.is_empty() {
        return Err(fail(17017, "参数错误：data_list 不能为空"));
    }
    if list.len() > MAX_BATCH {
        return Err(fail(17024, format!("批量新建数据条数不能超过 {MAX_BATCH}")));
    }
    let tx = match request.get("transaction_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && !s.contains("${") && !s.contains("$(") => {
            Some(s.clone())
        }
        Some(_) => return Err(fail(17025, "transaction_id 无效")),
    };
    // All or nothing: validate every record before storing any.
    let mut records = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        records.push(decode_record(
            shared,
            state,
            Some(item),
            &format!("data_list[{i}]"),
        )?);
    }

    let ttl = state.tx_ttl;
    state.txs.retain(|_, entry| entry.at.elapsed() < ttl);
    let earlier = match (&tx, state.tx_mode) {
        (Some(tx), TxMode::Honour) => state.txs.get(tx).map(|e| e.ids.clone()),
        _ => None,
    };
    let ids = match earlier {
        Some(ids) if ids.len() == records.len() => {
            for (id, fields) in ids.iter().zip(records) {
                state.update(id, fields);
            }
            ids
        }
        Some(_) => return Err(fail(17026, "transaction_id 已存在")),
        None => {
            let ids: Vec<String> = records.into_iter().map(|r| state.insert(r)).collect();
            if let (Some(tx), TxMode::Honour) = (tx, state.tx_mode) {
                state.txs.insert(
                    tx,
                    TxEntry {
                        at: Instant::now(),
                        ids: ids.clone(),
                    },
                );
            }
            ids
        }
    };
    if state.gate.chance(state.store_then_drop_ratio) {
        return Ok(Reply::Drop);
    }
    if state.gate.chance(state.store_then_502_ratio) {
        return Ok(Reply::BadGateway);
    }
    Ok(Reply::Json(
        json!({"status": "success", "success_count": ids.len(), "success_ids": ids}),
    ))
}
