//! `/callbacks/<vendor>/<job>`: where DingTalk's HTTP push and WeCom's
//! callbacks arrive (README "Re-pulls on change"). No token: each request is
//! verified by its signature against the job's `[events]` secrets, in the
//! source's own handler, before anything is recorded.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::events::CallbackRequest;

pub(super) async fn callback(
    State(shared): State<Arc<Shared>>,
    Path((vendor, job)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let route = shared
        .callbacks
        .read()
        .ok()
        .and_then(|routes| routes.get(&(vendor.clone(), job.clone())).cloned());
    let Some(route) = route else {
        // The path is anyone's: cleaned so it cannot forge a log line.
        let (vendor, job) = (crate::text::clean(&vendor), crate::text::clean(&job));
        tracing::warn!(%vendor, %job, "a callback for a job without such [events]; refused");
        return (StatusCode::NOT_FOUND, "no such callback\n").into_response();
    };
    let reply = (route.handler)(CallbackRequest { method, uri, body }).await;
    (
        reply.status,
        [(header::CONTENT_TYPE, reply.content_type)],
        reply.body,
    )
        .into_response()
}
