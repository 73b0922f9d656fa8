//! A job's log lines: each step's container log in step order, followed while the step runs
//! (`follow`, `timestamps`), resumed after a [`LogCursor`] (`sinceTime` skips the bulk, the
//! cursor the rest), and read again after a dropped connection without sending a line twice.
//! A step's log is read once more after the step has ended, so nothing printed between a drop
//! and the end is lost; the stream ends when every step has ended and was read.
//!
//! Connections are taken in turns ([`LogConnections`]): an engine follows at most
//! `max_log_streams` running steps at once (each follow is a TLS connection of its own, since
//! kube's client speaks HTTP/1.1, and a follow of its own on the node), whatever the number of
//! running jobs. While others wait for a turn, a follow gives its connection up after [`TURN`]
//! and queues again; its next connection resumes after its last line, like one after a drop.
//! With fewer running steps than that nobody waits, and every running step is followed without
//! a break. The last reads of ended steps have a pool of the same size to themselves, so that a
//! job's end does not wait behind the follows of running jobs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::{AsyncReadExt, StreamExt};
use kube::api::LogParams;
use omni_engine::text::{LineSplitter, MAX_LINE_BYTES, Piece, decode_line, split_text};
use omni_engine::{EngineError, EngineLine, JobId, LogCursor, LogStream, LogStreamOf, StepState};
use tokio::sync::{Semaphore, SemaphorePermit, mpsc, watch};

use crate::Inner;
use crate::status::{JobView, Phase};

/// The longest wait before reading a running step's log again after its stream ended.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How long the last (plain) read of an ended step's log may go without a line.
const PLAIN_READ_IDLE: Duration = Duration::from_secs(20);

/// The longest raw line read before it is cut: a piece of text and its timestamp.
const MAX_RAW_LINE: usize = MAX_LINE_BYTES + 64;

/// How long a follow keeps its connection while other follows wait for one.
const TURN: Duration = Duration::from_secs(2);

/// The log connections of one engine: follows of running steps, and the last reads of ended
/// ones, each pool `max_log_streams` connections.
#[derive(Debug)]
pub(crate) struct LogConnections {
    follows: LogTurns,
    last_reads: LogTurns,
}

impl LogConnections {
    pub(crate) fn new(max_log_streams: usize) -> LogConnections {
        LogConnections {
            follows: LogTurns::new(max_log_streams),
            last_reads: LogTurns::new(max_log_streams),
        }
    }
}

/// Log connections handed out in turns: a fair (first come, first served) semaphore, and how
/// many wait for it.
#[derive(Debug)]
struct LogTurns {
    connections: Semaphore,
    waiting: AtomicUsize,
}

/// Counts a waiter while it waits, also when its wait is given up (dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl LogTurns {
    /// At most `max` connections at once (at least one).
    fn new(max: usize) -> LogTurns {
        LogTurns {
            connections: Semaphore::new(max.max(1)),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Waits for a connection of one's own.
    async fn take(&self) -> SemaphorePermit<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        // Never closed, so acquiring cannot fail.
        self.connections
            .acquire()
            .await
            .expect("the log connections' semaphore is never closed")
    }

    /// Whether someone waits for a connection.
    fn contended(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }
}

/// Makes a line the API server sent with `timestamps=true` ("<RFC 3339 time> <text>") into log
/// lines: the text decoded ([`decode_line`]) and split into pieces of [`MAX_LINE_BYTES`]. A
/// piece that continues a line cut on reading has no time of its own: it gets `previous`, the
/// time of the line it continues.
fn parse(step: &str, piece: &Piece, previous: Option<DateTime<Utc>>) -> Vec<EngineLine> {
    let raw = piece.bytes.as_slice();
    let stamped = (!piece.continued)
        .then(|| {
            let at = raw.iter().position(|&b| b == b' ')?;
            let time = std::str::from_utf8(&raw[..at]).ok()?;
            Some((DateTime::parse_from_rfc3339(time).ok()?, &raw[at + 1..]))
        })
        .flatten();
    let (time, text) = match stamped {
        Some((time, rest)) => (time.with_timezone(&Utc), rest),
        None => (previous.unwrap_or_else(Utc::now), raw),
    };
    let text = decode_line(text);
    split_text(&text, MAX_LINE_BYTES)
        .into_iter()
        .map(|line| EngineLine {
            step: step.to_owned(),
            // The log endpoint merges stdout and stderr and does not say which a line came from.
            stream: LogStream::Stdout,
            time,
            line: line.to_owned(),
        })
        .collect()
}

/// The pieces (bounded lines) of a log stream, in order; an error ends it.
fn pieces(
    reader: impl futures::AsyncRead + Unpin + Send + 'static,
) -> impl futures::Stream<Item = std::io::Result<Piece>> + Send + Unpin {
    let state = (
        reader,
        LineSplitter::new(MAX_RAW_LINE),
        VecDeque::new(),
        false,
    );
    Box::pin(futures::stream::unfold(
        state,
        |(mut reader, mut splitter, mut ready, mut done)| async move {
            let mut chunk = [0u8; 16 * 1024];
            loop {
                if let Some(piece) = ready.pop_front() {
                    return Some((Ok(piece), (reader, splitter, ready, done)));
                }
                if done {
                    return None;
                }
                let mut out = Vec::new();
                match reader.read(&mut chunk).await {
                    Ok(0) => {
                        splitter.finish(&mut out);
                        done = true;
                    }
                    Ok(n) => splitter.push(&chunk[..n], &mut out),
                    Err(error) => return Some((Err(error), (reader, splitter, ready, true))),
                }
                ready.extend(out);
            }
        },
    ))
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
    let (Some(mut follow), Some(steps)) = (inner.tracker.follow(id), inner.tracker.steps(id))
    else {
        return Err(inner.unknown(id));
    };
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
        let job_over = view.as_ref().is_none_or(ended);
        let Some(pod) = inner.tracker.pod_name(id) else {
            if job_over || !changed(follow, tx).await {
                return Ok(());
            }
            continue;
        };
        // A follow waits its turn; once the step is over, its last read takes a connection
        // of the other pool, so that a job's end never waits behind running jobs' follows.
        let connection = loop {
            let over = current(follow).as_ref().is_none_or(|v| settled(v, step));
            let turns = if over {
                &inner.logs.last_reads
            } else {
                &inner.logs.follows
            };
            tokio::select! {
                connection = turns.take() => break connection,
                alive = changed(follow, tx), if !over => if !alive { return Ok(()) },
                () = tx.closed() => return Ok(()),
            }
        };
        // Where the job is once it is this read's turn.
        let view = current(follow);
        // Once the step is over, one plain read (no follow) to the end gets all it printed.
        let last_read = view.as_ref().is_none_or(|v| settled(v, step));
        let job_over = view.as_ref().is_none_or(ended);
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
        // Read again at once: the step ended, or others waited for this connection.
        let mut again = false;
        // Boxed: the request's future is most of this task's size, and the task waits for its
        // turn far longer than it reads while thousands of jobs run.
        match Box::pin(inner.pods.log_stream(&pod, &params)).await {
            Ok(reader) => {
                let mut lines = pieces(reader);
                let mut previous = None;
                // This connection starts at or before `resume`: what it repeats is skipped.
                let resume = sent.clone();
                let mut seen_at_time = 0;
                let mut turn = tokio::time::interval_at(tokio::time::Instant::now() + TURN, TURN);
                loop {
                    let raw = tokio::select! {
                        // Others wait: give the connection up, and queue again.
                        _ = turn.tick(), if !last_read => {
                            if inner.logs.follows.contended() {
                                again = true;
                                break;
                            }
                            continue;
                        }
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
                                again = true;
                                break;
                            }
                            continue;
                        }
                    };
                    match raw {
                        Some(Ok(piece)) => {
                            for line in parse(step, &piece, previous) {
                                previous = Some(line.time);
                                if resume
                                    .as_ref()
                                    .is_some_and(|c| !c.admits(steps, &line, &mut seen_at_time))
                                {
                                    continue;
                                }
                                LogCursor::advance(&mut sent, &line);
                                tx.send(Ok(line)).await.map_err(|_| Stop::Gone)?;
                            }
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
        drop(connection);
        if last_read {
            return Ok(());
        }
        if again {
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

    fn piece(bytes: &[u8], continued: bool) -> Piece {
        Piece {
            bytes: bytes.to_vec(),
            continued,
        }
    }

    #[tokio::test]
    async fn a_connection_is_taken_in_turns_and_a_given_up_wait_is_no_longer_counted() {
        let turns = LogTurns::new(1);
        assert!(!turns.contended());
        let first = turns.take().await;
        // The second waits while the first holds the one connection, and is counted.
        let mut second = std::pin::pin!(turns.take());
        assert!(futures::poll!(second.as_mut()).is_pending());
        assert!(turns.contended());
        drop(first);
        let second = second.await;
        assert!(!turns.contended());
        // A wait given up (its read's stream dropped) stops counting at once.
        let third = turns.take();
        {
            let mut third = std::pin::pin!(third);
            assert!(futures::poll!(third.as_mut()).is_pending());
            assert!(turns.contended());
        }
        assert!(!turns.contended());
        drop(second);
        // A pool never has fewer than one connection.
        drop(LogTurns::new(0).take().await);
    }

    #[test]
    fn lines_keep_their_time() {
        let lines = parse(
            "build",
            &piece(b"2026-01-01T00:00:01.250000000Z make: done", false),
            None,
        );
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].line, "make: done");
        assert_eq!(
            lines[0].time,
            "2026-01-01T00:00:01.25Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(lines[0].step, "build");
    }

    #[test]
    fn a_line_without_a_time_is_kept_whole() {
        let lines = parse("build", &piece(b"no time here", false), None);
        assert_eq!(lines[0].line, "no time here");
    }

    #[test]
    fn binary_is_escaped_and_a_continued_piece_has_the_time_of_its_line() {
        let first = parse(
            "build",
            &piece(b"2026-01-01T00:00:01.250000000Z bin\xff\x00", false),
            None,
        );
        assert_eq!(first[0].line, "bin\\xff\\x00");
        // Its continuation starts with what looks like a time: it is text all the same.
        let rest = parse(
            "build",
            &piece(b"2026-02-02T00:00:00Z more", true),
            Some(first[0].time),
        );
        assert_eq!(rest[0].line, "2026-02-02T00:00:00Z more");
        assert_eq!(rest[0].time, first[0].time);
    }

    #[tokio::test]
    async fn a_long_line_is_read_in_pieces() {
        let text = "x".repeat(MAX_LINE_BYTES * 2 + 10);
        let raw = format!("2026-01-01T00:00:01.250000000Z {text}\n2026-01-01T00:00:02Z next\n");
        let got: Vec<EngineLine> = pieces(futures::io::Cursor::new(raw.into_bytes()))
            .map(|p| p.unwrap())
            .scan(None, |previous, p| {
                let lines = parse("build", &p, *previous);
                *previous = lines.last().map(|l| l.time);
                futures::future::ready(Some(lines))
            })
            .flat_map(futures::stream::iter)
            .collect()
            .await;
        // Pieces of the bound at most, the line whole again when put together, one time.
        let (next, long) = got.split_last().unwrap();
        assert!(long.len() >= 3, "{}", long.len());
        assert!(long.iter().all(|l| l.line.len() <= MAX_LINE_BYTES));
        assert!(long.iter().all(|l| l.time == long[0].time));
        assert_eq!(
            long.iter().map(|l| l.line.as_str()).collect::<String>(),
            text
        );
        assert_eq!(next.line, "next");
    }
}
