//! Serving: admission (quotas, bans, injected answers), routing, body
//! decoding and the token endpoints.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde_json::{json, Map, Value};

use super::approval::{process_instance, PROCESS_INSTANCES};
use super::directory::{listsub, user_list};
use super::push::failed_page;
use super::report::{getattcolumns, getcolumnval, getleavetime};
use super::{
    Answer, BodyStyle, Shared, SimState, Token, ENDPOINTS, FAILED_LIST, GETATTCOLUMNS,
    GETCOLUMNVAL, GETTOKEN, LISTSUB, METERED, USER_LIST,
};
use crate::limits::{Admission, Outcome};
use crate::mix;

pub(super) async fn handle(
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
    let (index, latency, early) = admit(&shared, &endpoint, known, arrived);
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
            &shared,
            &mut state,
            &Request {
                endpoint: &endpoint,
                metered,
                method: &method,
                query: &query,
                headers: &headers,
                body: &body,
            },
        ),
    };
    let (outcome, response) = respond(&shared, &mut state, answer);
    state.gate.finish(index, outcome);
    response
}

/// Logs the arrival and decides what the gate, a ban or an injected answer
/// says before routing: `(log index, latency, early answer)`.
fn admit(
    shared: &Shared,
    endpoint: &str,
    known: bool,
    arrived: Instant,
) -> (usize, std::time::Duration, Option<Answer>) {
    let mut state = shared.state();
    state.requests += 1;
    let index = state.gate.arrive_at(endpoint, arrived);
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
                .get_mut(endpoint)
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
}

/// Turns an answer into the response and the outcome to log.
fn respond(shared: &Shared, state: &mut SimState, answer: Answer) -> (Outcome, Response) {
    match answer {
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
        Answer::Status { http, body } => {
            let status = StatusCode::from_u16(http).unwrap_or(StatusCode::BAD_REQUEST);
            (Outcome::Http(http), (status, Json(body)).into_response())
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
    }
}

pub(super) fn errcode_of(body: &Value) -> i64 {
    match &body["errcode"] {
        Value::Number(n) => n.as_i64().unwrap_or(-1),
        Value::String(s) => s.trim().parse().unwrap_or(-1),
        _ => 0,
    }
}

impl SimState {
    pub(super) fn request_id(&mut self) -> String {
        let h = mix(self.seed, &[b"request", &self.requests.to_le_bytes()]);
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..12)
            .map(|k| char::from(ALPHABET[((h >> (k * 5)) % 36) as usize]))
            .collect()
    }

    pub(super) fn error(&mut self, errcode: i64, errmsg: &str) -> Answer {
        let request_id = self.request_id();
        Answer::Json {
            errcode,
            body: json!({"errcode": errcode, "errmsg": errmsg, "request_id": request_id}),
        }
    }

    pub(super) fn ok(&mut self, result: Value) -> Answer {
        let request_id = self.request_id();
        Answer::Json {
            errcode: 0,
            body: json!({"errcode": 0, "errmsg": "ok", "result": result, "success": true, "request_id": request_id}),
        }
    }

    pub(super) fn token_valid(&self, shared: &Shared, token: &str) -> bool {
        self.tokens.get(token).is_some_and(|t| {
            t.issued.elapsed() < shared.config.token_ttl
                && self
                    .token_expires_after_calls
                    .is_none_or(|limit| t.calls < limit)
        })
    }
}

/// A request body read as a flat object, whatever its encoding.
pub(super) type Fields = Map<String, Value>;

/// One request as [`route`] sees it.
pub(super) struct Request<'a> {
    pub(super) endpoint: &'a str,
    /// Counts against the monthly quota.
    pub(super) metered: bool,
    pub(super) method: &'a Method,
    pub(super) query: &'a HashMap<String, String>,
    pub(super) headers: &'a HeaderMap,
    pub(super) body: &'a Bytes,
}

pub(super) fn route(shared: &Shared, state: &mut SimState, request: &Request<'_>) -> Answer {
    let Request {
        endpoint,
        metered,
        method,
        query,
        headers,
        body,
    } = *request;
    if endpoint == GETTOKEN {
        if method != Method::GET {
            return state.error(43001, "需要GET请求");
        }
        return gettoken(shared, state, query);
    }
    if endpoint == PROCESS_INSTANCES && method == Method::GET {
        return process_instance(shared, state, query, headers);
    }
    if endpoint == FAILED_LIST {
        if method != Method::GET {
            return state.error(43001, "需要GET请求");
        }
        if let Err(answer) = check_token(shared, state, query) {
            return answer;
        }
        return failed_page(state);
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

pub(super) fn read_body(
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
pub(super) fn parse_form(text: &str) -> Option<Fields> {
    let mut out = Fields::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k)?, Value::String(percent_decode(v)?));
    }
    Some(out)
}

pub(super) fn percent_decode(s: &str) -> Option<String> {
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
pub(super) fn number_field(fields: &Fields, key: &str) -> Option<i64> {
    match fields.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn text_field<'a>(fields: &'a Fields, key: &str) -> Option<&'a str> {
    fields
        .get(key)?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

pub(super) fn gettoken(
    shared: &Shared,
    state: &mut SimState,
    query: &HashMap<String, String>,
) -> Answer {
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

pub(super) fn check_token(
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
