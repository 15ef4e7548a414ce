//! The daemon's HTTP listener (README "The daemon's HTTP API"): `/healthz`
//! without a token; the JSON API under `/api/v1` with one. Requested runs are
//! queued in SQLite and handed to the daemon, which starts them behind the
//! job's run in progress (never beside it: the job lease).

mod api;
mod auth;
mod callbacks;
pub mod config;
mod metrics;
mod page;
mod session;
mod web;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::mpsc;

pub use auth::Auth;
pub use config::ServerConfig;
pub use metrics::Metrics;

use crate::clock::Clock;
use crate::schedule::Schedule;
use crate::store::Store;

/// The largest request body taken: room for a run request of the most
/// employees allowed (1,000 ids of up to 64 bytes), little more.
pub const MAX_BODY: usize = 128 * 1024;
/// How long one request may take, its body included, before a 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the API shows of a job the daemon runs.
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub name: String,
    pub source: String,
    /// `None`: run only when requested.
    pub schedule: Option<Schedule>,
    pub timezone: chrono_tz::Tz,
    /// A metered source's monthly budget of calls.
    pub budget: Option<u64>,
    /// Whether the job has `[events]`.
    pub events: bool,
}

/// The jobs as the daemon runs them; replaced on a reload.
pub type Jobs = Arc<RwLock<Arc<Vec<JobInfo>>>>;

/// What every handler shares.
pub struct Shared {
    pub store: Store,
    pub auth: Auth,
    pub jobs: Jobs,
    /// The name of a job with a newly queued request, for the daemon.
    pub requested: mpsc::UnboundedSender<String>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub sessions: session::Sessions,
    /// `public_url`'s origin (`https://host[:port]`): behind a reverse proxy
    /// that sends its upstream address as `Host`, the page's forms come from
    /// there.
    pub public_origin: Option<String>,
    /// When `/healthz` last proved the database writable: anyone may ask, so
    /// it writes at most once a second.
    pub healthy_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// The jobs' event callbacks (DingTalk HTTP push, WeCom callbacks).
    pub callbacks: crate::events::CallbackRoutes,
}

impl Shared {
    /// A job's timezone; Beijing time for a job no longer configured.
    fn timezone_of(&self, job: &str) -> chrono_tz::Tz {
        self.jobs()
            .iter()
            .find(|j| j.name == job)
            .map_or(chrono_tz::Asia::Shanghai, |j| j.timezone)
    }

    fn jobs(&self) -> Arc<Vec<JobInfo>> {
        // A panicked writer left a whole Vec behind: still readable.
        self.jobs
            .read()
            .map_or_else(|e| e.into_inner().clone(), |j| j.clone())
    }
}

/// An error answer: `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "the API could not read the database");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("database: {e}"))
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/jobs", get(api::jobs))
        .route("/jobs/{job}/months", get(api::months))
        .route("/jobs/{job}/runs", post(api::request_run))
        .route("/runs/{id}", get(api::run))
        .method_not_allowed_fallback(api::method_not_allowed)
        .fallback(api::not_found)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    let metrics =
        Router::new()
            .route("/metrics", get(api::metrics))
            .layer(middleware::from_fn_with_state(
                shared.clone(),
                require_token,
            ));
    Router::new()
        .route("/", get(web::index))
        .route("/login", post(web::login))
        .route("/logout", post(web::logout))
        .route("/jobs/{job}/rerun", post(web::rerun))
        .route("/runs/{id}", get(web::run))
        .route("/healthz", get(api::healthz))
        .route(
            "/callbacks/{vendor}/{job}",
            get(callbacks::callback).post(callbacks::callback),
        )
        .merge(metrics)
        .nest("/api/v1", api)
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(time_limit))
        .with_state(shared)
}

/// 401 unless the request carries the token.
async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if shared.auth.accepts_header(header) {
        return next.run(request).await;
    }
    let mut answer = ApiError(
        StatusCode::UNAUTHORIZED,
        "a valid token is required: Authorization: Bearer <token>".into(),
    )
    .into_response();
    answer.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    answer
}

/// A request slower than [`REQUEST_TIMEOUT`] (a body trickling in) is cut off.
async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(answer) => answer,
        Err(_) => ApiError(
            StatusCode::REQUEST_TIMEOUT,
            "the request took too long".into(),
        )
        .into_response(),
    }
}

/// Binds the listener; an address in use or not allowed is an error naming it.
pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, std::io::Error> {
    tokio::net::TcpListener::bind(listen).await
}

/// Serves until `stop` resolves; connections still open then are dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), std::io::Error> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(stop)
        .await
}
