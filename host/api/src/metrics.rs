//! `GET /metrics` (Prometheus text) and the HTTP requests' metrics.
//!
//! The crates below record through the `metrics` facade without knowing where the numbers go;
//! [`Metrics::install`] makes metrics-exporter-prometheus's recorder the process's one, gives it
//! every crate's help texts and explicit histogram buckets, and keeps the handle that renders it.
//! Without an installed recorder (the API's tests) recording does nothing and `/metrics` is 404.
//!
//! Every metric counts what this replica did: with several replicas, sum them in the query.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

use crate::{AppState, Problem};

/// Counter of HTTP requests, by `method`, `route` and `status`.
pub const HTTP_REQUESTS: &str = "omni_http_requests_total";
/// Histogram of HTTP requests' time to the answer's head, by `method` and `route`.
pub const HTTP_SECONDS: &str = "omni_http_request_duration_seconds";
/// Counter: wrong passwords and tokens, by `credential` (`password` or `token`).
pub const SIGN_IN_FAILURES: &str = "omni_sign_in_failures_total";
/// Counter: sign-ins answered 429 because the name or address failed too often.
pub const SIGN_IN_THROTTLED: &str = "omni_sign_in_throttled_total";

/// The buckets (upper bounds, in seconds) of every histogram, all of which are latencies: from
/// a store read on one machine (sub-millisecond) to a plugin call near its deadline. Set
/// explicitly, as the exporter would otherwise render summaries, which cannot be aggregated
/// across replicas.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often the recorder's histograms are drained when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// The installed recorder's handle. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    /// Installs the Prometheus recorder as the process's global one, registers every crate's
    /// help texts, and spawns its upkeep (call it in a Tokio runtime, before the work it should
    /// see starts). A process has one recorder: a second call (a second server in one process,
    /// as tests run them) shares the first one's.
    ///
    /// # Errors
    /// When another recorder than this one is installed already.
    pub fn install() -> Result<Self, BuildError> {
        static INSTALLED: std::sync::Mutex<Option<PrometheusHandle>> = std::sync::Mutex::new(None);
        let mut installed = INSTALLED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(handle) = installed.as_ref() {
            return Ok(Metrics {
                handle: handle.clone(),
            });
        }
        let handle = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)?
            .install_recorder()?;
        describe();
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP);
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
        *installed = Some(handle.clone());
        Ok(Metrics { handle })
    }

    /// Everything recorded so far, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// Registers the help texts of every Omni metric with the installed recorder.
fn describe() {
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests this replica answered, by method, route template (unmatched for none) \
         and status."
    );
    metrics::describe_histogram!(
        HTTP_SECONDS,
        metrics::Unit::Seconds,
        "Time from an HTTP request to the head of its answer, by method and route template (for \
         streams, SSE and followed logs, the time to the stream's start)."
    );
    metrics::describe_counter!(
        SIGN_IN_FAILURES,
        "Wrong passwords and bearer tokens, by credential (password or token)."
    );
    metrics::describe_counter!(
        SIGN_IN_THROTTLED,
        "Sign-ins answered 429 before their credentials were checked: the user name or the \
         client address failed too often."
    );
    omni_runtime::metrics::describe();
    omni_store::timed::describe();
    omni_jobs::metrics::describe();
    omni_webhooks::describe_metrics();
}

/// `GET /metrics`.
#[utoipa::path(
    operation_id = "metrics",
    get,
    path = "/metrics",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "This replica's metrics in the Prometheus text format",
         content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 404, response = crate::openapi::NotFound),
    )
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(metrics) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics.render(),
        )
            .into_response(),
        None => Problem::new(
            StatusCode::NOT_FOUND,
            "not found",
            "metrics are not enabled on this server",
        )
        .into_response(),
    }
}

/// A request method as a metrics label: one of the standard methods, or `other`, so that made-up
/// methods (which anyone can send, without credentials) cannot add series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ]
    .iter()
    .find(|known| *known == method)
    .map_or("other", |known| known.as_str())
}

/// Middleware: counts and times every request by its method (see [`method_label`]) and route
/// template (never its path, whose ids would make a series per job): labels from fixed sets.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(HTTP_SECONDS, "method" => method, "route" => route.clone())
        .record(start.elapsed());
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}
