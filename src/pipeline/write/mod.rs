//! Writing rows to Jiandaoyun without ever duplicating one.
//!
//! Jiandaoyun does not enforce uniqueness, and `transaction_id`'s semantics are
//! uncertain, so every create batch follows one protocol:
//!
//! 1. **Reconcile** the batch's keys with `data/list`: records already there are
//!    adopted (committed, and updated when their content differs). Skipped before
//!    a batch's first send when its keys are known to be absent ([`InForm`]).
//! 2. **Write ahead**: the still-missing records are saved as a pending batch under
//!    a new random `transaction_id` (one per write intent) before the call is sent.
//! 3. **Send** `data/batch_create`. When Jiandaoyun answers that it created every
//!    record of a first send, they are committed and the pending batch is dropped
//!    in one transaction. Any other answer — a short count, timeout, dropped
//!    connection, 5xx, or any answer to a resend (it may be a replay) — goes back
//!    to 1, after waiting out a send that may still be in flight: the read-back is
//!    what commits. (`create.rs`.)
//!
//! A record is committed to the store only once Jiandaoyun acknowledged or shows it,
//! and a batch whose outcome is unclear is only forgotten after a reconcile. A run
//! killed at any point leaves a pending batch that the next run settles with the
//! same loop.
//!
//! The ids of records created in an acknowledged batch are not read back (the
//! order of `success_ids` is not documented; docs/vendors/jiandaoyun.md "Calls"): their
//! checkpoints hold no id (`None`), and an update or delete reads it by key when it needs it.

mod create;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use serde_json::{Map, Value};

use crate::http::codes::Class;
use crate::month::Month;
use crate::store::{PendingRecord, Store, StoreError, Written};
use crate::target::{FieldKind, Form, FormError, FormRow, MAX_BATCH};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Form(#[from] FormError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a write step achieved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub created: u64,
    pub updated: u64,
    /// Records found already in the form (from a killed run, or made by hand) and
    /// taken over instead of created again.
    pub adopted: u64,
    /// (record key, reason) of records not written; the next run retries them.
    pub failed: Vec<(String, String)>,
    /// Keys that appear more than once in the form (not created by this write).
    pub duplicates: Vec<String>,
    /// Extra copies of keys deleted (`rerun --force`).
    pub copies_deleted: u64,
}

impl Outcome {
    pub fn absorb(&mut self, other: Outcome) {
        self.created += other.created;
        self.updated += other.updated;
        self.adopted += other.adopted;
        self.failed.extend(other.failed);
        self.duplicates.extend(other.duplicates);
        self.copies_deleted += other.copies_deleted;
    }
}

/// The canonical text of a key: its values as a JSON array. Used both for rows
/// and for records read back from the form, so the two always compare alike.
pub fn key_text(values: &[Value]) -> String {
    let mut out = Vec::with_capacity(32);
    out.push(b'[');
    for (n, v) in values.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        // Writing to a Vec cannot fail.
        let _ = match whole_number(v) {
            Some(i) => serde_json::to_writer(&mut out, &i),
            None => serde_json::to_writer(&mut out, v),
        };
    }
    out.push(b']');
    // Only JSON text was written, which is UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// A whole number as an integer, so that 1.0 and 1 compare alike.
fn whole_number(v: &Value) -> Option<i64> {
    let f = v.as_f64().filter(|_| v.is_number())?;
    (f.fract() == 0.0 && f.abs() < 9e15).then_some(f as i64)
}

/// Numbers that are whole are compared as integers (Jiandaoyun may answer 1.0 for 1).
fn normalise(v: &Value) -> Value {
    whole_number(v).map_or_else(|| v.clone(), Value::from)
}

fn same_value(sent: Option<&Value>, stored: Option<&Value>) -> bool {
    let sent = sent.unwrap_or(&Value::Null);
    let stored = stored.unwrap_or(&Value::Null);
    match (sent.as_f64(), stored.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        _ => {
            sent == stored
                || normalise(sent) == normalise(stored)
                || (is_blank(sent) && is_blank(stored))
        }
    }
}

fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The values of a record's key fields, to look it up in the form.
pub(crate) fn key_values(rec: &PendingRecord) -> Vec<Value> {
    rec.key_values.iter().map(|(_, v)| v.clone()).collect()
}

pub use crate::target::FormFields;

pub struct Writer {
    form: Arc<dyn Form>,
    store: Store,
    job: String,
    /// Key field names with how their form field compares in a look-up.
    key_fields: Vec<(String, FieldKind)>,
    /// Every mapped field, read back to compare content.
    fields: Vec<String>,
    /// The key fields' names alone.
    key_names: Vec<String>,
    /// Fields that change on every run, not compared with the form.
    volatile: Vec<String>,
    /// See [`FormFields::read_as`].
    read_as: HashMap<String, String>,
}

struct Reconciled {
    found: Vec<Written>,
    stale: Vec<(Option<String>, PendingRecord)>,
    missing: Vec<PendingRecord>,
    duplicates: Vec<String>,
}

impl Reconciled {
    /// A batch whose keys are known to be absent from the form: all missing.
    fn none_found(records: Vec<PendingRecord>) -> Reconciled {
        Reconciled {
            found: Vec::new(),
            stale: Vec::new(),
            missing: records,
            duplicates: Vec::new(),
        }
    }
}

/// What is known, before a create batch is first sent, of its keys in the form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InForm {
    /// Nothing: they are looked up first, since a killed run, a lost
    /// database or a hand may have made some of them.
    #[default]
    Unknown,
    /// None of them is there: the form was seen to hold none of them (the
    /// month held no record at all, or was read whole) and, under the job's
    /// lease, only this run has written since, other keys (docs/ARCHITECTURE.md,
    /// "Invariants").
    Absent,
}

impl Writer {
    pub fn new(target: Arc<dyn Form>, store: Store, job: &str, form: FormFields) -> Self {
        Writer {
            form: target,
            store,
            job: job.to_string(),
            key_names: form
                .key_fields
                .iter()
                .map(|(name, _)| name.clone())
                .collect(),
            key_fields: form.key_fields,
            fields: form.fields,
            volatile: form.volatile,
            read_as: form.read_as,
        }
    }

    /// A field's value in a record read back from the form.
    fn read<'r>(&self, row: &'r Map<String, Value>, field: &str) -> Option<&'r Value> {
        self.read_as
            .get(field)
            .and_then(|alias| row.get(alias))
            .or_else(|| row.get(field))
    }

    /// Whether a record read back from the form holds what `rec` would write
    /// (fields that change on every run aside).
    fn holds(&self, row: &Map<String, Value>, rec: &PendingRecord) -> bool {
        self.form.decode(&rec.data).is_some_and(|fields| {
            fields
                .iter()
                .filter(|(name, _)| !self.volatile.contains(name))
                .all(|(name, value)| same_value(Some(value), self.read(row, name)))
        })
    }

    /// Reads the batch's records back by key, every mapped field: records found
    /// are compared with what would be written, and duplicates are seen.
    async fn reconcile(&self, records: Vec<PendingRecord>) -> Result<Reconciled, FormError> {
        let keys: Vec<Vec<Value>> = records.iter().map(key_values).collect();
        let rows = self.rows_with_keys(&keys).await?;
        let mut by_key: HashMap<String, Vec<Map<String, Value>>> = HashMap::new();
        for row in rows {
            by_key.entry(self.key_of(&row)).or_default().push(row);
        }
        let mut out = Reconciled {
            found: Vec::new(),
            stale: Vec::new(),
            missing: Vec::new(),
            duplicates: Vec::new(),
        };
        for (rec, key) in records.into_iter().zip(&keys) {
            let Some(mut matches) = by_key.remove(&key_text(key)) else {
                out.missing.push(rec);
                continue;
            };
            matches.sort_by(|a, b| id_of(a).cmp(id_of(b)));
            if matches.len() > 1 {
                out.duplicates.push(rec.key.clone());
            }
            match self.judge(&matches[0], rec, false) {
                Ok(found) => out.found.push(found),
                Err(stale) => out.stale.push(stale),
            }
        }
        Ok(out)
    }

    /// `rec` against the form's record `row` of the same key: what to store
    /// when the form holds it already (and `force` is off), else the update it
    /// needs (the form's id and `rec`).
    pub(crate) fn judge(
        &self,
        row: &Map<String, Value>,
        rec: PendingRecord,
        force: bool,
    ) -> Result<Written, (Option<String>, PendingRecord)> {
        let data_id = form_id(row);
        if !force && self.holds(row, &rec) {
            Ok(Written {
                key: rec.key,
                data_id,
                content_hash: rec.content_hash,
            })
        } else {
            Err((data_id, rec))
        }
    }

    /// The key text of a record read back from the form.
    pub(crate) fn key_of(&self, row: &Map<String, Value>) -> String {
        let values: Vec<Value> = self
            .key_fields
            .iter()
            .map(|(f, _)| self.read(row, f).cloned().unwrap_or(Value::Null))
            .collect();
        key_text(&values)
    }

    /// The form's records whose key fields `fields` take these values (`eq`),
    /// every mapped field: e.g. all of one month's records.
    pub(crate) async fn rows_where(
        &self,
        fields: &[(String, Value)],
    ) -> Result<Vec<FormRow>, FormError> {
        let equal = self.equal_filter(fields);
        self.form.rows_where(&equal, &self.fields).await
    }

    /// Key fields and values with how each field compares.
    fn equal_filter(&self, fields: &[(String, Value)]) -> Vec<(String, FieldKind, Value)> {
        fields
            .iter()
            .map(|(name, value)| {
                let kind = self
                    .key_fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map_or(FieldKind::Text, |(_, kind)| *kind);
                (name.clone(), kind, value.clone())
            })
            .collect()
    }

    /// Whether the form holds any record whose key fields take these values
    /// (e.g. any record of a month): one read of one record.
    pub(crate) async fn holds_any(&self, fields: &[(String, Value)]) -> Result<bool, FormError> {
        let equal = self.equal_filter(fields);
        self.form.holds_any(&equal, &self.key_names).await
    }

    /// The form's records with these keys, every mapped field.
    pub(crate) async fn rows_with_keys(
        &self,
        keys: &[Vec<Value>],
    ) -> Result<Vec<Map<String, Value>>, FormError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.form
            .find_by_keys(&self.key_fields, keys, &self.fields)
            .await
    }

    /// Commits records found in the form as they are (a rerun found them equal).
    pub async fn adopt(&self, month: Month, written: Vec<Written>) -> Result<(), WriteError> {
        Ok(self.commit(month, written, None).await?)
    }

    /// Deletes extra copies of records by their ids; how many Jiandaoyun deleted.
    pub async fn delete_copies(&self, ids: &[String]) -> Result<u64, WriteError> {
        let mut deleted = 0;
        for chunk in ids.chunks(MAX_BATCH) {
            deleted += self.form.delete(chunk).await?;
        }
        Ok(deleted)
    }

    /// The form's id of the records with these keys, by key text (the lowest id
    /// when a key is there twice, as for updates). Keys not in the form are absent.
    async fn ids_by_key(&self, keys: &[Vec<Value>]) -> Result<HashMap<String, String>, FormError> {
        let mut ids: HashMap<String, String> = HashMap::new();
        if keys.is_empty() {
            return Ok(ids);
        }
        for row in self
            .form
            .find_by_keys(&self.key_fields, keys, &self.key_names)
            .await?
        {
            let id = id_of(&row).to_string();
            ids.entry(self.key_of(&row))
                .and_modify(|low| {
                    if id < *low {
                        low.clone_from(&id);
                    }
                })
                .or_insert(id);
        }
        Ok(ids)
    }

    /// Fills in the ids checkpoints do not hold (records of acknowledged batches).
    /// Records no longer in the form come back apart, to be created again.
    async fn with_ids(
        &self,
        items: Vec<(Option<String>, PendingRecord)>,
    ) -> Result<(Vec<(String, PendingRecord)>, Vec<PendingRecord>), FormError> {
        let unknown: Vec<Vec<Value>> = items
            .iter()
            .filter(|(id, _)| id.is_none())
            .map(|(_, r)| key_values(r))
            .collect();
        let ids = self.ids_by_key(&unknown).await?;
        let (mut known, mut gone) = (Vec::with_capacity(items.len()), Vec::new());
        for (id, rec) in items {
            match id.or_else(|| ids.get(&key_text(&key_values(&rec))).cloned()) {
                Some(id) => known.push((id, rec)),
                None => gone.push(rec),
            }
        }
        Ok((known, gone))
    }

    async fn commit(
        &self,
        month: Month,
        written: Vec<Written>,
        settled: Option<String>,
    ) -> Result<(), StoreError> {
        if written.is_empty() && settled.is_none() {
            return Ok(());
        }
        let job = self.job.clone();
        self.store
            .call(move |s| s.commit_written(&job, month, &written, settled.as_deref(), Utc::now()))
            .await
    }

    async fn drop_pending(&self, tx: Option<String>) -> Result<(), StoreError> {
        match tx {
            Some(tx) => self.store.call(move |s| s.drop_pending(&tx)).await,
            None => Ok(()),
        }
    }

    /// Replaces the content of known records (with their form id, `None`
    /// when not known: read by key); committed per batch of updates.
    pub async fn update(
        &self,
        month: Month,
        items: Vec<(Option<String>, PendingRecord)>,
    ) -> Result<Outcome, WriteError> {
        let mut out = Outcome::default();
        let (items, mut recreate) = self.with_ids(items).await?;
        for chunk in items.chunks(MAX_BATCH) {
            let mut written = Vec::new();
            let mut fatal = None;
            for (data_id, rec) in chunk {
                match self.form.update(data_id, &rec.data).await {
                    Ok(()) => written.push(Written {
                        key: rec.key.clone(),
                        data_id: Some(data_id.clone()),
                        content_hash: rec.content_hash.clone(),
                    }),
                    Err(FormError::Rejected {
                        class: Class::NotFound,
                        ..
                    }) => recreate.push(rec.clone()),
                    Err(e) if e.is_fatal() => {
                        fatal = Some(e);
                        break;
                    }
                    Err(e) => out.failed.push((rec.key.clone(), e.to_string())),
                }
            }
            out.updated += written.len() as u64;
            self.commit(month, written, None).await?;
            if let Some(e) = fatal {
                return Err(e.into());
            }
        }
        if !recreate.is_empty() {
            tracing::info!(job = %self.job, %month, records = recreate.len(),
                "records deleted from the form are created again");
            let keys: Vec<String> = recreate.iter().map(|r| r.key.clone()).collect();
            let job = self.job.clone();
            self.store
                .call(move |s| s.delete_checkpoints(&job, month, &keys))
                .await?;
            out.absorb(Box::pin(self.create(month, recreate, InForm::Unknown)).await?);
        }
        Ok(out)
    }
}

impl Writer {
    /// Deletes records (key, form id: `None` when not known, read by key) from
    /// the form and forgets them (`rerun --prune`). Returns how many Jiandaoyun
    /// confirmed deleted.
    pub async fn delete(
        &self,
        month: Month,
        records: Vec<(String, Option<String>)>,
    ) -> Result<u64, WriteError> {
        let unknown: Vec<Vec<Value>> = records
            .iter()
            .filter(|(_, id)| id.is_none())
            .filter_map(|(key, _)| serde_json::from_str(key).ok())
            .collect();
        let found = self.ids_by_key(&unknown).await?;
        let mut deleted = 0;
        for chunk in records.chunks(MAX_BATCH) {
            // A record whose id is neither stored nor in the form is gone already.
            let ids: Vec<String> = chunk
                .iter()
                .filter_map(|(key, id)| {
                    id.clone()
                        .or_else(|| found.get(&canonical_key(key)).cloned())
                })
                .collect();
            if !ids.is_empty() {
                deleted += self.form.delete(&ids).await?;
            }
            let keys: Vec<String> = chunk.iter().map(|(k, _)| k.clone()).collect();
            let job = self.job.clone();
            self.store
                .call(move |s| s.delete_checkpoints(&job, month, &keys))
                .await?;
        }
        Ok(deleted)
    }
}

/// A stored record key as [`key_text`] writes it (the mapping writes keys in its
/// own canonical form; whole numbers may differ).
pub(crate) fn canonical_key(key: &str) -> String {
    serde_json::from_str::<Vec<Value>>(key).map_or_else(|_| key.to_string(), |v| key_text(&v))
}

/// The id of a record read back from the form (`None`: it has none).
fn form_id(row: &Map<String, Value>) -> Option<String> {
    Some(id_of(row))
        .filter(|id| !id.is_empty())
        .map(str::to_string)
}

pub(crate) fn id_of(row: &Map<String, Value>) -> &str {
    row.get("_id").and_then(Value::as_str).unwrap_or("")
}
