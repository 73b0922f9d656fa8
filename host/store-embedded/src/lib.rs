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
//! Retention: a sweeper removes finished jobs (with their history and logs) once `job_ttl` has
//! passed since they ended, events after `event_ttl`, and idempotency keys after
//! `idempotency_ttl`.
//!
//! This crate knows the [`Store`] trait and redb, nothing of HTTP, plugins or engines.
//!
//! # Layout
//! - [`EmbeddedConfig`]: the TTLs and the page cache's size.
//! - `tables`: the tables, their keys and what each serves.
//! - `writer`: the group-commit writer thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use omni_store::{
    Created, Delivery, Event, EventFilter, EventPage, IdempotencyKey, Job, JobId, JobPage,
    JobQuery, JobState, Lease, LogLine, LogPage, LogQuery, Result, StateChange, Step, Store,
    StoreError, Transition, Webhook,
};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::Deserialize;
use uuid::Uuid;

mod tables;
mod writer;

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
            let Some(stored) = get_job(&jobs, id)? else {
                return Err(OpError::Store(StoreError::NotFound(id)));
            };
            let Some(mut job) = change(&stored).map_err(OpError::Store)? else {
                return Ok(stored);
            };
            job.updated_at = omni_store::now();
            jobs.insert(id.as_u128(), encode(&job)?.as_slice())?;
            Ok(job)
        })
        .await
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

/// Deletes a job with everything that hangs off it, inside `txn`. Returns whether it existed.
fn purge(txn: &redb::WriteTransaction, id: u128) -> Result<bool, OpError> {
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
    Ok(true)
}

/// Records `change` of `job` in the event stream, inside the change's own transaction.
fn record_event(
    txn: &redb::WriteTransaction,
    job: &Job,
    change: &StateChange,
) -> Result<(), OpError> {
    let mut meta = txn.open_table(META)?;
    let last = meta.get(EVENT_SEQ)?.map_or(0, |v| v.value());
    let number = last + 1;
    meta.insert(EVENT_SEQ, number)?;
    let event = Event::new(number.to_string(), job, change);
    txn.open_table(EVENTS)?
        .insert(number, encode(&event)?.as_slice())?;
    Ok(())
}

/// An event id of this store: the event's number in decimal.
fn parse_event_id(id: &str) -> Result<u64, OpError> {
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(OpError::Store(StoreError::BadEventId(id.to_owned())));
    }
    id.parse()
        .map_err(|_| OpError::Store(StoreError::BadEventId(id.to_owned())))
}

/// The most events one read looks at (matching or not), so a rare filter cannot make a read
/// walk the whole stream at once.
const EVENT_SCAN: usize = 16 * 1024;

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
            txn.open_table(JOBS)?.insert(id, encode(&job)?.as_slice())?;
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
            let Some(mut job) = get_job(&jobs, id)? else {
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
            jobs.insert(key, encode(&job)?.as_slice())?;
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

    async fn assign_engine(&self, id: JobId, engine: &str) -> Result<Job> {
        let engine = engine.to_owned();
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

    async fn append_logs(&self, id: JobId, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let encoded: Vec<(u64, Vec<u8>)> = lines
            .iter()
            .map(|line| Ok((line.seq, encode(line)?)))
            .collect::<Result<_, OpError>>()
            .map_err(OpError::into_store)?;
        self.write(move |txn| {
            let key = id.as_u128();
            let mut logs = txn.open_table(LOGS)?;
            for (seq, line) in &encoded {
                logs.insert((key, *seq), line.as_slice())?;
            }
            Ok(())
        })
        .await
    }

    async fn read_logs(&self, id: JobId, query: &LogQuery) -> Result<LogPage> {
        let query = query.clone();
        self.read(move |txn| {
            let key = id.as_u128();
            let first = query.after.map_or(0, |after| after.saturating_add(1));
            let mut items = Vec::new();
            if query.after == Some(u64::MAX) || query.limit == 0 {
                return Ok(LogPage { items, next: None });
            }
            for entry in txn
                .open_table(LOGS)?
                .range((key, first)..=(key, u64::MAX))?
            {
                let line: LogLine = decode(entry?.1.value())?;
                if query.step.as_ref().is_none_or(|step| *step == line.step) {
                    items.push(line);
                    if items.len() == query.limit {
                        break;
                    }
                }
            }
            let next = (items.len() == query.limit)
                .then(|| items.last().map(|l| l.seq))
                .flatten();
            Ok(LogPage { items, next })
        })
        .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let name = name.to_owned();
        let holder = holder.to_owned();
        self.write(move |txn| {
            let mut leases = txn.open_table(LEASES)?;
            let now = Utc::now();
            let current: Option<StoredLease> = leases
                .get(name.as_str())?
                .map(|v| decode(v.value()))
                .transpose()?;
            if let Some(current) = current
                && current.holder != holder
                && current.expires_at > now
            {
                return Ok(None);
            }
            let lease = StoredLease {
                holder: holder.clone(),
                expires_at: now + delta(ttl),
            };
            leases.insert(name.as_str(), encode(&lease)?.as_slice())?;
            Ok(Some(Lease {
                name,
                holder,
                expires_at: lease.expires_at,
            }))
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool> {
        let name = name.to_owned();
        let holder = holder.to_owned();
        self.write(move |txn| {
            let mut leases = txn.open_table(LEASES)?;
            let current: Option<StoredLease> = leases
                .get(name.as_str())?
                .map(|v| decode(v.value()))
                .transpose()?;
            if current.is_some_and(|c| c.holder == holder) {
                leases.remove(name.as_str())?;
                Ok(true)
            } else {
                Ok(false)
            }
        })
        .await
    }

    async fn put_webhook(&self, webhook: &Webhook) -> Result<()> {
        let webhook = webhook.clone();
        self.write(move |txn| {
            txn.open_table(WEBHOOKS)?
                .insert(webhook.id.as_u128(), encode(&webhook)?.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn list_webhooks(&self, domain: Option<&str>) -> Result<Vec<Webhook>> {
        let domain = domain.map(str::to_owned);
        self.read(move |txn| {
            let mut hooks: Vec<Webhook> = txn
                .open_table(WEBHOOKS)?
                .iter()?
                .map(|entry| decode(entry?.1.value()))
                .collect::<Result<_, OpError>>()?;
            hooks.retain(|hook| domain.is_none() || hook.domain == domain);
            hooks.sort_by_key(|hook| hook.created_at);
            Ok(hooks)
        })
        .await
    }

    async fn delete_webhook(&self, id: Uuid) -> Result<bool> {
        self.write(move |txn| {
            txn.open_table(DELIVERIES)?.remove(id.as_u128())?;
            Ok(txn.open_table(WEBHOOKS)?.remove(id.as_u128())?.is_some())
        })
        .await
    }

    async fn read_events(
        &self,
        after: Option<&str>,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<EventPage> {
        let after = after
            .map(parse_event_id)
            .transpose()
            .map_err(OpError::into_store)?
            .unwrap_or(0);
        let filter = filter.clone();
        self.read(move |txn| {
            let mut items = Vec::new();
            let mut next = after;
            if after == u64::MAX || limit == 0 {
                return Ok(EventPage {
                    items,
                    next: next.to_string(),
                });
            }
            for entry in txn.open_table(EVENTS)?.range(after + 1..)?.take(EVENT_SCAN) {
                let (key, value) = entry?;
                next = key.value();
                let event: Event = decode(value.value())?;
                if filter.matches(&event) {
                    items.push(event);
                    if items.len() == limit {
                        break;
                    }
                }
            }
            Ok(EventPage {
                items,
                next: next.to_string(),
            })
        })
        .await
    }

    async fn events_head(&self) -> Result<String> {
        self.read(|txn| {
            let last = txn
                .open_table(META)?
                .get(EVENT_SEQ)?
                .map_or(0, |v| v.value());
            Ok(last.to_string())
        })
        .await
    }

    async fn get_delivery(&self, webhook_id: Uuid) -> Result<Option<Delivery>> {
        self.read(move |txn| {
            txn.open_table(DELIVERIES)?
                .get(webhook_id.as_u128())?
                .map(|v| decode(v.value()))
                .transpose()
        })
        .await
    }

    async fn put_delivery(&self, delivery: &Delivery) -> Result<()> {
        let delivery = delivery.clone();
        self.write(move |txn| {
            txn.open_table(DELIVERIES)?
                .insert(delivery.webhook_id.as_u128(), encode(&delivery)?.as_slice())?;
            Ok(())
        })
        .await
    }
}
