//! Values in flight through a rule, and the steps that transform them
//! (`convert`, `map`, `round`, `type`). Every step returns a message instead of
//! panicking; the rule turns it into a `FieldError`.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Number, Value};

use super::ValueType;
// Re-exported for `path.rs`, which reads numbers as the rules do.
use crate::decimal::decimal_to_json;
pub(crate) use crate::decimal::{decimal_of_number, parse_decimal};
use crate::month::{local_instant, local_midnight, Month};

/// A value between two steps of a rule. Numbers computed by the engine stay
/// exact decimals and datetimes stay instants until the value is finished.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    /// A value as read from the record (or a default / map value).
    Json(Value),
    Num(Decimal),
    Time(DateTime<Utc>),
}

impl Val {
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Val::Json(Value::Null))
    }

    /// The final JSON value, as it will be sent.
    pub(crate) fn finish(self) -> Result<Value, String> {
        match self {
            Val::Json(v) => Ok(v),
            Val::Num(d) => decimal_to_json(d).ok_or_else(|| "is out of range".to_string()),
            Val::Time(t) => Ok(Value::String(format_time(t))),
        }
    }

    /// Compact text for error messages, e.g. `"abc"`, `5`, `null`.
    pub(crate) fn describe(&self) -> String {
        let text = match self {
            Val::Json(v) => v.to_string(),
            Val::Num(d) => d.normalize().to_string(),
            Val::Time(t) => format!("\"{}\"", format_time(*t)),
        };
        const MAX: usize = 120;
        if text.chars().count() > MAX {
            let cut: String = text.chars().take(MAX).collect();
            format!("{cut}…")
        } else {
            text
        }
    }

    /// What kind of value this is, for messages.
    fn kind(&self) -> &'static str {
        match self {
            Val::Json(Value::Null) => "null",
            Val::Json(Value::Bool(_)) => "a boolean",
            Val::Json(Value::Number(_)) | Val::Num(_) => "a number",
            Val::Json(Value::String(_)) => "text",
            Val::Json(Value::Array(_)) => "a list",
            Val::Json(Value::Object(_)) => "an object",
            Val::Time(_) => "a datetime",
        }
    }
}

/// Datetimes as Jiandaoyun wants them: UTC, milliseconds, `Z`.
pub(crate) fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The text of a JSON number as compared and looked up: `1` for 1 and 1.0.
pub(crate) fn number_text(n: &Number) -> String {
    match decimal_of_number(n) {
        Some(d) => d.normalize().to_string(),
        None => n.to_string(),
    }
}

fn as_decimal(v: &Val) -> Result<Decimal, String> {
    match v {
        Val::Num(d) => Ok(*d),
        Val::Json(Value::Number(n)) => {
            decimal_of_number(n).ok_or_else(|| "is out of range for a decimal number".to_string())
        }
        // Empty text is not a number here (unlike DingTalk's daily cells): a
        // rule asked for a number and the record has none to give.
        Val::Json(Value::String(s)) => {
            parse_decimal(s).ok_or_else(|| "is not a number".to_string())
        }
        other => Err(format!("is {}, not a number", other.kind())),
    }
}

/// The text of a single value: strings as they are, numbers canonical, datetimes
/// in ISO form. Lists and objects have no text.
pub(crate) fn text_of(v: &Val) -> Result<String, String> {
    match v {
        Val::Json(Value::String(s)) => Ok(s.clone()),
        Val::Json(Value::Number(n)) => Ok(number_text(n)),
        Val::Json(Value::Bool(b)) => Ok(b.to_string()),
        Val::Num(d) => Ok(d.normalize().to_string()),
        Val::Time(t) => Ok(format_time(*t)),
        Val::Json(Value::Array(_)) => Err("is a list, not text; use convert = \"join\"".into()),
        other => Err(format!("is {}, not text", other.kind())),
    }
}

/// Instants that can be written as `YYYY-…`: years 1 to 9999.
fn checked_time(t: DateTime<Utc>) -> Result<Val, String> {
    if (1..=9999).contains(&t.year()) {
        Ok(Val::Time(t))
    } else {
        Err("is out of range for a datetime (years 1-9999)".into())
    }
}

/// `convert = "…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Convert {
    SecondsToHours,
    SecondsToMinutes,
    SecondsToDays,
    UnixToDatetime,
    UnixMsToDatetime,
    ToNumber,
    ToText,
    Split(String),
    Join(String),
}

impl Convert {
    pub(crate) const NAMES: &'static [&'static str] = &[
        "seconds_to_hours",
        "seconds_to_minutes",
        "seconds_to_days",
        "unix_to_datetime",
        "unix_ms_to_datetime",
        "to_number",
        "to_text",
        "split",
        "join",
    ];

    /// The convert named `name`; `sep` is used by `split` and `join`.
    pub(crate) fn from_name(name: &str, sep: &str) -> Option<Convert> {
        Some(match name {
            "seconds_to_hours" => Convert::SecondsToHours,
            "seconds_to_minutes" => Convert::SecondsToMinutes,
            "seconds_to_days" => Convert::SecondsToDays,
            "unix_to_datetime" => Convert::UnixToDatetime,
            "unix_ms_to_datetime" => Convert::UnixMsToDatetime,
            "to_number" => Convert::ToNumber,
            "to_text" => Convert::ToText,
            "split" => Convert::Split(sep.to_string()),
            "join" => Convert::Join(sep.to_string()),
            _ => return None,
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Convert::SecondsToHours => "seconds_to_hours",
            Convert::SecondsToMinutes => "seconds_to_minutes",
            Convert::SecondsToDays => "seconds_to_days",
            Convert::UnixToDatetime => "unix_to_datetime",
            Convert::UnixMsToDatetime => "unix_ms_to_datetime",
            Convert::ToNumber => "to_number",
            Convert::ToText => "to_text",
            Convert::Split(_) => "split",
            Convert::Join(_) => "join",
        }
    }

    pub(crate) fn apply(&self, v: &Val) -> Result<Val, String> {
        let divide = |v: &Val, by: i64| -> Result<Val, String> {
            as_decimal(v)?
                .checked_div(Decimal::from(by))
                .map(Val::Num)
                .ok_or_else(|| "is out of range".to_string())
        };
        match self {
            Convert::SecondsToHours => divide(v, 3600),
            Convert::SecondsToMinutes => divide(v, 60),
            Convert::SecondsToDays => divide(v, 86_400),
            Convert::UnixToDatetime | Convert::UnixMsToDatetime => {
                let n = as_decimal(v)?;
                let ms = if *self == Convert::UnixToDatetime {
                    n.checked_mul(Decimal::from(1000))
                } else {
                    Some(n)
                };
                let t = ms
                    .map(|ms| ms.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero))
                    .and_then(|ms| ms.to_i64())
                    .and_then(DateTime::from_timestamp_millis)
                    .ok_or_else(|| "is out of range for a datetime".to_string())?;
                checked_time(t)
            }
            Convert::ToNumber => match v {
                Val::Json(Value::Number(n)) => {
                    Ok(decimal_of_number(n).map_or_else(|| v.clone(), Val::Num))
                }
                _ => as_decimal(v).map(Val::Num),
            },
            Convert::ToText => text_of(v).map(|t| Val::Json(Value::String(t))),
            Convert::Split(sep) => {
                if let Val::Json(Value::Array(_)) = v {
                    return Err("is already a list".into());
                }
                let text = text_of(v)?;
                let parts = if text.is_empty() {
                    Vec::new()
                } else {
                    text.split(sep.as_str())
                        .map(|p| Value::String(p.to_string()))
                        .collect()
                };
                Ok(Val::Json(Value::Array(parts)))
            }
            Convert::Join(sep) => {
                let items = match v {
                    Val::Json(Value::Array(items)) => items
                        .iter()
                        .filter(|i| !i.is_null())
                        .map(|i| text_of(&Val::Json(i.clone())))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| "is a list with a list or object inside".to_string())?,
                    single => vec![text_of(single)?],
                };
                Ok(Val::Json(Value::String(items.join(sep))))
            }
        }
    }
}

impl fmt::Display for Convert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Convert::Split(sep) | Convert::Join(sep) => write!(f, "{} (sep {sep:?})", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}

/// `map = { … }`: keys are the texts of the values to replace. A list is mapped
/// element by element. On a miss, `fallback` (the rule's default) is used when
/// given; otherwise the miss is an error.
pub(crate) fn map_value(
    table: &serde_json::Map<String, Value>,
    fallback: Option<&Value>,
    v: &Val,
) -> Result<Val, String> {
    let look = |v: &Val| -> Result<Value, String> {
        let key =
            text_of(v).map_err(|_| format!("is {}, which cannot be looked up in map", v.kind()))?;
        match (table.get(&key), fallback) {
            (Some(found), _) => Ok(found.clone()),
            (None, Some(fallback)) => Ok(fallback.clone()),
            (None, None) => {
                let mut known: Vec<String> =
                    table.keys().take(10).map(|k| format!("{k:?}")).collect();
                if table.len() > known.len() {
                    known.push("…".into());
                }
                Err(format!(
                    "is not in map (known: {}); add it to the table or give a default",
                    known.join(", ")
                ))
            }
        }
    };
    match v {
        Val::Json(Value::Array(items)) => items
            .iter()
            .map(|i| {
                if i.is_null() {
                    Ok(Value::Null)
                } else {
                    look(&Val::Json(i.clone()))
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|items| Val::Json(Value::Array(items))),
        other => look(other).map(Val::Json),
    }
}

/// `round = N`: N decimal places, half away from zero.
pub(crate) fn round(places: u32, v: &Val) -> Result<Val, String> {
    let d = as_decimal(v)?;
    Ok(Val::Num(d.round_dp_with_strategy(
        places,
        RoundingStrategy::MidpointAwayFromZero,
    )))
}

/// `type = "…"`: coerce the value to what the form field takes.
pub(crate) fn to_type(t: ValueType, v: &Val, tz: Tz) -> Result<Val, String> {
    match t {
        ValueType::Auto => Ok(v.clone()),
        ValueType::Text => text_of(v).map(|s| Val::Json(Value::String(s))),
        ValueType::Number => match v {
            Val::Json(Value::Number(_)) | Val::Num(_) => Ok(v.clone()),
            other => as_decimal(other).map(Val::Num),
        },
        ValueType::Datetime => match v {
            Val::Time(_) => Ok(v.clone()),
            Val::Json(Value::String(s)) => parse_time_text(s, tz)
                .ok_or_else(|| {
                    "is not a datetime (expected e.g. \"2026-10-01T08:00:00+08:00\", \"2026-10-01 08:00:00\" or \"2026-10-01\")".to_string()
                })
                .and_then(checked_time),
            Val::Json(Value::Number(_)) | Val::Num(_) => Err(
                "is a number, not a datetime; for a Unix timestamp use convert = \"unix_to_datetime\""
                    .into(),
            ),
            other => Err(format!("is {}, not a datetime", other.kind())),
        },
        ValueType::Date => {
            let date = match v {
                Val::Time(t) => t.with_timezone(&tz).date_naive(),
                Val::Json(Value::String(s)) => match parse_date_text(s) {
                    Some(d) => d,
                    None => parse_time_text(s, tz)
                        .map(|t| t.with_timezone(&tz).date_naive())
                        .ok_or_else(|| {
                            "is not a date (expected e.g. \"2026-10-01\")".to_string()
                        })?,
                },
                Val::Json(Value::Number(_)) | Val::Num(_) => {
                    return Err(
                        "is a number, not a date; for a Unix timestamp use convert = \"unix_to_datetime\""
                            .into(),
                    )
                }
                other => return Err(format!("is {}, not a date", other.kind())),
            };
            checked_time(local_midnight(date, tz))
        }
    }
}

/// `2026-10-01` or `2026-10` (the month's first day).
fn parse_date_text(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .or_else(|| s.parse::<Month>().ok().map(|m| m.first_day()))
}

/// RFC 3339 with an offset, or a local date-time / date in `tz`.
fn parse_time_text(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    const LOCAL: &[&str] = &[
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ];
    for format in LOCAL {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, format) {
            return Some(local_instant(naive, tz));
        }
    }
    parse_date_text(s).map(|d| local_midnight(d, tz))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SH: Tz = chrono_tz::Asia::Shanghai;

    fn j(v: Value) -> Val {
        Val::Json(v)
    }

    fn done(r: Result<Val, String>) -> Value {
        r.expect("step succeeds").finish().expect("finishes")
    }

    fn conv(name: &str, sep: &str, v: Value) -> Result<Val, String> {
        Convert::from_name(name, sep)
            .expect("known convert")
            .apply(&j(v))
    }

    #[test]
    fn seconds_converts_are_exact_decimals() {
        assert_eq!(done(conv("seconds_to_hours", "", json!(7200))), json!(2));
        assert_eq!(done(conv("seconds_to_hours", "", json!(5400))), json!(1.5));
        assert_eq!(done(conv("seconds_to_minutes", "", json!(90))), json!(1.5));
        assert_eq!(done(conv("seconds_to_days", "", json!(43200))), json!(0.5));
        assert_eq!(done(conv("seconds_to_days", "", json!("172800"))), json!(2));
        assert_eq!(
            done(conv("seconds_to_hours", "", json!(" 12.5e2 "))),
            json!(0.3472222222222222)
        );
        assert_eq!(done(conv("seconds_to_hours", "", json!(-3600))), json!(-1));
        assert_eq!(
            done(conv("seconds_to_hours", "", json!(31))),
            json!(0.008611111111111111)
        );
        for bad in [
            json!("abc"),
            json!(""),
            json!(true),
            json!([1]),
            json!({"a": 1}),
        ] {
            assert!(conv("seconds_to_hours", "", bad.clone()).is_err(), "{bad}");
        }
        assert_eq!(
            conv("seconds_to_hours", "", json!("abc")),
            Err("is not a number".to_string())
        );
        assert_eq!(
            conv("seconds_to_days", "", json!(1e300)),
            Err("is out of range for a decimal number".to_string())
        );
    }

    #[test]
    fn unix_converts_give_utc_millisecond_datetimes() {
        assert_eq!(
            done(conv("unix_to_datetime", "", json!(1790784000))),
            json!("2026-09-30T16:00:00.000Z")
        );
        assert_eq!(
            done(conv("unix_to_datetime", "", json!("1790784000.5"))),
            json!("2026-09-30T16:00:00.500Z")
        );
        assert_eq!(
            done(conv("unix_ms_to_datetime", "", json!(1790784000123_i64))),
            json!("2026-09-30T16:00:00.123Z")
        );
        assert_eq!(
            done(conv("unix_to_datetime", "", json!(0))),
            json!("1970-01-01T00:00:00.000Z")
        );
        assert!(conv("unix_to_datetime", "", json!(1e20)).is_err());
        assert!(conv("unix_to_datetime", "", json!(-62135596801_i64)).is_err());
        assert!(conv("unix_ms_to_datetime", "", json!(u64::MAX)).is_err());
        assert!(conv("unix_to_datetime", "", json!("soon")).is_err());
    }

    #[test]
    fn to_number_and_to_text() {
        assert_eq!(done(conv("to_number", "", json!("12.5"))), json!(12.5));
        assert_eq!(done(conv("to_number", "", json!("12"))), json!(12));
        assert_eq!(done(conv("to_number", "", json!(3))), json!(3));
        assert_eq!(done(conv("to_number", "", json!(1.0))), json!(1));
        assert_eq!(done(conv("to_number", "", json!(1e300))), json!(1e300));
        assert!(conv("to_number", "", json!("12,5")).is_err());
        assert!(conv("to_number", "", json!("NaN")).is_err());
        assert!(conv("to_number", "", json!(false)).is_err());
        assert_eq!(done(conv("to_text", "", json!(10))), json!("10"));
        assert_eq!(done(conv("to_text", "", json!(8.07))), json!("8.07"));
        assert_eq!(done(conv("to_text", "", json!(true))), json!("true"));
        assert_eq!(done(conv("to_text", "", json!("x"))), json!("x"));
        assert!(conv("to_text", "", json!([1])).is_err());
        assert!(conv("to_text", "", json!({})).is_err());
    }

    #[test]
    fn split_and_join() {
        assert_eq!(
            done(conv(
                "split",
                ";",
                json!("有家企业/realempty;有家企业;有家企业/部门A4")
            )),
            json!(["有家企业/realempty", "有家企业", "有家企业/部门A4"])
        );
        assert_eq!(done(conv("split", ";", json!(""))), json!([]));
        assert_eq!(done(conv("split", ",", json!(12))), json!(["12"]));
        assert_eq!(
            done(conv("split", "; ", json!("a; b;c"))),
            json!(["a", "b;c"])
        );
        assert!(conv("split", ";", json!(["a"])).is_err());
        assert_eq!(
            done(conv("join", "、", json!(["a", 1, null, true]))),
            json!("a、1、true")
        );
        assert_eq!(done(conv("join", ",", json!([]))), json!(""));
        assert_eq!(done(conv("join", ",", json!("solo"))), json!("solo"));
        assert!(conv("join", ",", json!([[1]])).is_err());
        assert!(conv("join", ",", json!({"a": 1})).is_err());
    }

    #[test]
    fn map_looks_up_text_and_falls_back_to_default() {
        let table: serde_json::Map<String, Value> =
            serde_json::from_value(json!({"1": "固定上下班", "3": "按班次上下班", "true": 1}))
                .expect("map");
        let m = |v: Value, fb: Option<&Value>| map_value(&table, fb, &j(v)).map(|v| done(Ok(v)));
        assert_eq!(m(json!(1), None), Ok(json!("固定上下班")));
        assert_eq!(m(json!(1.0), None), Ok(json!("固定上下班")));
        assert_eq!(m(json!("3"), None), Ok(json!("按班次上下班")));
        assert_eq!(m(json!(true), None), Ok(json!(1)));
        assert_eq!(
            m(json!([1, "3", null]), None),
            Ok(json!(["固定上下班", "按班次上下班", null]))
        );
        let err = m(json!(6), None).expect_err("miss");
        assert!(
            err.starts_with("is not in map (known: \"1\", \"3\", \"true\")"),
            "{err}"
        );
        assert_eq!(m(json!(6), Some(&json!("其他"))), Ok(json!("其他")));
        assert!(m(json!({"a": 1}), Some(&json!("x"))).is_err());
        assert_eq!(
            map_value(&table, None, &Val::Num(Decimal::new(30, 1))).map(|v| done(Ok(v))),
            Ok(json!("按班次上下班"))
        );
    }

    #[test]
    fn round_is_half_away_from_zero_on_decimals() {
        let r = |p: u32, v: Value| done(round(p, &j(v)));
        assert_eq!(r(2, json!(2.675)), json!(2.68)); // f64 2.675 is 2.67499…; we round the decimal
        assert_eq!(r(2, json!(-2.675)), json!(-2.68));
        assert_eq!(r(0, json!(2.5)), json!(3));
        assert_eq!(r(0, json!(-2.5)), json!(-3));
        assert_eq!(r(1, json!(0.05)), json!(0.1));
        assert_eq!(r(2, json!("8.0666")), json!(8.07));
        assert_eq!(r(2, json!(8)), json!(8));
        assert_eq!(r(3, json!(1.0)), json!(1));
        let hours = Convert::SecondsToHours
            .apply(&j(json!(29040)))
            .expect("hours");
        assert_eq!(done(round(2, &hours)), json!(8.07));
        assert!(round(2, &j(json!("x"))).is_err());
        assert!(round(2, &Val::Time(DateTime::UNIX_EPOCH)).is_err());
    }

    #[test]
    fn types_coerce_or_explain() {
        let ty = |t: ValueType, v: Value| to_type(t, &j(v), SH).and_then(Val::finish);
        assert_eq!(ty(ValueType::Text, json!(12)), Ok(json!("12")));
        assert_eq!(ty(ValueType::Text, json!("a")), Ok(json!("a")));
        assert!(ty(ValueType::Text, json!(["a"])).is_err());
        assert_eq!(ty(ValueType::Number, json!("12.50")), Ok(json!(12.5)));
        assert_eq!(ty(ValueType::Number, json!(7)), Ok(json!(7)));
        assert_eq!(
            ty(ValueType::Number, json!("abc")),
            Err("is not a number".to_string())
        );
        assert!(ty(ValueType::Number, json!(true)).is_err());
        assert_eq!(
            ty(ValueType::Datetime, json!("2026-10-01T08:00:00+08:00")),
            Ok(json!("2026-10-01T00:00:00.000Z"))
        );
        assert_eq!(
            ty(ValueType::Datetime, json!("2026-10-01 08:00:00")),
            Ok(json!("2026-10-01T00:00:00.000Z"))
        );
        assert_eq!(
            ty(ValueType::Datetime, json!("2026-10-01T08:00:00.25")),
            Ok(json!("2026-10-01T00:00:00.250Z"))
        );
        assert_eq!(
            ty(ValueType::Datetime, json!("2026-10-01 08:00")),
            Ok(json!("2026-10-01T00:00:00.000Z"))
        );
        assert_eq!(
            ty(ValueType::Datetime, json!("2026-10-01")),
            Ok(json!("2026-09-30T16:00:00.000Z"))
        );
        assert!(ty(ValueType::Datetime, json!(1790784000)).is_err());
        assert!(ty(ValueType::Datetime, json!("yesterday")).is_err());
        assert!(ty(ValueType::Datetime, json!("2026/10/01")).is_err());
        assert_eq!(
            ty(ValueType::Date, json!("2026-10-05")),
            Ok(json!("2026-10-04T16:00:00.000Z"))
        );
        assert_eq!(
            ty(ValueType::Date, json!("2026-10")),
            Ok(json!("2026-09-30T16:00:00.000Z"))
        );
        // A datetime becomes the local midnight of its local date.
        assert_eq!(
            ty(ValueType::Date, json!("2026-10-05T20:30:00Z")),
            Ok(json!("2026-10-05T16:00:00.000Z"))
        );
        let t = DateTime::from_timestamp(1_790_800_000, 0).expect("t"); // 10-01 04:26 local
        assert_eq!(
            to_type(ValueType::Date, &Val::Time(t), SH).and_then(Val::finish),
            Ok(json!("2026-09-30T16:00:00.000Z"))
        );
        assert_eq!(
            to_type(ValueType::Date, &j(json!("2026-10-05")), chrono_tz::UTC).and_then(Val::finish),
            Ok(json!("2026-10-05T00:00:00.000Z"))
        );
        assert!(ty(ValueType::Date, json!(5)).is_err());
        assert_eq!(ty(ValueType::Auto, json!([1, "a"])), Ok(json!([1, "a"])));
    }

    #[test]
    fn numbers_finish_as_integers_when_whole() {
        assert_eq!(Val::Num(Decimal::new(100, 2)).finish(), Ok(json!(1)));
        assert_eq!(Val::Num(Decimal::new(807, 2)).finish(), Ok(json!(8.07)));
        assert_eq!(number_text(&Number::from(1)), "1");
        assert_eq!(number_text(&Number::from_f64(1.0).expect("f")), "1");
        assert_eq!(number_text(&Number::from_f64(8.07).expect("f")), "8.07");
    }

    proptest::proptest! {
        #[test]
        fn numbers_never_panic(f in proptest::num::f64::ANY, text in "[-+0-9eE._ ]{0,40}") {
            if let Some(n) = Number::from_f64(f) {
                if let Some(d) = decimal_of_number(&n) {
                    // Whatever fits a decimal comes back as a finite JSON number.
                    proptest::prop_assert!(decimal_to_json(d).is_some());
                }
                let _ = number_text(&n);
            }
            let _ = parse_decimal(&text);
            for c in [Convert::SecondsToHours, Convert::UnixToDatetime, Convert::UnixMsToDatetime, Convert::ToNumber] {
                let _ = c.apply(&j(json!(f)));
                let _ = c.apply(&j(json!(text.clone())));
            }
        }
    }

    #[test]
    fn empty_text_is_not_a_number() {
        assert_eq!(
            as_decimal(&j(json!(""))),
            Err("is not a number".to_string())
        );
        assert_eq!(
            as_decimal(&j(json!(" "))),
            Err("is not a number".to_string())
        );
        assert!(round(2, &j(json!(""))).is_err());
    }

    #[test]
    fn describe_quotes_text_and_truncates() {
        assert_eq!(j(json!("abc")).describe(), "\"abc\"");
        assert_eq!(j(json!(5)).describe(), "5");
        assert_eq!(Val::Num(Decimal::new(8070, 3)).describe(), "8.07");
        let long = j(json!("x".repeat(500))).describe();
        assert_eq!(long.chars().count(), 121);
        assert!(long.ends_with('…'));
    }
}
