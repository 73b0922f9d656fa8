//! The event stream's and the webhooks' performance, printed as the README's tables
//! (`cargo bench -p omni-api --bench events`), on the embedded store.
//!
//! 1. Webhook deliveries per second: 2,000 jobs' events (8,000) are recorded while no deliverer
//!    runs (a receiver that was down), then the deliverer sends them all to a receiver on
//!    loopback that verifies every signature and answers 204; timed from the deliverer's start
//!    to the last answer.
//! 2. SSE lag: `GET /v1/events` followed by 1 and by 100 clients over HTTP on loopback while
//!    jobs change one after another; the lag of an event is from the start of the change's call
//!    (its durable write included) to its arrival at a client; p50 and p99 over every event at
//!    every client.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use omni_api::{AppState, router};
use omni_jobs::JobService;
use omni_store::{JobState, Store, Webhook};
use omni_store_embedded::{EmbeddedConfig, EmbeddedStore};
use omni_webhooks::{Deliverer, WebhooksConfig};

const JOBS: usize = 2000;
const SSE_CHANGES: usize = 400;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (events, seconds) = deliveries().await;
        println!("| webhook deliveries | events | seconds | deliveries/s |");
        println!("| --- | --- | --- | --- |");
        println!(
            "| backlog, 1 webhook, window 512, 64 jobs at once | {events} | {seconds:.2} | {:.0} |",
            events as f64 / seconds
        );
        println!();
        println!("| SSE followers | events each | lag p50 | lag p99 |");
        println!("| --- | --- | --- | --- |");
        for followers in [1, 100] {
            let (p50, p99) = sse_lag(followers).await;
            println!(
                "| {followers} | {SSE_CHANGES} | {:.1} ms | {:.1} ms |",
                p50.as_secs_f64() * 1000.0,
                p99.as_secs_f64() * 1000.0
            );
        }
    });
}

fn open() -> (tempfile::TempDir, Arc<dyn Store>) {
    let data = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(data.path(), EmbeddedConfig::default()).unwrap());
    (data, store)
}

async fn deliveries() -> (usize, f64) {
    let (_data, store) = open();
    let (_plugins, jobs) = omni_test_support::job_service_over(store.clone());
    let received = Arc::new(AtomicUsize::new(0));
    let bad = Arc::new(AtomicUsize::new(0));
    let app = {
        let received = received.clone();
        let bad = bad.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let received = received.clone();
                let bad = bad.clone();
                async move {
                    let signature = headers
                        .get("x-omni-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    if omni_webhooks::verify(b"bench-secret", &body, signature) {
                        received.fetch_add(1, Ordering::SeqCst);
                    } else {
                        bad.fetch_add(1, Ordering::SeqCst);
                    }
                    StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let hook = Webhook {
        id: uuid::Uuid::new_v4(),
        domain: None,
        url,
        events: vec!["*".into()],
        secret: "bench-secret".into(),
        created_at: omni_store::now(),
    };
    let webhooks = omni_webhooks::Webhooks::default();
    webhooks.register(&jobs, &hook).await.unwrap();
    // The backlog, recorded 64 jobs at a time.
    let mut made = 0;
    while made < JOBS {
        let batch = (made..JOBS.min(made + 64)).map(|_| {
            let (store, jobs) = (store.clone(), jobs.clone());
            async move { change_one_job(&store, &jobs, &[]).await }
        });
        futures::future::join_all(batch).await;
        made = JOBS.min(made + 64);
    }
    let total = JOBS * 4;
    let deliverer = Deliverer::new(
        jobs.clone(),
        WebhooksConfig {
            // The receiver is on loopback.
            allow_addresses: vec!["127.0.0.1/32".parse().unwrap()],
            ..WebhooksConfig::default()
        },
        &webhooks,
    )
    .unwrap();
    let started = Instant::now();
    let _running = deliverer.spawn();
    let deadline = started + Duration::from_secs(600);
    while received.load(Ordering::SeqCst) < total {
        assert!(Instant::now() < deadline, "deliveries stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(bad.load(Ordering::SeqCst), 0, "bad signatures");
    (total, seconds)
}

/// Makes a job and moves it to the end; calls `mark` before each change with its (job, state).
async fn change_one_job(
    store: &Arc<dyn Store>,
    jobs: &JobService,
    marks: &[&dyn Fn(uuid::Uuid, JobState)],
) {
    let job = omni_test_support::pending_job("bench", "rpm", "default");
    for mark in marks {
        mark(job.id, JobState::Pending);
    }
    store.create_job(&job, None).await.unwrap();
    for to in [JobState::Queued, JobState::Running, JobState::Succeeded] {
        for mark in marks {
            mark(job.id, to);
        }
        jobs.transition(job.id, to, None).await.unwrap();
    }
}

async fn sse_lag(followers: usize) -> (Duration, Duration) {
    let (_data, store) = open();
    let (plugins, jobs) = omni_test_support::job_service_over(store.clone());
    let app = router(AppState::new(jobs.clone(), Arc::clone(&plugins.registry)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    let sent: Arc<std::sync::Mutex<HashMap<(uuid::Uuid, JobState), Instant>>> = Arc::default();
    let mut readers = Vec::new();
    for _ in 0..followers {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let sent = sent.clone();
        readers.push(tokio::spawn(async move {
            let mut response = response;
            let mut buffer = String::new();
            let mut lags = Vec::with_capacity(SSE_CHANGES);
            while lags.len() < SSE_CHANGES {
                let chunk = response.chunk().await.unwrap().unwrap();
                let now = Instant::now();
                buffer.push_str(std::str::from_utf8(&chunk).unwrap());
                while let Some(end) = buffer.find("\n\n") {
                    let frame: String = buffer.drain(..end + 2).collect();
                    let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue;
                    };
                    let event: omni_store::Event = serde_json::from_str(data).unwrap();
                    let at = sent.lock().unwrap()[&(event.job_id, event.to)];
                    lags.push(now.saturating_duration_since(at));
                }
            }
            lags
        }));
    }
    let mark = |id: uuid::Uuid, to: JobState| {
        sent.lock().unwrap().insert((id, to), Instant::now());
    };
    for _ in 0..SSE_CHANGES / 4 {
        change_one_job(&store, &jobs, &[&mark]).await;
    }
    let mut lags = Vec::new();
    for reader in readers {
        lags.extend(reader.await.unwrap());
    }
    lags.sort();
    let at = |q: f64| lags[((lags.len() as f64 * q) as usize).min(lags.len() - 1)];
    (at(0.50), at(0.99))
}
