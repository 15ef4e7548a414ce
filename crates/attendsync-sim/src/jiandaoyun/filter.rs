//! `data/list`: filters, their conditions, and paging.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::ops::Bound;

use serde_json::{json, Map, Value};

use super::store::render;
use super::write::parse_datetime;
use super::{fail, Failure, JdyState, Shared, Stored, MAX_IN_VALUES};

pub(super) enum Field {
    Widget { name: String, datetime: bool },
    Id,
    Time(&'static str),
}

pub(super) struct Cond {
    field: Field,
    method: String,
    values: Vec<Value>,
    /// For `in` on a text field when every wanted value is text: the values as a
    /// set, so that a text field value is matched by one lookup instead of a
    /// comparison with each value (the same answer; keeps key lookups cheap in
    /// forms of hundreds of thousands of records).
    texts: Option<HashSet<String>>,
}

pub(super) fn filter_error(msg: impl Into<String>) -> Failure {
    fail(4815, format!("过滤条件无效：{}", msg.into()))
}

pub(super) fn parse_filter(
    shared: &Shared,
    filter: Option<&Value>,
) -> Result<(bool, Vec<Cond>), Failure> {
    let Some(filter) = filter.filter(|f| !f.is_null()) else {
        return Ok((true, Vec::new()));
    };
    let Value::Object(filter) = filter else {
        return Err(filter_error("filter 必须是对象"));
    };
    let and = match filter.get("rel").and_then(Value::as_str).unwrap_or("and") {
        "and" => true,
        "or" => false,
        other => return Err(filter_error(format!("rel \"{other}\" 无效"))),
    };
    let conds = match filter.get("cond") {
        None | Some(Value::Null) => return Ok((and, Vec::new())),
        Some(Value::Array(c)) => c,
        Some(_) => return Err(filter_error("cond 必须是数组")),
    };
    let mut out = Vec::with_capacity(conds.len());
    for c in conds {
        let name = c
            .get("field")
            .and_then(Value::as_str)
            .ok_or_else(|| filter_error("缺少 field"))?;
        let field = match name {
            "_id" => Field::Id,
            "createTime" => Field::Time("createTime"),
            "updateTime" => Field::Time("updateTime"),
            _ => {
                let w = shared
                    .widget(name)
                    .ok_or_else(|| filter_error(format!("字段 \"{name}\" 不存在")))?;
                Field::Widget {
                    name: w.name.clone(),
                    datetime: w.ty == "datetime",
                }
            }
        };
        let method = c
            .get("method")
            .and_then(Value::as_str)
            .ok_or_else(|| filter_error("缺少 method"))?
            .to_owned();
        let values = match c.get("value") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(v)) => v.clone(),
            Some(_) => return Err(filter_error("value 必须是数组")),
        };
        let needs_value = matches!(method.as_str(), "eq" | "ne" | "gt" | "lt" | "like");
        match method.as_str() {
            "eq" | "ne" | "in" | "nin" | "empty" | "not_empty" | "range" | "gt" | "lt" | "like"
            | "all" => {}
            other => return Err(filter_error(format!("method \"{other}\" 不支持"))),
        }
        if needs_value && values.is_empty() {
            return Err(filter_error(format!(
                "字段 \"{name}\" 的 {method} 缺少 value"
            )));
        }
        if matches!(method.as_str(), "in" | "nin") && values.len() > MAX_IN_VALUES {
            return Err(filter_error(format!(
                "{method} 最多 {MAX_IN_VALUES} 个值，收到 {}",
                values.len()
            )));
        }
        let plain_text_field = matches!(
            field,
            Field::Widget {
                datetime: false,
                ..
            }
        );
        let texts = (method == "in" && plain_text_field)
            .then(|| {
                values
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<HashSet<String>>>()
            })
            .flatten();
        out.push(Cond {
            field,
            method,
            values,
            texts,
        });
    }
    Ok((and, out))
}

/// Member / department objects compare by their number.
pub(super) fn scalar(v: &Value) -> &Value {
    match v {
        Value::Object(m) => m.get("username").or_else(|| m.get("dept_no")).unwrap_or(v),
        _ => v,
    }
}

pub(super) fn compare(a: &Value, b: &Value, datetime: bool) -> Option<Ordering> {
    let (a, b) = (scalar(a), scalar(b));
    if datetime {
        if let (Some(x), Some(y)) = (parse_datetime(a), parse_datetime(b)) {
            return Some(x.cmp(&y));
        }
    }
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Number(_), _) | (_, Value::Number(_)) => number(a)?.partial_cmp(&number(b)?),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

pub(super) fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

impl Cond {
    pub(super) fn matches(&self, id: &str, stored: &Stored) -> bool {
        if let (Some(texts), Field::Widget { name, .. }) = (&self.texts, &self.field) {
            // Text against text compares equal only when identical.
            if let Some(Value::String(s)) = stored.fields.get(name) {
                return texts.contains(s);
            }
        }
        let (value, datetime) = match &self.field {
            Field::Id => (Some(json!(id)), false),
            Field::Time(t) => (
                Some(json!(if *t == "createTime" {
                    &stored.create_time
                } else {
                    &stored.update_time
                })),
                true,
            ),
            Field::Widget { name, datetime } => (stored.fields.get(name).cloned(), *datetime),
        };
        let eq = |x: &Value, y: &Value| compare(x, y, datetime) == Some(Ordering::Equal);
        // Multi-value fields match an element.
        let any_eq = |field: &Value, wanted: &Value| match field {
            Value::Array(items) => items.iter().any(|i| eq(i, wanted)),
            _ => eq(field, wanted),
        };
        let first = self.values.first().unwrap_or(&Value::Null);
        match self.method.as_str() {
            "empty" => is_empty(value.as_ref()),
            "not_empty" => !is_empty(value.as_ref()),
            _ => {
                let Some(value) = value.filter(|v| !v.is_null()) else {
                    return matches!(self.method.as_str(), "ne" | "nin");
                };
                match self.method.as_str() {
                    "eq" => any_eq(&value, first),
                    "ne" => !any_eq(&value, first),
                    "in" => self.values.iter().any(|w| any_eq(&value, w)),
                    "nin" => !self.values.iter().any(|w| any_eq(&value, w)),
                    "all" => self.values.iter().all(|w| any_eq(&value, w)),
                    "gt" => compare(&value, first, datetime) == Some(Ordering::Greater),
                    "lt" => compare(&value, first, datetime) == Some(Ordering::Less),
                    "like" => match (scalar(&value), first) {
                        (Value::String(s), Value::String(needle)) => s.contains(needle.as_str()),
                        _ => false,
                    },
                    "range" => {
                        let bound_ok = |bound: Option<&Value>, ok: &[Ordering]| match bound {
                            None | Some(Value::Null) => true,
                            Some(b) => {
                                compare(&value, b, datetime).is_some_and(|o| ok.contains(&o))
                            }
                        };
                        bound_ok(self.values.first(), &[Ordering::Greater, Ordering::Equal])
                            && bound_ok(self.values.get(1), &[Ordering::Less, Ordering::Equal])
                    }
                    _ => false,
                }
            }
        }
    }
}

pub(super) fn data_list(
    shared: &Shared,
    state: &JdyState,
    request: &Map<String, Value>,
) -> Result<Value, Failure> {
    let limit = match request.get("limit") {
        None | Some(Value::Null) => 10,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=100) => n as usize,
            _ => return Err(fail(1, "参数错误：limit 取值范围为 1~100")),
        },
    };
    let after = match request.get("data_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(fail(1, "参数错误：data_id 必须是字符串")),
    };
    let fields: Option<Vec<String>> = match request.get("fields") {
        None | Some(Value::Null) => None,
        Some(Value::Array(names)) => Some(
            names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        Some(_) => return Err(fail(1, "参数错误：fields 必须是数组")),
    };
    let (and, conds) = parse_filter(shared, request.get("filter"))?;
    // With "and", an `in` on a text field limits the records worth looking at;
    // every condition is still checked on each of them.
    let candidates = conds
        .iter()
        .filter(|_| and)
        .find_map(|c| match (&c.texts, &c.field) {
            (Some(texts), Field::Widget { name, .. }) => Some(state.candidates(name, texts)),
            _ => None,
        });
    let range: Box<dyn Iterator<Item = (&String, &Stored)>> = match (&candidates, &after) {
        (Some(ids), _) => Box::new(
            ids.iter()
                .filter(|id| after.as_ref().is_none_or(|a| *id > a))
                .filter_map(|id| state.records.get_key_value(id)),
        ),
        (None, Some(id)) => Box::new(
            state
                .records
                .range::<String, _>((Bound::Excluded(id), Bound::Unbounded)),
        ),
        (None, None) => Box::new(state.records.range::<String, _>(..)),
    };
    let data: Vec<Value> = range
        .filter(|(id, stored)| {
            if conds.is_empty() {
                true
            } else if and {
                conds.iter().all(|c| c.matches(id, stored))
            } else {
                conds.iter().any(|c| c.matches(id, stored))
            }
        })
        .take(limit)
        .map(|(id, stored)| render(shared, id, stored, fields.as_deref()))
        .collect();
    Ok(json!({"data": data}))
}
