//! DingTalk (钉钉), old-style `oapi` APIs (docs/vendors/dingtalk.md "The calls"):
//! departments with `listsub` and users with `v2/user/list` (contacts, not
//! metered), the report columns once per run with `getattcolumns`, then per
//! employee and month `getcolumnval` (≤20 column ids per call) and
//! `getleavetimebynames` (≤20 leave names per call), whose daily values are summed
//! into one record (docs/vendors/dingtalk.md "monthly record"):
//!
//! ```json
//! { "userid": "…", "name": "…", "departments": ["…"], "job_number": "…", "title": "…",
//!   "columns": { "出勤天数": 21, "工作时长": 10105.5 }, "leave": { "年假": 1 } }
//! ```
//!
//! Department names are those `listsub` reports; the root's own name is not
//! among them, so a user of the root department has no name for it.
//!
//! Every attendance call is metered against the org's monthly quota (standard
//! edition: 5,000); the client counts them (see [`DingtalkClient::metered_calls`])
//! and adds them to the run's [`CallStats`] ([`CallStats::metered`]).
//!
//! This file holds the client and its settings; the rest is split by concern:
//! `transport.rs` (the request path: token, pacing, IP ban, body encoding,
//! retries), `wire.rs` (reading answers, encoding bodies), `directory.rs` and
//! `people.rs` (the department and user walk), `columns.rs` (report columns and
//! leave names), `report.rs` (the per-employee pull) with `sums.rs` (summing a
//! month of daily values), `rate.rs` (default rates, calls under way at once) and
//! `metering.rs` (metered calls: their count per employee, the hard cap and the
//! job's budget), `schema.rs` (what the record can hold). [`Dingtalk`], the
//! [`Source`] the sync engine sees, is below.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::mpsc;

use super::{BoxFuture, CallCosts, Metered, Pulled, Source, SourceError};
use crate::http::pace::Pacer;
use crate::http::retry::RetryConfig;
use crate::http::token::TokenCache;
use crate::http::{CallStats, Url};
use crate::month::Month;
use crate::roster::UserIds;
use crate::secret::Secret;
use crate::source::config::Scope;
use config::DingtalkSource;

pub mod approval;
mod columns;
pub mod config;
mod directory;
pub mod events;
pub mod failed;
mod metering;
mod people;
pub mod push;
mod rate;
pub mod receive;
mod report;
mod schema;
pub mod stream;
mod sums;
#[cfg(test)]
mod testkit;
mod transport;
mod wire;

pub use columns::ResolvedColumn;
pub use metering::call_costs;
pub use schema::dingtalk_month;

use columns::ReportColumn;
use people::Directory;
use rate::{in_flight, DEFAULT_LIMITS, IP_LIMIT};
use transport::IP_BAN_MIN_WAIT;

const VENDOR: &str = "DingTalk";
pub const GETTOKEN: &str = "gettoken";
pub const LISTSUB: &str = "topapi/v2/department/listsub";
pub const USER_LIST: &str = "topapi/v2/user/list";
pub const GETATTCOLUMNS: &str = "topapi/attendance/getattcolumns";
pub const GETCOLUMNVAL: &str = "topapi/attendance/getcolumnval";
pub const GETLEAVETIME: &str = "topapi/attendance/getleavetimebynames";

/// The endpoints counted against the monthly quota (docs/vendors/dingtalk.md "Limits":
/// every attendance call; token and contacts calls are free).
const METERED_ENDPOINTS: &[&str] = &[GETATTCOLUMNS, GETCOLUMNVAL, GETLEAVETIME];
/// Column ids per `getcolumnval` call, leave names per `getleavetimebynames` call.
const MAX_PER_REPORT_CALL: usize = 20;
/// Employees per [`Source::pull`]: each is pulled on its own, so
/// this only sets how often records are handed to the writer. A full batch of
/// `data/batch_create` (100 records), so that a chunk costs one create call.
pub const EMPLOYEES_PER_CHUNK: usize = 100;
/// Employees of a chunk pulled at once, at most. The pacers set the pace; this
/// only has to cover each call's latency (at 200 calls/s per API and ~25 ms a
/// call, 5 are needed), with room for calls held up by a retry.
pub const EMPLOYEES_IN_FLIGHT: usize = 16;
/// `listsub` and `v2/user/list` calls under way at once (each API), at most.
/// The pacers set the pace; this covers the latency, with room for retries.
const DIRECTORY_IN_FLIGHT: usize = 8;
/// The root department.
const ROOT_DEPARTMENT: u64 = 1;

pub struct DingtalkClient {
    http: reqwest::Client,
    base_url: Url,
    app_key: String,
    app_secret: Secret,
    columns: Vec<String>,
    leave_names: Vec<String>,
    scope: Scope,
    tokens: TokenCache,
    pacer: std::sync::Arc<Pacer>,
    retry: RetryConfig,
    stats: Arc<CallStats>,
    metered: AtomicU64,
    /// The run's hard cap on metered calls (see `metering.rs`).
    meter: Mutex<Option<Arc<crate::budget::Meter>>>,
    /// Endpoints whose bodies are sent form-encoded (JSON otherwise).
    form: Mutex<HashSet<String>>,
    banned_until: Mutex<Option<Instant>>,
    ip_ban_floor: Duration,
    report_columns: tokio::sync::OnceCell<Arc<Vec<ReportColumn>>>,
    /// Held by the chunk starting its employees (`report.rs`).
    pull_turn: tokio::sync::Mutex<()>,
    directory: Directory,
    /// Set once a walk of the directory has started.
    walked: AtomicBool,
    /// Configured leave names already warned about (absent from an answer).
    leave_warned: Mutex<HashSet<String>>,
    /// Employees pulled at once (see [`in_flight`]).
    employees_in_flight: usize,
    /// `listsub` calls under way at once while walking the departments.
    departments_in_flight: usize,
    /// `v2/user/list` calls under way at once.
    user_pages_in_flight: usize,
}

impl DingtalkClient {
    pub fn new(http: reqwest::Client, cfg: &DingtalkSource, stats: Arc<CallStats>) -> Self {
        DingtalkClient {
            http,
            base_url: cfg.base_url.clone(),
            app_key: cfg.app_key.clone(),
            app_secret: cfg.app_secret.clone(),
            columns: cfg.columns.clone(),
            leave_names: cfg.leave_names.clone(),
            scope: cfg.scope.clone(),
            tokens: TokenCache::new(),
            pacer: Pacer::shared(&cfg.app_identity(), IP_LIMIT, DEFAULT_LIMITS, &cfg.limits),
            retry: cfg.retry,
            stats,
            metered: AtomicU64::new(0),
            meter: Mutex::new(None),
            form: Mutex::new(HashSet::new()),
            banned_until: Mutex::new(None),
            ip_ban_floor: IP_BAN_MIN_WAIT,
            report_columns: tokio::sync::OnceCell::new(),
            pull_turn: tokio::sync::Mutex::new(()),
            directory: Directory::default(),
            walked: AtomicBool::new(false),
            leave_warned: Mutex::new(HashSet::new()),
            employees_in_flight: in_flight(
                &cfg.limits,
                &[GETCOLUMNVAL, GETLEAVETIME],
                EMPLOYEES_IN_FLIGHT,
            ),
            departments_in_flight: in_flight(&cfg.limits, &[LISTSUB], DIRECTORY_IN_FLIGHT),
            user_pages_in_flight: in_flight(&cfg.limits, &[USER_LIST], DIRECTORY_IN_FLIGHT),
        }
    }
}

/// A job's DingTalk source: the client and the job's call budget.
pub struct Dingtalk {
    client: DingtalkClient,
    costs: CallCosts,
}

impl Dingtalk {
    pub fn new(http: reqwest::Client, cfg: &DingtalkSource, stats: Arc<CallStats>) -> Self {
        Dingtalk {
            client: DingtalkClient::new(http, cfg, stats),
            costs: call_costs(cfg),
        }
    }
}

impl Source for Dingtalk {
    fn kind(&self) -> &'static str {
        "dingtalk"
    }

    fn chunk_size(&self) -> usize {
        EMPLOYEES_PER_CHUNK
    }

    fn first_chunk_size(&self) -> usize {
        self.client.employees_in_flight
    }

    fn login(&self) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(self.client.login())
    }

    fn employees(&self) -> BoxFuture<'_, Result<Vec<String>, SourceError>> {
        Box::pin(self.client.employees(&self.client.scope))
    }

    fn discover<'a>(
        &'a self,
        tx: &'a mpsc::Sender<Vec<String>>,
    ) -> BoxFuture<'a, Result<UserIds, SourceError>> {
        Box::pin(self.client.discover(&self.client.scope, tx))
    }

    fn prepare_pull(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.client.ask_columns_early())
    }

    fn pull<'a>(
        &'a self,
        month: Month,
        employees: &'a [String],
        now: DateTime<Utc>,
        tz: Tz,
    ) -> BoxFuture<'a, Result<Pulled, SourceError>> {
        Box::pin(self.client.month_data(employees, month, now, tz))
    }

    /// "Absent" means DingTalk no longer knows the user: someone who left,
    /// whose past months stay.
    fn absence_proves_gone(&self) -> bool {
        false
    }

    /// Resolves `columns` to report column ids (a metered call) and warns
    /// about leave names the report does not list.
    fn check_remote(&self) -> BoxFuture<'_, Result<Vec<String>, SourceError>> {
        Box::pin(async move {
            self.client.resolve_columns().await?;
            Ok(self
                .client
                .unlisted_leave_names()
                .await?
                .into_iter()
                .map(|n| format!("leave name \"{n}\" in source.leave_names is not among the report's leave columns; check its spelling"))
                .collect())
        })
    }

    fn metering(&self) -> Option<&dyn Metered> {
        Some(self)
    }

    fn warn_months(&self, job: &str, months: &[Month], now: DateTime<Utc>, tz: Tz) {
        columns::warn_zeroed_columns(&self.client.columns, job, months, now, tz);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::dingtalk::testkit::*;

    #[tokio::test]
    async fn shipped_mapping_applies_to_a_simulator_record() {
        use crate::mapping::{Mapping, Vars};
        use crate::toml_reader::SourceFile;
        let sim = start(3, fast_sim()).await;
        let columns = [
            "出勤天数",
            "休息天数",
            "工作时长",
            "迟到次数",
            "迟到时长",
            "早退次数",
            "缺卡次数",
            "旷工天数",
        ];
        let cfg = job(&sim, &columns, &["年假", "事假", "病假", "调休"]);
        let client = client_for(&cfg);
        let employees = client.employees(&Scope::default()).await.unwrap();
        let pulled = client
            .month_data(&employees, october(), after_october(), SH)
            .await
            .unwrap();
        let file = SourceFile::new(
            "mappings/dingtalk_monthly.toml",
            include_str!("../../../mappings/dingtalk_monthly.toml"),
        );
        let mapping = match Mapping::parse(&file) {
            Ok(m) => m,
            Err(e) => panic!(
                "{}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        };
        let vars = Vars {
            month: october(),
            timezone: SH,
            job: "dingtalk_monthly".into(),
            source: "dingtalk".into(),
            synced_at: after_october(),
        };
        let record = &pulled.records[0].record;
        let row = mapping.apply(record, &vars).unwrap();
        let row = row.to_json();
        assert_eq!(row["userid"], record["userid"]);
        assert_eq!(row["name"], record["name"]);
        assert_eq!(row["month"], "2026-10");
        let departments: Vec<&str> = record["departments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        assert_eq!(row["departments"], json!(departments.join(";")));
        assert_eq!(row["attendance_days"], record["columns"]["出勤天数"]);
        assert_eq!(row["annual_leave"], record["leave"]["年假"]);
        // Every configured column and leave type is mapped.
        let mapped: Vec<String> = mapping.fields().into_iter().map(|f| f.from).collect();
        for c in &columns {
            assert!(mapped.iter().any(|f| f.contains(c)), "{c}");
        }
        for l in ["年假", "事假", "病假", "调休"] {
            assert!(mapped.iter().any(|f| f.contains(l)), "{l}");
        }
        // A record without leave values maps them to 0.
        let mut sparse = record.clone();
        sparse["leave"] = json!({});
        assert_eq!(
            mapping.apply(&sparse, &vars).unwrap().to_json()["annual_leave"],
            0
        );
    }
}
