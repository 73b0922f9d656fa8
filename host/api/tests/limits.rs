//! Answers kept to `answer_limit`: a listing with every job's params and a page of long log
//! lines are cut short before it, with a cursor that reads on.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{call, json_body};
use omni_api::{AppState, router};
use serde_json::{Value, json};

fn srpm(name: &str) -> Value {
    json!({"service": "obs", "task": "srpm", "arch": "aarch64",
           "params": {"spec": format!("Name: {name}\n#{}\n", "x".repeat(2000))}})
}

/// No answer grows past `answer_limit`: a listing with every job's params and a page of long
/// log lines are cut short, with a cursor that reads on to every item, none twice.
#[tokio::test]
async fn listings_and_log_pages_are_cut_short_before_the_answer_limit() {
    let (plugins, registry) =
        omni_test_support::registry(omni_test_support::sandbox(json!({})), &["srpm"]);
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(
        omni_store_embedded::EmbeddedStore::open(
            data.path(),
            omni_store_embedded::EmbeddedConfig::default(),
        )
        .unwrap(),
    );
    let jobs = omni_jobs::JobService::new(
        store.clone(),
        Arc::clone(&registry) as _,
        omni_test_support::artifacts_in(data.path()),
    );
    let app = router(AppState {
        answer_limit: 8 << 10,
        ..AppState::new(jobs, registry)
    });
    let mut made = Vec::new();
    for i in 0..10 {
        let body = srpm(&format!("p{i}"));
        let (status, _, job) = call(&app, "POST", "/v1/jobs", json_body(&body)).await;
        assert_eq!(status, StatusCode::CREATED, "{job}");
        made.push(job["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut uri = "/v1/jobs?view=full&limit=100".to_owned();
    loop {
        let (status, _, page) = call(&app, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(
            (1..=4).contains(&items.len()),
            "{} jobs of 2 KB in an 8 KiB answer",
            items.len()
        );
        assert!(items.iter().all(|job| job["params"]["spec"].is_string()));
        seen.extend(items.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        match page["next_page_token"].as_str() {
            Some(token) => uri = format!("/v1/jobs?view=full&limit=100&page_token={token}"),
            None => break,
        }
    }
    made.reverse();
    assert_eq!(seen, made);

    let id: omni_store::JobId = made[0].parse().unwrap();
    let lines: Vec<_> = (1..=50)
        .map(|seq| omni_store::LogLine {
            step: "build".into(),
            time: omni_store::now(),
            seq,
            stream: omni_store::LogStream::Stdout,
            line: format!("{seq} {}", "y".repeat(1000)),
        })
        .collect();
    omni_store::LogStore::append_logs(&*store, id, &lines)
        .await
        .unwrap();
    let mut read = Vec::new();
    let mut uri = format!("/v1/jobs/{id}/logs?limit=10000");
    loop {
        let (status, _, page) = call(&app, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!((1..=8).contains(&items.len()), "{} lines", items.len());
        read.extend(items.iter().map(|l| l["seq"].as_u64().unwrap()));
        match page["next"].as_str() {
            Some(next) => uri = format!("/v1/jobs/{id}/logs?limit=10000&after={next}"),
            None => break,
        }
    }
    assert_eq!(read, (1..=50).collect::<Vec<_>>());
    drop(plugins);
}
