//! A month of daily report values summed into one decimal per column or leave
//! type (docs/vendors/dingtalk.md "Report values").

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde_json::Value;

use super::wire::text;
use crate::decimal::{decimal_of_number, parse_decimal};
use crate::month::Month;

/// A report value as a decimal; `None` when it is not a number.
fn parse_value(v: &Value) -> Option<Decimal> {
    match v {
        // DingTalk reports a day without the value as an empty cell (null or
        // empty text): nothing to add, so it counts as 0 in the sum.
        Value::Null => Some(Decimal::ZERO),
        Value::String(s) if s.trim().is_empty() => Some(Decimal::ZERO),
        Value::String(s) => parse_decimal(s),
        Value::Number(n) => decimal_of_number(n),
        _ => None,
    }
}

/// The date a report day starts with (`yyyy-MM-dd…`). The usual spelling is
/// read directly (a month of days per column makes this a hot path); any
/// other goes through chrono's parser.
fn report_date(raw: &str) -> Option<NaiveDate> {
    let head = raw.get(..10)?;
    let b = head.as_bytes();
    let number = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b[4] == b'-' && b[7] == b'-' {
        if let (Some(y), Some(m), Some(d)) = (number(0, 4), number(5, 7), number(8, 10)) {
            return NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d);
        }
    }
    NaiveDate::parse_from_str(head, "%Y-%m-%d").ok()
}

/// A member of a small object, found by a scan (report days have two).
fn member<'v>(v: &'v Value, key: &str) -> &'v Value {
    const NULL: &Value = &Value::Null;
    v.as_object()
        .and_then(|o| o.iter().find(|(k, _)| *k == key))
        .map_or(NULL, |(_, v)| v)
}

/// The month's days in `from..=to` as DingTalk date strings.
pub(super) struct Window {
    pub(super) month: Month,
    pub(super) from: String,
    pub(super) to: String,
}

impl Window {
    fn contains(&self, date: NaiveDate) -> bool {
        Month::containing(date) == self.month
    }
}

/// Sums one column's daily values (docs/vendors/dingtalk.md "Report values"): only
/// dates inside the month, each date once, empty = 0; the fixed value when there is no
/// daily list.
pub(super) fn sum_column(
    window: &Window,
    name: &str,
    days: Option<&Vec<Value>>,
    fixed: &Value,
) -> Result<Decimal, String> {
    let days = days.filter(|d| !d.is_empty());
    let Some(days) = days else {
        if fixed.is_null() {
            return Ok(Decimal::ZERO);
        }
        return parse_value(fixed)
            .ok_or_else(|| format!("column \"{name}\": fixed value {fixed} is not a number"));
    };
    // Days inside the month, by day of the month: each is counted once.
    let mut seen: u64 = 0;
    let mut total = Decimal::ZERO;
    for day in days {
        let raw = member(day, "date");
        let date = match raw {
            Value::String(s) => report_date(s),
            other => report_date(&text(other)),
        }
        .ok_or_else(|| format!("column \"{name}\": unreadable date {raw}"))?;
        let bit = 1u64 << date.day0();
        if !window.contains(date) || seen & bit != 0 {
            continue;
        }
        seen |= bit;
        let value = member(day, "value");
        let value = parse_value(value)
            .ok_or_else(|| format!("column \"{name}\" on {date}: value {value} is not a number"))?;
        total = total
            .checked_add(value)
            .ok_or_else(|| format!("column \"{name}\": the sum is out of range"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decimal::decimal_to_json;
    use crate::source::dingtalk::testkit::*;
    use serde_json::json;

    #[test]
    fn daily_values_are_summed_inside_the_month_once() {
        let window = Window {
            month: october(),
            from: "2026-10-01 00:00:00".into(),
            to: "2026-10-31 00:00:00".into(),
        };
        let days = vec![
            json!({"date": "2026-10-01 00:00:00", "value": "1.0"}),
            json!({"date": "2026-10-02 00:00:00", "value": ""}),
            json!({"date": "2026-10-03 00:00:00", "value": "0.5"}),
            json!({"date": "2026-10-03 00:00:00", "value": "0.5"}),
            json!({"date": "2026-11-01 00:00:00", "value": "9"}),
            json!({"date": "2026-09-30 00:00:00", "value": "9"}),
            json!({"date": "2026-10-04 00:00:00", "value": 2}),
            json!({"date": "2026-10-05 00:00:00", "value": "1e1"}),
        ];
        let total = sum_column(&window, "c", Some(&days), &Value::Null).unwrap();
        assert_eq!(total, Decimal::new(135, 1));
        assert_eq!(decimal_to_json(total), Some(json!(13.5)));
        assert_eq!(
            sum_column(&window, "c", Some(&vec![]), &json!("8.0")).unwrap(),
            Decimal::new(8, 0)
        );
        assert_eq!(
            sum_column(&window, "c", None, &Value::Null).unwrap(),
            Decimal::ZERO
        );
        let bad = vec![json!({"date": "2026-10-07 00:00:00", "value": "正常"})];
        assert_eq!(
            sum_column(&window, "班次", Some(&bad), &Value::Null).unwrap_err(),
            "column \"班次\" on 2026-10-07: value \"正常\" is not a number"
        );
        let bad = vec![json!({"date": "yesterday", "value": "1"})];
        assert!(sum_column(&window, "c", Some(&bad), &Value::Null).is_err());
        assert_eq!(decimal_to_json(Decimal::new(210, 1)), Some(json!(21)));
    }

    #[test]
    fn an_empty_cell_counts_as_zero() {
        assert_eq!(parse_value(&json!("")), Some(Decimal::ZERO));
        assert_eq!(parse_value(&json!("  ")), Some(Decimal::ZERO));
        assert_eq!(parse_value(&Value::Null), Some(Decimal::ZERO));
        assert_eq!(parse_value(&json!(" 1.5 ")), Some(Decimal::new(15, 1)));
        assert_eq!(parse_value(&json!("-")), None);
        assert_eq!(parse_value(&json!([])), None);
    }

    proptest::proptest! {
        /// The direct reading of `yyyy-MM-dd` agrees with chrono's parser on
        /// every text of that shape (and on malformed ones near it).
        #[test]
        fn report_dates_read_as_chrono_reads_them(
            y in 0u32..10_000, m in 0u32..14, d in 0u32..33,
            sep in proptest::sample::select(vec!['-', '/', ' ']),
            tail in proptest::sample::select(vec!["", " 00:00:00", "T08:00"]),
        ) {
            let raw = format!("{y:04}{sep}{m:02}{sep}{d:02}{tail}");
            let chrono = raw.get(..10).and_then(|h| NaiveDate::parse_from_str(h, "%Y-%m-%d").ok());
            proptest::prop_assert_eq!(report_date(&raw), chrono, "{}", raw);
        }
    }
}
