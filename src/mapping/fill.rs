//! [`FieldFill`]: per mapped field, how many rows of a month had a value. A
//! field that came out empty in every row usually means a path the data never
//! fills (a vendor that leaves a field out, a selector that matches nothing),
//! which the run reports as a warning instead of writing blanks silently.

use super::{is_empty, Mapping, Row};

/// Rows seen and, per field (in mapping order), how many had a value: null,
/// blank text and empty lists are empty; a `default` filled in is a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldFill {
    rows: u64,
    filled: Vec<u64>,
}

impl FieldFill {
    /// Counts one mapped row.
    pub fn observe(&mut self, row: &Row) {
        let fields = row.fields();
        if self.filled.len() < fields.len() {
            self.filled.resize(fields.len(), 0);
        }
        self.rows += 1;
        for (count, (_, v)) in self.filled.iter_mut().zip(fields) {
            if !is_empty(v) {
                *count += 1;
            }
        }
    }

    /// Adds another part of the same month (a chunk).
    pub fn absorb(&mut self, other: FieldFill) {
        if self.filled.len() < other.filled.len() {
            self.filled.resize(other.filled.len(), 0);
        }
        self.rows += other.rows;
        for (mine, theirs) in self.filled.iter_mut().zip(other.filled) {
            *mine += theirs;
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// One warning per field of `mapping` that was empty in every row, when
    /// there was at least one row. A field with a `default` never warns: the
    /// mapping says what a missing value means (`default = ""` is how to accept
    /// a field that is often blank).
    pub fn warnings(&self, mapping: &Mapping) -> Vec<String> {
        if self.rows == 0 {
            return Vec::new();
        }
        mapping
            .rules
            .iter()
            .enumerate()
            .filter(|(i, r)| r.default.is_none() && self.filled.get(*i).copied().unwrap_or(0) == 0)
            .map(|(_, r)| {
                format!(
                    "field `{}` (from {}) is empty in all {} records: check the path, or give it a `default`",
                    r.name, r.from_text, self.rows
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Vars;
    use crate::toml_reader::SourceFile;
    use serde_json::{json, Value};

    fn mapping() -> Mapping {
        let text = r#"
key = ["userid"]
[fields]
userid = "acctid"
hours = { from = "summary.hours" }
late = { from = "exceptions[exception=6].count", default = 0 }
note = "note"
alias = { from = "alias", default = "" }
"#;
        Mapping::parse(&SourceFile::new("mappings/m.toml", text))
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn vars() -> Vars {
        Vars {
            month: "2026-10".parse().unwrap_or_else(|e| panic!("{e}")),
            timezone: chrono_tz::Asia::Shanghai,
            job: "j".into(),
            source: "wecom".into(),
            synced_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_field_empty_in_every_row_is_a_warning_and_a_default_is_a_value() {
        let m = mapping();
        let mut month = FieldFill::default();
        assert!(month.warnings(&m).is_empty(), "no rows, no warning");
        let mut chunk = FieldFill::default();
        for (id, note) in [("a", json!("  ")), ("b", Value::Null)] {
            let rec = json!({ "acctid": id, "summary": { "hours": null }, "note": note });
            chunk.observe(&m.apply(&rec, &vars()).unwrap_or_else(|e| panic!("{e:?}")));
        }
        month.absorb(chunk);
        assert_eq!(month.rows(), 2);
        let w = month.warnings(&m);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("field `hours` (from summary.hours) is empty in all 2 records"));
        assert!(w[1].starts_with("field `note` (from note)"));
        // `alias` was blank everywhere too, but has a default: no warning.
        assert!(!w.iter().any(|w| w.contains("alias")), "{w:?}");

        // One row with a value is enough.
        let mut more = FieldFill::default();
        let rec = json!({ "acctid": "c", "summary": { "hours": 3 }, "note": "x" });
        more.observe(&m.apply(&rec, &vars()).unwrap_or_else(|e| panic!("{e:?}")));
        month.absorb(more);
        assert!(month.warnings(&m).is_empty());
    }
}
