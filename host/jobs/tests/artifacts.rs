//! A job's artifacts through the job service over an embedded store and a directory artifact
//! store: their bytes go with a purge, and with the store's retention through the sweep, which
//! leaves the artifacts of jobs that are still there.

use std::sync::Arc;

use omni_store::{Created, JobState, Store};

/// A running job in `store`, moved by `jobs`, with one artifact of `bytes`.
async fn job_with_artifact(
    store: &Arc<dyn Store>,
    jobs: &omni_jobs::JobService,
    bytes: &'static [u8],
) -> omni_store::JobId {
    let job = omni_test_support::pending_job("t", "srpm", "default");
    let Created::New(job) = store.create_job(&job, None).await.unwrap() else {
        panic!("a new job")
    };
    jobs.transition(job.id, JobState::Queued, None)
        .await
        .unwrap();
    jobs.transition(job.id, JobState::Running, None)
        .await
        .unwrap();
    let body: omni_artifacts::ByteStream = Box::pin(futures::stream::once(async move {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(bytes))
    }));
    let artifact = jobs
        .put_artifact(
            job.id,
            "out/a.rpm",
            None,
            body,
            omni_artifacts::PutLimits::default(),
        )
        .await
        .unwrap();
    jobs.record_artifacts(job.id, &[artifact]).await.unwrap();
    jobs.transition(job.id, JobState::Succeeded, None)
        .await
        .unwrap();
    job.id
}

async fn objects(jobs: &omni_jobs::JobService, id: omni_store::JobId) -> usize {
    jobs.artifact_store()
        .list(&omni_jobs::artifacts_prefix(id))
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn the_bytes_go_with_a_purge_and_with_the_stores_retention() {
    let data = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        omni_store_embedded::EmbeddedStore::open(data.path(), Default::default()).unwrap(),
    );
    let (_plugins, jobs) = omni_test_support::job_service_over(Arc::clone(&store));
    let purged = job_with_artifact(&store, &jobs, b"purged").await;
    let expired = job_with_artifact(&store, &jobs, b"expired").await;
    let kept = job_with_artifact(&store, &jobs, b"kept").await;
    for id in [purged, expired, kept] {
        assert_eq!(objects(&jobs, id).await, 1);
    }

    // A purge takes the bytes with it.
    jobs.purge(purged).await.unwrap();
    assert_eq!(objects(&jobs, purged).await, 0);

    // The store's retention removes a record without the service (a sweep, a TTL).
    assert!(store.purge_job(expired).await.unwrap());
    // Jobs younger than the cutoff are not looked at.
    let before = omni_store::id_time(expired).unwrap();
    assert_eq!(jobs.sweep_artifacts(before).await.unwrap(), 0);
    assert_eq!(objects(&jobs, expired).await, 1);
    // Older ones whose record is gone lose their bytes; the others keep them.
    let later = omni_store::now() + chrono::TimeDelta::seconds(1);
    assert_eq!(jobs.sweep_artifacts(later).await.unwrap(), 1);
    assert_eq!(objects(&jobs, expired).await, 0);
    assert_eq!(objects(&jobs, kept).await, 1);
    assert_eq!(jobs.sweep_artifacts(later).await.unwrap(), 0);
    // What is not a job's directory is left alone.
    let stray: omni_artifacts::ByteStream = Box::pin(futures::stream::once(async {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x"))
    }));
    jobs.artifact_store()
        .put("jobs/not-a-job/x", stray, Default::default())
        .await
        .unwrap();
    assert_eq!(jobs.sweep_artifacts(later).await.unwrap(), 0);
    assert_eq!(
        jobs.artifact_store()
            .list("jobs/not-a-job")
            .await
            .unwrap()
            .len(),
        1
    );
}
