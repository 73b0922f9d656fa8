//! [`ArtifactIndex`] on Cassandra: one partition per job (`job_artifacts`), clustered by name,
//! each record the artifact as JSON; written in unlogged batches of that one partition, then
//! the batch's event.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use scylla::statement::batch::{Batch, BatchType};

use omni_store::{
    Artifact, ArtifactIndex, ArtifactPage, ArtifactQuery, Event, JobId, JobState, JobStore, Result,
    StoreError,
};

use crate::cql::{corrupt, timeuuid, unavailable};
use crate::{CassandraStore, is_timeuuid, to_json};

/// Records per batch (one partition, unlogged): each is a few hundred bytes, so a batch stays
/// far below Cassandra's batch size warning.
const ARTIFACT_BATCH: usize = 64;
/// Batches in flight at once per call.
const ARTIFACT_BATCHES_IN_FLIGHT: usize = 4;

impl CassandraStore {
    /// Deletes every artifact record of job `id` (part of a purge): one partition.
    pub(crate) async fn delete_artifacts(&self, id: JobId) -> Result<()> {
        self.inner
            .session
            .execute_unpaged(&self.inner.st.delete_artifacts, (timeuuid(id),))
            .await
            .map_err(|e| unavailable("deleting artifact records", e))?;
        Ok(())
    }
}

fn decode(id: JobId, text: Option<String>) -> Result<Artifact> {
    let text = text.ok_or_else(|| corrupt(format!("an artifact of {id} without its record")))?;
    serde_json::from_str(&text).map_err(|e| corrupt(format!("an artifact of {id}: {e}")))
}

#[async_trait]
impl ArtifactIndex for CassandraStore {
    async fn record_artifacts(&self, id: JobId, artifacts: &[Artifact]) -> Result<Event> {
        // The job's state is read, not compared-and-set with the records: a job that ends
        // while its artifacts are written keeps them (it made them), and only its engine's
        // follower or its own upload step writes them, before they report its end.
        let job = self.get_job(id).await?.ok_or(StoreError::NotFound(id))?;
        if job.state.is_final() {
            return Err(StoreError::Conflict {
                id,
                expected: JobState::Running,
                actual: job.state,
            });
        }
        let inner = &self.inner;
        let job_id = timeuuid(id);
        let rows: Vec<(&str, String)> = artifacts
            .iter()
            .map(|artifact| Ok((artifact.name.as_str(), to_json(artifact)?)))
            .collect::<Result<_>>()?;
        let batches: Vec<_> = rows
            .chunks(ARTIFACT_BATCH)
            .map(|chunk| async move {
                let mut batch = Batch::new(BatchType::Unlogged);
                for _ in chunk {
                    batch.append_statement(inner.st.insert_artifact.clone());
                }
                batch.set_consistency(inner.consistency);
                batch.set_is_idempotent(true);
                let values: Vec<_> = chunk
                    .iter()
                    .map(|(name, text)| (job_id, *name, text.as_str(), inner.job_ttl))
                    .collect();
                inner
                    .session
                    .batch(&batch, &values)
                    .await
                    .map_err(|e| unavailable("writing artifact records", e))
            })
            .collect();
        futures::stream::iter(batches)
            .buffer_unordered(ARTIFACT_BATCHES_IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        let time = omni_store::now();
        self.write_event(&job, |event| Event::stored(event, &job, artifacts, time), 1)
            .await
    }

    async fn list_artifacts(&self, id: JobId, query: &ArtifactQuery) -> Result<ArtifactPage> {
        if !is_timeuuid(id) || query.limit == 0 {
            return Ok(ArtifactPage {
                items: Vec::new(),
                next: None,
            });
        }
        let limit = i32::try_from(query.limit).unwrap_or(i32::MAX);
        // Names are never empty: after "" is from the first.
        let after = query.after.as_deref().unwrap_or("");
        let pager = self
            .inner
            .session
            .execute_iter(
                self.inner.st.list_artifacts.clone(),
                (timeuuid(id), after, limit),
            )
            .await
            .map_err(|e| unavailable("reading artifact records", e))?;
        let items: Vec<Artifact> = pager
            .rows_stream::<(Option<String>,)>()
            .map_err(|e| corrupt(format!("job_artifacts: {e}")))?
            .map_err(|e| unavailable("reading artifact records", e))
            .and_then(|(text,)| async move { decode(id, text) })
            .try_collect()
            .await?;
        let next = (items.len() == query.limit)
            .then(|| items.last().map(|a| a.name.clone()))
            .flatten();
        Ok(ArtifactPage { items, next })
    }

    async fn get_artifact(&self, id: JobId, name: &str) -> Result<Option<Artifact>> {
        if !is_timeuuid(id) {
            return Ok(None);
        }
        let rows = self
            .inner
            .session
            .execute_unpaged(&self.inner.st.get_artifact, (timeuuid(id), name))
            .await
            .map_err(|e| unavailable("reading an artifact record", e))?
            .into_rows_result()
            .map_err(|e| unavailable("reading an artifact record", e))?;
        let row: Option<(Option<String>,)> = rows
            .maybe_first_row()
            .map_err(|e| corrupt(format!("an artifact of {id}: {e}")))?;
        row.map(|(text,)| decode(id, text)).transpose()
    }
}
