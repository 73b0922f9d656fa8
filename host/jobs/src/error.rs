//! Why the job service said no.

use omni_core::{FieldError, PluginError};
use omni_store::{JobId, JobState, StoreError};

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
    /// A submission asks for a version of its task's plugin that is not kept.
    #[error("no version of task {task}'s plugin with {pin} is kept")]
    NoSuchVersion {
        /// The task.
        task: String,
        /// What it asked for.
        pin: crate::Pin,
    },
    /// The version of the plugin that accepted a job, or the template set it was accepted with,
    /// is no longer kept, so the job cannot be rendered by the code and templates that
    /// validated it.
    #[error(
        "the plugin version that accepted the job ({task}@{version}, sha256 {digest}) or its template set is no longer kept"
    )]
    VersionGone {
        /// The task.
        task: String,
        /// The version the job records.
        version: String,
        /// The sha256 of its component.
        digest: String,
    },
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
    /// The job has no artifact of that name.
    #[error("job {id} has no artifact {name:?}")]
    NoSuchArtifact {
        /// The job.
        id: JobId,
        /// The name asked for.
        name: String,
    },
    /// A name that cannot name an artifact.
    #[error("{name:?} is not an artifact name: {reason}")]
    BadArtifactName {
        /// The name.
        name: String,
        /// Why not.
        reason: String,
    },
    /// No upload of the domain with that sha256 is kept.
    #[error("no upload {sha256} in domain {domain:?}")]
    NoSuchUpload {
        /// The domain.
        domain: String,
        /// The sha256 asked for.
        sha256: String,
    },
    /// A submission's params name uploads that are not kept, or not by a sha256: a field error
    /// at each such reference.
    #[error("the params name uploads that are not kept ({} errors)", .0.len())]
    BadUploads(Vec<FieldError>),
    /// The store failed (unavailable, conflicting idempotency key, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The artifact store failed, or refused the bytes (too large, another sha256, a range it
    /// cannot satisfy).
    #[error(transparent)]
    Artifacts(#[from] omni_artifacts::ArtifactError),
}

impl JobError {
    /// The plugin's field errors, when it rejected the params.
    pub fn field_errors(&self) -> Option<&[FieldError]> {
        match self {
            JobError::Plugin(PluginError::InvalidParams { errors, .. }) => Some(errors),
            JobError::BadUploads(errors) => Some(errors),
            _ => None,
        }
    }
}
