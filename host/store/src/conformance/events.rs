//! The cases of [`EventStore`](crate::EventStore): every change once and in order, resuming
//! after any id, filters, racing writers, ids of another store. The events themselves are made
//! by [`JobStore`](crate::JobStore) changes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use super::{create, job, move_to, unique_service};
use crate::model::*;
use crate::{JobId, JobState, Store, StoreError};

/// Reads events after `after` matching `filter` in pages of `page`, until `want` arrived or a
/// generous deadline passed (a store may hold back events that other writers may still be
/// writing). Returns them and the position after them.
pub(super) async fn read_until(
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
