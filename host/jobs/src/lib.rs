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
//! [`metrics`] counts what this replica's service did (submissions, transitions, log lines
//! stored) and makes the [`job_span`] that the scheduler, the collector and the webhook
//! deliverer enter while they work on one job.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use chrono::{DateTime, Utc};
use omni_core::{FieldError, JobContext, PluginError, Plugins, Rendered, TaskPlugin};
use omni_store::{
    Created, EventFilter, EventPage, IdempotencyKey, Job, JobId, JobPage, JobQuery, JobState,
    LeaseStore, LogLine, LogPage, LogQuery, PluginRef, StateChange, Step, StepState, Store,
    StoreError, Transition, WebhookStore,
};
use serde::Serialize;
use tokio::sync::broadcast;

pub mod lease;
pub mod logs;
pub mod metrics;
pub use crate::metrics::job_span;
pub use lease::Lease;
pub use logs::{Batch, FollowEvent, LogHub, LogLimits, Publisher, Stored};

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

/// A job's state change, as subscribers (SSE, webhooks) get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobEvent {
    /// The job.
    pub job_id: JobId,
    /// Its service.
    pub service: String,
    /// Its task.
    pub task: String,
    /// Its domain.
    pub domain: String,
    /// The state before (none when the job was created).
    pub from: Option<JobState>,
    /// The state after.
    pub to: JobState,
    /// When.
    pub time: DateTime<Utc>,
    /// Why.
    pub message: Option<String>,
    /// The change's place in the job's history.
    pub seq: u32,
}

impl JobEvent {
    fn new(job: &Job, change: &StateChange) -> Self {
        JobEvent {
            job_id: job.id,
            service: job.service.clone(),
            task: job.task.clone(),
            domain: job.domain.clone(),
            from: change.from,
            to: change.to,
            time: change.time,
            message: change.message.clone(),
            seq: change.seq,
        }
    }
}

/// A job to make.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The asking service.
    pub service: String,
    /// The task type.
    pub task: String,
    /// The tenant.
    pub domain: String,
    /// The API arch.
    pub arch: String,
    /// The task's params (a JSON object).
    pub params: serde_json::Value,
    /// The client's idempotency key, if it sent one.
    pub idempotency: Option<IdempotencyKey>,
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancelled {
    /// The job was cancelled now.
    Now(Job),
    /// It had already ended; nothing changed.
    AlreadyEnded(Job),
}

/// Why the service said no.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No plugin is loaded for the task.
    #[error("no plugin is loaded for task {0:?}")]
    NoSuchTask(String),
    /// No engine runs jobs for the arch.
    #[error("no engine runs jobs for {arch:?} (engines run {})", served.join(", "))]
    NoEngine {
        /// The arch asked for.
        arch: String,
        /// The arches engines run.
        served: Vec<String>,
    },
    /// The task's plugin does not build for the arch.
    #[error("task {task} builds for {}, not {arch:?}", supported.join(", "))]
    UnsupportedArch {
        /// The task.
        task: String,
        /// The arch asked for.
        arch: String,
        /// The arches it builds for.
        supported: Vec<String>,
    },
    /// The plugin failed (rejected the params, or broke).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// No job has that id.
    #[error("no job {0}")]
    NotFound(JobId),
    /// A move the state machine does not allow from where the job is.
    #[error("job {id} is {from} and cannot move to {to}")]
    Illegal {
        /// The job.
        id: JobId,
        /// Where it is.
        from: JobState,
        /// Where it was asked to go.
        to: JobState,
    },
    /// The job has no step of that name.
    #[error("job {id} has no step {step:?} (its steps: {})", steps.join(", "))]
    NoSuchStep {
        /// The job.
        id: JobId,
        /// The step asked for.
        step: String,
        /// The job's steps.
        steps: Vec<String>,
    },
    /// The store failed (unavailable, conflicting idempotency key, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl JobError {
    /// The plugin's field errors, when it rejected the params.
    pub fn field_errors(&self) -> Option<&[FieldError]> {
        match self {
            JobError::Plugin(PluginError::InvalidParams { errors, .. }) => Some(errors),
            _ => None,
        }
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
    events: broadcast::Sender<JobEvent>,
    dispatch: Arc<OnceLock<Arc<dyn Dispatch>>>,
    logs: LogHub,
}

impl JobService {
    /// A service over `store` with `plugins` (the plugin host's registry).
    pub fn new(store: Arc<dyn Store>, plugins: Arc<dyn Plugins>) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        JobService {
            store,
            plugins,
            events,
            dispatch: Arc::new(OnceLock::new()),
            logs: LogHub::new(LogLimits::default()),
        }
    }

    /// The same service with other log limits (call before it is shared).
    #[must_use]
    pub fn with_log_limits(mut self, limits: LogLimits) -> Self {
        self.logs = LogHub::new(limits);
        self
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

    /// The whole store: only the scheduler's tests still use it (to be removed with them).
    #[doc(hidden)]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
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
    /// `Store::assign_engine`): whoever takes over from here starts it there again.
    ///
    /// # Errors
    /// [`JobError::NotFound`] when it was purged; [`JobError::Store`] with
    /// `StoreError::Conflict` when it is no longer queued (cancelled meanwhile), or when the
    /// store fails.
    pub async fn assign_engine(&self, id: JobId, engine: &str) -> Result<Job, JobError> {
        match self.store.assign_engine(id, engine).await {
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

    /// Renders a job's objects for `namespace` with its task's plugin as loaded now.
    ///
    /// # Errors
    /// [`JobError::NoSuchTask`] when no plugin serves the task; [`JobError::Plugin`] when it
    /// fails.
    pub async fn render(&self, job: &Job, namespace: &str) -> Result<Rendered, JobError> {
        let plugin = self
            .plugins
            .plugin(&job.task)
            .ok_or_else(|| JobError::NoSuchTask(job.task.clone()))?;
        let context = JobContext::new(job.id, &job.service, &job.domain, namespace, &job.arch);
        Ok(plugin.serialize(context, job.params.to_string()).await?)
    }

    /// A dry run of a job: what its task's plugin renders for `params`, under a new id, with
    /// nothing stored or run.
    ///
    /// # Errors
    /// [`JobError::NoSuchTask`]; [`JobError::UnsupportedArch`] when the plugin does not build
    /// for `arch`; [`JobError::Plugin`] when it rejects the params or fails.
    pub async fn dry_run(
        &self,
        submission: &Submission,
        namespace: &str,
    ) -> Result<Rendered, JobError> {
        let plugin = self.plugin_for(&submission.task, &submission.arch)?;
        let context = JobContext::new(
            omni_core::new_job_id(),
            &submission.service,
            &submission.domain,
            namespace,
            &submission.arch,
        );
        Ok(plugin
            .serialize(context, submission.params.to_string())
            .await?)
    }

    /// Every job change from now on, in the order this replica wrote them.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// Validates a submission with its task's plugin and stores it as a `pending` job. With an
    /// idempotency key seen before (same request), returns the job it made.
    ///
    /// # Errors
    /// [`JobError::NoSuchTask`], [`JobError::UnsupportedArch`], [`JobError::Plugin`] (with the
    /// field errors when the params are wrong), [`JobError::Store`] (unavailable, or the key was
    /// used for another request).
    pub async fn submit(&self, submission: Submission) -> Result<Created, JobError> {
        let task = submission.task.clone();
        let created = self.submit_unmeasured(submission).await;
        crate::metrics::submission(
            &task,
            created.as_ref().map(|c| matches!(c, Created::New(_))),
        );
        created
    }

    /// The plugin serving `task` now, if it builds for `arch`.
    fn plugin_for(&self, task: &str, arch: &str) -> Result<Arc<dyn TaskPlugin>, JobError> {
        let plugin = self
            .plugins
            .plugin(task)
            .ok_or_else(|| JobError::NoSuchTask(task.to_owned()))?;
        let supported = &plugin.info().arches;
        if !supported.iter().any(|a| a == arch) {
            return Err(JobError::UnsupportedArch {
                task: task.to_owned(),
                arch: arch.to_owned(),
                supported: supported.clone(),
            });
        }
        Ok(plugin)
    }

    async fn submit_unmeasured(&self, submission: Submission) -> Result<Created, JobError> {
        let plugin = self.plugin_for(&submission.task, &submission.arch)?;
        let info = plugin.info();
        if let Some(dispatch) = self.dispatch.get() {
            let served = dispatch.arches();
            if !served.contains(&submission.arch) {
                return Err(JobError::NoEngine {
                    arch: submission.arch,
                    served,
                });
            }
        }
        plugin.validate(submission.params.to_string()).await?;
        let id = omni_store::new_job_id();
        // The creation time is the id's, to the millisecond: listings ordered by id are ordered
        // by creation time.
        let created_at = omni_store::id_time(id).map_or_else(omni_store::now, |t| {
            chrono::SubsecRound::trunc_subsecs(t, 3)
        });
        let job = Job {
            id,
            service: submission.service,
            task: submission.task,
            domain: submission.domain,
            arch: submission.arch,
            state: JobState::Pending,
            params: submission.params,
            plugin: PluginRef {
                task: info.task.clone(),
                version: info.version.clone(),
                digest: plugin.digest().to_owned(),
            },
            engine: None,
            message: None,
            steps: info
                .steps
                .iter()
                .map(|name| Step {
                    name: name.clone(),
                    state: StepState::Pending,
                })
                .collect(),
            created_at,
            updated_at: created_at,
            started_at: None,
            finished_at: None,
        };
        let created = self
            .store
            .create_job(&job, submission.idempotency.as_ref())
            .await?;
        if let Created::New(job) = &created {
            let change = StateChange {
                job_id: job.id,
                seq: 0,
                from: None,
                to: JobState::Pending,
                time: job.created_at,
                message: None,
            };
            self.publish(job, &change);
        }
        Ok(created)
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

    /// Moves a job to `to` from whatever state it is in, if the table allows that move; the one
    /// way states change. A move that loses a race re-reads the job and is checked again, so a
    /// cancel racing a completion either cancels or finds the job ended.
    ///
    /// # Errors
    /// [`JobError::Illegal`] when the job's state (as it is now) does not allow the move;
    /// [`JobError::NotFound`]; [`JobError::Store`].
    pub async fn transition(
        &self,
        id: JobId,
        to: JobState,
        message: Option<String>,
    ) -> Result<Job, JobError> {
        self.transition_on(id, to, message, None).await
    }

    /// As [`JobService::transition`], recording `engine` as the one that has the job (when
    /// starting it there).
    ///
    /// # Errors
    /// As [`JobService::transition`].
    pub async fn transition_on(
        &self,
        id: JobId,
        to: JobState,
        message: Option<String>,
        engine: Option<String>,
    ) -> Result<Job, JobError> {
        loop {
            let job = self.get(id).await?;
            if !job.state.can_move_to(to) {
                return Err(JobError::Illegal {
                    id,
                    from: job.state,
                    to,
                });
            }
            let mut transition = Transition::new(job.state, to);
            transition.message.clone_from(&message);
            transition.engine.clone_from(&engine);
            match self.store.transition(id, &transition).await {
                Ok((job, change)) => {
                    self.publish(&job, &change);
                    return Ok(job);
                }
                // Someone moved it first: look again.
                Err(StoreError::Conflict { .. }) => {}
                Err(StoreError::NotFound(id)) => return Err(JobError::NotFound(id)),
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Cancels a job that has not ended.
    ///
    /// # Errors
    /// [`JobError::NotFound`], [`JobError::Store`]; [`JobError::Illegal`] for a job in a state
    /// this server does not know (a newer server's, left alone).
    pub async fn cancel(&self, id: JobId) -> Result<Cancelled, JobError> {
        match self
            .transition(id, JobState::Cancelled, Some("cancelled by request".into()))
            .await
        {
            Ok(job) => {
                if let (Some(dispatch), Some(_)) = (self.dispatch.get(), &job.engine) {
                    dispatch.cancelled(&job).await;
                }
                Ok(Cancelled::Now(job))
            }
            Err(JobError::Illegal { from, .. }) if from.is_final() => {
                Ok(Cancelled::AlreadyEnded(self.get(id).await?))
            }
            // Not ended, yet not cancellable: a state a newer server wrote, which this one
            // leaves alone.
            Err(error) => Err(error),
        }
    }

    /// Cancels a job if it has not ended, then deletes it with its history and logs.
    ///
    /// # Errors
    /// [`JobError::NotFound`], [`JobError::Store`].
    pub async fn purge(&self, id: JobId) -> Result<(), JobError> {
        let job = match self.cancel(id).await? {
            Cancelled::Now(job) | Cancelled::AlreadyEnded(job) => job,
        };
        if self.store.purge_job(id).await? {
            if let (Some(dispatch), Some(_)) = (self.dispatch.get(), &job.engine) {
                dispatch.purged(&job).await;
            }
            Ok(())
        } else {
            Err(JobError::NotFound(id))
        }
    }

    fn publish(&self, job: &Job, change: &StateChange) {
        crate::metrics::transition(&job.task, change.to);
        // No subscribers is fine: nothing listens yet.
        let _ = self.events.send(JobEvent::new(job, change));
    }
}
