//! # omni-api: the HTTP API
//!
//! The routes of `../shared/API.md` that exist so far — plugins and health — as an axum
//! [`Router`] built by [`router`] over an [`AppState`]. It owns request parsing, limits and the
//! mapping of every domain error to one `application/problem+json` answer ([`problem`]); it
//! knows nothing of how plugins run (that is `omni-runtime`) or how the server starts (that is
//! the `omni` binary).
//!
//! # Layout
//! - [`problem`]: the error type every handler returns and its one mapping to HTTP.
//! - [`plugins`]: `GET /v1/plugins`, `GET /v1/plugins/{task}`, `POST /v1/plugins/{task}/render`,
//!   `POST /v1/plugins/reload`.
//! - `/healthz` and `/readyz` here.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use omni_runtime::Registry;

pub mod plugins;
pub mod problem;

pub use problem::Problem;

/// The default limit on request bodies (1 MiB, as the API says).
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The loaded plugins.
    pub registry: Arc<Registry>,
    /// The Kubernetes namespace rendered objects go to.
    pub namespace: String,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
}

/// The API's routes over `state`.
pub fn router(state: AppState) -> Router {
    let body_limit = state.body_limit;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
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
    if state.registry.is_scanned() {
        "ready\n".into_response()
    } else {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready",
            "the plugins directory has not been scanned yet",
        )
        .into_response()
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
