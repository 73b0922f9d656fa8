//! [`JobStore`]: jobs and their state history, the records the other capabilities hang off.

use async_trait::async_trait;

use crate::{
    Created, IdempotencyKey, Job, JobId, JobPage, JobQuery, Rendering, Result, StateChange, Step,
    Transition,
};
// Only the docs name it (their `# Errors`).
#[cfg(doc)]
use crate::StoreError;

/// Jobs and their state history: made once, moved only along the table of allowed transitions.
#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new job (in `pending`, with the creation as entry 0 of its history, and its
    /// event in the event stream), durably before returning. With an idempotency key: the first
    /// call with that key stores the job; later calls with the same fingerprint return the job
    /// it made ([`Created::Existing`]) without writing, even when they race.
    ///
    /// # Errors
    /// [`StoreError::IdempotencyConflict`] when the key was used with another fingerprint;
    /// [`StoreError::Unavailable`].
    async fn create_job(&self, job: &Job, key: Option<&IdempotencyKey>) -> Result<Created>;

    /// The job with that id.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn get_job(&self, id: JobId) -> Result<Option<Job>>;

    /// Jobs matching `query`, newest first, one page.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn list_jobs(&self, query: &JobQuery) -> Result<JobPage>;

    /// Moves a job from `transition.from` to `transition.to` if it is still in `from`
    /// (compare-and-set), appends the move to its history, records it in the event stream, and
    /// returns the job after it and the history entry. Of two racing transitions from one
    /// state, exactly one succeeds.
    ///
    /// # Errors
    /// [`StoreError::Illegal`] for a move the state machine forbids (nothing is written);
    /// [`StoreError::Conflict`] when the job is in another state; [`StoreError::NotFound`];
    /// [`StoreError::Unavailable`].
    async fn transition(&self, id: JobId, transition: &Transition) -> Result<(Job, StateChange)>;

    /// Records the engine a queued job is being started on, before it is submitted there, so
    /// that a scheduler that dies between the submit and the `running` write leaves the job's
    /// engine known: the next one starts it there again (a submit the engine has seen starts
    /// nothing twice) rather than on another engine. With it, what the job's plugin rendered
    /// for that engine (`rendering`: the job's provenance), replacing any recorded before. No
    /// state change, no event.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the job is not queued (cancelled meanwhile);
    /// [`StoreError::NotFound`]; [`StoreError::Unavailable`].
    async fn assign_engine(
        &self,
        id: JobId,
        engine: &str,
        rendering: Option<&Rendering>,
    ) -> Result<Job>;

    /// Replaces a job's steps (the engine's progress) unless the job has ended.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Unavailable`].
    async fn update_steps(&self, id: JobId, steps: &[Step]) -> Result<Job>;

    /// The job's state history, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn history(&self, id: JobId) -> Result<Vec<StateChange>>;

    /// Deletes a job, its history, its logs and its artifacts' records. Returns whether it
    /// existed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn purge_job(&self, id: JobId) -> Result<bool>;
}
