//! The node dies and comes back: calls fail as unavailable in the meantime (no panic, no hang
//! past the request timeout), and the same store works again afterwards with nothing lost.
//!
//! Its own test binary, and it owns the node (an exclusive lock every other Cassandra test
//! binary shares) while it kills it. It always acts on the project's testbed node, even when
//! `OMNI_TEST_CASSANDRA` points elsewhere: it cannot kill someone else's node.

use std::sync::Arc;
use std::time::{Duration, Instant};

use omni_store::{
    Created, Job, JobState, LogLine, LogQuery, LogStream, PluginRef, Step, StepState, Store,
    StoreError, new_job_id, now,
};
use omni_store_cassandra::CassandraStore;

mod common;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Starts the node again if the test fails while it is down.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::panic::catch_unwind(|| common::testbed(&["start"], true));
        }
    }
}

fn job(service: &str, i: usize) -> Job {
    let created = now();
    Job {
        rendering: None,
        id: new_job_id(),
        service: service.into(),
        task: "rpm".into(),
        domain: "default".into(),
        arch: "x86_64".into(),
        state: JobState::Pending,
        params: serde_json::json!({"name": format!("pkg-{i}")}),
        plugin: PluginRef {
            task: "rpm".into(),
            version: "0.1.0".into(),
            digest: "cd".repeat(32),
            templates: None,
        },
        engine: None,
        message: None,
        steps: vec![Step {
            name: "build".into(),
            state: StepState::Pending,
        }],
        created_at: created,
        updated_at: created,
        started_at: None,
        finished_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_after_the_node_restarts() {
    let _node = common::own_the_node();
    let point = common::testbed(&["start"], true);
    let mut config = common::config(common::KEYSPACE);
    config.contact_points = vec![point];
    config.request_timeout = REQUEST_TIMEOUT;
    config.connect_timeout = Duration::from_secs(2);
    let store: Arc<dyn Store> = Arc::new(CassandraStore::connect(&config).await.unwrap());

    let service = format!(
        "restart-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut jobs = Vec::new();
    for i in 0..20 {
        let job = job(&service, i);
        assert!(matches!(
            store.create_job(&job, None).await.unwrap(),
            Created::New(_)
        ));
        jobs.push(job);
    }
    let lines: Vec<LogLine> = (0..100)
        .map(|seq| LogLine {
            step: "build".into(),
            time: now(),
            seq,
            stream: LogStream::Stdout,
            line: format!("line {seq}"),
        })
        .collect();
    store.append_logs(jobs[0].id, &lines).await.unwrap();

    let _restart = Restart;
    common::testbed(&["kill"], true);

    // Down: every call is unavailable, answered within the request timeout (plus scheduling).
    for _ in 0..3 {
        let started = Instant::now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT * 3, store.get_job(jobs[1].id))
            .await
            .expect("a call hung while the node was down");
        assert!(
            matches!(answer, Err(StoreError::Unavailable { .. })),
            "{answer:?}"
        );
        assert!(
            started.elapsed() <= REQUEST_TIMEOUT + Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
    }
    let late = job(&service, 99);
    let answer = tokio::time::timeout(REQUEST_TIMEOUT * 3, store.create_job(&late, None))
        .await
        .expect("a create hung while the node was down");
    assert!(
        matches!(answer, Err(StoreError::Unavailable { .. })),
        "{answer:?}"
    );
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable { .. })
    ));

    common::testbed(&["start"], true);

    // Back: the same store works again once the driver has reconnected.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match store.ping().await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("the store did not recover: {e}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for job in &jobs {
        let read = loop {
            match store.get_job(job.id).await {
                Ok(read) => break read,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("not yet: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("reading {} after the restart: {e}", job.id),
            }
        };
        assert_eq!(read.as_ref(), Some(job), "job {} after the restart", job.id);
    }
    let logs = store
        .read_logs(
            jobs[0].id,
            &LogQuery {
                step: None,
                after: None,
                limit: 1000,
            },
        )
        .await
        .unwrap();
    assert_eq!(logs.items, lines);
    store
        .transition(
            jobs[2].id,
            &omni_store::Transition::new(JobState::Pending, JobState::Queued),
        )
        .await
        .unwrap();
    let after = job(&service, 100);
    store.create_job(&after, None).await.unwrap();
    assert_eq!(store.get_job(after.id).await.unwrap(), Some(after));
}
