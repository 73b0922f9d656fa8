//! # omni-store-cassandra: the store for a cluster
//!
//! [`CassandraStore`] keeps Omni's jobs, their state history, log lines, leases, webhooks and
//! idempotency keys in Apache Cassandra (4.x, 5.x) or ScyllaDB through the `scylla` driver, for
//! as many API replicas as the cluster can serve. It owns one keyspace: it creates it when it is
//! missing (with the replication from [`CassandraConfig`]), applies the versioned CQL migrations
//! in `migrations/` at start and records them in `schema_migrations` ([`migrate`]), and prepares
//! every statement of the request path once.
//!
//! The tables, their keys and the query each one serves are explained in
//! [`migrations/README.md`](https://github.com/omni-build/omni/blob/main/host/store-cassandra/migrations/README.md)
//! (also below). In short: one row per job (`jobs_by_id`, with its history), job listings in day
//! buckets (`jobs_by_day`), one log partition per job and step (`job_logs`, `job_log_steps`),
//! `idempotency_keys`, `leases`, `webhooks` and `webhooks_by_domain`, the job-change event stream
//! in hour buckets (`events_by_hour`) and the webhooks' delivery state (`webhook_deliveries`).
//! Every partition is bounded.
//!
//! Consistency: plain reads and writes at the configured level (`LOCAL_QUORUM` by default);
//! lightweight transactions (Paxos, `SERIAL`) only where correctness needs a compare-and-set:
//! an idempotency key is claimed once, a lease has one holder, and every change of a job row is
//! a compare-and-set on its `version` (so a cancel racing a completion has exactly one winner,
//! and steps never change after the end). A new job is a plain write (its id is unique), at a
//! timestamp a day before its id's time, so that no retry of it can ever undo a later change.
//!
//! Retention: every row of a job is written with `USING TTL job_ttl` and gets it again whenever
//! it is rewritten, so a finished job, its history and its listing entry go `job_ttl` after the
//! job's last change; log lines go `job_ttl` after they were written; idempotency keys after
//! `idempotency_ttl`.
//!
//! Errors: the driver's connection errors and timeouts become [`StoreError::Unavailable`] (the
//! API answers 503); the driver reconnects by itself, so the same store works again once the
//! cluster is back.
//!
//! This crate knows the [`Store`] trait and CQL, nothing of HTTP, plugins or engines.
//!
//! # Layout
//! - [`CassandraConfig`] (`config`): contact points, keyspace, replication, TTLs, timeouts.
//! - [`migrate`]: the migration files and how they are applied.
//! - `cql`: the prepared statements, errors, answers of lightweight transactions.
//!
//! # Schema
#![doc = include_str!("../migrations/README.md")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, SubsecRound, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Statement;
use scylla::statement::batch::{Batch, BatchType};
use scylla::value::CqlTimeuuid;
use uuid::Uuid;

use omni_store::{
    Created, Delivery, Event, EventFilter, EventPage, IdempotencyKey, Job, JobId, JobPage,
    JobQuery, JobState, Lease, LogLine, LogPage, LogQuery, LogStream, Result, StateChange, Step,
    Store, StoreError, Transition, Webhook, id_time,
};

mod config;
mod cql;
pub mod migrate;

pub use config::{CassandraConfig, Consistency, Replication, SerialConsistency};
use cql::{LwtAnswer, Statements, corrupt, lwt, timeuuid, unavailable};
use migrate::{MIGRATIONS, Migration};

/// Lines per log batch (one partition, unlogged): large enough to amortize a round trip, small
/// enough to stay far below Cassandra's mutation size limit...
const LOG_BATCH_LINES: usize = 256;
/// ... and at most this many bytes of text per batch.
const LOG_BATCH_BYTES: usize = 512 * 1024;
/// Log batches in flight at once per call.
const LOG_BATCHES_IN_FLIGHT: usize = 8;
/// Job reads in flight at once while a listing fetches its candidates.
const LIST_READS_IN_FLIGHT: usize = 32;
/// Rows per page of a day bucket.
const LIST_PAGE_ROWS: i32 = 500;
/// Compare-and-set attempts of one job change before it gives up (contention).
const CAS_ATTEMPTS: usize = 16;
/// The distance allowed between a job's `created_at` and the time in its id (both are taken when
/// it is made, by the same machine): a listing by time looks this much further in both
/// directions, then filters by `created_at` exactly.
const ID_TIME_SLACK: TimeDelta = TimeDelta::minutes(1);

/// The Cassandra/ScyllaDB store. Cloning shares the session.
#[derive(Clone)]
pub struct CassandraStore {
    inner: Arc<Inner>,
}

struct Inner {
    session: Session,
    st: Statements,
    /// A full log batch (the insert, [`LOG_BATCH_LINES`] times), built once.
    log_batch: Batch,
    /// A new job's listing entry, row and creation event, in one request.
    create_batch: Batch,
    consistency: scylla::statement::Consistency,
    job_ttl: i32,
    key_ttl: i32,
    event_ttl: i32,
    /// How far behind now event readers stay (see [`CassandraConfig::event_settle`]).
    event_settle: TimeDelta,
    /// How far back a listing walks day buckets: a job lives `job_ttl` after its last change,
    /// which may be a while after the day it was made.
    listing_horizon: TimeDelta,
    keyspace: String,
}

impl std::fmt::Debug for CassandraStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraStore")
            .field("keyspace", &self.inner.keyspace)
            .finish_non_exhaustive()
    }
}

/// A job row: the job, its history and what the compare-and-set needs.
#[derive(Debug, Clone)]
struct Record {
    version: i32,
    job: Job,
    history: Vec<StateChange>,
    key: Option<String>,
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

type WebhookRow = (
    Uuid,
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
    Option<String>,
    Option<DateTime<Utc>>,
);

impl CassandraStore {
    /// Connects to the cluster, creates the keyspace if it is missing, applies the migrations it
    /// lacks and prepares every statement.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when no contact point answers (within `connect_timeout` and
    /// `request_timeout`), when the config is invalid, or when the schema cannot be changed;
    /// [`StoreError::Corrupt`] when an applied migration's file changed.
    pub async fn connect(config: &CassandraConfig) -> Result<Self> {
        Self::connect_with_migrations(config, MIGRATIONS).await
    }

    /// [`CassandraStore::connect`] with another list of migrations (tests of the migrator).
    ///
    /// # Errors
    /// As [`CassandraStore::connect`].
    #[doc(hidden)]
    pub async fn connect_with_migrations(
        config: &CassandraConfig,
        migrations: &[Migration],
    ) -> Result<Self> {
        config.validate().map_err(|e| StoreError::Unavailable {
            message: format!("invalid cassandra configuration: {e}"),
            source: None,
        })?;
        let session = open_session(config).await?;
        create_keyspace(&session, config).await?;
        session
            .use_keyspace(&config.keyspace, false)
            .await
            .map_err(|e| unavailable(&format!("using keyspace {}", config.keyspace), e))?;
        let applied = migrate::migrate(&session, migrations).await?;
        if !applied.is_empty() {
            tracing::info!(keyspace = %config.keyspace, ?applied, "applied migrations");
        }
        let consistency = config.consistency.into();
        let mut st =
            Statements::prepare(&session, consistency, config.serial_consistency.into()).await?;
        st.list_day.set_page_size(LIST_PAGE_ROWS);
        st.list_day_before.set_page_size(LIST_PAGE_ROWS);
        let mut log_batch = Batch::new(BatchType::Unlogged);
        for _ in 0..LOG_BATCH_LINES {
            log_batch.append_statement(st.insert_log.clone());
        }
        log_batch.set_consistency(consistency);
        log_batch.set_is_idempotent(true);
        let mut create_batch = Batch::new(BatchType::Unlogged);
        create_batch.append_statement(st.insert_day_created.clone());
        create_batch.append_statement(st.insert_job.clone());
        create_batch.append_statement(st.insert_event.clone());
        create_batch.set_consistency(consistency);
        create_batch.set_is_idempotent(true);
        let job_ttl = ttl_secs(config.job_ttl);
        let key_ttl = ttl_secs(config.idempotency_ttl.min(config.job_ttl));
        let listing_horizon = TimeDelta::from_std(config.job_ttl.saturating_mul(2))
            .unwrap_or(TimeDelta::days(365 * 40));
        Ok(CassandraStore {
            inner: Arc::new(Inner {
                session,
                st,
                log_batch,
                create_batch,
                consistency,
                job_ttl,
                key_ttl,
                event_ttl: ttl_secs(config.event_ttl),
                event_settle: TimeDelta::from_std(config.event_settle)
                    .unwrap_or(TimeDelta::seconds(2)),
                listing_horizon,
                keyspace: config.keyspace.clone(),
            }),
        })
    }

    /// The driver's session (for tools and tests that need plain CQL).
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

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
        let job: Job = serde_json::from_str(&job).map_err(|e| corrupt(format!("job {id}: {e}")))?;
        let history: Vec<StateChange> = match history {
            Some(h) => serde_json::from_str(&h)
                .map_err(|e| corrupt(format!("history of job {id}: {e}")))?,
            None => Vec::new(),
        };
        Ok(Some(Record {
            version,
            job,
            history,
            key,
        }))
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
            to_json(job)?,
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
                to_json(job)?,
                to_json(&history)?,
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

    async fn log_steps(&self, id: JobId) -> Result<Vec<String>> {
        let pager = self
            .inner
            .session
            .execute_iter(self.inner.st.log_steps.clone(), (timeuuid(id),))
            .await
            .map_err(|e| unavailable("reading a job's log steps", e))?;
        pager
            .rows_stream::<(String,)>()
            .map_err(|e| corrupt(format!("job_log_steps: {e}")))?
            .map_ok(|(step,)| step)
            .try_collect()
            .await
            .map_err(|e| unavailable("reading a job's log steps", e))
    }

    async fn read_step_logs(
        &self,
        id: JobId,
        step: &str,
        after: i64,
        limit: i32,
    ) -> Result<Vec<LogLine>> {
        let pager = self
            .inner
            .session
            .execute_iter(
                self.inner.st.read_logs.clone(),
                (timeuuid(id), step, after, limit),
            )
            .await
            .map_err(|e| unavailable("reading logs", e))?;
        let rows = pager
            .rows_stream::<(i64, Option<DateTime<Utc>>, Option<String>, Option<String>)>()
            .map_err(|e| corrupt(format!("job_logs: {e}")))?;
        rows.map_err(|e| unavailable("reading logs", e))
            .and_then(|(seq, time, stream, line)| async move {
                let stream = match stream.as_deref() {
                    Some("stdout") => LogStream::Stdout,
                    Some("stderr") => LogStream::Stderr,
                    other => {
                        return Err(corrupt(format!("log line {seq} of {id}: stream {other:?}")));
                    }
                };
                Ok(LogLine {
                    step: step.to_owned(),
                    time: time
                        .ok_or_else(|| corrupt(format!("log line {seq} of {id}: no time")))?,
                    seq: u64::try_from(seq)
                        .map_err(|_| corrupt(format!("log line of {id}: seq {seq}")))?,
                    stream,
                    line: line.unwrap_or_default(),
                })
            })
            .try_collect()
            .await
    }

    async fn webhook_domain(&self, id: Uuid) -> Result<Option<Option<String>>> {
        let rows = self
            .inner
            .session
            .execute_unpaged(&self.inner.st.webhook_domain, (id,))
            .await
            .map_err(|e| unavailable("reading a webhook", e))?
            .into_rows_result()
            .map_err(|e| unavailable("reading a webhook", e))?;
        let row: Option<(Option<String>,)> = rows
            .maybe_first_row()
            .map_err(|e| corrupt(format!("webhook {id}: {e}")))?;
        Ok(row.map(|(domain,)| domain))
    }
}

async fn open_session(config: &CassandraConfig) -> Result<Session> {
    let profile = ExecutionProfile::builder()
        .request_timeout(Some(config.request_timeout))
        .consistency(config.consistency.into())
        .serial_consistency(Some(config.serial_consistency.into()))
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.contact_points)
        .connection_timeout(config.connect_timeout)
        .default_execution_profile_handle(profile.into_handle())
        .schema_agreement_timeout(Duration::from_secs(60))
        // Metadata requests at start answer within the request timeout, or the store is not
        // reachable in the sense that matters.
        .metadata_request_serverside_timeout(config.request_timeout);
    if let Some(dc) = &config.local_datacenter {
        builder = builder.prefer_datacenter(dc.clone());
    }
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder.user(user, password);
    }
    let limit = config.connect_timeout + config.request_timeout;
    let unreachable = |why: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
        StoreError::Unavailable {
            message: format!(
                "cannot reach Cassandra at {}: {why}",
                config.contact_points.join(", ")
            ),
            source,
        }
    };
    match tokio::time::timeout(limit, builder.build()).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(unreachable(e.to_string(), Some(Box::new(e)))),
        Err(_) => Err(unreachable(format!("no answer within {limit:?}"), None)),
    }
}

async fn create_keyspace(session: &Session, config: &CassandraConfig) -> Result<()> {
    let replication = config
        .replication
        .to_cql()
        .map_err(|e| StoreError::Unavailable {
            message: format!("invalid cassandra configuration: {e}"),
            source: None,
        })?;
    // The name is checked to be a plain identifier (config), the replication map is rendered
    // with quoted names: nothing here comes from outside unescaped.
    let mut statement = Statement::new(format!(
        "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {replication}",
        config.keyspace
    ));
    statement.set_request_timeout(Some(Duration::from_secs(60)));
    session
        .query_unpaged(statement, ())
        .await
        .map_err(|e| unavailable(&format!("creating keyspace {}", config.keyspace), e))?;
    session
        .await_schema_agreement()
        .await
        .map_err(|e| unavailable("waiting for schema agreement", e))?;
    Ok(())
}

#[async_trait]
impl Store for CassandraStore {
    fn kind(&self) -> &'static str {
        "cassandra"
    }

    async fn ping(&self) -> Result<()> {
        self.inner
            .session
            .execute_unpaged(&self.inner.st.ping, ())
            .await
            .map_err(|e| unavailable("ping", e))?;
        Ok(())
    }

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
                to_json(job)?,
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

    async fn assign_engine(&self, id: JobId, engine: &str) -> Result<Job> {
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
        let steps = self.log_steps(id).await?;
        let deletes: Vec<_> = steps
            .iter()
            .map(|step| async move {
                session
                    .execute_unpaged(&st.delete_logs, (timeuuid(id), step.as_str()))
                    .await
                    .map_err(|e| unavailable("deleting logs", e))
            })
            .collect();
        futures::stream::iter(deletes)
            .buffer_unordered(LOG_BATCHES_IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        session
            .execute_unpaged(&st.delete_log_steps, (timeuuid(id),))
            .await
            .map_err(|e| unavailable("deleting log steps", e))?;
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

    async fn append_logs(&self, id: JobId, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        if !is_timeuuid(id) {
            return Err(StoreError::NotFound(id));
        }
        let mut by_step: BTreeMap<&str, Vec<&LogLine>> = BTreeMap::new();
        for line in lines {
            by_step.entry(line.step.as_str()).or_default().push(line);
        }
        let mut chunks: Vec<Vec<&LogLine>> = Vec::new();
        for step_lines in by_step.values() {
            let mut chunk = Vec::new();
            let mut bytes = 0;
            for &line in step_lines {
                if chunk.len() == LOG_BATCH_LINES
                    || (!chunk.is_empty() && bytes + line.line.len() > LOG_BATCH_BYTES)
                {
                    chunks.push(std::mem::take(&mut chunk));
                    bytes = 0;
                }
                bytes += line.line.len();
                chunk.push(line);
            }
            chunks.push(chunk);
        }
        let inner = &self.inner;
        let job_id = timeuuid(id);
        // The steps first: a reader over all steps finds a step's partition through them.
        let step_writes: Vec<_> = by_step
            .keys()
            .map(|&step| async move {
                inner
                    .session
                    .execute_unpaged(&inner.st.insert_log_step, (job_id, step, inner.job_ttl))
                    .await
                    .map_err(|e| unavailable("writing a log step", e))
            })
            .collect();
        futures::stream::iter(step_writes)
            .buffer_unordered(LOG_BATCHES_IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        let batches: Vec<_> = chunks
            .into_iter()
            .map(|chunk| async move {
                let values = chunk
                    .iter()
                    .map(|line| {
                        let seq = i64::try_from(line.seq)
                            .map_err(|_| corrupt(format!("log seq {} is too large", line.seq)))?;
                        Ok((
                            job_id,
                            line.step.as_str(),
                            seq,
                            line.time,
                            match line.stream {
                                LogStream::Stdout => "stdout",
                                LogStream::Stderr => "stderr",
                            },
                            line.line.as_str(),
                            inner.job_ttl,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let result = if values.len() == LOG_BATCH_LINES {
                    inner.session.batch(&inner.log_batch, &values).await
                } else {
                    let mut batch = Batch::new(BatchType::Unlogged);
                    for _ in 0..values.len() {
                        batch.append_statement(inner.st.insert_log.clone());
                    }
                    batch.set_consistency(inner.consistency);
                    batch.set_is_idempotent(true);
                    inner.session.batch(&batch, &values).await
                };
                result.map_err(|e| unavailable("writing log lines", e))
            })
            .collect();
        futures::stream::iter(batches)
            .buffer_unordered(LOG_BATCHES_IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    async fn read_logs(&self, id: JobId, query: &LogQuery) -> Result<LogPage> {
        let empty = LogPage {
            items: Vec::new(),
            next: None,
        };
        if !is_timeuuid(id) || query.limit == 0 {
            return Ok(empty);
        }
        let after = match query.after {
            Some(after) => match i64::try_from(after) {
                Ok(after) => after,
                Err(_) => return Ok(empty),
            },
            None => -1,
        };
        let limit = i32::try_from(query.limit).unwrap_or(i32::MAX);
        let steps = match &query.step {
            Some(step) => vec![step.clone()],
            None => self.log_steps(id).await?,
        };
        // Each step's partition is ordered by seq: the first `limit` lines after the cursor of
        // every step, merged, hold the page.
        let reads: Vec<_> = steps
            .iter()
            .map(|step| self.read_step_logs(id, step, after, limit))
            .collect();
        let per_step: Vec<Vec<LogLine>> = futures::stream::iter(reads)
            .buffer_unordered(LOG_BATCHES_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut items: Vec<LogLine> = per_step.into_iter().flatten().collect();
        items.sort_by_key(|line| line.seq);
        items.truncate(query.limit);
        let next = if items.len() == query.limit {
            items.last().map(|line| line.seq)
        } else {
            None
        };
        Ok(LogPage { items, next })
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let session = &self.inner.session;
        let st = &self.inner.st;
        let span = TimeDelta::from_std(ttl).unwrap_or(TimeDelta::days(365 * 20));
        // The row outlives the lease by a second: Cassandra counts TTLs in whole seconds, and
        // a row must never vanish before `expires_at`, which is what decides.
        let row_ttl = i32::try_from(ttl.as_secs().saturating_add(2))
            .unwrap_or(i32::MAX)
            .min(ttl_secs(Duration::MAX));
        for _ in 0..4 {
            let now = omni_store::now();
            let expires_at = (now + span).trunc_subsecs(3);
            let lease = Lease {
                name: name.to_owned(),
                holder: holder.to_owned(),
                expires_at,
            };
            let answer = lwt(
                session,
                &st.insert_lease,
                (name, holder, expires_at, row_ttl),
                "taking a lease",
            )
            .await?;
            let current_holder = answer.text("holder");
            let current_expiry = answer.timestamp("expires_at");
            if answer.applied
                || (answer.retried
                    && current_holder == Some(holder)
                    && current_expiry == Some(expires_at))
            {
                return Ok(Some(lease));
            }
            let lapsed = current_expiry.is_none_or(|e| e <= now);
            if current_holder != Some(holder) && !lapsed {
                return Ok(None);
            }
            // Ours to renew, or lapsed: take it over if nobody did meanwhile.
            let renewed = lwt(
                session,
                &st.renew_lease,
                (
                    row_ttl,
                    holder,
                    expires_at,
                    name,
                    current_holder,
                    current_expiry,
                ),
                "renewing a lease",
            )
            .await?;
            if renewed.applied
                || (renewed.retried
                    && renewed.text("holder") == Some(holder)
                    && renewed.timestamp("expires_at") == Some(expires_at))
            {
                return Ok(Some(lease));
            }
        }
        // It changed hands under us every time: someone else is taking it.
        Ok(None)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool> {
        let answer = lwt(
            &self.inner.session,
            &self.inner.st.release_lease,
            (name, holder),
            "releasing a lease",
        )
        .await?;
        Ok(answer.applied || (answer.retried && answer.text("holder").is_none()))
    }

    async fn put_webhook(&self, webhook: &Webhook) -> Result<()> {
        let old = self.webhook_domain(webhook.id).await?.flatten();
        let st = &self.inner.st;
        let main = (
            webhook.id,
            webhook.domain.as_deref(),
            webhook.url.as_str(),
            &webhook.events,
            webhook.secret.as_str(),
            webhook.created_at,
        );
        let mut batch = Batch::new(BatchType::Logged);
        batch.set_consistency(self.inner.consistency);
        batch.append_statement(st.insert_webhook.clone());
        let stale = old.filter(|o| Some(o) != webhook.domain.as_ref());
        let result = match (&webhook.domain, &stale) {
            (Some(domain), stale) => {
                let by_domain = (
                    domain.as_str(),
                    webhook.id,
                    webhook.url.as_str(),
                    &webhook.events,
                    webhook.secret.as_str(),
                    webhook.created_at,
                );
                batch.append_statement(st.insert_webhook_by_domain.clone());
                match stale {
                    Some(stale) => {
                        batch.append_statement(st.delete_webhook_by_domain.clone());
                        self.inner
                            .session
                            .batch(&batch, (main, by_domain, (stale.as_str(), webhook.id)))
                            .await
                    }
                    None => self.inner.session.batch(&batch, (main, by_domain)).await,
                }
            }
            (None, Some(stale)) => {
                batch.append_statement(st.delete_webhook_by_domain.clone());
                self.inner
                    .session
                    .batch(&batch, (main, (stale.as_str(), webhook.id)))
                    .await
            }
            (None, None) => self.inner.session.batch(&batch, (main,)).await,
        };
        result.map_err(|e| unavailable("writing a webhook", e))?;
        Ok(())
    }

    async fn list_webhooks(&self, domain: Option<&str>) -> Result<Vec<Webhook>> {
        let st = &self.inner.st;
        let pager = match domain {
            Some(domain) => {
                self.inner
                    .session
                    .execute_iter(st.list_webhooks_by_domain.clone(), (domain,))
                    .await
            }
            // All of them: a scan, fine for what is configuration (hundreds, not millions).
            None => {
                self.inner
                    .session
                    .execute_iter(st.list_webhooks.clone(), ())
                    .await
            }
        }
        .map_err(|e| unavailable("listing webhooks", e))?;
        let mut hooks: Vec<Webhook> = pager
            .rows_stream::<WebhookRow>()
            .map_err(|e| corrupt(format!("webhooks: {e}")))?
            .map_err(|e| unavailable("listing webhooks", e))
            .and_then(|(id, domain, url, events, secret, created_at)| async move {
                Ok(Webhook {
                    id,
                    domain,
                    url: url.unwrap_or_default(),
                    events: events.unwrap_or_default(),
                    secret: secret.unwrap_or_default(),
                    created_at: created_at
                        .ok_or_else(|| corrupt(format!("webhook {id}: no created_at")))?,
                })
            })
            .try_collect()
            .await?;
        hooks.sort_by_key(|hook| (hook.created_at, hook.id));
        Ok(hooks)
    }

    async fn delete_webhook(&self, id: Uuid) -> Result<bool> {
        self.inner
            .session
            .execute_unpaged(&self.inner.st.delete_delivery, (id,))
            .await
            .map_err(|e| unavailable("deleting a webhook's delivery state", e))?;
        let Some(domain) = self.webhook_domain(id).await? else {
            return Ok(false);
        };
        let st = &self.inner.st;
        let mut batch = Batch::new(BatchType::Logged);
        batch.set_consistency(self.inner.consistency);
        batch.append_statement(st.delete_webhook.clone());
        let result = match &domain {
            Some(domain) => {
                batch.append_statement(st.delete_webhook_by_domain.clone());
                self.inner
                    .session
                    .batch(&batch, ((id,), (domain.as_str(), id)))
                    .await
            }
            None => self.inner.session.batch(&batch, ((id,),)).await,
        };
        result.map_err(|e| unavailable("deleting a webhook", e))?;
        Ok(true)
    }

    async fn read_events(
        &self,
        after: Option<&str>,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<EventPage> {
        let now = Utc::now();
        let start = match after {
            Some(after) => parse_event_id(after)?,
            None => position_at(now - TimeDelta::seconds(i64::from(self.inner.event_ttl))),
        };
        // Events younger than the settle time may still be written by another replica: stay
        // behind them, so none is passed before it is there.
        let visible_until = (now - self.inner.event_settle).trunc_subsecs(3);
        let upper = position_at(visible_until);
        let mut cursor = start;
        let mut items = Vec::new();
        let Some(start_time) = id_time(start) else {
            return Err(StoreError::BadEventId(start.to_string()));
        };
        if start_time >= visible_until || limit == 0 {
            return Ok(EventPage {
                items,
                next: start.to_string(),
            });
        }
        let scan_limit = i32::try_from(EVENT_PAGE_ROWS).unwrap_or(i32::MAX);
        let mut scanned = 0;
        let mut hour = hour_of(start_time);
        let last_hour = hour_of(visible_until);
        while hour <= last_hour {
            loop {
                let rows = self
                    .inner
                    .session
                    .execute_unpaged(
                        &self.inner.st.read_events,
                        (hour, timeuuid(cursor), timeuuid(upper), scan_limit),
                    )
                    .await
                    .map_err(|e| unavailable("reading events", e))?
                    .into_rows_result()
                    .map_err(|e| unavailable("reading events", e))?;
                let mut count = 0;
                for row in rows
                    .rows::<(CqlTimeuuid, Option<String>)>()
                    .map_err(|e| corrupt(format!("events_by_hour: {e}")))?
                {
                    let (id, event) = row.map_err(|e| corrupt(format!("events_by_hour: {e}")))?;
                    count += 1;
                    scanned += 1;
                    cursor = id.into();
                    let Some(event) = event else { continue };
                    let event: Event = serde_json::from_str(&event)
                        .map_err(|e| corrupt(format!("event {cursor}: {e}")))?;
                    if filter.matches(&event) {
                        items.push(event);
                        if items.len() == limit {
                            return Ok(EventPage {
                                items,
                                next: cursor.to_string(),
                            });
                        }
                    }
                }
                if scanned >= EVENT_SCAN_ROWS {
                    return Ok(EventPage {
                        items,
                        next: cursor.to_string(),
                    });
                }
                if count < EVENT_PAGE_ROWS {
                    break;
                }
            }
            hour += TimeDelta::hours(1);
        }
        // Everything before `upper` has been looked at.
        Ok(EventPage {
            items,
            next: upper.to_string(),
        })
    }

    async fn events_head(&self) -> Result<String> {
        Ok(position_at(Utc::now() - self.inner.event_settle).to_string())
    }

    async fn get_delivery(&self, webhook_id: Uuid) -> Result<Option<Delivery>> {
        let rows = self
            .inner
            .session
            .execute_unpaged(&self.inner.st.get_delivery, (webhook_id,))
            .await
            .map_err(|e| unavailable("reading a webhook's delivery state", e))?
            .into_rows_result()
            .map_err(|e| unavailable("reading a webhook's delivery state", e))?;
        let row: Option<(Option<String>,)> = rows
            .maybe_first_row()
            .map_err(|e| corrupt(format!("delivery of webhook {webhook_id}: {e}")))?;
        match row {
            Some((Some(text),)) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| corrupt(format!("delivery of webhook {webhook_id}: {e}"))),
            _ => Ok(None),
        }
    }

    async fn put_delivery(&self, delivery: &Delivery) -> Result<()> {
        self.inner
            .session
            .execute_unpaged(
                &self.inner.st.put_delivery,
                (delivery.webhook_id, to_json(delivery)?),
            )
            .await
            .map_err(|e| unavailable("writing a webhook's delivery state", e))?;
        Ok(())
    }
}

/// Rows per read of an hour of events.
const EVENT_PAGE_ROWS: usize = 1000;
/// The most events one `read_events` looks at (matching or not).
const EVENT_SCAN_ROWS: usize = 16 * 1000;
/// Attempts at writing one event before it is given up (and logged).
const EVENT_WRITE_ATTEMPTS: usize = 5;

impl CassandraStore {
    /// A new event of `change`: its id, made now (write it at once: see
    /// [`CassandraStore::record_event`]), and the values of `insert_event`.
    fn new_event(&self, job: &Job, change: &StateChange) -> Result<(Uuid, EventRow)> {
        let id = omni_store::new_job_id();
        let text = to_json(&Event::new(id.to_string(), job, change))?;
        let hour = hour_of(id_time(id).unwrap_or_else(Utc::now));
        Ok((id, (hour, timeuuid(id), text, self.inner.event_ttl)))
    }

    /// Records a change in the event stream, right after the change itself was stored (the
    /// change is a compare-and-set on the job's partition; the event lives in another
    /// partition, so it cannot be part of it). The event's id is made just before it is
    /// written; when the write took longer than half the settle time, readers may already have
    /// passed that id, so the event is written again under a new one (a reader may then get it
    /// twice, never not at all). When the store cannot be written, the event is logged and lost:
    /// the change itself is made and stays made.
    async fn record_event(&self, job: &Job, change: &StateChange) {
        self.record_event_after(job, change, 1).await;
    }

    /// [`CassandraStore::record_event`], its first `attempt`s already made.
    async fn record_event_after(&self, job: &Job, change: &StateChange, attempt: usize) {
        let half_settle = self.inner.event_settle / 2;
        for attempt in attempt..=EVENT_WRITE_ATTEMPTS {
            let started = Utc::now();
            let (id, row) = match self.new_event(job, change) {
                Ok(event) => event,
                Err(error) => {
                    tracing::error!(job = %job.id, %error, "cannot encode an event");
                    return;
                }
            };
            let written = self
                .inner
                .session
                .execute_unpaged(&self.inner.st.insert_event, row)
                .await;
            match written {
                Ok(_) if Utc::now() - started <= half_settle => return,
                Ok(_) => {
                    tracing::warn!(job = %job.id, event = %id, attempt, "an event took longer than half the settle time to write; writing it again under a new id");
                }
                Err(error) => {
                    tracing::warn!(job = %job.id, %error, attempt, "cannot write an event");
                }
            }
        }
        tracing::error!(job = %job.id, to = %change.to, "an event could not be recorded; readers will not see it");
    }
}

/// The values of `insert_event`: hour bucket, id, the event as JSON, TTL.
type EventRow = (DateTime<Utc>, CqlTimeuuid, String, i32);

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

/// An event id of this store: a time-based uuid.
fn parse_event_id(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id)
        .ok()
        .filter(|id| is_timeuuid(*id) && id_time(*id).is_some())
        .filter(|_| id.len() == 36)
        .ok_or_else(|| StoreError::BadEventId(id.to_owned()))
}

/// The position just before every id of `time` (Cassandra's `minTimeuuid`): its clock is `time`
/// and the rest of its bytes are the smallest Cassandra orders (0x80, signed -128), so `id >
/// position` holds for every id made at or after `time`, `id < position` for every one before.
fn position_at(time: DateTime<Utc>) -> Uuid {
    let ticks = u64::try_from(
        time.timestamp_micros()
            .saturating_mul(10)
            .saturating_add(0x01B2_1DD2_1381_4000),
    )
    .unwrap_or(0);
    let timestamp = uuid::Timestamp::from_gregorian_time(ticks, 0x0080);
    Uuid::new_v1(timestamp, &[0x80; 6])
}

/// The start of the hour `time` is in: the partition of the events made in it.
fn hour_of(time: DateTime<Utc>) -> DateTime<Utc> {
    let secs = time.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(3600), 0).unwrap_or(time)
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

/// Whether `id` can be a `timeuuid` (Cassandra rejects any other version).
fn is_timeuuid(id: Uuid) -> bool {
    id.get_version_num() == 1
}

/// A TTL in whole seconds, within Cassandra's limit (20 years).
fn ttl_secs(ttl: Duration) -> i32 {
    i32::try_from(ttl.as_secs().clamp(1, 630_720_000)).unwrap_or(630_720_000)
}

fn to_json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| corrupt(format!("cannot encode a record: {e}")))
}
