//! # omni-api: the HTTP API
//!
//! The routes of `../shared/API.md` that exist so far — jobs, plugins and health — as an axum
//! [`Router`] built by [`router`] over an [`AppState`]. It owns request parsing, limits and the
//! mapping of every domain error to one `application/problem+json` answer ([`problem`]); it
//! knows nothing of how plugins run (`omni-runtime`), how jobs are kept (`omni-jobs` over an
//! `omni-store` backend) or how the server starts (the `omni` binary).
//!
//! # Layout
//! - [`problem`]: the error type every handler returns and its one mapping to HTTP.
//! - [`jobs`]: `POST /v1/jobs`, `GET /v1/jobs`, `GET /v1/jobs/{id}`, `DELETE /v1/jobs/{id}`.
//! - [`plugins`]: `GET /v1/plugins`, `GET /v1/plugins/{task}`, `POST /v1/plugins/{task}/render`,
//!   `POST /v1/plugins/reload`.
//! - `/healthz` and `/readyz` here.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use omni_jobs::JobService;
use omni_runtime::Registry;

pub mod jobs;
pub mod plugins;
pub mod problem;

pub use problem::Problem;

/// The default limit on request bodies (1 MiB, as the API says).
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The job service (with the store and the plugins).
    pub jobs: JobService,
    /// The Kubernetes namespace rendered objects go to.
    pub namespace: String,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
}

impl AppState {
    /// The loaded plugins.
    pub fn registry(&self) -> &Arc<Registry> {
        self.jobs.registry()
    }
}

/// The API's routes over `state`.
pub fn router(state: AppState) -> Router {
    let body_limit = state.body_limit;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest("/v1/jobs", jobs::routes())
        .nest("/v1/plugins", plugins::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if !state.registry().is_scanned() {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready",
            "the plugins directory has not been scanned yet",
        )
        .into_response();
    }
    match state.jobs.store().ping().await {
        Ok(()) => "ready\n".into_response(),
        Err(error) => Problem::from_store(error).into_response(),
    }
}

async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not found", "no such route")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        "the route does not accept this method",
    )
}
