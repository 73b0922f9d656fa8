//! # omni-store: what Omni keeps, and the one trait every storage backend implements
//!
//! The job records the store keeps and [`Store`]: jobs and
//! their state history, the job-change event stream, log lines, leases, webhooks (with their
//! delivery state) and idempotency keys. Backends live in their
//! own crates (`omni-store-embedded`, `omni-store-cassandra`) and are held as `Arc<dyn Store>`;
//! every one of them passes the same conformance suite ([`conformance_tests!`], feature
//! `conformance`). The model it stores (ids, states and the table of allowed moves) is
//! `omni-core`'s, re-exported here. This crate does no I/O (beyond recording metrics) and knows
//! nothing of HTTP, plugins or engines.
//!
//! # Layout
//! - [`model`]: [`Job`], [`Transition`], [`StateChange`], listings, log lines, leases,
//!   webhooks and their [`Delivery`] state, job-change [`Event`]s, idempotency keys.
//! - [`token`]: opaque page tokens for listings.
//! - [`timed`]: [`Timed`], any store with every call measured (the `metrics` facade).
//! - `conformance`: the suite (feature `conformance`).

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

pub mod model;
pub mod timed;
pub mod token;

#[cfg(feature = "conformance")]
#[doc(hidden)]
pub mod conformance;

pub use model::*;
pub use omni_core::{
    IllegalTransition, JobId, JobState, LogStream, StepState, TRANSITIONS, id_time, new_job_id, now,
};
pub use timed::Timed;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or did not answer in time; the caller may retry (the API
    /// answers 503 with `Retry-After`).
    #[error("the store is unavailable: {message}")]
    Unavailable {
        /// What went wrong, for the log.
        message: String,
        /// The backend's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// No job has that id.
    #[error("no job {0}")]
    NotFound(JobId),
    /// The job was not in the state the transition starts from: someone else moved it first.
    #[error("job {id} is {actual}, not {expected}")]
    Conflict {
        /// The job.
        id: JobId,
        /// The state the transition expected.
        expected: JobState,
        /// The state it is in.
        actual: JobState,
    },
    /// The transition is not in the state machine's table.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// The idempotency key was used before with another request.
    #[error("idempotency key {key:?} was used for another request (job {job_id})")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The job it made.
        job_id: JobId,
    },
    /// Stored data that does not decode: a bug or a damaged store.
    #[error("corrupt record in the store: {0}")]
    Corrupt(String),
    /// An event id (a `Last-Event-ID`, a stored position) that this store did not make.
    #[error("{0:?} is not an event id of this store")]
    BadEventId(String),
}

impl StoreError {
    /// An [`StoreError::Unavailable`] wrapping `source`.
    pub fn unavailable(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable {
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }
}

/// Results of store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything Omni keeps. Implementations are cheap to share (`Arc<dyn Store>`) and safe to call
/// from many tasks and many replicas at once; the conformance suite states the guarantees below
/// as tests.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// The backend's name (`embedded`, `cassandra`), for logs and `/readyz`.
    fn kind(&self) -> &'static str;

    /// Checks that the backend answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it does not.
    async fn ping(&self) -> Result<()>;

    /// Stores a new job (in `pending`, with the creation as entry 0 of its history, and its
    /// event in the event stream), durably before returning. With an idempotency key: the first call with that key stores the job;
    /// later calls with the same fingerprint return the job it made ([`Created::Existing`])
    /// without writing, even when they race.
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
    /// returns the job after it and the history entry. Of two racing transitions from one state, exactly one succeeds.
    ///
    /// # Errors
    /// [`StoreError::Illegal`] for a move the state machine forbids (nothing is written);
    /// [`StoreError::Conflict`] when the job is in another state; [`StoreError::NotFound`];
    /// [`StoreError::Unavailable`].
    async fn transition(&self, id: JobId, transition: &Transition) -> Result<(Job, StateChange)>;

    /// Records the engine a queued job is being started on, before it is submitted there, so
    /// that a scheduler that dies between the submit and the `running` write leaves the job's
    /// engine known: the next one starts it there again (a submit the engine has seen starts
    /// nothing twice) rather than on another engine. No state change, no event.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the job is not queued (cancelled meanwhile);
    /// [`StoreError::NotFound`]; [`StoreError::Unavailable`].
    async fn assign_engine(&self, id: JobId, engine: &str) -> Result<Job>;

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

    /// Deletes a job, its history and its logs. Returns whether it existed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn purge_job(&self, id: JobId) -> Result<bool>;

    /// Appends lines to a job's log (one batch, one write). Lines carry their own `seq`;
    /// writing a line again with a `seq` already stored replaces it (so a collector that resumes
    /// after a crash cannot duplicate lines).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn append_logs(&self, id: JobId, lines: &[LogLine]) -> Result<()>;

    /// A page of a job's log, by `seq`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn read_logs(&self, id: JobId, query: &LogQuery) -> Result<LogPage>;

    /// Takes the lease `name` for `holder` for `ttl`, or renews it if `holder` has it. Returns
    /// the lease when `holder` has it now, `None` when someone else holds it and it has not
    /// lapsed. Two holders racing for a free lease: exactly one gets it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration)
    -> Result<Option<Lease>>;

    /// Gives up `name` if `holder` has it. Returns whether it did.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool>;

    /// Stores a webhook (a new one, or replaces the one with its id).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn put_webhook(&self, webhook: &Webhook) -> Result<()>;

    /// Webhooks, all or those registered for `domain`, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn list_webhooks(&self, domain: Option<&str>) -> Result<Vec<Webhook>>;

    /// Deletes a webhook and its delivery state. Returns whether it existed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn delete_webhook(&self, id: Uuid) -> Result<bool>;

    /// Events after `after` (an id or a position from [`EventPage::next`], or from the oldest
    /// kept event when `None`) that match `filter`, at most `limit`, in stream order. Reading on
    /// from `next` yields every later event exactly once, also when several replicas record
    /// events at once; events expire after the store's event TTL.
    ///
    /// # Errors
    /// [`StoreError::BadEventId`] when `after` is not an id of this store;
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn read_events(
        &self,
        after: Option<&str>,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<EventPage>;

    /// The position of the end of the stream now: reading after it yields only events recorded
    /// from now on (and, on a store whose writers may lag, those that may still appear).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn events_head(&self) -> Result<String>;

    /// A webhook's delivery state, if it has one.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn get_delivery(&self, webhook_id: Uuid) -> Result<Option<Delivery>>;

    /// Stores a webhook's delivery state (replacing the one it had).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn put_delivery(&self, delivery: &Delivery) -> Result<()>;
}
