//! The cases of [`ArtifactIndex`](crate::ArtifactIndex): records by job and name, in pages,
//! replaced by name, an event per batch, refused for jobs that ended or do not exist, gone
//! with the job.

use std::sync::Arc;

use chrono::TimeDelta;

use super::events::read_until;
use super::{create, job, move_to, unique_service};
use crate::model::*;
use crate::{JobState, Store, StoreError, new_job_id, now};

fn artifact(name: &str, size: u64, step: Option<&str>) -> Artifact {
    Artifact {
        name: name.to_owned(),
        size,
        sha256: format!("{size:064x}"),
        media_type: "application/x-rpm".into(),
        step: step.map(str::to_owned),
        // Stores keep milliseconds.
        created_at: chrono::SubsecRound::trunc_subsecs(now(), 3),
    }
}

async fn read_all(store: &Arc<dyn Store>, id: crate::JobId, limit: usize) -> Vec<Artifact> {
    let mut query = ArtifactQuery { after: None, limit };
    let mut all = Vec::new();
    loop {
        let page = store.list_artifacts(id, &query).await.expect("list");
        assert!(page.items.len() <= limit, "a page over its limit");
        all.extend(page.items);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return all,
        }
    }
}

/// Batches of artifacts are read back whole, by name in byte order and in pages; a name
/// recorded again is replaced; each batch is one `job.artifacts` event with its count and
/// bytes; one artifact is read by its name.
pub async fn artifacts_are_recorded_by_name_and_announced(store: Arc<dyn Store>) {
    let service = unique_service();
    let head = store.events_head().await.unwrap();
    let created = create(&store, &job(&service, "createrepo", "default")).await;
    let running = move_to(
        &store,
        created.id,
        &[JobState::Pending, JobState::Queued, JobState::Running],
    )
    .await;
    let mut first: Vec<Artifact> = (0..150)
        .map(|i| {
            artifact(
                &format!("Packages/p/pkg-{i:03}-1.0-1.x86_64.rpm"),
                i,
                Some("build"),
            )
        })
        .collect();
    first.push(artifact("repodata/repomd.xml", 3000, Some("createrepo")));
    // Names rpm and createrepo make: a plus, spaces, non-ASCII letters, a colon.
    first.push(artifact("Packages/g/gcc-c++-14.2-1.x86_64.rpm", 7, None));
    first.push(artifact("docs/read me ü.txt", 8, None));
    first.push(artifact("epoch:1 name", 9, None));
    let event = store.record_artifacts(running.id, &first).await.unwrap();
    assert_eq!(event.kind(), omni_core::EventKind::Artifacts);
    assert_eq!(event.name(), "job.artifacts");
    assert_eq!(
        event.artifacts,
        Some(ArtifactsStored::of(&first)),
        "the event counts the batch"
    );
    assert_eq!((event.job_id, event.to), (running.id, JobState::Running));

    // A second batch replaces one name and adds one.
    let mut replaced = artifact("repodata/repomd.xml", 3100, Some("createrepo"));
    replaced.created_at += TimeDelta::seconds(1);
    let second = vec![
        replaced.clone(),
        artifact("repodata/primary.xml.zst", 10, None),
    ];
    store.record_artifacts(running.id, &second).await.unwrap();

    let mut expected: Vec<Artifact> = first
        .iter()
        .filter(|a| a.name != "repodata/repomd.xml")
        .chain(&second)
        .cloned()
        .collect();
    expected.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    for limit in [1, 7, 100, 1000] {
        let all = read_all(&store, running.id, limit).await;
        assert_eq!(all, expected, "pages of {limit}");
    }
    assert_eq!(
        store
            .get_artifact(running.id, "repodata/repomd.xml")
            .await
            .unwrap(),
        Some(replaced)
    );
    assert_eq!(
        store.get_artifact(running.id, "repodata").await.unwrap(),
        None
    );
    assert_eq!(
        store.get_artifact(running.id, "nothing").await.unwrap(),
        None
    );

    // A job without artifacts has an empty page.
    let other = create(&store, &job(&service, "createrepo", "default")).await;
    assert!(read_all(&store, other.id, 10).await.is_empty());

    let filter = EventFilter {
        service: Some(service.clone()),
        ..EventFilter::default()
    };
    // Creation, queued, running, two batches; then the creation of `other`.
    let (events, _) = read_until(&store, &head, &filter, 100, 6).await;
    let names: Vec<&str> = events.iter().map(Event::name).collect();
    assert_eq!(
        names,
        [
            "job.pending",
            "job.queued",
            "job.running",
            "job.artifacts",
            "job.artifacts",
            "job.pending"
        ]
    );
    assert_eq!(
        events[4].artifacts,
        Some(ArtifactsStored {
            count: 2,
            bytes: 3110
        })
    );
}

/// A job that has ended takes no artifacts, nor does one that does not exist; a purge takes
/// the records with the job.
pub async fn artifacts_go_with_their_job(store: Arc<dyn Store>) {
    let service = unique_service();
    let created = create(&store, &job(&service, "rpm", "default")).await;
    move_to(
        &store,
        created.id,
        &[JobState::Pending, JobState::Queued, JobState::Running],
    )
    .await;
    let made = vec![artifact("hello-1.0-1.x86_64.rpm", 1234, Some("build"))];
    store.record_artifacts(created.id, &made).await.unwrap();
    move_to(
        &store,
        created.id,
        &[JobState::Running, JobState::Succeeded],
    )
    .await;

    let late = vec![artifact("late.rpm", 1, None)];
    match store.record_artifacts(created.id, &late).await {
        Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, JobState::Succeeded),
        other => panic!("an ended job took artifacts: {other:?}"),
    }
    assert_eq!(read_all(&store, created.id, 10).await, made);

    let unknown = new_job_id();
    match store.record_artifacts(unknown, &late).await {
        Err(StoreError::NotFound(id)) => assert_eq!(id, unknown),
        other => panic!("an unknown job took artifacts: {other:?}"),
    }
    assert!(read_all(&store, unknown, 10).await.is_empty());

    assert!(store.purge_job(created.id).await.unwrap());
    assert!(read_all(&store, created.id, 10).await.is_empty());
    assert_eq!(
        store
            .get_artifact(created.id, "hello-1.0-1.x86_64.rpm")
            .await
            .unwrap(),
        None
    );
}
