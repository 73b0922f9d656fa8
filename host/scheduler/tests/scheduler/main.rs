//! The scheduler over real parts: the real plugins (srpm, and the hostile fixture for jobs that
//! linger, fail to render or that the engine refuses), an embedded store, and the local engine
//! running real processes. Where a test needs an engine to misbehave on cue (take a job and
//! never answer, as a leader dies), it uses `omni_engine::testing::Scripted` under the real
//! plugins instead. The scheduler's own unit tests (`src/tests/`, paused time, scripted
//! engines) cover placement, retries and recovery case by case; these check the same paths
//! end to end, on real time.
//!
//! - `run`: jobs on the local engine, from submission to their end: an SRPM built, slots,
//!   limits, load shared, render errors, refusals, cancels, arches; the namespace objects are
//!   rendered for.
//! - `leaders`: another replica taking over: re-attaching, a restarted engine that lost its
//!   jobs, a leader that dies between an engine taking a job and the `running` write.
//! - `logs`: a job's log followed from a replica that does not collect it, and resumed by a
//!   new leader without a line lost or repeated.

mod leaders;
mod logs;
mod run;

use std::sync::Arc;
use std::time::Duration;

use omni_engine::{Engine, JobId};
use omni_engine_local::{LocalEngine, LocalEngineConfig};
use omni_jobs::{JobService, Submission};
use omni_scheduler::{Scheduler, SchedulerConfig, SchedulerHandle};
use omni_store::{Created, Job, JobState, LogQuery};
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
        plugin: None,
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

/// A second scheduler over the same store: another replica, or this one restarted.
fn replica(
    jobs: &JobService,
    engines: Vec<Arc<dyn Engine>>,
) -> (JobService, Scheduler, SchedulerHandle) {
    let jobs = jobs.replica();
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
