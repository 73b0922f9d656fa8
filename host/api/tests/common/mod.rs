//! What the API's test files share: an app over real plugins and an embedded store, and one
//! call through the router (`oneshot`).

#![allow(dead_code)]

pub mod server;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use omni_api::{AppState, router};
use serde_json::Value;
use tower::ServiceExt;

pub fn app(plugins: &[&str]) -> (omni_test_support::Dirs, axum::Router) {
    let (dir, app, _) = app_with_jobs(plugins);
    (dir, app)
}

/// The app and the job service behind it (to move jobs as an engine would).
pub fn app_with_jobs(
    plugins: &[&str],
) -> (omni_test_support::Dirs, axum::Router, omni_jobs::JobService) {
    let (dir, jobs) = omni_test_support::job_service(plugins);
    let state = AppState::new(jobs.clone(), std::sync::Arc::clone(&dir.registry));
    (dir, router(state), jobs)
}

pub async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Body>,
) -> (StatusCode, String, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let response = app
        .clone()
        .oneshot(request.body(body.unwrap_or_else(Body::empty)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, content_type, value)
}

pub fn json_body(value: &Value) -> Option<Body> {
    Some(Body::from(value.to_string()))
}

/// One call with headers of its own; answers status, headers and the body as JSON.
pub async fn call_with(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Body>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(body.unwrap_or_else(Body::empty)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, value)
}
