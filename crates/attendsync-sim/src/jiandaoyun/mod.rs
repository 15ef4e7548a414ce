//! Jiandaoyun (简道云) simulator: one app with one form, the v5 routes
//! `widget/list` and `data/*`, as `docs/vendors/jiandaoyun.md` describes them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use chrono::Utc;
use serde_json::{json, Map, Value};

use super::limits::{CallRecord, Gate, GLOBAL_LIMIT};
use super::{mix, spawn_server, ServerGuard};

mod filter;
mod serve;
mod store;
#[cfg(test)]
mod tests;
mod write;

use serve::handle;
use write::format_datetime;

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

    /// Adds up to `jitter` more latency to each request, drawn afresh for
    /// each (answer times that vary, as a real vendor's do).
    pub fn set_latency_jitter(&self, jitter: Duration) {
        self.state().gate.set_jitter(jitter);
    }

    pub fn set_store_then_502_ratio(&self, ratio: f64) {
        self.state().store_then_502_ratio = ratio;
    }

    pub fn set_store_then_drop_ratio(&self, ratio: f64) {
        self.state().store_then_drop_ratio = ratio;
    }

    /// How long a `data/batch_create` takes to commit from now on (see
    /// [`JdySimConfig::commit_delay`]).
    pub fn set_commit_delay(&self, delay: Duration) {
        self.state().commit_delay = delay;
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
