//! The scheduler's unit tests: the job service over an embedded store and an in-process plugin
//! (nothing runs wasm), and scripted engines (`omni_engine::testing::Scripted`, which passes
//! the engine conformance suite) whose jobs do what each test plays.
//!
//! Time is paused (`start_paused`): the scheduler's scans, retries, lease renewals, rechecks
//! and batch waits pass as tokio's clock advances by itself whenever every task waits, so the
//! timings are the defaults (one test scans more often, see there) and no test waits for them. Tests wait for conditions
//! through `omni_test_support::eventually` (its patience only catches a hang), assert no
//! duration, and prove that something did not happen only by a condition that would show it
//! (what an engine was given, in order), never by sleeping.
//!
//! - `placement`: queueing until a slot frees, capacity, arches, shared load, limits.
//! - `engines`: an engine that cannot be reached, refuses a job, loses one; render failures;
//!   the namespace objects are rendered for.
//! - `following`: steps and log lines recorded through the job service, cancels.
//! - `recovery`: a leader taking over jobs recorded on engines, and pending jobs it was not told
//!   of.

mod engines;
mod following;
mod placement;
mod recovery;

use std::sync::Arc;

use async_trait::async_trait;
use omni_core::{JobContext, Manifest, PluginError, PluginInfo, Rendered, TaskPlugin};
use omni_engine::testing::{Act, Scripted};
use omni_engine::{Engine, EngineJob, Outcome, StepState};
use omni_jobs::{JobService, Submission};
use omni_store::{Created, Job, JobId, JobState, LogLine, LogQuery, Store};
use serde_json::{Value, json};

use crate::{Scheduler, SchedulerConfig, SchedulerHandle};

/// The tasks the tests' plugin serves.
const TASKS: [&str; 2] = ["build", "test"];

/// A plugin rendering one batch/v1 Job with the steps `fetch` then `build`, in the context's
/// namespace; params `{"fail": "..."}` make it fail with that message.
#[derive(Debug)]
struct InProcess {
    info: PluginInfo,
}

#[async_trait]
impl TaskPlugin for InProcess {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn digest(&self) -> &str {
        // What omni_test_support::pending_job records, so the jobs it makes render here.
        "abababababababababababababababababababababababababababababababab"
    }

    async fn validate(&self, _params: String) -> Result<(), PluginError> {
        Ok(())
    }

    async fn serialize(&self, job: JobContext, params: String) -> Result<Rendered, PluginError> {
        let params: Value = serde_json::from_str(&params).expect("params are JSON");
        if let Some(message) = params["fail"].as_str() {
            return Err(PluginError::Failed {
                plugin: format!("{}@0.1.0", self.info.task),
                message: message.to_owned(),
            });
        }
        let body = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job.name, "namespace": job.namespace},
            "spec": {"template": {"spec": {
                "initContainers": [{"name": "fetch"}], "containers": [{"name": "build"}],
            }}},
        });
        Ok(Rendered {
            manifests: vec![Manifest {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: job.name.clone(),
                body,
            }],
            primary: job.name,
        })
    }
}

#[derive(Debug)]
struct Plugins;

impl omni_core::Plugins for Plugins {
    fn plugin(&self, task: &str) -> Option<Arc<dyn TaskPlugin>> {
        TASKS.contains(&task).then(|| {
            Arc::new(InProcess {
                info: PluginInfo {
                    task: task.to_owned(),
                    version: "0.1.0".into(),
                    description: "renders a Job in process".into(),
                    arches: vec!["x86_64".into(), "aarch64".into(), "riscv64".into()],
                    params_schema: json!({"type": "object"}),
                    steps: vec!["fetch".into(), "build".into()],
                },
            }) as Arc<dyn TaskPlugin>
        })
    }
}

/// A job service over a fresh embedded store and the in-process plugin, with no scheduler; the
/// store too, for making jobs past the service.
fn service() -> (tempfile::TempDir, Arc<dyn Store>, JobService) {
    omni_test_support::job_service_with(Arc::new(Plugins))
}

/// A scheduler running over a fresh store and `engines`.
struct World {
    _data: tempfile::TempDir,
    /// The store under `jobs`, for making jobs past the service.
    store: Arc<dyn Store>,
    jobs: JobService,
    scheduler: Scheduler,
    _handle: SchedulerHandle,
}

fn world(engines: &[&Arc<Scripted>]) -> World {
    world_with(engines, SchedulerConfig::default())
}

fn world_with(engines: &[&Arc<Scripted>], config: SchedulerConfig) -> World {
    let (data, store, jobs) = service();
    let (scheduler, handle) = schedule(&jobs, engines, config);
    World {
        _data: data,
        store,
        jobs,
        scheduler,
        _handle: handle,
    }
}

/// A scheduler over `jobs` and `engines`, running.
fn schedule(
    jobs: &JobService,
    engines: &[&Arc<Scripted>],
    config: SchedulerConfig,
) -> (Scheduler, SchedulerHandle) {
    let engines = engines
        .iter()
        .map(|e| Arc::clone(e) as Arc<dyn Engine>)
        .collect();
    let scheduler = Scheduler::new(jobs.clone(), engines, config).unwrap();
    let handle = scheduler.spawn();
    (scheduler, handle)
}

fn submission(task: &str, domain: &str, arch: &str, params: Value) -> Submission {
    Submission {
        service: "test".into(),
        task: task.into(),
        domain: domain.into(),
        arch: arch.into(),
        params,
        idempotency: None,
        plugin: None,
    }
}

/// A new job of `submission`.
async fn submit_as(jobs: &JobService, submission: Submission) -> Job {
    match jobs.submit(submission).await.unwrap() {
        Created::New(job) => job,
        Created::Existing(_) => panic!("not new"),
    }
}

/// A new `build` job for `arch` in the default domain.
async fn submit(jobs: &JobService, arch: &str) -> Job {
    submit_as(jobs, submission("build", "default", arch, json!({}))).await
}

/// Waits until job `id` satisfies `done`.
async fn wait_for(jobs: &JobService, id: JobId, what: &str, done: impl Fn(&Job) -> bool) -> Job {
    omni_test_support::eventually(&format!("job {id} {what}"), || async {
        let job = jobs.get(id).await.unwrap();
        done(&job).then_some(job)
    })
    .await
}

/// Waits until job `id` is in `state`.
async fn reaches(jobs: &JobService, id: JobId, state: JobState) -> Job {
    wait_for(jobs, id, &format!("{state}"), |j| j.state == state).await
}

/// Waits until job `id` has ended.
async fn ended(jobs: &JobService, id: JobId) -> Job {
    wait_for(jobs, id, "ended", |j| j.state.is_final()).await
}

/// Waits until `engine` has job `id`.
async fn taken(engine: &Scripted, id: JobId) {
    omni_test_support::eventually(
        &format!("engine {} to have job {id}", engine.name()),
        || std::future::ready(engine.has(id).then_some(())),
    )
    .await;
}

/// Waits until `engine` was given `count` submissions.
async fn submits_reach(engine: &Scripted, count: usize) {
    omni_test_support::eventually(&format!("{count} submits to {}", engine.name()), || {
        std::future::ready((engine.submitted().len() >= count).then_some(()))
    })
    .await;
}

/// The whole life of a job that goes well: it starts, `fetch` then `build` run and end well.
fn succeeds() -> Vec<Act> {
    vec![
        Act::Run,
        Act::Step("fetch".into(), StepState::Running),
        Act::Step("fetch".into(), StepState::Succeeded),
        Act::Step("build".into(), StepState::Running),
        Act::Step("build".into(), StepState::Succeeded),
        Act::End(Outcome::Succeeded),
    ]
}

/// The job's stored state history.
async fn states(jobs: &JobService, id: JobId) -> Vec<JobState> {
    jobs.history(id)
        .await
        .unwrap()
        .iter()
        .map(|c| c.to)
        .collect()
}

/// The states of a job that ran to success.
const RAN: [JobState; 4] = [
    JobState::Pending,
    JobState::Queued,
    JobState::Running,
    JobState::Succeeded,
];

/// Every stored line of job `id`, in order.
async fn stored_lines(jobs: &JobService, id: JobId) -> Vec<LogLine> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let query = LogQuery {
            step: None,
            after,
            limit: 1000,
        };
        let page = jobs.read_logs(id, &query).await.unwrap();
        all.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
}

/// What an engine is given for job `id` when a test submits it there itself (a job an engine
/// has from before the scheduler).
fn engine_job(job: &Job) -> EngineJob {
    let name = JobContext::object_name(job.id);
    EngineJob {
        inputs: Default::default(),
        id: job.id,
        name: name.clone(),
        namespace: omni_engine::DEFAULT_NAMESPACE.into(),
        task: job.task.clone(),
        arch: job.arch.clone(),
        rendered: Rendered {
            manifests: Vec::new(),
            primary: name,
        },
    }
}
