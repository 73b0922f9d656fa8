//! Rows a newer server wrote: every backend reads them without an error and keeps what it does
//! not know when it writes them back (see [`crate::record`]). The rows are written by hand in
//! the future format, past the store, through each backend's [`RawRows`].
//!
//! A backend's tests instantiate the cases with
//! [`future_rows_tests!`](crate::future_rows_tests), given a function returning the store and
//! its raw access.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use uuid::Uuid;

use super::events::read_until;
use super::{create, job, list_all, unique_service};
use crate::model::*;
use crate::{JobId, JobState, LogStream, StepState, Store, StoreError, now};

/// Reads and writes a backend's rows as they are stored, past the model: what a newer server
/// sharing the database would have written.
#[async_trait]
pub trait RawRows: Send + Sync {
    /// Job `id`'s stored record (JSON).
    async fn job(&self, id: JobId) -> String;
    /// Replaces job `id`'s stored record (JSON) and the state its row shows in listings.
    async fn put_job(&self, id: JobId, state: &str, record: &str);
    /// Webhook `id`'s stored delivery state (JSON).
    async fn delivery(&self, id: Uuid) -> String;
    /// Replaces webhook `id`'s stored delivery state (JSON).
    async fn put_delivery(&self, id: Uuid, record: &str);
    /// Stores a log line of job `id` (the model's JSON form of [`LogLine`], with more fields).
    async fn put_log_line(&self, id: JobId, line: &Value);
    /// Stores an event (the model's JSON form of [`Event`] without its `id`, with more fields)
    /// as the next of the stream, the way the backend numbers its events.
    async fn put_event(&self, event: &Value);
}

/// Instantiates every case as a `#[tokio::test]` over the `(store, raw rows)` that `$make()`
/// returns.
#[macro_export]
macro_rules! future_rows_tests {
    ($make:path) => {
        $crate::future_rows_tests!(@cases $make:
            a_newer_job_record_is_read_and_its_unknown_fields_survive_changes,
            a_job_in_a_state_this_server_does_not_know_is_shown_and_left_alone,
            a_newer_delivery_state_keeps_its_unknown_fields,
            newer_log_lines_and_events_are_read,
        );
    };
    (@cases $make:path: $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, raw): (
                    ::std::sync::Arc<dyn $crate::Store>,
                    ::std::sync::Arc<dyn $crate::conformance::future::RawRows>,
                ) = $make().await;
                $crate::conformance::future::$case(store, raw).await;
            }
        )*
    };
}

/// A listing of `service`'s jobs, in `state` if given.
fn by_service(service: &str, state: Option<JobState>) -> JobQuery {
    JobQuery {
        service: Some(service.to_owned()),
        state,
        ..JobQuery::default()
    }
}

/// `record` as a newer server would have written it: format 2, a top-level field, a field in
/// the plugin and in each step (none of which this server knows).
fn from_the_future(record: &str) -> Value {
    let mut record: Value = serde_json::from_str(record).expect("a stored job is JSON");
    assert_eq!(
        crate::record::format_of(&record),
        crate::record::FORMAT,
        "a new job's record carries this server's format: {record}"
    );
    record["format"] = json!(crate::record::FORMAT + 1);
    record["provenance"] = json!({"builder": "omni 9", "inputs": ["a", "b"]});
    record["plugin"]["signature"] = json!("sig:abc");
    for (n, step) in record["steps"]
        .as_array_mut()
        .expect("steps")
        .iter_mut()
        .enumerate()
    {
        step["started_at"] = json!(format!("t{n}"));
    }
    record
}

/// The fields [`from_the_future`] added are all still in `record`, with their values.
fn assert_future_fields_kept(record: &str) {
    let record: Value = serde_json::from_str(record).expect("a stored job is JSON");
    assert_eq!(
        record["format"],
        json!(crate::record::FORMAT + 1),
        "{record}"
    );
    assert_eq!(
        record["provenance"],
        json!({"builder": "omni 9", "inputs": ["a", "b"]}),
        "{record}"
    );
    assert_eq!(record["plugin"]["signature"], json!("sig:abc"), "{record}");
    let steps = record["steps"].as_array().expect("steps");
    for (n, step) in steps.iter().enumerate() {
        assert_eq!(step["started_at"], json!(format!("t{n}")), "{record}");
    }
}

/// A job whose record a newer server wrote (with fields this one does not know) is read, listed,
/// moved, given steps and an engine; after each change the unknown fields are still stored, and
/// the known ones changed.
pub async fn a_newer_job_record_is_read_and_its_unknown_fields_survive_changes(
    store: Arc<dyn Store>,
    raw: Arc<dyn RawRows>,
) {
    let service = unique_service();
    let made = create(&store, &job(&service, "srpm", "default")).await;
    let future = from_the_future(&raw.job(made.id).await);
    raw.put_job(made.id, "pending", &future.to_string()).await;

    let read = store.get_job(made.id).await.unwrap().expect("the job");
    assert_eq!(read, made, "the known fields read as they were");
    let listed = list_all(&store, by_service(&service, None)).await;
    assert_eq!(listed, vec![made.clone()]);

    let (queued, _) = store
        .transition(
            made.id,
            &Transition::new(JobState::Pending, JobState::Queued),
        )
        .await
        .unwrap();
    assert_eq!(queued.state, JobState::Queued);
    assert_future_fields_kept(&raw.job(made.id).await);

    store.assign_engine(made.id, "local", None).await.unwrap();
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
    store.update_steps(made.id, &steps).await.unwrap();
    let (done, _) = store
        .transition(
            made.id,
            &Transition::new(JobState::Queued, JobState::Failed),
        )
        .await
        .unwrap();
    let stored = raw.job(made.id).await;
    assert_future_fields_kept(&stored);
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["state"], json!("failed"));
    assert_eq!(stored["engine"], json!("local"));
    assert_eq!(stored["steps"][1]["state"], json!("failed"));
    assert_eq!(store.get_job(made.id).await.unwrap(), Some(done));
    let history = store.history(made.id).await.unwrap();
    assert_eq!(
        history.iter().map(|c| c.to).collect::<Vec<_>>(),
        [JobState::Pending, JobState::Queued, JobState::Failed]
    );
}

/// A job in a state only a newer server knows (and a step in one) is read and listed as it is;
/// no transition moves it, and the failed attempts leave its record as it was.
pub async fn a_job_in_a_state_this_server_does_not_know_is_shown_and_left_alone(
    store: Arc<dyn Store>,
    raw: Arc<dyn RawRows>,
) {
    let service = unique_service();
    let made = create(&store, &job(&service, "srpm", "default")).await;
    let mut future = from_the_future(&raw.job(made.id).await);
    future["state"] = json!("verifying");
    future["steps"][0]["state"] = json!("verifying");
    let written = future.to_string();
    raw.put_job(made.id, "verifying", &written).await;

    let read = store.get_job(made.id).await.unwrap().expect("the job");
    assert_eq!(read.state, JobState::Other("verifying"));
    assert_eq!(read.steps[0].state, StepState::Other("verifying"));
    assert_eq!(read.state.as_str(), "verifying");
    let listed = list_all(&store, by_service(&service, None)).await;
    assert_eq!(listed, vec![read.clone()]);
    for state in [JobState::Pending, JobState::Running] {
        let listed = list_all(&store, by_service(&service, Some(state))).await;
        assert!(listed.is_empty(), "listed as {state}");
    }

    for to in [JobState::Cancelled, JobState::Failed, JobState::Queued] {
        let moved = store
            .transition(made.id, &Transition::new(JobState::Other("verifying"), to))
            .await;
        assert!(
            matches!(moved, Err(StoreError::Illegal(_))),
            "verifying -> {to}: {moved:?}"
        );
        let moved = store
            .transition(made.id, &Transition::new(JobState::Pending, to))
            .await;
        assert!(
            matches!(
                moved,
                Err(StoreError::Conflict {
                    actual: JobState::Other("verifying"),
                    ..
                }) | Err(StoreError::Illegal(_))
            ),
            "pending -> {to}: {moved:?}"
        );
    }
    let stored: Value = serde_json::from_str(&raw.job(made.id).await).unwrap();
    assert_eq!(stored, future, "the record is as the newer server wrote it");
    assert_eq!(store.history(made.id).await.unwrap().len(), 1);
}

/// A webhook's delivery state a newer server wrote is read, and a new state written over it
/// keeps the fields this server does not know.
pub async fn a_newer_delivery_state_keeps_its_unknown_fields(
    store: Arc<dyn Store>,
    raw: Arc<dyn RawRows>,
) {
    let webhook = Webhook {
        id: Uuid::new_v4(),
        domain: Some(unique_service()),
        url: "https://example.com/hook".into(),
        events: vec!["*".into()],
        secret: "s".into(),
        created_at: now(),
    };
    assert!(store.create_webhook(&webhook, 1).await.unwrap());
    let first = Delivery::starting_at(webhook.id, store.events_head().await.unwrap());
    store.put_delivery(&first).await.unwrap();
    let mut future: Value = serde_json::from_str(&raw.delivery(webhook.id).await).unwrap();
    assert_eq!(crate::record::format_of(&future), crate::record::FORMAT);
    future["format"] = json!(crate::record::FORMAT + 1);
    future["paused_until"] = json!("2030-01-01T00:00:00Z");
    raw.put_delivery(webhook.id, &future.to_string()).await;

    assert_eq!(
        store.get_delivery(webhook.id).await.unwrap(),
        Some(first.clone())
    );
    let next = Delivery {
        delivered: 3,
        last_success_at: Some(now()),
        ..first
    };
    store.put_delivery(&next).await.unwrap();
    assert_eq!(store.get_delivery(webhook.id).await.unwrap(), Some(next));
    let stored: Value = serde_json::from_str(&raw.delivery(webhook.id).await).unwrap();
    assert_eq!(
        stored["paused_until"],
        json!("2030-01-01T00:00:00Z"),
        "{stored}"
    );
    assert_eq!(stored["delivered"], json!(3), "{stored}");
    assert_eq!(
        stored["format"],
        json!(crate::record::FORMAT + 1),
        "{stored}"
    );
    store.delete_webhook(webhook.id).await.unwrap();
}

/// A log line on a stream only a newer server knows, with a field this one does not, is read
/// as it is; so is an event of a job moving to a state this server does not know.
pub async fn newer_log_lines_and_events_are_read(store: Arc<dyn Store>, raw: Arc<dyn RawRows>) {
    let service = unique_service();
    let head = store.events_head().await.unwrap();
    let made = create(&store, &job(&service, "srpm", "default")).await;
    let time = now();
    raw.put_log_line(
        made.id,
        &json!({
            "step": "fetch", "time": time, "seq": 7, "stream": "system",
            "line": "from the future", "origin": "sidecar",
        }),
    )
    .await;
    let page = store
        .read_logs(
            made.id,
            &LogQuery {
                step: None,
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.items,
        vec![LogLine {
            step: "fetch".into(),
            time,
            seq: 7,
            stream: LogStream::Other("system"),
            line: "from the future".into(),
        }]
    );

    raw.put_event(&json!({
        "job_id": made.id, "service": service, "task": "srpm", "domain": "default",
        "from": "running", "to": "verifying", "time": time, "message": null,
        "attempt": 2,
    }))
    .await;
    let filter = EventFilter {
        service: Some(service.clone()),
        ..EventFilter::default()
    };
    // The job's creation, then the newer server's event.
    let (events, _) = read_until(&store, &head, &filter, 10, 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].to, JobState::Pending);
    assert_eq!(events[1].job_id, made.id);
    assert_eq!(events[1].from, Some(JobState::Running));
    assert_eq!(events[1].to, JobState::Other("verifying"));
    assert_eq!(events[1].name(), "job.verifying");
}
