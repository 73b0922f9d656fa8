//! What only the embedded store does: its file survives the process, a second process cannot
//! open it, and the sweeper removes what has expired.

use std::time::Duration;

use chrono::TimeDelta;
use omni_store::{
    Created, IdempotencyKey, Job, JobQuery, JobState, JobStore, LogLine, LogQuery, LogStore,
    LogStream, PluginRef, StoreError, Transition, new_job_id, now,
};
use omni_store_embedded::{EmbeddedConfig, EmbeddedStore};

fn job() -> Job {
    let created = now();
    Job {
        rendering: None,
        id: new_job_id(),
        service: "obs".into(),
        task: "srpm".into(),
        domain: "default".into(),
        arch: "aarch64".into(),
        state: JobState::Pending,
        params: serde_json::json!({"spec": "Name: hello"}),
        plugin: PluginRef {
            task: "srpm".into(),
            version: "0.1.0".into(),
            digest: "00".repeat(32),
            templates: None,
        },
        engine: None,
        message: None,
        steps: vec![],
        created_at: created,
        updated_at: created,
        started_at: None,
        finished_at: None,
    }
}

#[tokio::test]
async fn what_was_acknowledged_is_there_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut made = Vec::new();
    {
        let store = EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).unwrap();
        let writes = (0..200).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.create_job(&job(), None).await })
        });
        for write in writes {
            made.push(write.await.unwrap().unwrap().job().clone());
        }
    }
    // Dropping the last handle closes the file: it opens again at once.
    let store = EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).unwrap();
    for job in &made {
        assert_eq!(store.get_job(job.id).await.unwrap().as_ref(), Some(job));
    }
}

/// A dropped store has closed its file when the drop returns (its writer thread has let go of
/// the database): a server restarted in the same process opens it at once.
#[tokio::test]
async fn a_dropped_store_is_closed_when_the_drop_returns() {
    let dir = tempfile::tempdir().unwrap();
    for written in 1..=20 {
        let store = EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).unwrap();
        store.create_job(&job(), None).await.unwrap();
        let listed = store.list_jobs(&JobQuery::default()).await.unwrap();
        assert_eq!(listed.items.len(), written);
    }
}

#[tokio::test]
async fn a_file_in_use_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).unwrap();
    match EmbeddedStore::open(dir.path(), EmbeddedConfig::default()) {
        Err(StoreError::Unavailable { message, .. }) => {
            assert!(message.contains("omni.redb"), "{message}");
        }
        other => panic!("expected the second open to fail, got {other:?}"),
    }
}

#[tokio::test]
async fn not_a_store_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("omni.redb"), b"not a database at all").unwrap();
    assert!(matches!(
        EmbeddedStore::open(dir.path(), EmbeddedConfig::default()),
        Err(StoreError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn the_sweep_removes_finished_jobs_after_their_ttl_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig {
        job_ttl: Duration::from_secs(3600),
        idempotency_ttl: Duration::from_secs(60),
        ..EmbeddedConfig::default()
    };
    let store = EmbeddedStore::open(dir.path(), config).unwrap();
    let key = IdempotencyKey::new("k1", b"body");
    let finished = store.create_job(&job(), Some(&key)).await.unwrap();
    let finished = finished.job().clone();
    store
        .transition(
            finished.id,
            &Transition::new(JobState::Pending, JobState::Cancelled),
        )
        .await
        .unwrap();
    store
        .append_logs(
            finished.id,
            &[LogLine {
                step: "fetch".into(),
                time: now(),
                seq: 0,
                stream: LogStream::Stdout,
                line: "hello".into(),
            }],
        )
        .await
        .unwrap();
    let running = store.create_job(&job(), None).await.unwrap().job().clone();

    // Before the TTL: nothing goes.
    assert_eq!(store.sweep(chrono::Utc::now()).await.unwrap(), 0);
    assert!(store.get_job(finished.id).await.unwrap().is_some());

    let later = chrono::Utc::now() + TimeDelta::hours(2);
    assert_eq!(store.sweep(later).await.unwrap(), 1);
    assert_eq!(store.get_job(finished.id).await.unwrap(), None);
    assert!(store.history(finished.id).await.unwrap().is_empty());
    let logs = LogQuery {
        step: None,
        after: None,
        limit: 10,
    };
    assert!(
        store
            .read_logs(finished.id, &logs)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // A job that has not ended stays, however old.
    assert!(store.get_job(running.id).await.unwrap().is_some());
    let listed = store.list_jobs(&JobQuery::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    // The idempotency key expired too: the same key makes a new job.
    assert!(matches!(
        store.create_job(&job(), Some(&key)).await.unwrap(),
        Created::New(_)
    ));
}
