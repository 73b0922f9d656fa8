//! [`ArtifactIndex`] on redb: a job's artifact records keyed by (job, name), so a name recorded
//! again replaces itself, a page is one range read in name order, and a purge one range
//! delete. A batch and its event are one write transaction.

use async_trait::async_trait;
use omni_store::{
    Artifact, ArtifactIndex, ArtifactPage, ArtifactQuery, Event, JobId, JobState, Result,
    StoreError,
};

use redb::ReadableTable;

use crate::EmbeddedStore;
use crate::events::append_event;
use crate::tables::*;

/// Deletes every artifact record of job `id`, inside `txn` (part of a purge): the keys from
/// the job's smallest name (the empty one) up to the next job's.
pub(crate) fn purge(txn: &redb::WriteTransaction, id: u128) -> Result<(), OpError> {
    let mut table = txn.open_table(ARTIFACTS)?;
    match id.checked_add(1) {
        Some(next) => table.retain_in((id, "")..(next, ""), |_, _| false)?,
        None => table.retain_in((id, "").., |_, _| false)?,
    }
    Ok(())
}

#[async_trait]
impl ArtifactIndex for EmbeddedStore {
    async fn record_artifacts(&self, id: JobId, artifacts: &[Artifact]) -> Result<Event> {
        let encoded: Vec<(String, Vec<u8>)> = artifacts
            .iter()
            .map(|artifact| Ok((artifact.name.clone(), encode(artifact)?)))
            .collect::<Result<_, OpError>>()
            .map_err(OpError::into_store)?;
        let artifacts = artifacts.to_vec();
        self.write(move |txn| {
            let job = match txn.open_table(JOBS)?.get(id.as_u128())? {
                Some(bytes) => decode_job(bytes.value())?,
                None => return Err(OpError::Store(StoreError::NotFound(id))),
            };
            if job.state.is_final() {
                return Err(OpError::Store(StoreError::Conflict {
                    id,
                    expected: JobState::Running,
                    actual: job.state,
                }));
            }
            {
                let mut table = txn.open_table(ARTIFACTS)?;
                for (name, bytes) in &encoded {
                    table.insert((id.as_u128(), name.as_str()), bytes.as_slice())?;
                }
            }
            append_event(txn, |event| {
                Event::stored(event, &job, &artifacts, omni_store::now())
            })
        })
        .await
    }

    async fn list_artifacts(&self, id: JobId, query: &ArtifactQuery) -> Result<ArtifactPage> {
        let query = query.clone();
        self.read(move |txn| {
            let key = id.as_u128();
            let mut items = Vec::new();
            if query.limit == 0 {
                return Ok(ArtifactPage { items, next: None });
            }
            let table = txn.open_table(ARTIFACTS)?;
            let start = query.after.as_deref().unwrap_or("");
            for entry in table.range((key, start)..)? {
                let (entry_key, value) = entry?;
                let (job, name) = entry_key.value();
                if job != key {
                    break;
                }
                if query.after.as_deref() == Some(name) {
                    continue;
                }
                items.push(decode::<Artifact>(value.value())?);
                if items.len() == query.limit {
                    break;
                }
            }
            let next = (items.len() == query.limit)
                .then(|| items.last().map(|a| a.name.clone()))
                .flatten();
            Ok(ArtifactPage { items, next })
        })
        .await
    }

    async fn get_artifact(&self, id: JobId, name: &str) -> Result<Option<Artifact>> {
        let name = name.to_owned();
        self.read(move |txn| {
            txn.open_table(ARTIFACTS)?
                .get((id.as_u128(), name.as_str()))?
                .map(|value| decode::<Artifact>(value.value()))
                .transpose()
        })
        .await
    }
}
