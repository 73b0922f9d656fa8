//! The plugin routes through the router (`oneshot`), with the real components and templates.

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use common::{app, call, json_body};
use omni_api::DEFAULT_BODY_LIMIT;
use serde_json::json;

#[tokio::test]
async fn lists_and_shows_the_loaded_plugins() {
    let (_dir, app) = app(&["iso", "rpm", "srpm"]);
    let (status, _, list) = call(&app, "GET", "/v1/plugins", None).await;
    assert_eq!(status, StatusCode::OK);
    let tasks: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["task"].as_str().unwrap())
        .collect();
    assert_eq!(tasks, ["iso", "rpm", "srpm"]);
    let (status, _, one) = call(&app, "GET", "/v1/plugins/srpm", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["status"], "ready");
    assert_eq!(one["params_schema"]["additionalProperties"], false);
    assert_eq!(one["digest"].as_str().unwrap().len(), 64);
    let (status, content_type, problem) = call(&app, "GET", "/v1/plugins/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["status"], 404);
    assert_eq!(problem["detail"], "no plugin is loaded for task \"nope\"");
}

#[tokio::test]
async fn renders_a_job_for_the_requested_arch() {
    let (_dir, app) = app(&["srpm"]);
    let body = json!({"params": {"spec": "Name: hello\n"}, "arch": "aarch64"});
    let (status, _, rendered) =
        call(&app, "POST", "/v1/plugins/srpm/render", json_body(&body)).await;
    assert_eq!(status, StatusCode::OK, "{rendered}");
    let job = rendered["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "Job")
        .unwrap();
    assert_eq!(job["name"], rendered["primary"]);
    assert_eq!(
        job["body"]["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/arch"],
        "arm64"
    );
    assert_eq!(job["body"]["metadata"]["namespace"], "omni-jobs");
    assert_eq!(
        job["body"]["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "omni"
    );
}

#[tokio::test]
async fn bad_params_are_422_with_field_errors_under_params() {
    let (_dir, app) = app(&["srpm", "iso"]);
    let body = json!({"params": {"spec": "Name: x\n", "colour": "red"}});
    let (status, _, problem) =
        call(&app, "POST", "/v1/plugins/srpm/render", json_body(&body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["path"], "/params/colour");
    let body = json!({"params": {"mode": "release", "version": "24.03-LTS", "packages": []}});
    let (status, _, problem) = call(&app, "POST", "/v1/plugins/iso/render", json_body(&body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["path"], "/params/packages");
}

/// A Python plugin (componentize-py) whose `validate` raises field errors: CPython asks WASI for
/// its preopened directories while it handles the exception, gets none, and the rejection is a
/// 422 with the fields, on render and on submission (not a 500 for a trapped plugin).
#[tokio::test]
async fn a_python_plugin_rejecting_params_is_a_422_with_its_fields() {
    let (_dir, app) = app(&["pyfixture"]);
    let render = "/v1/plugins/pyfixture/render";
    let body = json!({"params": {"behaviour": "fly", "colour": "red"}});
    let (status, _, problem) = call(&app, "POST", render, json_body(&body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let paths: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/params/behaviour", "/params/colour"]);
    let body = json!({"service": "obs", "task": "pyfixture", "params": {"count": 3}});
    let (status, _, problem) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["path"], "/params/behaviour");
    assert_eq!(problem["errors"][0]["message"], "missing field");
    let body = json!({"params": {"behaviour": "behave"}});
    let (status, _, rendered) = call(&app, "POST", render, json_body(&body)).await;
    assert_eq!(status, StatusCode::OK, "{rendered}");
}

#[tokio::test]
async fn bad_requests_get_the_right_status() {
    let (_dir, app) = app(&["srpm"]);
    let render = "/v1/plugins/srpm/render";
    let (status, _, p) = call(&app, "POST", render, Some(Body::from("{\"params\": {"))).await;
    assert_eq!(
        (status, p["title"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid JSON"))
    );
    let (status, _, _) = call(&app, "POST", render, json_body(&json!({"params": 3}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, p) = call(
        &app,
        "POST",
        render,
        json_body(&json!({"params": {}, "extra": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("unknown field `extra`"),
        "{p}"
    );
    let (status, _, p) = call(
        &app,
        "POST",
        render,
        json_body(&json!({"params": {}, "domain": "Bad_Domain"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(p["errors"][0]["path"], "/domain");
    let (status, _, p) = call(
        &app,
        "POST",
        render,
        json_body(&json!({"params": {"spec": "x"}, "arch": "sparc"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p["errors"][0]["path"], "/arch");
    let big = json!({"params": {"spec": "x".repeat(DEFAULT_BODY_LIMIT + 1)}});
    let (status, _, p) = call(&app, "POST", render, json_body(&big)).await;
    assert_eq!(
        (status, p["title"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body too large"))
    );
    let (status, _, _) = call(
        &app,
        "POST",
        "/v1/plugins/nope/render",
        json_body(&json!({"params": {}})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&app, "GET", render, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, content_type, _) = call(&app, "GET", "/v2/nothing", None).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );
}

#[tokio::test]
async fn a_crashing_plugin_is_a_500_naming_it_and_the_server_goes_on() {
    let (_dir, app) = app(&["hostile", "srpm"]);
    let body = json!({"params": {"behaviour": "panic"}});
    let (status, _, p) = call(&app, "POST", "/v1/plugins/hostile/render", json_body(&body)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .starts_with("plugin hostile@0.1.0 panicked"),
        "{p}"
    );
    let body = json!({"params": {"spec": "Name: x\n"}});
    let (status, _, _) = call(&app, "POST", "/v1/plugins/srpm/render", json_body(&body)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn health_readiness_and_reload() {
    let (dir, app) = app(&["srpm"]);
    assert_eq!(call(&app, "GET", "/healthz", None).await.0, StatusCode::OK);
    assert_eq!(call(&app, "GET", "/readyz", None).await.0, StatusCode::OK);
    std::fs::remove_file(dir.plugins.path().join("srpm.wasm")).unwrap();
    let (status, _, list) = call(&app, "POST", "/v1/plugins/reload", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([]));
    assert_eq!(
        call(&app, "GET", "/v1/plugins/srpm", None).await.0,
        StatusCode::NOT_FOUND
    );
}
