//! Where requests may come from (`docs/api.md`, "Origins"): with auth off only loopback names
//! in `Host` (a page rebinding its own name to 127.0.0.1 gets 421), and no state-changing request
//! from another site's page (403), auth on or off. Requests without these headers, as curl and
//! the `omni` client send them, pass.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{call_with, json_body};
use omni_api::auth::{AuthConfig, TokenConfig};
use omni_api::{AppState, Authenticator, Role, router};
use serde_json::json;
use sha2::{Digest, Sha256};

const SPEC: &str = "Name: hello\nVersion: 1.0\nRelease: 1\nSummary: hi\nLicense: MIT\nBuildArch: noarch\n%description\nhi\n%files\n";

fn submission() -> serde_json::Value {
    json!({"service": "t", "task": "srpm", "params": {"spec": SPEC}})
}

#[tokio::test]
async fn with_auth_off_only_loopback_hosts_are_served() {
    let (_dirs, app) = common::app(&["srpm"]);
    for host in [
        "attacker.example",
        "attacker.example:8080",
        "localhost.attacker.example",
        "10.1.2.3:8080",
        "[::ffff:127.0.0.1]:8080",
        "not a host",
    ] {
        for (method, uri) in [("GET", "/v1/jobs"), ("GET", "/v1/events?follow=false")] {
            let (status, _, problem) = call_with(&app, method, uri, &[("host", host)], None).await;
            assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host} {uri}");
            assert_eq!(problem["status"], 421, "{problem}");
        }
        let (status, _, _) = call_with(
            &app,
            "POST",
            "/v1/jobs",
            &[("host", host)],
            json_body(&submission()),
        )
        .await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
    for host in [
        "127.0.0.1:8080",
        "localhost:8080",
        "localhost",
        "[::1]:8080",
        "ui.localhost:8080",
    ] {
        let (status, _, page) = call_with(&app, "GET", "/v1/jobs", &[("host", host)], None).await;
        assert_eq!(status, StatusCode::OK, "{host}: {page}");
    }
    // The request target's authority when there is no Host (HTTP/2's `:authority`).
    let (status, _, _) = call_with(&app, "GET", "http://attacker.example/v1/jobs", &[], None).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    let (status, _, _) = call_with(&app, "GET", "http://127.0.0.1:8080/v1/jobs", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    // No Host at all (not a browser): served.
    let (status, _, _) = call_with(&app, "GET", "/v1/jobs", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    // Nothing was made by the refused submissions.
    let (_, _, page) = call_with(&app, "GET", "/v1/jobs", &[], None).await;
    assert_eq!(page["items"], json!([]), "{page}");
}

#[tokio::test]
async fn state_changing_requests_from_another_origin_are_refused() {
    let (_dirs, app) = common::app(&["srpm"]);
    let host = ("host", "127.0.0.1:8080");
    for origin in [
        "http://attacker.example",
        "http://127.0.0.1:9999",
        "http://localhost:8080",
        "null",
        "file://",
    ] {
        let (status, _, problem) = call_with(
            &app,
            "POST",
            "/v1/jobs",
            &[host, ("origin", origin)],
            json_body(&submission()),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {problem}");
        assert_eq!(problem["title"], "cross-origin request", "{problem}");
        let (status, _, _) = call_with(
            &app,
            "POST",
            "/v1/webhooks",
            &[host, ("origin", origin)],
            json_body(&json!({"url": "http://127.0.0.1:1/h", "events": ["*"], "secret": "s"})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}");
        // Reads are not refused: a page cannot read the answer across origins anyway.
        let (status, _, _) =
            call_with(&app, "GET", "/v1/jobs", &[host, ("origin", origin)], None).await;
        assert_eq!(status, StatusCode::OK, "{origin}");
    }
    let (_, _, page) = call_with(&app, "GET", "/v1/jobs", &[], None).await;
    assert_eq!(page["items"], json!([]), "nothing was made: {page}");
    // The server's own origin, and no origin (curl, the client), may submit.
    for headers in [
        vec![host, ("origin", "http://127.0.0.1:8080")],
        vec![host],
        vec![],
    ] {
        let (status, _, job) =
            call_with(&app, "POST", "/v1/jobs", &headers, json_body(&submission())).await;
        assert_eq!(status, StatusCode::CREATED, "{headers:?}: {job}");
    }
}

#[tokio::test]
async fn with_auth_on_any_host_is_served_but_not_another_origin() {
    let (dirs, jobs) = omni_test_support::job_service(&["srpm"]);
    let token = "origin-test-token";
    let config = AuthConfig {
        tokens: vec![TokenConfig {
            name: "submitter".into(),
            sha256: hex::encode(Sha256::digest(token.as_bytes())),
            roles: [("default".to_owned(), Role::Submitter)].into(),
        }],
        ..AuthConfig::default()
    };
    let state = AppState {
        auth: Arc::new(Authenticator::new(&config).unwrap()),
        ..AppState::new(jobs, Arc::clone(&dirs.registry))
    };
    let app = router(state);
    let bearer = format!("Bearer {token}");
    let auth = ("authorization", bearer.as_str());
    let host = ("host", "omni.example.com");
    let (status, _, _) = call_with(&app, "GET", "/v1/jobs", &[auth, host], None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call_with(
        &app,
        "POST",
        "/v1/jobs",
        &[auth, host, ("origin", "https://attacker.example")],
        json_body(&submission()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, job) = call_with(
        &app,
        "POST",
        "/v1/jobs",
        &[auth, host, ("origin", "https://omni.example.com")],
        json_body(&submission()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
}
