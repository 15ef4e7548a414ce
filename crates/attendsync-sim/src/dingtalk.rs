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

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{NaiveDate, NaiveDateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Map, Number, Value};

use super::limits::{Admission, CallRecord, Gate, Outcome, GLOBAL_LIMIT};
use super::org::{month_figures, MonthFigures, Org, User, ROOT_DEPARTMENT};
use super::{mix, spawn_server, ServerGuard};
use crate::Month;

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
    days: Mutex<HashMap<(String, NaiveDate), Arc<MonthFigures>>>,
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
}

/// An answer before it is sent.
enum Answer {
    /// A JSON body with an errcode (0 = success).
    Json {
        errcode: i64,
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
        };
        let shared = Arc::new(Shared {
            org,
            index,
            config,
            state: Mutex::new(state),
            days: Mutex::new(HashMap::new()),
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

    /// One user's figures for one day. Computing a day simulates its whole
    /// month, so the days are memoised.
    fn day(&self, user: &User, date: NaiveDate) -> Arc<MonthFigures> {
        let key = (user.userid.clone(), date);
        if let Some(d) = self
            .days
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return d.clone();
        }
        let figures = Arc::new(month_figures(&self.org, user, date, date, 0));
        self.days
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, figures.clone());
        figures
    }

    fn values(
        &self,
        user: &User,
        metric: Metric,
        first: NaiveDate,
        last: NaiveDate,
    ) -> ColumnValues {
        if let Some(fixed) = self.fixed_value(user, metric) {
            return ColumnValues::Fixed(fixed);
        }
        let today = self.today();
        let days = first
            .iter_days()
            .take_while(|d| *d <= last)
            .map(|date| {
                let day = self.day(user, date);
                let value = day_value(metric, &day, date, today, &self.org, user);
                (format!("{date} 00:00:00"), value)
            })
            .collect();
        ColumnValues::Daily(days)
    }

    fn fixed_value(&self, user: &User, metric: Metric) -> Option<String> {
        match metric {
            Metric::StandardHours => Some("8.0".to_owned()),
            Metric::JobNumber => Some(user.job_number.clone()),
            Metric::Group => {
                // The rule does not depend on the day: ask for any one.
                let day = self.today();
                Some(month_figures(&self.org, user, day, day, 0).rule_name)
            }
            _ => None,
        }
    }
}

/// What a column or leave type measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metric {
    AttendDays,
    RestDays,
    WorkMinutes,
    LateCount,
    LateMinutes,
    SeriousLateCount,
    SeriousLateMinutes,
    AbsentLateDays,
    EarlyCount,
    EarlyMinutes,
    MissingCount,
    MissingOnCount,
    MissingOffCount,
    AbsentDays,
    ShouldAttendDays,
    OvertimeHours,
    WorkdayOvertimeHours,
    RestdayOvertimeHours,
    HolidayOvertimeHours,
    TripDays,
    OutingHours,
    Corrections,
    FieldWork,
    Shifts,
    StandardHours,
    Group,
    Shift,
    JobNumber,
    AnnualLeaveDays,
    PersonalLeaveHours,
    SickLeaveDays,
    TimeOffHours,
    Zero,
}

fn column_metric(name: &str) -> Metric {
    match name {
        "出勤天数" => Metric::AttendDays,
        "休息天数" => Metric::RestDays,
        "工作时长" => Metric::WorkMinutes,
        "迟到次数" => Metric::LateCount,
        "迟到时长" => Metric::LateMinutes,
        "严重迟到次数" => Metric::SeriousLateCount,
        "严重迟到时长" => Metric::SeriousLateMinutes,
        "旷工迟到天数" => Metric::AbsentLateDays,
        "早退次数" => Metric::EarlyCount,
        "早退时长" => Metric::EarlyMinutes,
        "缺卡次数" => Metric::MissingCount,
        "上班缺卡次数" => Metric::MissingOnCount,
        "下班缺卡次数" => Metric::MissingOffCount,
        "旷工天数" => Metric::AbsentDays,
        SHOULD_ATTEND => Metric::ShouldAttendDays,
        "加班时长" => Metric::OvertimeHours,
        "工作日加班" => Metric::WorkdayOvertimeHours,
        "休息日加班" => Metric::RestdayOvertimeHours,
        "节假日加班" => Metric::HolidayOvertimeHours,
        "出差时长" => Metric::TripDays,
        "外出时长" => Metric::OutingHours,
        "补卡次数" => Metric::Corrections,
        "外勤次数" => Metric::FieldWork,
        "出勤班次" => Metric::Shifts,
        "标准工作时长" => Metric::StandardHours,
        "考勤组" => Metric::Group,
        "班次" => Metric::Shift,
        "工号" => Metric::JobNumber,
        _ => Metric::Zero,
    }
}

fn leave_metric(name: &str) -> Metric {
    match name {
        "年假" => Metric::AnnualLeaveDays,
        "事假" => Metric::PersonalLeaveHours,
        "病假" => Metric::SickLeaveDays,
        "调休" => Metric::TimeOffHours,
        _ => Metric::Zero,
    }
}

fn column_alias(name: &str) -> &'static str {
    match column_metric(name) {
        Metric::AttendDays => "attendance_days",
        Metric::RestDays => "rest_days",
        Metric::WorkMinutes => "attendance_work_time",
        Metric::LateCount => "late_times",
        Metric::LateMinutes => "late_minute",
        Metric::SeriousLateCount => "serious_late_times",
        Metric::SeriousLateMinutes => "serious_late_minute",
        Metric::AbsentLateDays => "absenteeism_late_times",
        Metric::EarlyCount => "leave_early_times",
        Metric::EarlyMinutes => "leave_early_minute",
        Metric::MissingCount => "lack_times",
        Metric::MissingOnCount => "on_work_lack_card_times",
        Metric::MissingOffCount => "off_work_lack_card_times",
        Metric::AbsentDays => "absenteeism_days",
        Metric::ShouldAttendDays => "should_attendance_days",
        Metric::OvertimeHours => "overtime_duration",
        Metric::WorkdayOvertimeHours => "workday_overtime",
        Metric::RestdayOvertimeHours => "restday_overtime",
        Metric::HolidayOvertimeHours => "holiday_overtime",
        Metric::TripDays => "business_trip_time",
        Metric::OutingHours => "go_out_time",
        Metric::Corrections => "making_up_lack_times",
        Metric::FieldWork => "outside_times",
        Metric::Shifts => "attend_classes",
        Metric::StandardHours => "standard_work_time",
        Metric::Group => "attendance_group",
        Metric::Shift => "attendance_class",
        Metric::JobNumber => "job_number",
        _ => "custom_column",
    }
}

/// Whole and tenth units as DingTalk renders them: `"1.0"`, `"482.0"`, `"0.5"`.
fn tenths(t: i64) -> String {
    format!("{}.{}", t / 10, (t % 10).abs())
}

fn units(n: i64) -> String {
    tenths(n * 10)
}

/// Hours of `secs`, to the tenth (durations here are multiples of 30 minutes).
fn hours(secs: i64) -> String {
    tenths(secs / 360)
}

/// The value of one column on one day.
fn day_value(
    metric: Metric,
    d: &MonthFigures,
    date: NaiveDate,
    today: NaiveDate,
    org: &Org,
    user: &User,
) -> String {
    let workday = d.work_days > 0;
    let full_day_off = d.annual_leave.count + d.sick_leave.count + d.absent.count > 0;
    // Exception and leave columns are left empty on days off.
    let exception = |v: i64| if workday { units(v) } else { String::new() };
    match metric {
        Metric::AttendDays => units(i64::from(workday && !full_day_off)),
        Metric::RestDays => units(i64::from(d.record_type != 7 && !workday)),
        Metric::WorkMinutes => units(d.regular_work_sec / 60),
        Metric::LateCount => exception(d.late.count),
        Metric::LateMinutes => exception(d.late.seconds / 60),
        Metric::SeriousLateCount => exception(i64::from(d.late.seconds >= 25 * 60)),
        Metric::SeriousLateMinutes => exception(if d.late.seconds >= 25 * 60 {
            d.late.seconds / 60
        } else {
            0
        }),
        Metric::AbsentLateDays => exception(0),
        Metric::EarlyCount => exception(d.early_leave.count),
        Metric::EarlyMinutes => exception(d.early_leave.seconds / 60),
        Metric::MissingCount | Metric::MissingOnCount => exception(d.missing_punch.count),
        Metric::MissingOffCount => exception(0),
        Metric::AbsentDays => exception(d.absent.count),
        Metric::ShouldAttendDays => {
            if (today - date).num_days() > SHOULD_ATTEND_FRESH_DAYS {
                units(0)
            } else {
                units(d.work_days)
            }
        }
        Metric::OvertimeHours => {
            hours(d.workday_overtime_sec + d.restday_overtime_sec + d.holiday_overtime_sec)
        }
        Metric::WorkdayOvertimeHours => hours(d.workday_overtime_sec),
        Metric::RestdayOvertimeHours => hours(d.restday_overtime_sec),
        Metric::HolidayOvertimeHours => hours(d.holiday_overtime_sec),
        Metric::TripDays => units(d.business_trip.count),
        Metric::OutingHours => hours(d.outing.seconds),
        Metric::Corrections => exception(d.punch_corrections.count),
        Metric::FieldWork => units(d.field_work.count),
        Metric::Shifts => units(i64::from(workday && !full_day_off)),
        Metric::Shift => {
            if workday {
                "A 09:00-18:00".to_owned()
            } else {
                "休息".to_owned()
            }
        }
        Metric::AnnualLeaveDays => exception(d.annual_leave.count),
        Metric::PersonalLeaveHours => exception(d.personal_leave.seconds / 3600),
        Metric::SickLeaveDays => exception(d.sick_leave.count),
        Metric::TimeOffHours => {
            // Rare half days off in lieu of overtime, independent of the other figures.
            let h = mix(
                org.seed,
                &[
                    b"time-off",
                    user.userid.as_bytes(),
                    date.to_string().as_bytes(),
                ],
            );
            exception(if workday && h % 40 == 0 { 4 } else { 0 })
        }
        Metric::StandardHours | Metric::Group | Metric::JobNumber | Metric::Zero => units(0),
    }
}

// ---------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = std::time::Instant::now();
    let endpoint = uri.path().trim_matches('/').to_owned();
    let known = ENDPOINTS.contains(&endpoint.as_str());
    let metered = METERED.contains(&endpoint.as_str());
    let (index, latency, early) = {
        let mut state = shared.state();
        state.requests += 1;
        let index = state.gate.arrive_at(&endpoint, arrived);
        let now = Instant::now();
        let banned = state.ip_banned || state.banned_until.is_some_and(|until| now < until);
        let early = if !known {
            Some(Answer::NotFound)
        } else if banned {
            Some(Answer::Banned {
                html: state.ip_ban_html,
            })
        } else {
            match state.gate.admit(index) {
                Admission::Admitted => state
                    .injected
                    .get_mut(&endpoint)
                    .and_then(VecDeque::pop_front)
                    .map(|body| Answer::Json {
                        errcode: errcode_of(&body),
                        body,
                    }),
                Admission::OverQuota { global: true } => {
                    state.banned_until = Some(now + shared.config.ip_ban);
                    Some(Answer::Banned {
                        html: state.ip_ban_html,
                    })
                }
                Admission::OverQuota { global: false } | Admission::Injected => Some(state.error(
                    90018,
                    "当前应用调用该接口已超过每秒限流阈值，请降低调用频率",
                )),
            }
        };
        (index, state.gate.latency(), early)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let query: HashMap<String, String> = Query::try_from_uri(&uri)
        .map(|Query(q)| q)
        .unwrap_or_default();

    let mut state = shared.state();
    let answer = match early {
        Some(a) => a,
        None => route(
            &shared, &mut state, &endpoint, metered, &method, &query, &headers, &body,
        ),
    };
    let (outcome, response) = match answer {
        Answer::NotFound => (
            Outcome::Http(404),
            (StatusCode::NOT_FOUND, "404 Not Found").into_response(),
        ),
        Answer::Banned { html: false } => {
            state.bans_answered += 1;
            let uuid = format!(
                "{:016x}",
                mix(shared.config.seed, &[b"ban", &state.requests.to_le_bytes()])
            );
            let body =
                json!({"status": 1111, "wait": 5, "source": "x5", "punish": "deny", "uuid": uuid});
            (
                Outcome::Code {
                    http: 200,
                    code: 1111,
                },
                (StatusCode::OK, Json(body)).into_response(),
            )
        }
        Answer::Banned { html: true } => {
            state.bans_answered += 1;
            let page = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>访问被拒绝</title></head>\
                        <body><h1>访问被拒绝</h1><p>您的访问频率过高，请稍后再试。</p></body></html>";
            (
                Outcome::Http(403),
                (
                    StatusCode::FORBIDDEN,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    page,
                )
                    .into_response(),
            )
        }
        Answer::Json { errcode, body } => {
            let outcome = if errcode == 0 {
                Outcome::Ok
            } else {
                Outcome::Code {
                    http: 200,
                    code: errcode,
                }
            };
            (outcome, (StatusCode::OK, Json(body)).into_response())
        }
    };
    state.gate.finish(index, outcome);
    response
}

fn errcode_of(body: &Value) -> i64 {
    match &body["errcode"] {
        Value::Number(n) => n.as_i64().unwrap_or(-1),
        Value::String(s) => s.trim().parse().unwrap_or(-1),
        _ => 0,
    }
}

impl SimState {
    fn request_id(&mut self) -> String {
        let h = mix(self.seed, &[b"request", &self.requests.to_le_bytes()]);
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..12)
            .map(|k| char::from(ALPHABET[((h >> (k * 5)) % 36) as usize]))
            .collect()
    }

    fn error(&mut self, errcode: i64, errmsg: &str) -> Answer {
        let request_id = self.request_id();
        Answer::Json {
            errcode,
            body: json!({"errcode": errcode, "errmsg": errmsg, "request_id": request_id}),
        }
    }

    fn ok(&mut self, result: Value) -> Answer {
        let request_id = self.request_id();
        Answer::Json {
            errcode: 0,
            body: json!({"errcode": 0, "errmsg": "ok", "result": result, "success": true, "request_id": request_id}),
        }
    }

    fn token_valid(&self, shared: &Shared, token: &str) -> bool {
        self.tokens.get(token).is_some_and(|t| {
            t.issued.elapsed() < shared.config.token_ttl
                && shared
                    .config
                    .token_expires_after_calls
                    .is_none_or(|limit| t.calls < limit)
        })
    }
}

/// A request body read as a flat object, whatever its encoding.
type Fields = Map<String, Value>;

#[allow(clippy::too_many_arguments)]
fn route(
    shared: &Shared,
    state: &mut SimState,
    endpoint: &str,
    metered: bool,
    method: &Method,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Answer {
    if endpoint == GETTOKEN {
        if method != Method::GET {
            return state.error(43001, "需要GET请求");
        }
        return gettoken(shared, state, query);
    }
    if method != Method::POST {
        return state.error(43002, "需要POST请求");
    }
    if let Err(answer) = check_token(shared, state, query) {
        return answer;
    }
    let fields = match read_body(shared, state, endpoint, headers, body) {
        Ok(f) => f,
        Err(answer) => return answer,
    };
    if metered {
        if let Some(quota) = shared.config.monthly_quota {
            if state.metered >= quota as usize {
                state.quota_refusals += 1;
                return state.error(90020, "企业API调用量超过月度限制，请下月再试或升级版本");
            }
        }
        state.metered += 1;
    }
    match endpoint {
        LISTSUB => listsub(shared, state, &fields),
        USER_LIST => user_list(shared, state, &fields),
        GETATTCOLUMNS => getattcolumns(shared, state),
        GETCOLUMNVAL => getcolumnval(shared, state, &fields),
        _ => getleavetime(shared, state, &fields),
    }
}

fn read_body(
    shared: &Shared,
    state: &mut SimState,
    endpoint: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Fields, Answer> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let style = shared
        .config
        .body_styles
        .iter()
        .find(|(e, _)| e.trim_matches('/') == endpoint)
        .map(|(_, s)| *s)
        .unwrap_or_default();
    let is_json = content_type.starts_with("application/json");
    let is_form = content_type.starts_with("application/x-www-form-urlencoded");
    if is_json && style == BodyStyle::FormOnly || !is_json && !is_form && !body.is_empty() {
        return Err(state.error(43004, "无效的HTTP HEADER Content-Type"));
    }
    if is_form && style == BodyStyle::JsonOnly {
        return Err(state.error(43005, "需要Content-Type为application/json;charset=UTF-8"));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Fields::new());
    }
    if is_json {
        match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(state.error(40035, "不合法的参数")),
        }
    } else {
        match std::str::from_utf8(body).ok().and_then(parse_form) {
            Some(map) => Ok(map),
            None => Err(state.error(40035, "不合法的参数")),
        }
    }
}

/// `a=1&b=x%2Cy` → `{"a": "1", "b": "x,y"}`; `None` on bad escapes or UTF-8.
fn parse_form(text: &str) -> Option<Fields> {
    let mut out = Fields::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k)?, Value::String(percent_decode(v)?));
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A number field sent as a number or as text (form bodies are all text).
fn number_field(fields: &Fields, key: &str) -> Option<i64> {
    match fields.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text_field<'a>(fields: &'a Fields, key: &str) -> Option<&'a str> {
    fields
        .get(key)?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn gettoken(shared: &Shared, state: &mut SimState, query: &HashMap<String, String>) -> Answer {
    let key = query.get("appkey").map(String::as_str).unwrap_or("");
    let secret = query.get("appsecret").map(String::as_str).unwrap_or("");
    if key.is_empty() || key != shared.config.app_key {
        return state.error(40089, "不合法的appKey或appSecret");
    }
    if secret != shared.config.app_secret {
        // Never echo the secret.
        return state.error(
            40001,
            "获取access_token时AppSecret错误，或者access_token无效",
        );
    }
    let current = state
        .current_token
        .clone()
        .filter(|t| state.token_valid(shared, t));
    let token = match current {
        Some(token) => {
            // A fetch during the lifetime returns the same token and extends it.
            if let Some(t) = state.tokens.get_mut(&token) {
                t.issued = Instant::now();
            }
            token
        }
        None => {
            let token = format!(
                "{:016x}{:016x}",
                state.token_rng.random::<u64>(),
                state.token_rng.random::<u64>()
            );
            state.tokens.insert(
                token.clone(),
                Token {
                    issued: Instant::now(),
                    calls: 0,
                },
            );
            state.current_token = Some(token.clone());
            state.tokens_issued += 1;
            token
        }
    };
    Answer::Json {
        errcode: 0,
        body: json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": shared.config.token_ttl.as_secs()}),
    }
}

fn check_token(
    shared: &Shared,
    state: &mut SimState,
    query: &HashMap<String, String>,
) -> Result<(), Answer> {
    let token = query.get("access_token").map(String::as_str).unwrap_or("");
    if token.is_empty() {
        return Err(state.error(41001, "缺少参数access_token"));
    }
    if !state.tokens.contains_key(token) {
        return Err(state.error(40014, "不合法的access_token"));
    }
    if !state.token_valid(shared, token) {
        return Err(state.error(42001, "access_token超时"));
    }
    if let Some(t) = state.tokens.get_mut(token) {
        t.calls += 1;
    }
    Ok(())
}

fn listsub(shared: &Shared, state: &mut SimState, fields: &Fields) -> Answer {
    let id = match fields.get("dept_id") {
        None => ROOT_DEPARTMENT as i64,
        Some(_) => match number_field(fields, "dept_id") {
            Some(id) => id,
            None => return state.error(400002, "无效的参数dept_id"),
        },
    };
    let Some(id) = u64::try_from(id)
        .ok()
        .filter(|id| shared.index.department_ids.contains(id))
    else {
        return state.error(60003, "部门不存在");
    };
    let list: Vec<Value> = shared
        .index
        .children
        .get(&id)
        .into_iter()
        .flatten()
        .filter_map(|&child| shared.org.department(child))
        .map(|d| {
            json!({"dept_id": d.id, "name": d.name, "parent_id": d.parent_id,
                   "create_dept_group": true, "auto_add_user": true})
        })
        .collect();
    state.ok(Value::Array(list))
}

fn user_list(shared: &Shared, state: &mut SimState, fields: &Fields) -> Answer {
    let (Some(dept), Some(cursor), Some(size)) = (
        number_field(fields, "dept_id"),
        number_field(fields, "cursor"),
        number_field(fields, "size"),
    ) else {
        return state.error(400002, "缺少参数dept_id、cursor或size");
    };
    if size <= 0 || size > i64::from(shared.config.max_page_size) || cursor < 0 {
        return state.error(400002, "无效的参数size或cursor");
    }
    let Some(dept) = u64::try_from(dept)
        .ok()
        .filter(|d| shared.index.department_ids.contains(d))
    else {
        return state.error(60003, "部门不存在");
    };
    let page = shared
        .config
        .page_size_cap
        .map_or(size, |cap| size.min(i64::from(cap.max(1))));
    let members = shared
        .index
        .members
        .get(&dept)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let start = usize::try_from(cursor)
        .unwrap_or(usize::MAX)
        .min(members.len());
    let end = start
        .saturating_add(usize::try_from(page).unwrap_or(0))
        .min(members.len());
    let list: Vec<Value> = members[start..end]
        .iter()
        .filter_map(|&i| shared.org.users.get(i))
        .map(|u| {
            let union = mix(shared.config.seed, &[b"unionid", u.userid.as_bytes()]);
            let hired = 1_500_000_000_000 + (union % 250_000_000) * 1000;
            json!({
                "userid": u.userid,
                "unionid": format!("{union:016x}"),
                "name": u.name,
                "avatar": "",
                "job_number": u.job_number,
                "title": u.title,
                "dept_id_list": u.departments,
                "hired_date": hired,
                "active": true,
                "admin": false,
                "boss": false,
                "leader": false,
                "exclusive_account": false,
            })
        })
        .collect();
    let has_more = end < members.len();
    state.ok(json!({"has_more": has_more, "next_cursor": end, "list": list}))
}

fn getattcolumns(shared: &Shared, state: &mut SimState) -> Answer {
    let mut columns: Vec<Value> = shared
        .config
        .columns
        .iter()
        .map(|(id, name)| {
            let text = matches!(
                column_metric(name),
                Metric::Group | Metric::Shift | Metric::JobNumber
            );
            json!({"id": id, "name": name, "alias": column_alias(name), "type": 0,
                   "sub_type": i32::from(text), "status": 0, "expression_id": id - 5000})
        })
        .collect();
    // Leave columns come without an id (docs/vendors/dingtalk.md "The calls").
    columns.extend(shared.config.leave_names.iter().map(
        |name| json!({"name": name, "alias": "leave_", "type": 2, "sub_type": 0, "status": 0}),
    ));
    state.ok(json!({"columns": columns}))
}

/// Validated report request: the user and the days asked for.
struct ReportRequest<'a> {
    user: &'a User,
    first: NaiveDate,
    last: NaiveDate,
}

fn report_request<'a>(
    shared: &'a Shared,
    state: &mut SimState,
    fields: &Fields,
) -> Result<ReportRequest<'a>, Answer> {
    let Some(userid) = text_field(fields, "userid") else {
        return Err(state.error(400002, "缺少参数userid"));
    };
    let (Some(from), Some(to)) = (
        text_field(fields, "from_date"),
        text_field(fields, "to_date"),
    ) else {
        return Err(state.error(400002, "缺少参数from_date或to_date"));
    };
    let (Ok(from), Ok(to)) = (
        NaiveDateTime::parse_from_str(from, DATE_FORMAT),
        NaiveDateTime::parse_from_str(to, DATE_FORMAT),
    ) else {
        return Err(state.error(41100, "时间格式错误，应为yyyy-MM-dd HH:mm:ss"));
    };
    let span = (to - from).num_seconds();
    if !(0..=MAX_SPAN_SECS).contains(&span) {
        return Err(state.error(850012, "查询时间跨度不能超过31天"));
    }
    let Some(user) = shared.user(userid) else {
        return Err(state.error(33012, "无效的USERID"));
    };
    Ok(ReportRequest {
        user,
        first: from.date(),
        last: to.date(),
    })
}

/// A comma-separated list field (a JSON array is accepted too).
fn list_field(fields: &Fields, key: &str) -> Vec<String> {
    match fields.get(key) {
        Some(Value::String(s)) => s
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.trim().to_owned(),
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn dated(shared: &Shared, values: ColumnValues, last: NaiveDate) -> Vec<Value> {
    let ColumnValues::Daily(mut days) = values else {
        return Vec::new();
    };
    if shared.config.messy_dates {
        if let Some(next) = last.succ_opt() {
            days.push((format!("{next} 00:00:00"), "1.0".to_owned()));
        }
        if let Some(first) = days.first().cloned() {
            days.push(first);
        }
    }
    days.into_iter()
        .map(|(date, value)| json!({"date": date, "value": value}))
        .collect()
}

fn getcolumnval(shared: &Shared, state: &mut SimState, fields: &Fields) -> Answer {
    let ids = list_field(fields, "column_id_list");
    if ids.is_empty() || ids.len() > MAX_IDS {
        return state.error(400002, "column_id_list不能为空且不能超过20个");
    }
    let mut columns = Vec::new();
    for id in &ids {
        match id
            .parse::<i64>()
            .ok()
            .and_then(|id| shared.config.columns.iter().find(|(c, _)| *c == id))
        {
            Some(column) => {
                if !columns.contains(&column) {
                    columns.push(column);
                }
            }
            None => return state.error(400002, "无效的参数column_id_list"),
        }
    }
    let request = match report_request(shared, state, fields) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let vals: Vec<Value> = columns
        .iter()
        .map(|(id, name)| {
            let values = shared.values(request.user, column_metric(name), request.first, request.last);
            match values {
                ColumnValues::Fixed(v) => json!({"column_vo": {"id": id}, "fixed_value": v}),
                daily => json!({"column_vo": {"id": id}, "column_vals": dated(shared, daily, request.last)}),
            }
        })
        .collect();
    state.ok(json!({"column_vals": vals}))
}

fn getleavetime(shared: &Shared, state: &mut SimState, fields: &Fields) -> Answer {
    let names = list_field(fields, "leave_names");
    if names.is_empty() || names.len() > MAX_IDS {
        return state.error(400002, "leave_names不能为空且不能超过20个");
    }
    let request = match report_request(shared, state, fields) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let mut seen = HashSet::new();
    let columns: Vec<Value> = names
        .iter()
        .filter(|n| seen.insert(n.as_str()))
        // Unknown leave names are left out of the answer.
        .filter(|n| shared.config.leave_names.contains(n))
        .map(|name| {
            let values = shared.values(request.user, leave_metric(name), request.first, request.last);
            json!({
                "columnvo": {"name": name, "alias": "leave_", "type": 2, "sub_type": 0, "status": 0},
                "columnvals": dated(shared, values, request.last),
            })
        })
        .collect();
    state.ok(json!({"columns": columns}))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::client;
    use super::*;

    async fn sim(employees: usize, config: DingtalkSimConfig) -> DingtalkSim {
        DingtalkSim::start(Org::generate(employees, 3), config)
            .await
            .unwrap()
    }

    async fn get(sim: &DingtalkSim, path: &str, query: &[(&str, &str)]) -> Value {
        let url = format!("{}/{path}", sim.base_url());
        let resp = client().get(url).query(query).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn token(sim: &DingtalkSim) -> String {
        let c = DingtalkSimConfig::default();
        let v = get(
            sim,
            GETTOKEN,
            &[("appkey", &c.app_key), ("appsecret", &c.app_secret)],
        )
        .await;
        assert_eq!(v["errcode"], 0, "{v}");
        v["access_token"].as_str().unwrap().to_owned()
    }

    async fn post(sim: &DingtalkSim, path: &str, token: &str, body: Value) -> Value {
        let url = format!("{}/{path}?access_token={token}", sim.base_url());
        let resp = client().post(url).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn post_form(sim: &DingtalkSim, path: &str, token: &str, body: &str) -> Value {
        let url = format!("{}/{path}?access_token={token}", sim.base_url());
        let resp = client()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    fn october() -> Month {
        Month::new(2026, 10).unwrap()
    }

    fn id_of(sim: &DingtalkSim, name: &str) -> i64 {
        sim.config()
            .columns
            .iter()
            .find(|(_, n)| n == name)
            .map(|(id, _)| *id)
            .unwrap()
    }

    #[tokio::test]
    async fn token_flow_and_errors_never_echo_the_secret() {
        let config = DingtalkSimConfig {
            token_expires_after_calls: Some(2),
            ..DingtalkSimConfig::default()
        };
        let sim = sim(10, config).await;
        let c = DingtalkSimConfig::default();
        let bad = get(
            &sim,
            GETTOKEN,
            &[("appkey", &c.app_key), ("appsecret", "wrong-secret-XYZ")],
        )
        .await;
        assert_eq!(bad["errcode"], 40001);
        assert!(!bad.to_string().contains("wrong-secret-XYZ"));
        let bad = get(
            &sim,
            GETTOKEN,
            &[("appkey", "nope"), ("appsecret", &c.app_secret)],
        )
        .await;
        assert_eq!(bad["errcode"], 40089);
        assert!(!bad.to_string().contains(&c.app_secret));

        let t = token(&sim).await;
        assert_eq!(token(&sim).await, t);
        assert_eq!(sim.tokens_issued(), 1);
        assert_eq!(post(&sim, LISTSUB, "", json!({})).await["errcode"], 41001);
        assert_eq!(
            post(&sim, LISTSUB, "forged", json!({})).await["errcode"],
            40014
        );
        for _ in 0..2 {
            assert_eq!(post(&sim, LISTSUB, &t, json!({})).await["errcode"], 0);
        }
        assert_eq!(post(&sim, LISTSUB, &t, json!({})).await["errcode"], 42001);
        let t2 = token(&sim).await;
        assert_ne!(t, t2);
        assert_eq!(sim.tokens_issued(), 2);
        let v = get(&sim, LISTSUB, &[("access_token", &t2)]).await;
        assert_eq!(v["errcode"], 43002);
    }

    #[tokio::test]
    async fn listsub_gives_direct_children_and_user_list_pages_by_cursor() {
        let config = DingtalkSimConfig {
            page_size_cap: Some(4),
            ..DingtalkSimConfig::default().with_endpoint_rate(10_000)
        };
        let sim = sim(150, config).await;
        let org = sim.org().clone();
        let t = token(&sim).await;
        let root = post(&sim, LISTSUB, &t, json!({})).await;
        let top: Vec<u64> = root["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["dept_id"].as_u64().unwrap())
            .collect();
        assert!(!top.is_empty());
        for id in &top {
            assert_eq!(org.department(*id).unwrap().parent_id, 1);
        }
        assert_eq!(
            root["result"][0]["name"],
            json!(org.department(top[0]).unwrap().name)
        );
        let v = post(&sim, LISTSUB, &t, json!({"dept_id": 999_999})).await;
        assert_eq!(v["errcode"], 60003);

        // Every department, paged: every user, some twice.
        let mut listed = Vec::new();
        for d in &org.departments {
            let mut cursor = 0;
            loop {
                let v = post(
                    &sim,
                    USER_LIST,
                    &t,
                    json!({"dept_id": d.id, "cursor": cursor, "size": 100}),
                )
                .await;
                assert_eq!(v["errcode"], 0, "{v}");
                let list = v["result"]["list"].as_array().unwrap();
                assert!(list.len() <= 4);
                for u in list {
                    assert!(u["dept_id_list"].as_array().unwrap().contains(&json!(d.id)));
                    listed.push(u["userid"].as_str().unwrap().to_owned());
                }
                if v["result"]["has_more"] == json!(false) {
                    break;
                }
                cursor = v["result"]["next_cursor"].as_u64().unwrap();
            }
        }
        let unique: HashSet<_> = listed.iter().cloned().collect();
        assert_eq!(unique.len(), 150);
        assert!(listed.len() > 150);

        let v = post(
            &sim,
            USER_LIST,
            &t,
            json!({"dept_id": 2, "cursor": 0, "size": 101}),
        )
        .await;
        assert_eq!(v["errcode"], 400002);
        let v = post(&sim, USER_LIST, &t, json!({"dept_id": 2})).await;
        assert_eq!(v["errcode"], 400002);
        // Form bodies and string numbers work too.
        let v = post_form(&sim, USER_LIST, &t, "dept_id=2&cursor=0&size=3").await;
        assert_eq!(v["errcode"], 0, "{v}");
        // Contacts calls are not metered.
        assert_eq!(sim.metered_calls(), 0);
    }

    #[tokio::test]
    async fn report_columns_and_values() {
        let config = DingtalkSimConfig {
            today: NaiveDate::from_ymd_opt(2026, 10, 25),
            ..DingtalkSimConfig::default()
        };
        let sim = sim(20, config).await;
        let t = token(&sim).await;
        let cols = post(&sim, GETATTCOLUMNS, &t, json!({})).await;
        let cols = cols["result"]["columns"].as_array().unwrap().clone();
        let with_id = cols.iter().filter(|c| c["id"].is_number()).count();
        assert!(with_id >= 25, "{with_id}");
        let leave = cols.iter().find(|c| c["name"] == "年假").unwrap();
        assert!(leave.get("id").is_none());

        let user = sim.org().users[0].userid.clone();
        let names = ["出勤天数", "应出勤天数", "考勤组", "工作时长"];
        let ids: Vec<String> = names.iter().map(|n| id_of(&sim, n).to_string()).collect();
        let body = json!({"userid": user, "column_id_list": ids.join(","),
            "from_date": "2026-10-01 00:00:00", "to_date": "2026-10-31 00:00:00"});
        let v = post(&sim, GETCOLUMNVAL, &t, body.clone()).await;
        assert_eq!(v["errcode"], 0, "{v}");
        let vals = v["result"]["column_vals"].as_array().unwrap();
        assert_eq!(vals.len(), 4);
        assert_eq!(vals[0]["column_vo"]["id"], json!(id_of(&sim, "出勤天数")));
        let days = vals[0]["column_vals"].as_array().unwrap();
        assert_eq!(days.len(), 31);
        assert_eq!(days[0]["date"], "2026-10-01 00:00:00");
        let expected = sim.daily_values(&user, "出勤天数", october());
        let got: Vec<(String, String)> = days
            .iter()
            .map(|d| {
                (
                    d["date"].as_str().unwrap().to_owned(),
                    d["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(got, expected);
        // 应出勤天数: zero for days more than 15 days before "today" (Oct 25).
        let should = vals[1]["column_vals"].as_array().unwrap();
        for d in &should[..9] {
            assert_eq!(d["value"], "0.0", "{d}");
        }
        assert!(should[9..].iter().any(|d| d["value"] == "1.0"));
        // 考勤组 has a fixed (text) value and no daily list.
        assert!(vals[2]["fixed_value"].is_string());
        assert!(vals[2].get("column_vals").is_none());
        // Same request, same answer.
        let again = post(&sim, GETCOLUMNVAL, &t, body).await;
        assert_eq!(again["result"], v["result"]);

        let expected = sim
            .expected_record(
                &user,
                october(),
                &["出勤天数".to_owned()],
                &["年假".to_owned()],
            )
            .unwrap();
        assert_eq!(expected["userid"], json!(user));
        assert!(expected["columns"]["出勤天数"].is_number());
        assert!(sim
            .expected_record(&user, october(), &["考勤组".to_owned()], &[])
            .is_none());

        // Leave values use other field names.
        let body = json!({"userid": user, "leave_names": "年假,事假,不存在假",
            "from_date": "2026-10-01 00:00:00", "to_date": "2026-10-31 00:00:00"});
        let v = post(&sim, GETLEAVETIME, &t, body).await;
        assert_eq!(v["errcode"], 0, "{v}");
        let columns = v["result"]["columns"].as_array().unwrap();
        assert_eq!(columns.len(), 2);
        assert_eq!(columns[1]["columnvo"]["name"], "事假");
        assert_eq!(columns[1]["columnvals"].as_array().unwrap().len(), 31);
        assert_eq!(sim.metered_calls(), 4);
    }

    #[tokio::test]
    async fn report_requests_are_validated() {
        let sim = sim(5, DingtalkSimConfig::default()).await;
        let t = token(&sim).await;
        let user = sim.org().users[0].userid.clone();
        let all: Vec<String> = sim
            .config()
            .columns
            .iter()
            .take(21)
            .map(|(id, _)| id.to_string())
            .collect();
        let ask = |ids: String, from: &str, to: &str, userid: &str| json!({"userid": userid, "column_id_list": ids, "from_date": from, "to_date": to});
        let (from, to) = ("2026-10-01 00:00:00", "2026-10-31 00:00:00");
        let v = post(&sim, GETCOLUMNVAL, &t, ask(all.join(","), from, to, &user)).await;
        assert_eq!(v["errcode"], 400002);
        let v = post(
            &sim,
            GETCOLUMNVAL,
            &t,
            ask(all[..20].join(","), from, to, &user),
        )
        .await;
        assert_eq!(v["errcode"], 0);
        let one = all[0].clone();
        let v = post(
            &sim,
            GETCOLUMNVAL,
            &t,
            ask(one.clone(), from, "2026-11-01 00:00:01", &user),
        )
        .await;
        assert_eq!(v["errcode"], 850012);
        let v = post(&sim, GETCOLUMNVAL, &t, ask(one.clone(), to, from, &user)).await;
        assert_eq!(v["errcode"], 850012);
        let v = post(
            &sim,
            GETCOLUMNVAL,
            &t,
            ask(one.clone(), "2026-10-01", to, &user),
        )
        .await;
        assert_eq!(v["errcode"], 41100);
        let v = post(&sim, GETCOLUMNVAL, &t, ask("42".into(), from, to, &user)).await;
        assert_eq!(v["errcode"], 400002);
        let v = post(&sim, GETCOLUMNVAL, &t, ask(one.clone(), from, to, "ghost")).await;
        assert_eq!(v["errcode"], 33012);
        // A window of one day (the 1st of a month in progress).
        let v = post(&sim, GETCOLUMNVAL, &t, ask(one, from, from, &user)).await;
        assert_eq!(
            v["result"]["column_vals"][0]["column_vals"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let names = vec!["年假"; 21].join(",");
        let body = json!({"userid": user, "leave_names": names, "from_date": from, "to_date": to});
        assert_eq!(post(&sim, GETLEAVETIME, &t, body).await["errcode"], 400002);
    }

    #[tokio::test]
    async fn body_styles_quota_and_injected_answers() {
        let config = DingtalkSimConfig {
            body_styles: vec![
                (GETCOLUMNVAL.to_owned(), BodyStyle::FormOnly),
                (GETLEAVETIME.to_owned(), BodyStyle::JsonOnly),
            ],
            monthly_quota: Some(3),
            ..DingtalkSimConfig::default()
        };
        let sim = sim(5, config).await;
        let t = token(&sim).await;
        let user = sim.org().users[0].userid.clone();
        let id = sim.config().columns[0].0;
        let json_body = json!({"userid": user, "column_id_list": id.to_string(),
            "from_date": "2026-10-01 00:00:00", "to_date": "2026-10-31 00:00:00"});
        assert_eq!(
            post(&sim, GETCOLUMNVAL, &t, json_body).await["errcode"],
            43004
        );
        let form = format!(
            "userid={user}&column_id_list={id}&from_date=2026-10-01+00%3A00%3A00&to_date=2026-10-31%2000:00:00"
        );
        let v = post_form(&sim, GETCOLUMNVAL, &t, &form).await;
        assert_eq!(v["errcode"], 0, "{v}");
        assert_eq!(
            v["result"]["column_vals"][0]["column_vals"]
                .as_array()
                .unwrap()
                .len(),
            31
        );
        let v = post_form(
            &sim,
            GETLEAVETIME,
            &t,
            "userid=x&leave_names=%E5%B9%B4%E5%81%87",
        )
        .await;
        assert_eq!(v["errcode"], 43005);

        // Quota: 3 metered calls served (the refused ones do not count).
        assert_eq!(sim.metered_calls(), 1);
        for _ in 0..2 {
            assert_eq!(post(&sim, GETATTCOLUMNS, &t, json!({})).await["errcode"], 0);
        }
        assert_eq!(
            post(&sim, GETATTCOLUMNS, &t, json!({})).await["errcode"],
            90020
        );
        assert_eq!(sim.quota_refusals(), 1);
        assert_eq!(post(&sim, LISTSUB, &t, json!({})).await["errcode"], 0);

        sim.inject_answer(
            LISTSUB,
            json!({"errcode": 88, "errmsg": "ding talk error", "subCode": "x.y", "subMsg": "z"}),
            1,
        );
        let v = post(&sim, LISTSUB, &t, json!({})).await;
        assert_eq!(v["subCode"], "x.y");
        assert_eq!(sim.call_log().last().unwrap().outcome.code(), Some(88));
        assert_eq!(post(&sim, LISTSUB, &t, json!({})).await["errcode"], 0);
    }

    #[tokio::test]
    async fn throttling_and_ip_bans() {
        let config = DingtalkSimConfig {
            limits: vec![
                (LISTSUB.to_owned(), 2, Duration::from_secs(60)),
                (GLOBAL_LIMIT.to_owned(), 5, Duration::from_secs(60)),
            ],
            ip_ban: Duration::from_millis(200),
            ..DingtalkSimConfig::default()
        };
        let sim = sim(5, config).await;
        let t = token(&sim).await;
        let mut codes = Vec::new();
        for _ in 0..3 {
            codes.push(post(&sim, LISTSUB, &t, json!({})).await["errcode"].clone());
        }
        assert_eq!(codes, [json!(0), json!(0), json!(90018)]);
        assert_eq!(sim.quota_violations(), 1);
        // gettoken and two listsub calls were admitted; two more fill the IP-wide
        // window of 5, the next is banned, and so is the one after it.
        for _ in 0..2 {
            assert_eq!(post(&sim, GETATTCOLUMNS, &t, json!({})).await["errcode"], 0);
        }
        let v = post(&sim, GETATTCOLUMNS, &t, json!({})).await;
        assert_eq!(v["status"], 1111);
        assert!(v.get("errcode").is_none());
        let v = post(&sim, GETCOLUMNVAL, &t, json!({})).await;
        assert_eq!(v["status"], 1111);
        assert_eq!(sim.bans_answered(), 2);

        let sim = self::sim(5, DingtalkSimConfig::default()).await;
        let t = token(&sim).await;
        sim.set_ip_banned(true);
        sim.set_ip_ban_html(true);
        let resp = client()
            .post(format!("{}/{LISTSUB}?access_token={t}", sim.base_url()))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
        assert!(resp.text().await.unwrap().starts_with("<!DOCTYPE html>"));
        assert_eq!(sim.call_log().last().unwrap().outcome, Outcome::Http(403));
        sim.set_ip_banned(false);
        assert_eq!(post(&sim, LISTSUB, &t, json!({})).await["errcode"], 0);

        sim.set_throttle_ratio(1.0);
        assert_eq!(post(&sim, LISTSUB, &t, json!({})).await["errcode"], 90018);
        assert_eq!(sim.injected_throttles(), 1);
        assert_eq!(sim.quota_violations(), 0);
        let resp = client()
            .get(format!("{}/topapi/nope", sim.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }

    #[test]
    fn form_decoding_and_value_helpers() {
        let f = parse_form("a=1&b=x%2Cy&c=%E5%B9%B4+%E5%81%87&d").unwrap();
        assert_eq!(f["a"], "1");
        assert_eq!(f["b"], "x,y");
        assert_eq!(f["c"], "年 假");
        assert_eq!(f["d"], "");
        assert!(parse_form("a=%zz").is_none());
        assert_eq!(tenths(15), "1.5");
        assert_eq!(units(482), "482.0");
        assert_eq!(hours(5400), "1.5");
        assert_eq!(parse_value(""), Some(Decimal::ZERO));
        assert_eq!(parse_value("abc"), None);
        assert_eq!(decimal_json(Decimal::new(30, 1)), Some(json!(3)));
        assert_eq!(decimal_json(Decimal::new(15, 1)), Some(json!(1.5)));
    }
}
