//! The event stream over a real HTTP server on loopback, with an embedded store: SSE resume with
//! `Last-Event-ID` and `after`, filters, pages, validation errors (the webhook routes are
//! `webhooks.rs`). No timed assertions: every wait has a generous deadline.

mod common;

use std::time::Duration;

use common::server::{answer, server};
use omni_store::{Event, JobId, JobState};
use serde_json::Value;

fn moves(events: &[Event]) -> Vec<(JobId, JobState)> {
    events.iter().map(|e| (e.job_id, e.to)).collect()
}

const DONE: [JobState; 3] = [JobState::Queued, JobState::Running, JobState::Succeeded];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_after_last_event_id_with_every_later_event_once() {
    let server = server().await;
    // Before the stream: not in it (a stream without an id starts at the end).
    server.job("ci", "rpm", "default", &DONE).await;
    let mut live = server.stream("", None).await;
    let a = server.job("ci", "rpm", "default", &DONE).await;
    let first = live.take(4).await;
    assert_eq!(
        moves(&first),
        [
            (a, JobState::Pending),
            (a, JobState::Queued),
            (a, JobState::Running),
            (a, JobState::Succeeded)
        ]
    );
    assert_eq!(first[1].from, Some(JobState::Pending));
    assert_eq!(first[0].service, "ci");
    drop(live);

    // While nobody listens.
    let b = server
        .job("ci", "srpm", "default", &[JobState::Cancelled])
        .await;
    let mut expected = vec![
        (a, JobState::Running),
        (a, JobState::Succeeded),
        (b, JobState::Pending),
        (b, JobState::Cancelled),
    ];
    for resume in ["header", "query"] {
        let mut resumed = match resume {
            "header" => server.stream("", Some(&first[1].id)).await,
            _ => {
                server
                    .stream(&format!("?after={}", first[1].id), None)
                    .await
            }
        };
        let replayed = resumed.take(expected.len()).await;
        assert_eq!(moves(&replayed), expected, "resumed by {resume}");
        assert_eq!(replayed[..2], first[2..]);
        // Then live, with nothing repeated in between.
        let c = server.job("ci", "iso", "default", &[]).await;
        assert_eq!(moves(&resumed.take(1).await), [(c, JobState::Pending)]);
        expected.push((c, JobState::Pending));
    }
    // Idle streams get keep-alive comments.
    let mut idle = server.stream("", None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while idle.comments == 0 {
        let chunk = tokio::time::timeout_at(deadline, idle.response.chunk())
            .await
            .expect("a keep-alive within the deadline")
            .unwrap()
            .unwrap();
        idle.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        idle.comments +=
            idle.buffer.matches("\n:").count() + usize::from(idle.buffer.starts_with(':'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_pick_domain_service_and_task() {
    let server = server().await;
    let mut both = server.stream("?domain=tenant-a&service=obs", None).await;
    let mut task = server.stream("?task=iso", None).await;
    let mine = server.job("obs", "rpm", "tenant-a", &[]).await;
    server.job("obs", "rpm", "tenant-b", &[]).await;
    server.job("koji", "rpm", "tenant-a", &[]).await;
    let iso = server.job("koji", "iso", "tenant-b", &[]).await;
    let last = server
        .job("obs", "iso", "tenant-a", &[JobState::Cancelled])
        .await;
    assert_eq!(
        moves(&both.take(3).await),
        [
            (mine, JobState::Pending),
            (last, JobState::Pending),
            (last, JobState::Cancelled)
        ]
    );
    assert_eq!(
        moves(&task.take(3).await),
        [
            (iso, JobState::Pending),
            (last, JobState::Pending),
            (last, JobState::Cancelled)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_false_answers_pages_of_the_stored_events_from_the_oldest() {
    let server = server().await;
    let a = server.job("ci", "rpm", "default", &DONE).await;
    let b = server
        .job("ci", "srpm", "tenant-a", &[JobState::Cancelled])
        .await;
    let page = |v: &Value| -> Vec<(JobId, JobState)> {
        let events: Vec<Event> = serde_json::from_value(v["items"].clone()).unwrap();
        moves(&events)
    };
    let all = vec![
        (a, JobState::Pending),
        (a, JobState::Queued),
        (a, JobState::Running),
        (a, JobState::Succeeded),
        (b, JobState::Pending),
        (b, JobState::Cancelled),
    ];
    let (status, content_type, body) = server.get("/v1/events?follow=false").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(page(&body), all);

    // In pages of 4: a full one, then the rest (short: caught up), then nothing after it.
    let (_, _, first) = server.get("/v1/events?follow=false&limit=4").await;
    assert_eq!(page(&first), all[..4]);
    let next = first["next"].as_str().unwrap();
    let (_, _, rest) = server
        .get(&format!("/v1/events?follow=false&limit=4&after={next}"))
        .await;
    assert_eq!(page(&rest), all[4..]);
    let next = rest["next"].as_str().unwrap();
    let (_, _, none) = server
        .get(&format!("/v1/events?follow=false&after={next}"))
        .await;
    assert_eq!(page(&none), []);
    // An empty `after` or `Last-Event-ID` is no position (the SSE spec's "no last id"): from
    // the oldest, as without one.
    let (status, _, empty) = server.get("/v1/events?follow=false&after=").await;
    assert_eq!((status, page(&empty)), (200, all.clone()));
    let response = server
        .client
        .get(format!("{}/v1/events?follow=false", server.base))
        .header("last-event-id", "")
        .send()
        .await
        .unwrap();
    let (status, _, empty) = answer(response).await;
    assert_eq!((status, page(&empty)), (200, all.clone()));
    // A later event comes after that `next`, and a stream resumed from it starts there.
    let c = server.job("ci", "iso", "default", &[]).await;
    let (_, _, later) = server
        .get(&format!("/v1/events?follow=false&after={next}"))
        .await;
    assert_eq!(page(&later), [(c, JobState::Pending)]);
    let mut resumed = server.stream(&format!("?after={next}"), None).await;
    assert_eq!(moves(&resumed.take(1).await), [(c, JobState::Pending)]);

    // Filters apply; bad follow and limit values are 400s naming them.
    let (_, _, tenant) = server.get("/v1/events?follow=false&domain=tenant-a").await;
    assert_eq!(page(&tenant), all[4..]);
    for (query, path) in [
        ("?follow=maybe", "/query/follow"),
        ("?follow=false&limit=0", "/query/limit"),
        ("?follow=false&limit=1001", "/query/limit"),
        ("?follow=false&after=12abc", "/query/after"),
    ] {
        let (status, _, body) = server.get(&format!("/v1/events{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["errors"][0]["path"], path, "{query}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_and_event_ids_answer_400_naming_them() {
    let server = server().await;
    for (query, header, path) in [
        ("?domain=Not_A_Name", None, Some("/query/domain")),
        ("?service=", None, Some("/query/service")),
        (
            &format!("?task={}", "x".repeat(64)),
            None,
            Some("/query/task"),
        ),
        ("?after=12abc", None, Some("/query/after")),
        ("", Some("not-an-id"), Some("/headers/last-event-id")),
        ("", Some("-1"), Some("/headers/last-event-id")),
        ("?colour=red", None, None),
    ] as [(&str, Option<&str>, Option<&str>); 7]
    {
        let mut request = server
            .client
            .get(format!("{}/v1/events{query}", server.base));
        if let Some(id) = header {
            request = request.header("last-event-id", id);
        }
        let (status, content_type, body) = answer(request.send().await.unwrap()).await;
        assert_eq!(status, 400, "{query} {header:?}: {body}");
        assert_eq!(content_type, "application/problem+json");
        match path {
            Some(path) => assert_eq!(body["errors"][0]["path"], path, "{body}"),
            None => assert!(
                body["detail"].as_str().unwrap().contains("colour"),
                "{body}"
            ),
        }
    }
}
