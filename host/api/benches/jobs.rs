//! The job service's performance, printed as the README's table (`make bench`).
//!
//! For each store: job submissions accepted per second over HTTP on loopback from 64 concurrent
//! clients, each submission rendered-checked by the real srpm plugin (validate) and written
//! durably, with p50/p99 latency; then log lines written per second in batches of 1,000.
//!
//! Stores: the embedded store always; the Cassandra store when `OMNI_TEST_CASSANDRA` names a
//! node (`make bench` starts the testbed's and sets it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use omni_api::{AppState, router};
use omni_jobs::JobService;
use omni_store::{LogLine, LogStream, Store};
use serde_json::json;

const CLIENTS: usize = 64;
const RUN: Duration = Duration::from_secs(5);
const LOG_BATCH: usize = 1000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("| store | submissions/s (64 clients) | p50 | p99 | log lines/s (batches of {LOG_BATCH}) |");
        println!("| --- | --- | --- | --- | --- |");
        {
            let data = tempfile::tempdir().unwrap();
            let embedded = omni_store_embedded::EmbeddedStore::open(
                data.path(),
                omni_store_embedded::EmbeddedConfig::default(),
            )
            .unwrap();
            run("embedded", Arc::new(embedded)).await;
            // Its files go before the next store is measured: the kernel would otherwise be
            // writing their dirty pages back while Cassandra syncs its commitlog.
        }
        if let Some(store) = cassandra().await {
            run("cassandra (1 node)", store).await;
        }
    });
}

/// The node `OMNI_TEST_CASSANDRA` names, keyspace `omni_bench`.
async fn cassandra() -> Option<Arc<dyn Store>> {
    let point = std::env::var("OMNI_TEST_CASSANDRA")
        .ok()
        .filter(|p| !p.is_empty())?;
    let mut config = omni_store_cassandra::CassandraConfig::new([point]);
    config.keyspace = "omni_bench".into();
    let store = omni_store_cassandra::CassandraStore::connect(&config)
        .await
        .expect("the Cassandra node in OMNI_TEST_CASSANDRA");
    Some(Arc::new(store))
}

async fn run(name: &str, store: Arc<dyn Store>) {
    let (submissions, p50, p99) = submissions(store.clone()).await;
    let lines = log_lines(store).await;
    println!(
        "| {name} | {submissions:.0} | {:.1} ms | {:.1} ms | {lines:.0} |",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}

/// Serves the real API on a loopback port and drives it with [`CLIENTS`] clients for [`RUN`].
async fn submissions(store: Arc<dyn Store>) -> (f64, Duration, Duration) {
    let (_plugins, registry) =
        omni_test_support::registry(omni_test_support::sandbox(json!({})), &["srpm"]);
    // Measured as a running server serves: from the plugin's pre-initialized snapshot.
    let srpm = registry.get("srpm").expect("srpm loads");
    omni_test_support::wait_until("srpm's snapshot", || srpm.is_prepared());
    let artifacts = tempfile::tempdir().unwrap();
    let jobs = JobService::new(
        store,
        Arc::clone(&registry) as _,
        omni_test_support::artifacts_in(artifacts.path()),
    );
    let app = router(AppState::new(jobs, registry));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/jobs", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let body = json!({"service": "bench", "task": "srpm",
        "params": {"spec": "Name: hello\nVersion: 1.0\nRelease: 1\nSummary: x\nLicense: MIT\n%description\nx\n",
                   "defines": {"dist": ".oe2403"}}})
    .to_string();
    // Warm up: connections, the plugin's first instances.
    drive(&http, &url, &body, Duration::from_millis(500)).await;
    let start = Instant::now();
    let mut latencies = drive(&http, &url, &body, RUN).await;
    let elapsed = start.elapsed();
    server.abort();
    latencies.sort();
    if std::env::var_os("OMNI_BENCH_DEBUG").is_some() {
        let sum: Duration = latencies.iter().sum();
        eprintln!(
            "n={} mean={:?} max={:?} elapsed={elapsed:?}",
            latencies.len(),
            sum / latencies.len() as u32,
            latencies.last()
        );
    }
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    (
        latencies.len() as f64 / elapsed.as_secs_f64(),
        at(0.5),
        at(0.99),
    )
}

async fn drive(http: &reqwest::Client, url: &str, body: &str, run: Duration) -> Vec<Duration> {
    let deadline = Instant::now() + run;
    let clients = (0..CLIENTS).map(|_| {
        let http = http.clone();
        let url = url.to_owned();
        let body = body.to_owned();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201, "{:?}", response.text().await);
                response.bytes().await.unwrap();
                latencies.push(sent.elapsed());
            }
            latencies
        })
    });
    // Spawned all at once, then awaited.
    let clients: Vec<_> = clients.collect();
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await.unwrap());
    }
    all
}

/// Lines per second written by 4 writers in batches of [`LOG_BATCH`], each for its own job.
async fn log_lines(store: Arc<dyn Store>) -> f64 {
    let start = Instant::now();
    let deadline = start + RUN;
    let writers = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let job = omni_store::new_job_id();
            let mut written = 0u64;
            while Instant::now() < deadline {
                let time = omni_store::now();
                let batch: Vec<LogLine> = (written..written + LOG_BATCH as u64)
                    .map(|seq| LogLine {
                        step: "build".into(),
                        time,
                        seq,
                        stream: LogStream::Stdout,
                        line: format!(
                            "+ gcc -O2 -g -pipe -Wall -fexceptions -c src/file{seq}.c -o build/file{seq}.o"
                        ),
                    })
                    .collect();
                store.append_logs(job, &batch).await.unwrap();
                written += LOG_BATCH as u64;
            }
            written
        })
    });
    let writers: Vec<_> = writers.collect();
    let mut total = 0;
    for writer in writers {
        total += writer.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}
