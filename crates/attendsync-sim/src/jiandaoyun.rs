//! Jiandaoyun (简道云) simulator: one app with one form, the v5 routes
//! `widget/list` and `data/*`, as `docs/vendors/jiandaoyun.md` describes them.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use rand::Rng;
use serde_json::{json, Map, Value};

use super::limits::{Admission, CallRecord, Gate, Outcome, GLOBAL_LIMIT};
use super::{mix, spawn_server, ServerGuard};

const PREFIX: &str = "/api/v5/app/entry/";
const MAX_BATCH: usize = 100;
const MAX_IN_VALUES: usize = 200;

const ENDPOINTS: &[&str] = &[
    "widget/list",
    "data/list",
    "data/get",
    "data/create",
    "data/batch_create",
    "data/update",
    "data/batch_update",
    "data/delete",
    "data/batch_delete",
];

fn is_write(endpoint: &str) -> bool {
    matches!(
        endpoint,
        "data/create"
            | "data/batch_create"
            | "data/update"
            | "data/batch_update"
            | "data/delete"
            | "data/batch_delete"
    )
}

/// What `transaction_id` on `data/batch_create` does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TxMode {
    /// A resend with the same id within `tx_ttl` creates nothing new: the
    /// earlier records are overwritten with the resent data (same ids) and the
    /// earlier `success_count` / `success_ids` are answered. A resend with a
    /// different number of records answers 17026.
    #[default]
    Honour,
    /// The id is ignored: every call creates its records again.
    Ignore,
}

#[derive(Clone, Debug)]
pub struct JdySimConfig {
    pub api_key: String,
    pub app_id: String,
    pub entry_id: String,
    /// `(alias, type)`, e.g. `("work_hours", "number")`. Each gets a generated
    /// `_widget_<digits>` id; an alias that already looks like `_widget_…` is
    /// taken as the id of a field without alias.
    pub widgets: Vec<(String, String)>,
    /// `(endpoint, calls, period)`: the endpoint is the path after
    /// `/api/v5/app/entry/`, or [`super::GLOBAL_LIMIT`] for all together.
    /// Endpoints not listed are unlimited. Over an endpoint's quota: HTTP 429;
    /// over the global one: HTTP 400 code 8303. Both count as quota violations.
    pub limits: Vec<(String, u32, Duration)>,
    /// Probability of an injected throttling answer on a call under quota:
    /// half HTTP 400 `{"code": 8304}`, half HTTP 429.
    pub throttle_ratio: f64,
    pub tx_mode: TxMode,
    /// How long a `transaction_id` is remembered (1 h on the real service).
    pub tx_ttl: Duration,
    pub latency: Duration,
    pub seed: u64,
    /// `data/batch_create`: store the batch, then answer HTTP 502.
    pub store_then_502_ratio: f64,
    /// `data/batch_create`: store the batch, then close the connection without
    /// answering.
    pub store_then_drop_ratio: f64,
    /// `data/batch_create`: how long a batch takes to commit, on top of
    /// `latency`. The commit happens even when the caller hangs up (or is
    /// killed) meanwhile, as on a real server.
    pub commit_delay: Duration,
}

impl Default for JdySimConfig {
    fn default() -> Self {
        let second = Duration::from_secs(1);
        let limit = |endpoint: &str, calls| (endpoint.to_owned(), calls, second);
        JdySimConfig {
            api_key: "sim-jdy-key-Wb3nT8qLx2Rv7Kp4Zs9Hd1Fg6Ym0Jc5A".to_owned(),
            app_id: "6399c24287cae90008d24e0b".to_owned(),
            entry_id: "64093d8613931a00085bb2f4".to_owned(),
            widgets: super::widgets_for(&[
                ("userid", "text"),
                ("name", "text"),
                ("month", "text"),
                ("department", "text"),
                ("work_hours", "number"),
                ("late_count", "number"),
                ("annual_leave_days", "number"),
                ("rule_type", "text"),
                ("period", "datetime"),
            ]),
            limits: vec![
                limit("data/batch_create", 10),
                limit("data/batch_update", 10),
                limit("data/batch_delete", 10),
                limit("data/create", 20),
                limit("data/update", 20),
                limit("data/delete", 20),
                limit("data/list", 30),
                limit("data/get", 30),
                limit("widget/list", 30),
                limit(GLOBAL_LIMIT, 50),
            ],
            throttle_ratio: 0.0,
            tx_mode: TxMode::Honour,
            tx_ttl: Duration::from_secs(3600),
            latency: Duration::ZERO,
            seed: 0,
            store_then_502_ratio: 0.0,
            store_then_drop_ratio: 0.0,
            commit_delay: Duration::ZERO,
        }
    }
}

/// A running Jiandaoyun simulator. Cheap to clone; the server stops when the
/// last clone is dropped (or the runtime it was started on shuts down).
#[derive(Clone)]
pub struct JdySim {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    _server: Arc<ServerGuard>,
}

#[derive(Clone, Debug)]
struct Widget {
    name: String,
    widget_name: String,
    ty: String,
}

struct Shared {
    api_key: String,
    app_id: String,
    entry_id: String,
    widgets: Vec<Widget>,
    state: Mutex<JdyState>,
}

struct Stored {
    fields: Map<String, Value>,
    create_time: String,
    update_time: String,
}

struct TxEntry {
    at: Instant,
    ids: Vec<String>,
}

struct JdyState {
    gate: Gate,
    tx_mode: TxMode,
    tx_ttl: Duration,
    store_then_502_ratio: f64,
    store_then_drop_ratio: f64,
    commit_delay: Duration,
    /// Every write is refused with this code and message (e.g. a plan limit).
    refuse_writes: Option<(i64, String)>,
    records: BTreeMap<String, Stored>,
    /// Per field: text value → ids of the records holding it. With `other_values`,
    /// lets `data/list` visit only the records an `in` filter on a text field can
    /// match, instead of every record (key look-ups in large forms).
    text_index: HashMap<String, HashMap<String, BTreeSet<String>>>,
    /// Per field: ids of the records whose value is neither text nor null (they
    /// may still match a text `in` filter, e.g. a number against "5").
    other_values: HashMap<String, BTreeSet<String>>,
    id_prefix: u32,
    next_id: u64,
    txs: HashMap<String, TxEntry>,
    data_modify_time: String,
}

/// An error: HTTP status, `code` (if any) and message.
struct Failure {
    status: StatusCode,
    code: i64,
    msg: String,
}

fn fail(code: i64, msg: impl Into<String>) -> Failure {
    Failure {
        status: StatusCode::BAD_REQUEST,
        code,
        msg: msg.into(),
    }
}

/// What to do with a successful answer.
enum Reply {
    Json(Value),
    /// batch_create stored, then a 502.
    BadGateway,
    /// batch_create stored, then the connection is dropped.
    Drop,
}

impl JdySim {
    /// Starts the simulator on `127.0.0.1:0` on the current tokio runtime.
    pub async fn start(config: JdySimConfig) -> std::io::Result<JdySim> {
        let base = 1_529_400_000_000 + mix(config.seed, &[b"widgets"]) % 100_000_000_000;
        let widgets = config
            .widgets
            .iter()
            .enumerate()
            .map(|(i, (alias, ty))| {
                let widget_name = if alias.starts_with("_widget_") {
                    alias.clone()
                } else {
                    format!("_widget_{}", base + i as u64)
                };
                Widget {
                    name: alias.clone(),
                    widget_name,
                    ty: ty.clone(),
                }
            })
            .collect();
        let prefix_seed = mix(config.seed, &[b"ids"]);
        let state = JdyState {
            gate: Gate::new(
                &config.limits,
                config.throttle_ratio,
                config.latency,
                mix(config.seed, &[b"jdy-faults"]),
            ),
            tx_mode: config.tx_mode,
            tx_ttl: config.tx_ttl,
            store_then_502_ratio: config.store_then_502_ratio,
            store_then_drop_ratio: config.store_then_drop_ratio,
            commit_delay: config.commit_delay,
            refuse_writes: None,
            records: BTreeMap::new(),
            text_index: HashMap::new(),
            other_values: HashMap::new(),
            id_prefix: 0x6000_0000 + (prefix_seed % 0x0fff_ffff) as u32,
            next_id: 1 + (prefix_seed >> 40) % 0x10_0000,
            txs: HashMap::new(),
            data_modify_time: format_datetime(Utc::now()),
        };
        let shared = Arc::new(Shared {
            api_key: config.api_key,
            app_id: config.app_id,
            entry_id: config.entry_id,
            widgets,
            state: Mutex::new(state),
        });
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (addr, server) = spawn_server(router).await?;
        Ok(JdySim {
            shared,
            addr,
            _server: server,
        })
    }

    /// `http://127.0.0.1:PORT`; routes are `{base}/api/v5/app/entry/…`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, JdyState> {
        self.shared.state()
    }

    /// The stored records in `_id` order: `_id` plus the form fields as bare
    /// values, keyed by alias (no system fields).
    pub fn records(&self) -> Vec<Map<String, Value>> {
        self.state()
            .records
            .iter()
            .map(|(id, stored)| {
                let mut m = Map::new();
                m.insert("_id".into(), json!(id));
                for (k, v) in &stored.fields {
                    m.insert(k.clone(), v.clone());
                }
                m
            })
            .collect()
    }

    /// Deletes a record as someone would by hand in the form; whether it was there.
    pub fn delete_record(&self, id: &str) -> bool {
        self.state().records.remove(id).is_some()
    }

    /// Adds a record as someone would by hand: bare values keyed by field alias.
    /// Returns its `_id`.
    pub fn add_record(&self, fields: Map<String, Value>) -> String {
        self.state().insert(fields)
    }

    /// Changes one field of a record as someone would by hand; whether the
    /// record was there.
    pub fn edit_record(&self, id: &str, field: &str, value: Value) -> bool {
        let mut state = self.state();
        if !state.records.contains_key(id) {
            return false;
        }
        state.update(id, Map::from_iter([(field.to_owned(), value)]));
        true
    }

    /// From now on every write is refused with `code` (`None`: writes work again).
    pub fn refuse_writes(&self, refusal: Option<(i64, &str)>) {
        self.state().refuse_writes = refusal.map(|(code, msg)| (code, msg.to_owned()));
    }

    /// `(alias, widgetName)` of every field.
    pub fn widget_names(&self) -> Vec<(String, String)> {
        self.shared
            .widgets
            .iter()
            .map(|w| (w.name.clone(), w.widget_name.clone()))
            .collect()
    }

    /// Requests to an endpoint (path after `/api/v5/app/entry/`), whatever the answer.
    pub fn calls(&self, endpoint: &str) -> usize {
        self.state().gate.calls(endpoint)
    }

    /// Requests to create, batch_create, update, batch_update, delete, batch_delete.
    pub fn write_calls(&self) -> usize {
        self.state().gate.calls_where(is_write)
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

    pub fn set_throttle_ratio(&self, ratio: f64) {
        self.state().gate.set_throttle_ratio(ratio);
    }

    pub fn set_tx_mode(&self, mode: TxMode) {
        self.state().tx_mode = mode;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state().gate.set_latency(latency);
    }

    pub fn set_store_then_502_ratio(&self, ratio: f64) {
        self.state().store_then_502_ratio = ratio;
    }

    pub fn set_store_then_drop_ratio(&self, ratio: f64) {
        self.state().store_then_drop_ratio = ratio;
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, JdyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn widget(&self, key: &str) -> Option<&Widget> {
        self.widgets
            .iter()
            .find(|w| w.name == key || w.widget_name == key)
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = std::time::Instant::now();
    let path = uri.path();
    let endpoint = path
        .strip_prefix(PREFIX)
        .unwrap_or(path)
        .trim_matches('/')
        .to_owned();
    let known = path.starts_with(PREFIX) && ENDPOINTS.contains(&endpoint.as_str());
    let (index, latency, early, commit_delay) = {
        let mut state = shared.state();
        let index = state.gate.arrive_at(&endpoint, arrived);
        let early = if !known || method != Method::POST {
            Some(Failure {
                status: StatusCode::NOT_FOUND,
                code: 0,
                msg: "Not Found".into(),
            })
        } else {
            match state.gate.admit(index) {
                Admission::Admitted => None,
                Admission::OverQuota { global: true } => {
                    Some(fail(8303, "超出团队请求频率限制，请稍后再试"))
                }
                Admission::OverQuota { global: false } => Some(too_many()),
                Admission::Injected => {
                    if state.gate.rng().random_bool(0.5) {
                        Some(fail(8304, "请求频率超出限制，请稍后再试"))
                    } else {
                        Some(too_many())
                    }
                }
            }
        };
        let commit_delay = match endpoint.as_str() {
            "data/batch_create" => state.commit_delay,
            _ => Duration::ZERO,
        };
        (index, state.gate.latency(), early, commit_delay)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let result = match early {
        Some(failure) => Err(failure),
        None if !commit_delay.is_zero() => {
            // Its own task: a caller that hangs up does not stop the commit.
            let shared = Arc::clone(&shared);
            let committing = tokio::spawn(async move {
                tokio::time::sleep(commit_delay).await;
                let mut state = shared.state();
                serve(&shared, &mut state, &endpoint, &headers, &body)
            });
            committing.await.unwrap_or_else(|e| {
                Err(Failure {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    code: 0,
                    msg: format!("commit task failed: {e}"),
                })
            })
        }
        None => {
            let mut state = shared.state();
            serve(&shared, &mut state, &endpoint, &headers, &body)
        }
    };
    let (outcome, response) = match result {
        Ok(Reply::Json(v)) => (Outcome::Ok, (StatusCode::OK, Json(v)).into_response()),
        Ok(Reply::BadGateway) => {
            let page = "<html><head><title>502 Bad Gateway</title></head><body>\
                        <center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
            let mut response = (StatusCode::BAD_GATEWAY, page).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            (Outcome::Http(502), response)
        }
        Ok(Reply::Drop) => {
            // A body that fails before its first byte: hyper closes the
            // connection without sending the status line.
            let stream = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("simulated connection drop"))
            });
            (Outcome::Dropped, Response::new(Body::from_stream(stream)))
        }
        Err(f) => {
            let outcome = if f.code != 0 {
                Outcome::Code {
                    http: f.status.as_u16(),
                    code: f.code,
                }
            } else {
                Outcome::Http(f.status.as_u16())
            };
            let body = if f.code != 0 {
                json!({"code": f.code, "msg": f.msg})
            } else {
                json!({"msg": f.msg})
            };
            let mut response = (f.status, Json(body)).into_response();
            if f.status == StatusCode::TOO_MANY_REQUESTS {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            (outcome, response)
        }
    };
    shared.state().gate.finish(index, outcome);
    response
}

fn too_many() -> Failure {
    Failure {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: 0,
        msg: "Too Many Requests".into(),
    }
}

fn serve(
    shared: &Shared,
    state: &mut JdyState,
    endpoint: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Reply, Failure> {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| key.trim() == shared.api_key);
    if !authorized {
        // Never echo the key.
        return Err(fail(8301, "API key 认证失败，请检查 Authorization 请求头"));
    }
    let request = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        _ => return Err(fail(1, "请求参数错误：请求体必须是 JSON 对象")),
    };
    if request.get("app_id").and_then(Value::as_str) != Some(shared.app_id.as_str()) {
        return Err(fail(2004, "应用不存在"));
    }
    if request.get("entry_id").and_then(Value::as_str) != Some(shared.entry_id.as_str()) {
        return Err(fail(3000, "表单不存在"));
    }
    if let (Some((code, msg)), true) = (&state.refuse_writes, is_write(endpoint)) {
        return Err(fail(*code, msg.clone()));
    }
    let json = match endpoint {
        "widget/list" => widget_list(shared, state),
        "data/list" => data_list(shared, state, &request)?,
        "data/get" => {
            let id = data_id(&request)?;
            let stored = state.records.get(&id).ok_or_else(not_found)?;
            json!({"data": render(shared, &id, stored, None)})
        }
        "data/create" => {
            let fields = decode_record(shared, state, request.get("data"), "data")?;
            let id = state.insert(fields);
            json!({"data": state.render_id(shared, &id)})
        }
        "data/batch_create" => return batch_create(shared, state, &request),
        "data/update" => {
            let id = data_id(&request)?;
            if !state.records.contains_key(&id) {
                return Err(not_found());
            }
            let fields = decode_record(shared, state, request.get("data"), "data")?;
            state.update(&id, fields);
            json!({"data": state.render_id(shared, &id)})
        }
        "data/batch_update" => {
            let ids = data_ids(&request, 17023, "批量修改")?;
            let fields = decode_record(shared, state, request.get("data"), "data")?;
            let mut count = 0;
            for id in ids {
                if state.records.contains_key(&id) {
                    state.update(&id, fields.clone());
                    count += 1;
                }
            }
            json!({"status": "success", "success_count": count})
        }
        "data/delete" => {
            let id = data_id(&request)?;
            if state.remove(&id).is_none() {
                return Err(not_found());
            }
            state.touch();
            json!({"status": "success"})
        }
        _ => {
            let ids = data_ids(&request, 17033, "批量删除")?;
            let count = ids.iter().filter(|id| state.remove(id).is_some()).count();
            state.touch();
            json!({"status": "success", "success_count": count})
        }
    };
    Ok(Reply::Json(json))
}

fn not_found() -> Failure {
    fail(4001, "数据不存在")
}

fn data_id(request: &Map<String, Value>) -> Result<String, Failure> {
    request
        .get("data_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| fail(17017, "参数错误：缺少 data_id"))
}

fn data_ids(
    request: &Map<String, Value>,
    too_many: i64,
    what: &str,
) -> Result<Vec<String>, Failure> {
    let ids = request
        .get("data_ids")
        .and_then(Value::as_array)
        .ok_or_else(|| fail(17017, "参数错误：缺少 data_ids"))?;
    if ids.len() > MAX_BATCH {
        return Err(fail(
            too_many,
            format!("{what}数据条数不能超过 {MAX_BATCH}"),
        ));
    }
    Ok(ids
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect())
}

impl JdyState {
    fn new_id(&mut self) -> String {
        let id = format!("{:08x}{:016x}", self.id_prefix, self.next_id);
        self.next_id += 1;
        id
    }

    fn touch(&mut self) {
        self.data_modify_time = format_datetime(Utc::now());
    }

    /// Adds (`add`) or removes one field value of a record to or from the indexes.
    fn index(&mut self, id: &str, field: &str, value: &Value, add: bool) {
        let set = match value {
            Value::Null => return,
            Value::String(text) => {
                let by_text = self.text_index.entry(field.to_owned()).or_default();
                if add {
                    by_text.entry(text.clone()).or_default()
                } else {
                    match by_text.get_mut(text) {
                        Some(set) => set,
                        None => return,
                    }
                }
            }
            _ => self.other_values.entry(field.to_owned()).or_default(),
        };
        if add {
            set.insert(id.to_owned());
        } else {
            set.remove(id);
        }
    }

    fn remove(&mut self, id: &str) -> Option<Stored> {
        let stored = self.records.remove(id)?;
        for (k, v) in &stored.fields {
            self.index(id, k, v, false);
        }
        Some(stored)
    }

    /// The ids, ascending, of every record whose `field` an `in` filter with these
    /// text values can match: a superset of the matches.
    fn candidates(&self, field: &str, texts: &HashSet<String>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if let Some(by_text) = self.text_index.get(field) {
            for t in texts {
                if let Some(ids) = by_text.get(t) {
                    out.extend(ids.iter().cloned());
                }
            }
        }
        if let Some(ids) = self.other_values.get(field) {
            out.extend(ids.iter().cloned());
        }
        out
    }

    fn insert(&mut self, fields: Map<String, Value>) -> String {
        let id = self.new_id();
        for (k, v) in &fields {
            self.index(&id, k, v, true);
        }
        let now = format_datetime(Utc::now());
        self.records.insert(
            id.clone(),
            Stored {
                fields,
                create_time: now.clone(),
                update_time: now.clone(),
            },
        );
        self.data_modify_time = now;
        id
    }

    fn update(&mut self, id: &str, fields: Map<String, Value>) {
        let now = format_datetime(Utc::now());
        if self.records.contains_key(id) {
            for (k, v) in fields {
                let value = v.clone();
                let old = self
                    .records
                    .get_mut(id)
                    .and_then(|stored| stored.fields.insert(k.clone(), v));
                // The old value out of the indexes first: it may equal the new one.
                if let Some(old) = old {
                    self.index(id, &k, &old, false);
                }
                self.index(id, &k, &value, true);
            }
            if let Some(stored) = self.records.get_mut(id) {
                stored.update_time = now.clone();
            }
        }
        self.data_modify_time = now;
    }

    fn render_id(&self, shared: &Shared, id: &str) -> Value {
        self.records
            .get(id)
            .map(|stored| render(shared, id, stored, None))
            .unwrap_or(Value::Null)
    }
}

fn widget_list(shared: &Shared, state: &JdyState) -> Value {
    let widgets: Vec<Value> = shared
        .widgets
        .iter()
        .map(
            |w| json!({"name": w.name, "widgetName": w.widget_name, "label": w.name, "type": w.ty}),
        )
        .collect();
    let sys: Vec<Value> = [
        "creator",
        "createTime",
        "updater",
        "updateTime",
        "flowState",
    ]
    .iter()
    .map(|n| json!({"name": n}))
    .collect();
    json!({"widgets": widgets, "sysWidgets": sys, "dataModifyTime": state.data_modify_time})
}

const SYSTEM_FIELDS: &[&str] = &[
    "appId",
    "entryId",
    "creator",
    "updater",
    "deleter",
    "createTime",
    "updateTime",
];

fn system_field(shared: &Shared, stored: &Stored, name: &str) -> Option<Value> {
    let api_user = || json!({"name": "API", "username": "api", "status": 1, "type": 0});
    Some(match name {
        "appId" => json!(shared.app_id),
        "entryId" => json!(shared.entry_id),
        "creator" | "updater" => api_user(),
        "deleter" => Value::Null,
        "createTime" => json!(stored.create_time),
        "updateTime" => json!(stored.update_time),
        _ => return None,
    })
}

/// A record as `data/list` and friends return it: bare values keyed by alias.
fn render(shared: &Shared, id: &str, stored: &Stored, fields: Option<&[String]>) -> Value {
    let mut out = Map::new();
    out.insert("_id".into(), json!(id));
    match fields {
        None => {
            for w in &shared.widgets {
                if let Some(v) = stored.fields.get(&w.name) {
                    out.insert(w.name.clone(), v.clone());
                }
            }
            for name in SYSTEM_FIELDS {
                if let Some(v) = system_field(shared, stored, name) {
                    out.insert((*name).to_owned(), v);
                }
            }
        }
        Some(names) => {
            for name in names {
                if let Some(w) = shared.widget(name) {
                    if let Some(v) = stored.fields.get(&w.name) {
                        out.insert(w.name.clone(), v.clone());
                    }
                } else if let Some(v) = system_field(shared, stored, name) {
                    out.insert(name.clone(), v);
                }
            }
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------

const READ_ONLY_TYPES: &[&str] = &[
    "sn",
    "linkdata",
    "signature",
    "aggregation",
    "aggregationtext",
    "separator",
    "linkquery",
];

fn decode_record(
    shared: &Shared,
    state: &mut JdyState,
    record: Option<&Value>,
    context: &str,
) -> Result<Map<String, Value>, Failure> {
    let Some(Value::Object(record)) = record else {
        return Err(fail(17017, format!("参数错误：{context} 必须是对象")));
    };
    let mut out = Map::new();
    for (key, wrapped) in record {
        let widget = shared.widget(key).ok_or_else(|| {
            fail(
                17032,
                format!("{context}: 字段 \"{key}\" 不存在或字段类型不支持"),
            )
        })?;
        if READ_ONLY_TYPES.contains(&widget.ty.as_str()) {
            return Err(fail(
                17032,
                format!("{context}: 字段 \"{key}\" 的类型 {} 不支持写入", widget.ty),
            ));
        }
        let value = match wrapped {
            Value::Object(m) if m.contains_key("value") => {
                m.get("value").cloned().unwrap_or(Value::Null)
            }
            _ => {
                return Err(fail(
                    17017,
                    format!(
                    "invalid parameters: {context}: 字段 \"{key}\" 的值必须写成 {{\"value\": …}}"
                ),
                ))
            }
        };
        let value = convert(state, &widget.ty, value).map_err(|expected| {
            fail(
                17017,
                format!(
                    "invalid parameters: {context}: 字段 \"{key}\" ({}) 的值无效，需要{expected}",
                    widget.ty
                ),
            )
        })?;
        out.insert(widget.name.clone(), value);
    }
    Ok(out)
}

/// Write value → stored (read) value, by field type. `Err` names what was expected.
fn convert(state: &mut JdyState, ty: &str, value: Value) -> Result<Value, &'static str> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let strings = |v: &Value| {
        v.as_array()
            .is_some_and(|items| items.iter().all(Value::is_string))
    };
    match ty {
        "text" | "textarea" | "radiogroup" | "combo" => {
            if value.is_string() {
                Ok(value)
            } else {
                Err("字符串")
            }
        }
        "number" => {
            if value.is_number() {
                Ok(value)
            } else {
                Err("数字")
            }
        }
        "datetime" => parse_datetime(&value)
            .map(|dt| json!(format_datetime(dt)))
            .ok_or("日期时间（UTC ISO 8601，如 2026-09-30T16:00:00.000Z）"),
        "checkboxgroup" | "combocheck" => {
            if strings(&value) {
                Ok(value)
            } else {
                Err("字符串数组")
            }
        }
        "user" => value.as_str().map(member).ok_or("成员编号（字符串）"),
        "usergroup" => {
            if strings(&value) {
                Ok(Value::Array(
                    value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(member)
                        .collect(),
                ))
            } else {
                Err("成员编号数组")
            }
        }
        "dept" => value.as_i64().map(department).ok_or("部门编号（数字）"),
        "deptgroup" => match value.as_array() {
            Some(items) if items.iter().all(Value::is_i64) => Ok(Value::Array(
                items
                    .iter()
                    .filter_map(Value::as_i64)
                    .map(department)
                    .collect(),
            )),
            _ => Err("部门编号数组"),
        },
        "subform" => {
            let Value::Array(rows) = value else {
                return Err("子表单行数组");
            };
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let Value::Object(row) = row else {
                    return Err("子表单行对象");
                };
                let mut bare = Map::new();
                let mut row_id = None;
                for (k, v) in row {
                    if k == "_id" {
                        row_id = v.as_str().map(str::to_owned);
                        continue;
                    }
                    match v {
                        Value::Object(m) if m.contains_key("value") => {
                            bare.insert(k, m.get("value").cloned().unwrap_or(Value::Null));
                        }
                        _ => return Err("子表单字段写成 {\"value\": …}"),
                    }
                }
                let id = match row_id.filter(|id| id.len() == 24) {
                    Some(id) => id,
                    None => state.new_id(),
                };
                let mut with_id = Map::new();
                with_id.insert("_id".into(), json!(id));
                with_id.append(&mut bare);
                out.push(Value::Object(with_id));
            }
            Ok(Value::Array(out))
        }
        _ => Ok(value),
    }
}

fn member(username: &str) -> Value {
    json!({"username": username, "name": username, "status": 1, "type": 0})
}

fn department(dept_no: i64) -> Value {
    json!({"dept_no": dept_no, "name": format!("部门{dept_no}"), "type": 0, "status": 1})
}

fn format_datetime(dt: DateTime<Utc>) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Accepted write formats: UTC ISO / RFC 3339, millisecond timestamps,
/// `yyyy-MM-dd HH:mm:ss` and `yyyy-MM-dd` (both read as Asia/Shanghai time).
/// Rejected: second timestamps, 0, empty strings, slashes, anything else.
fn parse_datetime(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(n) => {
            let ms = n.as_i64()?;
            if ms < 100_000_000_000 {
                return None; // seconds (or 0)
            }
            DateTime::from_timestamp_millis(ms)
        }
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() || s.contains('/') {
                return None;
            }
            if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
                return Some(dt.with_timezone(&Utc));
            }
            let local = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .ok()
                .or_else(|| {
                    NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                })?;
            chrono_tz::Asia::Shanghai
                .from_local_datetime(&local)
                .single()
                .map(|dt| dt.with_timezone(&Utc))
        }
        _ => None,
    }
}

fn batch_create(
    shared: &Shared,
    state: &mut JdyState,
    request: &Map<String, Value>,
) -> Result<Reply, Failure> {
    let list = request
        .get("data_list")
        .and_then(Value::as_array)
        .ok_or_else(|| fail(17017, "参数错误：缺少 data_list"))?;
    if list.is_empty() {
        return Err(fail(17017, "参数错误：data_list 不能为空"));
    }
    if list.len() > MAX_BATCH {
        return Err(fail(17024, format!("批量新建数据条数不能超过 {MAX_BATCH}")));
    }
    let tx = match request.get("transaction_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && !s.contains("${") && !s.contains("$(") => {
            Some(s.clone())
        }
        Some(_) => return Err(fail(17025, "transaction_id 无效")),
    };
    // All or nothing: validate every record before storing any.
    let mut records = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        records.push(decode_record(
            shared,
            state,
            Some(item),
            &format!("data_list[{i}]"),
        )?);
    }

    let ttl = state.tx_ttl;
    state.txs.retain(|_, entry| entry.at.elapsed() < ttl);
    let earlier = match (&tx, state.tx_mode) {
        (Some(tx), TxMode::Honour) => state.txs.get(tx).map(|e| e.ids.clone()),
        _ => None,
    };
    let ids = match earlier {
        Some(ids) if ids.len() == records.len() => {
            for (id, fields) in ids.iter().zip(records) {
                state.update(id, fields);
            }
            ids
        }
        Some(_) => return Err(fail(17026, "transaction_id 已存在")),
        None => {
            let ids: Vec<String> = records.into_iter().map(|r| state.insert(r)).collect();
            if let (Some(tx), TxMode::Honour) = (tx, state.tx_mode) {
                state.txs.insert(
                    tx,
                    TxEntry {
                        at: Instant::now(),
                        ids: ids.clone(),
                    },
                );
            }
            ids
        }
    };
    if state.gate.chance(state.store_then_drop_ratio) {
        return Ok(Reply::Drop);
    }
    if state.gate.chance(state.store_then_502_ratio) {
        return Ok(Reply::BadGateway);
    }
    Ok(Reply::Json(
        json!({"status": "success", "success_count": ids.len(), "success_ids": ids}),
    ))
}

// ---------------------------------------------------------------------------
// data/list
// ---------------------------------------------------------------------------

enum Field {
    Widget { name: String, datetime: bool },
    Id,
    Time(&'static str),
}

struct Cond {
    field: Field,
    method: String,
    values: Vec<Value>,
    /// For `in` on a text field when every wanted value is text: the values as a
    /// set, so that a text field value is matched by one lookup instead of a
    /// comparison with each value (the same answer; keeps key lookups cheap in
    /// forms of hundreds of thousands of records).
    texts: Option<HashSet<String>>,
}

fn filter_error(msg: impl Into<String>) -> Failure {
    fail(4815, format!("过滤条件无效：{}", msg.into()))
}

fn parse_filter(shared: &Shared, filter: Option<&Value>) -> Result<(bool, Vec<Cond>), Failure> {
    let Some(filter) = filter.filter(|f| !f.is_null()) else {
        return Ok((true, Vec::new()));
    };
    let Value::Object(filter) = filter else {
        return Err(filter_error("filter 必须是对象"));
    };
    let and = match filter.get("rel").and_then(Value::as_str).unwrap_or("and") {
        "and" => true,
        "or" => false,
        other => return Err(filter_error(format!("rel \"{other}\" 无效"))),
    };
    let conds = match filter.get("cond") {
        None | Some(Value::Null) => return Ok((and, Vec::new())),
        Some(Value::Array(c)) => c,
        Some(_) => return Err(filter_error("cond 必须是数组")),
    };
    let mut out = Vec::with_capacity(conds.len());
    for c in conds {
        let name = c
            .get("field")
            .and_then(Value::as_str)
            .ok_or_else(|| filter_error("缺少 field"))?;
        let field = match name {
            "_id" => Field::Id,
            "createTime" => Field::Time("createTime"),
            "updateTime" => Field::Time("updateTime"),
            _ => {
                let w = shared
                    .widget(name)
                    .ok_or_else(|| filter_error(format!("字段 \"{name}\" 不存在")))?;
                Field::Widget {
                    name: w.name.clone(),
                    datetime: w.ty == "datetime",
                }
            }
        };
        let method = c
            .get("method")
            .and_then(Value::as_str)
            .ok_or_else(|| filter_error("缺少 method"))?
            .to_owned();
        let values = match c.get("value") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(v)) => v.clone(),
            Some(_) => return Err(filter_error("value 必须是数组")),
        };
        let needs_value = matches!(method.as_str(), "eq" | "ne" | "gt" | "lt" | "like");
        match method.as_str() {
            "eq" | "ne" | "in" | "nin" | "empty" | "not_empty" | "range" | "gt" | "lt" | "like"
            | "all" => {}
            other => return Err(filter_error(format!("method \"{other}\" 不支持"))),
        }
        if needs_value && values.is_empty() {
            return Err(filter_error(format!(
                "字段 \"{name}\" 的 {method} 缺少 value"
            )));
        }
        if matches!(method.as_str(), "in" | "nin") && values.len() > MAX_IN_VALUES {
            return Err(filter_error(format!(
                "{method} 最多 {MAX_IN_VALUES} 个值，收到 {}",
                values.len()
            )));
        }
        let plain_text_field = matches!(
            field,
            Field::Widget {
                datetime: false,
                ..
            }
        );
        let texts = (method == "in" && plain_text_field)
            .then(|| {
                values
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<HashSet<String>>>()
            })
            .flatten();
        out.push(Cond {
            field,
            method,
            values,
            texts,
        });
    }
    Ok((and, out))
}

/// Member / department objects compare by their number.
fn scalar(v: &Value) -> &Value {
    match v {
        Value::Object(m) => m.get("username").or_else(|| m.get("dept_no")).unwrap_or(v),
        _ => v,
    }
}

fn compare(a: &Value, b: &Value, datetime: bool) -> Option<Ordering> {
    let (a, b) = (scalar(a), scalar(b));
    if datetime {
        if let (Some(x), Some(y)) = (parse_datetime(a), parse_datetime(b)) {
            return Some(x.cmp(&y));
        }
    }
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Number(_), _) | (_, Value::Number(_)) => number(a)?.partial_cmp(&number(b)?),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

impl Cond {
    fn matches(&self, id: &str, stored: &Stored) -> bool {
        if let (Some(texts), Field::Widget { name, .. }) = (&self.texts, &self.field) {
            // Text against text compares equal only when identical.
            if let Some(Value::String(s)) = stored.fields.get(name) {
                return texts.contains(s);
            }
        }
        let (value, datetime) = match &self.field {
            Field::Id => (Some(json!(id)), false),
            Field::Time(t) => (
                Some(json!(if *t == "createTime" {
                    &stored.create_time
                } else {
                    &stored.update_time
                })),
                true,
            ),
            Field::Widget { name, datetime } => (stored.fields.get(name).cloned(), *datetime),
        };
        let eq = |x: &Value, y: &Value| compare(x, y, datetime) == Some(Ordering::Equal);
        // Multi-value fields match an element.
        let any_eq = |field: &Value, wanted: &Value| match field {
            Value::Array(items) => items.iter().any(|i| eq(i, wanted)),
            _ => eq(field, wanted),
        };
        let first = self.values.first().unwrap_or(&Value::Null);
        match self.method.as_str() {
            "empty" => is_empty(value.as_ref()),
            "not_empty" => !is_empty(value.as_ref()),
            _ => {
                let Some(value) = value.filter(|v| !v.is_null()) else {
                    return matches!(self.method.as_str(), "ne" | "nin");
                };
                match self.method.as_str() {
                    "eq" => any_eq(&value, first),
                    "ne" => !any_eq(&value, first),
                    "in" => self.values.iter().any(|w| any_eq(&value, w)),
                    "nin" => !self.values.iter().any(|w| any_eq(&value, w)),
                    "all" => self.values.iter().all(|w| any_eq(&value, w)),
                    "gt" => compare(&value, first, datetime) == Some(Ordering::Greater),
                    "lt" => compare(&value, first, datetime) == Some(Ordering::Less),
                    "like" => match (scalar(&value), first) {
                        (Value::String(s), Value::String(needle)) => s.contains(needle.as_str()),
                        _ => false,
                    },
                    "range" => {
                        let bound_ok = |bound: Option<&Value>, ok: &[Ordering]| match bound {
                            None | Some(Value::Null) => true,
                            Some(b) => {
                                compare(&value, b, datetime).is_some_and(|o| ok.contains(&o))
                            }
                        };
                        bound_ok(self.values.first(), &[Ordering::Greater, Ordering::Equal])
                            && bound_ok(self.values.get(1), &[Ordering::Less, Ordering::Equal])
                    }
                    _ => false,
                }
            }
        }
    }
}

fn data_list(
    shared: &Shared,
    state: &JdyState,
    request: &Map<String, Value>,
) -> Result<Value, Failure> {
    let limit = match request.get("limit") {
        None | Some(Value::Null) => 10,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=100) => n as usize,
            _ => return Err(fail(1, "参数错误：limit 取值范围为 1~100")),
        },
    };
    let after = match request.get("data_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(fail(1, "参数错误：data_id 必须是字符串")),
    };
    let fields: Option<Vec<String>> = match request.get("fields") {
        None | Some(Value::Null) => None,
        Some(Value::Array(names)) => Some(
            names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        Some(_) => return Err(fail(1, "参数错误：fields 必须是数组")),
    };
    let (and, conds) = parse_filter(shared, request.get("filter"))?;
    // With "and", an `in` on a text field limits the records worth looking at;
    // every condition is still checked on each of them.
    let candidates = conds
        .iter()
        .filter(|_| and)
        .find_map(|c| match (&c.texts, &c.field) {
            (Some(texts), Field::Widget { name, .. }) => Some(state.candidates(name, texts)),
            _ => None,
        });
    let range: Box<dyn Iterator<Item = (&String, &Stored)>> = match (&candidates, &after) {
        (Some(ids), _) => Box::new(
            ids.iter()
                .filter(|id| after.as_ref().is_none_or(|a| *id > a))
                .filter_map(|id| state.records.get_key_value(id)),
        ),
        (None, Some(id)) => Box::new(
            state
                .records
                .range::<String, _>((Bound::Excluded(id), Bound::Unbounded)),
        ),
        (None, None) => Box::new(state.records.range::<String, _>(..)),
    };
    let data: Vec<Value> = range
        .filter(|(id, stored)| {
            if conds.is_empty() {
                true
            } else if and {
                conds.iter().all(|c| c.matches(id, stored))
            } else {
                conds.iter().any(|c| c.matches(id, stored))
            }
        })
        .take(limit)
        .map(|(id, stored)| render(shared, id, stored, fields.as_deref()))
        .collect();
    Ok(json!({"data": data}))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::client;
    use super::*;
    use std::collections::HashSet;

    async fn sim(config: JdySimConfig) -> JdySim {
        JdySim::start(config).await.unwrap()
    }

    async fn call(sim: &JdySim, endpoint: &str, mut body: Value) -> (u16, Value) {
        let c = JdySimConfig::default();
        body["app_id"] = json!(c.app_id);
        body["entry_id"] = json!(c.entry_id);
        raw(sim, endpoint, &c.api_key, body).await
    }

    async fn raw(sim: &JdySim, endpoint: &str, key: &str, body: Value) -> (u16, Value) {
        let url = format!("{}/api/v5/app/entry/{endpoint}", sim.base_url());
        let resp = client()
            .post(url)
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn row(userid: &str, month: &str, hours: f64) -> Value {
        json!({
            "userid": {"value": userid},
            "month": {"value": month},
            "work_hours": {"value": hours},
            "period": {"value": "2026-09-30T16:00:00.000Z"}
        })
    }

    #[tokio::test]
    async fn auth_app_and_entry_errors() {
        let sim = sim(JdySimConfig::default()).await;
        let c = JdySimConfig::default();
        let body = json!({"app_id": c.app_id, "entry_id": c.entry_id});
        let (status, v) = raw(&sim, "widget/list", "wrong-key-123", body.clone()).await;
        assert_eq!((status, v["code"].as_i64()), (400, Some(8301)));
        assert!(!v.to_string().contains("wrong-key-123"));
        let url = format!("{}/api/v5/app/entry/widget/list", sim.base_url());
        let resp = client().post(url).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 400);
        let (_, v) = raw(
            &sim,
            "widget/list",
            &c.api_key,
            json!({"app_id": "x", "entry_id": c.entry_id}),
        )
        .await;
        assert_eq!(v["code"], 2004);
        let (_, v) = raw(
            &sim,
            "widget/list",
            &c.api_key,
            json!({"app_id": c.app_id, "entry_id": "y"}),
        )
        .await;
        assert_eq!(v["code"], 3000);
        let (status, _) = call(&sim, "data/nope", json!({})).await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn widget_list_shape() {
        let sim = sim(JdySimConfig {
            widgets: super::super::widgets_for(&[
                ("userid", "text"),
                ("_widget_1600000000001", "number"),
            ]),
            ..JdySimConfig::default()
        })
        .await;
        let (status, v) = call(&sim, "widget/list", json!({})).await;
        assert_eq!(status, 200);
        let w = v["widgets"].as_array().unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0]["name"], "userid");
        let wn = w[0]["widgetName"].as_str().unwrap();
        assert!(wn.starts_with("_widget_") && wn[8..].chars().all(|c| c.is_ascii_digit()));
        assert_eq!(w[1]["name"], "_widget_1600000000001");
        assert_eq!(w[1]["widgetName"], "_widget_1600000000001");
        assert_eq!(w[1]["type"], "number");
        assert!(v["sysWidgets"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "createTime"})));
        assert!(v["dataModifyTime"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn batch_create_then_list_with_filters_and_paging() {
        let sim = sim(JdySimConfig::default()).await;
        let rows: Vec<Value> = (0..25)
            .map(|i| {
                row(
                    &format!("U{i:02}"),
                    if i % 2 == 0 { "2026-10" } else { "2026-09" },
                    i as f64 + 0.5,
                )
            })
            .collect();
        let (status, v) = call(&sim, "data/batch_create", json!({"data_list": rows})).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["status"], "success");
        assert_eq!(v["success_count"], 25);
        let ids: Vec<String> = v["success_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_owned())
            .collect();
        assert!(ids
            .iter()
            .all(|id| id.len() == 24 && id.chars().all(|c| c.is_ascii_hexdigit())));
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let records = sim.records();
        assert_eq!(records.len(), 25);
        assert_eq!(records[3]["userid"], "U03");
        assert_eq!(records[3]["work_hours"], 3.5);
        assert_eq!(records[3]["_id"], json!(ids[3]));

        let filter = json!({"rel": "and", "cond": [
            {"field": "month", "type": "text", "method": "eq", "value": ["2026-10"]},
            {"field": "userid", "type": "text", "method": "in", "value": ["U00", "U01", "U02", "U04", "U99"]}
        ]});
        let (_, v) = call(
            &sim,
            "data/list",
            json!({"limit": 100, "filter": filter, "fields": ["userid", "work_hours"]}),
        )
        .await;
        let got: Vec<_> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["userid"].as_str().unwrap())
            .collect();
        assert_eq!(got, ["U00", "U02", "U04"]);
        let first = &v["data"][0];
        assert_eq!(first.as_object().unwrap().len(), 3, "{first}"); // _id, userid, work_hours

        // Paging by data_id, ascending ids.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut body = json!({"limit": 10});
            if let Some(c) = &cursor {
                body["data_id"] = json!(c);
            }
            let (_, v) = call(&sim, "data/list", body).await;
            let page = v["data"].as_array().unwrap().clone();
            seen.extend(page.iter().map(|r| r["_id"].as_str().unwrap().to_owned()));
            if page.len() < 10 {
                break;
            }
            cursor = page.last().map(|r| r["_id"].as_str().unwrap().to_owned());
        }
        assert_eq!(seen, ids);

        let cases = [
            (
                json!({"field": "work_hours", "method": "gt", "value": [20]}),
                5,
            ),
            (
                json!({"field": "work_hours", "method": "range", "value": [1, 3.5]}),
                3,
            ),
            (
                json!({"field": "work_hours", "method": "range", "value": [null, 1]}),
                1,
            ),
            (
                json!({"field": "month", "method": "ne", "value": ["2026-10"]}),
                12,
            ),
            (
                json!({"field": "userid", "method": "nin", "value": ["U00", "U01"]}),
                23,
            ),
            (json!({"field": "name", "method": "empty"}), 25),
            (json!({"field": "month", "method": "not_empty"}), 25),
            (
                json!({"field": "period", "method": "eq", "value": ["2026-09-30T16:00:00Z"]}),
                25,
            ),
            (
                json!({"field": "work_hours", "method": "lt", "value": [2]}),
                2,
            ),
        ];
        for (cond, expected) in cases {
            let (_, v) = call(
                &sim,
                "data/list",
                json!({"limit": 100, "filter": {"cond": [cond.clone()]}}),
            )
            .await;
            assert_eq!(v["data"].as_array().map(Vec::len), Some(expected), "{cond}");
        }
        let or = json!({"rel": "or", "cond": [
            {"field": "userid", "method": "eq", "value": ["U01"]},
            {"field": "userid", "method": "eq", "value": ["U02"]}
        ]});
        let (_, v) = call(&sim, "data/list", json!({"filter": or})).await;
        assert_eq!(v["data"].as_array().unwrap().len(), 2);

        let too_many: Vec<String> = (0..201).map(|i| format!("U{i}")).collect();
        let cond = json!({"cond": [{"field": "userid", "method": "in", "value": too_many}]});
        let (status, v) = call(&sim, "data/list", json!({"filter": cond})).await;
        assert_eq!((status, v["code"].as_i64()), (400, Some(4815)));
        for limit in [0, 101] {
            let (status, _) = call(&sim, "data/list", json!({"limit": limit})).await;
            assert_eq!(status, 400);
        }
        let (_, v) = call(
            &sim,
            "data/list",
            json!({"filter": {"cond": [{"field": "nope", "method": "eq", "value": [1]}]}}),
        )
        .await;
        assert_eq!(v["code"], 4815);
    }

    #[tokio::test]
    async fn batch_create_validation() {
        let sim = sim(JdySimConfig::default()).await;
        let mut unwrapped = row("U1", "2026-10", 1.0);
        unwrapped["month"] = json!("2026-10");
        let (status, v) = call(
            &sim,
            "data/batch_create",
            json!({"data_list": [row("U0", "2026-10", 1.0), unwrapped]}),
        )
        .await;
        assert_eq!((status, v["code"].as_i64()), (400, Some(17017)));
        assert!(v["msg"].as_str().unwrap().contains("month"), "{v}");
        assert!(sim.records().is_empty(), "all or nothing");

        let mut bad_number = row("U1", "2026-10", 1.0);
        bad_number["work_hours"] = json!({"value": "168.5"});
        let (_, v) = call(
            &sim,
            "data/batch_create",
            json!({"data_list": [bad_number]}),
        )
        .await;
        assert_eq!(v["code"], 17017);
        assert!(v["msg"].as_str().unwrap().contains("work_hours"));

        let mut unknown = row("U1", "2026-10", 1.0);
        unknown["nope"] = json!({"value": 1});
        let (_, v) = call(&sim, "data/batch_create", json!({"data_list": [unknown]})).await;
        assert_eq!(v["code"], 17032);
        assert!(v["msg"].as_str().unwrap().contains("nope"));

        for bad in [
            json!(1_790_784_000),
            json!(""),
            json!("2026/10/01"),
            json!(0),
        ] {
            let mut r = row("U1", "2026-10", 1.0);
            r["period"] = json!({"value": bad});
            let (_, v) = call(&sim, "data/batch_create", json!({"data_list": [r]})).await;
            assert_eq!(v["code"], 17017, "{bad}");
        }
        let mut local = row("U1", "2026-10", 1.0);
        local["period"] = json!({"value": "2026-10-01"});
        let (status, _) = call(&sim, "data/batch_create", json!({"data_list": [local]})).await;
        assert_eq!(status, 200);
        assert_eq!(sim.records()[0]["period"], "2026-09-30T16:00:00.000Z");

        let many: Vec<Value> = (0..101)
            .map(|i| row(&format!("U{i}"), "2026-10", 1.0))
            .collect();
        let (_, v) = call(&sim, "data/batch_create", json!({"data_list": many})).await;
        assert_eq!(v["code"], 17024);
        let (_, v) = call(
            &sim,
            "data/batch_create",
            json!({"data_list": [row("U", "m", 1.0)], "transaction_id": "${x}"}),
        )
        .await;
        assert_eq!(v["code"], 17025);
    }

    #[tokio::test]
    async fn transaction_id_honoured_or_ignored() {
        let sim = sim(JdySimConfig::default()).await;
        let batch = json!({"data_list": [row("A", "2026-10", 1.0), row("B", "2026-10", 2.0)], "transaction_id": "0f6c6f52-8a2e-5b1e-9d0e-3c1b6d2f7a11"});
        let (_, first) = call(&sim, "data/batch_create", batch.clone()).await;
        let (_, again) = call(&sim, "data/batch_create", batch.clone()).await;
        assert_eq!(first, again);
        assert_eq!(sim.records().len(), 2);
        let mut shorter = batch.clone();
        shorter["data_list"] = json!([row("A", "2026-10", 1.0)]);
        let (_, v) = call(&sim, "data/batch_create", shorter).await;
        assert_eq!(v["code"], 17026);

        sim.set_tx_mode(TxMode::Ignore);
        let (_, third) = call(&sim, "data/batch_create", batch).await;
        assert_eq!(third["success_count"], 2);
        assert_ne!(third["success_ids"], first["success_ids"]);
        assert_eq!(sim.records().len(), 4);
        assert_eq!(sim.write_calls(), 4);
        assert_eq!(sim.calls("data/batch_create"), 4);
    }

    #[tokio::test]
    async fn transaction_id_expires() {
        let sim = sim(JdySimConfig {
            tx_ttl: Duration::from_millis(100),
            ..JdySimConfig::default()
        })
        .await;
        let batch = json!({"data_list": [row("A", "2026-10", 1.0)], "transaction_id": "t-1"});
        call(&sim, "data/batch_create", batch.clone()).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        call(&sim, "data/batch_create", batch).await;
        assert_eq!(sim.records().len(), 2);
    }

    #[tokio::test]
    async fn store_then_502_stores_and_retry_with_same_tx_does_not_duplicate() {
        let sim = sim(JdySimConfig {
            store_then_502_ratio: 1.0,
            ..JdySimConfig::default()
        })
        .await;
        let batch = json!({"data_list": [row("A", "2026-10", 1.0), row("B", "2026-10", 2.0)], "transaction_id": "tx-502"});
        let (status, v) = call(&sim, "data/batch_create", batch.clone()).await;
        assert_eq!(status, 502);
        assert!(v.is_string(), "not JSON: {v}");
        assert_eq!(sim.records().len(), 2);
        sim.set_store_then_502_ratio(0.0);
        let (status, v) = call(&sim, "data/batch_create", batch).await;
        assert_eq!(status, 200);
        assert_eq!(v["success_count"], 2);
        assert_eq!(sim.records().len(), 2);
        let log = sim.call_log();
        assert_eq!(log[0].outcome, Outcome::Http(502));
        assert_eq!(log[1].outcome, Outcome::Ok);
    }

    #[tokio::test]
    async fn store_then_drop_closes_without_answer() {
        let sim = sim(JdySimConfig {
            store_then_drop_ratio: 1.0,
            ..JdySimConfig::default()
        })
        .await;
        let c = JdySimConfig::default();
        let body = json!({"app_id": c.app_id, "entry_id": c.entry_id, "data_list": [row("A", "2026-10", 1.0)]});
        let url = format!("{}/api/v5/app/entry/data/batch_create", sim.base_url());
        let result = client()
            .post(url)
            .bearer_auth(&c.api_key)
            .json(&body)
            .send()
            .await;
        assert!(
            result.is_err(),
            "expected a transport error, got {result:?}"
        );
        assert_eq!(sim.records().len(), 1);
        assert_eq!(sim.call_log()[0].outcome, Outcome::Dropped);
    }

    #[tokio::test]
    async fn update_delete_and_friends() {
        let sim = sim(JdySimConfig::default()).await;
        let (_, v) = call(&sim, "data/batch_create", json!({"data_list": [row("A", "2026-10", 1.0), row("B", "2026-10", 2.0), row("C", "2026-10", 3.0)]})).await;
        let ids: Vec<String> = v["success_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_owned())
            .collect();

        let (status, v) = call(
            &sim,
            "data/update",
            json!({"data_id": ids[0], "data": {"work_hours": {"value": 170}}}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(v["data"]["work_hours"], 170);
        assert_eq!(v["data"]["userid"], "A");
        assert_eq!(v["data"]["_id"], json!(ids[0]));
        assert!(v["data"]["createTime"].is_string());
        let (_, v) = call(
            &sim,
            "data/update",
            json!({"data_id": "ffffffffffffffffffffffff", "data": {}}),
        )
        .await;
        assert_eq!(v["code"], 4001);
        let (_, v) = call(
            &sim,
            "data/update",
            json!({"data_id": ids[0], "data": {"work_hours": 1}}),
        )
        .await;
        assert_eq!(v["code"], 17017);

        let (_, v) = call(
            &sim,
            "data/batch_update",
            json!({"data_ids": [ids[1], ids[2], "nope"], "data": {"month": {"value": "2026-11"}}}),
        )
        .await;
        assert_eq!(v["success_count"], 2);
        let (_, v) = call(&sim, "data/get", json!({"data_id": ids[2]})).await;
        assert_eq!(v["data"]["month"], "2026-11");

        let (_, v) = call(&sim, "data/delete", json!({"data_id": ids[0]})).await;
        assert_eq!(v["status"], "success");
        let (_, v) = call(&sim, "data/delete", json!({"data_id": ids[0]})).await;
        assert_eq!(v["code"], 4001);
        let (_, v) = call(
            &sim,
            "data/batch_delete",
            json!({"data_ids": [ids[1], ids[2]]}),
        )
        .await;
        assert_eq!(v["success_count"], 2);
        assert!(sim.records().is_empty());
        let (_, v) = call(
            &sim,
            "data/create",
            json!({"data": row("D", "2026-10", 4.0)}),
        )
        .await;
        assert_eq!(v["data"]["userid"], "D");
        assert_eq!(sim.write_calls(), 9);
        let ids: HashSet<_> = sim.records().iter().map(|r| r["_id"].clone()).collect();
        assert_eq!(ids.len(), 1);
    }

    #[tokio::test]
    async fn quotas_and_injected_throttles() {
        let sim = sim(JdySimConfig {
            limits: vec![
                ("data/list".to_owned(), 2, Duration::from_secs(60)),
                (GLOBAL_LIMIT.to_owned(), 4, Duration::from_secs(60)),
            ],
            ..JdySimConfig::default()
        })
        .await;
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(call(&sim, "data/list", json!({})).await.0);
        }
        assert_eq!(statuses, [200, 200, 429]);
        call(&sim, "widget/list", json!({})).await;
        call(&sim, "widget/list", json!({})).await;
        let (status, v) = call(&sim, "widget/list", json!({})).await;
        assert_eq!((status, v["code"].as_i64()), (400, Some(8303)));
        assert_eq!(sim.quota_violations(), 2);

        let sim = self::sim(JdySimConfig {
            throttle_ratio: 0.5,
            seed: 11,
            ..JdySimConfig::default()
        })
        .await;
        let mut kinds = HashSet::new();
        for _ in 0..40 {
            let (status, v) = call(&sim, "widget/list", json!({})).await;
            kinds.insert((status, v["code"].as_i64()));
        }
        assert!(
            kinds.contains(&(429, None)) && kinds.contains(&(400, Some(8304))),
            "{kinds:?}"
        );
        assert!(sim.injected_throttles() > 5);
        assert_eq!(sim.quota_violations(), 0);
        assert_eq!(sim.calls("widget/list"), 40);
    }
}
