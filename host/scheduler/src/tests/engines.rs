//! What an engine answers, and what becomes of the job: unreachable, refused, lost; and what it
//! is given.

use omni_engine::testing::{Act, Answer, Scripted};
use omni_store::JobState;
use serde_json::json;

use super::*;

#[tokio::test(start_paused = true)]
async fn an_engine_that_cannot_be_reached_keeps_its_jobs_queued_and_is_tried_again() {
    let engine = Scripted::builder("a").build();
    engine.answer(Answer::Unavailable);
    let world = world(&[&engine]);
    let job = submit(&world.jobs, "x86_64").await;
    // Tried again and again (after `retry_after`, on the scans' rounds).
    submits_reach(&engine, 3).await;
    let waiting = world.jobs.get(job.id).await.unwrap();
    assert_eq!(waiting.state, JobState::Queued, "{waiting:#?}");
    // On record there before each try, so a new leader would try it there again.
    assert_eq!(waiting.engine.as_deref(), Some("a"));
    assert!(!engine.has(job.id));
    engine.answer(Answer::Accept);
    taken(&engine, job.id).await;
    engine.play(job.id, succeeds());
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    assert_eq!(states(&world.jobs, job.id).await, RAN);
    assert!(engine.submitted().iter().all(|id| *id == job.id));
}

#[tokio::test(start_paused = true)]
async fn a_job_the_engine_refuses_fails_with_the_engines_reason() {
    let engine = Scripted::builder("a").build();
    engine.answer(Answer::Reject("container build has no command".into()));
    let world = world(&[&engine]);
    let job = submit(&world.jobs, "x86_64").await;
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Failed);
    let message = done.message.unwrap();
    assert!(message.contains("rejected"), "{message}");
    assert!(message.contains("has no command"), "{message}");
    assert_eq!(
        states(&world.jobs, job.id).await,
        [JobState::Pending, JobState::Queued, JobState::Failed]
    );
    // Tried once: a refusal is the job's fault, not the engine's.
    assert_eq!(engine.submitted(), [job.id]);
}

#[tokio::test(start_paused = true)]
async fn a_render_error_fails_the_job_before_any_engine_sees_it() {
    let engine = Scripted::builder("a").build();
    let world = world(&[&engine]);
    let params = json!({"fail": "no spec given"});
    let job = submit_as(
        &world.jobs,
        submission("build", "default", "x86_64", params),
    )
    .await;
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Failed);
    let message = done.message.unwrap();
    assert!(message.contains("rendering failed"), "{message}");
    assert!(message.contains("no spec given"), "{message}");
    assert_eq!(
        states(&world.jobs, job.id).await,
        [JobState::Pending, JobState::Queued, JobState::Failed]
    );
    assert!(engine.submitted().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_job_its_engine_loses_fails_saying_so_and_frees_its_slot() {
    let engine = Scripted::builder("a").max_running(1).build();
    let world = world(&[&engine]);
    let lost = submit(&world.jobs, "x86_64").await;
    let next = submit(&world.jobs, "x86_64").await;
    taken(&engine, lost.id).await;
    engine.play(
        lost.id,
        [Act::Run, Act::Step("fetch".into(), StepState::Running)],
    );
    wait_for(&world.jobs, lost.id, "fetching", |j| {
        j.steps[0].state == StepState::Running
    })
    .await;
    engine.play(lost.id, [Act::Lose]);
    let done = ended(&world.jobs, lost.id).await;
    assert_eq!(done.state, JobState::Failed);
    let message = done.message.unwrap();
    assert!(message.contains("no longer has the job"), "{message}");
    reaches(&world.jobs, next.id, JobState::Running).await;
}

#[tokio::test(start_paused = true)]
async fn a_jobs_objects_are_rendered_for_the_namespace_of_the_engine_that_runs_it() {
    let engine = Scripted::builder("a").namespace("builds-arm").build();
    let world = world(&[&engine]);
    let job = submit(&world.jobs, "x86_64").await;
    taken(&engine, job.id).await;
    let given = engine.submits();
    assert_eq!(given[0].namespace, "builds-arm");
    assert_eq!(given[0].name, format!("omni-{}", job.id));
    let namespaces: Vec<&str> = given[0]
        .rendered
        .manifests
        .iter()
        .map(|m| m.body["metadata"]["namespace"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(namespaces, ["builds-arm"]);
}
