//! A mapped record: the final values, its key and its content hash.

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// One mapped record: final bare values in mapping order, with the field names
/// shared by every row of the mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    shape: Arc<Shape>,
    values: Vec<Value>,
}

/// What every row of one mapping has in common, worked out once per mapping
/// rather than once per record.
#[derive(Debug, PartialEq)]
pub(crate) struct Shape {
    names: Vec<String>,
    /// Indexes of the key fields, in the mapping's `key` order.
    key_index: Vec<usize>,
    /// Indexes of the fields the content hash covers, in name order: every field
    /// except those fed by `$synced_at`, and of two fields with one name the
    /// later one (as in a JSON object).
    hashed: Vec<usize>,
    /// Each field's name as JSON text (`"name"`), escaped once here instead of
    /// for every record's hash.
    quoted: Vec<String>,
}

impl Shape {
    /// `volatile[i]`: field `i` is fed by `$synced_at`.
    pub(crate) fn new(names: Vec<String>, key_index: Vec<usize>, volatile: &[bool]) -> Shape {
        let mut hashed: Vec<usize> = (0..names.len())
            .filter(|&i| !volatile.get(i).copied().unwrap_or(false))
            .collect();
        // Stable: fields of one name stay in mapping order, the later one last.
        hashed.sort_by(|&a, &b| names[a].cmp(&names[b]));
        hashed.dedup_by(|later, earlier| {
            let same = names[*later] == names[*earlier];
            if same {
                std::mem::swap(later, earlier);
            }
            same
        });
        let quoted = names.iter().map(|name| json_str(name)).collect();
        Shape {
            names,
            key_index,
            hashed,
            quoted,
        }
    }

    /// Field `i` is one of the key fields.
    pub(crate) fn is_key(&self, i: usize) -> bool {
        self.key_index.contains(&i)
    }
}

/// Bumped whenever the canonical form below changes (every row then counts as
/// changed once).
const HASH_DOMAIN: &str = "attendsync.row.v1";

impl Row {
    /// `values` in the order of the shape's names.
    pub(crate) fn new(shape: Arc<Shape>, values: Vec<Value>) -> Row {
        Row { shape, values }
    }

    /// Field names and final bare values, in mapping order (datetimes already as
    /// `"2026-09-30T16:00:00.000Z"`).
    pub fn fields(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> + '_ {
        self.shape
            .names
            .iter()
            .map(String::as_str)
            .zip(&self.values)
    }

    /// The key fields and their values, in the mapping's `key` order.
    pub fn key_values(&self) -> Vec<(String, Value)> {
        self.shape
            .key_index
            .iter()
            .filter_map(|&i| {
                Some((
                    self.shape.names.get(i)?.clone(),
                    self.values.get(i)?.clone(),
                ))
            })
            .collect()
    }

    /// The canonical text of the key: the compact JSON array of the key values in
    /// `key` order, e.g. `["ZhangSan","2026-10"]`. Stable across runs and versions;
    /// used as the store's key.
    pub fn key(&self) -> String {
        let mut out = Vec::with_capacity(32);
        out.push(b'[');
        for (n, &i) in self.shape.key_index.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_canonical(self.values.get(i).unwrap_or(&Value::Null), &mut out);
        }
        out.push(b']');
        // Only JSON text was written, which is UTF-8.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Hex SHA-256 of the canonical JSON of every field except the volatile ones
    /// (fed by `$synced_at`): an object with keys sorted at every level, compact,
    /// prefixed by a version tag. An unchanged record hashes the same on every run
    /// and whatever the order of `[fields]`.
    pub fn content_hash(&self) -> String {
        let mut text = Vec::with_capacity(512);
        text.extend_from_slice(HASH_DOMAIN.as_bytes());
        text.push(b'\n');
        text.push(b'{');
        for (n, &i) in self.shape.hashed.iter().enumerate() {
            if n > 0 {
                text.push(b',');
            }
            text.extend_from_slice(self.shape.quoted[i].as_bytes());
            text.push(b':');
            write_canonical(&self.values[i], &mut text);
        }
        text.push(b'}');
        let digest = Sha256::digest(&text);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for b in digest {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 15)]));
        }
        hex
    }

    /// The final bare values in mapping order, as the target's write format
    /// takes them (`target::RecordFormat`).
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// Bare values, `{"field": v, …}`, for `--dry-run` output.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.fields()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
        )
    }
}

/// Compact JSON with object keys sorted at every level, written without copying
/// the value (the hash of every record goes through here).
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(o) => {
            let mut entries: Vec<(&String, &Value)> = o.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (n, (k, v)) in entries.into_iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_json_str(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (n, v) in a.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        // Scalars: serde_json's own compact form (writing to a Vec cannot fail).
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_json_str(s: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `s` as a JSON string, quotes included.
fn json_str(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_json_str(s, &mut out);
    // Only JSON text was written, which is UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(fields: Value, key: Vec<usize>, volatile: Vec<bool>) -> Row {
        let (names, values) = fields
            .as_object()
            .expect("object")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .unzip();
        Row::new(Arc::new(Shape::new(names, key, &volatile)), values)
    }

    #[test]
    fn key_is_a_compact_json_array_in_key_order() {
        let r = row(
            json!({"month": "2026-10", "name": "张三", "userid": "ZhangSan"}),
            vec![2, 0],
            vec![false; 3],
        );
        assert_eq!(r.key(), r#"["ZhangSan","2026-10"]"#);
        assert_eq!(
            r.key_values(),
            vec![
                ("userid".to_string(), json!("ZhangSan")),
                ("month".to_string(), json!("2026-10"))
            ]
        );
    }

    #[test]
    fn hash_ignores_volatile_fields_and_field_order() {
        let a = row(
            json!({"u": "x", "n": 1.5, "at": "2026-01-01T00:00:00.000Z", "o": {"b": 1, "a": 2}}),
            vec![0],
            vec![false, false, true, false],
        );
        let b = row(
            json!({"o": {"a": 2, "b": 1}, "at": "2027-05-05T00:00:00.000Z", "n": 1.5, "u": "x"}),
            vec![3],
            vec![false, true, false, false],
        );
        assert_eq!(a.content_hash(), b.content_hash());
        assert_eq!(a.content_hash().len(), 64);
        let c = row(json!({"u": "x", "n": 1.6}), vec![0], vec![false, false]);
        assert_ne!(a.content_hash(), c.content_hash());
        // A null differs from an absent field and from a 0.
        let d = row(json!({"u": "x", "n": null}), vec![0], vec![false, false]);
        let e = row(json!({"u": "x", "n": 0}), vec![0], vec![false, false]);
        assert_ne!(d.content_hash(), e.content_hash());
    }

    #[test]
    fn canonical_text_sorts_keys_at_every_level_and_escapes() {
        let v = json!({"b": [1, {"z": null, "a": "é\"\n"}], "a": 1.5, "A": true, "": {}});
        let mut out = Vec::new();
        write_canonical(&v, &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            r#"{"":{},"A":true,"a":1.5,"b":[1,{"a":"é\"\n","z":null}]}"#
        );
    }

    #[test]
    fn hash_is_pinned() {
        // Changing the canonical form silently would rewrite every record once;
        // this pin makes such a change deliberate (bump HASH_DOMAIN).
        let r = row(
            json!({"userid": "ZhangSan", "n": 1}),
            vec![0],
            vec![false, false],
        );
        let mut h = Sha256::new();
        h.update(b"attendsync.row.v1\n{\"n\":1,\"userid\":\"ZhangSan\"}");
        let expected: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(r.content_hash(), expected);
    }

    #[test]
    fn json_is_bare() {
        let r = row(json!({"a": 1, "b": null}), vec![0], vec![false, false]);
        assert_eq!(r.to_json(), json!({"a": 1, "b": null}));
        assert_eq!(r.to_json().to_string(), r#"{"a":1,"b":null}"#);
    }
}
