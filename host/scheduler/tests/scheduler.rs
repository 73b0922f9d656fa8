//! The scheduler over real parts: the real plugins (srpm, and the hostile fixture for jobs that
//! linger, fail to render or that the engine refuses), an embedded store, and the local engine
//! running real processes. Where a test needs an engine to misbehave on cue (take a job and
//! never answer, as a leader dies), it uses `omni_engine::testing::Scripted` under the real
//! plugins instead. The scheduler's own unit tests (`src/tests/`, paused time, scripted
//! engines) cover placement, retries and recovery case by case; these check the same paths
//! end to end, on real time.

use std::sync::Arc;
use std::time::Duration;

use omni_engine::testing::{Act, Answer, Scripted};
use omni_engine::{Engine, JobId};
use omni_engine_local::{LocalEngine, LocalEngineConfig};
use omni_jobs::{JobError, JobService, Submission};
use omni_scheduler::{Scheduler, SchedulerConfig, SchedulerHandle};
use omni_store::{Created, Job, JobState, LogQuery, StepState};
use serde_json::{Value, json};

/// A guard against a hang, not a timing assertion.
use omni_test_support::PATIENCE;

const SPEC: &str = "Name: hello\nVersion: 1.0\nRelease: 1%{?dist}\nSummary: Says hello\nLicense: MIT\nSource0: hello.sh\nBuildArch: noarch\n\n%description\nSays hello.\n\n%install\ninstall -D -m 755 %{SOURCE0} %{buildroot}/usr/bin/hello\n\n%files\n/usr/bin/hello\n";

struct World {
    _dirs: omni_test_support::Dirs,
    _root: tempfile::TempDir,
    jobs: JobService,
    engine: Arc<LocalEngine>,
    _handle: Option<SchedulerHandle>,
}

fn config() -> SchedulerConfig {
    SchedulerConfig {
        lease_ttl: Duration::from_secs(2),
        scan_interval: Duration::from_millis(200),
        retry_after: Duration::from_millis(200),
        ..SchedulerConfig::default()
    }
}

fn local(root: &tempfile::TempDir, max_running: usize) -> Arc<LocalEngine> {
    let config = LocalEngineConfig {
        name: "local".into(),
        max_running,
        arches: vec!["x86_64".into()],
        ..LocalEngineConfig::new()
    };
    Arc::new(LocalEngine::new(&config, root.path().to_owned()))
}

fn world(max_running: usize, config: SchedulerConfig) -> World {
    let (dirs, jobs) = omni_test_support::job_service(&["srpm", "hostile"]);
    let root = tempfile::tempdir().unwrap();
    let engine = local(&root, max_running);
    let scheduler = Scheduler::new(
        jobs.clone(),
        vec![engine.clone() as Arc<dyn Engine>],
        config,
    )
    .unwrap();
    World {
        _dirs: dirs,
        _root: root,
        jobs,
        engine,
        _handle: Some(scheduler.spawn()),
    }
}

fn submission(task: &str, domain: &str, params: Value) -> Submission {
    Submission {
        service: "test".into(),
        task: task.into(),
        domain: domain.into(),
        arch: "x86_64".into(),
        params,
        idempotency: None,
    }
}

async fn submit(jobs: &JobService, task: &str, domain: &str, params: Value) -> Job {
    match jobs.submit(submission(task, domain, params)).await.unwrap() {
        Created::New(job) => job,
        Created::Existing(_) => panic!("not new"),
    }
}

async fn hostile(jobs: &JobService, behaviour: &str) -> Job {
    submit(jobs, "hostile", "default", json!({"behaviour": behaviour})).await
}

/// Polls the job until `done` says so.
async fn wait_for(jobs: &JobService, id: JobId, what: &str, done: impl Fn(&Job) -> bool) -> Job {
    omni_test_support::eventually(&format!("job {id} {what}"), || async {
        let job = jobs.get(id).await.unwrap();
        done(&job).then_some(job)
    })
    .await
}

async fn ended(jobs: &JobService, id: JobId) -> Job {
    wait_for(jobs, id, "ended", |j| j.state.is_final()).await
}

async fn running(jobs: &JobService, id: JobId) -> Job {
    wait_for(jobs, id, "ran", |j| j.state == JobState::Running).await
}

fn states(history: &[omni_store::StateChange]) -> Vec<JobState> {
    history.iter().map(|c| c.to).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_srpm_job_runs_to_success_on_the_local_engine_with_its_log_and_artifact() {
    let world = world(2, config());
    // base64 of "#!/bin/sh\necho hello\n"
    let params = json!({"spec": SPEC, "sources": {"hello.sh": "IyEvYmluL3NoCmVjaG8gaGVsbG8K"},
                        "defines": {"dist": ".oe2403"}});
    let job = submit(&world.jobs, "srpm", "default", params).await;
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    assert_eq!(done.engine.as_deref(), Some("local"));
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    assert!(
        done.steps.iter().all(|s| s.state == StepState::Succeeded),
        "{:?}",
        done.steps
    );
    let history = world.jobs.store().history(job.id).await.unwrap();
    assert_eq!(
        states(&history),
        [
            JobState::Pending,
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded
        ]
    );

    // Its log, stored in order with a sequence from 1, step by step.
    let log = world
        .jobs
        .store()
        .read_logs(
            job.id,
            &LogQuery {
                step: None,
                after: None,
                limit: 10_000,
            },
        )
        .await
        .unwrap()
        .items;
    assert!(!log.is_empty());
    for (i, line) in log.iter().enumerate() {
        assert_eq!(line.seq, i as u64 + 1);
    }
    let steps: Vec<&str> = log.iter().map(|l| l.step.as_str()).collect();
    let first_build = steps.iter().position(|s| *s == "build").unwrap();
    assert!(
        steps[..first_build].iter().all(|s| *s == "fetch"),
        "{steps:?}"
    );
    assert!(
        steps[first_build..].iter().all(|s| *s == "build"),
        "{steps:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.line.contains("hello-1.0-1.oe2403.src.rpm")),
        "{log:#?}"
    );

    // Its artifact, kept in the job's output directory.
    let srpm = world
        .engine
        .runner()
        .volume_dir(&job.id.to_string(), "output")
        .join("hello-1.0-1.oe2403.src.rpm");
    let info = std::process::Command::new("rpm")
        .args(["-qp", "--qf", "%{NAME}-%{VERSION}"])
        .arg(&srpm)
        .output()
        .unwrap();
    assert!(info.status.success(), "{srpm:?}: {info:?}");
    assert_eq!(String::from_utf8_lossy(&info.stdout), "hello-1.0");

    // Purging removes the job's directory with its artifacts.
    world.jobs.purge(job.id).await.unwrap();
    omni_test_support::eventually("the purged job's artifact to go", || {
        std::future::ready((!srpm.exists()).then_some(()))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_beyond_capacity_wait_queued_and_run_in_submission_order() {
    let world = world(1, config());
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(hostile(&world.jobs, "behave").await.id);
    }
    let mut jobs = Vec::new();
    for id in &ids {
        jobs.push(ended(&world.jobs, *id).await);
    }
    for pair in jobs.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(a.state, JobState::Succeeded, "{a:#?}");
        assert!(
            a.finished_at.unwrap() <= b.started_at.unwrap(),
            "one slot, yet {} started before {} ended",
            b.id,
            a.id
        );
    }
    for job in &jobs[1..] {
        let history = world.jobs.store().history(job.id).await.unwrap();
        assert_eq!(
            states(&history),
            [
                JobState::Pending,
                JobState::Queued,
                JobState::Running,
                JobState::Succeeded
            ]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_limit_holds_its_jobs_back_but_not_other_domains() {
    let mut config = config();
    config.max_running_per_domain.insert("busy".into(), 1);
    let world = world(4, config);
    let linger = json!({"behaviour": "linger"});
    let first = submit(&world.jobs, "hostile", "busy", linger.clone()).await;
    running(&world.jobs, first.id).await;
    let second = submit(&world.jobs, "hostile", "busy", linger.clone()).await;
    let other = submit(&world.jobs, "hostile", "default", linger.clone()).await;
    // The other domain's job runs although it came after the held one.
    running(&world.jobs, other.id).await;
    assert_eq!(
        world.jobs.get(second.id).await.unwrap().state,
        JobState::Queued
    );
    world.jobs.cancel(first.id).await.unwrap();
    let second = running(&world.jobs, second.id).await;
    let first = ended(&world.jobs, first.id).await;
    assert_eq!(first.state, JobState::Cancelled);
    assert!(second.started_at.unwrap() >= first.finished_at.unwrap());
    for id in [second.id, other.id] {
        world.jobs.cancel(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_of_one_arch_share_the_load() {
    let (_dirs, jobs) = omni_test_support::job_service(&["hostile"]);
    let root = tempfile::tempdir().unwrap();
    let engines: Vec<Arc<dyn Engine>> = ["left", "right"]
        .into_iter()
        .map(|name| {
            let config = LocalEngineConfig {
                name: name.into(),
                max_running: 1,
                arches: vec!["x86_64".into()],
                ..LocalEngineConfig::new()
            };
            Arc::new(LocalEngine::new(&config, root.path().join(name))) as Arc<dyn Engine>
        })
        .collect();
    let scheduler = Scheduler::new(jobs.clone(), engines, config()).unwrap();
    let _handle = scheduler.spawn();
    let first = hostile(&jobs, "linger").await;
    let second = hostile(&jobs, "linger").await;
    let first = running(&jobs, first.id).await;
    let second = running(&jobs, second.id).await;
    let mut on: Vec<&str> = [&first, &second]
        .iter()
        .map(|j| j.engine.as_deref().unwrap())
        .collect();
    on.sort_unstable();
    assert_eq!(on, ["left", "right"]);
    for job in [first, second] {
        jobs.cancel(job.id).await.unwrap();
        assert_eq!(ended(&jobs, job.id).await.state, JobState::Cancelled);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_error_fails_the_job_with_the_plugins_message() {
    let world = world(2, config());
    let job = hostile(&world.jobs, "panic").await;
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Failed);
    let message = done.message.unwrap();
    assert!(message.contains("rendering failed"), "{message}");
    assert!(message.contains("panics on purpose"), "{message}");
    let history = world.jobs.store().history(job.id).await.unwrap();
    assert_eq!(
        states(&history),
        [JobState::Pending, JobState::Queued, JobState::Failed]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_engine_refuses_fails_with_the_engines_reason() {
    let world = world(2, config());
    let job = hostile(&world.jobs, "no-command").await;
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Failed);
    let message = done.message.unwrap();
    assert!(message.contains("rejected"), "{message}");
    assert!(message.contains("has no command"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job_on_its_engine() {
    let world = world(2, config());
    let job = hostile(&world.jobs, "linger").await;
    wait_for(&world.jobs, job.id, "ran its step", |j| {
        j.steps[0].state == StepState::Running
    })
    .await;
    world.jobs.cancel(job.id).await.unwrap();
    // The engine saw it end as cancelled: its process was killed, not left sleeping.
    let mut progress = world.engine.progress(job.id);
    let end = tokio::time::timeout(PATIENCE, async {
        use futures::StreamExt;
        loop {
            match progress.next().await {
                Some(Ok(omni_engine::Progress::Ended(outcome))) => return outcome,
                Some(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(end, omni_engine::Outcome::Cancelled(_)), "{end:?}");
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Cancelled);
    assert_eq!(done.steps[0].state, StepState::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arch_no_engine_serves_is_refused_at_submit() {
    let world = world(2, config());
    let mut arm = submission("hostile", "default", json!({"behaviour": "behave"}));
    arm.arch = "aarch64".into();
    let error = world.jobs.submit(arm).await.unwrap_err();
    assert!(
        matches!(&error, JobError::NoEngine { arch, served } if arch == "aarch64" && served == &["x86_64"]),
        "{error:?}"
    );
}

/// A second scheduler over the same store: another replica, or this one restarted.
fn replica(
    jobs: &JobService,
    engines: Vec<Arc<dyn Engine>>,
) -> (JobService, Scheduler, SchedulerHandle) {
    let jobs = JobService::new(Arc::clone(jobs.store()), Arc::clone(jobs.plugins()));
    let scheduler = Scheduler::new(jobs.clone(), engines, config()).unwrap();
    let handle = scheduler.spawn();
    (jobs, scheduler, handle)
}

async fn leading(scheduler: &Scheduler) {
    omni_test_support::eventually("the new scheduler to take the lease", || {
        std::future::ready(scheduler.is_leading().then_some(()))
    })
    .await;
}

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

/// Every stored line of job `id`, in order.
async fn stored_lines(jobs: &JobService, id: JobId) -> Vec<omni_store::LogLine> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = jobs
            .read_logs(
                id,
                &LogQuery {
                    step: None,
                    after,
                    limit: 1000,
                },
            )
            .await
            .unwrap();
        all.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
}

fn printed(lines: u64) -> Vec<String> {
    let mut all: Vec<String> = (1..=lines).map(|i| format!("line {i}")).collect();
    all.push("done".into());
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_on_a_replica_that_does_not_collect_the_job_reads_it_from_the_store() {
    let world = world(2, config());
    // Another replica: the same store, its own fan-out (nothing is published into it) and its
    // own events (it hears nothing of the job's end).
    let other = JobService::new(
        Arc::clone(world.jobs.store()),
        Arc::clone(world.jobs.plugins()),
    );
    let job = submit(
        &world.jobs,
        "hostile",
        "default",
        json!({"behaviour": "print", "lines": 3000, "burst": 500}),
    )
    .await;
    let stream = other.follow_logs(job.id, None, None).await.unwrap();
    let mut stream = std::pin::pin!(stream);
    let mut lines = Vec::new();
    let end = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = futures::StreamExt::next(&mut stream).await {
            match event.unwrap() {
                omni_jobs::FollowEvent::Lines(batch) => lines.extend(batch.iter().cloned()),
                other => return other,
            }
        }
        panic!("the follow stream ended without an end");
    })
    .await
    .expect("the follower got to the end");
    assert_eq!(
        end,
        omni_jobs::FollowEvent::End {
            state: JobState::Succeeded
        }
    );
    assert!(!other.logs().collected_here(job.id));
    let texts: Vec<String> = lines.iter().map(|l| l.line.clone()).collect();
    assert_eq!(texts, printed(3000));
    assert_eq!(lines, stored_lines(&world.jobs, job.id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_resumes_a_running_jobs_log_without_losing_or_repeating_lines() {
    let mut world = world(2, config());
    // About four seconds of printing, 200 lines every 100 ms.
    let job = submit(
        &world.jobs,
        "hostile",
        "default",
        json!({"behaviour": "print", "lines": 8000, "burst": 200}),
    )
    .await;
    omni_test_support::eventually("some lines stored", || async {
        (!stored_lines(&world.jobs, job.id).await.is_empty()).then_some(())
    })
    .await;
    // The leader goes while the job prints; another takes over the same engine's job.
    world._handle = None;
    let (jobs, second, _handle) = replica(&world.jobs, vec![world.engine.clone()]);
    leading(&second).await;
    let done = ended(&jobs, job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    let stored = stored_lines(&jobs, job.id).await;
    let texts: Vec<String> = stored.iter().map(|l| l.line.clone()).collect();
    assert!(
        texts == printed(8000),
        "lines lost or repeated: {} stored",
        texts.len()
    );
    let seqs: Vec<u64> = stored.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, (1..=8001).collect::<Vec<u64>>());
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
    let history = states(&jobs.store().history(job.id).await.unwrap());
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

/// What the real plugin renders reaches the engine for its namespace (a scripted engine, which
/// shows what it was given; the unit tests' in-process plugin cannot show the real one's
/// objects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_objects_are_rendered_for_the_namespace_of_the_engine_that_runs_it() {
    let (_dirs, jobs) = omni_test_support::job_service(&["hostile"]);
    let engine = Scripted::builder("a").namespace("builds-arm").build();
    let (_, _, _handle) = replica(&jobs, vec![Arc::clone(&engine) as Arc<dyn Engine>]);
    let job = hostile(&jobs, "behave").await;
    running(&jobs, job.id).await;
    let given = engine.submits();
    assert_eq!(given[0].namespace, "builds-arm");
    let objects: Vec<&str> = given[0]
        .rendered
        .manifests
        .iter()
        .map(|m| m.body["metadata"]["namespace"].as_str().unwrap_or(""))
        .collect();
    assert!(!objects.is_empty());
    assert!(objects.iter().all(|n| *n == "builds-arm"), "{objects:?}");
    engine.play(
        job.id,
        [Act::Run, Act::End(omni_engine::Outcome::Succeeded)],
    );
    let done = ended(&jobs, job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
}
