//! Sources: where attendance records come from. Each produces one JSON record per
//! employee and month (README "Mapping files"), in chunks, so memory stays flat.
//! The sync engine sees only the [`Source`] trait; each vendor's client, wire
//! types, record schema and record assembly stay in its folder (`wecom/`,
//! `dingtalk/`), and [`open`] (`registry.rs`) is where each is registered.
//! `docs/ARCHITECTURE.md`, "Adding a third source", says what a new one must
//! provide.

pub mod config;
pub mod dingtalk;
mod registry;
pub mod wecom;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::budget::Meter;
use crate::mapping::Node;
use crate::month::Month;
use crate::roster::UserIds;

pub use registry::{check_events, event_parts, open, EventParts};

/// A source failure that stops the job (or the month, for `Exhausted`).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{vendor} {endpoint}: errcode {code} ({message}) — {hint}")]
    Api {
        vendor: &'static str,
        endpoint: String,
        code: i64,
        message: String,
        hint: &'static str,
    },
    #[error("{vendor} {endpoint}: gave up after {attempts} attempts; last error: {last}")]
    Exhausted {
        vendor: &'static str,
        endpoint: String,
        attempts: u32,
        last: String,
    },
    #[error("{vendor} {endpoint}: unexpected answer: {message}")]
    Protocol {
        vendor: &'static str,
        endpoint: String,
        message: String,
    },
    /// The job's configuration does not fit what the vendor reports (e.g. an
    /// unknown DingTalk report column); the text says what to change.
    #[error("{0}")]
    Config(String),
    /// The run's plan stopped pulling before the month's metered calls would
    /// pass the budget (`left` calls were left in `period` when it started).
    #[error(
        "stopped before exceeding the monthly call budget ({budget}): {left} calls were left in {period} (Beijing time) \
         and retries used some of them; the rest waits for the next run (the budget starts fresh next calendar month)"
    )]
    BudgetSpent {
        budget: u64,
        left: u64,
        period: Month,
    },
    /// A metered call not sent: the budget's cap, a shutdown, or the count
    /// could not be written.
    #[error(transparent)]
    Budget(#[from] crate::budget::MeterError),
}

impl SourceError {
    /// True when retrying later may help: the month is marked failed, the job goes on.
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Exhausted { .. })
    }
}

/// A future a [`Source`] method returns: boxed, so that a run can hold an
/// `Arc<dyn Source>` (a trait with `async fn` cannot be made into an object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One employee's record for one month, as the source gave it.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub employee: String,
    /// Built by attendsync from the vendor's answers (DingTalk's sums).
    pub record: Value,
}

/// What one pull of a chunk of employees produced.
#[derive(Debug, Default)]
pub struct Pulled {
    /// Records built by attendsync (DingTalk).
    pub records: Vec<SourceRecord>,
    /// Records still inside the vendor's answers (WeCom's), read where they are
    /// mapped: one value per chunk, so a record is read once, in place.
    pub unread: Option<Box<dyn Unread>>,
    /// Employees the source rejected, with the reason.
    pub failed: Vec<(String, String)>,
    /// Employees asked for but absent from the answer (left, out of scope, no rule).
    pub absent: Vec<String>,
    /// Set when the pull had to stop partway (e.g. the monthly quota ran out):
    /// `records` holds what was pulled before, which is still written.
    pub stopped: Option<SourceError>,
}

impl Pulled {
    /// The records left in the vendor's answers, read: each asked employee's
    /// record found in them, and those asked for and not found.
    pub fn read_unread(&self) -> Result<ReadRecords<'_>, SourceError> {
        match &self.unread {
            Some(unread) => unread.read(&self.failed),
            None => Ok(ReadRecords::default()),
        }
    }
}

/// A chunk's records kept in the vendor's answers as they came, for a source
/// whose answers are cheaper read once where they are mapped than built into
/// values first (WeCom's `getcheckin_monthdata`).
pub trait Unread: Debug + Send {
    /// Each employee asked for, with their record read in place from the
    /// answers, or as absent. Employees in `failed` are neither found nor absent.
    fn read(&self, failed: &[(String, String)]) -> Result<ReadRecords<'_>, SourceError>;
}

/// The records of an [`Unread`], read.
#[derive(Debug, Default)]
pub struct ReadRecords<'a> {
    /// Each employee's record, in the order they were asked for.
    pub found: Vec<(&'a str, Node<'a>)>,
    /// Employees asked for whose record is not in the answers (left, out of
    /// scope, no rule).
    pub absent: Vec<&'a str>,
}

/// The source of one job: the one interface the sync engine sees. Object-safe
/// (boxed futures, as [`crate::target::Form`]): a run holds an `Arc<dyn Source>`
/// made by [`open`]. `docs/ARCHITECTURE.md`, "Adding a third source", says what a
/// new one must provide.
pub trait Source: Send + Sync {
    /// The job file's name of the source (`[source] type`).
    fn kind(&self) -> &'static str;

    /// Employees per [`Source::pull`].
    fn chunk_size(&self) -> usize;

    /// Employees of the first chunk of a month whose employees are still being
    /// listed. A source that calls per employee starts pulling with the first
    /// few found instead of waiting for a whole chunk (one more, smaller write
    /// batch); one that calls per chunk keeps whole chunks.
    fn first_chunk_size(&self) -> usize {
        self.chunk_size()
    }

    /// Proves the credentials before any other work.
    fn login(&self) -> BoxFuture<'_, Result<(), SourceError>>;

    /// The job's employees, sorted and de-duplicated.
    fn employees(&self) -> BoxFuture<'_, Result<Vec<String>, SourceError>>;

    /// Sends the employees' ids as they are found, each once, so that pulling can
    /// start before the whole organisation is listed.
    /// Returns every employee sent, in order.
    fn discover<'a>(
        &'a self,
        tx: &'a mpsc::Sender<Vec<String>>,
    ) -> BoxFuture<'a, Result<UserIds, SourceError>>;

    /// Fetches, while the organisation is listed, what the pull of every
    /// chunk needs (DingTalk's report columns), so that it is there when the
    /// first chunk is. Called only when a chunk will be pulled; a failure is
    /// left for the first chunk's pull to meet again and report.
    fn prepare_pull(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// One chunk of employees' records for `month`, as of `now`.
    fn pull<'a>(
        &'a self,
        month: Month,
        employees: &'a [String],
        now: DateTime<Utc>,
        tz: Tz,
    ) -> BoxFuture<'a, Result<Pulled, SourceError>>;

    /// Whether an employee the source was asked for and left out of its answer
    /// is known to have no record this month (and so may be pruned): only where
    /// the employees come from the directory of the same run (ARCHITECTURE.md,
    /// "A record is gone from the source only on the source's word").
    fn absence_proves_gone(&self) -> bool;

    /// Checks the source's configuration against the vendor (for `check
    /// --remote`); returns warnings. Calls it makes to a metered source are
    /// metered like a run's.
    fn check_remote(&self) -> BoxFuture<'_, Result<Vec<String>, SourceError>>;

    /// The source's call quota, for a source whose calls are metered against a
    /// monthly budget; `None` otherwise.
    fn metering(&self) -> Option<&dyn Metered> {
        None
    }

    /// Logs what the job should know about the months a run syncs (e.g. values
    /// the vendor no longer reports for old days), before anything is pulled.
    fn warn_months(&self, _job: &str, _months: &[Month], _now: DateTime<Utc>, _tz: Tz) {}
}

/// What a metered source's calls cost, from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallCosts {
    /// Metered calls one employee-month costs.
    pub per_employee: u32,
    /// Metered calls a run costs whatever its head count (a lookup made once).
    pub fixed: u64,
    /// The job's monthly budget of metered calls.
    pub monthly_budget: u64,
}

/// A source whose calls are metered against a monthly quota: the run plans
/// its employees within the budget (`budget.rs`) and sets the hard cap.
pub trait Metered: Send + Sync {
    fn costs(&self) -> CallCosts;

    /// Counts every later metered attempt against `meter`, refusing the ones
    /// it refuses.
    fn set_meter(&self, meter: Arc<Meter>);
}
