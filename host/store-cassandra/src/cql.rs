//! The prepared statements of the request path, and the small helpers around the driver:
//! errors mapped to [`StoreError`], answers of lightweight transactions.

use std::collections::HashMap;

use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError, WriteType};
use scylla::response::query_result::QueryResult;
use scylla::serialize::batch::BatchValues;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::Batch;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlTimeuuid, CqlValue, Row};

use omni_store::StoreError;

/// How often a lightweight transaction whose outcome the cluster could not tell (a Paxos write
/// timeout) is sent again. Every LWT here can tell its own earlier success from someone else's.
const LWT_ATTEMPTS: usize = 3;

/// An [`StoreError::Unavailable`] for a failed driver call.
pub(crate) fn unavailable(
    what: &str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    if let Some(db) = db_error(&error) {
        // Errors that no retry fixes are bugs or a misconfigured cluster: log them loudly.
        if matches!(
            db,
            DbError::SyntaxError
                | DbError::Invalid
                | DbError::Unauthorized
                | DbError::ConfigError
                | DbError::AuthenticationError
        ) {
            tracing::error!(%error, "cassandra rejected {what}");
        }
    }
    StoreError::Unavailable {
        message: format!("cassandra: {what}: {error}"),
        source: Some(Box::new(error)),
    }
}

fn db_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a DbError> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(db) = e.downcast_ref::<DbError>() {
            return Some(db);
        }
        if let Some(RequestAttemptError::DbError(db, _)) = e.downcast_ref::<RequestAttemptError>() {
            return Some(db);
        }
        if let Some(ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _))) =
            e.downcast_ref::<ExecutionError>()
        {
            return Some(db);
        }
        current = e.source();
    }
    None
}

/// A [`StoreError::Corrupt`] for a row that does not decode.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Whether the cluster could not tell if a lightweight transaction was applied.
fn outcome_unknown(error: &ExecutionError) -> bool {
    matches!(
        error,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                write_type: WriteType::Cas,
                ..
            },
            _
        ))
    )
}

/// What a lightweight transaction answered: whether it applied, and the row's current values of
/// the columns it tested (or all columns, for `IF NOT EXISTS`) when it did not. (A conditional
/// batch that did not apply answers a row per row it tested; this keeps the first.)
#[derive(Debug)]
pub(crate) struct LwtAnswer {
    pub applied: bool,
    /// Whether the statement was sent more than once (an earlier attempt's outcome was unknown,
    /// so a "not applied" may be this caller's own earlier success).
    pub retried: bool,
    columns: HashMap<String, CqlValue>,
}

impl LwtAnswer {
    pub(crate) fn parse(result: QueryResult, retried: bool) -> Result<Self, StoreError> {
        let rows = result
            .into_rows_result()
            .map_err(|e| corrupt(format!("an LWT answered without rows: {e}")))?;
        let names: Vec<String> = rows
            .column_specs()
            .iter()
            .map(|spec| spec.name().to_owned())
            .collect();
        let row: Row = rows
            .first_row()
            .map_err(|e| corrupt(format!("an LWT answered oddly: {e}")))?;
        let mut columns: HashMap<String, CqlValue> = names
            .into_iter()
            .zip(row.columns)
            .filter_map(|(name, value)| value.map(|v| (name, v)))
            .collect();
        let applied = match columns.remove("[applied]") {
            Some(CqlValue::Boolean(applied)) => applied,
            other => return Err(corrupt(format!("an LWT answered [applied] = {other:?}"))),
        };
        Ok(LwtAnswer {
            applied,
            retried,
            columns,
        })
    }

    pub fn text(&self, column: &str) -> Option<&str> {
        match self.columns.get(column)? {
            CqlValue::Text(s) | CqlValue::Ascii(s) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self, column: &str) -> Option<i32> {
        match self.columns.get(column)? {
            CqlValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn timeuuid(&self, column: &str) -> Option<uuid::Uuid> {
        match self.columns.get(column)? {
            CqlValue::Timeuuid(t) => Some((*t).into()),
            CqlValue::Uuid(u) => Some(*u),
            _ => None,
        }
    }

    pub fn timestamp(&self, column: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        match self.columns.get(column)? {
            CqlValue::Timestamp(t) => chrono::DateTime::from_timestamp_millis(t.0),
            _ => None,
        }
    }
}

/// Runs a lightweight transaction, sending it again while the cluster cannot tell whether it
/// applied.
pub(crate) async fn lwt(
    session: &Session,
    statement: &PreparedStatement,
    values: impl SerializeRow,
    what: &str,
) -> Result<LwtAnswer, StoreError> {
    let serialized = statement
        .clone()
        .bind(&values)
        .map_err(|e| unavailable(what, e))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match session.execute_bound_unpaged(&serialized).await {
            Ok(result) => return LwtAnswer::parse(result, attempt > 1),
            Err(e) if outcome_unknown(&e) && attempt < LWT_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "{what}: outcome unknown, asking again");
            }
            Err(e) => return Err(unavailable(what, e)),
        }
    }
}

/// Runs a conditional batch (of one partition: Paxos covers no more), sending it again while
/// the cluster cannot tell whether it applied. `batch` carries its consistency; the serial
/// consistency is the session's.
pub(crate) async fn lwt_batch(
    session: &Session,
    batch: &Batch,
    values: impl BatchValues,
    what: &str,
) -> Result<LwtAnswer, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match session.batch(batch, &values).await {
            Ok(result) => return LwtAnswer::parse(result, attempt > 1),
            Err(e) if outcome_unknown(&e) && attempt < LWT_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "{what}: outcome unknown, asking again");
            }
            Err(e) => return Err(unavailable(what, e)),
        }
    }
}

/// A timeuuid column's value.
pub(crate) fn timeuuid(id: uuid::Uuid) -> CqlTimeuuid {
    CqlTimeuuid::from(id)
}

/// Every statement of the request path, prepared once at start.
#[derive(Debug)]
pub(crate) struct Statements {
    pub ping: PreparedStatement,
    pub insert_job: PreparedStatement,
    pub get_job: PreparedStatement,
    pub get_job_serial: PreparedStatement,
    pub update_job: PreparedStatement,
    pub delete_job: PreparedStatement,
    pub insert_day: PreparedStatement,
    pub insert_day_created: PreparedStatement,
    pub delete_day: PreparedStatement,
    pub list_day: PreparedStatement,
    pub list_day_before: PreparedStatement,
    pub insert_log: PreparedStatement,
    pub insert_log_step: PreparedStatement,
    pub log_steps: PreparedStatement,
    pub read_logs: PreparedStatement,
    pub delete_logs: PreparedStatement,
    pub delete_log_steps: PreparedStatement,
    pub insert_artifact: PreparedStatement,
    pub list_artifacts: PreparedStatement,
    pub get_artifact: PreparedStatement,
    pub delete_artifacts: PreparedStatement,
    pub insert_upload: PreparedStatement,
    pub get_upload: PreparedStatement,
    pub list_uploads: PreparedStatement,
    pub insert_key: PreparedStatement,
    pub delete_key: PreparedStatement,
    pub insert_lease: PreparedStatement,
    pub renew_lease: PreparedStatement,
    pub release_lease: PreparedStatement,
    pub insert_webhook: PreparedStatement,
    pub insert_webhook_by_domain: PreparedStatement,
    pub copy_webhook_by_domain: PreparedStatement,
    pub webhook_domain: PreparedStatement,
    pub webhook_count: PreparedStatement,
    pub set_webhook_count: PreparedStatement,
    pub webhook_ids_by_domain: PreparedStatement,
    pub webhook_in_domain: PreparedStatement,
    pub replace_secret: PreparedStatement,
    pub replace_secret_by_domain: PreparedStatement,
    pub delete_webhook: PreparedStatement,
    pub delete_webhook_by_domain: PreparedStatement,
    pub list_webhooks: PreparedStatement,
    pub list_webhooks_by_domain: PreparedStatement,
    pub insert_event: PreparedStatement,
    pub read_events: PreparedStatement,
    pub get_delivery: PreparedStatement,
    pub put_delivery: PreparedStatement,
    pub delete_delivery: PreparedStatement,
}

/// Whether a statement is a plain read or write (retried by the driver, at the configured
/// consistency) or a lightweight transaction (Paxos at the serial consistency, never retried
/// blindly: see [`lwt`]).
#[derive(Clone, Copy)]
enum Kind {
    Plain,
    /// A plain read that must see in-flight Paxos rounds (`SERIAL` read).
    SerialRead,
    Lwt,
}

impl Statements {
    pub(crate) async fn prepare(
        session: &Session,
        consistency: Consistency,
        serial: SerialConsistency,
    ) -> Result<Self, StoreError> {
        let prepare = |cql: &'static str, kind: Kind| async move {
            let mut statement = session
                .prepare(cql)
                .await
                .map_err(|e| unavailable(&format!("preparing {cql:?}"), e))?;
            match kind {
                Kind::Plain => {
                    statement.set_consistency(consistency);
                    statement.set_is_idempotent(true);
                }
                Kind::SerialRead => {
                    statement.set_consistency(match serial {
                        SerialConsistency::LocalSerial => Consistency::LocalSerial,
                        SerialConsistency::Serial => Consistency::Serial,
                    });
                    statement.set_is_idempotent(true);
                }
                Kind::Lwt => {
                    // The commit of a Paxos round is written at this consistency.
                    statement.set_consistency(consistency);
                    statement.set_serial_consistency(Some(serial));
                    statement.set_is_idempotent(false);
                }
            }
            Ok::<_, StoreError>(statement)
        };
        use Kind::*;
        Ok(Statements {
            ping: prepare(
                "SELECT release_version FROM system.local WHERE key = 'local'",
                Plain,
            )
            .await?,
            insert_job: prepare(
                "INSERT INTO jobs_by_id (id, state, version, job, history, idempotency_key) \
                 VALUES (?, ?, 0, ?, ?, ?) USING TTL ? AND TIMESTAMP ?",
                Plain,
            )
            .await?,
            get_job: prepare(
                "SELECT state, version, job, history, idempotency_key FROM jobs_by_id WHERE id = ?",
                Plain,
            )
            .await?,
            get_job_serial: prepare(
                "SELECT state, version, job, history, idempotency_key FROM jobs_by_id WHERE id = ?",
                SerialRead,
            )
            .await?,
            update_job: prepare(
                "UPDATE jobs_by_id USING TTL ? \
                 SET state = ?, version = ?, job = ?, history = ?, idempotency_key = ? \
                 WHERE id = ? IF version = ?",
                Lwt,
            )
            .await?,
            delete_job: prepare("DELETE FROM jobs_by_id WHERE id = ? IF EXISTS", Lwt).await?,
            insert_day: prepare(
                "INSERT INTO jobs_by_day (day, id, service, task, domain, state) \
                 VALUES (?, ?, ?, ?, ?, ?) USING TTL ?",
                Plain,
            )
            .await?,
            insert_day_created: prepare(
                "INSERT INTO jobs_by_day (day, id, service, task, domain, state) \
                 VALUES (?, ?, ?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?",
                Plain,
            )
            .await?,
            delete_day: prepare("DELETE FROM jobs_by_day WHERE day = ? AND id = ?", Plain).await?,
            list_day: prepare(
                "SELECT id, service, task, domain, state FROM jobs_by_day WHERE day = ?",
                Plain,
            )
            .await?,
            list_day_before: prepare(
                "SELECT id, service, task, domain, state FROM jobs_by_day WHERE day = ? AND id < ?",
                Plain,
            )
            .await?,
            insert_log: prepare(
                "INSERT INTO job_logs (job_id, step, seq, time, stream, line) \
                 VALUES (?, ?, ?, ?, ?, ?) USING TTL ?",
                Plain,
            )
            .await?,
            insert_log_step: prepare(
                "INSERT INTO job_log_steps (job_id, step) VALUES (?, ?) USING TTL ?",
                Plain,
            )
            .await?,
            log_steps: prepare("SELECT step FROM job_log_steps WHERE job_id = ?", Plain).await?,
            read_logs: prepare(
                "SELECT seq, time, stream, line FROM job_logs \
                 WHERE job_id = ? AND step = ? AND seq > ? LIMIT ?",
                Plain,
            )
            .await?,
            delete_logs: prepare("DELETE FROM job_logs WHERE job_id = ? AND step = ?", Plain)
                .await?,
            delete_log_steps: prepare("DELETE FROM job_log_steps WHERE job_id = ?", Plain).await?,
            insert_artifact: prepare(
                "INSERT INTO job_artifacts (job_id, name, artifact) VALUES (?, ?, ?) USING TTL ?",
                Plain,
            )
            .await?,
            list_artifacts: prepare(
                "SELECT artifact FROM job_artifacts WHERE job_id = ? AND name > ? LIMIT ?",
                Plain,
            )
            .await?,
            get_artifact: prepare(
                "SELECT artifact FROM job_artifacts WHERE job_id = ? AND name = ?",
                Plain,
            )
            .await?,
            delete_artifacts: prepare("DELETE FROM job_artifacts WHERE job_id = ?", Plain).await?,
            insert_upload: prepare(
                "INSERT INTO uploads (domain, sha256, upload) VALUES (?, ?, ?) \
                 USING TTL ? AND TIMESTAMP ?",
                Plain,
            )
            .await?,
            get_upload: prepare(
                "SELECT upload FROM uploads WHERE domain = ? AND sha256 = ?",
                Plain,
            )
            .await?,
            list_uploads: prepare("SELECT upload FROM uploads WHERE domain = ?", Plain).await?,
            insert_key: prepare(
                "INSERT INTO idempotency_keys (key, fingerprint, job_id, job) \
                 VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
                Lwt,
            )
            .await?,
            delete_key: prepare(
                "DELETE FROM idempotency_keys WHERE key = ? IF job_id = ?",
                Lwt,
            )
            .await?,
            insert_lease: prepare(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) \
                 IF NOT EXISTS USING TTL ?",
                Lwt,
            )
            .await?,
            renew_lease: prepare(
                "UPDATE leases USING TTL ? SET holder = ?, expires_at = ? \
                 WHERE name = ? IF holder = ? AND expires_at = ?",
                Lwt,
            )
            .await?,
            release_lease: prepare("DELETE FROM leases WHERE name = ? IF holder = ?", Lwt).await?,
            insert_webhook: prepare(
                "INSERT INTO webhooks (id, domain, url, events, secret, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
                Lwt,
            )
            .await?,
            insert_webhook_by_domain: prepare(
                "INSERT INTO webhooks_by_domain (domain, id, url, events, secret, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
                Lwt,
            )
            .await?,
            copy_webhook_by_domain: prepare(
                "UPDATE webhooks_by_domain SET url = ?, events = ?, secret = ?, created_at = ? \
                 WHERE domain = ? AND id = ? IF webhook_count = null",
                Lwt,
            )
            .await?,
            webhook_domain: prepare("SELECT domain FROM webhooks WHERE id = ?", SerialRead).await?,
            webhook_count: prepare(
                "SELECT webhook_count FROM webhooks_by_domain WHERE domain = ? LIMIT 1",
                SerialRead,
            )
            .await?,
            set_webhook_count: prepare(
                "UPDATE webhooks_by_domain SET webhook_count = ? WHERE domain = ? \
                 IF webhook_count = ?",
                Lwt,
            )
            .await?,
            webhook_ids_by_domain: prepare(
                "SELECT id FROM webhooks_by_domain WHERE domain = ?",
                SerialRead,
            )
            .await?,
            webhook_in_domain: prepare(
                "SELECT id FROM webhooks_by_domain WHERE domain = ? AND id = ?",
                SerialRead,
            )
            .await?,
            replace_secret: prepare(
                "UPDATE webhooks SET secret = ? WHERE id = ? IF secret = ?",
                Lwt,
            )
            .await?,
            replace_secret_by_domain: prepare(
                "UPDATE webhooks_by_domain SET secret = ? WHERE domain = ? AND id = ? IF EXISTS",
                Lwt,
            )
            .await?,
            delete_webhook: prepare("DELETE FROM webhooks WHERE id = ? IF EXISTS", Lwt).await?,
            delete_webhook_by_domain: prepare(
                "DELETE FROM webhooks_by_domain WHERE domain = ? AND id = ? IF EXISTS",
                Lwt,
            )
            .await?,
            list_webhooks: prepare(
                "SELECT id, domain, url, events, secret, created_at FROM webhooks",
                Plain,
            )
            .await?,
            list_webhooks_by_domain: prepare(
                "SELECT id, domain, url, events, secret, created_at FROM webhooks_by_domain \
                 WHERE domain = ?",
                Plain,
            )
            .await?,
            insert_event: prepare(
                "INSERT INTO events_by_hour (hour, id, event) VALUES (?, ?, ?) USING TTL ?",
                Plain,
            )
            .await?,
            read_events: prepare(
                "SELECT id, event FROM events_by_hour WHERE hour = ? AND id > ? AND id < ? LIMIT ?",
                Plain,
            )
            .await?,
            get_delivery: prepare(
                "SELECT delivery FROM webhook_deliveries WHERE webhook_id = ?",
                Plain,
            )
            .await?,
            put_delivery: prepare(
                "INSERT INTO webhook_deliveries (webhook_id, delivery) VALUES (?, ?)",
                Plain,
            )
            .await?,
            delete_delivery: prepare("DELETE FROM webhook_deliveries WHERE webhook_id = ?", Plain)
                .await?,
        })
    }
}
