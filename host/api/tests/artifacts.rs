//! Artifacts through the router (`oneshot`): a job's artifacts stored as the local engine's
//! follower stores them, listed in pages, downloaded whole, by ranges and conditionally, with
//! their headers; every bad name, range and parameter answered as the document says; and the
//! `job.artifacts` event in the stream.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{app_with_jobs, call, call_with, json_body};
use http_body_util::BodyExt;
use omni_store::JobState;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The bytes of the artifacts the job gets, by name.
fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("hello-1.0-1.src.rpm", b"0123456789".to_vec()),
        ("repodata/repomd.xml", b"<repomd/>".to_vec()),
        ("Packages/g/gcc-c++-14.2-1.x86_64.rpm", vec![7u8; 3000]),
        ("docs/read me \u{fc}.txt", b"hi".to_vec()),
        ("empty", Vec::new()),
    ]
}

/// A running srpm job with [`files`] stored as its artifacts.
async fn job_with_artifacts(app: &axum::Router, jobs: &omni_jobs::JobService) -> String {
    let body = json!({"service": "obs", "task": "srpm", "params": {"spec": "Name: hello\n"}});
    let (status, _, made) = call(app, "POST", "/v1/jobs", json_body(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id: uuid::Uuid = made["id"].as_str().unwrap().parse().unwrap();
    jobs.transition(id, JobState::Queued, None).await.unwrap();
    jobs.transition(id, JobState::Running, None).await.unwrap();
    let mut stored = Vec::new();
    for (name, bytes) in files() {
        let body: omni_artifacts::ByteStream = Box::pin(futures::stream::once(async move {
            Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))
        }));
        stored.push(
            jobs.put_artifact(
                id,
                name,
                Some("build".into()),
                body,
                omni_artifacts::PutLimits::default(),
            )
            .await
            .unwrap(),
        );
    }
    jobs.record_artifacts(id, &stored).await.unwrap();
    jobs.transition(id, JobState::Succeeded, None)
        .await
        .unwrap();
    id.to_string()
}

/// A raw call: status, headers and the body's bytes.
async fn fetch(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

fn sha256(bytes: &[u8]) -> String {
    omni_artifacts::Sha256::of(bytes).to_string()
}

#[tokio::test]
async fn a_jobs_artifacts_are_listed_in_pages_by_name() {
    let (_dirs, app, jobs) = app_with_jobs(&["srpm"]);
    let id = job_with_artifacts(&app, &jobs).await;

    let (status, _, page) = call(&app, "GET", &format!("/v1/jobs/{id}/artifacts"), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut expected: Vec<(&str, Vec<u8>)> = files();
    expected.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), expected.len(), "{page:#}");
    for (item, (name, bytes)) in items.iter().zip(&expected) {
        assert_eq!(item["name"], *name);
        assert_eq!(item["size"], bytes.len());
        assert_eq!(item["sha256"], sha256(bytes));
        assert_eq!(item["step"], "build");
        assert!(item["created_at"].is_string());
    }
    assert_eq!(page["next"], Value::Null);
    let by_name = |name: &str| items.iter().find(|i| i["name"] == name).unwrap().clone();
    assert_eq!(
        by_name("Packages/g/gcc-c++-14.2-1.x86_64.rpm")["media_type"],
        "application/x-rpm"
    );
    assert_eq!(
        by_name("repodata/repomd.xml")["media_type"],
        "application/xml"
    );
    assert_eq!(
        by_name("Packages/g/gcc-c++-14.2-1.x86_64.rpm")["url"],
        format!("/v1/jobs/{id}/artifacts/Packages/g/gcc-c%2B%2B-14.2-1.x86_64.rpm")
    );
    assert_eq!(
        by_name("docs/read me \u{fc}.txt")["url"],
        format!("/v1/jobs/{id}/artifacts/docs/read%20me%20%C3%BC.txt")
    );

    // Pages of two, read on from `next`, hold the same artifacts in order.
    let mut names = Vec::new();
    let mut uri = format!("/v1/jobs/{id}/artifacts?limit=2");
    loop {
        let (status, _, page) = call(&app, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page["items"].as_array().unwrap().len() <= 2);
        for item in page["items"].as_array().unwrap() {
            names.push(item["name"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => {
                uri = format!(
                    "/v1/jobs/{id}/artifacts?limit=2&after={}",
                    omni_api::artifacts::url_path(next).replace('/', "%2F")
                );
            }
            None => break,
        }
    }
    let expected_names: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected_names);

    // A job without artifacts has an empty page.
    let body = json!({"service": "obs", "task": "srpm", "params": {"spec": "Name: other\n"}});
    let (_, _, other) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
    let (status, _, page) = call(
        &app,
        "GET",
        &format!("/v1/jobs/{}/artifacts", other["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page, json!({"items": [], "next": null}));
}

#[tokio::test]
async fn a_listing_with_bad_parameters_or_of_no_job_is_refused() {
    let (_dirs, app, jobs) = app_with_jobs(&["srpm"]);
    let id = job_with_artifacts(&app, &jobs).await;
    assert_eq!(omni_jobs::MAX_ARTIFACT_NAME, 918, "docs/api.md says 918");
    for (query, path) in [
        ("limit=0", "/query/limit"),
        ("limit=10001", "/query/limit"),
        ("limit=ten", "/query/limit"),
        ("after=", "/query/after"),
        (&format!("after={}", "a".repeat(919)), "/query/after"),
    ] {
        let (status, _, problem) = call(
            &app,
            "GET",
            &format!("/v1/jobs/{id}/artifacts?{query}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
        assert_eq!(problem["errors"][0]["path"], path, "{query}: {problem}");
    }
    let (status, _, problem) = call(
        &app,
        "GET",
        &format!("/v1/jobs/{id}/artifacts?page=2"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    for missing in [
        "/v1/jobs/4b5c5a4e-2b0a-11f0-9b1e-3f2d1c0b9a87/artifacts",
        "/v1/jobs/not-a-job/artifacts",
        "/v1/jobs/4b5c5a4e-2b0a-11f0-9b1e-3f2d1c0b9a87/artifacts/a.rpm",
    ] {
        let (status, _, problem) = call(&app, "GET", missing, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {problem}");
        assert_eq!(problem["title"], "no such job");
    }
}

#[tokio::test]
async fn an_artifact_downloads_whole_with_its_headers() {
    let (_dirs, app, jobs) = app_with_jobs(&["srpm"]);
    let id = job_with_artifacts(&app, &jobs).await;
    for (name, bytes) in files() {
        let uri = format!(
            "/v1/jobs/{id}/artifacts/{}",
            omni_api::artifacts::url_path(name)
        );
        let (status, headers, body) = fetch(&app, "GET", &uri, &[]).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert!(body == bytes, "{name}: other bytes");
        let header = |h: header::HeaderName| headers[h].to_str().unwrap().to_owned();
        assert_eq!(header(header::ETAG), format!("\"{}\"", sha256(&bytes)));
        assert_eq!(header(header::CONTENT_LENGTH), bytes.len().to_string());
        assert_eq!(header(header::ACCEPT_RANGES), "bytes");
        let file = name.rsplit('/').next().unwrap();
        assert!(
            header(header::CONTENT_DISPOSITION).starts_with("attachment; filename=\""),
            "{headers:?}"
        );
        assert!(
            header(header::CONTENT_DISPOSITION).ends_with(&format!(
                "filename*=UTF-8''{}",
                omni_api::artifacts::url_path(file)
            )),
            "{headers:?}"
        );
        // HEAD: the same headers, no body.
        let (status, head, body) = fetch(&app, "HEAD", &uri, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.is_empty());
        assert_eq!(head[header::ETAG], headers[header::ETAG]);
        assert_eq!(
            head[header::CONTENT_LENGTH],
            headers[header::CONTENT_LENGTH]
        );
    }
    // The name as a path with its `/` as they are, and the `+` sent unencoded.
    let (status, headers, body) = fetch(
        &app,
        "GET",
        &format!("/v1/jobs/{id}/artifacts/Packages/g/gcc-c++-14.2-1.x86_64.rpm"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, vec![7u8; 3000]);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-rpm");
}

#[tokio::test]
async fn ranges_and_conditions_are_answered_as_rfc_9110_says() {
    let (_dirs, app, jobs) = app_with_jobs(&["srpm"]);
    let id = job_with_artifacts(&app, &jobs).await;
    let uri = format!("/v1/jobs/{id}/artifacts/hello-1.0-1.src.rpm");
    let etag = format!("\"{}\"", sha256(b"0123456789"));

    for (range, content_range, bytes) in [
        ("bytes=2-5", "bytes 2-5/10", &b"2345"[..]),
        ("bytes=7-", "bytes 7-9/10", b"789"),
        ("bytes=-3", "bytes 7-9/10", b"789"),
        ("bytes=8-100", "bytes 8-9/10", b"89"),
        ("bytes=-100", "bytes 0-9/10", b"0123456789"),
        ("bytes=0-0", "bytes 0-0/10", b"0"),
    ] {
        let (status, headers, body) = fetch(&app, "GET", &uri, &[("range", range)]).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(headers[header::CONTENT_RANGE], content_range, "{range}");
        assert_eq!(
            headers[header::CONTENT_LENGTH],
            bytes.len().to_string().as_str()
        );
        assert_eq!(body, bytes, "{range}");
        assert_eq!(headers[header::ETAG], etag.as_str());
    }
    // Ranges that select nothing.
    for range in ["bytes=10-", "bytes=10-20", "bytes=-0"] {
        let (status, headers, body) = fetch(&app, "GET", &uri, &[("range", range)]).await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(headers[header::CONTENT_RANGE], "bytes */10", "{range}");
        let problem: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["title"], "range not satisfiable");
    }
    let empty = format!("/v1/jobs/{id}/artifacts/empty");
    let (status, headers, _) = fetch(&app, "GET", &empty, &[("range", "bytes=0-")]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers[header::CONTENT_RANGE], "bytes */0");
    // What is not one satisfiable range of bytes gets the whole file.
    for range in ["bytes=0-1,4-5", "items=0-1", "bytes=5-2", "bytes=x-"] {
        let (status, _, body) = fetch(&app, "GET", &uri, &[("range", range)]).await;
        assert_eq!(status, StatusCode::OK, "{range}");
        assert_eq!(body, b"0123456789", "{range}");
    }
    // If-Range: the current tag serves the range, another the whole file.
    let (status, _, body) = fetch(
        &app,
        "GET",
        &uri,
        &[("range", "bytes=0-1"), ("if-range", &etag)],
    )
    .await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &b"01"[..])
    );
    let (status, _, body) = fetch(
        &app,
        "GET",
        &uri,
        &[("range", "bytes=0-1"), ("if-range", "\"older\"")],
    )
    .await;
    assert_eq!((status, body.len()), (StatusCode::OK, 10));
    // If-None-Match with the tag (or `*`): 304 and no body; another tag: the file.
    for tags in [etag.as_str(), "*", &format!("\"x\", W/{etag}")] {
        let (status, headers, body) = fetch(&app, "GET", &uri, &[("if-none-match", tags)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{tags}");
        assert!(body.is_empty());
        assert_eq!(headers[header::ETAG], etag.as_str());
    }
    let (status, _, _) = fetch(&app, "GET", &uri, &[("if-none-match", "\"x\"")]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn names_that_are_not_artifacts_are_refused() {
    let (_dirs, app, jobs) = app_with_jobs(&["srpm"]);
    let id = job_with_artifacts(&app, &jobs).await;
    for (name, status, title) in [
        ("nothing.rpm", StatusCode::NOT_FOUND, "no such artifact"),
        ("repodata", StatusCode::NOT_FOUND, "no such artifact"),
        ("repodata/", StatusCode::BAD_REQUEST, "invalid request"),
        (
            "a/%2e%2e/hello-1.0-1.src.rpm",
            StatusCode::BAD_REQUEST,
            "invalid request",
        ),
        (
            "..%2F..%2Fetc%2Fpasswd",
            StatusCode::BAD_REQUEST,
            "invalid request",
        ),
        ("a%00b", StatusCode::BAD_REQUEST, "invalid request"),
        ("a//b", StatusCode::BAD_REQUEST, "invalid request"),
        (".omni-part", StatusCode::BAD_REQUEST, "invalid request"),
        (&"a".repeat(919), StatusCode::BAD_REQUEST, "invalid request"),
    ] {
        let (answer, _, problem) = call_with(
            &app,
            "GET",
            &format!("/v1/jobs/{id}/artifacts/{name}"),
            &[],
            None,
        )
        .await;
        assert_eq!(answer, status, "{name}: {problem}");
        assert_eq!(problem["title"], title, "{name}: {problem}");
    }
}

#[tokio::test]
async fn the_stored_artifacts_are_an_event_of_their_own() {
    let (_dirs, app, jobs) = app_with_jobs(&["srpm"]);
    let id = job_with_artifacts(&app, &jobs).await;
    let (status, _, page) = call(&app, "GET", "/v1/events?follow=false", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let events: Vec<&Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["job_id"] == id.as_str())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "job.pending",
            "job.queued",
            "job.running",
            "job.artifacts",
            "job.succeeded"
        ]
    );
    let total: usize = files().iter().map(|(_, b)| b.len()).sum();
    assert_eq!(
        events[3]["artifacts"],
        json!({"count": files().len(), "bytes": total})
    );
    assert_eq!(
        (events[3]["from"].as_str(), events[3]["to"].as_str()),
        (Some("running"), Some("running"))
    );
    assert!(events[4].get("artifacts").is_none());
}
