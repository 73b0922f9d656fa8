//! Following one job on its engine: its steps into the store as they move, its log lines into
//! the store in batches, and its end as the job's last transition (after its last line).

use std::sync::Arc;
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
/// Longest the end of a job waits for the rest of its log once the engine says it ended.
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
        // Called in the job's span: the collector's lines carry the job's id too.
        let logs = tokio::spawn(
            collect(
                self.jobs.clone(),
                Arc::clone(&engine),
                id,
                self.config.retry_after,
            )
            .in_current_span(),
        );
        let outcome = self.watch(id, steps, &engine).await;
        // Every line before the end: followers of the log see `end` after the last line.
        if tokio::time::timeout(LOG_DRAIN, logs).await.is_err() {
            tracing::warn!("the job's log did not end with the job");
        }
        // What it made is kept before its end is recorded (also what a failed job made: its
        // logs and half-built packages are what its owner needs to see why).
        let kept = match &outcome {
            Some(Outcome::Succeeded | Outcome::Failed(_)) => {
                crate::keep::keep_outputs(&self.jobs, &engine, id, self.config.retry_after).await
            }
            _ => Ok(0),
        };
        let (to, message) = match (outcome, kept) {
            (Some(Outcome::Succeeded), Err(why)) => (
                JobState::Failed,
                Some(format!("the job succeeded, but {why}")),
            ),
            (Some(Outcome::Failed(message)), Err(why)) => {
                (JobState::Failed, Some(format!("{message}; and {why}")))
            }
            (outcome, _) => match outcome {
                Some(Outcome::Succeeded) => (JobState::Succeeded, None),
                Some(Outcome::Failed(message)) => (JobState::Failed, Some(message)),
                Some(Outcome::Cancelled(message)) => (JobState::Cancelled, Some(message)),
                None => (
                    JobState::Failed,
                    Some(format!(
                        "engine {} no longer has the job (it was removed there, or the engine restarted and keeps nothing)",
                        engine.name()
                    )),
                ),
            },
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

/// Copies the job's log from the engine into the store, from where the store's copy ends, until
/// the engine's log ends: lines kept to the service's [`omni_jobs::LogLimits`], numbered, stored
/// in batches and each stored batch handed to this replica's followers.
async fn collect(jobs: JobService, engine: Arc<dyn Engine>, id: JobId, retry: Duration) {
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
                        write(&jobs, &publisher, &mut batch, retry).await;
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
                        write(&jobs, &publisher, &mut batch, retry).await;
                    }
                }
                None | Some(Err(EngineError::UnknownJob { .. })) => break true,
                Some(Err(error)) => {
                    tracing::warn!(%error, "lost the job's log; resuming");
                    break false;
                }
            }
        };
        write(&jobs, &publisher, &mut batch, retry).await;
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
) {
    if batch.is_empty() {
        return;
    }
    loop {
        match jobs.append_logs(publisher, batch).await {
            Ok(()) => {
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
