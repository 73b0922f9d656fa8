//! Another replica taking over the jobs of a leader that went away.

use omni_engine::testing::{Act, Answer, Scripted};

use super::*;

/// A lingering job running, and then its scheduler gone without a word: its followers stop and
/// its lease lapses (the world's scheduler handle is dropped).
async fn leader_dies_while_a_job_runs() -> (World, Job) {
    let mut world = world(2, config());
    let job = hostile(&world.jobs, "linger").await;
    running(&world.jobs, job.id).await;
    world._handle = None;
    (world, job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_reattaches_to_the_jobs_running_on_its_engines() {
    let (world, job) = leader_dies_while_a_job_runs().await;
    let engine = world.engine.clone();
    let (jobs, second, _handle) = replica(&world.jobs, vec![engine.clone()]);
    leading(&second).await;
    // The job ends on the engine by itself (not through the job service): only a follower of
    // the new leader can record that.
    engine.cancel(job.id).await.unwrap();
    let done = ended(&jobs, job.id).await;
    assert_eq!(done.state, JobState::Cancelled);
    assert_eq!(done.message.as_deref(), Some("cancelled"), "{done:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_its_engine_no_longer_has_fails_with_the_reason() {
    let (world, job) = leader_dies_while_a_job_runs().await;
    // Restarted: a local engine of the same name that keeps nothing from before.
    let root = tempfile::tempdir().unwrap();
    let (jobs, second, _handle) = replica(&world.jobs, vec![local(&root, 2)]);
    leading(&second).await;
    let done = ended(&jobs, job.id).await;
    assert_eq!(done.state, JobState::Failed);
    assert!(
        done.message
            .as_deref()
            .unwrap()
            .contains("no longer has the job"),
        "{done:#?}"
    );
    world.engine.cancel(job.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_dies_between_submit_and_running_leaves_the_job_to_run_once_where_it_went() {
    let (_dirs, jobs) = omni_test_support::job_service(&["hostile"]);
    let a = Scripted::builder("a").build();
    let b = Scripted::builder("b").build();
    // Engine a takes the job and never answers: the leader dies right there.
    a.answer(Answer::AcceptAndHang);
    let engines = |order: [&Arc<Scripted>; 2]| {
        order
            .into_iter()
            .map(|e| Arc::clone(e) as Arc<dyn Engine>)
            .collect::<Vec<_>>()
    };
    let (first, _, handle) = replica(&jobs, engines([&a, &b]));
    let job = hostile(&first, "behave").await;
    // Engine a (the first of two idle ones) took the job; the leader never hears back.
    omni_test_support::eventually("engine a to take the job", || {
        std::future::ready(a.has(job.id).then_some(()))
    })
    .await;
    let stuck = jobs.get(job.id).await.unwrap();
    assert_eq!(stuck.state, JobState::Queued, "{stuck:#?}");
    assert_eq!(stuck.engine.as_deref(), Some("a"), "{stuck:#?}");
    drop(handle);
    a.answer(Answer::Accept);
    // The next leader lists the engines the other way round: a job started afresh would go to
    // b and run twice.
    let (jobs, _, _handle) = replica(&jobs, engines([&b, &a]));
    running(&jobs, job.id).await;
    a.play(
        job.id,
        [Act::Run, Act::End(omni_engine::Outcome::Succeeded)],
    );
    let done = ended(&jobs, job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    assert_eq!(done.engine.as_deref(), Some("a"));
    assert!(b.submitted().is_empty(), "the job went to b too");
    // Submitted to a again, which had it and started nothing twice.
    assert_eq!(a.submitted(), [job.id, job.id]);
    let history = states(&jobs.history(job.id).await.unwrap());
    assert_eq!(
        history,
        [
            JobState::Pending,
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded
        ]
    );
}
