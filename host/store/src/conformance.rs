//! The conformance suite: what every [`Store`] must do, as tests a backend's crate instantiates
//! with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! async fn store() -> Arc<dyn Store> { /* a fresh or shared backend */ }
//! omni_store::conformance_tests!(store);
//! ```
//!
//! Each case makes its own jobs under a service name no other case uses, so the cases run in
//! parallel against one shared database.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use futures::future::join_all;

use crate::model::*;
use crate::{JobId, JobState, LogStream, StepState, Store, StoreError, new_job_id, now};

/// Instantiates every case as a `#[tokio::test]` over the stores `$make()` returns.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@cases $make;
            create_and_get,
            idempotent_create_returns_the_first_job,
            idempotency_key_with_another_request_conflicts,
            racing_idempotent_creates_make_one_job,
            listing_is_newest_first_and_pages_cover_everything,
            listing_filters,
            transitions_follow_the_table,
            racing_cancel_and_completion_have_one_winner,
            steps_update_until_the_job_ends,
            an_engine_is_assigned_to_queued_jobs_only,
            purge_removes_job_history_and_logs,
            logs_read_in_order_with_step_filter_and_cursor,
            leases_have_one_holder,
            webhooks_are_stored_by_domain,
            events_record_every_change_in_order,
            events_resume_after_any_id_exactly_once,
            events_filter_by_domain_service_and_task,
            racing_writers_events_are_read_exactly_once,
            bad_event_ids_are_refused,
            delivery_state_round_trips_and_goes_with_its_webhook,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store: ::std::sync::Arc<dyn $crate::Store> = $make().await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

/// A service name no other case (or earlier run against the same database) uses.
fn unique_service() -> String {
    format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn job(service: &str, task: &str, domain: &str) -> Job {
    let created = now();
    Job {
        id: new_job_id(),
        service: service.into(),
        task: task.into(),
        domain: domain.into(),
        arch: "x86_64".into(),
        state: JobState::Pending,
        params: serde_json::json!({"name": "hello", "defines": {"dist": ".oe2403"}}),
        plugin: PluginRef {
            task: task.into(),
            version: "0.1.0".into(),
            digest: "ab".repeat(32),
        },
        engine: None,
        message: None,
        steps: vec![
            Step {
                name: "fetch".into(),
                state: StepState::Pending,
            },
            Step {
                name: "build".into(),
                state: StepState::Pending,
            },
        ],
        created_at: created,
        updated_at: created,
        started_at: None,
        finished_at: None,
    }
}

async fn create(store: &Arc<dyn Store>, job: &Job) -> Job {
    match store.create_job(job, None).await.expect("create") {
        Created::New(stored) => stored,
        other => panic!("expected a new job, got {other:?}"),
    }
}

async fn list_all(store: &Arc<dyn Store>, query: JobQuery) -> Vec<Job> {
    let mut query = query;
    let mut all = Vec::new();
    loop {
        let page = store.list_jobs(&query).await.expect("list");
        assert!(page.items.len() <= query.limit, "page over its limit");
        let empty = page.items.is_empty();
        all.extend(page.items);
        match page.next {
            Some(next) if !empty => query.after = Some(next),
            _ => return all,
        }
    }
}

async fn move_to(store: &Arc<dyn Store>, id: JobId, path: &[JobState]) -> Job {
    let mut job = None;
    for pair in path.windows(2) {
        let (moved, _) = store
            .transition(id, &Transition::new(pair[0], pair[1]))
            .await
            .expect("transition");
        job = Some(moved);
    }
    job.expect("a path of at least two states")
}

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

/// A queued job gets its engine before it is submitted, with no state change; a job in any
/// other state refuses one.
pub async fn an_engine_is_assigned_to_queued_jobs_only(store: Arc<dyn Store>) {
    let job = create(&store, &job(&unique_service(), "rpm", "default")).await;
    assert!(matches!(
        store.assign_engine(job.id, "cluster-a").await,
        Err(StoreError::Conflict {
            expected: JobState::Queued,
            actual: JobState::Pending,
            ..
        })
    ));
    move_to(&store, job.id, &[JobState::Pending, JobState::Queued]).await;
    let assigned = store.assign_engine(job.id, "cluster-a").await.unwrap();
    assert_eq!(assigned.engine.as_deref(), Some("cluster-a"));
    assert_eq!(assigned.state, JobState::Queued);
    // Another engine after a failed start: the newer one counts.
    store.assign_engine(job.id, "cluster-b").await.unwrap();
    let stored = store.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(stored.engine.as_deref(), Some("cluster-b"));
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
        store.assign_engine(job.id, "cluster-a").await,
        Err(StoreError::Conflict {
            actual: JobState::Cancelled,
            ..
        })
    ));
    assert!(matches!(
        store.assign_engine(new_job_id(), "cluster-a").await,
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

fn lines(step: &str, first: u64, count: u64) -> Vec<LogLine> {
    let time = now();
    (first..first + count)
        .map(|seq| LogLine {
            step: step.into(),
            time: time + TimeDelta::milliseconds(i64::try_from(seq).unwrap()),
            seq,
            stream: if seq % 5 == 0 {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            },
            line: format!("{step} line {seq}: \u{2713} \"quoted\" \t tab"),
        })
        .collect()
}

fn log_query(limit: usize) -> LogQuery {
    LogQuery {
        step: None,
        after: None,
        limit,
    }
}

/// Lines come back by `seq` across steps; the step filter and the cursor select; a line written
/// twice is stored once.
pub async fn logs_read_in_order_with_step_filter_and_cursor(store: Arc<dyn Store>) {
    let job = create(&store, &job(&unique_service(), "rpm", "default")).await;
    let fetch = lines("fetch", 0, 40);
    let build = lines("build", 40, 2000);
    // Batches arrive in any order; the read is ordered.
    store.append_logs(job.id, &build[..1000]).await.unwrap();
    store.append_logs(job.id, &fetch).await.unwrap();
    store.append_logs(job.id, &build[1000..]).await.unwrap();
    // A collector resuming after a crash writes some lines again.
    store.append_logs(job.id, &build[1990..]).await.unwrap();

    let mut all = Vec::new();
    let mut query = log_query(300);
    loop {
        let page = store.read_logs(job.id, &query).await.unwrap();
        assert!(page.items.len() <= 300);
        all.extend(page.items);
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let expected: Vec<LogLine> = fetch.iter().chain(&build).cloned().collect();
    assert_eq!(all.len(), expected.len());
    assert_eq!(all, expected);

    let only_fetch = store
        .read_logs(
            job.id,
            &LogQuery {
                step: Some("fetch".into()),
                after: Some(10),
                limit: 1000,
            },
        )
        .await
        .unwrap();
    assert_eq!(only_fetch.items, fetch[11..].to_vec());
    assert_eq!(only_fetch.next, None);
    let tail = store
        .read_logs(
            job.id,
            &LogQuery {
                step: None,
                after: Some(2035),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(tail.items, build[1996..].to_vec());
    let nothing = store
        .read_logs(
            job.id,
            &LogQuery {
                step: Some("no-such-step".into()),
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(nothing.items.is_empty());
}

/// One holder at a time; a lapsed lease can be taken; only the holder releases.
pub async fn leases_have_one_holder(store: Arc<dyn Store>) {
    let name = format!("scheduler-{}", unique_service());
    let ttl = Duration::from_secs(30);
    let a = store.acquire_lease(&name, "replica-a", ttl).await.unwrap();
    let a = a.expect("a free lease is taken");
    assert_eq!(a.holder, "replica-a");
    assert_eq!(
        store.acquire_lease(&name, "replica-b", ttl).await.unwrap(),
        None
    );
    let renewed = store
        .acquire_lease(&name, "replica-a", ttl)
        .await
        .unwrap()
        .expect("the holder renews");
    assert!(renewed.expires_at >= a.expires_at);
    assert!(!store.release_lease(&name, "replica-b").await.unwrap());
    assert!(store.release_lease(&name, "replica-a").await.unwrap());
    assert!(
        store
            .acquire_lease(&name, "replica-b", ttl)
            .await
            .unwrap()
            .is_some()
    );

    // Racing for a free lease: one winner.
    let race = format!("race-{}", unique_service());
    let racers = (0..8).map(|i| {
        let store = store.clone();
        let race = race.clone();
        tokio::spawn(async move {
            store
                .acquire_lease(&race, &format!("replica-{i}"), ttl)
                .await
        })
    });
    let won = join_all(racers)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().as_ref().unwrap().is_some())
        .count();
    assert_eq!(won, 1);

    // A lapsed lease goes to the next asker.
    let short = format!("short-{}", unique_service());
    store
        .acquire_lease(&short, "replica-a", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let taken = store
        .acquire_lease(&short, "replica-b", ttl)
        .await
        .unwrap()
        .expect("a lapsed lease is free");
    assert_eq!(taken.holder, "replica-b");
}

/// Webhooks are listed all or by domain, and deleted once.
pub async fn webhooks_are_stored_by_domain(store: Arc<dyn Store>) {
    let domain = unique_service();
    let hook = |domain: Option<&str>| Webhook {
        id: uuid::Uuid::new_v4(),
        domain: domain.map(str::to_owned),
        url: "http://127.0.0.1:9/hook".into(),
        events: vec!["job.succeeded".into(), "job.failed".into()],
        secret: "s3cret".into(),
        created_at: now(),
    };
    let mine = hook(Some(&domain));
    let global = hook(None);
    store.put_webhook(&mine).await.unwrap();
    store.put_webhook(&global).await.unwrap();
    assert_eq!(
        store.list_webhooks(Some(&domain)).await.unwrap(),
        vec![mine.clone()]
    );
    let all = store.list_webhooks(None).await.unwrap();
    assert!(all.contains(&mine) && all.contains(&global));
    assert!(store.delete_webhook(mine.id).await.unwrap());
    assert!(!store.delete_webhook(mine.id).await.unwrap());
    assert!(store.list_webhooks(Some(&domain)).await.unwrap().is_empty());
    assert!(store.delete_webhook(global.id).await.unwrap());
}

/// Reads events after `after` matching `filter` in pages of `page`, until `want` arrived or a
/// generous deadline passed (a store may hold back events that other writers may still be
/// writing). Returns them and the position after them.
async fn read_until(
    store: &Arc<dyn Store>,
    after: &str,
    filter: &EventFilter,
    page: usize,
    want: usize,
) -> (Vec<Event>, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut cursor = after.to_owned();
    let mut events = Vec::new();
    while events.len() < want {
        let read = store
            .read_events(Some(&cursor), filter, page)
            .await
            .expect("read events");
        assert!(read.items.len() <= page, "a page over its limit");
        let empty = read.items.is_empty();
        events.extend(read.items);
        cursor = read.next;
        if empty {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {want} events arrived",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    (events, cursor)
}

fn by_service(service: &str) -> EventFilter {
    EventFilter {
        service: Some(service.to_owned()),
        ..EventFilter::default()
    }
}

/// The creation and every transition become events, in order, with the job's fields; nothing
/// else does (a step update, a conflicting transition).
pub async fn events_record_every_change_in_order(store: Arc<dyn Store>) {
    let service = unique_service();
    let head = store.events_head().await.unwrap();
    let a = create(&store, &job(&service, "srpm", "default")).await;
    move_to(
        &store,
        a.id,
        &[JobState::Pending, JobState::Queued, JobState::Running],
    )
    .await;
    store.update_steps(a.id, &a.steps).await.unwrap();
    assert!(
        store
            .transition(a.id, &Transition::new(JobState::Queued, JobState::Running))
            .await
            .is_err()
    );
    let (_, change) = store
        .transition(
            a.id,
            &Transition::new(JobState::Running, JobState::Failed).message("exit 1"),
        )
        .await
        .unwrap();
    let (events, _) = read_until(&store, &head, &by_service(&service), 100, 4).await;
    let moves: Vec<(Option<JobState>, JobState)> = events.iter().map(|e| (e.from, e.to)).collect();
    assert_eq!(
        moves,
        vec![
            (None, JobState::Pending),
            (Some(JobState::Pending), JobState::Queued),
            (Some(JobState::Queued), JobState::Running),
            (Some(JobState::Running), JobState::Failed),
        ]
    );
    let last = events.last().unwrap();
    assert_eq!(
        (
            last.job_id,
            last.service.as_str(),
            last.task.as_str(),
            last.domain.as_str()
        ),
        (a.id, service.as_str(), "srpm", "default")
    );
    assert_eq!(last.time, change.time);
    assert_eq!(last.message.as_deref(), Some("exit 1"));
    assert_eq!(last.name(), "job.failed");
    assert_eq!(events[0].time, a.created_at);
    let ids: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "ids are unique");
    // Nothing more comes (give a lagging store time to show a stray event).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let more = store
        .read_events(Some(&events[3].id), &by_service(&service), 100)
        .await
        .unwrap();
    assert!(more.items.is_empty(), "{:?}", more.items);
}

/// Reading on from any event's id gives exactly the events after it; reading one event at a
/// time gives the same stream as reading it at once.
pub async fn events_resume_after_any_id_exactly_once(store: Arc<dyn Store>) {
    let service = unique_service();
    let head = store.events_head().await.unwrap();
    for _ in 0..3 {
        let made = create(&store, &job(&service, "rpm", "default")).await;
        move_to(
            &store,
            made.id,
            &[JobState::Pending, JobState::Queued, JobState::Cancelled],
        )
        .await;
    }
    let filter = by_service(&service);
    let (all, _) = read_until(&store, &head, &filter, 1000, 9).await;
    assert_eq!(all.len(), 9);
    let (one_by_one, _) = read_until(&store, &head, &filter, 1, 9).await;
    assert_eq!(one_by_one, all);
    for (i, event) in all.iter().enumerate() {
        let (rest, _) = read_until(&store, &event.id, &filter, 4, 8 - i).await;
        assert_eq!(rest, all[i + 1..], "after event {i}");
    }
    // Reading from the start (the oldest kept event) comes to the same first event.
    let mut page = store.read_events(None, &filter, 1).await.unwrap();
    while page.items.is_empty() {
        page = store
            .read_events(Some(&page.next), &filter, 1)
            .await
            .unwrap();
    }
    assert_eq!(page.items.first(), all.first());
}

/// Filters by domain, service and task, alone and together.
pub async fn events_filter_by_domain_service_and_task(store: Arc<dyn Store>) {
    let service = unique_service();
    let other_service = unique_service();
    let domain = unique_service();
    let head = store.events_head().await.unwrap();
    let a = create(&store, &job(&service, "srpm", &domain)).await;
    let b = create(&store, &job(&service, "rpm", "default")).await;
    let c = create(&store, &job(&other_service, "srpm", &domain)).await;
    let (all, _) = read_until(
        &store,
        &head,
        &EventFilter {
            domain: Some(domain.clone()),
            ..EventFilter::default()
        },
        100,
        2,
    )
    .await;
    assert_eq!(
        all.iter().map(|e| e.job_id).collect::<HashSet<_>>(),
        HashSet::from([a.id, c.id])
    );
    let (by_task, _) = read_until(
        &store,
        &head,
        &EventFilter {
            service: Some(service.clone()),
            task: Some("rpm".into()),
            ..EventFilter::default()
        },
        100,
        1,
    )
    .await;
    assert_eq!(by_task.iter().map(|e| e.job_id).collect::<Vec<_>>(), [b.id]);
    let (both, _) = read_until(
        &store,
        &head,
        &EventFilter {
            domain: Some(domain.clone()),
            service: Some(service.clone()),
            task: Some("srpm".into()),
            ..EventFilter::default()
        },
        100,
        1,
    )
    .await;
    assert_eq!(both.iter().map(|e| e.job_id).collect::<Vec<_>>(), [a.id]);
    // The caller's readable domains (auth): the events of `domain` and no other.
    let (readable, _) = read_until(
        &store,
        &head,
        &EventFilter {
            domains: Some(std::collections::BTreeSet::from([domain.clone()])),
            service: Some(service.clone()),
            ..EventFilter::default()
        },
        100,
        1,
    )
    .await;
    assert_eq!(
        readable.iter().map(|e| e.job_id).collect::<Vec<_>>(),
        [a.id]
    );
}

/// Many writers at once (as several replicas would be) and a reader following the stream in
/// small pages while they write: the reader gets every event once, each job's in order.
pub async fn racing_writers_events_are_read_exactly_once(store: Arc<dyn Store>) {
    let service = unique_service();
    let head = store.events_head().await.unwrap();
    const JOBS: usize = 24;
    let filter = by_service(&service);
    let reader = {
        let store = store.clone();
        let filter = filter.clone();
        let head = head.clone();
        tokio::spawn(async move { read_until(&store, &head, &filter, 7, JOBS * 4).await })
    };
    let writers = (0..JOBS).map(|_| {
        let store = store.clone();
        let service = service.clone();
        async move {
            let made = create(&store, &job(&service, "iso", "default")).await;
            move_to(
                &store,
                made.id,
                &[
                    JobState::Pending,
                    JobState::Queued,
                    JobState::Running,
                    JobState::Succeeded,
                ],
            )
            .await;
            made.id
        }
    });
    let ids: Vec<JobId> = join_all(writers).await;
    let (events, cursor) = reader.await.unwrap();
    assert_eq!(events.len(), JOBS * 4);
    let unique: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(unique.len(), events.len(), "no event twice");
    for id in ids {
        let moves: Vec<JobState> = events
            .iter()
            .filter(|e| e.job_id == id)
            .map(|e| e.to)
            .collect();
        assert_eq!(
            moves,
            [
                JobState::Pending,
                JobState::Queued,
                JobState::Running,
                JobState::Succeeded
            ]
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let more = store
        .read_events(Some(&cursor), &filter, 100)
        .await
        .unwrap();
    assert!(more.items.is_empty(), "{:?}", more.items);
}

/// An id this store did not make is refused, whatever it looks like.
pub async fn bad_event_ids_are_refused(store: Arc<dyn Store>) {
    for bad in ["", "x", "12abc", "-1", "not-an-id", "e_00", "\u{0}"] {
        match store
            .read_events(Some(bad), &EventFilter::default(), 1)
            .await
        {
            Err(StoreError::BadEventId(id)) => assert_eq!(id, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

/// A webhook's delivery state reads back as written, and is deleted with the webhook.
pub async fn delivery_state_round_trips_and_goes_with_its_webhook(store: Arc<dyn Store>) {
    let hook = Webhook {
        id: uuid::Uuid::new_v4(),
        domain: None,
        url: "https://example.com/hook".into(),
        events: vec!["*".into()],
        secret: "s3cret".into(),
        created_at: now(),
    };
    store.put_webhook(&hook).await.unwrap();
    assert_eq!(store.get_delivery(hook.id).await.unwrap(), None);
    let head = store.events_head().await.unwrap();
    let mut delivery = Delivery::starting_at(hook.id, head.clone());
    store.put_delivery(&delivery).await.unwrap();
    assert_eq!(
        store.get_delivery(hook.id).await.unwrap(),
        Some(delivery.clone())
    );
    delivery.delivered = 41;
    delivery.attempts = 3;
    delivery.last_error = Some("answered 500".into());
    delivery.last_error_at = Some(now());
    delivery.last_success_at = Some(now() - TimeDelta::seconds(5));
    store.put_delivery(&delivery).await.unwrap();
    assert_eq!(store.get_delivery(hook.id).await.unwrap(), Some(delivery));
    // The stored position is one the stream takes.
    store
        .read_events(Some(&head), &EventFilter::default(), 1)
        .await
        .unwrap();
    assert!(store.delete_webhook(hook.id).await.unwrap());
    assert_eq!(store.get_delivery(hook.id).await.unwrap(), None);
}
