//! [`LogStore`] on Cassandra: one partition per job and step (`job_logs`), ordered by `seq`,
//! written in unlogged batches; `job_log_steps` names a job's steps so a read over all of them
//! finds their partitions.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use scylla::statement::batch::{Batch, BatchType};

use omni_store::{JobId, LogLine, LogPage, LogQuery, LogStore, LogStream, Result, StoreError};

use crate::cql::{corrupt, timeuuid, unavailable};
use crate::{CassandraStore, is_timeuuid};

/// Lines per log batch (one partition, unlogged): large enough to amortize a round trip, small
/// enough to stay far below Cassandra's mutation size limit...
pub(crate) const LOG_BATCH_LINES: usize = 256;
/// ... and at most this many bytes of text per batch.
const LOG_BATCH_BYTES: usize = 512 * 1024;
/// Log batches in flight at once per call.
const LOG_BATCHES_IN_FLIGHT: usize = 8;

impl CassandraStore {
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
                let stream = stream
                    .as_deref()
                    .and_then(LogStream::from_stored)
                    .ok_or_else(|| corrupt(format!("log line {seq} of {id}: stream {stream:?}")))?;
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

    /// Deletes every line of job `id`, each step's partition, then the steps that name them
    /// (part of a purge).
    pub(crate) async fn delete_logs(&self, id: JobId) -> Result<()> {
        let session = &self.inner.session;
        let st = &self.inner.st;
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
        Ok(())
    }
}

#[async_trait]
impl LogStore for CassandraStore {
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
                            line.stream.as_str(),
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
}
