//! [`JobStore`] on redb: jobs, their listing index and history, idempotency keys, and the
//! job-change events they record in the same transaction (`events`).

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use omni_store::{
    Created, IdempotencyKey, Job, JobId, JobPage, JobQuery, JobState, JobStore, Rendering, Result,
    StateChange, Step, StoreError, Transition,
};
use redb::ReadableTable;
use uuid::Uuid;

use crate::events::record_event;
use crate::tables::*;
use crate::{EmbeddedStore, millis};

impl EmbeddedStore {
    /// Changes job `id` without a transition (its history stays): `change` gets the stored job
    /// and gives the new one, or `None` to leave it as it is (the stored job is the answer), or
    /// an error; its `updated_at` is set here.
    async fn rewrite(
        &self,
        id: JobId,
        change: impl FnOnce(&Job) -> Result<Option<Job>> + Send + 'static,
    ) -> Result<Job> {
        self.write(move |txn| {
            let mut jobs = txn.open_table(JOBS)?;
            let Some((stored, previous)) = get_job_to_change(&jobs, id)? else {
                return Err(OpError::Store(StoreError::NotFound(id)));
            };
            let Some(mut job) = change(&stored).map_err(OpError::Store)? else {
                return Ok(stored);
            };
            job.updated_at = omni_store::now();
            jobs.insert(
                id.as_u128(),
                encode_job(&job, previous.as_deref())?.as_slice(),
            )?;
            Ok(job)
        })
        .await
    }
}

/// Deletes a job with everything that hangs off it, inside `txn`. Returns whether it existed.
pub(crate) fn purge(txn: &redb::WriteTransaction, id: u128) -> Result<bool, OpError> {
    let mut jobs = txn.open_table(JOBS)?;
    let Some(stored) = jobs.remove(id)? else {
        return Ok(false);
    };
    let job = decode_job(stored.value())?;
    drop(stored);
    drop(jobs);
    txn.open_table(JOBS_BY_TIME)?.remove(time_key(&job))?;
    if let Some(finished) = job.finished_at {
        txn.open_table(EXPIRY)?.remove((millis(finished), id))?;
    }
    txn.open_table(HISTORY)?
        .retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
    txn.open_table(LOGS)?
        .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
    crate::artifacts::purge(txn, id)?;
    Ok(true)
}

/// A stored job and, when its record is of a newer format, the record to write a change over.
type ToChange = (Job, Option<Vec<u8>>);

/// Job `id`, to change it (see [`ToChange`]).
fn get_job_to_change(
    table: &impl ReadableTable<u128, &'static [u8]>,
    id: JobId,
) -> Result<Option<ToChange>, OpError> {
    match table.get(id.as_u128())? {
        Some(bytes) => Ok(Some((
            decode_job(bytes.value())?,
            newer_record(bytes.value()),
        ))),
        None => Ok(None),
    }
}

fn get_job(
    table: &impl ReadableTable<u128, &'static [u8]>,
    id: JobId,
) -> Result<Option<Job>, OpError> {
    match table.get(id.as_u128())? {
        Some(bytes) => decode_job(bytes.value()).map(Some),
        None => Ok(None),
    }
}

#[async_trait]
impl JobStore for EmbeddedStore {
    async fn create_job(&self, job: &Job, key: Option<&IdempotencyKey>) -> Result<Created> {
        let job = job.clone();
        let key = key.cloned();
        self.write(move |txn| {
            if let Some(key) = &key {
                let mut keys = txn.open_table(IDEMPOTENCY)?;
                let existing = keys
                    .get(key.key.as_str())?
                    .map(|v| IdempotencyRecord::decode(v.value()))
                    .transpose()?;
                if let Some(record) = existing {
                    let job_id = Uuid::from_u128(record.job_id);
                    if record.fingerprint != key.fingerprint {
                        return Err(OpError::Store(StoreError::IdempotencyConflict {
                            key: key.key.clone(),
                            job_id,
                        }));
                    }
                    let jobs = txn.open_table(JOBS)?;
                    if let Some(existing) = get_job(&jobs, job_id)? {
                        return Ok(Created::Existing(existing));
                    }
                    // The job it made has been purged: the key is free again.
                }
                let record = IdempotencyRecord {
                    fingerprint: key.fingerprint.clone(),
                    job_id: job.id.as_u128(),
                    created_ms: millis(Utc::now()),
                };
                keys.insert(key.key.as_str(), record.encode().as_slice())?;
            }
            let id = job.id.as_u128();
            txn.open_table(JOBS)?
                .insert(id, encode_job(&job, None)?.as_slice())?;
            txn.open_table(JOBS_BY_TIME)?
                .insert(time_key(&job), summary(&job).as_str())?;
            let change = StateChange {
                job_id: job.id,
                seq: 0,
                from: None,
                to: job.state,
                time: job.created_at,
                message: job.message.clone(),
            };
            txn.open_table(HISTORY)?
                .insert((id, 0), encode(&change)?.as_slice())?;
            record_event(txn, &job, &change)?;
            Ok(Created::New(job))
        })
        .await
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        self.read(move |txn| get_job(&txn.open_table(JOBS)?, id))
            .await
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<JobPage> {
        let query = query.clone();
        self.read(move |txn| {
            let index = txn.open_table(JOBS_BY_TIME)?;
            let jobs = txn.open_table(JOBS)?;
            // The index is ordered by the ids' time; the bounds are loose by a millisecond
            // (created_at is kept to the millisecond) and `matches` is exact.
            let upper = match (query.after, query.until) {
                (Some(after), _) => std::ops::Bound::Excluded(id_key(after)),
                (None, Some(until)) => {
                    std::ops::Bound::Excluded((ticks(until + TimeDelta::milliseconds(1)), 0))
                }
                (None, None) => std::ops::Bound::Unbounded,
            };
            let lower = query
                .since
                .map(|since| ticks(since - TimeDelta::milliseconds(1)));
            let mut items = Vec::new();
            for entry in index
                .range::<(u64, u128)>((std::ops::Bound::Unbounded, upper))?
                .rev()
            {
                let (key, value) = entry?;
                let (tick, id) = key.value();
                if lower.is_some_and(|lower| tick < lower) {
                    break;
                }
                if !summary_matches(value.value(), &query) {
                    continue;
                }
                let Some(job) = get_job(&jobs, Uuid::from_u128(id))? else {
                    return Err(OpError::corrupt(format!("index names a missing job {id}")));
                };
                if query.matches(&job) {
                    items.push(job);
                    if items.len() == query.limit {
                        break;
                    }
                }
            }
            let next = (items.len() == query.limit)
                .then(|| items.last().map(|j| j.id))
                .flatten();
            Ok(JobPage { items, next })
        })
        .await
    }

    async fn transition(&self, id: JobId, transition: &Transition) -> Result<(Job, StateChange)> {
        transition.from.check(transition.to)?;
        let transition = transition.clone();
        self.write(move |txn| {
            let key = id.as_u128();
            let mut jobs = txn.open_table(JOBS)?;
            let Some((mut job, previous)) = get_job_to_change(&jobs, id)? else {
                return Err(OpError::Store(StoreError::NotFound(id)));
            };
            if job.state != transition.from {
                return Err(OpError::Store(StoreError::Conflict {
                    id,
                    expected: transition.from,
                    actual: job.state,
                }));
            }
            job.apply(&transition);
            jobs.insert(key, encode_job(&job, previous.as_deref())?.as_slice())?;
            drop(jobs);
            txn.open_table(JOBS_BY_TIME)?
                .insert(time_key(&job), summary(&job).as_str())?;
            if let Some(finished) = job.finished_at {
                txn.open_table(EXPIRY)?
                    .insert((millis(finished), key), ())?;
            }
            let mut history = txn.open_table(HISTORY)?;
            let seq = match history.range((key, 0)..=(key, u32::MAX))?.next_back() {
                Some(last) => last?.0.value().1 + 1,
                None => 0,
            };
            let change = StateChange {
                job_id: id,
                seq,
                from: Some(transition.from),
                to: transition.to,
                time: transition.time,
                message: transition.message.clone(),
            };
            history.insert((key, seq), encode(&change)?.as_slice())?;
            drop(history);
            record_event(txn, &job, &change)?;
            Ok((job, change))
        })
        .await
    }

    async fn assign_engine(
        &self,
        id: JobId,
        engine: &str,
        rendering: Option<&Rendering>,
    ) -> Result<Job> {
        let engine = engine.to_owned();
        let rendering = rendering.cloned();
        self.rewrite(id, move |job| {
            if job.state != JobState::Queued {
                return Err(StoreError::Conflict {
                    id,
                    expected: JobState::Queued,
                    actual: job.state,
                });
            }
            Ok(Some(Job {
                engine: Some(engine),
                rendering,
                ..job.clone()
            }))
        })
        .await
    }

    async fn update_steps(&self, id: JobId, steps: &[Step]) -> Result<Job> {
        let steps = steps.to_vec();
        self.rewrite(id, move |job| {
            Ok((!job.state.is_final()).then(|| Job {
                steps,
                ..job.clone()
            }))
        })
        .await
    }

    async fn history(&self, id: JobId) -> Result<Vec<StateChange>> {
        self.read(move |txn| {
            let key = id.as_u128();
            txn.open_table(HISTORY)?
                .range((key, 0)..=(key, u32::MAX))?
                .map(|entry| decode(entry?.1.value()))
                .collect()
        })
        .await
    }

    async fn purge_job(&self, id: JobId) -> Result<bool> {
        self.write(move |txn| purge(txn, id.as_u128())).await
    }
}
