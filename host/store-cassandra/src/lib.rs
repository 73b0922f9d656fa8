//! # omni-store-cassandra: the store for a cluster
//!
//! [`CassandraStore`] keeps Omni's jobs, their state history, log lines, artifact records, leases, webhooks and
//! idempotency keys in Apache Cassandra (4.1 or later) or ScyllaDB through the `scylla` driver, for
//! as many API replicas as the cluster can serve. It owns one keyspace: it creates it when it is
//! missing (with the replication from [`CassandraConfig`]), applies the versioned CQL migrations
//! in `migrations/` at start and records them in `schema_migrations` ([`migrate`]), and prepares
//! every statement of the request path once.
//!
//! The tables, their keys and the query each one serves are explained in
//! [`migrations/README.md`](https://github.com/omni-build/omni/blob/main/host/store-cassandra/migrations/README.md)
//! (also below). In short: one row per job (`jobs_by_id`, with its history), job listings in day
//! buckets (`jobs_by_day`), one log partition per job and step (`job_logs`, `job_log_steps`),
//! one partition of artifact records per job (`job_artifacts`),
//! `idempotency_keys`, `leases`, `webhooks` and `webhooks_by_domain`, the job-change event stream
//! in hour buckets (`events_by_hour`) and the webhooks' delivery state (`webhook_deliveries`).
//! Every partition is bounded.
//!
//! Consistency: plain reads and writes at the configured level (`LOCAL_QUORUM` by default);
//! lightweight transactions (Paxos, `SERIAL`) only where correctness needs a compare-and-set:
//! an idempotency key is claimed once, a lease has one holder, every change of a job row is
//! a compare-and-set on its `version` (so a cancel racing a completion has exactly one winner,
//! and steps never change after the end), a domain's webhooks are counted against their cap by
//! conditional batches, and a webhook's secret is resealed only while it is the one read. A new job is a plain write (its id is unique), at a
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
//! This crate knows the [`Store`] traits and CQL, nothing of HTTP, plugins or engines.
//!
//! # Layout
//! - here: [`CassandraStore`], connecting (session, keyspace, migrations, prepared statements
//!   and batches), helpers every capability uses, and [`Store`] itself (`kind`, `ping`).
//! - `jobs`, `logs`, `events`, `artifacts`, `leases`, `webhooks`: one capability each, named as its trait's
//!   module in `omni-store` (`jobs` implements `JobStore`, and so on), with the tables, rows
//!   and helpers only it uses.
//! - [`CassandraConfig`] (`config`): contact points, keyspace, replication, TTLs, timeouts.
//! - [`migrate`]: the migration files and how they are applied.
//! - `cql`: the prepared statements, errors, answers of lightweight transactions.
//!
//! # Schema
#![doc = include_str!("../migrations/README.md")]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Statement;
use scylla::statement::batch::{Batch, BatchType};
use uuid::Uuid;

use omni_store::{Result, Store, StoreError};

mod artifacts;
mod config;
mod cql;
mod events;
mod jobs;
mod leases;
mod logs;
pub mod migrate;
mod uploads;
mod webhooks;

pub use config::{CassandraConfig, Consistency, Replication, SerialConsistency};
use cql::{Statements, corrupt, unavailable};
use jobs::LIST_PAGE_ROWS;
use logs::LOG_BATCH_LINES;
use migrate::{MIGRATIONS, Migration};

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
        config.validate().map_err(invalid_config)?;
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

fn invalid_config(e: config::ConfigError) -> StoreError {
    StoreError::Unavailable {
        message: format!("invalid cassandra configuration: {e}"),
        source: Some(Box::new(e)),
    }
}

async fn create_keyspace(session: &Session, config: &CassandraConfig) -> Result<()> {
    let replication = config.replication.to_cql().map_err(invalid_config)?;
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
