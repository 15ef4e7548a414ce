//! DingTalk (钉钉), old-style `oapi` APIs (dingtalk.md §12): departments with
//! `listsub` and users with `v2/user/list` (contacts, not metered), the report
//! columns once per run with `getattcolumns`, then per employee and month
//! `getcolumnval` (≤20 column ids per call) and `getleavetimebynames` (≤20 leave
//! names per call), whose daily values are summed into one record (spec §5):
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
//! and adds them to the run's [`CallStats`] under [`METERED_STATS_KEY`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Map, Number, Value};

mod metering;
mod people;

use people::{Directory, Gatherer, Listed, Person};

use super::{Pulled, SourceError, SourceRecord};
use crate::config::job::{DingtalkSource, Rate, RetryConfig, Scope};
use crate::http::codes::{self, dingtalk_code, Class};
use crate::http::pace::{Pacer, TOTAL};
use crate::http::retry::{retry, Attempt, RetryError};
use crate::http::token::TokenCache;
use crate::http::{
    describe, endpoint_url, errcode_attempt, read_capped, redact, redirected, ApiFailure,
    CallStats, ReadError, Url, BODY_CAP, REPORT_BODY_CAP,
};
use crate::month::{report_window, Month};
use crate::roster::UserIds;
use crate::secret::Secret;

const VENDOR: &str = "DingTalk";
pub const GETTOKEN: &str = "gettoken";
pub const LISTSUB: &str = "topapi/v2/department/listsub";
pub const USER_LIST: &str = "topapi/v2/user/list";
pub const GETATTCOLUMNS: &str = "topapi/attendance/getattcolumns";
pub const GETCOLUMNVAL: &str = "topapi/attendance/getcolumnval";
pub const GETLEAVETIME: &str = "topapi/attendance/getleavetimebynames";

/// The most an answer of `endpoint` may hold: report values (a month of columns
/// for a page of employees) and leave times are large; the rest are small (see
/// [`BODY_CAP`]).
fn body_cap(endpoint: &str) -> usize {
    if endpoint == GETCOLUMNVAL || endpoint == GETLEAVETIME {
        REPORT_BODY_CAP
    } else {
        BODY_CAP
    }
}

/// The endpoints counted against the monthly quota (dingtalk.md §9, §14: every
/// attendance call; token and contacts calls are free).
pub const METERED_ENDPOINTS: &[&str] = &[GETATTCOLUMNS, GETCOLUMNVAL, GETLEAVETIME];
/// The [`CallStats`] entry that counts metered calls, so the run summary shows them.
pub const METERED_STATS_KEY: &str = "(metered)";
/// Column ids per `getcolumnval` call, leave names per `getleavetimebynames` call.
pub const MAX_PER_REPORT_CALL: usize = 20;
/// Employees per [`super::SourceClient::pull`]: each is pulled on its own, so
/// this only sets how often records are handed to the writer. A full batch of
/// `data/batch_create` (100 records), so that a chunk costs one create call.
pub const EMPLOYEES_PER_CHUNK: usize = 100;
/// Employees of a chunk pulled at once, at most. The pacers set the pace; this
/// only has to cover each call's latency (at 200 calls/s per API and ~25 ms a
/// call, 5 are needed), with room for calls held up by a retry.
pub const EMPLOYEES_IN_FLIGHT: usize = 16;
/// `listsub` and `v2/user/list` calls under way at once (each API), at most.
/// The pacers set the pace; this covers the latency, with room for retries.
pub const DIRECTORY_IN_FLIGHT: usize = 8;
/// `size` of a `v2/user/list` page; halved on 400002 down to [`MIN_PAGE_SIZE`].
pub const PAGE_SIZE: u32 = 100;
pub const MIN_PAGE_SIZE: u32 = 10;
/// DingTalk bans an IP that exceeds the IP-wide limit for 5 minutes
/// (dingtalk.md §9): all calls pause at least this long after a ban answer.
pub const IP_BAN_MIN_WAIT: Duration = Duration::from_secs(5 * 60);
/// The longest pause after one ban answer, whatever `throttle_wait` says.
pub const IP_BAN_MAX_WAIT: Duration = Duration::from_secs(30 * 60);
/// The root department.
pub const ROOT_DEPARTMENT: u64 = 1;

/// Per app and API (standard edition, dingtalk.md §9); `[source.limits]` overrides.
const API_RATE: Rate = Rate::per_second(20);
const DEFAULT_LIMITS: &[(&str, Rate)] = &[
    (GETTOKEN, API_RATE),
    (LISTSUB, API_RATE),
    (USER_LIST, API_RATE),
    (GETATTCOLUMNS, API_RATE),
    (GETCOLUMNVAL, API_RATE),
    (GETLEAVETIME, API_RATE),
];
/// Per egress IP, all APIs together.
const IP_LIMIT: Rate = Rate {
    count: 10_000,
    per: Duration::from_secs(20),
};
const DATE_SUFFIX: &str = " 00:00:00";

/// How long to pause all calls after an IP-ban answer: at least `floor` (the
/// ban's 5 minutes) and at least `throttle_wait`, at most [`IP_BAN_MAX_WAIT`].
pub fn ip_ban_wait(throttle_wait: Duration, floor: Duration) -> Duration {
    throttle_wait.max(floor).min(IP_BAN_MAX_WAIT)
}

/// How a request body is encoded (dingtalk.md §14: JSON by default; the
/// official samples of some endpoints are form-encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Form,
}

impl Encoding {
    fn other(self) -> Encoding {
        match self {
            Encoding::Json => Encoding::Form,
            Encoding::Form => Encoding::Json,
        }
    }
}

/// One column of the attendance report as `getattcolumns` lists it. Leave
/// columns have no id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportColumn {
    pub id: Option<i64>,
    pub name: String,
    pub alias: String,
}

/// A report column the job asked for, resolved to its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedColumn {
    pub name: String,
    pub id: i64,
}

pub struct DingtalkClient {
    http: reqwest::Client,
    base_url: Url,
    app_key: String,
    app_secret: Secret,
    columns: Vec<String>,
    leave_names: Vec<String>,
    scope: Scope,
    tokens: TokenCache,
    pacer: Pacer,
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

/// What walking the departments found (the people go to a [`Gatherer`]).
#[derive(Default)]
struct Crawl {
    children: HashMap<u64, Vec<u64>>,
    /// Departments whose users were listed.
    listed: HashSet<u64>,
}

/// One finished step of [`DingtalkClient::crawl`].
enum Found {
    /// `None`: the department was skipped.
    Children {
        id: u64,
        children: Option<Vec<(u64, String)>>,
    },
    Users {
        id: u64,
        users: Vec<Listed>,
    },
}

enum CrawlError {
    /// Kept unconverted, so that the root being out of scope can be told apart.
    Walk(RetryError<CallError>),
    Users(SourceError),
}

enum CallError {
    Api(ApiFailure),
    Source(SourceError),
    /// Not sent: the pull it belonged to had stopped meanwhile.
    Halted,
}

/// How one employee-month failed.
enum EmployeeError {
    /// Reported as failed; the others go on.
    Failed(String),
    /// The user is gone (left, unknown): reported as absent.
    Absent,
    /// Stop the pull.
    Stop(SourceError),
    /// Not pulled because the pull stopped meanwhile: neither failed nor absent,
    /// the next run pulls it again.
    Halted,
}

/// What an HTTP answer is, before its errcode is looked at.
#[derive(Debug, PartialEq)]
enum Read {
    Body(Value),
    /// The IP-ban answer (non-JSON page or `{"status": 1111}`), described.
    Banned(String),
    Transient(String),
    Protocol(String),
}

/// Classifies an answer by HTTP status and body (dingtalk.md §10): a 5xx or 429
/// is transient; a redirect is not followed; a JSON body with `status` 1111, or any
/// other non-JSON body, is the IP ban — except a 404, which means a wrong `base_url`.
fn read_answer(status: StatusCode, bytes: &[u8]) -> Read {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Read::Transient(format!("HTTP {status}"));
    }
    if let Some(message) = redirected(status) {
        return Read::Protocol(message);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(body @ Value::Object(_)) => {
            let ban = number(&body["status"]) == Some(dingtalk_code::IP_BANNED_STATUS)
                && body.get("errcode").is_none();
            if ban {
                Read::Banned(format!("HTTP {status}, body status 1111"))
            } else if !status.is_success() && body.get("errcode").is_none() {
                // A new-style error: a string `code`, or keep the text.
                let code = body["code"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| shorten(&String::from_utf8_lossy(bytes)));
                Read::Protocol(format!("HTTP {status}: {code}"))
            } else {
                Read::Body(body)
            }
        }
        _ if status == StatusCode::NOT_FOUND => Read::Protocol(format!(
            "HTTP {status}: no such endpoint; check `base_url` in the job's [source]"
        )),
        _ => Read::Banned(format!("HTTP {status}, a non-JSON answer")),
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        text.to_owned()
    }
}

/// `errcode` as a number; some answers carry it as a string. Absent = success.
fn errcode(body: &Value) -> i64 {
    match &body["errcode"] {
        Value::Null => 0,
        other => number(other).unwrap_or(-1),
    }
}

/// A number sent as a number or as text.
fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => s.trim().eq_ignore_ascii_case("true"),
        Value::Number(n) => n.as_i64().is_some_and(|n| n != 0),
        _ => false,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `errmsg`, with the sub-code and sub-message of an errcode 88 answer under
/// either spelling (dingtalk.md §10, §14).
fn api_message(body: &Value) -> String {
    let mut message = text(&body["errmsg"]);
    let pick = |keys: [&str; 2]| keys.iter().map(|k| text(&body[*k])).find(|s| !s.is_empty());
    let sub_code = pick(["sub_code", "subCode"]);
    let sub_msg = pick(["sub_msg", "subMsg"]);
    if sub_code.is_some() || sub_msg.is_some() {
        message.push_str(&format!(
            "; sub-code {}: {}",
            sub_code.as_deref().unwrap_or("?"),
            sub_msg.as_deref().unwrap_or("")
        ));
    }
    message
}

/// `application/x-www-form-urlencoded` of a flat JSON object: text as is,
/// numbers and booleans as text, lists comma-separated, nulls left out.
fn form_encode(body: &Value) -> String {
    let Some(fields) = body.as_object() else {
        return String::new();
    };
    fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let value = match v {
                Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
                other => text(other),
            };
            format!("{}={}", percent_encode(k), percent_encode(&value))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A report value as a decimal: empty text is 0; `None` when it is not a number.
fn parse_value(v: &Value) -> Option<Decimal> {
    match v {
        Value::Null => Some(Decimal::ZERO),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(Decimal::from(i)),
            None => parse_decimal(&n.to_string()),
        },
        Value::String(s) => parse_decimal(s.trim()),
        _ => None,
    }
}

fn parse_decimal(t: &str) -> Option<Decimal> {
    if t.is_empty() {
        return Some(Decimal::ZERO);
    }
    if !t.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    if t.contains(['e', 'E']) {
        Decimal::from_scientific(t).ok()
    } else {
        Decimal::from_str(t).ok()
    }
}

/// The date a report day starts with (`yyyy-MM-dd…`). The usual spelling is
/// read directly (a month of days per column makes this a hot path); any
/// other goes through chrono's parser.
fn report_date(raw: &str) -> Option<NaiveDate> {
    let head = raw.get(..10)?;
    let b = head.as_bytes();
    let number = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b[4] == b'-' && b[7] == b'-' {
        if let (Some(y), Some(m), Some(d)) = (number(0, 4), number(5, 7), number(8, 10)) {
            return NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d);
        }
    }
    NaiveDate::parse_from_str(head, "%Y-%m-%d").ok()
}

/// A member of a small object, found by a scan (report days have two).
fn member<'v>(v: &'v Value, key: &str) -> &'v Value {
    const NULL: &Value = &Value::Null;
    v.as_object()
        .and_then(|o| o.iter().find(|(k, _)| *k == key))
        .map_or(NULL, |(_, v)| v)
}

/// Integers as JSON integers, others as the nearest float.
fn decimal_json(d: Decimal) -> Option<Value> {
    let d = d.normalize();
    if d.scale() == 0 {
        if let Some(i) = d.to_i64() {
            return Some(Value::from(i));
        }
    }
    let f: f64 = d.to_string().parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}

/// The month's days in `from..=to` as DingTalk date strings.
struct Window {
    month: Month,
    from: String,
    to: String,
}

impl Window {
    fn contains(&self, date: NaiveDate) -> bool {
        Month::containing(date) == self.month
    }
}

/// Sums one column's daily values (dingtalk.md §6): only dates inside the
/// month, each date once, empty = 0; the fixed value when there is no daily list.
fn sum_column(
    window: &Window,
    name: &str,
    days: Option<&Vec<Value>>,
    fixed: &Value,
) -> Result<Decimal, String> {
    let days = days.filter(|d| !d.is_empty());
    let Some(days) = days else {
        if fixed.is_null() {
            return Ok(Decimal::ZERO);
        }
        return parse_value(fixed)
            .ok_or_else(|| format!("column \"{name}\": fixed value {fixed} is not a number"));
    };
    // Days inside the month, by day of the month: each is counted once.
    let mut seen: u64 = 0;
    let mut total = Decimal::ZERO;
    for day in days {
        let raw = member(day, "date");
        let date = match raw {
            Value::String(s) => report_date(s),
            other => report_date(&text(other)),
        }
        .ok_or_else(|| format!("column \"{name}\": unreadable date {raw}"))?;
        let bit = 1u64 << date.day0();
        if !window.contains(date) || seen & bit != 0 {
            continue;
        }
        seen |= bit;
        let value = member(day, "value");
        let value = parse_value(value)
            .ok_or_else(|| format!("column \"{name}\" on {date}: value {value} is not a number"))?;
        total = total
            .checked_add(value)
            .ok_or_else(|| format!("column \"{name}\": the sum is out of range"))?;
    }
    Ok(total)
}

/// How many calls to `endpoints` are worth having under way at once, at most
/// `most`: no more than one second's worth of the slowest of their configured
/// rates (and of the vendor-wide `total`), since the pacers hold any more back
/// anyway, and with a slow quota a burst of waiting calls gains nothing.
fn in_flight(overrides: &[(String, Rate)], endpoints: &[&str], most: usize) -> usize {
    let rate = |key: &str, default: Option<Rate>| {
        overrides
            .iter()
            .rev()
            .find(|(e, _)| e == key)
            .map(|(_, r)| *r)
            .or(default)
    };
    let per_second = |r: Rate| {
        let secs = r.per.as_secs_f64();
        if secs > 0.0 {
            f64::from(r.count) / secs
        } else {
            f64::INFINITY
        }
    };
    let default = |key: &str| {
        DEFAULT_LIMITS
            .iter()
            .find(|(e, _)| *e == key)
            .map(|(_, r)| *r)
    };
    endpoints
        .iter()
        .filter_map(|e| rate(e, default(e)))
        .chain(rate(TOTAL, Some(IP_LIMIT)))
        .map(|r| per_second(r).ceil())
        .fold(most as f64, f64::min)
        .max(1.0) as usize
}

fn per_employee(columns: usize, leave_names: usize) -> u32 {
    let calls = |n: usize| n.div_ceil(MAX_PER_REPORT_CALL) as u32;
    calls(columns) + calls(leave_names)
}

/// Metered calls per employee and month of a job's DingTalk source, without a client.
pub fn calls_per_employee(cfg: &DingtalkSource) -> u32 {
    per_employee(cfg.columns.len(), cfg.leave_names.len())
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
            pacer: Pacer::new(IP_LIMIT, DEFAULT_LIMITS, &cfg.limits),
            retry: cfg.retry,
            stats,
            metered: AtomicU64::new(0),
            meter: Mutex::new(None),
            form: Mutex::new(HashSet::new()),
            banned_until: Mutex::new(None),
            ip_ban_floor: IP_BAN_MIN_WAIT,
            report_columns: tokio::sync::OnceCell::new(),
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

    /// Tests only: a shorter IP-ban pause than DingTalk's 5 minutes.
    #[cfg(test)]
    fn with_ip_ban_floor(mut self, floor: Duration) -> Self {
        self.ip_ban_floor = floor;
        self
    }

    /// Metered calls per employee and month: ⌈columns/20⌉ + ⌈leave names/20⌉.
    pub fn metered_calls_per_employee(&self) -> u32 {
        per_employee(self.columns.len(), self.leave_names.len())
    }

    /// Metered calls a run over `employees` × `months` costs at most (without
    /// retries): the per-employee calls plus one `getattcolumns` (dingtalk.md §12).
    pub fn metered_calls_for(&self, employees: usize, months: usize) -> u64 {
        let columns_lookup = u64::from(!self.columns.is_empty());
        employees as u64 * months as u64 * u64::from(self.metered_calls_per_employee())
            + columns_lookup
    }

    /// Metered calls sent so far by this client (retries included).
    pub fn metered_calls(&self) -> u64 {
        self.metered.load(Ordering::Relaxed)
    }

    /// Sends `endpoint`'s bodies form-encoded (`true`) or as JSON (`false`, the
    /// default). The client also switches by itself when DingTalk refuses one.
    pub fn set_form_encoding(&self, endpoint: &str, on: bool) {
        let mut form = lock(&self.form);
        if on {
            form.insert(endpoint.trim_matches('/').to_owned());
        } else {
            form.remove(endpoint.trim_matches('/'));
        }
    }

    pub fn encoding(&self, endpoint: &str) -> Encoding {
        if lock(&self.form).contains(endpoint) {
            Encoding::Form
        } else {
            Encoding::Json
        }
    }

    fn url(&self, endpoint: &str) -> Url {
        endpoint_url(&self.base_url, &[endpoint])
    }

    fn clean(&self, message: &str, token: Option<&Secret>) -> String {
        let mut secrets = vec![self.app_secret.expose()];
        if let Some(t) = token {
            secrets.push(t.expose());
        }
        redact(message, &secrets)
    }

    fn api_error(&self, endpoint: &str, f: ApiFailure) -> SourceError {
        let hint = match f.class {
            Class::Fatal(hint) => hint,
            Class::Token => {
                "fresh access tokens were rejected repeatedly; check `app_key` and `app_secret`"
            }
            Class::Record => "DingTalk rejected a request parameter",
            Class::NotFound => "DingTalk did not find the department or user",
            _ => "DingTalk rejected the call",
        };
        SourceError::Api {
            vendor: VENDOR,
            endpoint: endpoint.to_string(),
            code: f.code,
            message: f.message,
            hint,
        }
    }

    fn protocol(&self, endpoint: &str, message: impl Into<String>) -> SourceError {
        SourceError::Protocol {
            vendor: VENDOR,
            endpoint: endpoint.to_string(),
            message: message.into(),
        }
    }

    fn finish(
        &self,
        endpoint: &str,
        r: Result<Value, RetryError<CallError>>,
    ) -> Result<Value, SourceError> {
        r.map_err(|e| self.error(endpoint, e))
    }

    fn error(&self, endpoint: &str, e: RetryError<CallError>) -> SourceError {
        match e {
            RetryError::Failed(CallError::Api(f)) => self.api_error(endpoint, f),
            RetryError::Failed(CallError::Source(e)) => e,
            // Only report calls are halted, and `report_call` never gets here.
            RetryError::Failed(CallError::Halted) => {
                self.protocol(endpoint, "not sent: the pull had already stopped")
            }
            RetryError::Exhausted { attempts, last } => SourceError::Exhausted {
                vendor: VENDOR,
                endpoint: endpoint.to_string(),
                attempts,
                last,
            },
        }
    }

    fn ban_in_force(&self) -> bool {
        lock(&self.banned_until).is_some_and(|u| Instant::now() < u)
    }

    /// Waits out an IP ban, if one is in force.
    async fn wait_out_ban(&self) {
        loop {
            let until = *lock(&self.banned_until);
            match until.map(|u| u.saturating_duration_since(Instant::now())) {
                Some(left) if !left.is_zero() => tokio::time::sleep(left).await,
                _ => return,
            }
        }
    }

    /// Records an IP ban: every call pauses until it is over.
    fn banned(&self, endpoint: &str, what: String) -> Attempt<Value, CallError> {
        let wait = ip_ban_wait(self.retry.throttle_wait, self.ip_ban_floor);
        {
            let mut until = lock(&self.banned_until);
            let end = Instant::now() + wait;
            if until.is_none_or(|u| u < end) {
                *until = Some(end);
            }
        }
        self.stats.throttled(endpoint);
        tracing::warn!(
            endpoint,
            wait_s = wait.as_secs_f64(),
            "DingTalk has banned this server's IP ({what}), probably for exceeding the IP-wide \
             limit of 10,000 calls per 20 s; pausing all DingTalk calls for {} s",
            wait.as_secs()
        );
        Attempt::Throttled {
            reason: format!("this server's IP is banned by DingTalk ({what})"),
            retry_after: None,
        }
    }

    /// Decodes one answer: transport problems, bans and vendor codes become attempts.
    async fn decode(
        &self,
        endpoint: &str,
        sent: Result<reqwest::Response, reqwest::Error>,
        token: Option<&Secret>,
        table: fn(i64) -> Class,
    ) -> Attempt<Value, CallError> {
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return Attempt::Transient(describe(e)),
        };
        let status = resp.status();
        let bytes = match read_capped(resp, body_cap(endpoint), endpoint).await {
            Ok(b) => b,
            Err(ReadError::Transport(e)) => {
                return Attempt::Transient(format!("HTTP {status}, {e}"))
            }
            // Not retried: the same request gets the same answer.
            Err(e @ ReadError::TooLarge { .. }) => {
                return Attempt::Fail(CallError::Source(SourceError::Protocol {
                    vendor: VENDOR,
                    endpoint: endpoint.to_string(),
                    message: e.to_string(),
                }))
            }
        };
        let body = match read_answer(status, &bytes) {
            Read::Body(body) => body,
            Read::Banned(what) => return self.banned(endpoint, what),
            Read::Transient(reason) => return Attempt::Transient(reason),
            Read::Protocol(message) => {
                let message = self.clean(&message, token);
                return Attempt::Fail(CallError::Source(self.protocol(endpoint, message)));
            }
        };
        let code = errcode(&body);
        if code == 0 {
            return Attempt::Done(body);
        }
        let message = self.clean(&api_message(&body), token);
        let failure = ApiFailure {
            code,
            message,
            class: table(code),
        };
        let token = token.map(|t| (&self.tokens, t));
        errcode_attempt(
            endpoint,
            failure,
            codes::dingtalk_retry_after(code),
            &self.stats,
            token,
        )
        .await
        .map_err(CallError::Api)
    }

    async fn fetch_token(&self) -> Result<(Secret, Duration), SourceError> {
        let result = retry(&self.retry, GETTOKEN, || async {
            self.wait_out_ban().await;
            self.pacer.ready(GETTOKEN).await;
            self.stats.call(GETTOKEN);
            let sent = self
                .http
                .get(self.url(GETTOKEN))
                .query(&[
                    ("appkey", self.app_key.as_str()),
                    ("appsecret", self.app_secret.expose()),
                ])
                .send()
                .await;
            match self
                .decode(GETTOKEN, sent, None, codes::dingtalk_gettoken)
                .await
            {
                // A token error from gettoken itself means the credentials: never retry it.
                Attempt::TokenRejected(e) => Attempt::Fail(e),
                other => other,
            }
        })
        .await;
        let body = self.finish(GETTOKEN, result)?;
        let token = body["access_token"].as_str().unwrap_or_default();
        if token.is_empty() {
            return Err(self.protocol(GETTOKEN, "no access_token in the answer"));
        }
        let expires_in = number(&body["expires_in"])
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .unwrap_or(7200);
        Ok((Secret::new(token), Duration::from_secs(expires_in)))
    }

    /// One request: waits out a ban, paces, counts, sends in `forced` or else
    /// the endpoint's current encoding, which it returns with the attempt. Bans,
    /// encoding and `halt` are looked at after the pacer's wait: under concurrency
    /// a call can wait there a while, and meanwhile another call may have met a
    /// ban, switched the encoding or stopped the pull (quota, credentials).
    async fn send(
        &self,
        endpoint: &str,
        body: &Value,
        token: &Secret,
        forced: Option<Encoding>,
        halt: Option<&AtomicBool>,
    ) -> (Encoding, Attempt<Value, CallError>) {
        loop {
            self.wait_out_ban().await;
            self.pacer.ready(endpoint).await;
            if !self.ban_in_force() {
                break;
            }
        }
        let encoding = forced.unwrap_or_else(|| self.encoding(endpoint));
        if halt.is_some_and(|h| h.load(Ordering::SeqCst)) {
            return (encoding, Attempt::Fail(CallError::Halted));
        }
        if METERED_ENDPOINTS.contains(&endpoint) {
            // Counted before it is sent; refused at the budget's cap.
            if let Err(e) = self.take_metered().await {
                return (encoding, Attempt::Fail(CallError::Source(e)));
            }
            self.metered.fetch_add(1, Ordering::Relaxed);
            self.stats.call(METERED_STATS_KEY);
        }
        self.stats.call(endpoint);
        let request = self
            .http
            .post(self.url(endpoint))
            .query(&[("access_token", token.expose())]);
        let request = match encoding {
            Encoding::Json => request
                .header(CONTENT_TYPE, "application/json;charset=UTF-8")
                .body(body.to_string()),
            Encoding::Form => request
                .header(
                    CONTENT_TYPE,
                    "application/x-www-form-urlencoded;charset=UTF-8",
                )
                .body(form_encode(body)),
        };
        let sent = request.send().await;
        let attempt = self
            .decode(endpoint, sent, Some(token), codes::dingtalk)
            .await;
        (encoding, attempt)
    }

    /// One API call with token, pacing, retries, and a switch of the body's
    /// encoding when DingTalk refuses it. Vendor errors that are not retryable
    /// come back as `CallError::Api` so callers can act on the class.
    async fn call(&self, endpoint: &str, body: &Value) -> Result<Value, RetryError<CallError>> {
        self.call_unless(endpoint, body, None).await
    }

    /// [`Self::call`], given up (`CallError::Halted`) once `halt` is set.
    async fn call_unless(
        &self,
        endpoint: &str,
        body: &Value,
        halt: Option<&AtomicBool>,
    ) -> Result<Value, RetryError<CallError>> {
        retry(&self.retry, endpoint, || async {
            // Taken before the pacer's wait, not after: calls held up by a token
            // refresh would otherwise all leave at once when it ends, closer
            // together than the endpoint's rate allows.
            let token = match self.tokens.get(|| self.fetch_token()).await {
                Ok(t) => t,
                Err(e) => return Attempt::Fail(CallError::Source(e)),
            };
            match self.send(endpoint, body, &token, None, halt).await {
                (encoding, Attempt::Fail(CallError::Api(f)))
                    if codes::dingtalk_wrong_encoding(f.code) =>
                {
                    // Switch to the other of what was sent (not of the current
                    // setting), so concurrent refusals agree on the outcome.
                    let other = encoding.other();
                    tracing::info!(endpoint, code = f.code, from = ?encoding, to = ?other,
                        "DingTalk refused the request body's encoding; switching");
                    self.set_form_encoding(endpoint, other == Encoding::Form);
                    self.send(endpoint, body, &token, Some(other), halt).await.1
                }
                (_, other) => other,
            }
        })
        .await
    }

    async fn call_ok(&self, endpoint: &str, body: &Value) -> Result<Value, SourceError> {
        let r = self.call(endpoint, body).await;
        self.finish(endpoint, r)
    }

    /// Fetches a token now, so bad credentials stop the job before any other work.
    pub async fn login(&self) -> Result<(), SourceError> {
        self.tokens.get(|| self.fetch_token()).await.map(|_| ())
    }

    /// Every report column, from `getattcolumns` (one metered call per client).
    pub async fn report_columns(&self) -> Result<Arc<Vec<ReportColumn>>, SourceError> {
        self.report_columns
            .get_or_try_init(|| async {
                let body = self.call_ok(GETATTCOLUMNS, &json!({})).await?;
                let Some(list) = body["result"]["columns"].as_array() else {
                    return Err(self.protocol(GETATTCOLUMNS, "no result.columns in the answer"));
                };
                let columns = list
                    .iter()
                    .map(|c| ReportColumn {
                        id: number(&c["id"]),
                        name: text(&c["name"]),
                        alias: text(&c["alias"]),
                    })
                    .filter(|c| !c.name.is_empty())
                    .collect();
                Ok(Arc::new(columns))
            })
            .await
            .cloned()
    }

    /// Resolves the job's `columns` (display names) to report column ids, in
    /// the job's order. An unknown, ambiguous or leave-type name is a
    /// [`SourceError::Config`] that lists the available names. No call is made
    /// when the job asks for no columns. `check --remote` can call this.
    pub async fn resolve_columns(&self) -> Result<Vec<ResolvedColumn>, SourceError> {
        if self.columns.is_empty() {
            return Ok(Vec::new());
        }
        let all = self.report_columns().await?;
        resolve(&self.columns, &all)
    }

    /// Configured leave names that `getattcolumns` does not list among its
    /// id-less leave columns (a warning for `check --remote`: the listing of
    /// leave types is not documented as complete).
    pub async fn unlisted_leave_names(&self) -> Result<Vec<String>, SourceError> {
        if self.leave_names.is_empty() {
            return Ok(Vec::new());
        }
        let all = self.report_columns().await?;
        Ok(self
            .leave_names
            .iter()
            .filter(|n| !all.iter().any(|c| c.id.is_none() && &c.name == *n))
            .cloned()
            .collect())
    }

    /// The userids a job covers, sorted and de-duplicated (dingtalk.md §12 steps
    /// 2–3). Keeps each user's name, department names, job number and title for
    /// the records. Userids configured in `scope.userids` but not found are
    /// returned too (with a warning), so a pull reports them as absent.
    pub async fn employees(&self, scope: &Scope) -> Result<Vec<String>, SourceError> {
        let all = self.gather(scope, None).await?;
        let mut ids: Vec<String> = all.iter().map(str::to_owned).collect();
        ids.sort();
        Ok(ids)
    }

    /// The same employees as [`Self::employees`], sent to `tx` as they are found
    /// so that pulling starts while the directory is walked; in the order found.
    pub async fn discover(
        &self,
        scope: &Scope,
        tx: &tokio::sync::mpsc::Sender<Vec<String>>,
    ) -> Result<UserIds, SourceError> {
        self.gather(scope, Some(tx)).await
    }

    /// The people the chunk's userids are (`None`: not in the directory). Walks
    /// the directory first if no walk has started (a pull without a listing).
    async fn people(&self, userids: &[String]) -> Result<Vec<Option<Arc<Person>>>, SourceError> {
        if !self.walked.load(Ordering::SeqCst) {
            let scope = self.scope.clone();
            self.employees(&scope).await?;
        }
        let directory = lock(&self.directory);
        Ok(userids.iter().map(|u| directory.get(u).cloned()).collect())
    }

    /// One department's children (id, name) from `listsub`; `None` when a
    /// department found while walking has vanished (60003) or is outside the
    /// app's scope (50004): skipped with a warning. The same errors on a start
    /// department stop the job.
    async fn subdepartments(
        &self,
        id: u64,
        start: bool,
    ) -> Result<Option<Vec<(u64, String)>>, RetryError<CallError>> {
        let body = match self
            .call(LISTSUB, &json!({"dept_id": id, "language": "zh_CN"}))
            .await
        {
            Ok(b) => b,
            Err(RetryError::Failed(CallError::Api(f)))
                if !start
                    && (f.class == Class::NotFound || f.code == dingtalk_code::OUT_OF_SCOPE) =>
            {
                tracing::warn!(department = id, code = f.code, message = %f.message,
                    "skipping a DingTalk department (deleted since listing, or outside the app's scope)");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        Ok(Some(
            body["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| {
                    let child = number(&d["dept_id"]).and_then(|c| u64::try_from(c).ok())?;
                    Some((child, text(&d["name"])))
                })
                .collect(),
        ))
    }

    /// The users of one department, page by page (`v2/user/list`), in page
    /// order. `size` is shared by all departments: halved on 400002 down to
    /// [`MIN_PAGE_SIZE`], by the first call refused at that size only, so that
    /// refusals of calls under way at once halve it once. `settled` is set once
    /// a page was answered, so the caller knows the size fits.
    async fn department_users(
        &self,
        dept: u64,
        scope: &Scope,
        size: &AtomicU32,
        settled: &AtomicBool,
    ) -> Result<Vec<Listed>, SourceError> {
        let mut users = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let asked = size.load(Ordering::SeqCst);
            let body =
                json!({"dept_id": dept, "cursor": cursor, "size": asked, "language": "zh_CN"});
            let answer = match self.call(USER_LIST, &body).await {
                Ok(a) => a,
                Err(RetryError::Failed(CallError::Api(f)))
                    if f.code == dingtalk_code::INVALID_PARAMETER && asked > MIN_PAGE_SIZE =>
                {
                    let smaller = (asked / 2).max(MIN_PAGE_SIZE);
                    if size
                        .compare_exchange(asked, smaller, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        tracing::info!(
                            size = smaller,
                            "DingTalk refused the page size of v2/user/list; shrinking it"
                        );
                    }
                    continue;
                }
                Err(RetryError::Failed(CallError::Api(f)))
                    if !scope.departments.contains(&dept)
                        && (f.class == Class::NotFound
                            || f.code == dingtalk_code::OUT_OF_SCOPE) =>
                {
                    tracing::warn!(department = dept, code = f.code, message = %f.message,
                        "skipping the users of a DingTalk department (deleted since listing, or outside the app's scope)");
                    return Ok(users);
                }
                Err(e) => return Err(self.error(USER_LIST, e)),
            };
            settled.store(true, Ordering::SeqCst);
            let result = &answer["result"];
            for u in result["list"].as_array().into_iter().flatten() {
                let userid = text(&u["userid"]);
                if userid.is_empty() {
                    continue;
                }
                let dept_ids: Vec<u64> = match u["dept_id_list"].as_array() {
                    Some(ids) => ids
                        .iter()
                        .filter_map(|d| number(d).and_then(|d| u64::try_from(d).ok()))
                        .collect(),
                    None => vec![dept],
                };
                users.push(Listed {
                    userid,
                    name: text(&u["name"]),
                    dept_ids,
                    job_number: text(&u["job_number"]),
                    title: text(&u["title"]),
                });
            }
            if !truthy(&result["has_more"]) {
                return Ok(users);
            }
            match number(&result["next_cursor"]).and_then(|c| u64::try_from(c).ok()) {
                Some(next) if next > cursor => cursor = next,
                _ => {
                    return Err(self.protocol(
                        USER_LIST,
                        format!(
                            "has_more is true but next_cursor {} does not advance past {cursor}",
                            result["next_cursor"]
                        ),
                    ))
                }
            }
        }
    }

    /// Walks `listsub` breadth-first from `starts` and lists the users of every
    /// selected department (the configured ones and everything under them, or
    /// everything) as soon as its own `listsub` has answered. Several calls of
    /// each API are under way at once: one call at a time, latency would set the
    /// pace, and walking before listing would add the two APIs' times instead
    /// of overlapping them (they have separate quotas). The first `v2/user/list`
    /// call goes alone until a page size is accepted, so a refused size is
    /// shrunk once rather than by every call under way.
    async fn crawl(
        &self,
        starts: &[u64],
        scope: &Scope,
        size: &AtomicU32,
        settled: &AtomicBool,
        gather: &mut Gatherer<'_>,
    ) -> Result<Crawl, CrawlError> {
        let wanted = |d: u64| scope.departments.is_empty() || scope.departments.contains(&d);
        let mut crawl = Crawl::default();
        let mut seen: HashSet<u64> = starts.iter().copied().collect();
        let mut selected: HashSet<u64> = starts.iter().copied().filter(|d| wanted(*d)).collect();
        let mut to_walk: VecDeque<(u64, bool)> = starts.iter().map(|d| (*d, true)).collect();
        let mut to_list: VecDeque<u64> = VecDeque::new();
        let mut tasks: FuturesUnordered<BoxFuture<'_, Result<Found, CrawlError>>> =
            FuturesUnordered::new();
        let (mut walking, mut listing) = (0usize, 0usize);
        loop {
            while walking < self.departments_in_flight {
                let Some((id, start)) = to_walk.pop_front() else {
                    break;
                };
                walking += 1;
                tasks.push(Box::pin(async move {
                    let children = self
                        .subdepartments(id, start)
                        .await
                        .map_err(CrawlError::Walk)?;
                    Ok(Found::Children { id, children })
                }));
            }
            let users_in_flight = if settled.load(Ordering::SeqCst) {
                self.user_pages_in_flight
            } else {
                1
            };
            while listing < users_in_flight {
                let Some(id) = to_list.pop_front() else {
                    break;
                };
                listing += 1;
                tasks.push(Box::pin(async move {
                    let users = self
                        .department_users(id, scope, size, settled)
                        .await
                        .map_err(CrawlError::Users)?;
                    Ok(Found::Users { id, users })
                }));
            }
            let Some(found) = tasks.next().await else {
                break;
            };
            match found? {
                Found::Children { id, children } => {
                    walking -= 1;
                    for (child, name) in children.into_iter().flatten() {
                        gather.named(child, name);
                        crawl.children.entry(id).or_default().push(child);
                        if selected.contains(&id) || wanted(child) {
                            selected.insert(child);
                        }
                        if seen.insert(child) {
                            to_walk.push_back((child, false));
                        }
                    }
                    if selected.contains(&id) {
                        to_list.push_back(id);
                    }
                }
                Found::Users { id, users } => {
                    listing -= 1;
                    crawl.listed.insert(id);
                    gather.listed(users);
                }
            }
            gather.flush();
            if gather.is_abandoned() {
                break;
            }
        }
        Ok(crawl)
    }

    /// Everyone in the selected departments, each once, handed to `tx` (when
    /// given) as they become complete; returns them in that order. The directory
    /// holds everyone listed afterwards.
    async fn gather(
        &self,
        scope: &Scope,
        tx: Option<&tokio::sync::mpsc::Sender<Vec<String>>>,
    ) -> Result<UserIds, SourceError> {
        self.walked.store(true, Ordering::SeqCst);
        let mut gather = Gatherer::new(&self.directory, &scope.userids, tx);
        // Walk from the root so every department has its name, then keep the
        // configured subtrees. If the root is outside the app's scope, walk
        // from the configured departments (whose own names stay unknown).
        let size = AtomicU32::new(PAGE_SIZE);
        let settled = AtomicBool::new(false);
        let (size, settled) = (&size, &settled);
        let root = [ROOT_DEPARTMENT];
        let crawled = match self.crawl(&root, scope, size, settled, &mut gather).await {
            Err(CrawlError::Walk(RetryError::Failed(CallError::Api(f))))
                if f.code == dingtalk_code::OUT_OF_SCOPE && !scope.departments.is_empty() =>
            {
                tracing::info!(
                    "the DingTalk root department is outside the app's scope; walking from the configured departments"
                );
                self.crawl(&scope.departments, scope, size, settled, &mut gather)
                    .await
            }
            other => other,
        };
        let crawl = crawled.map_err(|e| match e {
            CrawlError::Walk(e) => self.error(LISTSUB, e),
            CrawlError::Users(e) => e,
        })?;
        if gather.is_abandoned() {
            return Ok(gather.finish().await.0);
        }
        for id in &scope.departments {
            if *id != ROOT_DEPARTMENT && !gather.is_named(*id) && !crawl.children.contains_key(id) {
                tracing::warn!(
                    department = id,
                    "configured DingTalk department not found under the root"
                );
            }
        }
        // Configured departments the walk did not reach are listed all the same
        // (a missing one stops the job, as any error on a configured department).
        let unreached: Vec<u64> = scope
            .departments
            .iter()
            .copied()
            .filter(|d| !crawl.listed.contains(d))
            .collect();
        if !unreached.is_empty() {
            let mut listed = futures::stream::iter(unreached)
                .map(|id| self.department_users(id, scope, size, settled))
                .buffered(self.user_pages_in_flight);
            while let Some(users) = listed.next().await {
                gather.listed(users?);
                gather.flush();
            }
        }
        let (all, missing) = gather.finish().await;
        if !missing.is_empty() {
            tracing::warn!(userids = ?missing, "configured userids not found in the DingTalk departments listed");
        }
        Ok(all)
    }

    /// The records of `userids` for `month` as of `now` (dingtalk.md §12 steps
    /// 4–7), in the order of `userids`. A rejected employee-month (400002, a
    /// non-numeric value) is reported as failed, a user DingTalk no longer knows
    /// as absent; quota, credential and permission errors stop the pull.
    pub async fn month_data(
        &self,
        userids: &[String],
        month: Month,
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Result<Pulled, SourceError> {
        let mut pulled = Pulled::default();
        let Some((_, end)) = report_window(month, now, tz) else {
            return Ok(pulled);
        };
        let last = end.with_timezone(&tz).date_naive().min(month.last_day());
        let window = Window {
            month,
            from: format!("{}{DATE_SUFFIX}", month.first_day()),
            to: format!("{last}{DATE_SUFFIX}"),
        };
        let columns = self.resolve_columns().await?;
        let people = self.people(userids).await?;
        // Several employees are pulled at once: one at a time, each call's latency
        // (not the quota) would set the pace, while the pacers keep every API
        // within its rate whatever the overlap. Once one employee stops the pull,
        // no further employee starts and no further call is sent; what the
        // others already got is kept, since those calls are paid for.
        let halt = AtomicBool::new(false);
        let (people, columns, window, halt) = (&people, &columns, &window, &halt);
        let mut outcomes: Vec<Option<Result<Value, EmployeeError>>> =
            userids.iter().map(|_| None).collect();
        // By index: a closure over `&String` would not be provably `Send` for
        // every lifetime, which `tokio::spawn` of the pull needs.
        let mut answers = futures::stream::iter(0..userids.len())
            .map(move |i| async move {
                let userid = &userids[i];
                if halt.load(Ordering::SeqCst) {
                    return (i, Err(EmployeeError::Halted));
                }
                let Some(Some(person)) = people.get(i) else {
                    return (i, Err(EmployeeError::Absent));
                };
                let outcome = self
                    .employee_month(userid, person, columns, window, halt)
                    .await;
                (i, outcome)
            })
            // Unordered, so that one employee held up by retries does not keep the
            // next ones from starting; the order is restored below.
            .buffer_unordered(self.employees_in_flight);
        while let Some((i, outcome)) = answers.next().await {
            if let Some(slot) = outcomes.get_mut(i) {
                *slot = Some(outcome);
            }
        }
        let mut halted = 0usize;
        for (userid, outcome) in userids.iter().zip(outcomes) {
            match outcome {
                Some(Ok(record)) => pulled.records.push(SourceRecord {
                    employee: userid.clone(),
                    record,
                }),
                Some(Err(EmployeeError::Failed(reason))) => {
                    tracing::warn!(userid = %crate::text::clean(userid), month = %month, %reason, "DingTalk employee-month failed");
                    pulled.failed.push((userid.clone(), reason));
                }
                Some(Err(EmployeeError::Absent)) => pulled.absent.push(userid.clone()),
                // The first in the chunk's order, so the message does not depend on timing.
                Some(Err(EmployeeError::Stop(e))) => {
                    pulled.stopped.get_or_insert(e);
                }
                Some(Err(EmployeeError::Halted)) | None => halted += 1,
            }
        }
        if pulled.stopped.is_some() {
            tracing::info!(month = %month, kept = pulled.records.len(), not_pulled = halted,
                "DingTalk pull stopped; keeping the records already pulled");
        }
        Ok(pulled)
    }

    /// A report call for one employee; per-employee failures are told apart.
    /// An error that stops the pull sets `halt` at once, so that calls still
    /// waiting at the pacer are not sent.
    async fn report_call(
        &self,
        endpoint: &str,
        body: &Value,
        halt: &AtomicBool,
    ) -> Result<Value, EmployeeError> {
        match self.call_unless(endpoint, body, Some(halt)).await {
            Ok(v) => Ok(v),
            Err(RetryError::Failed(CallError::Api(f))) if f.class == Class::Record => {
                Err(EmployeeError::Failed(format!(
                    "{VENDOR} {endpoint}: errcode {} ({})",
                    f.code, f.message
                )))
            }
            Err(RetryError::Failed(CallError::Api(f))) if f.class == Class::NotFound => {
                Err(EmployeeError::Absent)
            }
            Err(RetryError::Failed(CallError::Halted)) => Err(EmployeeError::Halted),
            Err(e) => {
                halt.store(true, Ordering::SeqCst);
                Err(EmployeeError::Stop(self.error(endpoint, e)))
            }
        }
    }

    /// The employee's report columns summed over the window (`getcolumnval`,
    /// ≤20 columns a call).
    async fn column_sums<'c>(
        &self,
        userid: &str,
        columns: &'c [ResolvedColumn],
        window: &Window,
        halt: &AtomicBool,
    ) -> Result<HashMap<&'c str, Decimal>, EmployeeError> {
        let mut sums = HashMap::new();
        for chunk in columns.chunks(MAX_PER_REPORT_CALL) {
            let ids: Vec<String> = chunk.iter().map(|c| c.id.to_string()).collect();
            let body = json!({
                "userid": userid,
                "column_id_list": ids.join(","),
                "from_date": window.from,
                "to_date": window.to,
            });
            let answer = self.report_call(GETCOLUMNVAL, &body, halt).await?;
            for cv in answer["result"]["column_vals"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let Some(column) =
                    number(&cv["column_vo"]["id"]).and_then(|id| chunk.iter().find(|c| c.id == id))
                else {
                    continue;
                };
                let total = sum_column(
                    window,
                    &column.name,
                    cv["column_vals"].as_array(),
                    &cv["fixed_value"],
                )
                .map_err(|why| EmployeeError::Failed(format!("{VENDOR} {GETCOLUMNVAL}: {why}")))?;
                sums.insert(column.name.as_str(), total);
            }
        }
        Ok(sums)
    }

    /// The employee's configured leave types summed over the window
    /// (`getleavetimebynames`, ≤20 names a call).
    async fn leave_sums(
        &self,
        userid: &str,
        window: &Window,
        halt: &AtomicBool,
    ) -> Result<HashMap<&str, Decimal>, EmployeeError> {
        let mut leave = HashMap::new();
        for chunk in self.leave_names.chunks(MAX_PER_REPORT_CALL) {
            let body = json!({
                "userid": userid,
                "leave_names": chunk.join(","),
                "from_date": window.from,
                "to_date": window.to,
            });
            let answer = self.report_call(GETLEAVETIME, &body, halt).await?;
            for c in answer["result"]["columns"].as_array().into_iter().flatten() {
                let name = text(&c["columnvo"]["name"]);
                let Some(name) = chunk.iter().find(|n| **n == name) else {
                    continue;
                };
                let total = sum_column(window, name, c["columnvals"].as_array(), &c["fixed_value"])
                    .map_err(|why| {
                        EmployeeError::Failed(format!("{VENDOR} {GETLEAVETIME}: {why}"))
                    })?;
                leave.insert(name.as_str(), total);
            }
        }
        Ok(leave)
    }

    async fn employee_month(
        &self,
        userid: &str,
        person: &Person,
        columns: &[ResolvedColumn],
        window: &Window,
        halt: &AtomicBool,
    ) -> Result<Value, EmployeeError> {
        let failed = |endpoint: &str, why: String| {
            EmployeeError::Failed(format!("{VENDOR} {endpoint}: {why}"))
        };
        // Two different APIs, each with its own quota: asked at the same time.
        let (sums, leave) = futures::future::try_join(
            self.column_sums(userid, columns, window, halt),
            self.leave_sums(userid, window, halt),
        )
        .await?;

        let mut column_values = Map::new();
        for c in columns {
            match sums.get(c.name.as_str()) {
                Some(total) => {
                    let v = decimal_json(*total).ok_or_else(|| {
                        failed(
                            GETCOLUMNVAL,
                            format!("column \"{}\": the sum is out of range", c.name),
                        )
                    })?;
                    column_values.insert(c.name.clone(), v);
                }
                None => {
                    tracing::warn!(userid = %crate::text::clean(userid), column = %c.name, "DingTalk answered without this report column")
                }
            }
        }
        let mut leave_values = Map::new();
        for name in &self.leave_names {
            match leave.get(name.as_str()) {
                Some(total) => {
                    let v = decimal_json(*total).ok_or_else(|| {
                        failed(
                            GETLEAVETIME,
                            format!("leave \"{name}\": the sum is out of range"),
                        )
                    })?;
                    leave_values.insert(name.clone(), v);
                }
                None => {
                    if lock(&self.leave_warned).insert(name.clone()) {
                        tracing::warn!(leave = %name, "DingTalk's answer does not contain this configured leave name; check source.leave_names");
                    }
                }
            }
        }
        Ok(json!({
            "userid": userid,
            "name": person.name,
            "departments": person.departments,
            "job_number": person.job_number,
            "title": person.title,
            "columns": column_values,
            "leave": leave_values,
        }))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Resolves configured column names against the report's columns.
fn resolve(wanted: &[String], all: &[ReportColumn]) -> Result<Vec<ResolvedColumn>, SourceError> {
    let mut resolved = Vec::new();
    let mut unknown = Vec::new();
    let mut problems = Vec::new();
    for name in wanted {
        let ids: Vec<i64> = all
            .iter()
            .filter(|c| &c.name == name)
            .filter_map(|c| c.id)
            .collect();
        match ids.as_slice() {
            [id] => resolved.push(ResolvedColumn {
                name: name.clone(),
                id: *id,
            }),
            [] if all.iter().any(|c| &c.name == name) => problems.push(format!(
                "\"{name}\" in source.columns is a leave type (DingTalk lists it without an id); move it to source.leave_names"
            )),
            [] => unknown.push(format!("\"{name}\"")),
            several => problems.push(format!(
                "DingTalk report column \"{name}\" in source.columns is ambiguous: {} columns have that name (ids {})",
                several.len(),
                several.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    if unknown.is_empty() && problems.is_empty() {
        return Ok(resolved);
    }
    let mut available: Vec<&str> = Vec::new();
    for c in all.iter().filter(|c| c.id.is_some()) {
        if !available.contains(&c.name.as_str()) {
            available.push(&c.name);
        }
    }
    if !unknown.is_empty() {
        let noun = if unknown.len() == 1 {
            "column"
        } else {
            "columns"
        };
        problems.insert(
            0,
            format!(
                "unknown DingTalk report {noun} {} in source.columns",
                unknown.join(", ")
            ),
        );
    }
    Err(SourceError::Config(format!(
        "{}; available: {}",
        problems.join("; "),
        available.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::job::Source;
    use crate::sim::dingtalk::{
        BodyStyle, DingtalkSim, DingtalkSimConfig, DEFAULT_COLUMNS, GETATTCOLUMNS as SIM_COLUMNS,
    };
    use crate::sim::{CallRecord, Org};
    use crate::source::SourceClient;

    const SH: Tz = chrono_tz::Asia::Shanghai;

    fn october() -> Month {
        Month::new(2026, 10).unwrap()
    }

    /// 2026-11-02 12:00 in Shanghai: October is complete.
    fn after_october() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-02T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn fast_sim() -> DingtalkSimConfig {
        DingtalkSimConfig {
            today: NaiveDate::from_ymd_opt(2026, 11, 2),
            ..DingtalkSimConfig::default().with_endpoint_rate(2000)
        }
    }

    async fn start(employees: usize, config: DingtalkSimConfig) -> DingtalkSim {
        DingtalkSim::start(Org::generate(employees, 11), config)
            .await
            .unwrap()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn fast_limits() -> Vec<(String, Rate)> {
        [
            GETTOKEN,
            LISTSUB,
            USER_LIST,
            GETATTCOLUMNS,
            GETCOLUMNVAL,
            GETLEAVETIME,
        ]
        .iter()
        .map(|e| ((*e).to_owned(), Rate::per_second(1000)))
        .collect()
    }

    fn job(sim: &DingtalkSim, columns: &[&str], leave: &[&str]) -> DingtalkSource {
        DingtalkSource {
            app_key: sim.config().app_key.clone(),
            app_secret: Secret::new(sim.config().app_secret.clone()),
            base_url: sim.base_url().parse().expect("url"),
            columns: strings(columns),
            leave_names: strings(leave),
            monthly_call_budget: 5000,
            scope: Scope::default(),
            limits: fast_limits(),
            retry: RetryConfig {
                max_attempts: 10,
                initial_wait: Duration::from_millis(5),
                max_wait: Duration::from_millis(40),
                throttle_wait: Duration::from_millis(10),
            },
        }
    }

    fn client_for(cfg: &DingtalkSource) -> DingtalkClient {
        DingtalkClient::new(
            crate::sim::test_util::client(),
            cfg,
            Arc::new(CallStats::default()),
        )
    }

    /// Pulls `month` for everyone in chunks, as the sync engine does.
    /// The error that stopped a pull partway.
    fn stopped(pulled: Result<Pulled, SourceError>) -> String {
        match pulled {
            Ok(p) => p.stopped.map(|e| e.to_string()).unwrap_or_default(),
            Err(e) => e.to_string(),
        }
    }

    async fn pull_all(
        source: &SourceClient,
        month: Month,
        now: DateTime<Utc>,
    ) -> Result<(Vec<String>, Pulled), SourceError> {
        source.login().await?;
        let employees = source.employees().await?;
        let mut all = Pulled::default();
        for chunk in employees.chunks(source.chunk_size()) {
            let p = source.pull(month, chunk, now, SH).await?;
            all.records.extend(p.records);
            all.failed.extend(p.failed);
            all.absent.extend(p.absent);
            if let Some(stop) = p.stopped {
                return Err(stop);
            }
        }
        Ok((employees, all))
    }

    fn source_client(cfg: &DingtalkSource, stats: Arc<CallStats>) -> SourceClient {
        SourceClient::new(
            &Source::Dingtalk(cfg.clone()),
            crate::sim::test_util::client(),
            stats,
        )
        .unwrap()
    }

    fn check_records(sim: &DingtalkSim, cfg: &DingtalkSource, pulled: &Pulled, month: Month) {
        for r in &pulled.records {
            let expected = sim
                .expected_record(&r.employee, month, &cfg.columns, &cfg.leave_names)
                .unwrap();
            assert_eq!(r.record, expected, "{}", r.employee);
        }
    }

    #[tokio::test]
    async fn pulls_120_users_across_nested_departments_with_small_pages() {
        let config = DingtalkSimConfig {
            page_size_cap: Some(7),
            messy_dates: true,
            ..fast_sim()
        };
        let sim = start(120, config).await;
        let cfg = job(&sim, &DEFAULT_COLUMNS[..10], &["年假", "事假", "病假"]);
        let stats = Arc::new(CallStats::default());
        let source = source_client(&cfg, stats.clone());
        assert_eq!(source.kind(), "dingtalk");
        assert_eq!(source.chunk_size(), EMPLOYEES_PER_CHUNK);
        assert_eq!(source.metered_calls_per_employee(), Some(2));
        let (employees, pulled) = pull_all(&source, october(), after_october()).await.unwrap();

        let mut expected: Vec<String> = sim.org().users.iter().map(|u| u.userid.clone()).collect();
        expected.sort();
        assert_eq!(employees, expected);
        assert_eq!(pulled.records.len(), 120);
        assert!(pulled.failed.is_empty() && pulled.absent.is_empty());
        check_records(&sim, &cfg, &pulled, october());
        // Nested departments, several pages each.
        assert!(sim.org().departments.iter().any(|d| d.parent_id > 1));
        assert!(sim.calls(USER_LIST) > sim.org().departments.len());
        assert_eq!(sim.calls(LISTSUB), sim.org().departments.len());
        let r = &pulled.records[0].record;
        assert!(!r["departments"].as_array().unwrap().is_empty());
        assert_eq!(r["columns"].as_object().unwrap().len(), 10);
        assert_eq!(r["leave"].as_object().unwrap().len(), 3);

        assert_eq!(sim.calls(GETCOLUMNVAL), 120);
        assert_eq!(sim.calls(GETLEAVETIME), 120);
        assert_eq!(sim.calls(SIM_COLUMNS), 1);
        assert_eq!(sim.calls(GETTOKEN), 1);
        assert_eq!(source.metered_calls(), 241);
        assert_eq!(sim.metered_calls(), 241);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot[METERED_STATS_KEY].calls, 241);
        assert_eq!(snapshot[GETCOLUMNVAL].calls, 120);
        assert_eq!(sim.quota_violations(), 0);
    }

    #[tokio::test]
    async fn twenty_five_columns_take_two_calls_per_user() {
        let sim = start(5, fast_sim()).await;
        let cfg = job(&sim, &DEFAULT_COLUMNS[..25], &[]);
        let source = source_client(&cfg, Arc::new(CallStats::default()));
        assert_eq!(source.metered_calls_per_employee(), Some(2));
        let (_, pulled) = pull_all(&source, october(), after_october()).await.unwrap();
        assert_eq!(pulled.records.len(), 5);
        check_records(&sim, &cfg, &pulled, october());
        assert_eq!(sim.calls(GETCOLUMNVAL), 10);
        assert_eq!(sim.calls(GETLEAVETIME), 0);
        // 标准工作时长 has a fixed value.
        assert_eq!(
            pulled.records[0].record["columns"]["标准工作时长"],
            json!(8)
        );
        assert_eq!(pulled.records[0].record["leave"], json!({}));

        let client = client_for(&job(&sim, &DEFAULT_COLUMNS[..21], &["年假"; 41]));
        assert_eq!(client.metered_calls_per_employee(), 2 + 3);
        assert_eq!(client.metered_calls_for(100, 2), 1001);
        assert_eq!(client_for(&job(&sim, &[], &[])).metered_calls_for(10, 1), 0);
    }

    #[tokio::test]
    async fn completes_with_a_fifth_of_the_calls_throttled() {
        let config = DingtalkSimConfig {
            throttle_ratio: 0.2,
            ..fast_sim()
        };
        let sim = start(30, config).await;
        let cfg = job(&sim, &DEFAULT_COLUMNS[..4], &["年假"]);
        let stats = Arc::new(CallStats::default());
        let source = source_client(&cfg, stats.clone());
        let (_, pulled) = pull_all(&source, october(), after_october()).await.unwrap();
        assert_eq!(pulled.records.len(), 30);
        check_records(&sim, &cfg, &pulled, october());
        let injected = sim.injected_throttles();
        assert!(injected > 10, "{injected}");
        let throttled: u64 = stats.snapshot().values().map(|s| s.throttled).sum();
        assert_eq!(throttled, injected as u64);
    }

    #[tokio::test]
    async fn unknown_column_lists_the_available_names() {
        let sim = start(3, fast_sim()).await;
        let cfg = job(&sim, &["出勤天", "工作时长"], &[]);
        let client = client_for(&cfg);
        let e = client.resolve_columns().await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("unknown DingTalk report column \"出勤天\" in source.columns; available: 出勤天数, 休息天数, 工作时长"),
            "{text}"
        );
        assert!(!e.is_transient());
        // The pull stops with the same error, before any report call.
        let source = source_client(&cfg, Arc::new(CallStats::default()));
        let e = pull_all(&source, october(), after_october())
            .await
            .unwrap_err();
        assert!(matches!(e, SourceError::Config(_)), "{e}");
        let e = source.check_remote().await.unwrap_err();
        assert!(matches!(e, SourceError::Config(_)), "{e}");
        let ok = source_client(
            &job(&sim, &["出勤天数"], &["年假", "育儿假"]),
            Arc::default(),
        );
        assert_eq!(
            ok.check_remote().await.unwrap(),
            ["leave name \"育儿假\" in source.leave_names is not among the report's leave columns; check its spelling"]
        );
        assert_eq!(sim.calls(GETCOLUMNVAL), 0);

        let client = client_for(&job(&sim, &["年假", "x", "y"], &["年假", "育儿假"]));
        let text = client.resolve_columns().await.unwrap_err().to_string();
        assert!(
            text.starts_with("unknown DingTalk report columns \"x\", \"y\" in source.columns; \"年假\" in source.columns is a leave type"),
            "{text}"
        );
        assert_eq!(client.unlisted_leave_names().await.unwrap(), ["育儿假"]);
        // getattcolumns once per client.
        assert_eq!(client.report_columns().await.unwrap().len(), 36);
        assert_eq!(sim.calls(SIM_COLUMNS), 4);
    }

    #[test]
    fn ambiguous_columns_are_reported() {
        let all = vec![
            ReportColumn {
                id: Some(1),
                name: "加班时长".into(),
                alias: "a".into(),
            },
            ReportColumn {
                id: Some(2),
                name: "加班时长".into(),
                alias: "b".into(),
            },
            ReportColumn {
                id: Some(3),
                name: "出勤天数".into(),
                alias: "c".into(),
            },
        ];
        let r = resolve(&strings(&["出勤天数"]), &all).unwrap();
        assert_eq!(
            r,
            [ResolvedColumn {
                name: "出勤天数".into(),
                id: 3
            }]
        );
        let e = resolve(&strings(&["加班时长"]), &all)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "DingTalk report column \"加班时长\" in source.columns is ambiguous: 2 columns have that name (ids 1, 2); available: 加班时长, 出勤天数");
    }

    #[tokio::test]
    async fn bad_credentials_show_the_code_never_the_secret() {
        let sim = start(3, fast_sim()).await;
        let mut cfg = job(&sim, &["出勤天数"], &[]);
        cfg.app_secret = Secret::new("Wrong-Secret-0123456789");
        let e = client_for(&cfg).login().await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("errcode 40001"), "{text}");
        assert!(text.contains("app_secret"), "{text}");
        assert!(!text.contains("Wrong-Secret-0123456789"), "{text}");
        assert!(!e.is_transient());
        // No retry of a credentials error.
        assert_eq!(sim.calls(GETTOKEN), 1);

        let mut cfg = job(&sim, &["出勤天数"], &[]);
        cfg.app_key = "ding-unknown".into();
        let text = client_for(&cfg).login().await.unwrap_err().to_string();
        assert!(
            text.contains("errcode 40089") && text.contains("app_key"),
            "{text}"
        );
        assert!(!text.contains(&sim.config().app_secret));
    }

    #[tokio::test]
    async fn quota_exhausted_stops_with_the_reset_message() {
        let config = DingtalkSimConfig {
            monthly_quota: Some(5),
            ..fast_sim()
        };
        let sim = start(10, config).await;
        let cfg = job(&sim, &["出勤天数"], &[]);
        let source = source_client(&cfg, Arc::new(CallStats::default()));
        let e = pull_all(&source, october(), after_october())
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("errcode 90020"), "{text}");
        assert!(text.contains("next calendar month"), "{text}");
        assert!(!e.is_transient());
        // One column lookup and four employees fit. Employees are pulled several
        // at once, so the calls already under way when the first refusal comes
        // back are refused too, but none is retried and none starts afterwards.
        let in_flight = client_for(&cfg).employees_in_flight;
        assert!(in_flight > 1, "{in_flight}");
        let refused = sim.quota_refusals();
        assert!((1..=in_flight).contains(&refused), "{refused}");
        assert_eq!(sim.calls(GETCOLUMNVAL), 4 + refused);

        // The records the quota paid for are kept, alongside the stop.
        let sim = start(
            10,
            DingtalkSimConfig {
                monthly_quota: Some(5),
                ..fast_sim()
            },
        )
        .await;
        let cfg = job(&sim, &["出勤天数"], &[]);
        let client = client_for(&cfg);
        let employees = client.employees(&Scope::default()).await.unwrap();
        let pulled = client
            .month_data(&employees, october(), after_october(), SH)
            .await
            .unwrap();
        assert_eq!(pulled.records.len(), 4);
        check_records(&sim, &cfg, &pulled, october());
        assert!(pulled.failed.is_empty() && pulled.absent.is_empty());
        let stop = pulled.stopped.map(|e| e.to_string()).unwrap_or_default();
        assert!(stop.contains("errcode 90020"), "{stop}");
        // In the chunk's order, as pulled one at a time.
        let order: Vec<usize> = pulled
            .records
            .iter()
            .filter_map(|r| employees.iter().position(|e| *e == r.employee))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert_eq!(client.metered_calls(), 1 + sim.calls(GETCOLUMNVAL) as u64);
    }

    #[tokio::test]
    async fn switches_body_encoding_when_refused() {
        let config = DingtalkSimConfig {
            body_styles: vec![
                (GETCOLUMNVAL.into(), BodyStyle::FormOnly),
                (GETLEAVETIME.into(), BodyStyle::JsonOnly),
                (USER_LIST.into(), BodyStyle::FormOnly),
            ],
            ..fast_sim()
        };
        let sim = start(12, config).await;
        let cfg = job(&sim, &["出勤天数", "工作时长"], &["年假", "事假"]);
        let client = client_for(&cfg);
        // Leave calls start form-encoded here: the switch back to JSON is exercised too.
        client.set_form_encoding(GETLEAVETIME, true);
        let employees = client.employees(&Scope::default()).await.unwrap();
        assert_eq!(employees.len(), 12);
        let pulled = client
            .month_data(&employees, october(), after_october(), SH)
            .await
            .unwrap();
        assert_eq!(pulled.records.len(), 12);
        check_records(&sim, &cfg, &pulled, october());
        // The other encoding sticks after the first refusal: only the calls
        // already sent when it came back are refused too (employees are pulled
        // several at once), each resent once in the other encoding.
        assert_eq!(client.encoding(GETCOLUMNVAL), Encoding::Form);
        assert_eq!(client.encoding(GETLEAVETIME), Encoding::Json);
        assert_eq!(client.encoding(USER_LIST), Encoding::Form);
        let log = sim.call_log();
        let refused = |endpoint: &str, code: i64| {
            log.iter()
                .filter(|c| c.endpoint == endpoint && c.outcome.code() == Some(code))
                .count()
        };
        let in_flight = client.employees_in_flight;
        for (endpoint, code) in [(GETCOLUMNVAL, 43004), (GETLEAVETIME, 43005)] {
            let n = refused(endpoint, code);
            assert!((1..=in_flight).contains(&n), "{endpoint}: {n}");
            assert_eq!(sim.calls(endpoint), 12 + n, "{endpoint}");
        }
        // The listing switched once (its first page is asked alone).
        assert_eq!(refused(USER_LIST, 43004), 1);
        let codes: Vec<i64> = log.iter().filter_map(|c| c.outcome.code()).collect();
        assert!(
            codes.iter().all(|c| *c == 43004 || *c == 43005),
            "{codes:?}"
        );
    }

    #[tokio::test]
    async fn expired_tokens_are_refreshed() {
        let config = DingtalkSimConfig {
            token_expires_after_calls: Some(9),
            ..fast_sim()
        };
        let sim = start(15, config).await;
        let cfg = job(&sim, &["出勤天数"], &["年假"]);
        let source = source_client(&cfg, Arc::new(CallStats::default()));
        let (_, pulled) = pull_all(&source, october(), after_october()).await.unwrap();
        assert_eq!(pulled.records.len(), 15);
        check_records(&sim, &cfg, &pulled, october());
        let issued = sim.tokens_issued();
        assert!(issued > 3, "{issued}");
        let log = sim.call_log();
        // One gettoken per expiry, however many calls met it: every token but the
        // last served its 9 calls, none was fetched twice and wasted.
        let served = log
            .iter()
            .filter(|c| c.endpoint != GETTOKEN && c.outcome.is_ok())
            .count();
        assert_eq!(issued, served.div_ceil(9), "{served} calls");
        // Each expiry is met by the calls under way with the old token (two per
        // employee pulled at once), at most; each of them is resent once.
        let expired = log
            .iter()
            .filter(|c| c.outcome.code() == Some(42001))
            .count();
        let in_flight = 2 * client_for(&cfg).employees_in_flight;
        assert!(
            (issued - 1..=(issued - 1) * in_flight).contains(&expired),
            "{expired} expired answers for {issued} tokens"
        );
        assert_eq!(log.len(), served + expired + issued);
    }

    #[tokio::test]
    async fn text_values_fail_the_employee_month_and_name_column_date_value() {
        let sim = start(4, fast_sim()).await;
        let cfg = job(&sim, &["出勤天数", "班次"], &[]);
        let source = source_client(&cfg, Arc::new(CallStats::default()));
        let (_, pulled) = pull_all(&source, october(), after_october()).await.unwrap();
        assert!(pulled.records.is_empty());
        assert_eq!(pulled.failed.len(), 4);
        let reason = &pulled.failed[0].1;
        assert!(
            reason.starts_with(
                "DingTalk topapi/attendance/getcolumnval: column \"班次\" on 2026-10-01: value \""
            ),
            "{reason}"
        );
        assert!(reason.ends_with("\" is not a number"), "{reason}");

        let cfg = job(&sim, &["考勤组"], &[]);
        let client = client_for(&cfg);
        let employees = client.employees(&Scope::default()).await.unwrap();
        let pulled = client
            .month_data(&employees[..1], october(), after_october(), SH)
            .await
            .unwrap();
        let reason = &pulled.failed[0].1;
        assert!(
            reason.contains("column \"考勤组\": fixed value \""),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn per_user_rejections_and_unknown_users() {
        let sim = start(6, fast_sim()).await;
        let cfg = job(&sim, &["出勤天数"], &[]);
        let client = client_for(&cfg);
        let mut employees = client.employees(&Scope::default()).await.unwrap();
        sim.inject_answer(
            GETCOLUMNVAL,
            json!({"errcode": 400002, "errmsg": "参数错误"}),
            1,
        );
        sim.inject_answer(
            GETCOLUMNVAL,
            json!({"errcode": 33012, "errmsg": "无效的USERID"}),
            1,
        );
        employees.push("NoSuchUser".into());
        let pulled = client
            .month_data(&employees, october(), after_october(), SH)
            .await
            .unwrap();
        // Employees are pulled several at once, so which one meets which injected
        // answer depends on timing; the chunk's order is kept in every list.
        assert_eq!(pulled.records.len(), 4);
        check_records(&sim, &cfg, &pulled, october());
        assert_eq!(pulled.failed.len(), 1);
        assert_eq!(
            pulled.failed[0].1,
            "DingTalk topapi/attendance/getcolumnval: errcode 400002 (参数错误)"
        );
        assert_eq!(pulled.absent.len(), 2);
        assert_eq!(pulled.absent[1], "NoSuchUser");
        let rejected = [&pulled.failed[0].0, &pulled.absent[0]];
        assert_ne!(rejected[0], rejected[1]);
        let records: Vec<&String> = pulled.records.iter().map(|r| &r.employee).collect();
        let expected: Vec<&String> = employees[..6]
            .iter()
            .filter(|e| !rejected.contains(e))
            .collect();
        assert_eq!(records, expected);

        // Transient answers are retried; an auth exception stops with its sub-code.
        sim.inject_answer(
            GETCOLUMNVAL,
            json!({"errcode": -1, "errmsg": "系统繁忙"}),
            2,
        );
        sim.inject_answer(
            GETCOLUMNVAL,
            json!({"errcode": 88, "errmsg": "ding talk error", "sub_code": "40078", "sub_msg": "不存在的临时授权码"}),
            1,
        );
        let e = stopped(
            client
                .month_data(&employees[..1], october(), after_october(), SH)
                .await,
        );
        assert!(
            e.contains("errcode 88 (ding talk error; sub-code 40078: 不存在的临时授权码)"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn token_errors_on_a_call_refresh_once() {
        let sim = start(3, fast_sim()).await;
        let cfg = job(&sim, &["出勤天数"], &[]);
        let client = client_for(&cfg);
        let employees = client.employees(&Scope::default()).await.unwrap();
        sim.inject_answer(
            GETCOLUMNVAL,
            json!({"errcode": 40001, "errmsg": "invalid token"}),
            1,
        );
        let pulled = client
            .month_data(&employees, october(), after_october(), SH)
            .await
            .unwrap();
        assert_eq!(pulled.records.len(), 3);
        assert_eq!(sim.calls(GETTOKEN), 2);
        // A call whose fresh tokens are rejected again and again stops the pull.
        // One employee: with several, the rejections would be shared out among
        // calls pulled at once, each of which is refreshed only a few times.
        sim.inject_answer(
            GETCOLUMNVAL,
            json!({"errcode": 42001, "errmsg": "expired"}),
            4,
        );
        let e = stopped(
            client
                .month_data(&employees[..1], october(), after_october(), SH)
                .await,
        );
        assert!(e.contains("rejected repeatedly"), "{e}");
        assert_eq!(sim.calls(GETTOKEN), 2 + 3);

        // As many rejections as one call survives, over a chunk pulled at once:
        // however they are shared out, the pull goes on, every record is right,
        // and no rejection costs more than one refresh.
        sim.inject_answer(
            GETCOLUMNVAL,
            json!({"errcode": 42001, "errmsg": "expired"}),
            3,
        );
        let pulled = client
            .month_data(&employees, october(), after_october(), SH)
            .await
            .unwrap();
        assert!(pulled.stopped.is_none(), "{:?}", pulled.stopped);
        assert_eq!(pulled.records.len(), 3);
        check_records(&sim, &cfg, &pulled, october());
        // A fresh token after the last stop, then one refresh for the first
        // rejection and at most one for each of the two others.
        let fetched = sim.calls(GETTOKEN) - 5;
        assert!((2..=4).contains(&fetched), "{fetched}");
    }

    #[tokio::test]
    async fn ip_ban_pauses_every_call_then_goes_on() {
        let sim = start(4, fast_sim()).await;
        let cfg = job(&sim, &["出勤天数"], &["年假"]);
        let client = client_for(&cfg).with_ip_ban_floor(Duration::from_millis(300));
        let employees = client.employees(&Scope::default()).await.unwrap();
        for html in [false, true] {
            sim.set_ip_ban_html(html);
            sim.set_ip_banned(true);
            let lift = {
                let sim = sim.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    sim.set_ip_banned(false);
                })
            };
            let bans = sim.bans_answered();
            let logged = sim.call_log().len();
            let started = Instant::now();
            let pulled = client
                .month_data(&employees, october(), after_october(), SH)
                .await
                .unwrap();
            lift.await.unwrap();
            assert_eq!(pulled.records.len(), 4);
            check_records(&sim, &cfg, &pulled, october());
            assert!(started.elapsed() >= Duration::from_millis(300));
            // Only the calls already sent when the first ban answer came back
            // meet the ban (two per employee pulled at once, at most) ...
            let banned = sim.bans_answered() - bans;
            assert!((1..=8).contains(&banned), "{banned} ban answers");
            // ... and nothing goes out again until the pause is over.
            let log = sim.call_log();
            let round = &log[logged..];
            let first_ban = round
                .iter()
                .filter(|c| !c.outcome.is_ok())
                .map(|c| c.at)
                .min()
                .unwrap();
            let answered: Vec<&CallRecord> = round.iter().filter(|c| c.outcome.is_ok()).collect();
            let reports = answered
                .iter()
                .filter(|c| c.endpoint == GETCOLUMNVAL || c.endpoint == GETLEAVETIME)
                .count();
            assert_eq!(reports, 8);
            for c in answered {
                assert!(
                    c.at.duration_since(first_ban) >= Duration::from_millis(300),
                    "{} sent {:?} after the first ban answer",
                    c.endpoint,
                    c.at.duration_since(first_ban)
                );
            }
        }
    }

    #[tokio::test]
    async fn default_pacing_stays_under_twenty_per_second() {
        let sim = start(30, DingtalkSimConfig::default()).await;
        let mut cfg = job(&sim, &["出勤天数"], &[]);
        cfg.limits = Vec::new();
        let client = client_for(&cfg);
        let employees = client.employees(&Scope::default()).await.unwrap();
        let started = Instant::now();
        let pulled = client
            .month_data(&employees, october(), after_october(), SH)
            .await
            .unwrap();
        assert_eq!(pulled.records.len(), 30);
        // 30 calls spaced at least 50 ms apart.
        assert!(started.elapsed() >= Duration::from_millis(29 * 50));
        let log = sim.call_log();
        let times: Vec<Instant> = log
            .iter()
            .filter(|c| c.endpoint == GETCOLUMNVAL)
            .map(|c| c.at)
            .collect();
        assert!(times.len() >= 30);
    }

    #[tokio::test]
    async fn page_size_shrinks_on_invalid_parameter() {
        let config = DingtalkSimConfig {
            max_page_size: 40,
            page_size_cap: None,
            ..fast_sim()
        };
        let sim = start(60, config).await;
        let client = client_for(&job(&sim, &["出勤天数"], &[]));
        let employees = client.employees(&Scope::default()).await.unwrap();
        assert_eq!(employees.len(), 60);
        let refused = sim
            .call_log()
            .iter()
            .filter(|c| c.endpoint == USER_LIST && c.outcome.code() == Some(400002))
            .count();
        // 100 → 50 → 25, once.
        assert_eq!(refused, 2);
    }

    #[tokio::test]
    async fn discover_hands_people_on_while_the_directory_is_walked() {
        let latency = Duration::from_millis(10);
        let config = DingtalkSimConfig {
            page_size_cap: Some(7),
            latency,
            ..fast_sim()
        };
        let sim = start(300, config).await;
        let cfg = job(&sim, &["出勤天数"], &["年假"]);
        let walker = client_for(&cfg);
        let client = &walker;
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let scope = Scope::default();
        let receiving = async {
            let mut batches = Vec::new();
            while let Some(batch) = rx.recv().await {
                batches.push((Instant::now(), batch));
            }
            batches
        };
        let (all, batches) = tokio::join!(
            async move {
                let all = client.discover(&scope, &tx).await;
                drop(tx);
                all
            },
            receiving
        );
        let all = all.unwrap();
        let walked_at = Instant::now();
        let received: Vec<String> = batches.iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(
            received,
            all.iter().collect::<Vec<_>>(),
            "each once, in order"
        );
        let mut sorted = received.clone();
        sorted.sort();
        let expected = client_for(&cfg).employees(&Scope::default()).await.unwrap();
        assert_eq!(sorted, expected, "the same people as listing first");
        assert!(batches.len() > 3, "{} batches", batches.len());
        assert!(
            batches[0].0 + latency * 5 < walked_at,
            "the first came early"
        );
        // Every record names all the departments of its person, though some were
        // handed on before every department was named.
        let pulled = walker
            .month_data(&received, october(), after_october(), SH)
            .await
            .unwrap();
        assert_eq!(pulled.records.len(), 300);
        check_records(&sim, &cfg, &pulled, october());
        let in_two = sim
            .org()
            .users
            .iter()
            .filter(|u| u.departments.len() > 1)
            .count();
        assert!(in_two > 0, "the organisation has people in two departments");
    }

    #[tokio::test]
    async fn directory_and_reports_overlap_calls_within_bounds() {
        let latency = Duration::from_millis(20);
        let config = DingtalkSimConfig {
            page_size_cap: Some(7),
            latency,
            ..fast_sim()
        };
        let sim = start(300, config).await;
        let cfg = job(&sim, &["出勤天数", "工作时长"], &["年假"]);
        let client = client_for(&cfg);
        let started = Instant::now();
        let employees = client.employees(&Scope::default()).await.unwrap();
        let listing = started.elapsed();
        let mut expected: Vec<String> = sim.org().users.iter().map(|u| u.userid.clone()).collect();
        expected.sort();
        assert_eq!(employees, expected);
        let log = sim.call_log();
        let (walked, pages) = (sim.calls(LISTSUB), sim.calls(USER_LIST));
        assert_eq!(walked, sim.org().departments.len());
        assert!(pages > 2 * walked, "{pages} pages");
        // One call at a time, the listing takes at least one latency per call.
        let one_at_a_time = latency * (walked + pages) as u32;
        assert!(
            listing < one_at_a_time / 2,
            "{listing:?} vs {one_at_a_time:?}"
        );
        for endpoint in [LISTSUB, USER_LIST] {
            // With the simulator holding each call for `latency`, the most
            // arrivals within it bound how many were under way at once.
            let most = crate::sim::most_calls_within(&log, endpoint, latency);
            assert!(
                (2..=DIRECTORY_IN_FLIGHT).contains(&most),
                "{endpoint}: {most}"
            );
        }
        // Users are listed while the walk goes on.
        let first_page = log.iter().find(|c| c.endpoint == USER_LIST).unwrap().at;
        let last_walk = log.iter().rev().find(|c| c.endpoint == LISTSUB).unwrap().at;
        assert!(first_page < last_walk);

        let pulled = client
            .month_data(&employees, october(), after_october(), SH)
            .await
            .unwrap();
        assert_eq!(pulled.records.len(), 300);
        check_records(&sim, &cfg, &pulled, october());
        let order: Vec<&String> = pulled.records.iter().map(|r| &r.employee).collect();
        assert_eq!(order, employees.iter().collect::<Vec<_>>());
        let log = sim.call_log();
        for endpoint in [GETCOLUMNVAL, GETLEAVETIME] {
            // With the simulator holding each call for `latency`, the most
            // arrivals within it bound how many were under way at once.
            let most = crate::sim::most_calls_within(&log, endpoint, latency);
            assert!(
                (2..=EMPLOYEES_IN_FLIGHT).contains(&most),
                "{endpoint}: {most}"
            );
        }
        assert_eq!(client.metered_calls(), 1 + 2 * 300);
        assert_eq!(sim.metered_calls(), 1 + 2 * 300);
        assert_eq!(sim.quota_violations(), 0);

        // A slow configured rate keeps fewer under way than that.
        let mut slow = cfg.clone();
        slow.limits = vec![(GETLEAVETIME.to_owned(), Rate::per_minute(240))];
        let client = client_for(&slow);
        assert_eq!(client.employees_in_flight, 4);
        assert_eq!(client.departments_in_flight, DIRECTORY_IN_FLIGHT);
        slow.limits = vec![(TOTAL.to_owned(), Rate::per_second(3))];
        let client = client_for(&slow);
        assert_eq!(
            (client.employees_in_flight, client.user_pages_in_flight),
            (3, 3)
        );
        slow.limits = vec![(USER_LIST.to_owned(), Rate::per_minute(10))];
        assert_eq!(client_for(&slow).user_pages_in_flight, 1);
    }

    #[tokio::test]
    async fn root_out_of_scope_walks_from_the_configured_departments() {
        let sim = start(120, fast_sim()).await;
        let org = sim.org().clone();
        let tops: Vec<u64> = org
            .departments
            .iter()
            .filter(|d| d.parent_id == 1)
            .map(|d| d.id)
            .take(2)
            .collect();
        assert_eq!(tops.len(), 2);
        let mut cfg = job(&sim, &["出勤天数"], &[]);
        cfg.scope.departments = tops.clone();
        let client = client_for(&cfg);
        sim.inject_answer(
            LISTSUB,
            json!({"errcode": 50004, "errmsg": "部门不在授权范围"}),
            1,
        );
        let employees = client.employees(&cfg.scope).await.unwrap();
        let mut expected: Vec<String> = org
            .users
            .iter()
            .filter(|u| {
                u.departments.iter().any(|d| {
                    org.top_level_department(*d)
                        .is_some_and(|t| tops.contains(&t.id))
                })
            })
            .map(|u| u.userid.clone())
            .collect();
        expected.sort();
        assert!(!expected.is_empty());
        assert_eq!(employees, expected);
        let subtree = org
            .departments
            .iter()
            .filter(|d| {
                org.top_level_department(d.id)
                    .is_some_and(|t| tops.contains(&t.id))
            })
            .count();
        // The refused root, then each configured subtree once.
        assert_eq!(sim.calls(LISTSUB), 1 + subtree);

        // Without configured departments there is nothing to fall back to.
        sim.inject_answer(
            LISTSUB,
            json!({"errcode": 50004, "errmsg": "部门不在授权范围"}),
            1,
        );
        let e = client_for(&job(&sim, &["出勤天数"], &[]))
            .employees(&Scope::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("errcode 50004") && e.contains("listsub"), "{e}");
    }

    #[tokio::test]
    async fn scope_by_userids_and_departments() {
        let sim = start(80, fast_sim()).await;
        let org = sim.org().clone();
        let mut cfg = job(&sim, &["出勤天数"], &[]);
        let (a, b) = (org.users[5].userid.clone(), org.users[2].userid.clone());
        cfg.scope.userids = vec![a.clone(), b.clone(), "ghost".into(), a.clone()];
        let source = source_client(&cfg, Arc::new(CallStats::default()));
        let (employees, pulled) = pull_all(&source, october(), after_october()).await.unwrap();
        let mut expected = vec![a, b, "ghost".to_owned()];
        expected.sort();
        assert_eq!(employees, expected);
        assert_eq!(pulled.records.len(), 2);
        assert_eq!(pulled.absent, ["ghost"]);

        // One top-level department: its subtree's members, with every department's name.
        let top = org
            .departments
            .iter()
            .find(|d| d.parent_id == 1)
            .unwrap()
            .id;
        let mut cfg = job(&sim, &["出勤天数"], &[]);
        cfg.scope.departments = vec![top];
        let source = source_client(&cfg, Arc::new(CallStats::default()));
        let (employees, pulled) = pull_all(&source, october(), after_october()).await.unwrap();
        let mut expected: Vec<String> = org
            .users
            .iter()
            .filter(|u| {
                u.departments
                    .iter()
                    .any(|d| org.top_level_department(*d).is_some_and(|t| t.id == top))
            })
            .map(|u| u.userid.clone())
            .collect();
        expected.sort();
        assert!(!expected.is_empty());
        assert_eq!(employees, expected);
        check_records(&sim, &cfg, &pulled, october());
    }

    #[tokio::test]
    async fn month_in_progress_and_future_months() {
        let sim = start(3, fast_sim()).await;
        let cfg = job(&sim, &DEFAULT_COLUMNS[..8], &["年假", "事假"]);
        let client = client_for(&cfg);
        let employees = client.employees(&Scope::default()).await.unwrap();
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 10, d).unwrap();
        for (now, last) in [
            ("2026-10-15T04:00:00Z", 15),
            ("2026-09-30T16:00:00Z", 1), // 00:00 on the 1st in Shanghai
        ] {
            let pulled = client
                .month_data(&employees, october(), at(now), SH)
                .await
                .unwrap();
            assert_eq!(pulled.records.len(), 3);
            for r in &pulled.records {
                let expected = sim
                    .expected_period_record(
                        &r.employee,
                        day(1),
                        day(last),
                        &cfg.columns,
                        &cfg.leave_names,
                    )
                    .unwrap();
                assert_eq!(r.record, expected, "{now}");
            }
        }
        let calls = sim.calls(GETCOLUMNVAL);
        let pulled = client
            .month_data(
                &employees,
                Month::new(2026, 12).unwrap(),
                after_october(),
                SH,
            )
            .await
            .unwrap();
        assert!(pulled.records.is_empty() && pulled.absent.is_empty());
        assert_eq!(sim.calls(GETCOLUMNVAL), calls);
    }

    #[tokio::test]
    async fn shipped_mapping_applies_to_a_simulator_record() {
        use crate::config::SourceFile;
        use crate::mapping::{Mapping, Vars};
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

    #[test]
    fn shipped_job_parses_and_its_budget_fits_a_few_hundred_employees() {
        use crate::config::job::parse_job;
        use crate::config::SourceFile;
        let file = SourceFile::new(
            "jobs/dingtalk_monthly.toml",
            include_str!("../../../jobs/dingtalk_monthly.toml"),
        );
        let env = |name: &str| Some(format!("value-of-{name}"));
        let job = match parse_job("dingtalk_monthly", &file, &env) {
            Ok(j) => j,
            Err(e) => panic!(
                "{}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        };
        let Source::Dingtalk(src) = &job.source else {
            panic!("expected a DingTalk source");
        };
        assert_eq!(job.mapping, "dingtalk_monthly.toml");
        assert_eq!(src.app_secret.expose(), "value-of-DINGTALK_APP_SECRET");
        let client = client_for(src);
        assert_eq!(client.metered_calls_per_employee(), 2);
        // 4 runs a month; the one on the 3rd pulls two months.
        let runs = [2usize, 1, 1, 1];
        let per_month = |employees: usize| -> u64 {
            runs.iter()
                .map(|m| client.metered_calls_for(employees, *m))
                .sum()
        };
        assert_eq!(per_month(499), 4994);
        assert!(per_month(499) <= u64::from(src.monthly_call_budget));
        assert!(per_month(500) > u64::from(src.monthly_call_budget));
    }

    // ---- pure helpers ------------------------------------------------------

    #[test]
    fn answers_are_classified_by_status_and_body() {
        let ok = StatusCode::OK;
        assert!(matches!(
            read_answer(ok, br#"{"errcode":0}"#),
            Read::Body(_)
        ));
        assert!(matches!(
            read_answer(ok, br#"{"status":1111,"wait":5,"punish":"deny"}"#),
            Read::Banned(_)
        ));
        assert!(matches!(
            read_answer(ok, br#"{"status":"1111"}"#),
            Read::Banned(_)
        ));
        assert!(matches!(
            read_answer(ok, b"<html>denied</html>"),
            Read::Banned(_)
        ));
        assert!(matches!(
            read_answer(StatusCode::FORBIDDEN, b"<!DOCTYPE html>"),
            Read::Banned(_)
        ));
        assert!(matches!(
            read_answer(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>"),
            Read::Transient(_)
        ));
        assert!(matches!(
            read_answer(StatusCode::TOO_MANY_REQUESTS, b""),
            Read::Transient(_)
        ));
        // A redirect is not followed, and is no ban to wait out.
        assert!(matches!(
            read_answer(StatusCode::FOUND, b""),
            Read::Protocol(m) if m.starts_with("HTTP 302 Found: the server redirects elsewhere")
        ));
        assert_eq!(
            read_answer(StatusCode::NOT_FOUND, b"404 page not found"),
            Read::Protocol(
                "HTTP 404 Not Found: no such endpoint; check `base_url` in the job's [source]"
                    .into()
            )
        );
        assert_eq!(
            read_answer(
                StatusCode::BAD_REQUEST,
                br#"{"code":"invalidClientIdOrSecret","message":"x"}"#
            ),
            Read::Protocol("HTTP 400 Bad Request: invalidClientIdOrSecret".into())
        );
        // An errcode body is an answer even with `status` in it.
        assert!(matches!(
            read_answer(ok, br#"{"errcode":90018,"status":1111}"#),
            Read::Body(_)
        ));
    }

    #[test]
    fn ip_ban_wait_has_a_five_minute_floor_and_a_cap() {
        assert_eq!(IP_BAN_MIN_WAIT, Duration::from_secs(300));
        let floor = IP_BAN_MIN_WAIT;
        assert_eq!(
            ip_ban_wait(Duration::from_secs(1), floor),
            Duration::from_secs(300)
        );
        assert_eq!(
            ip_ban_wait(Duration::from_secs(600), floor),
            Duration::from_secs(600)
        );
        assert_eq!(
            ip_ban_wait(Duration::from_secs(7200), floor),
            IP_BAN_MAX_WAIT
        );
    }

    #[test]
    fn sub_codes_under_either_spelling() {
        let a = json!({"errcode": 88, "errmsg": "ding talk error", "sub_code": "40078", "sub_msg": "x"});
        assert_eq!(api_message(&a), "ding talk error; sub-code 40078: x");
        let b =
            json!({"errcode": "88", "errmsg": "ding talk error", "subCode": 60011, "subMsg": "y"});
        assert_eq!(api_message(&b), "ding talk error; sub-code 60011: y");
        assert_eq!(errcode(&b), 88);
        assert_eq!(api_message(&json!({"errmsg": "plain"})), "plain");
    }

    #[test]
    fn daily_values_are_summed_inside_the_month_once() {
        let window = Window {
            month: october(),
            from: "2026-10-01 00:00:00".into(),
            to: "2026-10-31 00:00:00".into(),
        };
        let days = vec![
            json!({"date": "2026-10-01 00:00:00", "value": "1.0"}),
            json!({"date": "2026-10-02 00:00:00", "value": ""}),
            json!({"date": "2026-10-03 00:00:00", "value": "0.5"}),
            json!({"date": "2026-10-03 00:00:00", "value": "0.5"}),
            json!({"date": "2026-11-01 00:00:00", "value": "9"}),
            json!({"date": "2026-09-30 00:00:00", "value": "9"}),
            json!({"date": "2026-10-04 00:00:00", "value": 2}),
            json!({"date": "2026-10-05 00:00:00", "value": "1e1"}),
        ];
        let total = sum_column(&window, "c", Some(&days), &Value::Null).unwrap();
        assert_eq!(total, Decimal::new(135, 1));
        assert_eq!(decimal_json(total), Some(json!(13.5)));
        assert_eq!(
            sum_column(&window, "c", Some(&vec![]), &json!("8.0")).unwrap(),
            Decimal::new(8, 0)
        );
        assert_eq!(
            sum_column(&window, "c", None, &Value::Null).unwrap(),
            Decimal::ZERO
        );
        let bad = vec![json!({"date": "2026-10-07 00:00:00", "value": "正常"})];
        assert_eq!(
            sum_column(&window, "班次", Some(&bad), &Value::Null).unwrap_err(),
            "column \"班次\" on 2026-10-07: value \"正常\" is not a number"
        );
        let bad = vec![json!({"date": "yesterday", "value": "1"})];
        assert!(sum_column(&window, "c", Some(&bad), &Value::Null).is_err());
        assert_eq!(decimal_json(Decimal::new(210, 1)), Some(json!(21)));
    }

    proptest::proptest! {
        /// The direct reading of `yyyy-MM-dd` agrees with chrono's parser on
        /// every text of that shape (and on malformed ones near it).
        #[test]
        fn report_dates_read_as_chrono_reads_them(
            y in 0u32..10_000, m in 0u32..14, d in 0u32..33,
            sep in proptest::sample::select(vec!['-', '/', ' ']),
            tail in proptest::sample::select(vec!["", " 00:00:00", "T08:00"]),
        ) {
            let raw = format!("{y:04}{sep}{m:02}{sep}{d:02}{tail}");
            let chrono = raw.get(..10).and_then(|h| NaiveDate::parse_from_str(h, "%Y-%m-%d").ok());
            proptest::prop_assert_eq!(report_date(&raw), chrono, "{}", raw);
        }
    }

    #[test]
    fn form_encoding() {
        let body = json!({"userid": "a b", "leave_names": "年假,事假", "size": 100, "flag": true,
            "none": null, "list": [1, "x"]});
        assert_eq!(
            form_encode(&body),
            "userid=a+b&leave_names=%E5%B9%B4%E5%81%87%2C%E4%BA%8B%E5%81%87&size=100&flag=true&list=1%2Cx"
        );
        assert_eq!(form_encode(&json!({})), "");
    }
}
