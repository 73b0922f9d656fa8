//! Moves: the one way a job's state changes ([`JobService::transition`]), cancels and purges,
//! and the [`JobEvent`] every move announces to this replica's subscribers.

use chrono::{DateTime, Utc};
use omni_store::{
    ArtifactsStored, Event, Job, JobId, JobState, StateChange, StoreError, Transition,
};
use serde::Serialize;

use crate::{JobError, JobService};

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
    /// The change's place in the job's history (0 for an artifacts event, which is no change
    /// of the history).
    pub seq: u32,
    /// The artifacts stored, for a `job.artifacts` event (`from` and `to` are both the job's
    /// state then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<ArtifactsStored>,
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
            artifacts: None,
        }
    }

    /// The announcement of a stored `job.artifacts` event.
    pub(crate) fn stored(event: &Event) -> Self {
        JobEvent {
            job_id: event.job_id,
            service: event.service.clone(),
            task: event.task.clone(),
            domain: event.domain.clone(),
            from: event.from,
            to: event.to,
            time: event.time,
            message: event.message.clone(),
            seq: 0,
            artifacts: event.artifacts,
        }
    }
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancelled {
    /// The job was cancelled now.
    Now(Job),
    /// It had already ended; nothing changed.
    AlreadyEnded(Job),
}

impl JobService {
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
        // The bytes first: a purge cut short leaves a job that can be purged again, never
        // bytes no record names.
        self.delete_artifacts(id).await?;
        if self.store.purge_job(id).await? {
            if let (Some(dispatch), Some(_)) = (self.dispatch.get(), &job.engine) {
                dispatch.purged(&job).await;
            }
            Ok(())
        } else {
            Err(JobError::NotFound(id))
        }
    }

    pub(crate) fn publish(&self, job: &Job, change: &StateChange) {
        crate::metrics::transition(&job.task, change.to);
        // No subscribers is fine: nothing listens yet.
        let _ = self.events.send(JobEvent::new(job, change));
    }
}
