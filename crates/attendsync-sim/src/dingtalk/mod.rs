//! DingTalk (钉钉) simulator: the old-style `oapi` endpoints attendsync uses —
//! `gettoken`, `topapi/v2/department/listsub`, `topapi/v2/user/list`,
//! `topapi/attendance/getattcolumns`, `topapi/attendance/getcolumnval` and
//! `topapi/attendance/getleavetimebynames` — as `docs/vendors/dingtalk.md`
//! describes them.
//!
//! Report values are one string per day, derived from the same per-day
//! generator as the WeCom simulator ([`super::month_figures`] over a single
//! day), so tests can compute the expected monthly sums with
//! [`DingtalkSim::column_values`] or [`DingtalkSim::expected_record`].
//!
//! Faults: injected 90018 (`throttle_ratio`), per-endpoint QPS limits (90018),
//! the IP-wide limit (over it the IP is banned: a `{"status": 1111, …}` body or
//! an HTML page, no errcode), the monthly quota of metered calls (90020), token
//! expiry (42001), bodies in the wrong encoding (43004 / 43005) and any answer
//! queued with [`DingtalkSim::inject_answer`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use chrono::{NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Map, Number, Value};

use super::limits::{CallRecord, Gate, GLOBAL_LIMIT};
use super::org::{MonthFigures, Org, User, ROOT_DEPARTMENT};
use super::{mix, spawn_server, ServerGuard};
use crate::Month;

mod approval;
mod directory;
mod push;
mod report;
mod serve;
pub mod stream;
#[cfg(test)]
mod tests;
mod values;

pub use approval::PROCESS_INSTANCES;
pub use push::{is_success, PushConfig, Pusher, FAILED_LIST, FAILED_PAGE_SIZE};
use serve::handle;
use values::{column_metric, leave_metric};

pub const GETTOKEN: &str = "gettoken";
pub const LISTSUB: &str = "topapi/v2/department/listsub";
pub const USER_LIST: &str = "topapi/v2/user/list";
pub const GETATTCOLUMNS: &str = "topapi/attendance/getattcolumns";
pub const GETCOLUMNVAL: &str = "topapi/attendance/getcolumnval";
pub const GETLEAVETIME: &str = "topapi/attendance/getleavetimebynames";

const ENDPOINTS: &[&str] = &[
    GETTOKEN,
    LISTSUB,
    USER_LIST,
    GETATTCOLUMNS,
    GETCOLUMNVAL,
    GETLEAVETIME,
    FAILED_LIST,
    PROCESS_INSTANCES,
];

/// The endpoints the simulator counts against `monthly_quota` (docs/vendors/dingtalk.md
/// "Limits": every attendance call; token and contacts calls are free).
pub const METERED: &[&str] = &[GETATTCOLUMNS, GETCOLUMNVAL, GETLEAVETIME];

const MAX_IDS: usize = 20;
const MAX_SPAN_SECS: i64 = 31 * 86_400;
const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// 应出勤天数 is only filled for days at most this many days before "today".
const SHOULD_ATTEND_FRESH_DAYS: i64 = 15;
const SHOULD_ATTEND: &str = "应出勤天数";

/// The report columns of a typical org with smart statistics on (ids as
/// `getattcolumns` hands them out). Numeric ones first; 考勤组, 班次 and 工号 are
/// text (the first and last as `fixed_value`), 标准工作时长 a numeric `fixed_value`.
pub const DEFAULT_COLUMNS: &[&str] = &[
    "出勤天数",
    "休息天数",
    "工作时长",
    "迟到次数",
    "迟到时长",
    "早退次数",
    "缺卡次数",
    "旷工天数",
    "应出勤天数",
    "加班时长",
    "严重迟到次数",
    "严重迟到时长",
    "旷工迟到天数",
    "早退时长",
    "上班缺卡次数",
    "下班缺卡次数",
    "出差时长",
    "外出时长",
    "工作日加班",
    "休息日加班",
    "节假日加班",
    "补卡次数",
    "外勤次数",
    "出勤班次",
    "标准工作时长",
    "考勤组",
    "班次",
    "工号",
];

/// Leave types (假期类型) of a typical org; values come from
/// `getleavetimebynames`. 事假 and 调休 are in hours, the others in days.
pub const DEFAULT_LEAVE_NAMES: &[&str] = &[
    "年假",
    "事假",
    "病假",
    "调休",
    "婚假",
    "产假",
    "陪产假",
    "丧假",
];

/// Which body encodings an endpoint accepts (docs/vendors/dingtalk.md "Body encoding": JSON or form).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyStyle {
    /// JSON and `application/x-www-form-urlencoded` both work.
    #[default]
    Any,
    /// A form body answers 43005 (需要 Content-Type 为 application/json).
    JsonOnly,
    /// A JSON body answers 43004 (无效的 Content-Type).
    FormOnly,
}

#[derive(Clone, Debug)]
pub struct DingtalkSimConfig {
    pub app_key: String,
    pub app_secret: String,
    /// Lifetime of an access token (`expires_in`); default 7200 s.
    pub token_ttl: Duration,
    /// A token becomes invalid (42001) after this many authenticated calls.
    pub token_expires_after_calls: Option<u32>,
    /// Probability of an injected 90018 on a call that is under quota.
    pub throttle_ratio: f64,
    /// `(endpoint, calls, period)`; the endpoint is the path after `/`, or
    /// [`super::GLOBAL_LIMIT`] for the IP-wide limit. Over an endpoint's quota:
    /// 90018; over the IP-wide one: the IP is banned for `ip_ban`. Both count as
    /// quota violations. Endpoints not listed are unlimited.
    pub limits: Vec<(String, u32, Duration)>,
    /// How long exceeding the IP-wide limit bans the IP (DingTalk: 5 minutes).
    pub ip_ban: Duration,
    /// Ban answers are an HTML page (HTTP 403) instead of `{"status": 1111}`.
    pub ip_ban_html: bool,
    /// Added to every request before it is answered.
    pub latency: Duration,
    pub seed: u64,
    /// The timezone of the date strings, and of "today" when `today` is `None`.
    pub timezone: chrono_tz::Tz,
    /// "Today" for the 应出勤天数 15-day rule; `None`: the clock.
    pub today: Option<NaiveDate>,
    /// `(id, display name)` of the report columns `getattcolumns` lists.
    pub columns: Vec<(i64, String)>,
    /// Leave types: listed by `getattcolumns` without an id, answered by
    /// `getleavetimebynames`.
    pub leave_names: Vec<String>,
    /// Pages of `v2/user/list` hold at most this many users, whatever `size` asks.
    pub page_size_cap: Option<u32>,
    /// A larger `size` on `v2/user/list` answers 400002.
    pub max_page_size: u32,
    /// Metered calls allowed in total; further ones answer 90020.
    pub monthly_quota: Option<u32>,
    /// Per endpoint (path after `/`); endpoints not listed accept both.
    pub body_styles: Vec<(String, BodyStyle)>,
    /// Report answers also carry the day after `to_date` and repeat the first
    /// day (with the same value): clients must keep only the month's days, once.
    pub messy_dates: bool,
}

impl Default for DingtalkSimConfig {
    fn default() -> Self {
        let second = Duration::from_secs(1);
        let mut limits: Vec<(String, u32, Duration)> = ENDPOINTS
            .iter()
            .map(|e| ((*e).to_owned(), 20, second))
            .collect();
        limits.push((GLOBAL_LIMIT.to_owned(), 10_000, Duration::from_secs(20)));
        DingtalkSimConfig {
            app_key: "dingsimappkey7x3k9q2w".to_owned(),
            app_secret: "sim-app-secret-Q8mZ2vX5nL7pR1tK4wY9bC3dF6hJ0gA".to_owned(),
            token_ttl: Duration::from_secs(7200),
            token_expires_after_calls: None,
            throttle_ratio: 0.0,
            limits,
            ip_ban: Duration::from_secs(300),
            ip_ban_html: false,
            latency: Duration::ZERO,
            seed: 0,
            timezone: chrono_tz::Asia::Shanghai,
            today: None,
            columns: DEFAULT_COLUMNS
                .iter()
                .enumerate()
                .map(|(k, name)| (129_339_038 + 11 * k as i64, (*name).to_owned()))
                .collect(),
            leave_names: DEFAULT_LEAVE_NAMES
                .iter()
                .map(|n| (*n).to_owned())
                .collect(),
            page_size_cap: None,
            max_page_size: 100,
            monthly_quota: None,
            body_styles: Vec::new(),
            messy_dates: false,
        }
    }
}

impl DingtalkSimConfig {
    /// Every endpoint limit (not the IP-wide one) set to `per_second` calls per second.
    pub fn with_endpoint_rate(mut self, per_second: u32) -> Self {
        for (endpoint, calls, period) in &mut self.limits {
            if endpoint != GLOBAL_LIMIT {
                *calls = per_second;
                *period = Duration::from_secs(1);
            }
        }
        self
    }
}

/// What the simulator answers for one column of one user over some days.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnValues {
    /// `(date "yyyy-MM-dd 00:00:00", value)`, one per day.
    Daily(Vec<(String, String)>),
    /// A column with a fixed value (no daily list).
    Fixed(String),
}

/// A running DingTalk simulator. Cheap to clone; the server stops when the
/// last clone is dropped (or the runtime it was started on shuts down).
#[derive(Clone)]
pub struct DingtalkSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _server: Arc<ServerGuard>,
}

struct Shared {
    org: Org,
    index: OrgIndex,
    config: DingtalkSimConfig,
    state: Mutex<SimState>,
    /// Memoised daily figures (see [`Shared::day`]); locked after `state` when both are held.
    days: Mutex<HashMap<(String, NaiveDate, u32), Arc<MonthFigures>>>,
    /// Corrections per user ([`DingtalkSim::bump_revision`]).
    revisions: Mutex<HashMap<String, u32>>,
}

struct OrgIndex {
    user_by_id: HashMap<String, usize>,
    children: HashMap<u64, Vec<u64>>,
    members: HashMap<u64, Vec<usize>>,
    department_ids: HashSet<u64>,
}

impl OrgIndex {
    fn build(org: &Org) -> OrgIndex {
        let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
        for d in &org.departments {
            if d.parent_id != 0 {
                children.entry(d.parent_id).or_default().push(d.id);
            }
        }
        let mut members: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut user_by_id = HashMap::with_capacity(org.users.len());
        for (i, u) in org.users.iter().enumerate() {
            user_by_id.insert(u.userid.clone(), i);
            for &d in &u.departments {
                members.entry(d).or_default().push(i);
            }
        }
        OrgIndex {
            user_by_id,
            children,
            members,
            department_ids: org.departments.iter().map(|d| d.id).collect(),
        }
    }
}

struct Token {
    issued: Instant,
    calls: u32,
}

struct SimState {
    gate: Gate,
    /// See [`DingtalkSimConfig::token_expires_after_calls`].
    token_expires_after_calls: Option<u32>,
    tokens: HashMap<String, Token>,
    current_token: Option<String>,
    tokens_issued: usize,
    token_rng: StdRng,
    seed: u64,
    requests: u64,
    metered: usize,
    quota_refusals: usize,
    ip_banned: bool,
    ip_ban_html: bool,
    banned_until: Option<Instant>,
    bans_answered: usize,
    injected: HashMap<String, VecDeque<Value>>,
    failed: push::FailedList,
    instances: HashMap<String, Value>,
}

/// An answer before it is sent.
enum Answer {
    /// A JSON body with an errcode (0 = success).
    Json {
        errcode: i64,
        body: Value,
    },
    /// A new-style API's answer: an HTTP status and a JSON body.
    Status {
        http: u16,
        body: Value,
    },
    /// The IP ban: no errcode.
    Banned {
        html: bool,
    },
    NotFound,
}

impl DingtalkSim {
    /// Starts the simulator on `127.0.0.1:0` on the current tokio runtime.
    pub async fn start(org: Org, config: DingtalkSimConfig) -> std::io::Result<DingtalkSim> {
        let index = OrgIndex::build(&org);
        let state = SimState {
            token_expires_after_calls: config.token_expires_after_calls,
            gate: Gate::new(
                &config.limits,
                config.throttle_ratio,
                config.latency,
                mix(config.seed, &[b"dingtalk-faults"]),
            ),
            tokens: HashMap::new(),
            current_token: None,
            tokens_issued: 0,
            token_rng: StdRng::seed_from_u64(mix(config.seed, &[b"dingtalk-tokens"])),
            seed: config.seed,
            requests: 0,
            metered: 0,
            quota_refusals: 0,
            ip_banned: false,
            ip_ban_html: config.ip_ban_html,
            banned_until: None,
            bans_answered: 0,
            injected: HashMap::new(),
            failed: push::FailedList::default(),
            instances: HashMap::new(),
        };
        let shared = Arc::new(Shared {
            org,
            index,
            config,
            state: Mutex::new(state),
            days: Mutex::new(HashMap::new()),
            revisions: Mutex::new(HashMap::new()),
        });
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (addr, server) = spawn_server(router).await?;
        Ok(DingtalkSim {
            shared,
            addr,
            _server: server,
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): the job's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn org(&self) -> &Org {
        &self.shared.org
    }

    pub fn config(&self) -> &DingtalkSimConfig {
        &self.shared.config
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        self.shared.state()
    }

    pub fn set_throttle_ratio(&self, ratio: f64) {
        self.state().gate.set_throttle_ratio(ratio);
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state().gate.set_latency(latency);
    }

    /// Adds up to `jitter` more latency to each request, drawn afresh for
    /// each (answer times that vary, as a real vendor's do).
    pub fn set_latency_jitter(&self, jitter: Duration) {
        self.state().gate.set_jitter(jitter);
    }

    /// From now on a token turns invalid after this many calls (`None`: only its TTL).
    pub fn set_token_expires_after_calls(&self, calls: Option<u32>) {
        self.state().token_expires_after_calls = calls;
    }

    /// While on, every request gets the IP-ban answer. Turning it off also
    /// lifts a ban caused by exceeding the IP-wide limit.
    pub fn set_ip_banned(&self, on: bool) {
        let mut state = self.state();
        state.ip_banned = on;
        if !on {
            state.banned_until = None;
        }
    }

    /// Ban answers as an HTML page (HTTP 403) instead of `{"status": 1111}`.
    pub fn set_ip_ban_html(&self, html: bool) {
        self.state().ip_ban_html = html;
    }

    /// The next `times` admitted requests to `endpoint` get `body` (HTTP 200)
    /// instead of their answer, e.g. `json!({"errcode": 88, "errmsg": "…",
    /// "sub_code": "…"})`. Queued bodies are used in order.
    /// A correction of `userid`'s attendance (an approved leave, an admin's
    /// fix): every day of theirs gets 30 more minutes of work time, so every
    /// month's report of theirs changes.
    pub fn bump_revision(&self, userid: &str) {
        let mut revisions = self
            .shared
            .revisions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *revisions.entry(userid.to_owned()).or_insert(0) += 1;
    }

    pub fn inject_answer(&self, endpoint: &str, body: Value, times: u32) {
        let mut state = self.state();
        let queue = state
            .injected
            .entry(endpoint.trim_matches('/').to_owned())
            .or_default();
        for _ in 0..times {
            queue.push_back(body.clone());
        }
    }

    /// Requests to an endpoint (path after `/`), whatever the answer.
    pub fn calls(&self, endpoint: &str) -> usize {
        self.state().gate.calls(endpoint)
    }

    /// Every request so far, in arrival order. An IP-ban answer is logged as
    /// `Outcome::Code { http: 200, code: 1111 }` (JSON) or `Outcome::Http(403)` (HTML).
    pub fn call_log(&self) -> Vec<CallRecord> {
        self.state().gate.call_log()
    }

    /// Metered calls served (counted against `monthly_quota`).
    pub fn metered_calls(&self) -> usize {
        self.state().metered
    }

    /// Metered calls refused with 90020.
    pub fn quota_refusals(&self) -> usize {
        self.state().quota_refusals
    }

    /// Calls over an endpoint's QPS limit or the IP-wide limit.
    pub fn quota_violations(&self) -> usize {
        self.state().gate.quota_violations()
    }

    pub fn injected_throttles(&self) -> usize {
        self.state().gate.injected_throttles()
    }

    /// Requests answered with the IP ban.
    pub fn bans_answered(&self) -> usize {
        self.state().bans_answered
    }

    /// Distinct access tokens handed out by `gettoken`.
    pub fn tokens_issued(&self) -> usize {
        self.state().tokens_issued
    }

    /// "Today" as the simulator sees it (for the 应出勤天数 rule).
    pub fn today(&self) -> NaiveDate {
        self.shared.today()
    }

    /// What `getcolumnval` (for a report column) or `getleavetimebynames` (for a
    /// leave name) answers for this user over the days `first..=last`, without
    /// `messy_dates`. `None` for an unknown user or name.
    pub fn column_values(
        &self,
        userid: &str,
        name: &str,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Option<ColumnValues> {
        let user = self.shared.user(userid)?;
        let metric = if self.shared.config.columns.iter().any(|(_, n)| n == name) {
            column_metric(name)
        } else if self.shared.config.leave_names.iter().any(|n| n == name) {
            leave_metric(name)
        } else {
            return None;
        };
        Some(self.shared.values(user, metric, first, last))
    }

    /// The daily values of a column or leave type over the whole month (empty
    /// for a fixed-value column or an unknown user or name).
    pub fn daily_values(
        &self,
        userid: &str,
        name: &str,
        month: impl Into<Month>,
    ) -> Vec<(String, String)> {
        let month = month.into();
        match self.column_values(userid, name, month.first_day(), month.last_day()) {
            Some(ColumnValues::Daily(days)) => days,
            _ => Vec::new(),
        }
    }

    /// The monthly record (docs/vendors/dingtalk.md "monthly record") for this user over the whole month: see
    /// [`DingtalkSim::expected_period_record`].
    pub fn expected_record(
        &self,
        userid: &str,
        month: impl Into<Month>,
        columns: &[String],
        leave_names: &[String],
    ) -> Option<Value> {
        let month = month.into();
        self.expected_period_record(
            userid,
            month.first_day(),
            month.last_day(),
            columns,
            leave_names,
        )
    }

    /// The monthly record (`userid`, `name`, `departments`, `job_number`,
    /// `title`, `columns`, `leave`) built from this simulator's answers for
    /// the days `first..=last`: sums of the daily values (empty = 0) or the
    /// fixed value; integers as JSON integers, others as the nearest float.
    /// Department names are those `listsub` reports (the root is not named by
    /// `listsub`, so it is left out). Leave names the simulator does not know
    /// are left out, as its answers leave them out. `None` for an unknown user,
    /// an unknown column, or a text value in a column.
    pub fn expected_period_record(
        &self,
        userid: &str,
        first: NaiveDate,
        last: NaiveDate,
        columns: &[String],
        leave_names: &[String],
    ) -> Option<Value> {
        let user = self.shared.user(userid)?;
        let sum = |values: ColumnValues| -> Option<Value> {
            let total = match values {
                ColumnValues::Fixed(v) => parse_value(&v)?,
                ColumnValues::Daily(days) => {
                    days.iter().try_fold(Decimal::ZERO, |acc, (_, v)| {
                        acc.checked_add(parse_value(v)?)
                    })?
                }
            };
            decimal_json(total)
        };
        let mut cols = Map::new();
        for name in columns {
            let values = self.column_values(userid, name, first, last)?;
            cols.insert(name.clone(), sum(values)?);
        }
        let mut leave = Map::new();
        for name in leave_names {
            if let Some(values) = self.column_values(userid, name, first, last) {
                leave.insert(name.clone(), sum(values)?);
            }
        }
        let departments: Vec<&str> = user
            .departments
            .iter()
            .filter(|&&d| d != ROOT_DEPARTMENT)
            .filter_map(|&d| self.shared.org.department(d))
            .map(|d| d.name.as_str())
            .collect();
        Some(json!({
            "userid": user.userid,
            "name": user.name,
            "departments": departments,
            "job_number": user.job_number,
            "title": user.title,
            "columns": cols,
            "leave": leave,
        }))
    }
}

/// A report value as a decimal: empty = 0; `None` for text.
fn parse_value(v: &str) -> Option<Decimal> {
    let t = v.trim();
    if t.is_empty() {
        return Some(Decimal::ZERO);
    }
    t.parse::<Decimal>().ok()
}

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

impl Shared {
    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn user(&self, userid: &str) -> Option<&User> {
        self.index
            .user_by_id
            .get(userid)
            .and_then(|&i| self.org.users.get(i))
    }

    fn today(&self) -> NaiveDate {
        self.config
            .today
            .unwrap_or_else(|| Utc::now().with_timezone(&self.config.timezone).date_naive())
    }
}
