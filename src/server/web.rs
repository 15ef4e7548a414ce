//! The status page's routes: `/` (the login form, or the page), `/login`,
//! `/logout`, `/jobs/{job}/rerun` (the button) and `/runs/{id}`. Forms that
//! change anything need the session cookie (`SameSite=Strict`), the session's
//! CSRF token and, when the browser sends one, an `Origin` of this host.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::api::{queue_checked, RunBody};
use super::page::{self, JobView, StatusView};
use super::session::{clear_cookie, session_id, set_cookie};
use super::{ApiError, Shared};

/// A wrong token on the login form waits this long: guessing stays slow.
const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(500);

/// The session's CSRF token, when the request carries a live session.
fn session(shared: &Shared, headers: &HeaderMap) -> Option<(String, String)> {
    let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok());
    let id = session_id(cookie)?;
    let csrf = shared.sessions.csrf(id)?;
    Some((id.to_string(), csrf))
}

/// Why a form is refused (403).
fn forbidden(why: &str) -> Response {
    let html = format!(
        "<p>{}</p><p><a href=\"/\">Sign in again</a></p>",
        page::esc(why)
    );
    (StatusCode::FORBIDDEN, Html(html)).into_response()
}

/// The session id, unless the form did not come from this page: it needs a
/// live session, its CSRF token, and no foreign `Origin` (one of this `Host`
/// or of `public_url` is not foreign).
fn same_site_form(
    shared: &Shared,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<String, &'static str> {
    let Some((id, expected)) = session(shared, headers) else {
        return Err("Your session has ended.");
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let foreign = origin.is_some_and(|o| {
        let this_host = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            == Some(host);
        !this_host && shared.public_origin.as_deref() != Some(o)
    });
    if foreign || !shared.auth.same(csrf, &expected) {
        return Err("This form did not come from the status page.");
    }
    Ok(id)
}

pub(super) async fn index(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some((_, csrf)) = session(&shared, &headers) else {
        return Html(page::login(false)).into_response();
    };
    match status_view(&shared, csrf).await {
        Ok(view) => Html(page::status(&view)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn status_view(shared: &Shared, csrf: String) -> Result<StatusView, ApiError> {
    let jobs = shared.jobs();
    let now = shared.clock.now();
    let names: Vec<(String, bool)> = jobs.iter().map(|j| (j.name.clone(), j.events)).collect();
    let (facts, runs, requests) = shared
        .store
        .call(move |s| {
            let mut facts = Vec::new();
            for (name, events) in &names {
                let mut months = s.month_rows(Some(name))?;
                months.truncate(12);
                let events = match events {
                    true => Some(page::EventsView {
                        link: s.event_link(name)?,
                        waiting: s.dirty_count(name)?,
                        received: s.event_counts(name)?,
                    }),
                    false => None,
                };
                facts.push((
                    months,
                    s.lease_holder(name, now)?.is_some(),
                    s.queued_requests(name)?,
                    events,
                ));
            }
            Ok((facts, s.recent_runs(None, 15)?, s.open_requests(50)?))
        })
        .await?;
    let views = jobs
        .iter()
        .zip(facts)
        .map(|(j, (months, running, queued, events))| JobView {
            name: j.name.clone(),
            source: j.source.clone(),
            schedule: j.schedule.as_ref().map(|s| s.text().to_string()),
            timezone: j.timezone,
            next_fire: j.schedule.as_ref().and_then(|s| s.next_after(now)),
            running,
            queued,
            months,
            events,
        })
        .collect();
    Ok(StatusView {
        jobs: views,
        runs: runs
            .into_iter()
            .map(|r| {
                let tz = shared.timezone_of(&r.job);
                (r, tz)
            })
            .collect(),
        requests,
        csrf,
    })
}

#[derive(Deserialize)]
pub(super) struct Login {
    token: String,
}

pub(super) async fn login(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    if !shared.auth.accepts(&form.token) {
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        return (StatusCode::UNAUTHORIZED, Html(page::login(true))).into_response();
    }
    let (id, _) = shared.sessions.open();
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    (
        [(header::SET_COOKIE, set_cookie(&id, https))],
        Redirect::to("/"),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct Csrf {
    csrf: String,
}

pub(super) async fn logout(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<Csrf>,
) -> Response {
    match same_site_form(&shared, &headers, &form.csrf) {
        Ok(id) => {
            shared.sessions.close(&id);
            ([(header::SET_COOKIE, clear_cookie())], Redirect::to("/")).into_response()
        }
        Err(why) => forbidden(why),
    }
}

#[derive(Deserialize)]
pub(super) struct RerunForm {
    csrf: String,
    month: String,
    #[serde(default)]
    employees: String,
}

/// The "rerun this month" button: queues the run, then shows it.
pub(super) async fn rerun(
    State(shared): State<Arc<Shared>>,
    Path(job): Path<String>,
    headers: HeaderMap,
    Form(form): Form<RerunForm>,
) -> Response {
    if let Err(why) = same_site_form(&shared, &headers, &form.csrf) {
        return forbidden(why);
    }
    let employees = form
        .employees
        .split(|c: char| c == ',' || c == '，' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let body = RunBody::new(form.month, employees);
    match queue_checked(&shared, &job, body).await {
        Ok(id) => Redirect::to(&format!("/runs/{id}")).into_response(),
        Err(ApiError(status, message)) => (
            status,
            Html(format!(
                "<p>{}</p><p><a href=\"/\">Back</a></p>",
                page::esc(&message)
            )),
        )
            .into_response(),
    }
}

/// One requested run, for a signed-in browser.
pub(super) async fn run(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if session(&shared, &headers).is_none() {
        return Redirect::to("/").into_response();
    }
    let Ok(id) = id.parse::<i64>() else {
        return (
            StatusCode::NOT_FOUND,
            Html("<p>No such run.</p>".to_string()),
        )
            .into_response();
    };
    let found = shared
        .store
        .call(move |s| super::api::request_with_run(s, id))
        .await;
    match found {
        Ok(Some((request, run))) => {
            let tz = shared.timezone_of(&request.job);
            Html(page::run(&request, run.as_ref(), tz)).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Html("<p>No such run.</p>".to_string()),
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
