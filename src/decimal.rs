//! Exact decimals read from vendor numbers and text, and written back as JSON
//! numbers. Shared by the mapping engine and the DingTalk sums, so that both
//! read a number the same way. Empty text is *not* a number here (`None`):
//! each caller says what an empty value means to it.

use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{Number, Value};

/// An exact decimal for a JSON number, when it fits (about ±7.9e28, 28 places).
pub(crate) fn decimal_of_number(n: &Number) -> Option<Decimal> {
    if let Some(i) = n.as_i64() {
        return Some(Decimal::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(Decimal::from(u));
    }
    // A float: go through its shortest text so that 2.675 stays 2.675.
    parse_decimal(&n.to_string())
}

/// A decimal from text like `12.5`, `-3`, ` 7 ` or `1.5e3`; `None` for text
/// that is not a number, including empty (or blank) text.
pub(crate) fn parse_decimal(text: &str) -> Option<Decimal> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    if t.contains(['e', 'E']) {
        // Lossy: a float's tiny tail beyond 28 places is rounded, not refused.
        Decimal::from_scientific_lossy(t).ok().or_else(|| {
            // Below the 28th decimal place: zero at decimal precision.
            let f: f64 = t.parse().ok()?;
            (f.is_finite() && f.abs() < 1e-28).then_some(Decimal::ZERO)
        })
    } else {
        Decimal::from_str(t).ok()
    }
}

/// Integers become JSON integers (1, not 1.0); others the nearest JSON float.
pub(crate) fn decimal_to_json(d: Decimal) -> Option<Value> {
    let d = d.normalize();
    if d.scale() == 0 {
        if let Some(i) = d.to_i64() {
            return Some(Value::from(i));
        }
        if let Some(u) = d.to_u64() {
            return Some(Value::from(u));
        }
    }
    let f: f64 = d.to_string().parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_text_is_not_a_number() {
        assert_eq!(parse_decimal(""), None);
        assert_eq!(parse_decimal("  "), None);
        assert_eq!(parse_decimal(" 7 "), Some(Decimal::new(7, 0)));
        assert_eq!(parse_decimal("-"), None);
    }

    #[test]
    fn whole_numbers_are_json_integers() {
        assert_eq!(decimal_to_json(Decimal::new(100, 2)), Some(json!(1)));
        assert_eq!(decimal_to_json(Decimal::new(807, 2)), Some(json!(8.07)));
        assert_eq!(decimal_to_json(Decimal::new(-5, 0)), Some(json!(-5)));
        assert_eq!(
            decimal_to_json(Decimal::MAX),
            Some(json!(7.922816251426434e28))
        );
    }

    #[test]
    fn tiny_floats_are_rounded_not_refused() {
        assert_eq!(
            parse_decimal("2.710505431213761e-20"),
            Some(Decimal::new(271050543, 28))
        );
        assert_eq!(
            decimal_of_number(&Number::from_f64(1e-30).expect("f")),
            Some(Decimal::ZERO)
        );
        assert_eq!(parse_decimal("1e29"), None);
        assert_eq!(parse_decimal("e5"), None);
        assert_eq!(parse_decimal("1e"), None);
    }
}
