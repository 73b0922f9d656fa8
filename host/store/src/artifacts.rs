//! [`ArtifactIndex`]: the records of the files jobs made (name, size, sha256, media type,
//! step), by job and name. The bytes are not here: they are in the artifact store
//! (`omni-artifacts`), under `jobs/<job id>/<name>`.

use async_trait::async_trait;

use crate::{Artifact, ArtifactPage, ArtifactQuery, Event, JobId, Result};
// Only the docs name them (their `# Errors`).
#[cfg(doc)]
use crate::{JobState, StoreError};

/// A job's artifacts: recorded in batches once their bytes are stored, read in pages by name,
/// deleted with the job (a purge, the retention of finished jobs).
#[async_trait]
pub trait ArtifactIndex: Send + Sync + std::fmt::Debug + 'static {
    /// Records `artifacts` of job `id` (an artifact of a name already recorded is replaced) and
    /// one `job.artifacts` event of them, with the job's state as it is. Only a job that has
    /// not ended takes artifacts: what a job made is known when it ends.
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; [`StoreError::Conflict`] (expected [`JobState::Running`])
    /// when the job has ended; [`StoreError::Unavailable`].
    async fn record_artifacts(&self, id: JobId, artifacts: &[Artifact]) -> Result<Event>;

    /// A page of a job's artifacts, by name (byte order). A job without artifacts, or with
    /// none stored, has an empty page.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn list_artifacts(&self, id: JobId, query: &ArtifactQuery) -> Result<ArtifactPage>;

    /// The job's artifact of that name.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    async fn get_artifact(&self, id: JobId, name: &str) -> Result<Option<Artifact>>;
}
