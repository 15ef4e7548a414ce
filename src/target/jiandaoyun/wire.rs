//! Jiandaoyun's formats: the write format of a record and the `data/list`
//! filters (docs/vendors/jiandaoyun.md, "Calls").

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::target::{FieldKind, WriteData};

/// The filter type `data/list` needs for a field of this kind.
pub fn filter_type(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Number => "number",
        FieldKind::Datetime => "datetime",
        FieldKind::Text => "text",
    }
}

/// How a field of this widget type compares in a filter.
pub fn field_kind(widget_type: &str) -> FieldKind {
    match widget_type {
        "number" => FieldKind::Number,
        "datetime" => FieldKind::Datetime,
        _ => FieldKind::Text,
    }
}

/// Records whose key fields take the values of `keys` (one `in` per key field;
/// the caller keeps each group within the 200-value cap).
pub fn keys_in(key_fields: &[(String, FieldKind)], keys: &[Vec<Value>]) -> Value {
    let cond: Vec<Value> = key_fields
        .iter()
        .enumerate()
        .map(|(i, (field, kind))| {
            let mut values: Vec<&Value> = keys.iter().filter_map(|k| k.get(i)).collect();
            // One text per value, not one per comparison.
            values.sort_by_cached_key(|v| v.to_string());
            values.dedup();
            json!({ "field": field, "type": filter_type(*kind), "method": "in", "value": values })
        })
        .collect();
    json!({ "rel": "and", "cond": cond })
}

/// Records whose fields equal the given values (`eq`).
pub fn fields_equal(equal: &[(String, FieldKind, Value)]) -> Value {
    let cond: Vec<Value> = equal
        .iter()
        .map(|(name, kind, value)| {
            json!({ "field": name, "type": filter_type(*kind), "method": "eq", "value": [value] })
        })
        .collect();
    json!({ "rel": "and", "cond": cond })
}

/// Writes records of one mapping in Jiandaoyun's write format,
/// `{"field":{"value":v},…}`. Built once per mapping: each field's
/// `"name":{"value":` is escaped and written here, so a record costs only its
/// values (serde_json's text of each) and the punctuation between them.
#[derive(Debug, PartialEq, Eq)]
pub struct Encoder {
    /// Per field, in mapping order: `"name":{"value":`.
    prefixes: Vec<String>,
}

impl Encoder {
    pub fn new(names: &[String]) -> Encoder {
        let prefixes = names
            .iter()
            .map(|name| {
                let mut out = Vec::with_capacity(name.len() + 12);
                // Writing to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut out, name);
                out.extend_from_slice(br#":{"value":"#);
                // Only JSON text was written, which is UTF-8.
                String::from_utf8(out).unwrap_or_default()
            })
            .collect();
        Encoder { prefixes }
    }

    /// A record from its values, in the order of the names the encoder was
    /// built with (extra values are ignored).
    pub fn encode(&self, values: &[Value]) -> WriteData {
        let mut text = Vec::with_capacity(64 * values.len());
        text.push(b'{');
        for (n, (prefix, value)) in self.prefixes.iter().zip(values).enumerate() {
            if n > 0 {
                text.push(b',');
            }
            text.extend_from_slice(prefix.as_bytes());
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut text, value);
            text.push(b'}');
        }
        text.push(b'}');
        // Only JSON text was written, which is UTF-8.
        let text = String::from_utf8(text).unwrap_or_default();
        // SAFETY: `text` is one JSON object without surrounding whitespace: its
        // braces and commas are written above, each prefix is a name escaped by
        // serde_json followed by `:{"value":`, and each value is written by
        // serde_json. (A property test below parses it again for
        // names with quotes, backslashes, newlines and CJK.)
        WriteData(unsafe { RawValue::from_string_unchecked(text) })
    }
}

impl crate::target::RecordFormat for Encoder {
    fn encode(&self, values: &[Value]) -> WriteData {
        Encoder::encode(self, values)
    }
}

/// The fields of a record in the write format with their bare values (a field
/// not wrapped as `{"value": v}` reads as null); `None` when `data` is not a
/// record.
pub fn decode(data: &WriteData) -> Option<Map<String, Value>> {
    match data.to_value() {
        Value::Object(fields) => Some(
            fields
                .into_iter()
                .map(|(name, wrapped)| {
                    let value = match wrapped {
                        Value::Object(mut w) => w.remove("value").unwrap_or(Value::Null),
                        _ => Value::Null,
                    };
                    (name, value)
                })
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_wraps_values_under_escaped_names() {
        let names = vec!["a\"b".to_string(), "年".to_string()];
        let data = Encoder::new(&names).encode(&[json!(1), json!(null)]);
        assert_eq!(data.get(), r#"{"a\"b":{"value":1},"年":{"value":null}}"#);
        let bare = decode(&data).unwrap_or_default();
        assert_eq!(bare.get("a\"b"), Some(&json!(1)));
        assert_eq!(bare.get("年"), Some(&Value::Null));
        let odd = WriteData::from_value(&json!({"a": 1, "b": {"value": 2}}));
        assert_eq!(
            decode(&odd),
            Some(Map::from_iter([
                ("a".into(), Value::Null),
                ("b".into(), json!(2))
            ]))
        );
        assert_eq!(decode(&WriteData::from_text("[1]".into())), None);
    }

    #[test]
    fn filters_name_the_filter_type_of_each_kind() {
        let f = keys_in(
            &[("n".into(), FieldKind::Number)],
            &[vec![json!(2)], vec![json!(1)], vec![json!(2)]],
        );
        assert_eq!(
            f,
            json!({"rel": "and", "cond": [{"field": "n", "type": "number", "method": "in", "value": [1, 2]}]})
        );
        let e = fields_equal(&[("m".into(), FieldKind::Text, json!("2026-10"))]);
        assert_eq!(e["cond"][0]["value"], json!(["2026-10"]));
        assert_eq!(field_kind("datetime"), FieldKind::Datetime);
    }

    proptest::proptest! {
        #[test]
        fn write_data_is_the_wrapped_fields_for_any_names_and_values(
            fields in proptest::collection::vec(
                ("[a-z\"\\\\年\n]{0,4}", proptest::prelude::any::<Option<(i32, String)>>()),
                1..6,
            )
        ) {
            let values: Vec<Value> = fields
                .iter()
                .map(|(_, v)| match v {
                    None => Value::Null,
                    Some((n, s)) if n % 2 == 0 => json!([n, s]),
                    Some((_, s)) => json!(s),
                })
                .collect();
            let names: Vec<String> = fields.iter().map(|(n, _)| n.clone()).collect();
            // Built as serde_json would, the later of two equal names winning.
            let mut expected = serde_json::Map::new();
            for (name, value) in names.iter().zip(&values) {
                expected.insert(name.clone(), json!({ "value": value }));
            }
            let text = Encoder::new(&names).encode(&values);
            let parsed: Value = serde_json::from_str(text.get()).expect("the write format is JSON");
            proptest::prop_assert_eq!(parsed, Value::Object(expected));
        }
    }
}
