//! # omni-engine: where jobs run, behind one trait
//!
//! An [`Engine`] takes a job's rendered manifests ([`EngineJob`]), runs them, and tells how they
//! go: [`Engine::progress`] streams the job's state and its steps' states, [`Engine::logs`] each
//! step's lines, [`Engine::cancel`] stops it and [`Engine::cleanup`] removes what it left. The
//! scheduler (`omni-scheduler`) holds engines as `Arc<dyn Engine>` and never knows which kind it
//! talks to; every implementation passes the same conformance suite (`conformance`, feature
//! `conformance`), and so does the scripted engine tests drive by hand (`testing`, feature
//! `testing`).
//!
//! Implementations: `omni-engine-local` (processes on this machine) and `omni-engine-kube`
//! (a Kubernetes cluster through kube). This crate does no I/O and knows nothing of HTTP or the
//! store's backends; it speaks `omni-core`'s model (`JobId`, `StepState`, `LogStream`, `Rendered`)
//! and builds no plugin host.
//!
//! # Layout
//! - [`Engine`], [`EngineJob`] (with its [`Inputs`]), [`Progress`], [`Outcome`], [`EngineLine`], [`LogCursor`],
//!   [`Output`], [`EngineError`]: the boundary.
//! - [`text`]: what a step prints made into lines the same way by every engine (bounded pieces,
//!   binary escaped).
//! - `conformance`: the suite (feature `conformance`).
//! - `testing`: [`Scripted`](testing::Scripted), an in-memory engine whose jobs do what a test
//!   plays, for the scheduler's unit tests (feature `testing`).

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
pub use omni_core::{DEFAULT_NAMESPACE, JobId, LogStream, Manifest, Rendered, StepState};

#[cfg(feature = "conformance")]
#[doc(hidden)]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;
pub mod text;

/// A job handed to an engine: its rendered objects and where they go.
#[derive(Debug, Clone)]
pub struct EngineJob {
    /// The job's id; the engine finds the job by it (labels, directories).
    pub id: JobId,
    /// The name the plugin gave the job's objects (`omni-<id>`).
    pub name: String,
    /// The Kubernetes namespace the objects were rendered for.
    pub namespace: String,
    /// The job's task (for labels and logs).
    pub task: String,
    /// The job's API arch.
    pub arch: String,
    /// What the plugin rendered: the objects in apply order, and the Job to watch.
    pub rendered: Rendered,
    /// The files its steps get before the first one runs (the uploads its params name).
    pub inputs: Inputs,
}

/// The name of the pod volume an engine fills with a job's [`Inputs`] before its first step:
/// each as a file named by its sha256. A plugin whose job uses uploads declares it (an
/// `emptyDir`) and mounts it where its steps read them; a pod without it gets none.
pub const INPUTS_VOLUME: &str = "uploads";

/// A job's input files and where their bytes are read from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The files, each once.
    pub files: Vec<InputFile>,
    /// Where their bytes come from (none when there are no files).
    pub source: Option<std::sync::Arc<dyn InputSource>>,
}

/// One input file: its sha256 (lowercase hex; its name in [`INPUTS_VOLUME`]) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// The sha256 of its bytes.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Reads input files' bytes for an engine (the scheduler's, over the job's domain's uploads).
#[async_trait]
pub trait InputSource: Send + Sync + fmt::Debug {
    /// The bytes of the input with that sha256, streamed; the engine checks size and sha256.
    ///
    /// # Errors
    /// Why it cannot be read, for the job's message.
    async fn open(
        &self,
        sha256: &str,
    ) -> Result<BoxStream<'static, std::io::Result<bytes::Bytes>>, String>;
}

/// How a job ended on its engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step ended well.
    Succeeded,
    /// It failed; the message says why (the step, the exit code, a deadline, an OOM kill, an
    /// image that could not be pulled, an eviction ...).
    Failed(String),
    /// It was cancelled ([`Engine::cancel`]) or removed from the engine by someone else.
    Cancelled(String),
}

/// One thing an engine tells about a job, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The engine has the job and is starting it (scheduling, pulling images); `reason` says
    /// what it waits for, when it says.
    Waiting {
        /// Why it has not started, if known.
        reason: Option<String>,
    },
    /// The job's first step started.
    Running,
    /// A step moved.
    Step {
        /// The step (container) name.
        name: String,
        /// Where it is now.
        state: StepState,
    },
    /// The job ended; nothing follows.
    Ended(Outcome),
}

/// One line a step printed, as the engine saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineLine {
    /// The step (container) that printed it.
    pub step: String,
    /// stdout or stderr (an engine that cannot tell says stdout).
    pub stream: LogStream,
    /// When it was printed (or read, for an engine that does not stamp lines).
    pub time: DateTime<Utc>,
    /// The text, without its line ending.
    pub line: String,
}

/// Where a log stream resumes: after the `count`-th line of `step` stamped `time` (the lines
/// stored before a restart or a dropped connection). Lines before it are not sent again.
///
/// Times compare to the millisecond, the precision the store keeps, so a cursor made from
/// stored lines and one made from the engine's own lines mean the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    /// The step of the last line kept.
    pub step: String,
    /// Its time.
    pub time: DateTime<Utc>,
    /// How many lines of that step with that time (to the millisecond) were kept.
    pub count: usize,
}

impl LogCursor {
    /// The cursor just after `lines`, the last lines kept in order (none when empty).
    pub fn after(lines: &[EngineLine]) -> Option<LogCursor> {
        let last = lines.last()?;
        let time = millis(last.time);
        let count = lines
            .iter()
            .rev()
            .take_while(|l| l.step == last.step && millis(l.time) == time)
            .count();
        Some(LogCursor {
            step: last.step.clone(),
            time,
            count,
        })
    }

    /// Moves the cursor past `line`, the next line kept.
    pub fn advance(cursor: &mut Option<LogCursor>, line: &EngineLine) {
        let time = millis(line.time);
        match cursor {
            Some(c) if c.step == line.step && c.time == time => c.count += 1,
            _ => {
                *cursor = Some(LogCursor {
                    step: line.step.clone(),
                    time,
                    count: 1,
                });
            }
        }
    }

    /// Whether `line` comes after the cursor, given the job's steps in order; `seen_at_time`
    /// counts the lines of the cursor's step at the cursor's time met so far (start it at 0).
    /// Engines whose lines carry stable times resume with this.
    pub fn admits(&self, steps: &[String], line: &EngineLine, seen_at_time: &mut usize) -> bool {
        let position = |step: &str| steps.iter().position(|s| s == step);
        match (position(&self.step), position(&line.step)) {
            (Some(cursor), Some(at)) if at < cursor => return false,
            (Some(cursor), Some(at)) if at > cursor => return true,
            _ => {}
        }
        if line.step != self.step {
            return true;
        }
        let time = millis(line.time);
        let at = millis(self.time);
        if time != at {
            return time > at;
        }
        *seen_at_time += 1;
        *seen_at_time > self.count
    }
}

/// `time` to the millisecond.
fn millis(time: DateTime<Utc>) -> DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(time, 3)
}

/// A file a job left in its `output` volume, as an engine on this machine has it (the local
/// engine): its name relative to the volume, the step that last wrote it, and where it is.
/// The job's artifacts are made of these once it ended. An engine whose jobs send their
/// artifacts themselves (Kubernetes: the upload step) has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Its path relative to the output volume, `/`-separated (`repodata/repomd.xml`).
    pub name: String,
    /// The step that last wrote it, when the engine can tell.
    pub step: Option<String>,
    /// Where it is on this machine: a regular file that no process of the job can change any
    /// more.
    pub path: std::path::PathBuf,
    /// Its size when the engine looked.
    pub size: u64,
}

/// The name of the volume whose files become a job's artifacts: every plugin's templates mount
/// their output there (`OMNI_OUTPUT`).
pub const OUTPUT_VOLUME: &str = "output";

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine cannot be reached (a cluster down, a timeout): try again later. A job that
    /// could not be submitted stays queued.
    #[error("engine {engine} is unavailable: {message}")]
    Unavailable {
        /// The engine's name.
        engine: String,
        /// What went wrong.
        message: String,
    },
    /// The engine refused the job's objects (an invalid manifest): the job fails with this
    /// message, which is the engine's own.
    #[error("engine {engine} rejected the job: {message}")]
    Rejected {
        /// The engine's name.
        engine: String,
        /// What it said.
        message: String,
    },
    /// The engine has no such job (never submitted, cleaned up, or lost in a restart of an
    /// engine that keeps nothing).
    #[error("engine {engine} has no job {id}")]
    UnknownJob {
        /// The engine's name.
        engine: String,
        /// The job.
        id: JobId,
    },
    /// Anything else, with the engine's message.
    #[error("engine {engine}: {message}")]
    Failed {
        /// The engine's name.
        engine: String,
        /// What went wrong.
        message: String,
    },
}

/// Progress of one job, in order, ending after [`Progress::Ended`].
pub type ProgressStream = BoxStream<'static, Result<Progress, EngineError>>;

/// Log lines of one job, step after step, ending once the job has ended and every line was
/// sent.
pub type LogStreamOf = BoxStream<'static, Result<EngineLine, EngineError>>;

/// A place jobs run. Implementations are shared (`Arc<dyn Engine>`) and called from many tasks.
#[async_trait]
pub trait Engine: Send + Sync + fmt::Debug + 'static {
    /// Its name from the configuration (unique among engines; recorded on the jobs it runs).
    fn name(&self) -> &str;

    /// Its kind (`local`, `kubernetes`).
    fn kind(&self) -> &'static str;

    /// The API arches it runs jobs for.
    fn arches(&self) -> &[String];

    /// How many jobs it runs at once at most.
    fn max_running(&self) -> usize;

    /// The Kubernetes namespace its jobs' objects are rendered for and go to.
    fn namespace(&self) -> &str;

    /// What an operator should know of how it runs jobs, shown on `/readyz` (the local engine
    /// without its sandbox says so); none by default.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// Checks that it can take jobs now (a cluster answers, a directory is writable).
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when it cannot.
    async fn check(&self) -> Result<(), EngineError>;

    /// Starts a job. Submitting a job it already has (a retry after a crash) is not an error and
    /// starts nothing twice.
    ///
    /// # Errors
    /// [`EngineError::Rejected`] when it refuses the objects (the job should fail);
    /// [`EngineError::Unavailable`] when it cannot be reached (the job should wait).
    async fn submit(&self, job: &EngineJob) -> Result<(), EngineError>;

    /// The job's progress: first where it is now (so a caller that attaches after a restart
    /// learns its state: [`Progress::Running`] and its steps' states, or [`Progress::Ended`]),
    /// then every change, until [`Progress::Ended`]. An engine that cannot be reached for a
    /// while resumes the stream by itself.
    ///
    /// The stream yields [`EngineError::UnknownJob`] and ends when the engine does not have the
    /// job.
    fn progress(&self, id: JobId) -> ProgressStream;

    /// The job's log lines from `after` on (from the start without it), step by step, following
    /// the running step, until the job has ended and every line was sent.
    ///
    /// The stream yields [`EngineError::UnknownJob`] and ends when the engine does not have the
    /// job.
    fn logs(&self, id: JobId, after: Option<LogCursor>) -> LogStreamOf;

    /// Stops a job: its progress ends with [`Outcome::Cancelled`]. Cancelling a job that has
    /// ended or that the engine does not have is not an error.
    ///
    /// # Errors
    /// [`EngineError::Unavailable`].
    async fn cancel(&self, id: JobId) -> Result<(), EngineError>;

    /// The files the job left in its [`OUTPUT_VOLUME`], once it has ended, in name order;
    /// none by default (an engine whose jobs upload their artifacts themselves). Files that
    /// are not regular files (links, devices, sockets) are not outputs.
    ///
    /// # Errors
    /// [`EngineError::UnknownJob`]; [`EngineError::Failed`] when the job has not ended or its
    /// directory cannot be read.
    async fn outputs(&self, id: JobId) -> Result<Vec<Output>, EngineError> {
        let _ = id;
        Ok(Vec::new())
    }

    /// Removes what the job left on the engine (objects, directories, artifacts); after it, the
    /// engine does not know the job.
    ///
    /// # Errors
    /// [`EngineError::Unavailable`], [`EngineError::Failed`].
    async fn cleanup(&self, id: JobId) -> Result<(), EngineError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: &str, secs: i64) -> EngineLine {
        EngineLine {
            step: step.into(),
            stream: LogStream::Stdout,
            time: DateTime::from_timestamp(secs, 0).unwrap(),
            line: String::new(),
        }
    }

    #[test]
    fn a_cursor_skips_what_was_kept_and_no_more() {
        let steps = vec!["fetch".to_owned(), "build".to_owned()];
        let cursor = LogCursor {
            step: "build".into(),
            time: DateTime::from_timestamp(10, 0).unwrap(),
            count: 2,
        };
        let mut seen = 0;
        let kept: Vec<bool> = [
            line("fetch", 20),
            line("build", 9),
            line("build", 10),
            line("build", 10),
            line("build", 10),
            line("build", 11),
        ]
        .iter()
        .map(|l| cursor.admits(&steps, l, &mut seen))
        .collect();
        assert_eq!(kept, [false, false, false, false, true, true]);
    }
}
