//! The scripted engine's streams: each holds the engine's state and a receiver of its changes,
//! looks at the job when something changed, and waits otherwise.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::StreamExt;
use tokio::sync::watch;

use super::{Scripted, State};
use crate::{EngineError, EngineLine, JobId, LogCursor, LogStreamOf, Progress, ProgressStream};

/// Job `id`'s progress on `engine` ([`crate::Engine::progress`]).
pub(super) fn progress(engine: &Scripted, id: JobId) -> ProgressStream {
    let mut follow = ProgressFollow {
        follower: Follower::new(engine),
        id,
        pending: VecDeque::new(),
        seen: 0,
        done: false,
    };
    follow.attach();
    futures::stream::unfold(follow, ProgressFollow::next).boxed()
}

/// Job `id`'s log lines on `engine` from `after` on ([`crate::Engine::logs`]).
pub(super) fn logs(engine: &Scripted, id: JobId, after: Option<LogCursor>) -> LogStreamOf {
    let follow = LogFollow {
        follower: Follower::new(engine),
        id,
        next: 0,
        cursor: after,
        at_cursor_time: 0,
        done: false,
    };
    futures::stream::unfold(follow, LogFollow::next).boxed()
}

/// A stream's hold on the engine's state and its changes.
struct Follower {
    engine: String,
    state: Arc<Mutex<State>>,
    changes: watch::Receiver<u64>,
}

impl Follower {
    fn new(engine: &Scripted) -> Follower {
        Follower {
            engine: engine.name.clone(),
            state: Arc::clone(&engine.state),
            changes: engine.changed.subscribe(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks every change so far as seen: call before looking, so that [`Follower::wait`]
    /// misses nothing that happens after.
    fn mark(&mut self) {
        self.changes.borrow_and_update();
    }

    fn unknown(&self, id: JobId) -> EngineError {
        EngineError::UnknownJob {
            engine: self.engine.clone(),
            id,
        }
    }

    /// Waits for the next change.
    async fn wait(&mut self) {
        // The sender lives as long as the engine; a stream that outlives it waits for ever, as a
        // stream of an engine that went away would.
        if self.changes.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A progress stream: where the job was on attaching, then its changes.
struct ProgressFollow {
    follower: Follower,
    id: JobId,
    pending: VecDeque<Result<Progress, EngineError>>,
    /// How many of the job's changes the stream has taken.
    seen: usize,
    done: bool,
}

impl ProgressFollow {
    fn attach(&mut self) {
        let state = self.follower.state();
        let snapshot = state
            .jobs
            .get(&self.id)
            .map(|job| (job.snapshot(), job.changes.len()));
        drop(state);
        match snapshot {
            Some((now, seen)) => {
                self.done = now.iter().any(|p| matches!(p, Progress::Ended(_)));
                self.pending.extend(now.into_iter().map(Ok));
                self.seen = seen;
            }
            None => {
                self.pending.push_back(Err(self.follower.unknown(self.id)));
                self.done = true;
            }
        }
    }

    async fn next(mut self) -> Option<(Result<Progress, EngineError>, Self)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some((item, self));
            }
            if self.done {
                return None;
            }
            self.follower.mark();
            if !self.look() {
                self.follower.wait().await;
            }
        }
    }

    /// Takes the job's new changes; `false` when there are none.
    fn look(&mut self) -> bool {
        let state = self.follower.state();
        let new = state.jobs.get(&self.id).map(|job| {
            (
                job.changes[self.seen..].to_vec(),
                job.changes.len(),
                job.outcome.is_some(),
            )
        });
        drop(state);
        match new {
            None => {
                self.pending.push_back(Err(self.follower.unknown(self.id)));
                self.done = true;
                true
            }
            Some((changes, _, _)) if changes.is_empty() => false,
            Some((changes, seen, ended)) => {
                self.pending.extend(changes.into_iter().map(Ok));
                self.seen = seen;
                self.done = ended;
                true
            }
        }
    }
}

/// A log stream: the job's lines after the cursor, until it has ended and every line was sent.
struct LogFollow {
    follower: Follower,
    id: JobId,
    /// The index of the next line to look at.
    next: usize,
    /// The cursor, until a line passes it.
    cursor: Option<LogCursor>,
    /// Lines of the cursor's step at its time met so far ([`LogCursor::admits`]).
    at_cursor_time: usize,
    done: bool,
}

/// What a log stream finds when it looks.
enum Found {
    Line(EngineLine),
    Unknown,
    End,
    Nothing,
}

impl LogFollow {
    async fn next(mut self) -> Option<(Result<EngineLine, EngineError>, Self)> {
        if self.done {
            return None;
        }
        loop {
            self.follower.mark();
            match self.look() {
                Found::Line(line) => return Some((Ok(line), self)),
                Found::Unknown => {
                    self.done = true;
                    let unknown = self.follower.unknown(self.id);
                    return Some((Err(unknown), self));
                }
                Found::End => return None,
                Found::Nothing => self.follower.wait().await,
            }
        }
    }

    fn look(&mut self) -> Found {
        let state = self.follower.state();
        let Some(job) = state.jobs.get(&self.id) else {
            return Found::Unknown;
        };
        let steps = job.step_names();
        while let Some(line) = job.lines.get(self.next) {
            self.next += 1;
            let admitted = self
                .cursor
                .as_ref()
                .is_none_or(|c| c.admits(&steps, line, &mut self.at_cursor_time));
            if admitted {
                self.cursor = None;
                return Found::Line(line.clone());
            }
        }
        if job.outcome.is_some() {
            Found::End
        } else {
            Found::Nothing
        }
    }
}
