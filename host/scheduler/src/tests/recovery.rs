//! A leader taking over: jobs recorded on engines (running, or being started when the last
//! leader died), and pending jobs it was not told of.

use omni_engine::testing::{Act, Scripted};
use omni_engine::{Engine, StepState};
use omni_store::JobState;

use super::*;

/// A job moved by hand to `queued` on `engine`, as a leader that died after recording the
/// engine leaves it.
async fn queued_on(jobs: &JobService, engine: &str) -> Job {
    let job = submit(jobs, "x86_64").await;
    jobs.transition(job.id, JobState::Queued, None)
        .await
        .unwrap();
    jobs.assign_engine(job.id, engine, None).await.unwrap()
}

/// A job moved by hand to `running` on `engine`.
async fn running_on(jobs: &JobService, engine: &str) -> Job {
    let job = queued_on(jobs, engine).await;
    jobs.transition_on(job.id, JobState::Running, None, Some(engine.into()))
        .await
        .unwrap()
}

async fn leading(scheduler: &Scheduler) {
    omni_test_support::eventually("the scheduler to lead", || {
        std::future::ready(scheduler.is_leading().then_some(()))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_follows_a_job_running_on_its_engine_without_starting_it_again() {
    let engine = Scripted::builder("a").build();
    // Before any scheduler of this store: the job runs on the engine, with a line printed.
    let (_data, _store, jobs) = service();
    let job = running_on(&jobs, "a").await;
    engine.submit(&engine_job(&job)).await.unwrap();
    engine.play(
        job.id,
        [
            Act::Run,
            Act::Step("fetch".into(), StepState::Running),
            Act::Log("fetch".into(), "before".into()),
        ],
    );
    let (scheduler, _handle) = schedule(&jobs, &[&engine], SchedulerConfig::default());
    leading(&scheduler).await;
    // Where the job is on the engine reaches the store, and so does its log so far.
    wait_for(&jobs, job.id, "fetching", |j| {
        j.steps[0].state == StepState::Running
    })
    .await;
    omni_test_support::eventually("the line printed before to be stored", || async {
        (stored_lines(&jobs, job.id).await.len() == 1).then_some(())
    })
    .await;
    engine.play(
        job.id,
        [
            Act::Log("fetch".into(), "after".into()),
            Act::Step("fetch".into(), StepState::Succeeded),
            Act::Step("build".into(), StepState::Succeeded),
            Act::End(omni_engine::Outcome::Succeeded),
        ],
    );
    let done = ended(&jobs, job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    let lines = stored_lines(&jobs, job.id).await;
    let texts: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(texts, ["before", "after"]);
    assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [1, 2]);
    // Only the test's own submission: followed, not started again.
    assert_eq!(engine.submitted(), [job.id]);
}

#[tokio::test(start_paused = true)]
async fn a_job_being_started_when_its_leader_died_starts_again_on_that_engine_only() {
    let a = Scripted::builder("a").build();
    let b = Scripted::builder("b").build();
    let (_data, _store, jobs) = service();
    // The last leader recorded engine a, submitted the job there and died before `running`.
    let job = queued_on(&jobs, "a").await;
    a.submit(&engine_job(&job)).await.unwrap();
    // b is listed first and idle: a job started afresh would go there and run twice.
    let (_scheduler, _handle) = schedule(&jobs, &[&b, &a], SchedulerConfig::default());
    let started = reaches(&jobs, job.id, JobState::Running).await;
    assert_eq!(started.engine.as_deref(), Some("a"));
    // Submitted to a again, which had it and started nothing twice.
    assert_eq!(a.submitted(), [job.id, job.id]);
    a.play(job.id, succeeds());
    let done = ended(&jobs, job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    assert!(b.submitted().is_empty(), "the job went to b too");
    assert_eq!(states(&jobs, job.id).await, RAN);
}

#[tokio::test(start_paused = true)]
async fn a_job_running_on_an_engine_no_longer_configured_fails_with_the_reason() {
    let engine = Scripted::builder("a").build();
    let (_data, _store, jobs) = service();
    let job = running_on(&jobs, "gone").await;
    let (_scheduler, _handle) = schedule(&jobs, &[&engine], SchedulerConfig::default());
    let done = ended(&jobs, job.id).await;
    assert_eq!(done.state, JobState::Failed);
    let message = done.message.unwrap();
    assert!(message.contains("\"gone\""), "{message}");
    assert!(message.contains("no longer configured"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn pending_jobs_this_replica_was_not_told_of_are_found_by_its_scans() {
    let engine = Scripted::builder("a").max_running(4).build();
    // Scans more often than the default: the full scan is one in 64, and the patience of a wait
    // is counted on the paused clock, which runs on while the store writes on its own thread.
    let config = SchedulerConfig {
        scan_interval: std::time::Duration::from_millis(500),
        ..SchedulerConfig::default()
    };
    let world = world_with(&[&engine], config);
    leading(&world.scheduler).await;
    // Another replica's service over the same store: what it stores announces nothing here.
    let other = world.jobs.replica();
    let recent = submit(&other, "x86_64").await;
    taken(&engine, recent.id).await;
    // A job pending since long before (a write that failed left it so): only the full scan,
    // one in many, looks that far back.
    let long_ago = chrono::Utc::now() - chrono::TimeDelta::hours(2);
    let id = uuid::Uuid::new_v1(
        uuid::Timestamp::from_unix(
            uuid::NoContext,
            u64::try_from(long_ago.timestamp()).unwrap(),
            0,
        ),
        &[1, 2, 3, 4, 5, 6],
    );
    let created_at = omni_store::id_time(id).unwrap();
    let old = Job {
        id,
        created_at,
        updated_at: created_at,
        ..omni_test_support::pending_job("test", "build", "default")
    };
    world.store.create_job(&old, None).await.unwrap();
    taken(&engine, old.id).await;
    assert_eq!(engine.submitted(), [recent.id, old.id]);
}
