//! A job's artifacts: their bytes in the artifact store under `jobs/<job id>/<name>`, their
//! records in the store, each batch announced as a `job.artifacts` event and counted.
//!
//! Bytes first, records after: a record always names bytes that are there (a put that fails
//! stores nothing, and a record is written only for what was put). Bytes without a record (a
//! replica that died between the two) are replaced when the job's outputs are kept again, and
//! go with the job's prefix when it is purged.

use std::sync::Arc;

use omni_artifacts::{ArtifactStore, ByteRange, ByteStream, Download, PutLimits, validate_key};
use omni_store::{Artifact, ArtifactPage, ArtifactQuery, JobId};

use crate::{JobError, JobEvent, JobService};

/// The key of a job's artifact in the artifact store.
pub fn artifact_key(id: JobId, name: &str) -> String {
    format!("jobs/{id}/{name}")
}

/// The prefix of every artifact of a job in the artifact store.
pub fn artifacts_prefix(id: JobId) -> String {
    format!("jobs/{id}")
}

/// The longest artifact name, in bytes: what is left of the artifact store's longest key
/// ([`omni_artifacts::MAX_KEY_LEN`]) after `jobs/<job id>/`.
pub const MAX_ARTIFACT_NAME: usize = omni_artifacts::MAX_KEY_LEN - "jobs/".len() - 36 - 1;

/// Checks that `name` can name an artifact: a relative path of `/`-separated segments, as the
/// artifact store's keys are ([`validate_key`]), of at most [`MAX_ARTIFACT_NAME`] bytes.
///
/// # Errors
/// [`JobError::BadArtifactName`] saying why not.
pub fn check_artifact_name(name: &str) -> Result<(), JobError> {
    let refuse = |reason: String| JobError::BadArtifactName {
        name: name.to_owned(),
        reason,
    };
    if name.len() > MAX_ARTIFACT_NAME {
        return Err(refuse(format!(
            "it is {} bytes long, more than {MAX_ARTIFACT_NAME}",
            name.len()
        )));
    }
    validate_key(name).map_err(|error| refuse(error.to_string()))
}

impl JobService {
    /// The artifact store the service keeps artifacts in.
    pub fn artifact_store(&self) -> &Arc<dyn ArtifactStore> {
        &self.artifacts
    }

    /// Stores the bytes of job `id`'s artifact `name` (made by `step`, when known) from
    /// `body`, within `limits`, replacing any of that name; answers its record, which is kept
    /// once [`JobService::record_artifacts`] is called with it.
    ///
    /// # Errors
    /// [`JobError::BadArtifactName`]; [`JobError::Artifacts`] when the bytes break `limits` or
    /// the artifact store fails (nothing is stored then).
    pub async fn put_artifact(
        &self,
        id: JobId,
        name: &str,
        step: Option<String>,
        body: ByteStream,
        limits: PutLimits,
    ) -> Result<Artifact, JobError> {
        check_artifact_name(name)?;
        let stored = self
            .artifacts
            .put(&artifact_key(id, name), body, limits)
            .await?;
        Ok(Artifact {
            name: name.to_owned(),
            size: stored.size,
            sha256: stored.sha256.to_string(),
            media_type: omni_artifacts::media_type(name).to_owned(),
            step,
            created_at: chrono::SubsecRound::trunc_subsecs(omni_store::now(), 3),
        })
    }

    /// Records `artifacts` of job `id` (their bytes stored by [`JobService::put_artifact`]),
    /// announces them as one `job.artifacts` event and counts them.
    ///
    /// # Errors
    /// [`JobError::NotFound`]; [`JobError::Store`] (a conflict when the job has ended).
    pub async fn record_artifacts(
        &self,
        id: JobId,
        artifacts: &[Artifact],
    ) -> Result<(), JobError> {
        if artifacts.is_empty() {
            return Ok(());
        }
        let event =
            self.store
                .record_artifacts(id, artifacts)
                .await
                .map_err(|error| match error {
                    omni_store::StoreError::NotFound(id) => JobError::NotFound(id),
                    other => JobError::Store(other),
                })?;
        crate::metrics::artifacts_stored(&event.task, artifacts);
        // No subscribers is fine: nothing listens yet.
        let _ = self.events.send(JobEvent::stored(&event));
        Ok(())
    }

    /// A page of job `id`'s artifacts, by name.
    ///
    /// # Errors
    /// [`JobError::Store`].
    pub async fn list_artifacts(
        &self,
        id: JobId,
        query: &ArtifactQuery,
    ) -> Result<ArtifactPage, JobError> {
        Ok(self.store.list_artifacts(id, query).await?)
    }

    /// Job `id`'s artifact `name`.
    ///
    /// # Errors
    /// [`JobError::NoSuchArtifact`]; [`JobError::Store`].
    pub async fn get_artifact(&self, id: JobId, name: &str) -> Result<Artifact, JobError> {
        self.store
            .get_artifact(id, name)
            .await?
            .ok_or_else(|| JobError::NoSuchArtifact {
                id,
                name: name.to_owned(),
            })
    }

    /// Opens job `id`'s artifact `name` to read, all of it or `range`: its record and its
    /// bytes.
    ///
    /// # Errors
    /// [`JobError::NoSuchArtifact`] (also when its record outlived its bytes);
    /// [`JobError::Artifacts`] for a range it cannot satisfy or an artifact store that fails;
    /// [`JobError::Store`].
    pub async fn open_artifact(
        &self,
        id: JobId,
        name: &str,
        range: Option<ByteRange>,
    ) -> Result<(Artifact, Download), JobError> {
        let artifact = self.get_artifact(id, name).await?;
        match self.artifacts.get(&artifact_key(id, name), range).await {
            Ok(download) => Ok((artifact, download)),
            Err(omni_artifacts::ArtifactError::NotFound { .. }) => Err(JobError::NoSuchArtifact {
                id,
                name: name.to_owned(),
            }),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes the bytes of the artifacts whose job is gone: the store removed its record
    /// after its TTL (the embedded store's sweep, Cassandra's TTL), which a purge does not
    /// leave to this (it deletes the bytes itself). Only jobs made before `made_before` are
    /// looked at (one read each): a younger one cannot have expired yet. Answers how many
    /// objects were deleted.
    ///
    /// # Errors
    /// [`JobError::Artifacts`], [`JobError::Store`]: the sweep stops there, and the next one
    /// goes on.
    pub async fn sweep_artifacts(
        &self,
        made_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, JobError> {
        let mut deleted = 0;
        for child in self.artifacts.children("jobs").await? {
            let Some(id) = JobId::parse_str(&child)
                .ok()
                .filter(|id| omni_store::id_time(*id).is_some_and(|t| t < made_before))
            else {
                continue;
            };
            if self.store.get_job(id).await?.is_none() {
                let objects = self.delete_artifacts(id).await?;
                tracing::info!(job = %id, objects, "deleted the artifacts of an expired job");
                deleted += objects;
            }
        }
        Ok(deleted)
    }

    /// Runs [`JobService::sweep_artifacts`] every `interval`, for jobs made more than
    /// `job_ttl` ago, then [`JobService::sweep_uploads`], until the task is dropped. Of several
    /// replicas, the one that takes the `artifacts-sweep` lease at a tick sweeps (the lease
    /// lasts half an interval); the others skip that tick.
    pub async fn sweep_artifacts_every(
        self,
        interval: std::time::Duration,
        job_ttl: std::time::Duration,
    ) {
        let holder = format!("replica-{}", omni_store::new_job_id().simple());
        let mut suspects = std::collections::BTreeSet::new();
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match self
                .store
                .acquire_lease("artifacts-sweep", &holder, interval / 2)
                .await
            {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, "cannot take the artifacts-sweep lease");
                    continue;
                }
            }
            let ttl = chrono::TimeDelta::from_std(job_ttl).unwrap_or(chrono::TimeDelta::MAX);
            let cutoff = omni_store::now()
                .checked_sub_signed(ttl)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
            if let Err(error) = self.sweep_artifacts(cutoff).await {
                tracing::warn!(%error, "sweeping expired jobs' artifacts failed; trying again later");
            }
            if let Err(error) = self.sweep_uploads(&mut suspects).await {
                tracing::warn!(%error, "sweeping expired uploads failed; trying again later");
            }
        }
    }

    /// Deletes the bytes of every artifact of job `id` (its records go with the job).
    ///
    /// # Errors
    /// [`JobError::Artifacts`].
    pub async fn delete_artifacts(&self, id: JobId) -> Result<u64, JobError> {
        Ok(self.artifacts.delete_prefix(&artifacts_prefix(id)).await?)
    }
}
