//! An in-memory [`Form`] with scripted faults, for unit tests of the write
//! protocol: records live in a `Vec`, each create call takes the next scripted
//! answer, and a "kill" makes one step hang (after saying so) so that a test
//! can drop the writer there.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::http::codes::Class;
use crate::target::jiandaoyun::wire;
use crate::target::{
    BeforeSend, BoxFuture, Created, FieldKind, Form, FormError, FormRow, Widget, WriteData,
};

const CREATE: &str = "Memory create";

/// What one create call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Stores every record and says so.
    Ack,
    /// Stores the first `n` records and answers that `n` were created.
    Short(usize),
    /// Stores every record, then answers like a gateway's 502 (no answer).
    StoredThen502,
    /// Stores nothing; the connection dropped (or the request timed out).
    Dropped,
    /// Stores nothing: the transaction id was used before.
    IdSpent,
}

/// Where the form stops answering, to stand for a kill at that step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// At the look-up before a batch is written ahead.
    Lookup,
    /// In the create call, before the batch is marked in flight.
    BeforeMark,
    /// After the mark, before the request reached the form.
    AfterMark,
    /// After the form stored the batch, before it answered.
    AfterStore,
}

#[derive(Default)]
struct State {
    rows: Vec<FormRow>,
    next_id: u64,
    /// Answers of the next create calls; `Ack` once it is empty.
    script: VecDeque<Answer>,
    /// Records with one of these values in a field are refused.
    bad: HashSet<String>,
    kill: Option<Kill>,
    /// Transaction ids of the create calls, in order.
    creates: Vec<String>,
    updates: usize,
    deletes: usize,
    /// Read calls: look-ups by key, month reads, month checks.
    reads: usize,
}

pub struct MemoryForm {
    state: Mutex<State>,
    killed: Notify,
    window: Duration,
}

impl Default for MemoryForm {
    fn default() -> Self {
        MemoryForm {
            state: Mutex::default(),
            killed: Notify::new(),
            window: Duration::from_millis(30),
        }
    }
}

fn get<'r>(row: &'r FormRow, field: &str) -> &'r Value {
    row.get(field).unwrap_or(&Value::Null)
}

impl MemoryForm {
    pub fn new() -> Arc<MemoryForm> {
        Arc::new(MemoryForm::default())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked holding the lock has failed already.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answers of the next create calls, in order.
    pub fn script(&self, answers: &[Answer]) {
        self.state().script.extend(answers.iter().copied());
    }

    /// Refuses every create batch holding a record with this value.
    pub fn refuse(&self, value: &str) {
        self.state().bad.insert(value.to_string());
    }

    pub fn kill_at(&self, kill: Option<Kill>) {
        self.state().kill = kill;
    }

    /// Resolves once the form reached its kill step.
    pub async fn killed(&self) {
        self.killed.notified().await;
    }

    /// A record already in the form (bare values); its id.
    pub fn insert(&self, fields: Value) -> String {
        let mut s = self.state();
        s.next_id += 1;
        let id = format!("id{:04}", s.next_id);
        let mut row = match fields {
            Value::Object(row) => row,
            _ => Map::new(),
        };
        row.insert("_id".into(), Value::String(id.clone()));
        s.rows.push(row);
        id
    }

    pub fn rows(&self) -> Vec<FormRow> {
        self.state().rows.clone()
    }

    /// How many records hold `value` in `field`.
    pub fn count(&self, field: &str, value: &Value) -> usize {
        let s = self.state();
        s.rows.iter().filter(|r| get(r, field) == value).count()
    }

    pub fn creates(&self) -> Vec<String> {
        self.state().creates.clone()
    }

    pub fn updates(&self) -> usize {
        self.state().updates
    }

    pub fn deletes(&self) -> usize {
        self.state().deletes
    }

    /// How many reads (look-ups by key, month reads and checks) were made.
    pub fn reads(&self) -> usize {
        self.state().reads
    }

    fn count_read(&self) {
        self.state().reads += 1;
    }

    /// Hangs for good when the form is to be killed at `at`.
    async fn stop_if(&self, at: Kill) {
        if self.state().kill == Some(at) {
            self.killed.notify_one();
            std::future::pending::<()>().await;
        }
    }

    fn store(&self, records: &[&WriteData]) {
        for r in records {
            self.insert(Value::Object(wire::decode(r).unwrap_or_default()));
        }
    }

    fn select(&self, keep: impl Fn(&FormRow) -> bool) -> Vec<FormRow> {
        self.state()
            .rows
            .iter()
            .filter(|r| keep(r))
            .cloned()
            .collect()
    }

    async fn create(
        &self,
        tx: &str,
        records: &[&WriteData],
        before_send: &BeforeSend<'_>,
    ) -> Result<Created, FormError> {
        self.stop_if(Kill::BeforeMark).await;
        before_send().await.map_err(|reason| FormError::NotMarked {
            endpoint: CREATE.into(),
            reason,
        })?;
        self.stop_if(Kill::AfterMark).await;
        let (answer, refused) = {
            let mut s = self.state();
            s.creates.push(tx.to_string());
            let refused = records.iter().any(|r| {
                wire::decode(r)
                    .unwrap_or_default()
                    .values()
                    .any(|v| v.as_str().is_some_and(|v| s.bad.contains(v)))
            });
            (s.script.pop_front().unwrap_or(Answer::Ack), refused)
        };
        if refused {
            return Err(FormError::Rejected {
                endpoint: CREATE.into(),
                code: 1,
                message: "bad value".into(),
                class: Class::Record,
            });
        }
        let ambiguous = |answered| FormError::Ambiguous {
            endpoint: CREATE.into(),
            reason: "scripted".into(),
            answered,
        };
        let stored = match answer {
            Answer::Ack | Answer::StoredThen502 => records.len(),
            Answer::Short(n) => n.min(records.len()),
            Answer::Dropped | Answer::IdSpent => 0,
        };
        self.store(&records[..stored]);
        self.stop_if(Kill::AfterStore).await;
        match answer {
            Answer::Ack | Answer::Short(_) => Ok(Created {
                success_count: stored as u64,
                success_ids: Vec::new(),
            }),
            Answer::StoredThen502 | Answer::Dropped => Err(ambiguous(false)),
            Answer::IdSpent => Err(FormError::IdSpent {
                endpoint: CREATE.into(),
                code: 0,
                message: "transaction id used".into(),
            }),
        }
    }
}

impl Form for MemoryForm {
    fn in_flight_window(&self) -> Duration {
        self.window
    }

    fn fields(&self) -> BoxFuture<'_, Result<Vec<Widget>, FormError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn find_by_keys<'a>(
        &'a self,
        key_fields: &'a [(String, FieldKind)],
        keys: &'a [Vec<Value>],
        _fields: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<FormRow>, FormError>> {
        Box::pin(async move {
            self.stop_if(Kill::Lookup).await;
            self.count_read();
            Ok(self.select(|row| {
                key_fields
                    .iter()
                    .enumerate()
                    .all(|(i, (field, _))| keys.iter().any(|k| k.get(i) == Some(get(row, field))))
            }))
        })
    }

    fn rows_where<'a>(
        &'a self,
        equal: &'a [(String, FieldKind, Value)],
        _fields: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<FormRow>, FormError>> {
        Box::pin(async move {
            self.count_read();
            Ok(self.select(|row| equal.iter().all(|(f, _, v)| get(row, f) == v)))
        })
    }

    fn holds_any<'a>(
        &'a self,
        equal: &'a [(String, FieldKind, Value)],
        _fields: &'a [String],
    ) -> BoxFuture<'a, Result<bool, FormError>> {
        Box::pin(async move {
            self.count_read();
            Ok(self
                .state()
                .rows
                .iter()
                .any(|row| equal.iter().all(|(f, _, v)| get(row, f) == v)))
        })
    }

    fn create_batch<'a>(
        &'a self,
        transaction_id: &'a str,
        records: &'a [&'a WriteData],
        before_send: &'a BeforeSend<'a>,
    ) -> BoxFuture<'a, Result<Created, FormError>> {
        Box::pin(self.create(transaction_id, records, before_send))
    }

    fn update<'a>(
        &'a self,
        id: &'a str,
        data: &'a WriteData,
    ) -> BoxFuture<'a, Result<(), FormError>> {
        Box::pin(async move {
            let mut s = self.state();
            s.updates += 1;
            let row = s
                .rows
                .iter_mut()
                .find(|r| r.get("_id").and_then(Value::as_str) == Some(id));
            match row {
                Some(row) => {
                    row.extend(wire::decode(data).unwrap_or_default());
                    Ok(())
                }
                None => Err(FormError::Rejected {
                    endpoint: "Memory update".into(),
                    code: 4001,
                    message: "no such record".into(),
                    class: Class::NotFound,
                }),
            }
        })
    }

    fn delete<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<u64, FormError>> {
        Box::pin(async move {
            let mut s = self.state();
            s.deletes += 1;
            let before = s.rows.len();
            s.rows.retain(|r| {
                !ids.iter()
                    .any(|id| r.get("_id").and_then(Value::as_str) == Some(id))
            });
            Ok((before - s.rows.len()) as u64)
        })
    }

    fn decode(&self, data: &WriteData) -> Option<Map<String, Value>> {
        wire::decode(data)
    }
}
