//! # omni-store-embedded: the store for one machine
//!
//! [`EmbeddedStore`] keeps everything in one [redb] file (`omni.redb`) in the data directory:
//! copy-on-write B-trees with checksummed commits, so a crash at any moment leaves the last
//! committed state and nothing half-written. It is Omni's default: no server to run.
//!
//! Writes go through one writer thread that gathers whatever requests are waiting into one
//! transaction and commits them with one fsync (group commit): every caller is answered only
//! after its write is on disk, yet a burst of submissions costs a handful of fsyncs, not one
//! each. Reads run on tokio's blocking pool against a snapshot, never waiting for the writer.
//!
//! Every job change is also an event of the event stream, numbered by a counter and written in
//! the same transaction as the change (see `tables`).
//!
//! Retention: a sweeper removes finished jobs (with their history, logs and artifact records) once `job_ttl` has
//! passed since they ended, events after `event_ttl`, and idempotency keys after
//! `idempotency_ttl`.
//!
//! This crate knows the [`Store`] traits and redb, nothing of HTTP, plugins or engines.
//!
//! # Layout
//! - here: [`EmbeddedStore`], opening the file, reads and writes through the writer, the
//!   retention sweep, and [`Store`] itself (`kind`, `ping`).
//! - `jobs`, `logs`, `events`, `artifacts`, `uploads`, `leases`, `webhooks`: one capability
//!   each, named as its trait's module in `omni-store` (`jobs` implements `JobStore`, and so on).
//! - [`EmbeddedConfig`]: the TTLs and the page cache's size.
//! - `tables`: the tables, their keys and what each serves.
//! - `writer`: the group-commit writer thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use omni_store::{Event, Result, Store, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::Deserialize;

mod artifacts;
mod events;
#[cfg(test)]
mod future_rows;
mod jobs;
mod leases;
mod logs;
mod tables;
mod uploads;
mod webhooks;
mod writer;

use jobs::purge;
use tables::*;
use writer::Writer;

/// Where the embedded store keeps its file, and for how long.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// How long a finished job, its history and its logs are kept after it ended.
    #[serde(with = "humantime_serde")]
    pub job_ttl: Duration,
    /// How long an idempotency key is remembered.
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
    /// How long an event of the event stream is kept (a webhook receiver down for longer misses
    /// the events that expired meanwhile).
    #[serde(with = "humantime_serde")]
    pub event_ttl: Duration,
    /// How often expired records are swept.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// The most memory, in bytes, the store's page cache may take (redb's own default is 1 GiB,
    /// which a busy server fills and keeps; pages it evicts are read again from the file, most
    /// often from the kernel's page cache).
    pub cache_bytes: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            job_ttl: Duration::from_secs(30 * 24 * 3600),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            event_ttl: Duration::from_secs(7 * 24 * 3600),
            sweep_interval: Duration::from_secs(600),
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The embedded store. Cloning shares it.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Arc<Database>,
    writer: Writer,
    config: EmbeddedConfig,
    path: PathBuf,
}

/// The file in the data directory.
pub const FILE_NAME: &str = "omni.redb";

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, creating the directory if needed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the directory cannot be made or the file cannot be
    /// opened (another process holds it, or it is not a redb file).
    pub fn open(dir: &Path, config: EmbeddedConfig) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::builder()
            .set_cache_size(config.cache_bytes)
            .create(&path)
            .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        let db = Arc::new(db);
        tables::create_all(&db)?;
        let writer = Writer::start(db.clone())?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                writer,
                config,
                path,
            }),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Removes what has expired at `now`: finished jobs older than `job_ttl` (with history and
    /// logs), events older than `event_ttl` and idempotency keys older than `idempotency_ttl`.
    /// Returns how many jobs went.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the write fails.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<usize> {
        let job_cutoff = millis(now - delta(self.inner.config.job_ttl));
        let key_cutoff = millis(now - delta(self.inner.config.idempotency_ttl));
        let event_cutoff = now - delta(self.inner.config.event_ttl);
        loop {
            // Events are numbered in time order: the expired ones are a prefix of the table.
            let chunk = self
                .write(move |txn| {
                    let mut events = txn.open_table(EVENTS)?;
                    let mut due = Vec::new();
                    for entry in events.iter()?.take(1024) {
                        let (key, value) = entry?;
                        let event: Event = decode(value.value())?;
                        if event.time >= event_cutoff {
                            break;
                        }
                        due.push(key.value());
                    }
                    for key in &due {
                        events.remove(key)?;
                    }
                    Ok(due.len())
                })
                .await?;
            if chunk < 1024 {
                break;
            }
        }
        let mut removed = 0;
        loop {
            // In chunks, so one sweep does not hold the writer for long.
            let chunk = self
                .write(move |txn| {
                    let mut expiry = txn.open_table(EXPIRY)?;
                    let due: Vec<(i64, u128)> = expiry
                        .range(..(job_cutoff, 0))?
                        .take(256)
                        .map(|entry| entry.map(|(k, _)| k.value()))
                        .collect::<Result<_, _>>()?;
                    for key in &due {
                        expiry.remove(key)?;
                    }
                    drop(expiry);
                    for (_, id) in &due {
                        purge(txn, *id)?;
                    }
                    let mut keys = txn.open_table(IDEMPOTENCY)?;
                    keys.retain(|_, value| {
                        IdempotencyRecord::decode(value).is_ok_and(|r| r.created_ms >= key_cutoff)
                    })?;
                    Ok(due.len())
                })
                .await?;
            removed += chunk;
            if chunk < 256 {
                return Ok(removed);
            }
        }
    }

    /// Runs [`EmbeddedStore::sweep`] every `sweep_interval` until the store is dropped.
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let interval = self.inner.config.sweep_interval;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let store = EmbeddedStore { inner };
                match store.sweep(Utc::now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(jobs = n, "removed expired jobs"),
                    Err(error) => tracing::warn!(%error, "sweeping expired jobs failed"),
                }
            }
        })
    }

    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&redb::WriteTransaction) -> Result<T, OpError> + Send + 'static,
    ) -> Result<T> {
        self.inner.writer.run(op).await
    }
    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&redb::ReadTransaction) -> Result<T, OpError> + Send + 'static,
    ) -> Result<T> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(OpError::from)?;
            op(&txn)
        })
        .await
        .map_err(|e| unavailable(format!("a read task failed: {e}")))?
        .map_err(OpError::into_store)
    }
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn unavailable(message: String) -> StoreError {
    StoreError::Unavailable {
        message,
        source: None,
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> Result<()> {
        self.read(|txn| {
            txn.open_table(JOBS)?.len()?;
            Ok(())
        })
        .await
    }
}
