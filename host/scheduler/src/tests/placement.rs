//! Which queued job starts where, and when.

use omni_engine::testing::{Act, Scripted};
use omni_engine::{Outcome, StepState};
use omni_jobs::JobError;
use omni_store::JobState;
use serde_json::json;

use super::*;

#[tokio::test(start_paused = true)]
async fn jobs_beyond_capacity_wait_queued_and_start_in_submission_order_as_slots_free() {
    let engine = Scripted::builder("a").max_running(1).build();
    let world = world(&[&engine]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(submit(&world.jobs, "x86_64").await.id);
    }
    for (i, id) in ids.iter().enumerate() {
        let job = reaches(&world.jobs, *id, JobState::Running).await;
        assert_eq!(job.engine.as_deref(), Some("a"), "{job:#?}");
        for later in &ids[i + 1..] {
            reaches(&world.jobs, *later, JobState::Queued).await;
        }
        // One slot: the engine was given this job and those before it, none after.
        assert_eq!(engine.submitted(), ids[..=i]);
        engine.play(*id, succeeds());
        let done = ended(&world.jobs, *id).await;
        assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    }
    let jobs: Vec<Job> = {
        let mut jobs = Vec::new();
        for id in &ids {
            jobs.push(world.jobs.get(*id).await.unwrap());
        }
        jobs
    };
    for pair in jobs.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a.finished_at.unwrap() <= b.started_at.unwrap(),
            "one slot, yet {} started before {} ended",
            b.id,
            a.id
        );
    }
    for id in &ids {
        assert_eq!(states(&world.jobs, *id).await, RAN);
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_waiting_for_capacity_starts_once_the_engine_reports_more() {
    let engine = Scripted::builder("a").max_running(1).build();
    let world = world(&[&engine]);
    let first = submit(&world.jobs, "x86_64").await;
    let second = submit(&world.jobs, "x86_64").await;
    reaches(&world.jobs, first.id, JobState::Running).await;
    reaches(&world.jobs, second.id, JobState::Queued).await;
    assert_eq!(engine.submitted(), [first.id]);
    // Found by a later placement round (the scan's), while the first job still runs.
    engine.set_max_running(2);
    reaches(&world.jobs, second.id, JobState::Running).await;
    assert_eq!(engine.submitted(), [first.id, second.id]);
    assert_eq!(
        world.jobs.get(first.id).await.unwrap().state,
        JobState::Running
    );
}

#[tokio::test(start_paused = true)]
async fn each_job_goes_to_an_engine_of_its_arch() {
    let amd = Scripted::builder("amd").arches(&["x86_64"]).build();
    let arm = Scripted::builder("arm").arches(&["aarch64"]).build();
    let world = world(&[&amd, &arm]);
    // The arm job first: the first engine listed is not where every job goes.
    let on_arm = submit(&world.jobs, "aarch64").await;
    let on_amd = submit(&world.jobs, "x86_64").await;
    let on_arm = reaches(&world.jobs, on_arm.id, JobState::Running).await;
    let on_amd = reaches(&world.jobs, on_amd.id, JobState::Running).await;
    assert_eq!(on_arm.engine.as_deref(), Some("arm"));
    assert_eq!(on_amd.engine.as_deref(), Some("amd"));
    assert_eq!(arm.submitted(), [on_arm.id]);
    assert_eq!(amd.submitted(), [on_amd.id]);
    assert_eq!(arm.submits()[0].arch, "aarch64");
    // An arch the plugin builds but no engine runs is refused at once, naming those served.
    let error = world
        .jobs
        .submit(submission("build", "default", "riscv64", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, JobError::NoEngine { arch, served }
            if arch == "riscv64" && served == &["aarch64", "x86_64"]),
        "{error:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn engines_of_one_arch_share_the_load() {
    let left = Scripted::builder("left").max_running(2).build();
    let right = Scripted::builder("right").max_running(2).build();
    let world = world(&[&left, &right]);
    let first = submit(&world.jobs, "x86_64").await;
    let second = submit(&world.jobs, "x86_64").await;
    let first = reaches(&world.jobs, first.id, JobState::Running).await;
    let second = reaches(&world.jobs, second.id, JobState::Running).await;
    let mut on = [first.engine.unwrap(), second.engine.unwrap()];
    on.sort_unstable();
    assert_eq!(on, ["left", "right"]);
    assert_eq!(left.submitted().len(), 1);
    assert_eq!(right.submitted().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn limits_hold_back_their_own_domain_and_task_only() {
    let engine = Scripted::builder("a").max_running(8).build();
    let mut config = SchedulerConfig::default();
    config.max_running_per_domain.insert("busy".into(), 1);
    config.max_running_per_task.insert("test".into(), 1);
    let world = world_with(&[&engine], config);
    let busy = submit_as(
        &world.jobs,
        submission("build", "busy", "x86_64", json!({})),
    )
    .await;
    let test = submit_as(
        &world.jobs,
        submission("test", "default", "x86_64", json!({})),
    )
    .await;
    reaches(&world.jobs, busy.id, JobState::Running).await;
    reaches(&world.jobs, test.id, JobState::Running).await;
    let busy_held = submit_as(
        &world.jobs,
        submission("build", "busy", "x86_64", json!({})),
    )
    .await;
    let test_held = submit_as(
        &world.jobs,
        submission("test", "default", "x86_64", json!({})),
    )
    .await;
    let other = submit(&world.jobs, "x86_64").await;
    // The job of another domain and task runs although it came after the held ones.
    reaches(&world.jobs, other.id, JobState::Running).await;
    for held in [busy_held.id, test_held.id] {
        assert_eq!(world.jobs.get(held).await.unwrap().state, JobState::Queued);
    }
    let given = engine.submitted();
    // The first two start side by side, in either order.
    assert!(
        given[..2] == [busy.id, test.id] || given[..2] == [test.id, busy.id],
        "{given:?}"
    );
    assert_eq!(given[2..], [other.id]);
    // Each held job starts once the one of its kind ends.
    engine.play(busy.id, [Act::Run, Act::End(Outcome::Succeeded)]);
    let started = reaches(&world.jobs, busy_held.id, JobState::Running).await;
    let before = ended(&world.jobs, busy.id).await;
    assert!(started.started_at.unwrap() >= before.finished_at.unwrap());
    assert_eq!(
        world.jobs.get(test_held.id).await.unwrap().state,
        JobState::Queued
    );
    engine.play(
        test.id,
        [
            Act::Run,
            Act::Step("fetch".into(), StepState::Failed),
            Act::End(Outcome::Failed("fetch failed".into())),
        ],
    );
    reaches(&world.jobs, test_held.id, JobState::Running).await;
    assert_eq!(engine.submitted()[3..], [busy_held.id, test_held.id]);
}
