//! WeCom (企业微信): userids from the contacts APIs, then `getcheckin_monthdata`
//! in chunks of at most 100 users (docs/vendors/wecom.md "Pulling a month").
//!
//! `client.rs` the calls (token, pacing, retries through `http::call`), `wire.rs`
//! the answers' types, `reports.rs` the monthdata answers kept as they came and
//! read where they are mapped, `schema.rs` what a report can hold. This file: the
//! [`Source`] the sync engine sees, and the vendor's constants.

pub mod approval;
pub mod callback;
mod client;
pub mod config;
pub mod receive;
mod reports;
mod schema;
mod wire;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::mpsc;

use super::{BoxFuture, Pulled, Source, SourceError};
use crate::http::rate::Rate;
use crate::http::CallStats;
use crate::month::{report_window, Month};
use crate::roster::UserIds;
use crate::source::config::Scope;
use config::WecomSource;

pub use schema::wecom_monthdata;

use client::WecomClient;

const VENDOR: &str = "WeCom";
pub const MONTHDATA: &str = "checkin/getcheckin_monthdata";
pub const GETTOKEN: &str = "gettoken";
pub const DEPARTMENTS: &str = "department/simplelist";
pub const USERS: &str = "user/simplelist";
/// One approval's detail, looked up after a callback names it.
pub const APPROVAL_DETAIL: &str = "oa/getapprovaldetail";
/// The most userids one monthdata call accepts.
pub const MAX_USERS_PER_CALL: usize = 100;
/// Department member lists requested at once while listing the organisation.
/// Four keep the contacts quota busy at tens of milliseconds of latency. More
/// were tried (16): when tokens are revoked early, every call under way meets the
/// revoked token at once and retries, and with throttling some gave up (the
/// `throttling_and_expiring_tokens…` end-to-end test).
const CONTACTS_IN_FLIGHT: usize = 4;

/// Defaults below the documented limits (docs/vendors/wecom.md "Limits"); a job's
/// `[source.limits]` overrides them. Report calls at their 60/min; each contacts
/// API at 9,000/min, a tenth under its documented 10,000/min per corp (other
/// integrations of the company share it); all calls together under the
/// documented 20,000/min per IP.
const DEFAULT_LIMITS: &[(&str, Rate)] = &[
    (MONTHDATA, Rate::per_minute(60)),
    (GETTOKEN, Rate::per_second(2)),
    (DEPARTMENTS, Rate::per_minute(9_000)),
    (USERS, Rate::per_minute(9_000)),
    // Approval look-ups at their documented 600/min.
    (APPROVAL_DETAIL, Rate::per_minute(600)),
];
const GLOBAL_LIMIT: Rate = Rate::per_minute(18_000);

/// A job's WeCom source: the client and which employees the job covers.
pub struct Wecom {
    client: WecomClient,
    scope: Scope,
}

impl Wecom {
    pub fn new(http: reqwest::Client, cfg: &WecomSource, stats: Arc<CallStats>) -> Self {
        Wecom {
            client: WecomClient::new(http, cfg, stats),
            scope: cfg.scope.clone(),
        }
    }
}

impl Source for Wecom {
    fn kind(&self) -> &'static str {
        "wecom"
    }

    fn chunk_size(&self) -> usize {
        MAX_USERS_PER_CALL
    }

    fn login(&self) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(self.client.login())
    }

    fn employees(&self) -> BoxFuture<'_, Result<Vec<String>, SourceError>> {
        Box::pin(self.client.employees(&self.scope))
    }

    fn discover<'a>(
        &'a self,
        tx: &'a mpsc::Sender<Vec<String>>,
    ) -> BoxFuture<'a, Result<UserIds, SourceError>> {
        Box::pin(self.client.discover(&self.scope, tx))
    }

    fn pull<'a>(
        &'a self,
        month: Month,
        employees: &'a [String],
        now: DateTime<Utc>,
        tz: Tz,
    ) -> BoxFuture<'a, Result<Pulled, SourceError>> {
        Box::pin(async move {
            match report_window(month, now, tz) {
                Some((start, end)) => self.client.month_data(employees, start, end).await,
                None => Ok(Pulled::default()),
            }
        })
    }

    /// Listed from the directory: yes, a current employee without a report
    /// (docs/vendors/wecom.md "Employees missing from a monthdata answer").
    /// Configured `userids` are not checked against the directory.
    fn absence_proves_gone(&self) -> bool {
        self.scope.userids.is_empty()
    }

    /// No remote check, no warnings.
    fn check_remote(&self) -> BoxFuture<'_, Result<Vec<String>, SourceError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
