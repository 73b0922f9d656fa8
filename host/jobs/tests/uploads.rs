//! Uploads' expiry through the job service over an embedded store and a directory artifact
//! store: the sweep deletes the bytes no record keeps, only once two sweeps in a row found them
//! so, and leaves those of uploads still kept.

use std::collections::BTreeSet;
use std::sync::Arc;

use omni_store::{Store, UPLOAD_GRACE, Upload};

fn stream(bytes: &'static [u8]) -> omni_artifacts::ByteStream {
    Box::pin(futures::stream::once(async move {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(bytes))
    }))
}

async fn keys(jobs: &omni_jobs::JobService) -> Vec<String> {
    jobs.artifact_store()
        .list("uploads")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

#[tokio::test]
async fn the_sweep_deletes_only_what_no_record_keeps_after_two_sweeps() {
    let data = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        omni_store_embedded::EmbeddedStore::open(data.path(), Default::default()).unwrap(),
    );
    let (_plugins, jobs) = omni_test_support::job_service_over(Arc::clone(&store));
    let (kept, new) = jobs.put_upload("a", stream(b"kept"), None).await.unwrap();
    assert!(new);
    let (other, _) = jobs
        .put_upload("b", stream(b"expired"), None)
        .await
        .unwrap();
    // Bytes stored without a record (a replica that died before writing it), and bytes whose
    // record expired past its grace (an upload no job kept).
    let orphan = "ab".repeat(32);
    let expired = other.sha256.clone();
    for sha256 in [&orphan, &expired] {
        jobs.artifact_store()
            .put(
                &omni_jobs::upload_key("a", sha256),
                stream(b"expired"),
                Default::default(),
            )
            .await
            .unwrap();
    }
    let past = omni_store::now()
        - chrono::TimeDelta::from_std(UPLOAD_GRACE).unwrap()
        - chrono::TimeDelta::minutes(1);
    store
        .put_upload(&Upload {
            domain: "a".into(),
            sha256: expired.clone(),
            size: 7,
            created_at: past,
            expires_at: past,
        })
        .await
        .unwrap();
    assert_eq!(keys(&jobs).await.len(), 4);

    // The first sweep only notes them; the second deletes them.
    let mut suspects = BTreeSet::new();
    assert_eq!(jobs.sweep_uploads(&mut suspects).await.unwrap(), 0);
    assert_eq!(suspects.len(), 2, "{suspects:?}");
    assert_eq!(jobs.sweep_uploads(&mut suspects).await.unwrap(), 2);
    let left: BTreeSet<String> = keys(&jobs).await.into_iter().collect();
    let want: BTreeSet<String> = [
        omni_jobs::upload_key("a", &kept.sha256),
        omni_jobs::upload_key("b", &other.sha256),
    ]
    .into();
    assert_eq!(left, want);
    assert!(jobs.get_upload("a", &expired).await.is_err());
    assert!(jobs.get_upload("b", &other.sha256).await.is_ok());
}
