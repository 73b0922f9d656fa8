//! # omni-jobs: the job service
//!
//! [`JobService`] is the one way jobs are made and moved. A submission goes to the task's plugin
//! for validation, becomes a `pending` job in the [`Store`] (durably, before anyone is told), and
//! is announced as a [`JobEvent`]. Every later move — the scheduler's, an engine's, a cancel —
//! goes through [`JobService::transition`], which checks it against the state machine's table
//! and writes it with compare-and-set, so racing moves cannot produce an illegal history: the
//! loser re-reads and finds the job already moved.
//!
//! It knows the store and the plugins (through `omni-core`'s [`Plugins`] trait, which the plugin
//! host implements: no wasmtime here); it knows nothing of HTTP (the API maps
//! [`JobError`] to statuses) or of engines: whoever runs jobs (the scheduler) attaches itself as
//! a [`Dispatch`], which says which arches can run and hears of cancels and purges.
//!
//! # Layout
//! - here: [`JobService`], its reads and the writes the scheduler and the engines' followers
//!   make through it (`assign_engine`, `record_steps`, `append_logs`), and [`Dispatch`];
//! - `submit`: submissions and renders, where a task's plugin is asked ([`Submission`]);
//! - `moves`: transitions, cancels and purges, and the [`JobEvent`]s they announce;
//! - `artifacts`: a job's artifacts, their bytes in the artifact store (`omni-artifacts`) and
//!   their records in the store;
//! - [`provenance`]: what a job was rendered into (recorded as it starts), re-rendering it by
//!   its recorded versions, and its in-toto statement with a SLSA provenance predicate;
//! - `prune`: deleting the plugin versions and template sets no stored job records;
//! - `uploads`: files submitted for jobs to use, kept by content and referenced from params
//!   (`{"upload": "<sha256>"}`), and their expiry ([`UploadPolicy`]);
//! - `error`: [`JobError`]; [`logs`]: the log fan-out ([`LogHub`]); [`lease`]: [`Lease`].
//!
//! [`metrics`] counts what this replica's service did (submissions, transitions, log lines
//! stored) and makes the [`job_span`] that the scheduler, the collector and the webhook
//! deliverer enter while they work on one job.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use omni_artifacts::ArtifactStore;
use omni_core::Plugins;
use omni_store::{
    EventFilter, EventPage, Job, JobId, JobPage, JobQuery, LeaseStore, LogLine, LogPage, LogQuery,
    Rendering, StateChange, Step, Store, StoreError, WebhookStore,
};
use tokio::sync::broadcast;

mod artifacts;
mod error;
pub mod lease;
pub mod logs;
pub mod metrics;
mod moves;
pub mod provenance;
mod prune;
mod submit;
mod uploads;
pub use crate::metrics::job_span;
pub use artifacts::{MAX_ARTIFACT_NAME, artifact_key, artifacts_prefix, check_artifact_name};
pub use error::JobError;
pub use lease::Lease;
pub use logs::{Batch, FollowEvent, LogHub, LogLimits, Publisher, Stored};
pub use moves::{Cancelled, JobEvent};
pub use submit::{Pin, Submission};
pub use uploads::{DEFAULT_KEEP_WITH_JOBS, UploadPolicy, UploadRef, upload_key, upload_refs};

/// How many events a slow subscriber may fall behind before it misses some (it is told).
const EVENT_BUFFER: usize = 4096;

/// A `step` filter must name one of the job's steps.
fn check_step(job: &Job, step: Option<&str>) -> Result<(), JobError> {
    match step {
        Some(step) if !job.steps.iter().any(|s| s.name == step) => Err(JobError::NoSuchStep {
            id: job.id,
            step: step.to_owned(),
            steps: job.steps.iter().map(|s| s.name.clone()).collect(),
        }),
        _ => Ok(()),
    }
}

/// What the job service needs of whoever runs jobs (the scheduler), without knowing engines.
#[async_trait]
pub trait Dispatch: Send + Sync + std::fmt::Debug + 'static {
    /// The API arches some engine runs jobs for: a submission for another arch is refused.
    fn arches(&self) -> Vec<String>;

    /// A job that had been taken to an engine was cancelled: stop it there. Called after the
    /// cancel is stored; failures are the dispatcher's to log and retry.
    async fn cancelled(&self, job: &Job);

    /// A job was purged: remove what it left on its engine (objects, directories, artifacts).
    async fn purged(&self, job: &Job);
}

/// The job service. Cloning shares it.
#[derive(Debug, Clone)]
pub struct JobService {
    store: Arc<dyn Store>,
    plugins: Arc<dyn Plugins>,
    artifacts: Arc<dyn ArtifactStore>,
    events: broadcast::Sender<JobEvent>,
    dispatch: Arc<OnceLock<Arc<dyn Dispatch>>>,
    logs: LogHub,
    uploads: UploadPolicy,
}

impl JobService {
    /// A service over `store` with `plugins` (the plugin host's registry), keeping jobs'
    /// artifacts in `artifacts`.
    pub fn new(
        store: Arc<dyn Store>,
        plugins: Arc<dyn Plugins>,
        artifacts: Arc<dyn ArtifactStore>,
    ) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        JobService {
            store,
            plugins,
            artifacts,
            events,
            dispatch: Arc::new(OnceLock::new()),
            logs: LogHub::new(LogLimits::default()),
            uploads: UploadPolicy::default(),
        }
    }

    /// The same service with another upload policy (call before it is shared).
    #[must_use]
    pub fn with_upload_policy(mut self, policy: UploadPolicy) -> Self {
        self.uploads = policy;
        self
    }

    /// The same service with other log limits (call before it is shared).
    #[must_use]
    pub fn with_log_limits(mut self, limits: LogLimits) -> Self {
        self.logs = LogHub::new(limits);
        self
    }

    /// Another replica's service over the same store and plugins: its own log fan-out, event
    /// subscribers and no dispatch attached, as a second `omni serve` over the same store has
    /// (for running several replicas in one process, as tests do).
    #[must_use]
    pub fn replica(&self) -> Self {
        JobService::new(
            Arc::clone(&self.store),
            Arc::clone(&self.plugins),
            Arc::clone(&self.artifacts),
        )
        .with_log_limits(*self.logs.limits())
        .with_upload_policy(self.uploads)
    }

    /// The live fan-out of log lines (the collector publishes into it).
    pub fn logs(&self) -> &LogHub {
        &self.logs
    }

    /// A page of job `id`'s stored log.
    ///
    /// # Errors
    /// [`JobError::NotFound`], [`JobError::NoSuchStep`], [`JobError::Store`].
    pub async fn read_logs(&self, id: JobId, query: &LogQuery) -> Result<LogPage, JobError> {
        let job = self.get(id).await?;
        check_step(&job, query.step.as_deref())?;
        Ok(self.store.read_logs(id, query).await?)
    }

    /// Job `id`'s log from after `after` (the start when none), live: the stored lines, then
    /// the new ones as they are stored, then [`FollowEvent::End`] once the job has ended and
    /// every line was sent. A follower that falls behind is ended with
    /// [`FollowEvent::Lagged`]. Only `step`'s lines when it names one.
    ///
    /// # Errors
    /// [`JobError::NotFound`], [`JobError::NoSuchStep`], [`JobError::Store`]; later store
    /// failures come as the stream's last item.
    pub async fn follow_logs(
        &self,
        id: JobId,
        step: Option<String>,
        after: Option<u64>,
    ) -> Result<impl futures::Stream<Item = Result<FollowEvent, JobError>> + Send + 'static, JobError>
    {
        let job = self.get(id).await?;
        check_step(&job, step.as_deref())?;
        Ok(logs::follow(self.clone(), id, step, after))
    }

    /// Attaches the one dispatcher (the scheduler is made after the service it uses). Without
    /// one, jobs are accepted for every arch their plugin builds and wait as `pending`.
    ///
    /// # Panics
    /// When a dispatcher is attached already.
    pub fn attach(&self, dispatch: Arc<dyn Dispatch>) {
        assert!(
            self.dispatch.set(dispatch).is_ok(),
            "a dispatcher is attached already"
        );
    }

    /// The store's leases, for work one replica does at a time ([`Lease`]). Jobs, their steps,
    /// logs and events are read and written through this service alone: the other capabilities
    /// of the store are not reachable from it.
    pub fn leases(&self) -> Arc<dyn LeaseStore> {
        self.store.clone()
    }

    /// The store's webhooks and their delivery state (the webhook routes, the deliverer).
    pub fn webhooks(&self) -> Arc<dyn WebhookStore> {
        self.store.clone()
    }

    /// The store backend's name (`embedded`, `cassandra`).
    pub fn store_kind(&self) -> &'static str {
        self.store.kind()
    }

    /// Checks that the store answers.
    ///
    /// # Errors
    /// [`JobError::Store`] when it does not.
    pub async fn ping(&self) -> Result<(), JobError> {
        Ok(self.store.ping().await?)
    }

    /// Records the engine a queued job is being started on, before it is submitted there (see
    /// `Store::assign_engine`): whoever takes over from here starts it there again; and what
    /// its plugin rendered for it ([`Rendering`]: the job's provenance).
    ///
    /// # Errors
    /// [`JobError::NotFound`] when it was purged; [`JobError::Store`] with
    /// `StoreError::Conflict` when it is no longer queued (cancelled meanwhile), or when the
    /// store fails.
    pub async fn assign_engine(
        &self,
        id: JobId,
        engine: &str,
        rendering: Option<&Rendering>,
    ) -> Result<Job, JobError> {
        match self.store.assign_engine(id, engine, rendering).await {
            Err(StoreError::NotFound(id)) => Err(JobError::NotFound(id)),
            other => Ok(other?),
        }
    }

    /// Records a running job's steps as its engine reports them (nothing once it has ended).
    ///
    /// # Errors
    /// [`JobError::NotFound`]; [`JobError::Store`].
    pub async fn record_steps(&self, id: JobId, steps: &[Step]) -> Result<Job, JobError> {
        match self.store.update_steps(id, steps).await {
            Err(StoreError::NotFound(id)) => Err(JobError::NotFound(id)),
            other => Ok(other?),
        }
    }

    /// Stores a batch of a job's log lines (numbered and kept to the [`LogLimits`] by the
    /// collector) and hands it to this replica's followers through `publisher`.
    ///
    /// # Errors
    /// [`JobError::NotFound`] when the job was purged; [`JobError::Store`] (the batch is not
    /// published: the caller tries again).
    pub async fn append_logs(
        &self,
        publisher: &Publisher,
        lines: &[LogLine],
    ) -> Result<(), JobError> {
        let id = publisher.job();
        match self.store.append_logs(id, lines).await {
            Ok(()) => {
                crate::metrics::log_lines_stored(lines.len());
                publisher.publish(lines);
                Ok(())
            }
            Err(StoreError::NotFound(id)) => Err(JobError::NotFound(id)),
            Err(error) => Err(error.into()),
        }
    }

    /// A page of job `id`'s stored log, without checking the job (the collector resuming
    /// where the store's copy ends; a purged job's log is empty).
    ///
    /// # Errors
    /// [`JobError::Store`].
    pub async fn stored_logs(&self, id: JobId, query: &LogQuery) -> Result<LogPage, JobError> {
        Ok(self.store.read_logs(id, query).await?)
    }

    /// Job `id`'s state history, oldest first.
    ///
    /// # Errors
    /// [`JobError::Store`].
    pub async fn history(&self, id: JobId) -> Result<Vec<StateChange>, JobError> {
        Ok(self.store.history(id).await?)
    }

    /// Stored events after `after` that pass `filter`, at most `limit` (see
    /// `Store::read_events`).
    ///
    /// # Errors
    /// [`JobError::Store`]: `StoreError::BadEventId` when `after` is not an id of this store.
    pub async fn read_events(
        &self,
        after: Option<&str>,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<EventPage, JobError> {
        Ok(self.store.read_events(after, filter, limit).await?)
    }

    /// The position of the end of the event stream now.
    ///
    /// # Errors
    /// [`JobError::Store`].
    pub async fn events_head(&self) -> Result<String, JobError> {
        Ok(self.store.events_head().await?)
    }

    /// The plugins.
    pub fn plugins(&self) -> &Arc<dyn Plugins> {
        &self.plugins
    }

    /// Every job change from now on, in the order this replica wrote them.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// The job with that id.
    ///
    /// # Errors
    /// [`JobError::NotFound`], [`JobError::Store`].
    pub async fn get(&self, id: JobId) -> Result<Job, JobError> {
        self.store.get_job(id).await?.ok_or(JobError::NotFound(id))
    }

    /// A page of jobs.
    ///
    /// # Errors
    /// [`JobError::Store`].
    pub async fn list(&self, query: &JobQuery) -> Result<JobPage, JobError> {
        Ok(self.store.list_jobs(query).await?)
    }
}
