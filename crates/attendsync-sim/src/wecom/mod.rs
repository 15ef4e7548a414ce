//! WeCom (企业微信) simulator: `gettoken`, the contacts simple lists and
//! `checkin/getcheckin_monthdata`, as `docs/vendors/wecom.md` describes them;
//! approvals, `oa/getapprovaldetail` and the callback pusher in `approval.rs`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Timelike};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use super::limits::{Admission, CallRecord, Gate, Outcome};
use super::org::{wecom_period_record, Org};
use super::{mix, spawn_server, ServerGuard};
use pointer::{pointer_remove, pointer_set};

mod approval;
mod pointer;
pub use approval::{ApprovalKind, ApprovalPusher, Delivery, SpStatus};

const PREFIX: &str = "/cgi-bin/";
const MONTHDATA: &str = "checkin/getcheckin_monthdata";
const MAX_USERIDS: usize = 100;
const MAX_SPAN_SECS: i64 = 93 * 86_400;

#[derive(Clone, Debug)]
pub struct WecomSimConfig {
    pub corp_id: String,
    pub secret: String,
    /// Lifetime of an access token (`expires_in`); default 7200 s.
    pub token_ttl: Duration,
    /// A token becomes invalid (42001) after this many authenticated calls.
    pub token_expires_after_calls: Option<u32>,
    /// Probability of an injected 45009 on a call that is under quota.
    pub throttle_ratio: f64,
    /// `(endpoint, calls, period)`; the endpoint is the path after `/cgi-bin/`,
    /// or [`super::GLOBAL_LIMIT`] for all endpoints together. Endpoints not
    /// listed are unlimited. Calls over a quota answer 45009 and are counted as
    /// quota violations; they do not use up the quota themselves.
    pub limits: Vec<(String, u32, Duration)>,
    /// Added to every request before it is answered.
    pub latency: Duration,
    pub seed: u64,
    /// Day boundaries for `starttime` / `endtime`.
    pub timezone: chrono_tz::Tz,
}

impl Default for WecomSimConfig {
    fn default() -> Self {
        let minute = Duration::from_secs(60);
        WecomSimConfig {
            corp_id: "ww5f3c8a1d2b4e6f70".to_owned(),
            secret: "sim-checkin-secret-3Jd9Qx7LmP2vR8tK5wZ1nB4yH6cF0gA".to_owned(),
            token_ttl: Duration::from_secs(7200),
            token_expires_after_calls: None,
            throttle_ratio: 0.0,
            limits: vec![
                (MONTHDATA.to_owned(), 60, minute),
                ("gettoken".to_owned(), 1000, minute),
                ("department/simplelist".to_owned(), 10_000, minute),
                ("user/simplelist".to_owned(), 10_000, minute),
                (approval::APPROVAL_DETAIL.to_owned(), 600, minute),
            ],
            latency: Duration::ZERO,
            seed: 0,
            timezone: chrono_tz::Asia::Shanghai,
        }
    }
}

/// A running WeCom simulator. Cheap to clone; the server stops when the last
/// clone is dropped (or the runtime it was started on shuts down).
#[derive(Clone)]
pub struct WecomSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _server: Arc<ServerGuard>,
}

struct Shared {
    org: Org,
    index: OrgIndex,
    corp_id: String,
    secret: String,
    token_ttl: Duration,
    timezone: chrono_tz::Tz,
    seed: u64,
    state: Mutex<WecomState>,
}

/// Look-ups built once at start.
struct OrgIndex {
    user_by_id: HashMap<String, usize>,
    children: HashMap<u64, Vec<u64>>,
    members: HashMap<u64, Vec<usize>>,
    department_pos: HashMap<u64, usize>,
}

impl OrgIndex {
    fn build(org: &Org) -> OrgIndex {
        let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut department_pos = HashMap::with_capacity(org.departments.len());
        for (pos, d) in org.departments.iter().enumerate() {
            department_pos.insert(d.id, pos);
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
            department_pos,
        }
    }

    /// `root` and its descendants, parents before children.
    fn subtree(&self, root: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            out.push(id);
            if let Some(kids) = self.children.get(&id) {
                stack.extend(kids.iter().rev());
            }
        }
        out
    }
}

enum Patch {
    Set(String, Value),
    Remove(String),
}

struct Token {
    issued: Instant,
    calls: u32,
}

struct WecomState {
    gate: Gate,
    calls_per_token: Option<u32>, // `token_expires_after_calls`, changed by its setter
    ip_forbidden: bool,
    api_forbidden: bool,
    tokens: HashMap<String, Token>,
    current_token: Option<String>,
    tokens_issued: usize,
    token_rng: StdRng,
    hints: u64,
    revisions: HashMap<String, u32>,
    patches: HashMap<String, Vec<Patch>>,
    /// Listed in the directory, but without a report (e.g. taken off every
    /// check-in rule).
    without_report: HashSet<String>,
    approvals: approval::Approvals,
}

/// An answer: the body, and the errcode for the log.
struct Answer {
    errcode: i64,
    body: Value,
}

impl Answer {
    fn ok(mut fields: Map<String, Value>) -> Answer {
        let mut body = Map::new();
        body.insert("errcode".into(), json!(0));
        body.insert("errmsg".into(), json!("ok"));
        body.append(&mut fields);
        Answer {
            errcode: 0,
            body: Value::Object(body),
        }
    }
}

impl WecomSim {
    /// Starts the simulator on `127.0.0.1:0` on the current tokio runtime.
    pub async fn start(org: Org, config: WecomSimConfig) -> std::io::Result<WecomSim> {
        let index = OrgIndex::build(&org);
        let state = WecomState {
            calls_per_token: config.token_expires_after_calls,
            gate: Gate::new(
                &config.limits,
                config.throttle_ratio,
                config.latency,
                mix(config.seed, &[b"wecom-faults"]),
            ),
            ip_forbidden: false,
            api_forbidden: false,
            tokens: HashMap::new(),
            current_token: None,
            tokens_issued: 0,
            token_rng: StdRng::seed_from_u64(mix(config.seed, &[b"wecom-tokens"])),
            hints: 0,
            revisions: HashMap::new(),
            without_report: HashSet::new(),
            patches: HashMap::new(),
            approvals: approval::Approvals::default(),
        };
        let shared = Arc::new(Shared {
            org,
            index,
            corp_id: config.corp_id,
            secret: config.secret,
            token_ttl: config.token_ttl,
            timezone: config.timezone,
            seed: config.seed,
            state: Mutex::new(state),
        });
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (addr, server) = spawn_server(router).await?;
        Ok(WecomSim {
            shared,
            addr,
            _server: server,
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash); endpoints are under `/cgi-bin/`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn org(&self) -> &Org {
        &self.shared.org
    }

    fn state(&self) -> MutexGuard<'_, WecomState> {
        self.shared.state()
    }

    /// That user's report changes (every month): see [`super::wecom_period_record`].
    pub fn bump_revision(&self, userid: &str) {
        *self.state().revisions.entry(userid.to_owned()).or_insert(0) += 1;
    }

    /// Sets the value at a JSON pointer in every month's record of that user
    /// (creating missing objects on the way), e.g.
    /// `("/summary_info/regular_work_sec", json!("abc"))`. Later patches win.
    pub fn patch_record(&self, userid: &str, pointer: &str, value: Value) {
        self.state()
            .patches
            .entry(userid.to_owned())
            .or_default()
            .push(Patch::Set(pointer.to_owned(), value));
    }

    /// That user stays in the directory but gets no report any more (as when
    /// taken off every check-in rule): monthdata leaves them out.
    pub fn drop_report(&self, userid: &str) {
        self.state().without_report.insert(userid.to_owned());
    }

    /// Removes the value at a JSON pointer from every month's record of that
    /// user, e.g. `"/summary_info/rest_days"`.
    pub fn remove_field(&self, userid: &str, pointer: &str) {
        self.state()
            .patches
            .entry(userid.to_owned())
            .or_default()
            .push(Patch::Remove(pointer.to_owned()));
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

    pub fn set_token_expires_after_calls(&self, calls: Option<u32>) {
        self.state().calls_per_token = calls;
    }

    /// Every call answers 60020 (`… from ip: 127.0.0.1 …`).
    pub fn set_ip_forbidden(&self, on: bool) {
        self.state().ip_forbidden = on;
    }

    /// `getcheckin_monthdata` answers 48002.
    pub fn set_api_forbidden(&self, on: bool) {
        self.state().api_forbidden = on;
    }

    /// Requests to an endpoint (path after `/cgi-bin/`), whatever the answer.
    pub fn calls(&self, endpoint: &str) -> usize {
        self.state().gate.calls(endpoint)
    }

    /// Every request so far, in arrival order.
    pub fn call_log(&self) -> Vec<CallRecord> {
        self.state().gate.call_log()
    }

    pub fn quota_violations(&self) -> usize {
        self.state().gate.quota_violations()
    }

    pub fn injected_throttles(&self) -> usize {
        self.state().gate.injected_throttles()
    }

    /// Distinct access tokens handed out by `gettoken`.
    pub fn tokens_issued(&self) -> usize {
        self.state().tokens_issued
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, WecomState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let arrived = std::time::Instant::now();
    let path = uri.path();
    let endpoint = path
        .strip_prefix(PREFIX)
        .unwrap_or(path)
        .trim_matches('/')
        .to_owned();
    let ip = peer.ip().to_string();
    let known = path.starts_with(PREFIX) && is_known(&endpoint);
    // Arrival: log it and decide on the answers that do not depend on the request.
    let (index, latency, early) = {
        let mut state = shared.state();
        let index = state.gate.arrive_at(&endpoint, arrived);
        let seed = shared.seed;
        let early = if !known {
            Some((
                StatusCode::NOT_FOUND,
                state.error(seed, 404, "not found", &ip),
            ))
        } else if state.ip_forbidden {
            let answer = state.error(seed, 60020, "not allow to access from your ip", &ip);
            Some((StatusCode::OK, answer))
        } else {
            match state.gate.admit(index) {
                Admission::Admitted => None,
                Admission::OverQuota { .. } | Admission::Injected => {
                    let answer = state.error(seed, 45009, "api freq out of limit", &ip);
                    Some((StatusCode::OK, answer))
                }
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
    let (status, answer) = match early {
        Some(early) => early,
        None => {
            let answer = route(&shared, &mut state, &endpoint, &method, &query, &body, &ip);
            (StatusCode::OK, answer)
        }
    };
    let outcome = if answer.errcode == 0 && status == StatusCode::OK {
        Outcome::Ok
    } else {
        Outcome::Code {
            http: status.as_u16(),
            code: answer.errcode,
        }
    };
    state.gate.finish(index, outcome);
    drop(state);

    let mut response = (status, Json(answer.body)).into_response();
    if answer.errcode != 0 {
        if let Ok(v) = HeaderValue::from_str(&answer.errcode.to_string()) {
            response.headers_mut().insert("error-code", v);
        }
    }
    response
}

fn is_known(endpoint: &str) -> bool {
    matches!(
        endpoint,
        "gettoken"
            | "department/simplelist"
            | "user/simplelist"
            | MONTHDATA
            | approval::APPROVAL_DETAIL
    )
}

fn route(
    shared: &Shared,
    state: &mut WecomState,
    endpoint: &str,
    method: &Method,
    query: &HashMap<String, String>,
    body: &Bytes,
    ip: &str,
) -> Answer {
    let seed = shared.seed;
    let wants_post = endpoint == MONTHDATA || endpoint == approval::APPROVAL_DETAIL;
    if wants_post && method != Method::POST {
        return state.error(seed, 43002, "require POST method", ip);
    }
    if !wants_post && method != Method::GET {
        return state.error(seed, 43001, "require GET method", ip);
    }
    if endpoint == "gettoken" {
        return gettoken(shared, state, query, ip);
    }
    if let Err(answer) = check_token(shared, state, query, ip) {
        return answer;
    }
    match endpoint {
        "department/simplelist" => department_simplelist(shared, state, query, ip),
        "user/simplelist" => user_simplelist(shared, state, query, ip),
        approval::APPROVAL_DETAIL => approval::detail(shared, state, body, ip),
        _ => monthdata(shared, state, body, ip),
    }
}

impl WecomState {
    /// An error answer with a realistic `errmsg` (hint, caller ip, doc link).
    fn error(&mut self, seed: u64, errcode: i64, text: &str, ip: &str) -> Answer {
        self.hints += 1;
        let hint = format!(
            "{}{:015}",
            1_760_000_000 + self.hints,
            mix(seed, &[b"hint", &self.hints.to_le_bytes()]) % 1_000_000_000_000_000
        );
        let errmsg = format!(
            "{text}, hint: [{hint}], from ip: {ip}, more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"
        );
        Answer {
            errcode,
            body: json!({"errcode": errcode, "errmsg": errmsg}),
        }
    }

    fn token_valid(&self, shared: &Shared, token: &str) -> bool {
        self.tokens.get(token).is_some_and(|t| {
            t.issued.elapsed() < shared.token_ttl
                && self.calls_per_token.is_none_or(|limit| t.calls < limit)
        })
    }
}

fn gettoken(
    shared: &Shared,
    state: &mut WecomState,
    query: &HashMap<String, String>,
    ip: &str,
) -> Answer {
    let seed = shared.seed;
    let corpid = query.get("corpid").map(String::as_str).unwrap_or("");
    let secret = query.get("corpsecret").map(String::as_str).unwrap_or("");
    if corpid.is_empty() {
        return state.error(seed, 41002, "corpid missing", ip);
    }
    if secret.is_empty() {
        return state.error(seed, 41004, "corpsecret missing", ip);
    }
    if corpid != shared.corp_id {
        return state.error(seed, 40013, "invalid corpid", ip);
    }
    if secret != shared.secret {
        // Never echo the secret.
        return state.error(
            seed,
            40001,
            "invalid credential, access_token is invalid or not latest",
            ip,
        );
    }
    let current = state
        .current_token
        .clone()
        .filter(|t| state.token_valid(shared, t));
    let token = match current {
        Some(token) => token,
        None => {
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let token: String = (0..214)
                .map(|_| char::from(ALPHABET[state.token_rng.random_range(0..ALPHABET.len())]))
                .collect();
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
    let remaining = state
        .tokens
        .get(&token)
        .map(|t| shared.token_ttl.saturating_sub(t.issued.elapsed()))
        .unwrap_or(shared.token_ttl);
    let expires_in = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
    let mut fields = Map::new();
    fields.insert("access_token".into(), json!(token));
    fields.insert("expires_in".into(), json!(expires_in));
    Answer::ok(fields)
}

fn check_token(
    shared: &Shared,
    state: &mut WecomState,
    query: &HashMap<String, String>,
    ip: &str,
) -> Result<(), Answer> {
    let seed = shared.seed;
    let token = query.get("access_token").map(String::as_str).unwrap_or("");
    if token.is_empty() {
        return Err(state.error(seed, 41001, "access_token missing", ip));
    }
    if !state.tokens.contains_key(token) {
        return Err(state.error(seed, 40014, "invalid access_token", ip));
    }
    if !state.token_valid(shared, token) {
        return Err(state.error(seed, 42001, "access_token expired", ip));
    }
    if let Some(t) = state.tokens.get_mut(token) {
        t.calls += 1;
    }
    Ok(())
}

fn department_simplelist(
    shared: &Shared,
    state: &mut WecomState,
    query: &HashMap<String, String>,
    ip: &str,
) -> Answer {
    let org = &shared.org;
    let ids: Vec<u64> = match query.get("id").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => org.departments.iter().map(|d| d.id).collect(),
        Some(raw) => match raw.parse::<u64>() {
            Ok(id) if shared.index.department_pos.contains_key(&id) => shared.index.subtree(id),
            _ => return state.error(shared.seed, 60003, "department not found", ip),
        },
    };
    let list: Vec<Value> = ids
        .iter()
        .filter_map(|id| shared.index.department_pos.get(id))
        .filter_map(|&pos| org.departments.get(pos))
        .map(|d| json!({"id": d.id, "parentid": d.parent_id, "order": d.order}))
        .collect();
    let mut fields = Map::new();
    fields.insert("department_id".into(), Value::Array(list));
    Answer::ok(fields)
}

fn user_simplelist(
    shared: &Shared,
    state: &mut WecomState,
    query: &HashMap<String, String>,
    ip: &str,
) -> Answer {
    let id = query
        .get("department_id")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|id| shared.index.department_pos.contains_key(id));
    let Some(id) = id else {
        return state.error(shared.seed, 60003, "department not found", ip);
    };
    let users: Vec<Value> = shared
        .index
        .members
        .get(&id)
        .map(|members| {
            members
                .iter()
                .filter_map(|&i| shared.org.users.get(i))
                .map(|u| {
                    let open = mix(shared.seed, &[b"open_userid", u.userid.as_bytes()]);
                    json!({
                        "userid": u.userid,
                        "name": u.name,
                        "department": u.departments,
                        "open_userid": format!("wo{open:016x}"),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut fields = Map::new();
    fields.insert("userlist".into(), Value::Array(users));
    Answer::ok(fields)
}

fn with_empty_datas(mut answer: Answer) -> Answer {
    if let Value::Object(body) = &mut answer.body {
        body.insert("datas".into(), json!([]));
    }
    answer
}

fn unix_seconds(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn monthdata(shared: &Shared, state: &mut WecomState, body: &Bytes, ip: &str) -> Answer {
    let seed = shared.seed;
    if state.api_forbidden {
        return with_empty_datas(state.error(seed, 48002, "api forbidden", ip));
    }
    let request: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return with_empty_datas(state.error(seed, 47001, "data format error", ip)),
    };
    let userids: Vec<&str> = request
        .get("useridlist")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if userids.is_empty() || userids.len() > MAX_USERIDS {
        return with_empty_datas(state.error(
            seed,
            301023,
            "useridlist is empty or exceeds the limit of 100",
            ip,
        ));
    }
    let start = unix_seconds(request.get("starttime")).unwrap_or(0);
    let end = unix_seconds(request.get("endtime")).unwrap_or(0);
    if start <= 0 || end <= start || end - start >= MAX_SPAN_SECS {
        return with_empty_datas(state.error(
            seed,
            301024,
            "invalid time range, endtime must be greater than starttime and the span less than 93 days",
            ip,
        ));
    }
    let (Some(first), Some(last)) = (
        local_midnight(start, shared.timezone),
        local_midnight(end, shared.timezone),
    ) else {
        // The real API's silent failure on times that are not a day start.
        let mut fields = Map::new();
        fields.insert("datas".into(), json!([]));
        return Answer::ok(fields);
    };

    let mut seen = HashSet::new();
    let mut datas = Vec::new();
    for userid in userids {
        if !seen.insert(userid) {
            continue;
        }
        let Some(user) = shared
            .index
            .user_by_id
            .get(userid)
            .and_then(|&i| shared.org.users.get(i))
        else {
            continue; // unknown userids are silently omitted
        };
        if state.without_report.contains(userid) {
            continue;
        }
        let revision = state.revisions.get(userid).copied().unwrap_or(0);
        let mut record = wecom_period_record(&shared.org, user, first, last, revision);
        if let Some(patches) = state.patches.get(userid) {
            for patch in patches {
                match patch {
                    Patch::Set(pointer, value) => pointer_set(&mut record, pointer, value.clone()),
                    Patch::Remove(pointer) => pointer_remove(&mut record, pointer),
                }
            }
        }
        datas.push(record);
    }
    let mut fields = Map::new();
    fields.insert("datas".into(), Value::Array(datas));
    Answer::ok(fields)
}

/// The local date of a Unix time, if it is exactly 00:00:00 there.
fn local_midnight(secs: i64, tz: chrono_tz::Tz) -> Option<NaiveDate> {
    let local = DateTime::from_timestamp(secs, 0)?.with_timezone(&tz);
    (local.num_seconds_from_midnight() == 0).then(|| local.date_naive())
}

#[cfg(test)]
mod tests;
