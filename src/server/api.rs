//! The handlers of `/healthz` and `/api/v1`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, JobInfo, Shared};
use crate::month::Month;
use crate::store::{RequestRow, RunRequest};

type Answer = Result<Json<Value>, ApiError>;

/// A `/healthz` write proves the database writable for this long: the
/// endpoint needs no token, so it must not let anyone drive writes.
const HEALTH_REUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// 200 when the database takes a write; 503 otherwise.
pub(super) async fn healthz(State(shared): State<Arc<Shared>>) -> Result<Json<Value>, ApiError> {
    let recent = |at: &Option<std::time::Instant>| at.is_some_and(|t| t.elapsed() < HEALTH_REUSE);
    if shared.healthy_at.lock().is_ok_and(|at| recent(&at)) {
        return Ok(Json(json!({ "status": "ok" })));
    }
    let now = shared.clock.now();
    match shared.store.call(move |s| s.touch_health(now)).await {
        Ok(()) => {
            if let Ok(mut at) = shared.healthy_at.lock() {
                *at = Some(std::time::Instant::now());
            }
            Ok(Json(json!({ "status": "ok" })))
        }
        Err(e) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the database is not writable: {e}"),
        )),
    }
}

/// `/metrics` in the Prometheus text format.
pub(super) async fn metrics(
    State(shared): State<Arc<Shared>>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let jobs = shared.jobs();
    let now = shared.clock.now();
    let text = shared.metrics.render(&shared.store, &jobs, now).await?;
    let content_type = [(
        axum::http::header::CONTENT_TYPE,
        super::metrics::CONTENT_TYPE,
    )];
    Ok((content_type, text).into_response())
}

pub(super) async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such endpoint".into())
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method".into(),
    )
}

/// A path parameter, or a JSON 400 (a `%`-escape that is not UTF-8, say):
/// the API's errors are all JSON.
type PathText = Result<Path<String>, PathRejection>;

fn path_text(path: PathText) -> Result<String, ApiError> {
    path.map(|Path(text)| text).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("bad path: {}", e.body_text()),
        )
    })
}

fn job_of(shared: &Shared, name: &str) -> Result<JobInfo, ApiError> {
    let jobs = shared.jobs();
    jobs.iter()
        .find(|j| j.name == name)
        .cloned()
        .ok_or_else(|| {
            let known: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
            ApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "unknown job \"{}\"; the daemon runs: {}",
                    crate::text::clean(name),
                    known.join(", ")
                ),
            )
        })
}

/// Every job: source, schedule, next fire, last run, running or not, queued runs.
pub(super) async fn jobs(State(shared): State<Arc<Shared>>) -> Answer {
    let now = shared.clock.now();
    let jobs = shared.jobs();
    let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
    let facts = shared
        .store
        .call(move |s| {
            let mut out = Vec::new();
            for name in &names {
                let last = s.recent_runs(Some(name), 1)?.into_iter().next();
                let running = s.lease_holder(name, now)?.is_some();
                out.push((last, running, s.queued_requests(name)?));
            }
            Ok(out)
        })
        .await?;
    let list: Vec<Value> = jobs
        .iter()
        .zip(facts)
        .map(|(j, (last, running, queued))| {
            let tz = j.timezone;
            json!({
                "name": j.name,
                "source": j.source,
                "schedule": j.schedule.as_ref().map(|s| s.text()),
                "timezone": tz.name(),
                "next_fire": j.schedule.as_ref().and_then(|s| s.next_after(now)).map(|t| t.with_timezone(&tz).to_rfc3339()),
                "running": running,
                "queued": queued,
                "last_run": last.map(|r| json!({
                    "id": r.id, "command": r.command, "status": r.status,
                    "started_at": r.started_at, "finished_at": r.finished_at, "message": r.message,
                })),
            })
        })
        .collect();
    Ok(Json(json!({ "jobs": list })))
}

/// Per month: the counts of the run that last synced it, records stored, failures.
pub(super) async fn months(State(shared): State<Arc<Shared>>, job: PathText) -> Answer {
    let job = job_of(&shared, &path_text(job)?)?;
    let name = job.name.clone();
    let rows = shared
        .store
        .call(move |s| s.month_rows(Some(&name)))
        .await?;
    let months: Vec<Value> = rows
        .into_iter()
        .map(|m| {
            json!({
                "month": m.month.to_string(), "run": m.run_id, "at": m.at,
                "counts": m.counts, "stored": m.stored, "error": m.error,
            })
        })
        .collect();
    Ok(Json(json!({ "job": job.name, "months": months })))
}

/// The body of `POST …/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunBody {
    month: String,
    #[serde(default)]
    employees: Vec<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    prune: bool,
}

impl RunBody {
    /// A rerun of `month`, of `employees` (everyone when empty).
    pub(super) fn new(month: String, employees: Vec<String>) -> RunBody {
        RunBody {
            month,
            employees,
            force: false,
            prune: false,
        }
    }
}

/// Checks and queues a run of `job`; its id. The daemon hears of it.
pub(super) async fn queue_checked(
    shared: &Shared,
    job: &str,
    body: RunBody,
) -> Result<i64, ApiError> {
    let job = job_of(shared, job)?;
    let request = checked(body)?;
    let (name, now) = (job.name.clone(), shared.clock.now());
    let id = shared
        .store
        .call(move |s| s.queue_request(&name, &request, now))
        .await?;
    tracing::info!(job = %job.name, run_request = id, "a run was requested; queued");
    // The daemon gone (shutting down): the request stays queued for its next start.
    let _ = shared.requested.send(job.name.clone());
    Ok(id)
}

/// Queues a rerun of one month (of some employees, when named): 202 with its id.
/// The body is read as JSON whatever its `Content-Type`: `curl -d` (README's
/// example) labels it a form.
pub(super) async fn request_run(
    State(shared): State<Arc<Shared>>,
    job: PathText,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let job = path_text(job)?;
    job_of(&shared, &job)?;
    let body = body.map_err(|e| {
        // Too large stays 413; every other unreadable body is a bad request.
        let status = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, format!("bad request body: {}", e.body_text()))
    })?;
    let body: RunBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("bad request body: not a run request in JSON: {e}"),
        )
    })?;
    let id = queue_checked(&shared, &job, body).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "run": id }))))
}

/// The body as a request, or a 400 naming what is wrong.
fn checked(body: RunBody) -> Result<RunRequest, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let month: Month = body
        .month
        .parse()
        .map_err(|e: crate::month::MonthParseError| bad(format!("month: {e}")))?;
    // Counted once repeats are dropped, as `rerun --employee` counts them.
    let mut employees = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for id in &body.employees {
        let id = crate::cli::employee_id(id).map_err(|e| bad(format!("employees: {e}")))?;
        if seen.insert(id.clone()) {
            employees.push(id);
        }
        if employees.len() > crate::cli::MAX_EMPLOYEES {
            return Err(bad(format!(
                "employees: more than {} different ones; at most {} at once",
                crate::cli::MAX_EMPLOYEES,
                crate::cli::MAX_EMPLOYEES
            )));
        }
    }
    Ok(RunRequest {
        month: month.to_string(),
        employees,
        force: body.force,
        prune: body.prune,
    })
}

/// A requested run: queued, running or done, with its run's counts and errors.
pub(super) async fn run(State(shared): State<Arc<Shared>>, id: PathText) -> Answer {
    let unknown = || ApiError(StatusCode::NOT_FOUND, "no such run".into());
    let id: i64 = path_text(id)?.parse().map_err(|_| unknown())?;
    let found = shared.store.call(move |s| request_with_run(s, id)).await?;
    let (request, run) = found.ok_or_else(unknown)?;
    Ok(Json(describe(request, run)))
}

type RunWithMonths = (crate::store::RunRow, Vec<crate::store::RunMonth>);

/// A requested run and, once it started, its run with its months.
pub(super) fn request_with_run(
    s: &crate::store::Store,
    id: i64,
) -> Result<Option<(RequestRow, Option<RunWithMonths>)>, crate::store::StoreError> {
    let Some(request) = s.request(id)? else {
        return Ok(None);
    };
    let run = match request.run_id.map(|run_id| s.run_row(run_id)) {
        Some(Ok(Some(r))) => {
            let months = s.run_months(r.id)?;
            Some((r, months))
        }
        Some(Err(e)) => return Err(e),
        _ => None,
    };
    Ok(Some((request, run)))
}

fn describe(request: RequestRow, run: Option<RunWithMonths>) -> Value {
    let run = run.map(|(r, months)| {
        let months: Vec<Value> = months
            .into_iter()
            .map(|m| json!({ "month": m.month, "counts": m.counts, "error": m.error }))
            .collect();
        json!({
            "id": r.id, "command": r.command, "status": r.status, "started_at": r.started_at,
            "finished_at": r.finished_at, "message": r.message, "months": months,
        })
    });
    json!({
        "id": request.id,
        "job": request.job,
        "state": request.state,
        "requested_at": request.requested_at,
        "month": request.request.month,
        "employees": request.request.employees,
        "force": request.request.force,
        "prune": request.request.prune,
        "run": run,
    })
}
