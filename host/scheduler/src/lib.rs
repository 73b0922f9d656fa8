//! # omni-scheduler: from a stored job to an engine, and back
//!
//! [`Scheduler`] owns the middle of a job's life. It takes `pending` jobs (announced by the job
//! service on this replica, or found in the store) into a queue as `queued`, in submission
//! order; starts each on an engine that serves its arch and has a free slot (`max_running` per
//! engine, and the optional per-domain and per-task limits of [`SchedulerConfig`]), the least
//! loaded of them; renders its objects with the task's plugin at that moment (a render error
//! fails the job with the plugin's message); and follows it on the engine: its steps, its log
//! lines (stored in batches) and its end. A job the engine refuses fails with the engine's
//! message; an engine that cannot be reached leaves the job queued and is tried again.
//!
//! The engine a job goes to is written on the job (still `queued`) before it is submitted
//! there, and `running` after: a leader that dies in between leaves a queued job with an
//! engine, which the next leader starts on that engine again at once (a submit the engine has
//! seen starts nothing twice), never on another where it would run twice.
//!
//! Scheduling happens once per cluster: the replica that holds the `scheduler` lease in the
//! store does it, renews it while it lives, and on taking it over (a start, a restart, another
//! replica's death) re-attaches to every job that engines are running. Every replica stops the
//! jobs it cancels on their engine itself ([`omni_jobs::Dispatch`]), so a cancel does not wait
//! for the leader.
//!
//! It knows the job service, the plugins and engines as `Arc<dyn Engine>`; it knows nothing of
//! HTTP or of the kind of store or engine.
//!
//! # Layout
//! - here: [`SchedulerConfig`] (limits and timings), [`Scheduler`] and what it shares with its
//!   tasks, and the job service's [`Dispatch`] (cancels and purges sent to engines).
//! - `lead`: the lease, taking over the unfinished jobs, and the loop that schedules while this
//!   replica leads (events, scans for pending jobs, wake-ups).
//! - `queue`: the queue and the slots, and placement: which queued job starts on which engine.
//! - `start`: one placed job rendered, recorded on its engine, and submitted there.
//! - `follow`: one running job, its progress and its logs.
//!
//! The work on one job (queueing, starting, following, collecting its log, cancelling it on its
//! engine) runs in its [`omni_jobs::job_span`], so every log line about a job names it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use omni_engine::Engine;
use omni_jobs::{Dispatch, JobService, job_span};
use omni_store::Job;
use serde::Deserialize;
use tokio::sync::Notify;
use tracing::Instrument as _;

mod follow;
mod keep;
mod lead;
mod queue;
mod start;
#[cfg(test)]
mod tests;

use queue::State;
use start::MAX_STARTING;

/// `[scheduler]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Jobs of one domain running at once at most, by domain (no limit for a domain not named).
    pub max_running_per_domain: BTreeMap<String, usize>,
    /// Jobs of one task running at once at most, by task.
    pub max_running_per_task: BTreeMap<String, usize>,
    /// How long the scheduling lease lasts unless renewed: the longest a dead leader's jobs wait
    /// for another replica to take them over.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often the store is searched for pending jobs this replica was not told of (those
    /// submitted on other replicas), and queued jobs are tried again.
    #[serde(with = "humantime_serde")]
    pub scan_interval: Duration,
    /// How long an engine that could not be reached is left alone before the next try.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_running_per_domain: BTreeMap::new(),
            max_running_per_task: BTreeMap::new(),
            lease_ttl: Duration::from_secs(15),
            scan_interval: Duration::from_secs(2),
            retry_after: Duration::from_secs(5),
        }
    }
}

/// Why the scheduler could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Two engines share a name.
    #[error("two engines are named {0:?}")]
    DuplicateEngine(String),
}

/// The scheduler. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    jobs: JobService,
    engines: Vec<Arc<dyn Engine>>,
    config: SchedulerConfig,
    replica: String,
    state: Mutex<State>,
    wake: Notify,
    /// Per engine, bounds the jobs starting at once ([`MAX_STARTING`]).
    starting: Vec<tokio::sync::Semaphore>,
}

impl Scheduler {
    /// A scheduler for `jobs` over `engines`, attached to the job service (which from now on
    /// refuses arches no engine serves and tells the scheduler of cancels). A job's objects are
    /// rendered for the namespace of the engine that runs it. Nothing runs until
    /// [`Scheduler::spawn`].
    ///
    /// # Errors
    /// [`SchedulerError::DuplicateEngine`].
    pub fn new(
        jobs: JobService,
        engines: Vec<Arc<dyn Engine>>,
        config: SchedulerConfig,
    ) -> Result<Self, SchedulerError> {
        for (i, engine) in engines.iter().enumerate() {
            if engines[..i].iter().any(|e| e.name() == engine.name()) {
                return Err(SchedulerError::DuplicateEngine(engine.name().to_owned()));
            }
        }
        let starting = engines
            .iter()
            .map(|_| tokio::sync::Semaphore::new(MAX_STARTING))
            .collect();
        let scheduler = Scheduler {
            inner: Arc::new(Inner {
                jobs,
                engines,
                config,
                replica: format!("replica-{}", uuid::Uuid::new_v4().simple()),
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                starting,
            }),
        };
        scheduler.inner.jobs.attach(Arc::new(scheduler.clone()));
        Ok(scheduler)
    }

    /// The engines.
    pub fn engines(&self) -> &[Arc<dyn Engine>] {
        &self.inner.engines
    }

    /// Whether this replica schedules now (holds the lease).
    pub fn is_leading(&self) -> bool {
        self.inner.lock().leading
    }

    /// Starts scheduling in the background: the lease, the queue, the followers. Dropping the
    /// handle stops all of it (running jobs go on on their engines and are re-attached by the
    /// next leader).
    pub fn spawn(&self) -> SchedulerHandle {
        let inner = Arc::clone(&self.inner);
        SchedulerHandle(tokio::spawn(async move { inner.run().await }))
    }
}

/// The running scheduler; dropping it stops it.
#[derive(Debug)]
pub struct SchedulerHandle(tokio::task::JoinHandle<()>);

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[async_trait]
impl Dispatch for Scheduler {
    fn arches(&self) -> Vec<String> {
        let mut arches: Vec<String> = self
            .inner
            .engines
            .iter()
            .flat_map(|e| e.arches().iter().cloned())
            .collect();
        arches.sort();
        arches.dedup();
        arches
    }

    async fn cancelled(&self, job: &Job) {
        // In the background: the cancel is stored, and a cluster that does not answer must not
        // hold the caller's request.
        if let Some(engine) = self.inner.engine(job).cloned() {
            let id = job.id;
            let span = job_span(id, &job.task, &job.domain);
            tokio::spawn(
                async move {
                    if let Err(error) = engine.cancel(id).await {
                        // The leader's follower sees the job cancelled in the store and cancels again.
                        tracing::warn!(engine = engine.name(), %error, "cannot cancel on the engine");
                    }
                }
                .instrument(span),
            );
        }
    }

    async fn purged(&self, job: &Job) {
        if let Some(engine) = self.inner.engine(job).cloned() {
            let id = job.id;
            let span = job_span(id, &job.task, &job.domain);
            tokio::spawn(
                async move {
                    if let Err(error) = engine.cleanup(id).await {
                        tracing::warn!(engine = engine.name(), %error, "cannot clean up a purged job");
                    }
                }
                .instrument(span),
            );
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn engine(&self, job: &Job) -> Option<&Arc<dyn Engine>> {
        self.engine_index(job).map(|index| &self.engines[index])
    }

    /// Where the engine recorded on `job` is among the configured ones.
    fn engine_index(&self, job: &Job) -> Option<usize> {
        let name = job.engine.as_deref()?;
        self.engines.iter().position(|e| e.name() == name)
    }
}
