//! Following one job on its engine: its steps into the store as they move, its log lines into
//! the store in batches, and its end as the job's last transition (after its last line).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use omni_engine::{Engine, EngineError, EngineLine, LogCursor, Outcome, Progress};
use omni_jobs::{JobError, JobService, Publisher, Stored};
use omni_store::{JobId, JobState, LogLine, LogQuery, Step};
use tracing::Instrument as _;

use crate::Inner;

/// Most lines in one write.
const BATCH_LINES: usize = 1000;
/// Longest a line waits for its batch to fill.
const BATCH_WAIT: Duration = Duration::from_millis(100);
/// Longest the end of a job waits for the rest of its log, once the engine says it ended,
/// while the collector stores nothing: a collector still storing lines (a million of them on a
/// busy machine take minutes) is waited for as long as it stores.
const LOG_DRAIN: Duration = Duration::from_secs(60);
/// How often a follower checks the store for a cancel made on another replica that could not
/// reach the engine.
const RECHECK: Duration = Duration::from_secs(30);

impl Inner {
    /// Follows running job `id` (with `steps` as stored) on engine `index` to its end, then
    /// frees its slot. It keeps nothing else of the job: not its params, which may be large,
    /// for as long as the job runs.
    pub(crate) async fn follow(self: Arc<Self>, id: JobId, steps: Vec<Step>, index: usize) {
        let engine = Arc::clone(&self.engines[index]);
        let stored = Arc::new(AtomicU64::new(0));
        // Called in the job's span: the collector's lines carry the job's id too.
        let logs = tokio::spawn(
            collect(
                self.jobs.clone(),
                Arc::clone(&engine),
                id,
                self.config.retry_after,
                Arc::clone(&stored),
            )
            .in_current_span(),
        );
        let outcome = self.watch(id, steps, &engine).await;
        // Every line before the end: followers of the log see `end` after the last line.
        if !drain(logs, &stored).await {
            tracing::warn!("the job's log did not end with the job");
        }
        // What it made is kept before its end is recorded (also what a failed job made: its
        // logs and half-built packages are what its owner needs to see why).
        let kept = match &outcome {
            Some(Outcome::Succeeded | Outcome::Failed(_)) => {
                crate::keep::keep_outputs(&self.jobs, &engine, id, self.config.retry_after).await
            }
            _ => Ok(()),
        };
        let (to, message) = match (outcome, kept) {
            (Some(Outcome::Succeeded), Ok(())) => (JobState::Succeeded, None),
            (Some(Outcome::Succeeded), Err(why)) => (
                JobState::Failed,
                Some(format!("the job succeeded, but {why}")),
            ),
            (Some(Outcome::Failed(message)), Ok(())) => (JobState::Failed, Some(message)),
            (Some(Outcome::Failed(message)), Err(why)) => {
                (JobState::Failed, Some(format!("{message}; and {why}")))
            }
            (Some(Outcome::Cancelled(message)), _) => (JobState::Cancelled, Some(message)),
            (None, _) => (
                JobState::Failed,
                Some(format!(
                    "engine {} no longer has the job (it was removed there, or the engine restarted and keeps nothing)",
                    engine.name()
                )),
            ),
        };
        match self.jobs.transition(id, to, message).await {
            Ok(job) => tracing::info!(state = %job.state, "job ended"),
            // Cancelled here or elsewhere first.
            Err(JobError::Illegal { .. } | JobError::NotFound(_)) => {}
            Err(error) => tracing::warn!(%error, "cannot record the end of a job"),
        }
        self.release(id);
    }

    /// The job's progress until it ends: its steps go to the store. `None` when the engine
    /// does not have it.
    async fn watch(
        &self,
        id: JobId,
        mut steps: Vec<Step>,
        engine: &Arc<dyn Engine>,
    ) -> Option<Outcome> {
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.tick().await;
        loop {
            let mut progress = engine.progress(id);
            loop {
                let item = tokio::select! {
                    item = progress.next() => item,
                    _ = recheck.tick() => {
                        self.recheck(id, engine).await;
                        continue;
                    }
                };
                match item {
                    Some(Ok(Progress::Step { name, state })) => {
                        let Some(step) = steps.iter_mut().find(|s| s.name == name) else {
                            continue;
                        };
                        if step.state == state {
                            continue;
                        }
                        step.state = state;
                        if let Err(error) = self.jobs.record_steps(id, &steps).await {
                            // The next change (or the end) writes them all again.
                            tracing::warn!(%error, "cannot store the job's steps");
                        }
                    }
                    Some(Ok(Progress::Waiting { .. } | Progress::Running)) => {}
                    Some(Ok(Progress::Ended(outcome))) => {
                        let _ = self.jobs.record_steps(id, &steps).await;
                        return Some(outcome);
                    }
                    Some(Err(EngineError::UnknownJob { .. })) => return None,
                    Some(Err(error)) => {
                        tracing::warn!(%error, "lost the job's progress; following again");
                        break;
                    }
                    None => break,
                }
            }
            tokio::time::sleep(self.config.retry_after).await;
        }
    }

    /// Stops the job on its engine if the store says it was cancelled.
    async fn recheck(&self, id: JobId, engine: &Arc<dyn Engine>) {
        if let Ok(job) = self.jobs.get(id).await
            && job.state == JobState::Cancelled
        {
            let _ = engine.cancel(id).await;
        }
    }
}

/// Waits for the collector `logs` to end, as long as it keeps storing lines (`stored` counts
/// them): it gives up only after [`LOG_DRAIN`] without a line stored. Whether it ended.
async fn drain(mut logs: tokio::task::JoinHandle<()>, stored: &AtomicU64) -> bool {
    let mut seen = stored.load(Ordering::Relaxed);
    loop {
        match tokio::time::timeout(LOG_DRAIN, &mut logs).await {
            Ok(_) => return true,
            Err(_) => {
                let now = stored.load(Ordering::Relaxed);
                if now == seen {
                    return false;
                }
                seen = now;
            }
        }
    }
}

/// Copies the job's log from the engine into the store, from where the store's copy ends, until
/// the engine's log ends: lines kept to the service's [`omni_jobs::LogLimits`], numbered, stored
/// in batches and each stored batch handed to this replica's followers; `stored` counts the
/// lines stored.
async fn collect(
    jobs: JobService,
    engine: Arc<dyn Engine>,
    id: JobId,
    retry: Duration,
    stored_lines: Arc<AtomicU64>,
) {
    let limits = *jobs.logs().limits();
    let publisher = jobs.logs().publisher(id);
    let (mut stored, mut cursor) = loop {
        match resume_point(&jobs, id).await {
            Ok(point) => break point,
            Err(error) => {
                tracing::warn!(%error, "cannot read the stored log; trying again");
                tokio::time::sleep(retry).await;
            }
        }
    };
    loop {
        let mut lines = engine.logs(id, cursor.clone());
        let mut batch: Vec<LogLine> = Vec::new();
        let ended = loop {
            let next = if batch.is_empty() {
                lines.next().await
            } else {
                match tokio::time::timeout(BATCH_WAIT, lines.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        write(&jobs, &publisher, &mut batch, retry, &stored_lines).await;
                        continue;
                    }
                }
            };
            match next {
                Some(Ok(line)) => {
                    LogCursor::advance(&mut cursor, &line);
                    let time = chrono::SubsecRound::trunc_subsecs(line.time, 3);
                    limits.admit(
                        &mut stored,
                        &line.step,
                        line.stream,
                        time,
                        &line.line,
                        &mut batch,
                    );
                    if batch.len() >= BATCH_LINES {
                        write(&jobs, &publisher, &mut batch, retry, &stored_lines).await;
                    }
                }
                None | Some(Err(EngineError::UnknownJob { .. })) => break true,
                Some(Err(error)) => {
                    tracing::warn!(%error, "lost the job's log; resuming");
                    break false;
                }
            }
        };
        write(&jobs, &publisher, &mut batch, retry, &stored_lines).await;
        if ended {
            return;
        }
        tokio::time::sleep(retry).await;
    }
}

/// Writes a batch, trying again while the store is unavailable: a line read is never dropped.
async fn write(
    jobs: &JobService,
    publisher: &Publisher,
    batch: &mut Vec<LogLine>,
    retry: Duration,
    stored: &AtomicU64,
) {
    if batch.is_empty() {
        return;
    }
    loop {
        match jobs.append_logs(publisher, batch).await {
            Ok(()) => {
                stored.fetch_add(batch.len() as u64, Ordering::Relaxed);
                // Freed, not cleared: a burst's batch (up to BATCH_LINES lines) kept by every
                // quiet running job would be most of the memory of thousands of them.
                *batch = Vec::new();
                return;
            }
            Err(JobError::NotFound(_)) => {
                // Purged while it ran.
                batch.clear();
                return;
            }
            Err(error) => {
                tracing::warn!(%error, lines = batch.len(), "cannot store log lines; trying again");
                tokio::time::sleep(retry).await;
            }
        }
    }
}

/// What is stored of the job's log already, and the engine cursor after it.
async fn resume_point(
    jobs: &JobService,
    id: JobId,
) -> Result<(Stored, Option<LogCursor>), JobError> {
    let mut query = LogQuery {
        step: None,
        after: None,
        limit: 1000,
    };
    let mut tail: Vec<EngineLine> = Vec::new();
    let mut stored = Stored::default();
    loop {
        let page = jobs.stored_logs(id, &query).await?;
        stored.count(&page.items);
        for line in page.items {
            if tail
                .last()
                .is_some_and(|l| l.step != line.step || l.time != line.time)
            {
                tail.clear();
            }
            tail.push(EngineLine {
                step: line.step,
                stream: line.stream,
                time: line.time,
                line: line.line,
            });
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok((stored, LogCursor::after(&tail))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A collector that stores a batch every 50 s for five minutes is waited for to its end; one
    /// that stops storing is given up on [`LOG_DRAIN`] after its last batch.
    #[tokio::test(start_paused = true)]
    async fn the_end_waits_for_a_collector_as_long_as_it_stores() {
        let stored = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&stored);
        let slow = tokio::spawn(async move {
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_secs(50)).await;
                counter.fetch_add(1000, Ordering::Relaxed);
            }
        });
        let started = tokio::time::Instant::now();
        assert!(drain(slow, &stored).await);
        assert_eq!(
            stored.load(Ordering::Relaxed),
            6000,
            "every batch stored first"
        );
        assert!(started.elapsed() >= Duration::from_secs(300));

        let stalled = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&stalled);
        let stuck = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            counter.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<()>().await;
        });
        let started = tokio::time::Instant::now();
        assert!(!drain(stuck, &stalled).await);
        // Past the first wait it saw a line stored, then a whole LOG_DRAIN without one.
        assert_eq!(started.elapsed(), LOG_DRAIN * 2);
    }
}
