//! Starting one placed job: it is read again, rendered with its task's plugin for the engine's
//! namespace, recorded on the engine (still `queued`), submitted there, and recorded `running`;
//! then it is followed to its end.

use std::sync::Arc;

use omni_core::JobContext;
use omni_engine::{EngineError, EngineJob, InputFile, InputSource, Inputs};
use omni_jobs::{JobError, JobService, job_span};
use omni_store::{Job, JobId, JobState, StoreError};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::Inner;
use crate::queue::Waiting;

/// Jobs being started (read, rendered, submitted) at once on one engine. A job holds its slot
/// from placement on, but its rendered objects exist only while it starts: 10,000 jobs placed
/// at once would otherwise hold 10,000 renders in memory while the engine submits a few at a
/// time.
pub(crate) const MAX_STARTING: usize = 64;

impl Inner {
    /// Starts `waiting` on engine `index` in the background; its slot is the caller's to take.
    pub(crate) fn spawn_start(
        self: &Arc<Self>,
        waiting: Waiting,
        index: usize,
        followers: &mut JoinSet<()>,
    ) {
        let this = Arc::clone(self);
        let span = job_span(waiting.id, &waiting.task, &waiting.domain);
        followers.spawn(async move { this.start(waiting, index).await }.instrument(span));
    }

    /// Renders a queued job, submits it to `engine`, and follows it.
    async fn start(self: Arc<Self>, waiting: Waiting, index: usize) {
        // Never closed, so acquiring cannot fail; held until the job runs or ends here.
        let starting = self.starting[index].acquire().await.ok();
        let engine = Arc::clone(&self.engines[index]);
        let id = waiting.id;
        let queued = match self.jobs.get(id).await {
            Ok(job) if job.state == JobState::Queued => job,
            Ok(_) | Err(JobError::NotFound(_)) => {
                self.release(id);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read a queued job");
                self.requeue(waiting, None);
                return;
            }
        };
        let rendered = match self.jobs.render(&queued, engine.namespace()).await {
            Ok(rendered) => rendered,
            Err(error @ JobError::VersionGone { .. }) => {
                self.end(id, JobState::Failed, error.to_string()).await;
                self.release(id);
                return;
            }
            Err(error) => {
                self.end(id, JobState::Failed, format!("rendering failed: {error}"))
                    .await;
                self.release(id);
                return;
            }
        };
        // The engine is on record before the submit: whoever takes over from here finds it.
        // What goes to the engine is on record too: the job's provenance.
        let rendering = omni_jobs::provenance::rendering(&rendered, engine.namespace());
        match self
            .jobs
            .assign_engine(id, engine.name(), Some(&rendering))
            .await
        {
            Ok(_) => {}
            // Cancelled (or purged) meanwhile.
            Err(JobError::Store(StoreError::Conflict { .. }) | JobError::NotFound(_)) => {
                self.release(id);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot record the engine of a job; it waits");
                self.requeue(waiting, None);
                return;
            }
        }
        let inputs = match self.inputs(&queued).await {
            Ok(inputs) => inputs,
            Err(error @ JobError::NoSuchUpload { .. }) => {
                self.end(
                    id,
                    JobState::Failed,
                    format!("an input of the job is gone: {error}"),
                )
                .await;
                self.release(id);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read a job's inputs; it waits");
                self.requeue(waiting, None);
                return;
            }
        };
        let submission = EngineJob {
            inputs,
            id,
            name: JobContext::object_name(id),
            namespace: engine.namespace().to_owned(),
            task: queued.task.clone(),
            arch: queued.arch.clone(),
            rendered,
        };
        match engine.submit(&submission).await {
            Ok(()) => {}
            Err(EngineError::Unavailable { message, .. }) => {
                tracing::warn!(engine = engine.name(), %message, "engine unavailable; the job waits");
                self.requeue(waiting, Some(index));
                return;
            }
            Err(error) => {
                self.end(id, JobState::Failed, error.to_string()).await;
                self.release(id);
                return;
            }
        }
        // What a running job does not need, gone before it is followed for its whole life.
        drop((submission, queued));
        let started = self
            .jobs
            .transition_on(
                id,
                JobState::Running,
                Some(format!("started on engine {}", engine.name())),
                Some(engine.name().to_owned()),
            )
            .await;
        drop(starting);
        match started {
            Ok(job) => {
                tracing::info!(engine = engine.name(), "job started");
                // `{ job }` moves the job into a temporary: the rest of it is dropped at the end
                // of this statement, not after the job has run.
                let steps = { job }.steps;
                self.follow(id, steps, index).await;
            }
            // Cancelled (or purged) while it was being started: the cancel found no engine yet.
            Err(JobError::Illegal { .. } | JobError::NotFound(_)) => {
                let _ = engine.cancel(id).await;
                self.release(id);
            }
            Err(error) => {
                // Not recorded as running, so nobody would follow it: stop it there and try the
                // whole start again later.
                tracing::warn!(%error, "cannot record a started job; it waits");
                let _ = engine.cancel(id).await;
                let _ = engine.cleanup(id).await;
                self.requeue(waiting, None);
            }
        }
    }

    /// Ends a job (from wherever it is) with a message; a job that ended already stays as it is.
    /// The uploads `job`'s params name, for its engine to give its steps.
    async fn inputs(&self, job: &Job) -> Result<Inputs, JobError> {
        let uploads = self.jobs.job_uploads(&job.domain, &job.params).await?;
        if uploads.is_empty() {
            return Ok(Inputs::default());
        }
        Ok(Inputs {
            files: uploads
                .into_iter()
                .map(|upload| InputFile {
                    sha256: upload.sha256,
                    size: upload.size,
                })
                .collect(),
            source: Some(Arc::new(Uploads {
                jobs: self.jobs.clone(),
                domain: job.domain.clone(),
            })),
        })
    }

    pub(crate) async fn end(&self, id: JobId, to: JobState, message: String) {
        match self.jobs.transition(id, to, Some(message)).await {
            Ok(_) | Err(JobError::Illegal { .. } | JobError::NotFound(_)) => {}
            Err(error) => tracing::warn!(%error, "cannot record the end of a job"),
        }
    }
}

/// A job's inputs read from its domain's uploads.
#[derive(Debug)]
struct Uploads {
    jobs: JobService,
    domain: String,
}

#[async_trait::async_trait]
impl InputSource for Uploads {
    async fn open(
        &self,
        sha256: &str,
    ) -> Result<futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>, String> {
        let (_, download) = self
            .jobs
            .open_upload(&self.domain, sha256)
            .await
            .map_err(|error| error.to_string())?;
        Ok(download.stream)
    }
}
