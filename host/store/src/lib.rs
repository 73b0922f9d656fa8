//! # omni-store: what Omni keeps, and the traits every storage backend implements
//!
//! The job records the store keeps and [`Store`], one small trait per capability: jobs and
//! their state history, the job-change event stream, log lines, the records of jobs'
//! artifacts and of uploads, leases, webhooks (with their delivery state) and idempotency keys. Backends live in their
//! own crates (`omni-store-embedded`, `omni-store-cassandra`) and are held as `Arc<dyn Store>`;
//! every one of them passes the same conformance suite ([`conformance_tests!`], feature
//! `conformance`). The model it stores (ids, states and the table of allowed moves) is
//! `omni-core`'s, re-exported here. This crate does no I/O (beyond recording metrics) and knows
//! nothing of HTTP, plugins or engines.
//!
//! # Layout
//! - `jobs`, `logs`, `events`, `artifacts`, `uploads`, `leases`, `webhooks`: one capability
//!   each, its trait ([`JobStore`], [`LogStore`], [`EventStore`], [`ArtifactIndex`],
//!   [`UploadIndex`], [`LeaseStore`], [`WebhookStore`]); [`Store`]
//!   (here) is all of them plus `kind` and `ping`. A new capability (flows) is a new
//!   file like them, a supertrait of [`Store`], a block in [`timed`] and a file of the suite;
//!   each backend implements it in a file of the same name.
//! - [`model`]: [`Job`], [`Transition`], [`StateChange`], listings, log lines, leases,
//!   webhooks and their [`Delivery`] state, job-change [`Event`]s, idempotency keys.
//! - [`record`]: how backends write records that two server versions can share (a `format`,
//!   lenient reads, and unknown fields kept on write-back).
//! - [`token`]: opaque page tokens for listings.
//! - [`timed`]: [`Timed`], any store with every call measured (the `metrics` facade).
//! - `conformance`: the suite (feature `conformance`), one file per capability.

use async_trait::async_trait;

mod artifacts;
mod events;
mod jobs;
mod leases;
mod logs;
pub mod model;
pub mod record;
pub mod timed;
pub mod token;
mod uploads;
mod webhooks;

#[cfg(feature = "conformance")]
#[doc(hidden)]
pub mod conformance;

pub use artifacts::ArtifactIndex;
pub use events::EventStore;
pub use jobs::JobStore;
pub use leases::LeaseStore;
pub use logs::LogStore;
pub use model::*;
pub use omni_core::{
    IllegalTransition, JobId, JobState, LogStream, StepState, TRANSITIONS, id_time, new_job_id, now,
};
pub use timed::Timed;
pub use uploads::{UPLOAD_GRACE, UploadIndex};
pub use webhooks::WebhookStore;

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

/// Everything Omni keeps: every capability of a backend, held as `Arc<dyn Store>`. A part of
/// Omni that needs only some of them can be handed a narrower handle (`Arc<dyn Store>` coerces
/// to `Arc<dyn JobStore>` and the others). Implementations are cheap to share and safe to call
/// from many tasks and many replicas at once; the conformance suite states the guarantees of
/// each capability as tests.
#[async_trait]
pub trait Store:
    JobStore + LogStore + EventStore + ArtifactIndex + UploadIndex + LeaseStore + WebhookStore
{
    /// The backend's name (`embedded`, `cassandra`), for logs and `/readyz`.
    fn kind(&self) -> &'static str;

    /// Checks that the backend answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it does not.
    async fn ping(&self) -> Result<()>;
}
