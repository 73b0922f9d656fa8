//! A job's log lines: each step's container log in step order, followed while the step runs
//! (`follow`, `timestamps`), resumed after a [`LogCursor`] (`sinceTime` skips the bulk, the
//! cursor the rest), and read again after a dropped connection without sending a line twice.
//! A step's log is read once more after the step has ended, so nothing printed between a drop
//! and the end is lost; the stream ends when every step has ended and was read.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::{AsyncBufReadExt, StreamExt};
use kube::api::LogParams;
use omni_engine::{EngineError, EngineLine, JobId, LogCursor, LogStream, LogStreamOf, StepState};
use tokio::sync::{mpsc, watch};

use crate::Inner;
use crate::status::{self, JobView, Phase};

/// The longest wait before reading a running step's log again after its stream ended.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How long the last (plain) read of an ended step's log may go without a line.
const PLAIN_READ_IDLE: Duration = Duration::from_secs(20);

/// Splits a line the API server sent with `timestamps=true` ("<RFC 3339 time> <text>").
fn parse(step: &str, raw: &str) -> EngineLine {
    let (time, line) = raw
        .split_once(' ')
        .and_then(|(time, rest)| Some((DateTime::parse_from_rfc3339(time).ok()?, rest)))
        .map_or_else(
            || (Utc::now(), raw),
            |(time, rest)| (time.with_timezone(&Utc), rest),
        );
    EngineLine {
        step: step.to_owned(),
        // The log endpoint merges stdout and stderr and does not say which a line came from.
        stream: LogStream::Stdout,
        time,
        line: line.to_owned(),
    }
}

fn step_state(view: &JobView, step: &str) -> StepState {
    view.steps
        .iter()
        .find(|(name, _)| name == step)
        .map_or(StepState::Pending, |(_, state)| *state)
}

fn ended(view: &JobView) -> bool {
    matches!(view.phase, Phase::Ended(_))
}

fn settled(view: &JobView, step: &str) -> bool {
    ended(view)
        || matches!(
            step_state(view, step),
            StepState::Succeeded | StepState::Failed | StepState::Skipped
        )
}

/// The stream of job `id`'s lines after `after`.
pub(crate) fn stream(inner: Arc<Inner>, id: JobId, after: Option<LogCursor>) -> LogStreamOf {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        if let Err(error) = run(&inner, id, after, &tx).await {
            // The receiver may be gone; then nobody is left to tell.
            let _ = tx.send(Err(error)).await;
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

/// Why a log stream stopped early: its reader left, or an error to hand it.
enum Stop {
    Gone,
    Error(EngineError),
}

impl From<EngineError> for Stop {
    fn from(error: EngineError) -> Self {
        Stop::Error(error)
    }
}

async fn run(
    inner: &Inner,
    id: JobId,
    after: Option<LogCursor>,
    tx: &Lines,
) -> Result<(), EngineError> {
    inner.tracker.ready().await;
    let (Some(mut follow), Some(job)) = (inner.tracker.follow(id), inner.tracker.job(id)) else {
        return Err(inner.unknown(id));
    };
    let steps = status::step_names(&job);
    let first = after
        .as_ref()
        .and_then(|c| steps.iter().position(|s| *s == c.step))
        .unwrap_or(0);
    for step in &steps[first..] {
        if tx.is_closed() {
            return Ok(());
        }
        match read_step(inner, id, &steps, step, after.as_ref(), &mut follow, tx).await {
            Ok(()) => {}
            Err(Stop::Gone) => return Ok(()),
            Err(Stop::Error(error)) => return Err(error),
        }
    }
    Ok(())
}

/// Where a stream's lines go.
type Lines = mpsc::Sender<Result<EngineLine, EngineError>>;

/// Waits for the view to change; `false` when the job was forgotten or nobody reads the lines
/// any more (the stream was dropped): then the reading stops.
async fn changed(follow: &mut watch::Receiver<Option<JobView>>, tx: &Lines) -> bool {
    tokio::select! {
        changed = follow.changed() => changed.is_ok(),
        () = tx.closed() => false,
    }
}

fn current(follow: &mut watch::Receiver<Option<JobView>>) -> Option<JobView> {
    follow.borrow_and_update().clone()
}

async fn read_step(
    inner: &Inner,
    id: JobId,
    steps: &[String],
    step: &str,
    after: Option<&LogCursor>,
    follow: &mut watch::Receiver<Option<JobView>>,
    tx: &Lines,
) -> Result<(), Stop> {
    // Until the step has started (or the job is over).
    loop {
        let Some(view) = current(follow) else {
            return Ok(());
        };
        match step_state(&view, step) {
            StepState::Skipped => return Ok(()),
            StepState::Pending if ended(&view) => return Ok(()),
            StepState::Pending => {}
            _ => break,
        }
        if !changed(follow, tx).await {
            return Ok(());
        }
    }
    // The last line sent of this step: a new connection resumes after it.
    let mut sent: Option<LogCursor> = after.filter(|c| c.step == step).cloned();
    let mut retry = Duration::from_millis(500);
    loop {
        let view = current(follow);
        // Once the step is over, one plain read (no follow) to the end gets all it printed.
        let last_read = view.as_ref().is_none_or(|v| settled(v, step));
        let job_over = view.as_ref().is_none_or(ended);
        let Some(pod) = inner.tracker.pod(id).and_then(|p| p.metadata.name) else {
            if job_over || !changed(follow, tx).await {
                return Ok(());
            }
            continue;
        };
        let params = LogParams {
            container: Some(step.to_owned()),
            follow: !last_read,
            timestamps: true,
            // sinceTime has whole seconds: lines of that second are dropped by the cursor.
            since_time: sent
                .as_ref()
                .and_then(|c| c.time.duration_trunc(TimeDelta::seconds(1)).ok()),
            ..LogParams::default()
        };
        let mut settled_while_reading = false;
        match inner.pods.log_stream(&pod, &params).await {
            Ok(reader) => {
                let mut lines = reader.lines();
                // This connection starts at or before `resume`: what it repeats is skipped.
                let resume = sent.clone();
                let mut seen_at_time = 0;
                loop {
                    let raw = tokio::select! {
                        raw = lines.next() => raw,
                        // A plain read of an ended container's log that goes quiet has hung
                        // (seen under load): it ends, rather than hold the job's end.
                        () = tokio::time::sleep(PLAIN_READ_IDLE), if last_read => {
                            tracing::warn!(engine = %inner.name, job = %id, %step,
                                "the last read of a step's log went quiet; ending it");
                            break;
                        }
                        // Some kubelets (kwok's) follow a log past the container's end: the
                        // step's end closes the follow, and the plain read after it finishes.
                        alive = changed(follow, tx), if !last_read => {
                            if !alive {
                                return Ok(());
                            }
                            if current(follow).as_ref().is_none_or(|v| settled(v, step)) {
                                settled_while_reading = true;
                                break;
                            }
                            continue;
                        }
                    };
                    match raw {
                        Some(Ok(raw)) => {
                            let line = parse(step, &raw);
                            if resume
                                .as_ref()
                                .is_some_and(|c| !c.admits(steps, &line, &mut seen_at_time))
                            {
                                continue;
                            }
                            LogCursor::advance(&mut sent, &line);
                            tx.send(Ok(line)).await.map_err(|_| Stop::Gone)?;
                        }
                        Some(Err(error)) => {
                            tracing::debug!(job = %id, %step, %error, "log stream dropped");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(kube::Error::Api(response)) if response.code == 404 && job_over => return Ok(()),
            Err(kube::Error::Api(response)) if response.code == 400 || response.code == 404 => {
                // Not there yet (a container waiting to start) or gone with its pod.
                tracing::debug!(job = %id, %step, message = %response.message, "no log yet");
            }
            Err(error) => {
                tracing::warn!(engine = %inner.name, job = %id, %step, %error,
                    "reading a step's log failed; retrying");
            }
        }
        if last_read {
            return Ok(());
        }
        if settled_while_reading {
            continue;
        }
        // A dropped connection while the step runs: read again after a change or a while.
        tokio::select! {
            alive = changed(follow, tx) => if !alive { return Ok(()) },
            () = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(MAX_RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_time() {
        let line = parse("build", "2026-01-01T00:00:01.250000000Z make: done");
        assert_eq!(line.line, "make: done");
        assert_eq!(
            line.time,
            "2026-01-01T00:00:01.25Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(line.step, "build");
    }

    #[test]
    fn a_line_without_a_time_is_kept_whole() {
        let line = parse("build", "no time here");
        assert_eq!(line.line, "no time here");
    }
}
