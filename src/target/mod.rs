//! Where records are written: the [`Form`] a job's records go to, and the types
//! it speaks. The write protocol (`pipeline::write`) sees only this trait; each
//! vendor's codes, filters and wire format stay in its own folder
//! (`jiandaoyun/`). `docs/ARCHITECTURE.md`, "Adding a second target", says what a
//! new one must provide.

pub mod jiandaoyun;
#[cfg(test)]
pub mod memory;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::http::codes::Class;

/// A future a [`Form`] method returns: boxed, so that the writer can hold an
/// `Arc<dyn Form>` (a trait with `async fn` cannot be made into an object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What [`Form::create_batch`] runs before every attempt: the writer records
/// there that the batch may be in flight; when it fails, nothing is sent.
pub type BeforeSend<'a> = dyn Fn() -> BoxFuture<'a, Result<(), String>> + Send + Sync + 'a;

/// A record as a form reads it back: field name → value, its id under `_id`.
pub type FormRow = Map<String, Value>;

/// A call to a form that did not succeed. `endpoint` names the vendor and the
/// call (`Jiandaoyun data/list`), as every message shows it.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error("{endpoint}: code {code} ({message}) — {hint}")]
    Fatal {
        endpoint: String,
        code: i64,
        message: String,
        hint: &'static str,
    },
    /// The request was refused for its content (a bad value, a missing record).
    #[error("{endpoint}: code {code} ({message})")]
    Rejected {
        endpoint: String,
        code: i64,
        message: String,
        class: Class,
    },
    /// A create refused because its transaction id was used before: the batch
    /// may have been stored by that earlier use.
    #[error("{endpoint}: code {code} ({message})")]
    IdSpent {
        endpoint: String,
        code: i64,
        message: String,
    },
    /// A write whose outcome is unknown: it may or may not have been stored.
    /// `answered`: the server did answer (HTTP 429, an unreadable 2xx), so the
    /// request is over; otherwise (no answer, a gateway's 5xx) it may still be
    /// running there.
    #[error("{endpoint}: outcome unknown ({reason})")]
    Ambiguous {
        endpoint: String,
        reason: String,
        answered: bool,
    },
    #[error("{endpoint}: gave up after {attempts} attempts; last error: {last}")]
    Exhausted {
        endpoint: String,
        attempts: u32,
        last: String,
    },
    #[error("{endpoint}: unexpected answer: {message}")]
    Protocol { endpoint: String, message: String },
    /// The batch could not be marked as in flight, so it was not sent.
    #[error("{endpoint}: not sent: {reason}")]
    NotMarked { endpoint: String, reason: String },
}

impl FormError {
    /// Errors after which no further call to the form can succeed.
    pub fn is_fatal(&self) -> bool {
        matches!(self, FormError::Fatal { .. })
    }
}

/// A field of the form, as its fields list names it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Widget {
    /// The field's alias (may be empty).
    #[serde(default)]
    pub name: String,
    /// The field's own id (`_widget_…`).
    #[serde(default, rename = "widgetName")]
    pub widget_name: String,
    #[serde(default)]
    pub label: String,
    /// The vendor's field type (`text`, `number`, `datetime`, …).
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// The form's fields as a writer sees them.
pub struct FormFields {
    /// Key field names (as the mapping names them) with how their form field
    /// compares in a look-up.
    pub key_fields: Vec<(String, FieldKind)>,
    /// Every mapped field, read back to compare content.
    pub fields: Vec<String>,
    /// Fields that change on every run, not compared with the form.
    pub volatile: Vec<String>,
    /// Mapped name → the name records read back carry, where they differ: a
    /// field named by its `_widget_…` id comes back under its alias.
    pub read_as: HashMap<String, String>,
}

/// Writes rows in a target's write format. Built once per run from the
/// mapping's field names, so that a row costs only its values.
pub trait RecordFormat: Send + Sync {
    /// `values` in the order of the names the format was built with.
    fn encode(&self, values: &[Value]) -> WriteData;
}

/// The write format of the job's target. Registering a second target adds its
/// format here (docs/ARCHITECTURE.md, "Adding a second target").
pub fn record_format(field_names: &[String]) -> std::sync::Arc<dyn RecordFormat> {
    std::sync::Arc::new(jiandaoyun::wire::Encoder::new(field_names))
}

/// How a key field's values compare in a look-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Number,
    Datetime,
}

/// What a create call answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Created {
    pub success_count: u64,
    pub success_ids: Vec<String>,
}

/// A record in the target's write format, kept as JSON text: encoded once when
/// mapped (`jiandaoyun::wire::Encoder`), then saved with its pending batch and
/// sent as it is, never rebuilt or copied value by value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WriteData(
    /// Built unchecked only by the target's encoder, which writes the text.
    pub(crate) Box<RawValue>,
);

impl PartialEq for WriteData {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl WriteData {
    /// `text` must be a JSON object; anything else becomes `null`, which the
    /// target refuses rather than storing a wrong record.
    pub fn from_text(text: String) -> WriteData {
        WriteData(RawValue::from_string(text).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }

    pub fn from_value(value: &Value) -> WriteData {
        WriteData::from_text(value.to_string())
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The encoded record as a JSON value (only to compare with a read-back).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

/// A form records are written to. Object-safe: the writer holds an
/// `Arc<dyn Form>`, Jiandaoyun in a run, an in-memory form in unit tests.
pub trait Form: Send + Sync {
    /// How long after a create is sent it may still commit when its answer
    /// never came: the request timeout plus the target's margin.
    fn in_flight_window(&self) -> Duration;

    /// The form's fields; also proves the credentials and the form are right.
    fn fields(&self) -> BoxFuture<'_, Result<Vec<Widget>, FormError>>;

    /// Records whose key fields take the given values, with `fields` (all when
    /// empty). The caller matches whole keys.
    fn find_by_keys<'a>(
        &'a self,
        key_fields: &'a [(String, FieldKind)],
        keys: &'a [Vec<Value>],
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<FormRow>, FormError>>;

    /// Every record whose fields equal the given values (e.g. one month's
    /// records), with `fields` (all when empty).
    fn rows_where<'a>(
        &'a self,
        equal: &'a [(String, FieldKind, Value)],
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<FormRow>, FormError>>;

    /// Whether any record's fields equal the given values (e.g. whether the
    /// form holds anything of a month), at the cost of one read of one record.
    /// `fields` are those the answer carries (all when empty).
    fn holds_any<'a>(
        &'a self,
        equal: &'a [(String, FieldKind, Value)],
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<bool, FormError>>;

    /// Creates up to [`MAX_BATCH`] records under `transaction_id`. An unclear
    /// outcome is [`FormError::Ambiguous`] (never retried here); `before_send`
    /// runs before every attempt.
    fn create_batch<'a>(
        &'a self,
        transaction_id: &'a str,
        records: &'a [&'a WriteData],
        before_send: &'a BeforeSend<'a>,
    ) -> BoxFuture<'a, Result<Created, FormError>>;

    /// Replaces a record's mapped fields (idempotent: retried on unclear failures).
    fn update<'a>(
        &'a self,
        id: &'a str,
        data: &'a WriteData,
    ) -> BoxFuture<'a, Result<(), FormError>>;

    /// Deletes up to [`MAX_BATCH`] records; how many the form confirmed.
    fn delete<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<u64, FormError>>;

    /// The fields of an encoded record with their bare values, to compare with
    /// a record read back; `None` when `data` is not a record.
    fn decode(&self, data: &WriteData) -> Option<Map<String, Value>>;
}

/// Records per create or delete call.
pub const MAX_BATCH: usize = jiandaoyun::MAX_BATCH;
