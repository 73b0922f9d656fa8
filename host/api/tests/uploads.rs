//! Uploads through the router (`oneshot`): a file kept by its sha256 once per domain, sent
//! again and kept longer; every bad upload refused with nothing kept (wrong sha256, too large,
//! bad domain or query); jobs naming uploads of their own domain only; and the roles.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{call, json_body};
use http_body_util::BodyExt;
use omni_api::auth::{AuthConfig, TokenConfig};
use omni_api::{AppState, Authenticator, Role, router};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// An app whose uploads are at most 1 MiB, and its job service.
fn app() -> (omni_test_support::Dirs, axum::Router, omni_jobs::JobService) {
    app_with(None)
}

fn app_with(
    auth: Option<AuthConfig>,
) -> (omni_test_support::Dirs, axum::Router, omni_jobs::JobService) {
    let (dirs, jobs) = omni_test_support::job_service(&["srpm"]);
    let jobs = jobs.with_upload_policy(omni_jobs::UploadPolicy {
        max_mib: 1,
        ..Default::default()
    });
    let mut state = AppState::new(jobs.clone(), Arc::clone(&dirs.registry));
    if let Some(auth) = auth {
        state.auth = Arc::new(Authenticator::new(&auth).unwrap());
    }
    (dirs, router(state), jobs)
}

/// Sends `bytes` as a raw body; answers status, headers and the answer as JSON.
async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    bytes: Vec<u8>,
    token: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(bytes)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// What the artifact store holds under `uploads/` and `staging/`.
async fn stored_uploads(jobs: &omni_jobs::JobService) -> Vec<String> {
    let store = jobs.artifact_store();
    let mut keys = Vec::new();
    for prefix in ["uploads", "staging"] {
        keys.extend(store.list(prefix).await.unwrap().into_iter().map(|o| o.key));
    }
    keys
}

#[tokio::test]
async fn an_upload_is_kept_by_its_sha256_once_per_domain() {
    let (_dirs, app, jobs) = app();
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sha = sha256(&bytes);

    // Without its sha256: hashed while it streams, then kept under it.
    let (status, headers, made) =
        send(&app, "POST", "/v1/uploads?domain=a", bytes.clone(), None).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["sha256"], sha.as_str());
    assert_eq!(made["size"], bytes.len());
    assert_eq!(made["domain"], "a");
    let location = format!("/v1/uploads/{sha}?domain=a");
    assert_eq!(made["url"], location.as_str());
    assert_eq!(headers[header::LOCATION], location.as_str());
    assert_eq!(stored_uploads(&jobs).await, [format!("uploads/a/{sha}")]);

    // The same bytes again, with their sha256 (upper case is the same): the same upload.
    let uri = format!("/v1/uploads?domain=a&sha256={}", sha.to_uppercase());
    let (status, _, again) = send(&app, "POST", &uri, bytes.clone(), None).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["created_at"], made["created_at"]);
    let (status, _, read) = call(&app, "GET", &location, None).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["sha256"], sha.as_str());

    // Another domain has not got it; nor is a made-up sha256 anything.
    for uri in [
        format!("/v1/uploads/{sha}?domain=b"),
        format!("/v1/uploads/{}?domain=a", "0".repeat(64)),
        "/v1/uploads/not-a-sha?domain=a".to_owned(),
    ] {
        let (status, _, problem) = call(&app, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {problem}");
    }
    // Its bytes are what was sent.
    let (_, download) = jobs.open_upload("a", &sha).await.unwrap();
    let mut kept = Vec::new();
    let mut stream = download.stream;
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        kept.extend_from_slice(&chunk.unwrap());
    }
    assert!(kept == bytes, "the kept upload is not what was sent");
}

#[tokio::test]
async fn bad_uploads_are_refused_and_keep_nothing() {
    let (_dirs, app, jobs) = app();
    let bytes = b"the real bytes".to_vec();
    let other = sha256(b"other bytes");

    // Bytes of another sha256 than announced.
    let uri = format!("/v1/uploads?domain=a&sha256={other}");
    let (status, _, problem) = send(&app, "POST", &uri, bytes.clone(), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["title"], "sha256 mismatch");

    // Over the upload limit (1 MiB here), with and without the sha256.
    let big = vec![1u8; (1 << 20) + 1];
    for uri in [
        "/v1/uploads?domain=a".to_owned(),
        format!("/v1/uploads?domain=a&sha256={}", sha256(&big)),
    ] {
        let (status, _, problem) = send(&app, "POST", &uri, big.clone(), None).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {problem}");
    }

    // A bad domain, sha256 or query.
    for uri in [
        "/v1/uploads",
        "/v1/uploads?domain=",
        "/v1/uploads?domain=Bad_Domain",
        "/v1/uploads?domain=a&sha256=abc",
        "/v1/uploads?domain=a&colour=blue",
    ] {
        let (status, _, problem) = send(&app, "POST", uri, bytes.clone(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {problem}");
    }
    let (status, _, _) = call(&app, "GET", "/v1/uploads/ab?domain=../x", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // None of it was kept, not even a staged copy.
    assert_eq!(stored_uploads(&jobs).await, Vec::<String>::new());
    let (status, _, _) = call(
        &app,
        "GET",
        &format!("/v1/uploads/{}?domain=a", sha256(&bytes)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn srpm_job(domain: &str, source: &Value) -> Value {
    json!({"service": "obs", "task": "srpm", "domain": domain, "params": {
        "spec": "Name: big\nVersion: 1\nRelease: 1\nSummary: s\nLicense: MIT\nSource0: big.tar.gz\n%description\nd\n",
        "sources": {"big.tar.gz": source}
    }})
}

#[tokio::test]
async fn jobs_name_uploads_of_their_own_domain_only() {
    let (_dirs, app, _jobs) = app();
    let bytes = vec![9u8; 5000];
    let (status, _, upload) = send(&app, "POST", "/v1/uploads?domain=a", bytes, None).await;
    assert_eq!(status, StatusCode::CREATED);
    let sha = upload["sha256"].as_str().unwrap();

    // Another domain's job cannot use it: 422 at the reference, nothing made.
    let body = srpm_job("b", &json!({"upload": sha, "mode": "0644"}));
    let (status, _, problem) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["title"], "no such upload");
    assert_eq!(
        problem["errors"][0]["path"],
        "/params/sources/big.tar.gz/upload"
    );
    let (_, _, listed) = call(&app, "GET", "/v1/jobs?domain=b", None).await;
    assert_eq!(listed["items"], json!([]));

    // Not a sha256: the plugin says so.
    let body = srpm_job("a", &json!({"upload": "xyz"}));
    let (status, _, problem) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let paths: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(
        paths.iter().any(|p| p.starts_with("/params/sources")),
        "{problem}"
    );

    // Its own domain's job uses it, and keeps it as long as the job's record.
    let body = srpm_job("a", &json!({"upload": sha, "mode": "0755"}));
    let (status, _, job) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let (_, _, kept) = call(&app, "GET", &format!("/v1/uploads/{sha}?domain=a"), None).await;
    let expires: chrono::DateTime<chrono::Utc> =
        kept["expires_at"].as_str().unwrap().parse().unwrap();
    let first: chrono::DateTime<chrono::Utc> =
        upload["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(
        expires - first > chrono::TimeDelta::days(20),
        "{upload} then {kept}"
    );
}

#[tokio::test]
async fn only_a_domains_submitters_upload_and_only_its_viewers_see_them() {
    let roles = |grants: &[(&str, Role)]| -> BTreeMap<String, Role> {
        grants.iter().map(|(d, r)| ((*d).to_owned(), *r)).collect()
    };
    let token = |name: &str, grants: &[(&str, Role)]| TokenConfig {
        name: name.into(),
        sha256: sha256(format!("t-{name}").as_bytes()),
        roles: roles(grants),
    };
    let auth = AuthConfig {
        users: vec![],
        tokens: vec![
            token("viewer-a", &[("a", Role::Viewer)]),
            token("submitter-a", &[("a", Role::Submitter)]),
            token("submitter-b", &[("b", Role::Submitter)]),
        ],
        throttle: Default::default(),
    };
    let (_dirs, app, jobs) = app_with(Some(auth));
    let bytes = b"a file".to_vec();
    let uri = "/v1/uploads?domain=a";
    let (status, _, _) = send(&app, "POST", uri, bytes.clone(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for who in ["t-viewer-a", "t-submitter-b"] {
        let (status, _, problem) = send(&app, "POST", uri, bytes.clone(), Some(who)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {problem}");
    }
    assert_eq!(stored_uploads(&jobs).await, Vec::<String>::new());
    let (status, _, made) = send(&app, "POST", uri, bytes, Some("t-submitter-a")).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let one = format!("/v1/uploads/{}?domain=a", made["sha256"].as_str().unwrap());
    let (status, _, _) = send(&app, "GET", &one, vec![], Some("t-viewer-a")).await;
    assert_eq!(status, StatusCode::OK);
    // Another domain's caller cannot tell it exists.
    let (status, _, _) = send(&app, "GET", &one, vec![], Some("t-submitter-b")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
