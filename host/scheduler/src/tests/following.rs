//! A running job followed on its engine: its steps and lines into the store through the job
//! service, and cancels carried to the engine.

use futures::StreamExt;
use omni_engine::testing::{Act, Scripted};
use omni_engine::{Engine, LogStream, Outcome, Progress, StepState};
use omni_jobs::FollowEvent;
use omni_store::JobState;

use super::*;

fn step(name: &str, state: StepState) -> Act {
    Act::Step(name.into(), state)
}

fn log(step: &str, line: &str) -> Act {
    Act::Log(step.into(), line.into())
}

#[tokio::test(start_paused = true)]
async fn steps_and_log_lines_are_recorded_through_the_job_service_as_they_come() {
    let engine = Scripted::builder("a").build();
    let world = world(&[&engine]);
    let mut events = world.jobs.subscribe();
    let job = submit(&world.jobs, "x86_64").await;
    // A follower of the log from the start, on this replica (which collects it).
    let follow = world.jobs.follow_logs(job.id, None, None).await.unwrap();
    taken(&engine, job.id).await;
    engine.play(
        job.id,
        [
            Act::Wait(Some("pulling the image".into())),
            Act::Run,
            step("fetch", StepState::Running),
            log("fetch", "fetching"),
            log("fetch", "fetched"),
        ],
    );
    let fetching = wait_for(&world.jobs, job.id, "fetching", |j| {
        j.steps[0].state == StepState::Running
    })
    .await;
    assert_eq!(fetching.state, JobState::Running);
    assert_eq!(fetching.steps[1].state, StepState::Pending);
    // Stored while the job runs, not only at its end.
    omni_test_support::eventually("the first lines stored", || async {
        (stored_lines(&world.jobs, job.id).await.len() == 2).then_some(())
    })
    .await;
    engine.play(
        job.id,
        [
            step("fetch", StepState::Succeeded),
            step("build", StepState::Running),
            Act::LogErr("build".into(), "a warning".into()),
            log("build", "built"),
            step("build", StepState::Succeeded),
            Act::End(Outcome::Succeeded),
        ],
    );
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    assert!(
        done.steps.iter().all(|s| s.state == StepState::Succeeded),
        "{:?}",
        done.steps
    );
    let lines = stored_lines(&world.jobs, job.id).await;
    let seen: Vec<(&str, LogStream, &str)> = lines
        .iter()
        .map(|l| (l.step.as_str(), l.stream, l.line.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("fetch", LogStream::Stdout, "fetching"),
            ("fetch", LogStream::Stdout, "fetched"),
            ("build", LogStream::Stderr, "a warning"),
            ("build", LogStream::Stdout, "built"),
        ]
    );
    let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    // The live follower got the same lines, then the end (after the last line).
    let mut follow = std::pin::pin!(follow);
    let mut followed = Vec::new();
    let end = loop {
        match follow.next().await.expect("an end").unwrap() {
            FollowEvent::Lines(batch) => followed.extend(batch.iter().cloned()),
            other => break other,
        }
    };
    assert_eq!(
        end,
        FollowEvent::End {
            state: JobState::Succeeded
        }
    );
    assert_eq!(followed, lines);
    // Every transition was announced, in order (the last one just after it was stored).
    let mut announced = Vec::new();
    omni_test_support::eventually("the end announced", || {
        while let Ok(event) = events.try_recv() {
            if event.job_id == job.id {
                announced.push(event.to);
            }
        }
        std::future::ready(announced.last().is_some_and(|s| s.is_final()).then_some(()))
    })
    .await;
    assert_eq!(announced, RAN);
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_a_running_job_on_its_engine_and_frees_its_slot() {
    let engine = Scripted::builder("a").max_running(1).build();
    let world = world(&[&engine]);
    let job = submit(&world.jobs, "x86_64").await;
    let next = submit(&world.jobs, "x86_64").await;
    taken(&engine, job.id).await;
    engine.play(job.id, [Act::Run, step("fetch", StepState::Running)]);
    wait_for(&world.jobs, job.id, "fetching", |j| {
        j.steps[0].state == StepState::Running
    })
    .await;
    world.jobs.cancel(job.id).await.unwrap();
    omni_test_support::eventually("the engine to be told", || {
        std::future::ready(engine.cancels().contains(&job.id).then_some(()))
    })
    .await;
    // The engine ended it as cancelled.
    let mut progress = engine.progress(job.id);
    let end = loop {
        match progress.next().await {
            Some(Ok(Progress::Ended(outcome))) => break outcome,
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    assert!(matches!(end, Outcome::Cancelled(_)), "{end:?}");
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Cancelled);
    assert_eq!(done.message.as_deref(), Some("cancelled by request"));
    // Its follower saw the end and let the slot go.
    reaches(&world.jobs, next.id, JobState::Running).await;
    assert_eq!(engine.submitted(), [job.id, next.id]);
}

#[tokio::test(start_paused = true)]
async fn a_queued_job_cancelled_never_reaches_an_engine() {
    let engine = Scripted::builder("a").max_running(1).build();
    let world = world(&[&engine]);
    let first = submit(&world.jobs, "x86_64").await;
    let cancelled = submit(&world.jobs, "x86_64").await;
    let last = submit(&world.jobs, "x86_64").await;
    reaches(&world.jobs, first.id, JobState::Running).await;
    reaches(&world.jobs, cancelled.id, JobState::Queued).await;
    world.jobs.cancel(cancelled.id).await.unwrap();
    engine.play(first.id, succeeds());
    // The slot goes to the job behind it, which would have come after it.
    reaches(&world.jobs, last.id, JobState::Running).await;
    assert_eq!(engine.submitted(), [first.id, last.id]);
    assert!(engine.cancels().is_empty());
    assert_eq!(
        world.jobs.get(cancelled.id).await.unwrap().state,
        JobState::Cancelled
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancel_stored_where_the_engine_could_not_be_told_reaches_it_through_the_follower() {
    let engine = Scripted::builder("a").build();
    let world = world(&[&engine]);
    let job = submit(&world.jobs, "x86_64").await;
    taken(&engine, job.id).await;
    engine.play(job.id, [Act::Run]);
    reaches(&world.jobs, job.id, JobState::Running).await;
    // Another replica's service (no scheduler attached: it tells no engine) stores the cancel.
    let other = world.jobs.replica();
    other.cancel(job.id).await.unwrap();
    // The leader's follower finds it when it checks the store, and stops the job.
    omni_test_support::eventually("the engine to be told", || {
        std::future::ready((engine.cancels() == [job.id]).then_some(()))
    })
    .await;
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Cancelled);
    assert_eq!(done.message.as_deref(), Some("cancelled by request"));
}
