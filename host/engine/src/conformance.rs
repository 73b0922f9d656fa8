//! The conformance suite: what every [`Engine`] must do, as tests an engine's crate instantiates
//! with [`engine_conformance_tests!`](crate::engine_conformance_tests) over a [`Fixture`]:
//!
//! ```ignore
//! async fn fixture() -> Arc<dyn Fixture> { /* an engine, and jobs of each shape for it */ }
//! omni_engine::engine_conformance_tests!(fixture);
//! ```
//!
//! The fixture makes the jobs because what runs differs by engine: the local engine runs real
//! commands, a Kubernetes engine on fake nodes plays its pods' lives from stages and log files.
//! What the suite checks is the same for all.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use crate::{Engine, EngineError, EngineJob, EngineLine, LogCursor, Outcome, Progress, StepState};

/// How long a case waits for something before it fails (a guard against a hang, not a timing
/// assertion: every wait ends as soon as its event comes).
const PATIENCE: Duration = Duration::from_secs(180);

/// A job of one rendered batch/v1 Job, `omni-<id>`, whose pod template spec is `pod` (for
/// fixtures and engine tests that write their steps by hand).
pub fn one_job(pod: &serde_json::Value) -> EngineJob {
    let id = uuid::Uuid::new_v4();
    let name = format!("omni-{id}");
    let body = serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"template": {"spec": pod}},
    });
    EngineJob {
        inputs: Default::default(),
        id,
        name: name.clone(),
        namespace: "omni-jobs".into(),
        task: "conformance".into(),
        arch: std::env::consts::ARCH.into(),
        rendered: crate::Rendered {
            manifests: vec![omni_core::Manifest {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: name.clone(),
                body,
            }],
            primary: name,
        },
    }
}

/// A job's shape; the fixture renders each one for its engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Two steps, `first` then `second`: `first` prints the lines `one` and `two`, `second`
    /// prints `three`; both end well.
    Succeeds,
    /// Two steps, `first` then `second`: `first` fails (exits 3); `second` never runs.
    Fails,
    /// One step, `first`, that runs until it is cancelled.
    RunsLong,
}

/// An engine under test and the jobs it runs.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The engine.
    fn engine(&self) -> Arc<dyn Engine>;

    /// A job of `shape` with a fresh id, ready to submit (the fixture may prepare what the
    /// engine needs for it, such as log files of fake pods).
    async fn job(&self, shape: Shape) -> EngineJob;
}

/// Instantiates every case as a `#[tokio::test]` over the fixtures `$make()` returns.
#[macro_export]
macro_rules! engine_conformance_tests {
    ($make:path) => {
        $crate::engine_conformance_tests!(@cases $make;
            the_engine_answers,
            a_job_runs_its_steps_in_order_and_succeeds,
            a_failing_step_fails_the_job_and_skips_the_rest,
            cancel_stops_a_running_job,
            logs_come_step_by_step_and_resume_after_a_cursor,
            submitting_twice_starts_nothing_twice,
            unknown_jobs_are_reported_not_invented,
            cleanup_forgets_the_job,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture: ::std::sync::Arc<dyn $crate::conformance::Fixture> = $make().await;
                $crate::conformance::$case(fixture).await;
            }
        )*
    };
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {PATIENCE:?}"))
}

/// Every progress item of `job` until it ends.
async fn progress_until_end(engine: &dyn Engine, job: &EngineJob) -> Vec<Progress> {
    let mut stream = engine.progress(job.id);
    let mut seen = Vec::new();
    within(&format!("progress of job {}", job.id), async {
        while let Some(item) = stream.next().await {
            let item = item.unwrap_or_else(|e| panic!("progress of {}: {e}", job.id));
            let ended = matches!(item, Progress::Ended(_));
            seen.push(item);
            if ended {
                return;
            }
        }
        panic!("the progress of {} ended without Ended: {seen:?}", job.id);
    })
    .await;
    seen
}

fn outcome(progress: &[Progress]) -> &Outcome {
    match progress.last() {
        Some(Progress::Ended(outcome)) => outcome,
        other => panic!("no outcome: {other:?}"),
    }
}

/// Where `step` reached `state` in `progress`, if it did.
fn position(progress: &[Progress], step: &str, state: StepState) -> Option<usize> {
    progress
        .iter()
        .position(|p| matches!(p, Progress::Step { name, state: s } if name == step && *s == state))
}

async fn all_lines(
    engine: &dyn Engine,
    job: &EngineJob,
    after: Option<LogCursor>,
) -> Vec<EngineLine> {
    let mut stream = engine.logs(job.id, after);
    let mut lines = Vec::new();
    within(&format!("logs of job {}", job.id), async {
        while let Some(line) = stream.next().await {
            lines.push(line.unwrap_or_else(|e| panic!("logs of {}: {e}", job.id)));
        }
    })
    .await;
    lines
}

fn texts(lines: &[EngineLine]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| (l.step.clone(), l.line.clone()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(s, l)| ((*s).to_owned(), (*l).to_owned()))
        .collect()
}

#[doc(hidden)]
pub async fn the_engine_answers(fixture: Arc<dyn Fixture>) {
    let engine = fixture.engine();
    engine.check().await.expect("check");
    assert!(!engine.name().is_empty());
    assert!(!engine.arches().is_empty());
    assert!(engine.max_running() > 0);
}

#[doc(hidden)]
pub async fn a_job_runs_its_steps_in_order_and_succeeds(fixture: Arc<dyn Fixture>) {
    let engine = fixture.engine();
    let job = fixture.job(Shape::Succeeds).await;
    engine.submit(&job).await.expect("submit");
    let progress = progress_until_end(&*engine, &job).await;
    assert_eq!(outcome(&progress), &Outcome::Succeeded, "{progress:?}");
    let running = progress
        .iter()
        .position(|p| *p == Progress::Running)
        .unwrap_or_else(|| panic!("never Running: {progress:?}"));
    let first = position(&progress, "first", StepState::Succeeded)
        .unwrap_or_else(|| panic!("first never succeeded: {progress:?}"));
    let second = position(&progress, "second", StepState::Succeeded)
        .unwrap_or_else(|| panic!("second never succeeded: {progress:?}"));
    assert!(running < first && first < second, "{progress:?}");
    if let Some(started) = position(&progress, "second", StepState::Running) {
        assert!(
            first < started,
            "second ran before first ended: {progress:?}"
        );
    }
    // Attached again after the end (a restart of the host): the outcome, at once.
    let again = progress_until_end(&*engine, &job).await;
    assert_eq!(outcome(&again), &Outcome::Succeeded, "{again:?}");
    engine.cleanup(job.id).await.expect("cleanup");
}

#[doc(hidden)]
pub async fn a_failing_step_fails_the_job_and_skips_the_rest(fixture: Arc<dyn Fixture>) {
    let engine = fixture.engine();
    let job = fixture.job(Shape::Fails).await;
    engine.submit(&job).await.expect("submit");
    let progress = progress_until_end(&*engine, &job).await;
    let Outcome::Failed(message) = outcome(&progress) else {
        panic!("not failed: {progress:?}");
    };
    assert!(
        message.contains("first"),
        "the message names the step: {message}"
    );
    assert!(
        position(&progress, "second", StepState::Running).is_none()
            && position(&progress, "second", StepState::Succeeded).is_none(),
        "second ran: {progress:?}"
    );
    engine.cleanup(job.id).await.expect("cleanup");
}

#[doc(hidden)]
pub async fn cancel_stops_a_running_job(fixture: Arc<dyn Fixture>) {
    let engine = fixture.engine();
    let job = fixture.job(Shape::RunsLong).await;
    engine.submit(&job).await.expect("submit");
    let mut stream = engine.progress(job.id);
    within("Running", async {
        loop {
            match stream.next().await {
                Some(Ok(Progress::Running)) => return,
                Some(Ok(Progress::Ended(outcome))) => panic!("ended before cancel: {outcome:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("progress: {e}"),
                None => panic!("progress ended"),
            }
        }
    })
    .await;
    engine.cancel(job.id).await.expect("cancel");
    let end = within("the end after cancel", async {
        loop {
            match stream.next().await {
                Some(Ok(Progress::Ended(outcome))) => return outcome,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("progress: {e}"),
                None => panic!("progress ended without Ended"),
            }
        }
    })
    .await;
    assert!(matches!(end, Outcome::Cancelled(_)), "{end:?}");
    engine
        .cancel(job.id)
        .await
        .expect("a second cancel is fine");
    // Its logs end too.
    all_lines(&*engine, &job, None).await;
    engine.cleanup(job.id).await.expect("cleanup");
}

#[doc(hidden)]
pub async fn logs_come_step_by_step_and_resume_after_a_cursor(fixture: Arc<dyn Fixture>) {
    let engine = fixture.engine();
    let job = fixture.job(Shape::Succeeds).await;
    engine.submit(&job).await.expect("submit");
    // Followed from the start while it runs.
    let lines = all_lines(&*engine, &job, None).await;
    assert_eq!(
        texts(&lines),
        pairs(&[("first", "one"), ("first", "two"), ("second", "three")]),
    );
    let cursor = LogCursor::after(&lines[..1]);
    let rest = all_lines(&*engine, &job, cursor).await;
    assert_eq!(
        texts(&rest),
        pairs(&[("first", "two"), ("second", "three")]),
    );
    let none = all_lines(&*engine, &job, LogCursor::after(&lines)).await;
    assert!(none.is_empty(), "{none:?}");
    engine.cleanup(job.id).await.expect("cleanup");
}

#[doc(hidden)]
pub async fn submitting_twice_starts_nothing_twice(fixture: Arc<dyn Fixture>) {
    let engine = fixture.engine();
    let job = fixture.job(Shape::Succeeds).await;
    engine.submit(&job).await.expect("submit");
    engine.submit(&job).await.expect("the same job again");
    let progress = progress_until_end(&*engine, &job).await;
    assert_eq!(outcome(&progress), &Outcome::Succeeded);
    let lines = all_lines(&*engine, &job, None).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    engine.cleanup(job.id).await.expect("cleanup");
}

#[doc(hidden)]
pub async fn unknown_jobs_are_reported_not_invented(fixture: Arc<dyn Fixture>) {
    let engine = fixture.engine();
    let id = uuid::Uuid::new_v4();
    let first = within("progress", engine.progress(id).next()).await;
    assert!(
        matches!(first, Some(Err(EngineError::UnknownJob { id: unknown, .. })) if unknown == id),
        "{first:?}"
    );
    let first = within("logs", engine.logs(id, None).next()).await;
    assert!(
        matches!(first, Some(Err(EngineError::UnknownJob { .. }))),
        "{first:?}"
    );
    engine.cancel(id).await.expect("cancelling an unknown job");
    engine
        .cleanup(id)
        .await
        .expect("cleaning up an unknown job");
}

#[doc(hidden)]
pub async fn cleanup_forgets_the_job(fixture: Arc<dyn Fixture>) {
    let engine = fixture.engine();
    let job = fixture.job(Shape::Succeeds).await;
    engine.submit(&job).await.expect("submit");
    progress_until_end(&*engine, &job).await;
    engine.cleanup(job.id).await.expect("cleanup");
    let first = within("progress after cleanup", async {
        // Removal may take the engine a moment to see (a watch event); the job must go.
        loop {
            match engine.progress(job.id).next().await {
                Some(Err(EngineError::UnknownJob { .. })) => return Ok(()),
                Some(Ok(Progress::Ended(_))) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return Err(format!("{other:?}")),
            }
        }
    })
    .await;
    first.expect("progress after cleanup");
}
