//! The cases of [`JobStore`](crate::JobStore): creation (with idempotency keys), listings,
//! transitions and their races, engines, steps, purges.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use super::{create, job, lines, list_all, log_query, move_to, unique_service};
use crate::model::*;
use crate::{JobId, JobState, StepState, Store, StoreError, new_job_id};

/// A job reads back exactly as written; its history starts with its creation.
pub async fn create_and_get(store: Arc<dyn Store>) {
    let job = job(&unique_service(), "srpm", "default");
    let stored = create(&store, &job).await;
    assert_eq!(stored, job);
    assert_eq!(store.get_job(job.id).await.unwrap(), Some(job.clone()));
    assert_eq!(store.get_job(new_job_id()).await.unwrap(), None);
    let history = store.history(job.id).await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].seq, 0);
    assert_eq!(history[0].from, None);
    assert_eq!(history[0].to, JobState::Pending);
    assert_eq!(history[0].time, job.created_at);
    store.ping().await.unwrap();
}

/// The same key and request again returns the first job and writes nothing.
pub async fn idempotent_create_returns_the_first_job(store: Arc<dyn Store>) {
    let service = unique_service();
    let key = IdempotencyKey::new(format!("key-{service}"), b"the request");
    let first = job(&service, "rpm", "default");
    let again = job(&service, "rpm", "default");
    assert_eq!(
        store.create_job(&first, Some(&key)).await.unwrap(),
        Created::New(first.clone())
    );
    assert_eq!(
        store.create_job(&again, Some(&key)).await.unwrap(),
        Created::Existing(first.clone())
    );
    assert_eq!(store.get_job(again.id).await.unwrap(), None);
    let listed = list_all(
        &store,
        JobQuery {
            service: Some(service),
            ..JobQuery::default()
        },
    )
    .await;
    assert_eq!(listed, vec![first]);
}

/// The same key with another request is a conflict naming the first job.
pub async fn idempotency_key_with_another_request_conflicts(store: Arc<dyn Store>) {
    let service = unique_service();
    let first = job(&service, "rpm", "default");
    let key = format!("key-{service}");
    store
        .create_job(&first, Some(&IdempotencyKey::new(&key, b"one")))
        .await
        .unwrap();
    let other = job(&service, "rpm", "default");
    match store
        .create_job(&other, Some(&IdempotencyKey::new(&key, b"two")))
        .await
    {
        Err(StoreError::IdempotencyConflict { key: k, job_id }) => {
            assert_eq!(k, key);
            assert_eq!(job_id, first.id);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get_job(other.id).await.unwrap(), None);
}

/// Racing creates with one key: one job is made and every caller gets it.
pub async fn racing_idempotent_creates_make_one_job(store: Arc<dyn Store>) {
    let service = unique_service();
    let key = IdempotencyKey::new(format!("key-{service}"), b"same");
    let attempts = (0..16).map(|_| {
        let store = store.clone();
        let key = key.clone();
        let job = job(&service, "srpm", "default");
        tokio::spawn(async move { store.create_job(&job, Some(&key)).await })
    });
    let results: Vec<Created> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let new = results
        .iter()
        .filter(|c| matches!(c, Created::New(_)))
        .count();
    assert_eq!(new, 1, "{results:?}");
    let ids: HashSet<JobId> = results.iter().map(|c| c.job().id).collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    let listed = list_all(
        &store,
        JobQuery {
            service: Some(service),
            ..JobQuery::default()
        },
    )
    .await;
    assert_eq!(listed.len(), 1);
}

/// Listing pages go newest first and, followed to the end, hold every job once.
pub async fn listing_is_newest_first_and_pages_cover_everything(store: Arc<dyn Store>) {
    let service = unique_service();
    let mut made = HashSet::new();
    for i in 0..25 {
        let job = job(&service, if i % 2 == 0 { "rpm" } else { "srpm" }, "default");
        made.insert(create(&store, &job).await.id);
    }
    let query = JobQuery {
        service: Some(service.clone()),
        limit: 7,
        ..JobQuery::default()
    };
    let listed = list_all(&store, query).await;
    let ids: Vec<JobId> = listed.iter().map(|j| j.id).collect();
    let unique: HashSet<JobId> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a job came twice: {ids:?}");
    assert_eq!(unique, made);
    for pair in listed.windows(2) {
        assert!(
            pair[0].created_at >= pair[1].created_at,
            "not newest first: {} then {}",
            pair[0].created_at,
            pair[1].created_at
        );
    }
    let first = store
        .list_jobs(&JobQuery {
            service: Some(service),
            limit: 1,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(first.items.len(), 1);
    assert_eq!(first.next, Some(first.items[0].id));
}

/// Every filter narrows the listing to exactly the matching jobs.
pub async fn listing_filters(store: Arc<dyn Store>) {
    let service = unique_service();
    let rpm = create(&store, &job(&service, "rpm", "default")).await;
    let srpm = create(&store, &job(&service, "srpm", "default")).await;
    let other_domain = create(&store, &job(&service, "rpm", "openeuler")).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let later = create(&store, &job(&service, "iso", "default")).await;
    move_to(&store, srpm.id, &[JobState::Pending, JobState::Queued]).await;

    let ids = |jobs: Vec<Job>| jobs.into_iter().map(|j| j.id).collect::<HashSet<_>>();
    let base = JobQuery {
        service: Some(service.clone()),
        ..JobQuery::default()
    };
    let cases = [
        (
            JobQuery {
                task: Some("rpm".into()),
                ..base.clone()
            },
            vec![rpm.id, other_domain.id],
        ),
        (
            JobQuery {
                domain: Some("openeuler".into()),
                ..base.clone()
            },
            vec![other_domain.id],
        ),
        (
            // The caller's readable domains (auth), alone and with a domain named.
            JobQuery {
                domains: Some(["openeuler".to_owned(), "fedora".to_owned()].into()),
                ..base.clone()
            },
            vec![other_domain.id],
        ),
        (
            JobQuery {
                domain: Some("default".into()),
                domains: Some(["openeuler".to_owned()].into()),
                ..base.clone()
            },
            vec![],
        ),
        (
            JobQuery {
                state: Some(JobState::Queued),
                ..base.clone()
            },
            vec![srpm.id],
        ),
        (
            JobQuery {
                since: Some(later.created_at),
                ..base.clone()
            },
            vec![later.id],
        ),
        (
            JobQuery {
                until: Some(later.created_at),
                ..base.clone()
            },
            vec![rpm.id, srpm.id, other_domain.id],
        ),
        (
            JobQuery {
                task: Some("rpm".into()),
                domain: Some("default".into()),
                state: Some(JobState::Pending),
                ..base.clone()
            },
            vec![rpm.id],
        ),
        (
            JobQuery {
                service: Some(unique_service()),
                ..base.clone()
            },
            vec![],
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(
            ids(list_all(&store, query.clone()).await),
            expected.into_iter().collect(),
            "{query:?}"
        );
    }
}

/// Only moves in the table are written, and only from the state the job is in.
pub async fn transitions_follow_the_table(store: Arc<dyn Store>) {
    let job = create(&store, &job(&unique_service(), "rpm", "default")).await;
    // Not in the table: nothing is written.
    match store
        .transition(
            job.id,
            &Transition::new(JobState::Pending, JobState::Running),
        )
        .await
    {
        Err(StoreError::Illegal(_)) => {}
        other => panic!("expected an illegal transition, got {other:?}"),
    }
    // In the table, from the wrong state: a conflict naming the actual one.
    match store
        .transition(
            job.id,
            &Transition::new(JobState::Queued, JobState::Running),
        )
        .await
    {
        Err(StoreError::Conflict {
            actual: JobState::Pending,
            expected: JobState::Queued,
            ..
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    match store
        .transition(
            new_job_id(),
            &Transition::new(JobState::Pending, JobState::Queued),
        )
        .await
    {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected not found, got {other:?}"),
    }

    let queued = Transition::new(JobState::Pending, JobState::Queued)
        .message("waiting for capacity")
        .engine("local");
    let (after, change) = store.transition(job.id, &queued).await.unwrap();
    assert_eq!(after.state, JobState::Queued);
    assert_eq!(after.message.as_deref(), Some("waiting for capacity"));
    assert_eq!(after.engine.as_deref(), Some("local"));
    assert_eq!(after.updated_at, queued.time);
    assert_eq!(change.seq, 1);
    assert_eq!(change.from, Some(JobState::Pending));

    let running = Transition::new(JobState::Queued, JobState::Running);
    let (after, _) = store.transition(job.id, &running).await.unwrap();
    assert_eq!(after.started_at, Some(running.time));
    assert_eq!(
        after.message.as_deref(),
        Some("waiting for capacity"),
        "a transition without a message keeps the last one"
    );
    let failed = Transition::new(JobState::Running, JobState::Failed).message("exit code 1");
    let (after, _) = store.transition(job.id, &failed).await.unwrap();
    assert_eq!(after.finished_at, Some(failed.time));
    assert!(after.steps.iter().all(|s| s.state == StepState::Skipped));
    assert_eq!(store.get_job(job.id).await.unwrap(), Some(after));

    // Nothing leaves a final state.
    for to in JobState::ALL {
        assert!(
            store
                .transition(job.id, &Transition::new(JobState::Failed, to))
                .await
                .is_err()
        );
    }
    let history = store.history(job.id).await.unwrap();
    let moves: Vec<(Option<JobState>, JobState)> = history.iter().map(|c| (c.from, c.to)).collect();
    assert_eq!(
        moves,
        vec![
            (None, JobState::Pending),
            (Some(JobState::Pending), JobState::Queued),
            (Some(JobState::Queued), JobState::Running),
            (Some(JobState::Running), JobState::Failed),
        ]
    );
    assert_eq!(history[3].message.as_deref(), Some("exit code 1"));
    assert!(history.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
}

/// A cancel racing a completion: exactly one wins, and the history says which.
pub async fn racing_cancel_and_completion_have_one_winner(store: Arc<dyn Store>) {
    let service = unique_service();
    let mut rounds = Vec::new();
    for _ in 0..12 {
        let job = create(&store, &job(&service, "rpm", "default")).await;
        move_to(
            &store,
            job.id,
            &[JobState::Pending, JobState::Queued, JobState::Running],
        )
        .await;
        rounds.push(job.id);
    }
    let races = rounds.iter().map(|&id| {
        let cancel = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .transition(id, &Transition::new(JobState::Running, JobState::Cancelled))
                    .await
            })
        };
        let complete = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .transition(id, &Transition::new(JobState::Running, JobState::Succeeded))
                    .await
            })
        };
        async move { (id, cancel.await.unwrap(), complete.await.unwrap()) }
    });
    for (id, cancel, complete) in join_all(races).await {
        let winner = match (&cancel, &complete) {
            (Ok(_), Err(StoreError::Conflict { .. })) => JobState::Cancelled,
            (Err(StoreError::Conflict { .. }), Ok(_)) => JobState::Succeeded,
            _ => panic!("not exactly one winner: {cancel:?} / {complete:?}"),
        };
        let job = store.get_job(id).await.unwrap().unwrap();
        assert_eq!(job.state, winner);
        let history = store.history(id).await.unwrap();
        assert_eq!(history.len(), 4, "{history:?}");
        assert_eq!(history[3].to, winner);
    }
}

/// A queued job gets its engine (and what was rendered for it) before it is submitted, with no
/// state change; a job in any other state refuses one.
pub async fn an_engine_is_assigned_to_queued_jobs_only(store: Arc<dyn Store>) {
    let job = create(&store, &job(&unique_service(), "rpm", "default")).await;
    assert!(matches!(
        store.assign_engine(job.id, "cluster-a", None).await,
        Err(StoreError::Conflict {
            expected: JobState::Queued,
            actual: JobState::Pending,
            ..
        })
    ));
    move_to(&store, job.id, &[JobState::Pending, JobState::Queued]).await;
    // With what was rendered for it (the job's provenance), kept on the record.
    let rendering = |namespace: &str| Rendering {
        namespace: namespace.to_owned(),
        manifests: vec![ManifestDigest {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: format!("omni-{}", job.id),
            sha256: "ab".repeat(32),
        }],
        images: vec!["builder:1".into(), "fetch@sha256:cd".into()],
    };
    let assigned = store
        .assign_engine(job.id, "cluster-a", Some(&rendering("ns-a")))
        .await
        .unwrap();
    assert_eq!(assigned.engine.as_deref(), Some("cluster-a"));
    assert_eq!(assigned.state, JobState::Queued);
    assert_eq!(assigned.rendering, Some(rendering("ns-a")));
    // Another engine after a failed start: the newer one counts, and so does its rendering.
    store
        .assign_engine(job.id, "cluster-b", Some(&rendering("ns-b")))
        .await
        .unwrap();
    let stored = store.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(stored.engine.as_deref(), Some("cluster-b"));
    assert_eq!(stored.rendering, Some(rendering("ns-b")));
    assert_eq!(stored.state, JobState::Queued);
    assert_eq!(
        store.history(job.id).await.unwrap().len(),
        2,
        "no state change"
    );
    store
        .transition(
            job.id,
            &Transition::new(JobState::Queued, JobState::Cancelled),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.assign_engine(job.id, "cluster-a", None).await,
        Err(StoreError::Conflict {
            actual: JobState::Cancelled,
            ..
        })
    ));
    assert!(matches!(
        store.assign_engine(new_job_id(), "cluster-a", None).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Steps change while the job runs and freeze when it ends.
pub async fn steps_update_until_the_job_ends(store: Arc<dyn Store>) {
    let job = create(&store, &job(&unique_service(), "rpm", "default")).await;
    move_to(
        &store,
        job.id,
        &[JobState::Pending, JobState::Queued, JobState::Running],
    )
    .await;
    let steps = vec![
        Step {
            name: "fetch".into(),
            state: StepState::Succeeded,
        },
        Step {
            name: "build".into(),
            state: StepState::Running,
        },
    ];
    let updated = store.update_steps(job.id, &steps).await.unwrap();
    assert_eq!(updated.steps, steps);
    assert_eq!(store.get_job(job.id).await.unwrap().unwrap().steps, steps);
    let (ended, _) = store
        .transition(
            job.id,
            &Transition::new(JobState::Running, JobState::Cancelled),
        )
        .await
        .unwrap();
    assert_eq!(ended.steps[1].state, StepState::Failed);
    let late = vec![
        Step {
            name: "fetch".into(),
            state: StepState::Succeeded,
        },
        Step {
            name: "build".into(),
            state: StepState::Succeeded,
        },
    ];
    let after = store.update_steps(job.id, &late).await.unwrap();
    assert_eq!(after.steps, ended.steps, "an ended job's steps changed");
    assert!(matches!(
        store.update_steps(new_job_id(), &late).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Purging deletes the job, its history and its logs, and nothing else.
pub async fn purge_removes_job_history_and_logs(store: Arc<dyn Store>) {
    let service = unique_service();
    let doomed = create(&store, &job(&service, "rpm", "default")).await;
    let kept = create(&store, &job(&service, "rpm", "default")).await;
    for id in [doomed.id, kept.id] {
        store.append_logs(id, &lines("build", 0, 10)).await.unwrap();
    }
    assert!(store.purge_job(doomed.id).await.unwrap());
    assert!(!store.purge_job(doomed.id).await.unwrap());
    assert_eq!(store.get_job(doomed.id).await.unwrap(), None);
    assert!(store.history(doomed.id).await.unwrap().is_empty());
    let logs = store.read_logs(doomed.id, &log_query(100)).await.unwrap();
    assert!(logs.items.is_empty());
    let listed = list_all(
        &store,
        JobQuery {
            service: Some(service),
            ..JobQuery::default()
        },
    )
    .await;
    assert_eq!(listed, vec![kept.clone()]);
    let kept_logs = store.read_logs(kept.id, &log_query(100)).await.unwrap();
    assert_eq!(kept_logs.items.len(), 10);
}
