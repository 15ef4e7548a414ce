//! `rerun`: a month compared with what the **form** holds, not only with the
//! local store, so that records deleted or edited by hand, and duplicates, are
//! repaired; and the guard on `--prune`.
//!
//! The month is read from the form once, by the key fields fed by a
//! `$variable` (e.g. `month = "2026-10"`), in pages of 100 (⌈records / 100⌉
//! `data/list` calls). A mapping whose key has no such field cannot select a
//! month, so its records are looked up by key chunk by chunk instead, and only
//! the store can say which records the source no longer returned.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::pipeline::write::{id_of, key_text, key_values, Writer};
use crate::store::{PendingRecord, Written};
use crate::target::FormError;

/// A month's records as the form holds them.
pub struct FormMonth {
    /// Key text → the records with that key, lowest `_id` first.
    rows: HashMap<String, Vec<Map<String, Value>>>,
    /// Whether `rows` holds the whole month, or only keys looked up so far.
    whole: bool,
    /// Keys of the month in the form when it was read (whole months only);
    /// copies of a key count once.
    total: usize,
}

/// What a rerun chunk needs done so the form matches the source.
#[derive(Default)]
pub struct Repairs {
    pub creates: Vec<PendingRecord>,
    /// (form id, record): differs from the source, or `--force`.
    pub updates: Vec<(Option<String>, PendingRecord)>,
    /// In the form as the source has it: only the store learns of it.
    pub unchanged: Vec<Written>,
    /// Keys held more than once in the form.
    pub duplicates: Vec<String>,
    /// Ids of the extra copies (all but the lowest id), deleted with `--force`.
    pub extra_copies: Vec<String>,
}

/// A key in the form that the source did not produce this month.
pub struct LeftOver {
    pub key: String,
    /// Every record holding it, lowest `_id` first.
    pub data_ids: Vec<String>,
}

impl FormMonth {
    /// Reads the month: by the constant key fields when there are any (whole),
    /// otherwise nothing yet (keys are looked up per chunk).
    pub async fn read(
        writer: &Writer,
        month_keys: &[(String, Value)],
    ) -> Result<FormMonth, FormError> {
        let mut form = FormMonth {
            rows: HashMap::new(),
            whole: !month_keys.is_empty(),
            total: 0,
        };
        if form.whole {
            let rows = writer.rows_where(month_keys).await?;
            form.add(writer, rows);
            form.total = form.rows.len();
        }
        Ok(form)
    }

    pub fn is_whole(&self) -> bool {
        self.whole
    }

    pub fn total(&self) -> usize {
        self.total
    }

    fn add(&mut self, writer: &Writer, rows: Vec<Map<String, Value>>) {
        for row in rows {
            self.rows.entry(writer.key_of(&row)).or_default().push(row);
        }
        for copies in self.rows.values_mut() {
            copies.sort_by(|a, b| id_of(a).cmp(id_of(b)));
        }
    }

    /// Makes sure the form's records with these records' keys are known.
    pub async fn look_up(
        &mut self,
        writer: &Writer,
        records: &[PendingRecord],
    ) -> Result<(), FormError> {
        if self.whole {
            return Ok(());
        }
        let keys: Vec<Vec<Value>> = records.iter().map(key_values).collect();
        let rows = writer.rows_with_keys(&keys).await?;
        self.add(writer, rows);
        Ok(())
    }

    /// Compares a chunk's records with the form; each key is taken out of the
    /// month, so what is left at the end is what the source did not produce.
    pub fn compare(
        &mut self,
        writer: &Writer,
        records: Vec<PendingRecord>,
        force: bool,
    ) -> Repairs {
        let mut out = Repairs::default();
        for rec in records {
            let Some(copies) = self.rows.remove(&key_text(&key_values(&rec))) else {
                out.creates.push(rec);
                continue;
            };
            if copies.len() > 1 {
                out.duplicates.push(rec.key.clone());
                out.extra_copies
                    .extend(copies[1..].iter().map(|r| id_of(r).to_string()));
            }
            match writer.judge(&copies[0], rec, force) {
                Ok(unchanged) => out.unchanged.push(unchanged),
                Err(update) => out.updates.push(update),
            }
        }
        out
    }

    /// The keys of the month (whole months only) the source did not produce,
    /// each with every record that holds it.
    pub fn left_over(self) -> Vec<LeftOver> {
        let mut out: Vec<LeftOver> = self
            .rows
            .into_iter()
            .map(|(key, copies)| LeftOver {
                key,
                data_ids: copies.iter().map(|r| id_of(r).to_string()).collect(),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

/// Whether a record's key names an employee the source answered for with
/// nothing this month: only then is the record "gone from the source". An
/// employee who is not asked at all (no longer in the directory, say, for a
/// past month they worked) is not evidence.
pub fn confirmed_gone(
    key: &str,
    employee_positions: &[usize],
    answered_empty: &HashSet<String>,
) -> bool {
    names_one_of(key, employee_positions, answered_empty)
}

/// Whether a record's key names one of `employees` (at the key's positions
/// read from the source record).
pub fn names_one_of(key: &str, employee_positions: &[usize], employees: &HashSet<String>) -> bool {
    let Ok(values) = serde_json::from_str::<Vec<Value>>(key) else {
        return false;
    };
    employee_positions.iter().any(|&i| match values.get(i) {
        Some(Value::String(s)) => employees.contains(s),
        Some(v @ Value::Number(_)) => employees.contains(&v.to_string()),
        _ => false,
    })
}

/// Why a prune is refused without `--prune-all`, if it is.
pub fn prune_refusal(to_delete: usize, month_records: usize, pulled: u64) -> Option<String> {
    if to_delete == 0 {
        return None;
    }
    if pulled == 0 {
        return Some(format!(
            "prune refused: the source returned nobody for this month, so all {to_delete} record(s) would be deleted; \
             check the job's scope, or add --prune-all to delete them"
        ));
    }
    (to_delete * 5 > month_records).then(|| {
        format!(
            "prune refused: {to_delete} of {month_records} record(s) would be deleted, more than a fifth of the month; \
             check the job's scope (`rerun --prune --dry-run` lists them), or add --prune-all to delete them"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_gone_only_when_its_employee_was_answered_for_with_nothing() {
        let empty: HashSet<String> = ["li".to_string(), "42".to_string()].into();
        assert!(confirmed_gone(r#"["li","2026-10"]"#, &[0], &empty));
        assert!(confirmed_gone(r#"[42,"2026-10"]"#, &[0], &empty));
        assert!(!confirmed_gone(r#"["wang","2026-10"]"#, &[0], &empty));
        // The employee field is not where the key says: no evidence.
        assert!(!confirmed_gone(r#"["li","2026-10"]"#, &[1], &empty));
        assert!(!confirmed_gone("not json", &[0], &empty));
        assert!(!confirmed_gone(r#"["li"]"#, &[], &empty));
    }

    #[test]
    fn prune_needs_prune_all_past_a_fifth_or_when_the_source_returned_nobody() {
        assert_eq!(prune_refusal(0, 0, 0), None);
        assert_eq!(prune_refusal(2, 59, 57), None);
        assert_eq!(prune_refusal(11, 59, 48), None);
        assert!(prune_refusal(12, 59, 47)
            .is_some_and(|m| m.contains("12 of 59") && m.contains("--prune-all")));
        assert!(prune_refusal(59, 59, 0).is_some_and(|m| m.contains("returned nobody")));
        assert!(prune_refusal(1, 1, 0).is_some());
    }
}
