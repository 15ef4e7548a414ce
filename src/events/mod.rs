//! Vendor events that tell which employee-months changed (README "Re-pulls on
//! change"; docs/vendors/events.md).
//!
//! A source turns what its vendor pushes into [`Change`]s (DingTalk Stream and
//! HTTP push, WeCom callbacks, under `source/<vendor>/`) and hands each to a
//! [`Sink`] before it acknowledges the event: the sink commits the marks to
//! SQLite first, so a crash never loses one. The daemon re-pulls the marked
//! employee-months after the job's `delay`.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, NaiveDate, Utc};

pub use attendsync_crypto as crypto;

pub mod config;
pub mod inbox;
pub mod lookups;
pub use config::{CurrentMonth, Delivery, EventsConfig};

/// Which day an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Day {
    /// A calendar date as the vendor wrote it (`workDate`, a leave's days).
    Date(NaiveDate),
    /// An instant (a punch's `checkTime`), placed in the job's timezone.
    At(DateTime<Utc>),
}

/// One day of one employee an event says changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    /// The source's userid.
    pub employee: String,
    pub day: Day,
}

/// What one verified vendor event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The vendor's id of the event: a redelivery or duplicate carries the
    /// same one and marks nothing twice.
    pub event_id: String,
    /// The event's type as the vendor names it (`attendance_check_record`,
    /// `sys_approval_change`, …), counted on the status surfaces.
    pub kind: String,
    /// The days it names.
    pub touched: Vec<Touched>,
    /// Approvals whose employee and days must be looked up first (a DingTalk
    /// process instance id, a WeCom `sp_no`): stored with the event, looked up
    /// after it is acknowledged.
    pub lookups: Vec<String>,
}

/// What recording a change came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Its marks (or lookups) are committed.
    New,
    /// Its event id was seen before: nothing changed.
    Duplicate,
    /// It touches nothing the job re-pulls (the month in progress with
    /// `current_month = "scheduled"`, a month past `max_age_months`, an event
    /// type that says nothing about attendance); committed as seen.
    Ignored,
}

/// Why a change could not be recorded: the event must not be acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("could not record the event: {0}")]
pub struct SinkError(pub String);

pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<Recorded, SinkError>> + Send + 'a>>;

/// Where verified events go. `record` returns once the change is durable.
pub trait Sink: Send + Sync {
    fn record(&self, change: Change) -> SinkFuture<'_>;
    /// The job (or jobs) it records for, for log lines.
    fn label(&self) -> &str {
        "events"
    }
}

/// The jobs that share one vendor app: the vendor pushes each event once (to
/// one URL, over one of the Stream connections), so every job hears it and
/// marks what its own window takes. New when any job took it as new.
pub struct FanOut {
    pub sinks: Vec<std::sync::Arc<dyn Sink>>,
    pub label: String,
}

impl Sink for FanOut {
    fn record(&self, change: Change) -> SinkFuture<'_> {
        Box::pin(async move {
            let mut outcome = Recorded::Duplicate;
            for sink in &self.sinks {
                match sink.record(change.clone()).await? {
                    Recorded::New => outcome = Recorded::New,
                    Recorded::Ignored if outcome == Recorded::Duplicate => {
                        outcome = Recorded::Ignored
                    }
                    _ => {}
                }
            }
            Ok(outcome)
        })
    }

    fn label(&self) -> &str {
        &self.label
    }
}

/// How a job's event connection stands, for `status`, the page and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Not started yet, or opening a connection.
    Connecting,
    /// A Stream connection is open (since when).
    Connected { since: DateTime<Utc> },
    /// The connection failed; the next try is after a backoff.
    Retrying { attempt: u32, error: String },
    /// HTTP push or WeCom callbacks: events come to the daemon's listener.
    Listening,
    /// The daemon is stopping.
    Stopped,
}

/// A vendor's call to the daemon's listener at `/callbacks/<vendor>/<job>`.
pub struct CallbackRequest {
    pub method: axum::http::Method,
    /// The query carries the signature, timestamp and nonce.
    pub uri: axum::http::Uri,
    pub body: axum::body::Bytes,
}

/// The answer to a [`CallbackRequest`].
pub struct CallbackReply {
    pub status: axum::http::StatusCode,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

pub type CallbackFuture = Pin<Box<dyn Future<Output = CallbackReply> + Send>>;

/// A job's callback endpoint, as its source answers it: the listener knows
/// no vendor, only `(vendor, job)` and this.
#[derive(Clone)]
pub struct CallbackRoute {
    /// The path segment after `/callbacks/`: `dingtalk`, `wecom`.
    pub vendor: &'static str,
    pub handler: std::sync::Arc<dyn Fn(CallbackRequest) -> CallbackFuture + Send + Sync>,
}

impl CallbackRoute {
    /// A route whose `handle` gets the request's query read as `Q` (one that
    /// does not read is `Q::default()`: it lacks the signature, and the
    /// handler refuses it) and answers a status and a body of `content_type`.
    pub fn new<Q, H, F>(
        vendor: &'static str,
        content_type: &'static str,
        handle: H,
    ) -> CallbackRoute
    where
        Q: serde::de::DeserializeOwned + Default + Send + 'static,
        H: Fn(Q, CallbackRequest) -> F + Send + Sync + 'static,
        F: Future<Output = (axum::http::StatusCode, Vec<u8>)> + Send + 'static,
    {
        let handler = move |request: CallbackRequest| {
            let query = axum::extract::Query::<Q>::try_from_uri(&request.uri)
                .map(|q| q.0)
                .unwrap_or_default();
            let answer = handle(query, request);
            let reply = async move {
                let (status, body) = answer.await;
                CallbackReply {
                    status,
                    content_type,
                    body,
                }
            };
            Box::pin(reply) as CallbackFuture
        };
        CallbackRoute {
            vendor,
            handler: std::sync::Arc::new(handler),
        }
    }
}

/// The callback routes the daemon serves, by `(vendor, job)`.
pub type CallbackRoutes =
    std::sync::Arc<std::sync::RwLock<std::collections::HashMap<(String, String), CallbackRoute>>>;
