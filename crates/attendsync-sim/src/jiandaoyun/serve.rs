//! Serving: admission (quotas, injected throttles), authentication and the
//! dispatch of each v5 route.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde_json::{json, Map, Value};

use super::filter::data_list;
use super::store::{render, widget_list};
use super::write::{batch_create, decode_record};
use super::{fail, is_write, Failure, JdyState, Reply, Shared, ENDPOINTS, MAX_BATCH, PREFIX};
use crate::limits::{Admission, Outcome};

pub(super) async fn handle(
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
    let (index, latency, early, commit_delay) = admit(&shared, &endpoint, known, &method, arrived);
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
    let (outcome, response) = respond(result);
    shared.state().gate.finish(index, outcome);
    response
}

/// Logs the arrival and decides what the gate says before serving:
/// `(log index, latency, early failure, commit delay)`.
fn admit(
    shared: &Shared,
    endpoint: &str,
    known: bool,
    method: &Method,
    arrived: Instant,
) -> (usize, Duration, Option<Failure>, Duration) {
    let mut state = shared.state();
    let index = state.gate.arrive_at(endpoint, arrived);
    let early = if !known || *method != Method::POST {
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
    let commit_delay = match endpoint {
        "data/batch_create" => state.commit_delay,
        _ => Duration::ZERO,
    };
    (index, state.gate.latency(), early, commit_delay)
}

/// Turns a result into the response and the outcome to log.
fn respond(result: Result<Reply, Failure>) -> (Outcome, Response) {
    match result {
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
    }
}

pub(super) fn too_many() -> Failure {
    Failure {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: 0,
        msg: "Too Many Requests".into(),
    }
}

pub(super) fn serve(
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

pub(super) fn not_found() -> Failure {
    fail(4001, "数据不存在")
}

pub(super) fn data_id(request: &Map<String, Value>) -> Result<String, Failure> {
    request
        .get("data_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| fail(17017, "参数错误：缺少 data_id"))
}

pub(super) fn data_ids(
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
