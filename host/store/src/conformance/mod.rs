//! The conformance suite: what every [`Store`] must do, as tests a backend's crate instantiates
//! with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! async fn store() -> Arc<dyn Store> { /* a fresh or shared backend */ }
//! omni_store::conformance_tests!(store);
//! ```
//!
//! One file per capability of the store, named as the trait's module is (`jobs`, `logs`,
//! `events`, `artifacts`, `uploads`, `leases`, `webhooks`); this one holds the macro and the helpers the files share.
//! `future` holds the cases of rows a newer server wrote, which need raw access to a backend's
//! rows ([`future::RawRows`], [`future_rows_tests!`](crate::future_rows_tests)).
//!
//! Each case makes its own jobs under a service name no other case uses, so the cases run in
//! parallel against one shared database.

use std::sync::Arc;

use chrono::TimeDelta;

use crate::model::*;
use crate::{JobId, JobState, LogStream, StepState, Store, new_job_id, now};

pub mod artifacts;
pub mod events;
pub mod future;
pub mod jobs;
pub mod leases;
pub mod logs;
pub mod uploads;
pub mod webhooks;

/// Instantiates every case as a `#[tokio::test]` over the stores `$make()` returns, one list
/// per capability (its file in this module).
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@cases $make; jobs:
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
        );
        $crate::conformance_tests!(@cases $make; logs:
            logs_read_in_order_with_step_filter_and_cursor,
        );
        $crate::conformance_tests!(@cases $make; events:
            events_record_every_change_in_order,
            events_resume_after_any_id_exactly_once,
            events_filter_by_domain_service_and_task,
            racing_writers_events_are_read_exactly_once,
            bad_event_ids_are_refused,
        );
        $crate::conformance_tests!(@cases $make; artifacts:
            artifacts_are_recorded_by_name_and_announced,
            artifacts_go_with_their_job,
        );
        $crate::conformance_tests!(@cases $make; uploads:
            uploads_are_kept_by_domain_with_the_later_expiry,
            expired_uploads_are_forgotten_after_the_grace,
        );
        $crate::conformance_tests!(@cases $make; leases:
            leases_have_one_holder,
        );
        $crate::conformance_tests!(@cases $make; webhooks:
            webhooks_are_stored_by_domain,
            racing_creates_of_one_domain_stop_at_the_cap,
            deletes_free_places_exactly,
            a_secret_is_replaced_only_while_it_is_the_one_read,
            a_secret_replaced_after_a_delete_stays_deleted,
            delivery_state_round_trips_and_goes_with_its_webhook,
        );
    };
    (@cases $make:path; $capability:ident: $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store: ::std::sync::Arc<dyn $crate::Store> = $make().await;
                $crate::conformance::$capability::$case(store).await;
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
        rendering: None,
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
            templates: None,
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
