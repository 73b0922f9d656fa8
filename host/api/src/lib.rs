//! # omni-api: the HTTP API
//!
//! The routes of Omni's HTTP contract (`docs/api.md` at the repository's root: every route, its
//! roles, errors, streams and paging) — jobs, logs, artifacts, uploads, events, webhooks, plugins and operations — as
//! an axum [`Router`] built by [`router`] over an [`AppState`]. It owns request parsing, limits
//! and the mapping of every domain error to one `application/problem+json` answer ([`problem`]); it
//! knows nothing of how plugins run (`omni-runtime`), how jobs are kept (`omni-jobs` over an
//! `omni-store` backend) or how the server starts (the `omni` binary).
//!
//! # Layout
//! - [`problem`]: the error type every handler returns and its one mapping to HTTP.
//! - [`auth`]: the caller of each request (HTTP Basic or bearer token) and its roles per domain;
//!   every `/v1` handler takes a [`Caller`] and checks it before it reads or acts.
//! - [`jobs`]: `POST /v1/jobs`, `GET /v1/jobs`, `GET /v1/jobs/{id}`, `DELETE /v1/jobs/{id}`.
//! - [`logs`]: `GET /v1/jobs/{id}/logs`, pages or followed as server-sent events.
//! - [`artifacts`]: `GET /v1/jobs/{id}/artifacts` and the download of one, with ranges.
//! - [`provenance`]: `GET /v1/jobs/{id}/provenance` (an in-toto statement, SLSA provenance)
//!   and `GET /v1/jobs/{id}/render` (the job's objects rendered again by its recorded versions).
//! - [`uploads`]: `POST /v1/uploads` (a file for a domain's jobs, streamed, kept by sha256)
//!   and `GET /v1/uploads/{sha256}`.
//! - [`events`]: `GET /v1/events`, the job-change event stream as server-sent events (or, with
//!   `follow=false`, pages of the stored events).
//! - [`webhooks`]: `POST /v1/webhooks`, `GET /v1/webhooks`, `GET /v1/webhooks/{id}`,
//!   `DELETE /v1/webhooks/{id}` (delivery itself is `omni-webhooks`').
//! - [`plugins`]: `GET /v1/plugins`, `GET /v1/plugins/{task}`, `POST /v1/plugins/{task}/render`,
//!   `POST /v1/plugins/reload`.
//! - [`metrics`]: `GET /metrics` (Prometheus text) and every request's count and latency by
//!   route template.
//! - `origin`: where requests may come from (with auth off, a loopback `Host` only; no
//!   state-changing request from another site's page).
//! - [`openapi`]: the OpenAPI 3.1 document of all of these, derived from the handlers, at
//!   `GET /v1/openapi.json`, and Swagger UI over it at `/v1/swagger/` (both open).
//! - `/healthz` and `/readyz` here: ready means the store answers and the plugins directory
//!   was scanned; `/readyz` also shows each engine and whether it can take jobs now (an engine
//!   that cannot does not make the server unready: its jobs wait, the others run).

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use omni_engine::Engine;
use omni_jobs::JobService;
use omni_runtime::Registry;

pub mod artifacts;
pub mod auth;
pub mod events;
pub mod jobs;
pub mod logs;
pub mod metrics;
pub mod openapi;
mod origin;
pub mod plugins;
pub mod problem;
pub mod provenance;
pub mod streams;
pub mod types;
pub mod uploads;
pub mod versions;
pub mod webhooks;

pub use auth::{AuthConfig, AuthConfigError, Authenticator, Caller, ClientAddress, Role};
pub use events::EventsConfig;

pub use problem::Problem;
pub use streams::Streams;

/// The default limit on request bodies (1 MiB, as the API says).
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// The largest answer a listing or a page of log lines grows to unless configured: a page is cut
/// short before it (with a cursor to read on) rather than sent larger.
pub const DEFAULT_ANSWER_LIMIT: usize = 16 << 20;

/// How long a request may take to be answered unless configured (a stream's answer is its
/// head; the events that follow are not timed).
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The job service (with the store and the plugins).
    pub jobs: JobService,
    /// The plugin host's registry the job service uses (its files and their status).
    pub registry: Arc<Registry>,
    /// The Kubernetes namespace rendered objects go to.
    pub namespace: String,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// The engines jobs run on (for `/readyz`).
    pub engines: Vec<Arc<dyn Engine>>,
    /// How event streams poll and keep connections alive.
    pub events: EventsConfig,
    /// Who may call, and what they may do.
    pub auth: Arc<Authenticator>,
    /// The installed metrics recorder, rendered on `/metrics` (404 without one).
    pub metrics: Option<metrics::Metrics>,
    /// The open event and log streams: their cap per caller, and the signal that ends them.
    pub streams: Streams,
    /// How long a request may take to be answered (503 after it).
    pub request_timeout: std::time::Duration,
    /// The largest answer of a listing or a page of log lines, in bytes (a page is cut short
    /// before it; one item is always sent).
    pub answer_limit: usize,
    /// What registering a webhook checks beyond its fields (its destination).
    pub webhooks: omni_webhooks::Webhooks,
}

impl AppState {
    /// The state over `jobs`, whose plugins are `registry`'s, with the defaults: namespace
    /// `omni-jobs`, the default body, answer and time limits, no engines, the default event
    /// stream settings and stream cap, auth off, no metrics, and the default `[webhooks]` (no
    /// internal address allowed).
    pub fn new(jobs: JobService, registry: Arc<Registry>) -> Self {
        Self {
            jobs,
            registry,
            namespace: "omni-jobs".to_owned(),
            body_limit: DEFAULT_BODY_LIMIT,
            engines: Vec::new(),
            events: EventsConfig::default(),
            auth: Arc::new(Authenticator::disabled()),
            metrics: None,
            streams: Streams::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            answer_limit: DEFAULT_ANSWER_LIMIT,
            webhooks: omni_webhooks::Webhooks::default(),
        }
    }

    /// The loaded plugins.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
}

/// The API's routes over `state`.
pub fn router(state: AppState) -> Router {
    let body_limit = state.body_limit;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .nest("/v1/jobs", jobs::routes())
        .nest("/v1/uploads", uploads::routes())
        .nest("/v1/events", events::routes())
        .nest("/v1/webhooks", webhooks::routes())
        .nest("/v1/plugins", plugins::routes())
        .merge(openapi::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            origin::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.request_timeout,
            answer_within,
        ))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The process is alive (open: no credentials needed).
#[utoipa::path(
    operation_id = "healthz",
    get,
    path = "/healthz",
    tag = "operations",
    security(()),
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String))
)]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// How long `/readyz` waits for one engine's answer.
const ENGINE_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready: the store answers and the plugins directory was scanned; each engine's state is shown
/// (an engine that cannot take jobs now does not make the server unready). Open.
#[utoipa::path(
    operation_id = "readyz",
    get,
    path = "/readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Ready", body = openapi::Readiness),
        (status = 503, response = openapi::Unavailable),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    if !state.registry().is_scanned() {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready",
            "the plugins directory has not been scanned yet",
        )
        .into_response();
    }
    if let Err(error) = state.jobs.ping().await {
        return Problem::from_jobs(error).into_response();
    }
    let engines = futures::future::join_all(state.engines.iter().map(|engine| async move {
        let checked = tokio::time::timeout(ENGINE_CHECK, engine.check()).await;
        let error = match checked {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!("no answer within {ENGINE_CHECK:?}")),
        };
        serde_json::json!({
            "name": engine.name(),
            "kind": engine.kind(),
            "arches": engine.arches(),
            "max_running": engine.max_running(),
            "ready": error.is_none(),
            "error": error,
            "warnings": engine.warnings(),
        })
    }))
    .await;
    axum::Json(serde_json::json!({
        "status": "ready",
        "store": state.jobs.store_kind(),
        "engines": engines,
    }))
    .into_response()
}

/// Answers 503 when the handler has not answered within `timeout`: a request that does not
/// stream (or a slow client's body) holds no task and no connection beyond it. A stream's
/// handler answers at once; the events that follow are the body's and are not timed.
async fn answer_within(
    State(timeout): State<std::time::Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // An upload's handler reads its body for as long as it flows (with a timeout of its own
    // between bytes): a large file takes longer than any request should.
    if request.method() == axum::http::Method::POST && request.uri().path() == uploads::UPLOAD_PATH
    {
        return next.run(request).await;
    }
    // A Uri's clone shares its bytes: nothing is copied unless the request times out.
    let uri = request.uri().clone();
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                route = uri.path(),
                ?timeout,
                "a request was not answered in time"
            );
            let mut problem = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request timeout",
                format!(
                    "the request was not answered within {timeout:?} ([http] request_timeout); retry later"
                ),
            );
            problem.retry_after = Some(problem::RETRY_AFTER_SECS);
            problem.into_response()
        }
    }
}

/// Cuts a page short before its answer would pass `limit` bytes of JSON (at least one item
/// stays): answers the cursor to read on from, the key of the last item kept, or `next` (the
/// store's) when every item fits. `keys` are the items' cursors, in order.
pub(crate) fn cut_to_fit<T: serde::Serialize, K: Copy>(
    items: &mut Vec<T>,
    keys: &[K],
    limit: usize,
    next: Option<K>,
) -> Option<K> {
    /// Counts what is written, keeps nothing.
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    for (i, item) in items.iter().enumerate() {
        // An item that does not serialize fails the answer later, where it is sent.
        let _ = serde_json::to_writer(&mut counter, item);
        if i > 0 && counter.0 > limit {
            items.truncate(i);
            return Some(keys[i - 1]);
        }
    }
    next
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
