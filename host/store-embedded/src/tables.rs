//! The tables of the store file, their keys, and what each serves. Values are JSON (the
//! model's serde form), read leniently, so the file reads back across versions that add
//! fields. The values that are written back, jobs and delivery states, are
//! [records](omni_store::record) with a format: one written by a newer server keeps the fields
//! this one does not know when this one changes it. The others are written once (history,
//! log lines, events) or belong to one holder at a time (leases).
//!
//! | table | key | value | serves |
//! | --- | --- | --- | --- |
//! | `jobs` | job id | the job | get, transitions |
//! | `jobs_by_time` | (id's 100 ns ticks, id) | `service\0task\0domain\0state` | listings, newest first; filters without reading jobs |
//! | `history` | (job id, seq) | a state change | a job's history |
//! | `logs` | (job id, seq) | a log line | log pages by cursor |
//! | `artifacts` | (job id, name) | an artifact's record | a job's artifacts by name, in pages |
//! | `expiry` | (finished at, ms; job id) | () | the retention sweep |
//! | `idempotency` | key | fingerprint, job id, time | repeated submissions |
//! | `leases` | name | holder, expiry | once-per-cluster work |
//! | `webhooks` | id | the webhook | webhooks |
//! | `events` | event number | the event | the event stream, by number (the id, in decimal) |
//! | `deliveries` | webhook id | its delivery state | webhook delivery |
//! | `meta` | name | a number | `event_seq`: the last event number given out |
//!
//! Events are numbered by a counter in `meta`, taken in the write transaction of the change
//! itself (`create_job`, `transition`): the change and its event commit together or not at all,
//! numbers increase in commit order (there is one writer), and a reader that has seen number
//! `n` has seen everything below it. The counter outlives the events it numbered (the sweep
//! removes old events, never the counter), so a number is never given out twice.

use chrono::{DateTime, Utc};
use omni_store::{Job, JobId, JobQuery, StoreError};
use redb::{Database, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub(crate) const JOBS: TableDefinition<u128, &[u8]> = TableDefinition::new("jobs");
pub(crate) const JOBS_BY_TIME: TableDefinition<(u64, u128), &str> =
    TableDefinition::new("jobs_by_time");
pub(crate) const HISTORY: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("history");
pub(crate) const LOGS: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("logs");
pub(crate) const ARTIFACTS: TableDefinition<(u128, &str), &[u8]> =
    TableDefinition::new("artifacts");
pub(crate) const UPLOADS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("uploads");
pub(crate) const EXPIRY: TableDefinition<(i64, u128), ()> = TableDefinition::new("expiry");
pub(crate) const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
pub(crate) const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
pub(crate) const WEBHOOKS: TableDefinition<u128, &[u8]> = TableDefinition::new("webhooks");
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
pub(crate) const DELIVERIES: TableDefinition<u128, &[u8]> = TableDefinition::new("deliveries");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The `meta` entry holding the last event number given out.
pub(crate) const EVENT_SEQ: &str = "event_seq";

/// Creates every table, so that readers never meet a missing one.
pub(crate) fn create_all(db: &Database) -> Result<(), StoreError> {
    let run = || -> Result<(), OpError> {
        let txn = db.begin_write()?;
        txn.open_table(JOBS)?;
        txn.open_table(JOBS_BY_TIME)?;
        txn.open_table(HISTORY)?;
        txn.open_table(LOGS)?;
        txn.open_table(ARTIFACTS)?;
        txn.open_table(UPLOADS)?;
        txn.open_table(EXPIRY)?;
        txn.open_table(IDEMPOTENCY)?;
        txn.open_table(LEASES)?;
        txn.open_table(WEBHOOKS)?;
        txn.open_table(EVENTS)?;
        txn.open_table(DELIVERIES)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(())
    };
    run().map_err(OpError::into_store)
}

/// An operation's failure: a store answer (conflict, not found, ...) or redb's.
#[derive(Debug)]
pub(crate) enum OpError {
    Store(StoreError),
    Db(redb::Error),
}

impl OpError {
    pub(crate) fn corrupt(message: String) -> Self {
        OpError::Store(StoreError::Corrupt(message))
    }

    pub(crate) fn into_store(self) -> StoreError {
        match self {
            OpError::Store(error) => error,
            // A full disk, an I/O error, a damaged file: the caller may retry later.
            OpError::Db(error) => StoreError::unavailable(error),
        }
    }
}

impl<E: Into<redb::Error>> From<E> for OpError {
    fn from(error: E) -> Self {
        OpError::Db(error.into())
    }
}

pub(crate) fn encode(value: &impl Serialize) -> Result<Vec<u8>, OpError> {
    serde_json::to_vec(value).map_err(|e| OpError::corrupt(format!("cannot encode: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, OpError> {
    serde_json::from_slice(bytes).map_err(|e| OpError::corrupt(e.to_string()))
}

/// `value` as a [record](omni_store::record) written over `previous` (the stored bytes it
/// replaces, when they are of a newer format), keeping what a newer server wrote; `opaque`
/// names the fields replaced whole.
pub(crate) fn encode_record(
    value: &impl Serialize,
    previous: Option<&[u8]>,
    opaque: &[&str],
) -> Result<Vec<u8>, OpError> {
    let previous = previous
        .map(std::str::from_utf8)
        .transpose()
        .map_err(|e| OpError::corrupt(format!("a stored record is not UTF-8: {e}")))?;
    omni_store::record::encode(value, previous, opaque)
        .map(String::into_bytes)
        .map_err(|e| OpError::corrupt(format!("cannot encode: {e}")))
}

/// The stored bytes to write a record over: `Some` only when they are of a newer format (a
/// record of this format or older is replaced, and need not be copied).
pub(crate) fn newer_record(bytes: &[u8]) -> Option<Vec<u8>> {
    std::str::from_utf8(bytes)
        .is_ok_and(omni_store::record::is_newer)
        .then(|| bytes.to_vec())
}

/// `job` as a record written over `previous` (see [`encode_record`]).
pub(crate) fn encode_job(job: &Job, previous: Option<&[u8]>) -> Result<Vec<u8>, OpError> {
    encode_record(job, previous, Job::OPAQUE)
}

pub(crate) fn decode_job(bytes: &[u8]) -> Result<Job, OpError> {
    decode(bytes)
}

/// 100 ns ticks since 1582 (a v1 id's clock) of a time.
pub(crate) fn ticks(time: DateTime<Utc>) -> u64 {
    const UNIX_TO_GREGORIAN: i64 = 0x01B2_1DD2_1381_4000;
    let nanos = time.timestamp_nanos_opt().unwrap_or(i64::MAX);
    u64::try_from(nanos / 100 + UNIX_TO_GREGORIAN).unwrap_or(0)
}

/// A job's key in `jobs_by_time`: its id's clock, then the id.
pub(crate) fn id_key(id: JobId) -> (u64, u128) {
    let tick = id
        .get_timestamp()
        .map_or(0, |timestamp| timestamp.to_gregorian().0);
    (tick, id.as_u128())
}

pub(crate) fn time_key(job: &Job) -> (u64, u128) {
    id_key(job.id)
}

/// What `jobs_by_time` keeps of a job to filter listings without reading it.
pub(crate) fn summary(job: &Job) -> String {
    format!(
        "{}\0{}\0{}\0{}",
        job.service,
        job.task,
        job.domain,
        job.state.as_str()
    )
}

pub(crate) fn summary_matches(summary: &str, query: &JobQuery) -> bool {
    let mut fields = summary.split('\0');
    let (Some(service), Some(task), Some(domain), Some(state)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        // Not one this version wrote: the job itself decides.
        return true;
    };
    query.service.as_deref().is_none_or(|s| s == service)
        && query.task.as_deref().is_none_or(|t| t == task)
        && query.allows_domain(domain)
        && query.state.is_none_or(|s| s.as_str() == state)
}

/// What `idempotency` keeps per key.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct IdempotencyRecord {
    pub fingerprint: String,
    pub job_id: u128,
    pub created_ms: i64,
}

impl IdempotencyRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // A struct of a string and two integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, OpError> {
        decode(bytes)
    }
}

/// What `leases` keeps per name.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredLease {
    pub holder: String,
    pub expires_at: DateTime<Utc>,
}
