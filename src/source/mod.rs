//! Sources: where attendance records come from. Each produces one JSON record per
//! employee and month (README "Mapping files"), in chunks, so memory stays flat.

pub mod dingtalk;
pub mod schema;
pub mod wecom;

use serde_json::Value;

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
    /// Reports still inside the vendor's answers (WeCom), read where they are mapped.
    pub reports: wecom::Reports,
    /// Employees the source rejected, with the reason.
    pub failed: Vec<(String, String)>,
    /// Employees asked for but absent from the answer (left, out of scope, no rule).
    pub absent: Vec<String>,
    /// Set when the pull had to stop partway (e.g. the monthly quota ran out):
    /// `records` holds what was pulled before, which is still written.
    pub stopped: Option<SourceError>,
}

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::config::job::{Scope, Source};
use crate::http::CallStats;
use crate::month::{report_window, Month};
use crate::roster::UserIds;

/// The source of one job, behind one small interface.
#[derive(Clone)]
pub enum SourceClient {
    Wecom {
        client: Arc<wecom::WecomClient>,
        scope: Scope,
    },
    Dingtalk {
        client: Arc<dingtalk::DingtalkClient>,
        scope: Scope,
    },
}

impl SourceClient {
    /// `None` for a source kind this build cannot pull yet.
    pub fn new(source: &Source, http: reqwest::Client, stats: Arc<CallStats>) -> Option<Self> {
        match source {
            Source::Wecom(cfg) => Some(SourceClient::Wecom {
                client: Arc::new(wecom::WecomClient::new(http, cfg, stats)),
                scope: cfg.scope.clone(),
            }),
            Source::Dingtalk(cfg) => Some(SourceClient::Dingtalk {
                client: Arc::new(dingtalk::DingtalkClient::new(http, cfg, stats)),
                scope: cfg.scope.clone(),
            }),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SourceClient::Wecom { .. } => "wecom",
            SourceClient::Dingtalk { .. } => "dingtalk",
        }
    }

    /// Employees per pull call.
    pub fn chunk_size(&self) -> usize {
        match self {
            SourceClient::Wecom { .. } => wecom::MAX_USERS_PER_CALL,
            SourceClient::Dingtalk { .. } => dingtalk::EMPLOYEES_PER_CHUNK,
        }
    }

    /// Proves the credentials before any other work.
    pub async fn login(&self) -> Result<(), SourceError> {
        match self {
            SourceClient::Wecom { client, .. } => client.login().await,
            SourceClient::Dingtalk { client, .. } => client.login().await,
        }
    }

    pub async fn employees(&self) -> Result<Vec<String>, SourceError> {
        match self {
            SourceClient::Wecom { client, scope } => client.employees(scope).await,
            SourceClient::Dingtalk { client, scope } => client.employees(scope).await,
        }
    }

    /// Sends the employees' ids as they are found, each once, so that pulling can
    /// start before the whole organisation is listed.
    /// Returns every employee sent, in order.
    pub async fn discover(
        &self,
        tx: &tokio::sync::mpsc::Sender<Vec<String>>,
    ) -> Result<UserIds, SourceError> {
        match self {
            SourceClient::Wecom { client, scope } => client.discover(scope, tx).await,
            SourceClient::Dingtalk { client, scope } => client.discover(scope, tx).await,
        }
    }

    /// One chunk of employees' records for `month`, as of `now`.
    pub async fn pull(
        &self,
        month: Month,
        employees: &[String],
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Result<Pulled, SourceError> {
        match self {
            SourceClient::Wecom { client, .. } => match report_window(month, now, tz) {
                Some((start, end)) => client.month_data(employees, start, end).await,
                None => Ok(Pulled::default()),
            },
            SourceClient::Dingtalk { client, .. } => {
                client.month_data(employees, month, now, tz).await
            }
        }
    }

    /// Whether an employee the source was asked for and left out of its answer
    /// is known to have no record this month (and so may be pruned). WeCom
    /// listed from the directory: yes, a current employee without a report
    /// (docs/vendors/wecom.md "Employees missing from a monthdata answer"). WeCom's configured `userids` are not checked
    /// against the directory, and DingTalk's "absent" means it no longer knows
    /// the user: someone who left, whose past months stay.
    pub fn absence_proves_gone(&self) -> bool {
        match self {
            SourceClient::Wecom { scope, .. } => scope.userids.is_empty(),
            SourceClient::Dingtalk { .. } => false,
        }
    }

    /// Metered calls one employee-month costs, for budget planning: `None` for a
    /// source without a call quota (WeCom).
    pub fn metered_calls_per_employee(&self) -> Option<u32> {
        match self {
            SourceClient::Wecom { .. } => None,
            SourceClient::Dingtalk { client, .. } => Some(client.metered_calls_per_employee()),
        }
    }

    /// The most metered calls a run over `employees` × `months` costs (without
    /// retries), for budget planning: `None` for a source without a call quota.
    pub fn metered_calls_for(&self, employees: usize, months: usize) -> Option<u64> {
        match self {
            SourceClient::Wecom { .. } => None,
            SourceClient::Dingtalk { client, .. } => {
                Some(client.metered_calls_for(employees, months))
            }
        }
    }

    /// Counts every later metered attempt against `meter` (DingTalk); WeCom
    /// has no metered calls.
    pub fn set_meter(&self, meter: std::sync::Arc<crate::budget::Meter>) {
        if let SourceClient::Dingtalk { client, .. } = self {
            client.set_meter(meter);
        }
    }

    /// Metered calls sent so far (retries included); 0 for WeCom.
    pub fn metered_calls(&self) -> u64 {
        match self {
            SourceClient::Wecom { .. } => 0,
            SourceClient::Dingtalk { client, .. } => client.metered_calls(),
        }
    }

    /// Checks the source's configuration against the vendor (for `check
    /// --remote`): for DingTalk, resolves `columns` to report column ids and
    /// returns warnings about leave names the report does not list. WeCom: no
    /// remote check, no warnings.
    pub async fn check_remote(&self) -> Result<Vec<String>, SourceError> {
        match self {
            SourceClient::Wecom { .. } => Ok(Vec::new()),
            SourceClient::Dingtalk { client, .. } => {
                client.resolve_columns().await?;
                Ok(client
                    .unlisted_leave_names()
                    .await?
                    .into_iter()
                    .map(|n| format!("leave name \"{n}\" in source.leave_names is not among the report's leave columns; check its spelling"))
                    .collect())
            }
        }
    }
}
