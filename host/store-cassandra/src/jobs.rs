//! [`JobStore`] on Cassandra: one row per job holding its history (`jobs_by_id`, changed by
//! compare-and-set on its `version`), listings in day buckets (`jobs_by_day`), idempotency keys
//! claimed by lightweight transaction. A job's changes record their events (`events`).

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use scylla::value::CqlTimeuuid;

use omni_store::{
    Created, IdempotencyKey, Job, JobId, JobPage, JobQuery, JobState, JobStore, Rendering, Result,
    StateChange, Step, StoreError, Transition, id_time, record,
};

use crate::cql::{LwtAnswer, corrupt, lwt, timeuuid, unavailable};
use crate::{CassandraStore, is_timeuuid, to_json};

/// Job reads in flight at once while a listing fetches its candidates.
const LIST_READS_IN_FLIGHT: usize = 32;
/// Rows per page of a day bucket.
pub(crate) const LIST_PAGE_ROWS: i32 = 500;
/// Compare-and-set attempts of one job change before it gives up (contention).
const CAS_ATTEMPTS: usize = 16;
/// The distance allowed between a job's `created_at` and the time in its id (both are taken when
/// it is made, by the same machine): a listing by time looks this much further in both
/// directions, then filters by `created_at` exactly.
const ID_TIME_SLACK: TimeDelta = TimeDelta::minutes(1);

/// A job row: the job, its history and what the compare-and-set needs.
#[derive(Debug, Clone)]
struct Record {
    version: i32,
    job: Job,
    history: Vec<StateChange>,
    key: Option<String>,
    /// The job and history as stored, when the job's record is of a newer format: a change is
    /// written over them, keeping what this server does not know.
    newer: Option<(String, String)>,
}

type JobRow = (
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<String>,
    Option<String>,
);

type DayRow = (
    CqlTimeuuid,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl CassandraStore {
    /// The job row, read at the configured consistency or, with `serial`, as a Paxos read that
    /// also sees a change in flight.
    async fn read(&self, id: JobId, serial: bool) -> Result<Option<Record>> {
        if !is_timeuuid(id) {
            return Ok(None);
        }
        let st = &self.inner.st;
        let statement = if serial {
            &st.get_job_serial
        } else {
            &st.get_job
        };
        let rows = self
            .inner
            .session
            .execute_unpaged(statement, (timeuuid(id),))
            .await
            .map_err(|e| unavailable("reading a job", e))?
            .into_rows_result()
            .map_err(|e| unavailable("reading a job", e))?;
        let row: Option<JobRow> = rows
            .maybe_first_row()
            .map_err(|e| corrupt(format!("job {id}: {e}")))?;
        let Some((_, version, job, history, key)) = row else {
            return Ok(None);
        };
        let (Some(version), Some(job)) = (version, job) else {
            // A row whose cells expired one by one (TTL) or a partial write: not a job.
            return Ok(None);
        };
        let history = history.unwrap_or_else(|| "[]".to_owned());
        let record = Record {
            version,
            job: serde_json::from_str(&job).map_err(|e| corrupt(format!("job {id}: {e}")))?,
            history: serde_json::from_str(&history)
                .map_err(|e| corrupt(format!("history of job {id}: {e}")))?,
            key,
            newer: record::is_newer(&job).then_some((job, history)),
        };
        Ok(Some(record))
    }

    /// Writes a new job: its listing entry, the job row and its creation event, in one unlogged
    /// batch. A create interrupted between them was not acknowledged; it leaves a listing entry
    /// without a job (listings skip it) or a job no listing shows and nobody was told the id of
    /// (it expires with its TTL).
    ///
    /// All are plain writes (a Paxos insert would cost three times as much, and a new job's id
    /// is unique), at a timestamp derived from the job: a day before the time in its id. So
    /// writing the same job again (a retry, or a caller finishing the create of another one with
    /// the same idempotency key) changes nothing, and can never undo a later change: every
    /// later write (a Paxos transition, a purge's delete, a listing hint) carries the time it
    /// was made, which is later unless clocks are a day apart.
    ///
    /// The job's creation event is written in the same request: a new job and its event are
    /// stored together (or, when the request fails, likely neither), and a submission costs one
    /// request. The event's id is made just before; when the request took longer than half the
    /// settle time, the event is written again under a new id, as
    /// [`CassandraStore::record_event`] does. Writing the same job again writes its event again:
    /// a reader may get it twice, never not at all.
    async fn insert_job(&self, job: &Job, key: Option<&str>) -> Result<()> {
        let created = creation(job);
        let history = std::slice::from_ref(&created);
        let timestamp = creation_timestamp(job);
        let listing = (
            day_of(job),
            timeuuid(job.id),
            job.service.as_str(),
            job.task.as_str(),
            job.domain.as_str(),
            job.state.as_str(),
            self.inner.job_ttl,
            timestamp,
        );
        let row = (
            timeuuid(job.id),
            job.state.as_str(),
            encode_job(job, None)?,
            to_json(&history)?,
            key,
            self.inner.job_ttl,
            timestamp,
        );
        // One request, one round trip (with the commitlog synced before each answer, the round
        // trip is most of a submission's time), and less of the node's per-request work than a
        // request per statement; its CPU is what limits submissions on a small node. Unlogged:
        // each write is idempotent, and a create that fails is retried whole or answered 503 (a
        // listing entry without its row is skipped by listings).
        let started = Utc::now();
        let (id, event) = self.new_event(job, &created)?;
        self.inner
            .session
            .batch(&self.inner.create_batch, (listing, row, event))
            .await
            .map_err(|e| unavailable("creating a job", e))?;
        if Utc::now() - started > self.inner.event_settle / 2 {
            tracing::warn!(job = %job.id, event = %id, "a new job took longer than half the settle time to write; writing its event again under a new id");
            self.record_event_after(job, &created, 2).await;
        }
        Ok(())
    }

    /// The job's listing entry (created or refreshed: the state is a hint for listings, the TTL
    /// starts again).
    async fn write_day_row(&self, job: &Job) -> Result<()> {
        self.inner
            .session
            .execute_unpaged(
                &self.inner.st.insert_day,
                (
                    day_of(job),
                    timeuuid(job.id),
                    job.service.as_str(),
                    job.task.as_str(),
                    job.domain.as_str(),
                    job.state.as_str(),
                    self.inner.job_ttl,
                ),
            )
            .await
            .map_err(|e| unavailable("writing a job's listing entry", e))?;
        Ok(())
    }

    /// Changes job `id` without a transition (its history stays): `change` gets the stored job
    /// and gives the new one, or `None` to leave it as it is (the stored job is the answer), or
    /// an error; its `updated_at` is set here. Tried again on a lost compare-and-set, reading
    /// serially then; `doing` names the change in the error after too many tries.
    async fn rewrite(
        &self,
        id: JobId,
        doing: &str,
        change: impl Fn(&Job) -> Result<Option<Job>>,
    ) -> Result<Job> {
        for attempt in 0..CAS_ATTEMPTS {
            let Some(record) = self.read(id, attempt > 0).await? else {
                return Err(StoreError::NotFound(id));
            };
            let Some(mut job) = change(&record.job)? else {
                return Ok(record.job);
            };
            job.updated_at = omni_store::now();
            if self.compare_and_set(&record, &job, &record.history).await? {
                return Ok(job);
            }
        }
        Err(StoreError::Unavailable {
            message: format!("cassandra: job {id} changed {CAS_ATTEMPTS} times while {doing}"),
            source: None,
        })
    }

    /// Writes `job` and `history` over `record` if the row is still at `record.version`.
    /// Returns whether it did (also when an attempt whose outcome was unknown did).
    async fn compare_and_set(
        &self,
        record: &Record,
        job: &Job,
        history: &[StateChange],
    ) -> Result<bool> {
        let answer: LwtAnswer = lwt(
            &self.inner.session,
            &self.inner.st.update_job,
            (
                self.inner.job_ttl,
                job.state.as_str(),
                record.version + 1,
                encode_job(job, record.newer.as_ref().map(|(job, _)| job.as_str()))?,
                match &record.newer {
                    Some((_, stored)) => record::encode_over(&history, stored)
                        .map_err(|e| corrupt(format!("cannot encode a history: {e}")))?,
                    None => to_json(&history)?,
                },
                record.key.as_deref(),
                timeuuid(job.id),
                record.version,
            ),
            "changing a job",
        )
        .await?;
        if answer.applied {
            return Ok(true);
        }
        if answer.retried && answer.int("version") == Some(record.version + 1) {
            // Maybe our own earlier attempt: it is if the row holds what we wrote.
            if let Some(now) = self.read(job.id, true).await? {
                return Ok(now.version == record.version + 1
                    && now.job == *job
                    && now.history == history);
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl JobStore for CassandraStore {
    async fn create_job(&self, job: &Job, key: Option<&IdempotencyKey>) -> Result<Created> {
        if !is_timeuuid(job.id) {
            return Err(corrupt(format!(
                "job id {} is not a time-based (v1) uuid",
                job.id
            )));
        }
        let Some(key) = key else {
            self.insert_job(job, None).await?;
            return Ok(Created::New(job.clone()));
        };
        // Claim the key first. The key row holds the whole job, so whoever finds the key claimed
        // but its job not written (the first caller is still writing it, or died between the
        // two writes) can finish the create instead of waiting or failing.
        let answer = lwt(
            &self.inner.session,
            &self.inner.st.insert_key,
            (
                key.key.as_str(),
                key.fingerprint.as_str(),
                timeuuid(job.id),
                encode_job(job, None)?,
                self.inner.key_ttl,
            ),
            "claiming an idempotency key",
        )
        .await?;
        let claimed_by = answer.timeuuid("job_id");
        if answer.applied || claimed_by == Some(job.id) {
            // Ours (also when an earlier attempt with an unknown outcome claimed it).
            self.insert_job(job, Some(&key.key)).await?;
            return Ok(Created::New(job.clone()));
        }
        let Some(first_id) = claimed_by else {
            return Err(corrupt(format!("idempotency key {:?} has no job", key.key)));
        };
        if answer.text("fingerprint") != Some(key.fingerprint.as_str()) {
            return Err(StoreError::IdempotencyConflict {
                key: key.key.clone(),
                job_id: first_id,
            });
        }
        if let Some(found) = self.read(first_id, false).await? {
            return Ok(Created::Existing(found.job));
        }
        let first: Job = serde_json::from_str(answer.text("job").unwrap_or_default())
            .map_err(|e| corrupt(format!("idempotency key {:?}: {e}", key.key)))?;
        self.insert_job(&first, Some(&key.key)).await?;
        let current = self.read(first_id, true).await?.map_or(first, |r| r.job);
        Ok(Created::Existing(current))
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        Ok(self.read(id, false).await?.map(|r| r.job))
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<JobPage> {
        let limit = query.limit.clamp(1, JobQuery::MAX_LIMIT);
        let now = Utc::now();
        // Newest first: from `until` (at most a little ahead of now: clocks differ) down to
        // `since` or the oldest day that can still hold a job.
        let top = query
            .until
            .map_or(now, |until| until.min(now + TimeDelta::hours(1)))
            + ID_TIME_SLACK;
        let bottom = (now - self.inner.listing_horizon).max(
            query
                .since
                .map_or(DateTime::<Utc>::MIN_UTC, |s| s - ID_TIME_SLACK),
        );
        let mut day = top.date_naive();
        let mut before = None;
        if let Some(after) = query.after {
            let Some(after_day) = id_time(after).map(|t| t.date_naive()) else {
                return Ok(JobPage {
                    items: Vec::new(),
                    next: None,
                });
            };
            if after_day <= day {
                day = after_day;
                before = Some(after);
            }
        }
        let last_day = bottom.date_naive();
        let mut items: Vec<Job> = Vec::with_capacity(limit);
        'days: while day >= last_day {
            let pager = match before {
                Some(after) => {
                    self.inner
                        .session
                        .execute_iter(
                            self.inner.st.list_day_before.clone(),
                            (day, timeuuid(after)),
                        )
                        .await
                }
                None => {
                    self.inner
                        .session
                        .execute_iter(self.inner.st.list_day.clone(), (day,))
                        .await
                }
            }
            .map_err(|e| unavailable("listing jobs", e))?;
            let mut rows = pager
                .rows_stream::<DayRow>()
                .map_err(|e| corrupt(format!("jobs_by_day: {e}")))?;
            let mut candidates: Vec<JobId> = Vec::new();
            loop {
                let row = rows
                    .try_next()
                    .await
                    .map_err(|e| unavailable("listing jobs", e))?;
                let exhausted = row.is_none();
                if let Some(row) = row
                    && let Some(id) = candidate(query, row)
                {
                    candidates.push(id);
                }
                let wanted = limit - items.len();
                if candidates.len() >= wanted || (exhausted && !candidates.is_empty()) {
                    let reads: Vec<_> = candidates
                        .drain(..)
                        .map(|id| self.read(id, false))
                        .collect();
                    let jobs: Vec<Option<Record>> = futures::stream::iter(reads)
                        .buffered(LIST_READS_IN_FLIGHT)
                        .try_collect()
                        .await?;
                    for record in jobs.into_iter().flatten() {
                        if query.matches(&record.job) {
                            items.push(record.job);
                            if items.len() == limit {
                                break 'days;
                            }
                        }
                    }
                }
                if exhausted {
                    break;
                }
            }
            day = match day.pred_opt() {
                Some(previous) => previous,
                None => break,
            };
            before = None;
        }
        let next = if items.len() == limit {
            items.last().map(|job| job.id)
        } else {
            None
        };
        Ok(JobPage { items, next })
    }

    async fn transition(&self, id: JobId, transition: &Transition) -> Result<(Job, StateChange)> {
        transition.from.check(transition.to)?;
        for attempt in 0..CAS_ATTEMPTS {
            // After a lost compare-and-set, read serially: the winner's change may be in flight.
            let Some(record) = self.read(id, attempt > 0).await? else {
                return Err(StoreError::NotFound(id));
            };
            if record.job.state != transition.from {
                return Err(StoreError::Conflict {
                    id,
                    expected: transition.from,
                    actual: record.job.state,
                });
            }
            let mut job = record.job.clone();
            job.apply(transition);
            let change = StateChange {
                job_id: id,
                seq: u32::try_from(record.history.len()).unwrap_or(u32::MAX),
                from: Some(transition.from),
                to: transition.to,
                time: transition.time,
                message: transition.message.clone(),
            };
            let mut history = record.history.clone();
            history.push(change.clone());
            if self.compare_and_set(&record, &job, &history).await? {
                // The listing entry's state hint and TTL. The change is made: a failure here
                // only leaves a stale hint (listings check the job itself).
                if let Err(e) = self.write_day_row(&job).await {
                    tracing::warn!(job = %id, error = %e, "could not refresh a job's listing entry");
                }
                self.record_event(&job, &change).await;
                return Ok((job, change));
            }
            // The row changed under us (another transition, or new steps): look again.
        }
        Err(StoreError::Unavailable {
            message: format!("cassandra: job {id} changed {CAS_ATTEMPTS} times while moving it"),
            source: None,
        })
    }

    async fn assign_engine(
        &self,
        id: JobId,
        engine: &str,
        rendering: Option<&Rendering>,
    ) -> Result<Job> {
        self.rewrite(id, "assigning it an engine", |job| {
            if job.state != JobState::Queued {
                return Err(StoreError::Conflict {
                    id,
                    expected: JobState::Queued,
                    actual: job.state,
                });
            }
            let mut job = job.clone();
            job.engine = Some(engine.to_owned());
            job.rendering = rendering.cloned();
            Ok(Some(job))
        })
        .await
    }

    async fn update_steps(&self, id: JobId, steps: &[Step]) -> Result<Job> {
        self.rewrite(id, "updating it", |job| {
            Ok((!job.state.is_final()).then(|| Job {
                steps: steps.to_vec(),
                ..job.clone()
            }))
        })
        .await
    }

    async fn history(&self, id: JobId) -> Result<Vec<StateChange>> {
        Ok(self
            .read(id, false)
            .await?
            .map(|r| r.history)
            .unwrap_or_default())
    }

    async fn purge_job(&self, id: JobId) -> Result<bool> {
        if !is_timeuuid(id) {
            return Ok(false);
        }
        let found = self.read(id, false).await?;
        let session = &self.inner.session;
        let st = &self.inner.st;
        // Everything else first, the job row last: a purge cut short can be run again.
        if let Some(key) = found.as_ref().and_then(|r| r.key.as_deref()) {
            // Only if the key still names this job (it may have expired and been reused).
            lwt(
                session,
                &st.delete_key,
                (key, timeuuid(id)),
                "deleting an idempotency key",
            )
            .await?;
        }
        self.delete_logs(id).await?;
        self.delete_artifacts(id).await?;
        let day = match &found {
            Some(record) => Some(day_of(&record.job)),
            None => id_time(id).map(|t| t.date_naive()),
        };
        if let Some(day) = day {
            session
                .execute_unpaged(&st.delete_day, (day, timeuuid(id)))
                .await
                .map_err(|e| unavailable("deleting a job's listing entry", e))?;
        }
        let answer = lwt(session, &st.delete_job, (timeuuid(id),), "deleting a job").await?;
        Ok(answer.applied || (answer.retried && found.is_some()))
    }
}

/// `job` as a [record](omni_store::record) written over `previous` (its stored record when that
/// is of a newer format).
fn encode_job(job: &Job, previous: Option<&str>) -> Result<String> {
    record::encode(job, previous, Job::OPAQUE)
        .map_err(|e| corrupt(format!("cannot encode job {}: {e}", job.id)))
}

/// Entry 0 of a new job's history.
fn creation(job: &Job) -> StateChange {
    StateChange {
        job_id: job.id,
        seq: 0,
        from: None,
        to: job.state,
        time: job.created_at,
        message: job.message.clone(),
    }
}

/// The id of a listing row worth reading the job for: the row's immutable columns match, and
/// its state hint does not rule it out (a hint that names a final state is the truth: nothing
/// leaves a final state; any other hint may be stale).
fn candidate(query: &JobQuery, row: DayRow) -> Option<JobId> {
    let (id, service, task, domain, state) = row;
    let same = |want: &Option<String>, have: &Option<String>| {
        want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
    };
    if !(same(&query.service, &service)
        && same(&query.task, &task)
        && domain.as_deref().is_none_or(|d| query.allows_domain(d)))
    {
        return None;
    }
    if let (Some(wanted), Some(hint)) =
        (query.state, state.and_then(|s| s.parse::<JobState>().ok()))
        && hint.is_final()
        && hint != wanted
    {
        return None;
    }
    Some(id.into())
}

/// The day bucket of a job: the day of the time in its id (so `after` finds its bucket from the
/// id alone).
fn day_of(job: &Job) -> NaiveDate {
    id_time(job.id).unwrap_or(job.created_at).date_naive()
}

/// The write timestamp (microseconds) of a job's creation: a day before the time in its id.
fn creation_timestamp(job: &Job) -> i64 {
    let made = id_time(job.id).unwrap_or(job.created_at);
    (made - TimeDelta::days(1)).timestamp_micros()
}
