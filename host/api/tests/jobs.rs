//! The job routes through the router (`oneshot`), with the real plugins and an embedded store:
//! every status of the API's error table, and every class of bad input the job service names.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use common::{app, app_with_jobs, call, call_with, json_body};
use omni_api::{AppState, router};
use omni_store::{JobState, Store, StoreError, TRANSITIONS};
use serde_json::{Value, json};

fn srpm(name: &str) -> Value {
    json!({"service": "obs", "task": "srpm", "arch": "aarch64",
           "params": {"spec": format!("Name: {name}\nVersion: 1\n")}})
}

#[tokio::test]
async fn a_job_is_created_read_and_listed() {
    let (_dir, app) = app(&["srpm", "rpm"]);
    let (status, headers, job) =
        call_with(&app, "POST", "/v1/jobs", &[], json_body(&srpm("a"))).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap();
    assert_eq!(headers["location"], format!("/v1/jobs/{id}").as_str());
    assert_eq!(job["state"], "pending");
    assert_eq!(job["domain"], "default");
    assert_eq!(job["arch"], "aarch64");
    assert_eq!(job["plugin"]["task"], "srpm");
    assert_eq!(job["plugin"]["digest"].as_str().unwrap().len(), 64);
    assert_eq!(
        job["steps"],
        json!([{"name": "fetch", "state": "pending"}, {"name": "build", "state": "pending"}])
    );
    assert!(job["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(job["finished_at"], Value::Null);

    let (status, _, read) = call(&app, "GET", &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, job);

    // Listings leave params out (they may be large) unless asked for the full view.
    let mut summary = job.clone();
    summary.as_object_mut().unwrap().remove("params");
    for query in ["", "&view=summary"] {
        let uri = format!("/v1/jobs?service=obs&task=srpm{query}");
        let (status, _, list) = call(&app, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["items"], json!([summary]), "{uri}");
        assert_eq!(list["next_page_token"], Value::Null);
    }
    let (status, _, list) = call(&app, "GET", "/v1/jobs?view=full", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"], json!([job]));
}

#[tokio::test]
async fn listing_pages_with_tokens_newest_first() {
    let (_dir, app) = app(&["srpm"]);
    let mut made = Vec::new();
    for i in 0..7 {
        let (_, _, job) = call(&app, "POST", "/v1/jobs", json_body(&srpm(&format!("p{i}")))).await;
        made.push(job["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut uri = "/v1/jobs?limit=3&state=pending".to_owned();
    loop {
        let (status, _, page) = call(&app, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned()),
        );
        match page["next_page_token"].as_str() {
            Some(token) => uri = format!("/v1/jobs?limit=3&state=pending&page_token={token}"),
            None => break,
        }
    }
    made.reverse();
    assert_eq!(seen, made);
}

#[tokio::test]
async fn bad_bodies_get_400_413_or_415_and_store_nothing() {
    let (_dir, app) = app(&["srpm"]);
    let cases: Vec<(Body, StatusCode, &str)> = vec![
        (
            Body::from(r#"{"service": "obs", "task": "srpm", "params": {"#),
            StatusCode::BAD_REQUEST,
            "truncated JSON",
        ),
        (
            Body::from(r#"{"service": 3, "task": "srpm", "params": {}}"#),
            StatusCode::BAD_REQUEST,
            "wrong type",
        ),
        (
            Body::from(r#"{"task": "srpm", "params": {}}"#),
            StatusCode::BAD_REQUEST,
            "missing service",
        ),
        (
            Body::from(r#"{"service": "obs", "task": "srpm", "params": {}, "priority": 1}"#),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            Body::from(format!(
                r#"{{"service": "obs", "task": "srpm", "params": {{"spec": "{}"}}}}"#,
                "x".repeat(10 << 20)
            )),
            StatusCode::PAYLOAD_TOO_LARGE,
            "10 MB",
        ),
    ];
    for (body, expected, what) in cases {
        let (status, headers, problem) = call_with(&app, "POST", "/v1/jobs", &[], Some(body)).await;
        assert_eq!(status, expected, "{what}: {problem}");
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{what}"
        );
        assert_eq!(problem["status"], expected.as_u16(), "{what}");
        if expected == StatusCode::PAYLOAD_TOO_LARGE {
            // It names the limit and what to do instead.
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.contains("1024 KiB"), "{detail}");
            assert!(detail.contains("scm_url"), "{detail}");
        }
    }
    let (status, _, problem) = call_with(
        &app,
        "POST",
        "/v1/jobs",
        &[("content-type", "text/plain")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{problem}");
    let (_, _, list) = call(&app, "GET", "/v1/jobs", None).await;
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn names_are_checked_with_a_path_for_each() {
    let (_dir, app) = app(&["srpm"]);
    let body = json!({"service": "OBS", "task": "srpm", "domain": "a_b", "params": []});
    let (status, _, problem) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let paths: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/service", "/domain", "/params"]);
    let long = "a".repeat(64);
    let body = json!({"service": long, "task": "srpm", "params": {}});
    let (status, _, _) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_task_is_404_and_rejected_params_or_arch_are_422() {
    let (_dir, app) = app(&["srpm"]);
    let body = json!({"service": "obs", "task": "kiwi", "params": {}});
    let (status, _, problem) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["detail"], "no plugin is loaded for task \"kiwi\"");

    let body =
        json!({"service": "obs", "task": "srpm", "params": {"spec": "Name: x\n", "colour": "red"}});
    let (status, _, problem) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["path"], "/params/colour");

    let body =
        json!({"service": "obs", "task": "srpm", "arch": "sparc", "params": {"spec": "Name: x\n"}});
    let (status, _, problem) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["path"], "/arch");
    let (_, _, list) = call(&app, "GET", "/v1/jobs", None).await;
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn idempotency_keys_replay_the_job_or_conflict() {
    let (_dir, app) = app(&["srpm"]);
    let key = [("idempotency-key", "build-hello-1")];
    let (status, _, first) =
        call_with(&app, "POST", "/v1/jobs", &key, json_body(&srpm("hello"))).await;
    assert_eq!(status, StatusCode::CREATED);
    // The same request, keys in another order and the default domain written out: the same job.
    let same = json!({"params": {"spec": "Name: hello\nVersion: 1\n"}, "domain": "default",
                      "arch": "aarch64", "task": "srpm", "service": "obs"});
    let (status, headers, again) =
        call_with(&app, "POST", "/v1/jobs", &key, json_body(&same)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, first);
    assert_eq!(
        headers["location"],
        format!("/v1/jobs/{}", first["id"].as_str().unwrap()).as_str()
    );
    let (status, _, problem) =
        call_with(&app, "POST", "/v1/jobs", &key, json_body(&srpm("other"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(first["id"].as_str().unwrap())
    );
    // Another domain has its own keys.
    let mut elsewhere = srpm("other");
    elsewhere["domain"] = json!("openeuler");
    let (status, _, _) = call_with(&app, "POST", "/v1/jobs", &key, json_body(&elsewhere)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = call_with(
        &app,
        "POST",
        "/v1/jobs",
        &[("idempotency-key", "")],
        json_body(&srpm("x")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, _, list) = call(&app, "GET", "/v1/jobs", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_listings_are_400() {
    let (_dir, app) = app(&["srpm"]);
    let (_, _, _) = call(&app, "POST", "/v1/jobs", json_body(&srpm("a"))).await;
    let (_, _, _) = call(&app, "POST", "/v1/jobs", json_body(&srpm("b"))).await;
    let (_, _, page) = call(&app, "GET", "/v1/jobs?limit=1", None).await;
    let token = page["next_page_token"].as_str().unwrap().to_owned();
    for (uri, path) in [
        (
            "/v1/jobs?page_token=Zm9yZ2Vk".to_owned(),
            "/query/page_token",
        ),
        (
            format!("/v1/jobs?page_token={token}&service=obs"),
            "/query/page_token",
        ),
        ("/v1/jobs?limit=0".to_owned(), "/query/limit"),
        ("/v1/jobs?limit=1001".to_owned(), "/query/limit"),
        ("/v1/jobs?view=full&limit=101".to_owned(), "/query/limit"),
        ("/v1/jobs?view=everything".to_owned(), "/query/view"),
        ("/v1/jobs?limit=ten".to_owned(), "/query/limit"),
        ("/v1/jobs?state=done".to_owned(), "/query/state"),
        ("/v1/jobs?since=yesterday".to_owned(), "/query/since"),
        ("/v1/jobs?domain=Bad".to_owned(), "/query/domain"),
    ] {
        let (status, _, problem) = call(&app, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {problem}");
        assert_eq!(problem["errors"][0]["path"], path, "{uri}: {problem}");
    }
    let (status, _, _) = call(&app, "GET", "/v1/jobs?stat=running", None).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a misspelt filter is not ignored"
    );
    let (status, _, page) = call(
        &app,
        "GET",
        &format!("/v1/jobs?limit=1&page_token={token}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
}

#[tokio::test]
async fn cancel_then_purge() {
    let (_dir, app) = app(&["srpm"]);
    let (_, _, job) = call(&app, "POST", "/v1/jobs", json_body(&srpm("a"))).await;
    let uri = format!("/v1/jobs/{}", job["id"].as_str().unwrap());
    let (status, _, cancelled) = call(&app, "DELETE", &uri, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["message"], "cancelled by request");
    assert_eq!(cancelled["steps"][0]["state"], "skipped");
    let (status, _, again) = call(&app, "DELETE", &uri, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, cancelled);
    let (status, _, _) = call(&app, "DELETE", &format!("{uri}?purge=maybe"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = call(&app, "DELETE", &format!("{uri}?purge=true"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for method in ["GET", "DELETE"] {
        let (status, _, problem) = call(&app, method, &uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {problem}");
    }
    for bad in [
        "/v1/jobs/not-a-uuid",
        "/v1/jobs/4b5c5a4e-2b0a-4c39-9b1e-3f2d1c0b9a87",
    ] {
        let (status, _, problem) = call(&app, "GET", bad, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
        assert_eq!(problem["title"], "no such job");
    }
}

/// Cancels through the API race completions reported by an engine (here: the job service, as an
/// engine calls it). Every job ends in exactly one final state and every history is a path
/// through the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_racing_completion_never_makes_an_illegal_history() {
    let (_dir, app, jobs) = app_with_jobs(&["srpm"]);
    let mut ids = Vec::new();
    for i in 0..30 {
        let (_, _, job) = call(&app, "POST", "/v1/jobs", json_body(&srpm(&format!("r{i}")))).await;
        let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
        jobs.transition(id, JobState::Queued, None).await.unwrap();
        if i % 3 != 0 {
            jobs.transition(id, JobState::Running, None).await.unwrap();
        }
        ids.push(id);
    }
    let races = ids.iter().enumerate().map(|(i, &id)| {
        let app = app.clone();
        let jobs = jobs.clone();
        async move {
            let uri = format!("/v1/jobs/{id}");
            let cancel = tokio::spawn(async move { call(&app, "DELETE", &uri, None).await.0 });
            let end = if i % 2 == 0 {
                JobState::Succeeded
            } else {
                JobState::Failed
            };
            let complete =
                tokio::spawn(async move { jobs.transition(id, end, Some("engine".into())).await });
            (id, cancel.await.unwrap(), complete.await.unwrap())
        }
    });
    let allowed: HashSet<(JobState, JobState)> = TRANSITIONS.iter().copied().collect();
    for (id, cancel, complete) in futures::future::join_all(races).await {
        assert!(
            cancel == StatusCode::ACCEPTED || cancel == StatusCode::OK,
            "{cancel}"
        );
        let job = jobs.get(id).await.unwrap();
        assert!(job.state.is_final());
        // The API answered 202 only when its cancel won.
        assert_eq!(
            cancel == StatusCode::ACCEPTED,
            job.state == JobState::Cancelled
        );
        assert_eq!(
            complete.is_ok(),
            job.state != JobState::Cancelled,
            "{complete:?}"
        );
        let history = jobs.history(id).await.unwrap();
        for change in &history[1..] {
            assert!(
                allowed.contains(&(change.from.unwrap(), change.to)),
                "{history:?}"
            );
        }
        assert_eq!(
            history.iter().filter(|c| c.to.is_final()).count(),
            1,
            "{history:?}"
        );
    }
}

/// A store that cannot be reached: failure injection a real embedded store cannot produce on
/// demand (the Cassandra suite kills a real node for the same answer).
#[derive(Debug)]
struct Unreachable;

#[async_trait::async_trait]
impl Store for Unreachable {
    fn kind(&self) -> &'static str {
        "unreachable"
    }
    async fn ping(&self) -> omni_store::Result<()> {
        Err(down())
    }
}

#[async_trait::async_trait]
impl omni_store::JobStore for Unreachable {
    async fn create_job(
        &self,
        _: &omni_store::Job,
        _: Option<&omni_store::IdempotencyKey>,
    ) -> omni_store::Result<omni_store::Created> {
        Err(down())
    }
    async fn get_job(&self, _: omni_store::JobId) -> omni_store::Result<Option<omni_store::Job>> {
        Err(down())
    }
    async fn list_jobs(&self, _: &omni_store::JobQuery) -> omni_store::Result<omni_store::JobPage> {
        Err(down())
    }
    async fn transition(
        &self,
        _: omni_store::JobId,
        _: &omni_store::Transition,
    ) -> omni_store::Result<(omni_store::Job, omni_store::StateChange)> {
        Err(down())
    }
    async fn assign_engine(
        &self,
        _: omni_store::JobId,
        _: &str,
        _: Option<&omni_store::Rendering>,
    ) -> omni_store::Result<omni_store::Job> {
        Err(down())
    }
    async fn update_steps(
        &self,
        _: omni_store::JobId,
        _: &[omni_store::Step],
    ) -> omni_store::Result<omni_store::Job> {
        Err(down())
    }
    async fn history(
        &self,
        _: omni_store::JobId,
    ) -> omni_store::Result<Vec<omni_store::StateChange>> {
        Err(down())
    }
    async fn purge_job(&self, _: omni_store::JobId) -> omni_store::Result<bool> {
        Err(down())
    }
}

#[async_trait::async_trait]
impl omni_store::LogStore for Unreachable {
    async fn append_logs(
        &self,
        _: omni_store::JobId,
        _: &[omni_store::LogLine],
    ) -> omni_store::Result<()> {
        Err(down())
    }
    async fn read_logs(
        &self,
        _: omni_store::JobId,
        _: &omni_store::LogQuery,
    ) -> omni_store::Result<omni_store::LogPage> {
        Err(down())
    }
}

#[async_trait::async_trait]
impl omni_store::ArtifactIndex for Unreachable {
    async fn record_artifacts(
        &self,
        _: omni_store::JobId,
        _: &[omni_store::Artifact],
    ) -> omni_store::Result<omni_store::Event> {
        Err(down())
    }
    async fn list_artifacts(
        &self,
        _: omni_store::JobId,
        _: &omni_store::ArtifactQuery,
    ) -> omni_store::Result<omni_store::ArtifactPage> {
        Err(down())
    }
    async fn get_artifact(
        &self,
        _: omni_store::JobId,
        _: &str,
    ) -> omni_store::Result<Option<omni_store::Artifact>> {
        Err(down())
    }
}

#[async_trait::async_trait]
impl omni_store::UploadIndex for Unreachable {
    async fn put_upload(&self, _: &omni_store::Upload) -> omni_store::Result<omni_store::Upload> {
        Err(down())
    }
    async fn get_upload(&self, _: &str, _: &str) -> omni_store::Result<Option<omni_store::Upload>> {
        Err(down())
    }
    async fn list_uploads(&self, _: &str) -> omni_store::Result<Vec<omni_store::Upload>> {
        Err(down())
    }
    async fn forget_uploads(
        &self,
        _: &str,
        _: chrono::DateTime<chrono::Utc>,
    ) -> omni_store::Result<u64> {
        Err(down())
    }
}

#[async_trait::async_trait]
impl omni_store::LeaseStore for Unreachable {
    async fn acquire_lease(
        &self,
        _: &str,
        _: &str,
        _: std::time::Duration,
    ) -> omni_store::Result<Option<omni_store::Lease>> {
        Err(down())
    }
    async fn release_lease(&self, _: &str, _: &str) -> omni_store::Result<bool> {
        Err(down())
    }
}

#[async_trait::async_trait]
impl omni_store::WebhookStore for Unreachable {
    async fn create_webhook(&self, _: &omni_store::Webhook, _: usize) -> omni_store::Result<bool> {
        Err(down())
    }
    async fn replace_secret(&self, _: uuid::Uuid, _: &str, _: &str) -> omni_store::Result<bool> {
        Err(down())
    }
    async fn list_webhooks(&self, _: Option<&str>) -> omni_store::Result<Vec<omni_store::Webhook>> {
        Err(down())
    }
    async fn delete_webhook(&self, _: uuid::Uuid) -> omni_store::Result<bool> {
        Err(down())
    }
    async fn get_delivery(
        &self,
        _: uuid::Uuid,
    ) -> omni_store::Result<Option<omni_store::Delivery>> {
        Err(down())
    }
    async fn put_delivery(&self, _: &omni_store::Delivery) -> omni_store::Result<()> {
        Err(down())
    }
}

#[async_trait::async_trait]
impl omni_store::EventStore for Unreachable {
    async fn read_events(
        &self,
        _: Option<&str>,
        _: &omni_store::EventFilter,
        _: usize,
    ) -> omni_store::Result<omni_store::EventPage> {
        Err(down())
    }
    async fn events_head(&self) -> omni_store::Result<String> {
        Err(down())
    }
}

fn down() -> StoreError {
    StoreError::Unavailable {
        message: "connection refused".into(),
        source: None,
    }
}

#[tokio::test]
async fn an_unreachable_store_is_503_with_retry_after() {
    let (dirs, _) = omni_test_support::job_service(&["srpm"]);
    let jobs = omni_jobs::JobService::new(
        Arc::new(Unreachable),
        dirs.registry.clone(),
        omni_test_support::artifacts_in(dirs.data.path()),
    );
    let app = router(AppState::new(jobs, dirs.registry.clone()));
    for (method, uri, body) in [
        ("POST", "/v1/jobs", json_body(&srpm("a"))),
        ("GET", "/v1/jobs", None),
        ("GET", "/v1/jobs/6c1e2a2e-c9a4-11f0-8000-010203040506", None),
        (
            "DELETE",
            "/v1/jobs/6c1e2a2e-c9a4-11f0-8000-010203040506",
            None,
        ),
        ("GET", "/readyz", None),
        ("GET", "/v1/events", None),
        ("GET", "/v1/events?after=1", None),
        (
            "POST",
            "/v1/webhooks",
            json_body(
                &serde_json::json!({"url": "https://x.example/", "events": ["*"], "secret": "s"}),
            ),
        ),
        ("GET", "/v1/webhooks", None),
        (
            "DELETE",
            "/v1/webhooks/6c1e2a2e-c9a4-11f0-8000-010203040506",
            None,
        ),
    ] {
        let (status, headers, problem) = call_with(&app, method, uri, &[], body).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {uri}: {problem}"
        );
        assert_eq!(headers["retry-after"], "2", "{method} {uri}");
        assert!(
            !problem["detail"].as_str().unwrap().contains("refused"),
            "internals leak: {problem}"
        );
    }
}
