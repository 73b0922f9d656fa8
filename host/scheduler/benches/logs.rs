//! Log collection, printed for the README (`make bench`).
//!
//! A job of the hostile fixture (`print`) prints `line 1` ... `line N` as fast as `seq` can,
//! on the local engine; the scheduler collects it (lines made, numbered, batched, written to
//! the embedded store, each batch published to followers). Two runs:
//! 1. no follower: lines per second from the job's start to its end (its last line stored);
//! 2. the same with F followers of the job (`JobService::follow_logs`, in this process: the
//!    SSE encoding and the HTTP connections are not in the figure), each reading every line;
//!    lines per second again, and the lag of what followers get: when a follower got a batch
//!    minus the time the engine read its oldest line (the line's own time, in milliseconds),
//!    p50/p99 over every batch of every follower. `seq` prints faster than lines are stored,
//!    so at full speed this lag is mostly the lines' wait in the engine before collection,
//!    which a follower shares with the store;
//! 3. F followers again, the job printing in bursts of 1,000 lines every 100 ms (about 10,000
//!    lines/s, below what collection takes): the lag of live following.
//!
//!   cargo bench -p omni-scheduler --bench logs [-- LINES FOLLOWERS]   (1,000,000 and 100)

mod common;

use std::time::Instant;

use futures::StreamExt;
use omni_jobs::{FollowEvent, JobService, Submission};
use omni_store::JobState;
use serde_json::json;

use common::{local_scheduler, percentile};

/// Prints the lag figures of one run.
fn report_lag(name: &str, mut lags: Vec<i64>) {
    lags.sort_unstable();
    println!(
        "{name:<37} p50 {} ms   p99 {} ms   max {} ms   ({} batches received)",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().unwrap(),
        lags.len()
    );
}

async fn submit(jobs: &JobService, lines: u64, burst: u64) -> omni_store::JobId {
    jobs.submit(Submission {
        service: "bench".into(),
        task: "hostile".into(),
        domain: "default".into(),
        arch: std::env::consts::ARCH.into(),
        params: json!({"behaviour": "print", "lines": lines, "pause": 0, "burst": burst}),
        idempotency: None,
        plugin: None,
    })
    .await
    .unwrap()
    .job()
    .id
}

/// Submits a job printing `lines` lines and waits for its end: the seconds from `running` to
/// the end, and each follower's lags (ms).
async fn run(jobs: &JobService, lines: u64, burst: u64, followers: usize) -> (f64, Vec<i64>) {
    let mut events = jobs.subscribe();
    let id = submit(jobs, lines, burst).await;
    let mut readers = Vec::new();
    for _ in 0..followers {
        let stream = jobs.follow_logs(id, None, None).await.unwrap();
        readers.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut lags = Vec::new();
            let mut got = 0u64;
            while let Some(event) = stream.next().await {
                match event.unwrap() {
                    FollowEvent::Lines(batch) => {
                        let now = chrono::Utc::now();
                        got += batch.len() as u64;
                        // The batch's oldest line: the most behind of them.
                        lags.push((now - batch[0].time).num_milliseconds());
                    }
                    FollowEvent::End { state } => {
                        assert_eq!(state, JobState::Succeeded);
                        break;
                    }
                    FollowEvent::Lagged { after } => panic!("a follower lagged after {after:?}"),
                }
            }
            assert_eq!(got, lines + 1, "a follower missed lines");
            lags
        }));
    }
    let mut started = None;
    loop {
        let event = events.recv().await.unwrap();
        if event.job_id != id {
            continue;
        }
        if event.to == JobState::Running {
            started = Some(Instant::now());
        }
        if event.to.is_final() {
            assert_eq!(event.to, JobState::Succeeded, "{event:?}");
            break;
        }
    }
    let seconds = started
        .expect("running before the end")
        .elapsed()
        .as_secs_f64();
    let mut lags = Vec::new();
    for reader in readers {
        lags.extend(reader.await.unwrap());
    }
    (seconds, lags)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let lines = args.first().copied().unwrap_or(1_000_000);
    let followers = args.get(1).copied().unwrap_or(100) as usize;
    let (_dirs, jobs) = omni_test_support::job_service(&["hostile"]);
    // No cap in the way of the figure.
    let limits = omni_jobs::LogLimits {
        max_job_bytes: u64::MAX,
        max_job_lines: u64::MAX,
        // Every follower keeps up (this measures lag, not drops): room for the whole log.
        follower_batches: 65_536,
        ..omni_jobs::LogLimits::default()
    };
    let jobs = jobs.with_log_limits(limits);
    let (_root, _handle) = local_scheduler(&jobs).await;
    let (seconds, _) = run(&jobs, lines, 0, 0).await;
    println!(
        "collected and stored, no follower     {:>10.0} lines/s   ({lines} lines in {seconds:.2} s)",
        lines as f64 / seconds
    );
    let (seconds, lags) = run(&jobs, lines, 0, followers).await;
    println!(
        "collected and stored, {followers} followers  {:>10.0} lines/s   ({lines} lines in {seconds:.2} s)",
        lines as f64 / seconds
    );
    report_lag("follower lag (oldest line of a batch)", lags);
    // Below what collection takes: bursts of 1,000 lines every 100 ms (about 10,000 lines/s).
    let paced = (lines / 10).max(1000);
    let (seconds, lags) = run(&jobs, paced, 1000, followers).await;
    println!(
        "paced, {followers} followers              {:>10.0} lines/s   ({paced} lines in {seconds:.2} s)",
        paced as f64 / seconds
    );
    report_lag("follower lag, paced", lags);
}
