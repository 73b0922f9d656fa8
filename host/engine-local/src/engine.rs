//! [`LocalEngine`]: the [`Engine`] trait over a [`LocalRunner`].
//!
//! Each submitted job is planned ([`Plan::from_rendered`]; what the local engine cannot run is
//! rejected with the reason), started, and tracked in memory: its progress as a snapshot that
//! followers diff, and its log lines in order, spooled to a file in the job's directory
//! ([`crate::spool`]: no memory per line, so a job that prints without end costs none), up to
//! `max_log_bytes` counted with what each line costs beyond its text, then a marker line. It takes no job while the sandbox
//! cannot start on this host ([`EngineError::Unavailable`], saying why; `/readyz` shows it).
//! The engine keeps nothing across a restart of the process that owns it — the steps'
//! processes die with it (bubblewrap's `--die-with-parent`) — so after
//! a restart it does not know the jobs it ran ([`EngineError::UnknownJob`]). Their
//! directories stay until [`Engine::cleanup`] (a purge) or until `keep_finished` after the job
//! ended ([`LocalEngine::sweep`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use omni_engine::{
    Engine, EngineError, EngineJob, EngineLine, JobId, LogCursor, LogStream, LogStreamOf,
    OUTPUT_VOLUME, Outcome, Output, Progress, ProgressStream, StepState,
};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::outputs::Outputs;
use crate::spool::Spool;
use crate::sweep::{ENDED, sweep};
use crate::{
    Canceller, Event, Isolation, LocalEngineConfig, LocalRunner, Outcome as RunOutcome, Plan,
    Sandbox,
};

/// Where a job is, as followers see it: they compare snapshots and report what changed.
/// The most lines a follower reads from a spool at once.
const READ_CHUNK: usize = 1000;

/// How often, at most, the engine looks for job directories to remove.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// What keeping `line` costs: its text, its step's name and the line's own record (a million
/// empty lines are not free).
fn line_cost(line: &EngineLine) -> u64 {
    (line.line.len() + line.step.len() + std::mem::size_of::<EngineLine>()) as u64
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    running: bool,
    steps: Vec<StepState>,
    outcome: Option<Outcome>,
}

#[derive(Debug)]
struct Tracked {
    /// The job's directory.
    dir: PathBuf,
    steps: Vec<String>,
    progress: watch::Sender<Snapshot>,
    lines: watch::Sender<Lines>,
    spool: Spool,
    max_log_bytes: u64,
    canceller: Canceller,
    /// The job's output volume, and its files as last seen (after each step, and at the end).
    output_dir: PathBuf,
    outputs: Mutex<Outputs>,
}

/// A job's log as the engine keeps it: what is in its spool.
#[derive(Debug, Default, Clone, Copy)]
struct Lines {
    /// Lines appended to the spool so far.
    count: usize,
    /// The job has ended: no line follows.
    ended: bool,
    /// Bytes kept, as [`line_cost`] counts them.
    bytes: u64,
    /// The limit was reached: the marker is kept, later lines are not.
    truncated: bool,
}

/// Jobs as processes on this machine.
#[derive(Debug)]
pub struct LocalEngine {
    name: String,
    arches: Vec<String>,
    max_running: usize,
    max_log_bytes: u64,
    /// What a job's output may hold to become its artifacts.
    max_outputs: usize,
    max_output_bytes: u64,
    runner: LocalRunner,
    jobs: Arc<Mutex<HashMap<JobId, Arc<Tracked>>>>,
    /// The sandbox started here once (it is asked again until it has).
    probed: tokio::sync::OnceCell<()>,
    keep_finished: Duration,
    /// When directories were last looked for to remove.
    swept: Mutex<Option<std::time::Instant>>,
}

impl LocalEngine {
    /// An engine keeping job directories under `config.root`, or `default_root` when it names
    /// none.
    pub fn new(config: &LocalEngineConfig, default_root: PathBuf) -> Self {
        LocalEngine {
            name: config.name.clone(),
            arches: config.arches.clone(),
            max_running: config.max_running.max(1),
            max_log_bytes: config.max_log_bytes,
            max_outputs: config.max_outputs,
            max_output_bytes: config.max_output_mib.saturating_mul(1024 * 1024),
            runner: LocalRunner::with_isolation(
                config.root.clone().unwrap_or(default_root),
                if config.unsandboxed {
                    Isolation::Unsandboxed
                } else {
                    Isolation::Sandboxed(Arc::new(Sandbox::new(config.sandbox.clone())))
                },
            ),
            jobs: Arc::default(),
            probed: tokio::sync::OnceCell::new(),
            keep_finished: config.keep_finished,
            swept: Mutex::new(None),
        }
    }

    /// Removes the directories of jobs that ended more than `keep_finished` before `now` (by
    /// the time of their `ended` file), and of jobs this engine does not run that were last
    /// changed that long before (left by a crash or an earlier run); forgets those jobs.
    /// Returns how many it removed. Runs by itself at most once an hour, when jobs are
    /// submitted.
    ///
    /// # Errors
    /// [`EngineError::Failed`] when the root cannot be listed.
    pub async fn sweep(&self, now: SystemTime) -> Result<usize, EngineError> {
        self.sweeping(now)
            .await
            .map_err(|message| EngineError::Failed {
                engine: self.name.clone(),
                message,
            })
    }

    /// [`LocalEngine::sweep`], as a future that holds nothing of the engine.
    fn sweeping(
        &self,
        now: SystemTime,
    ) -> impl std::future::Future<Output = Result<usize, String>> + Send + 'static {
        let jobs = Arc::clone(&self.jobs);
        let (runner, keep) = (self.runner.clone(), self.keep_finished);
        async move {
            let running: Vec<JobId> = jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter(|(_, tracked)| !tracked.lines.borrow().ended)
                .map(|(id, _)| *id)
                .collect();
            let removed = tokio::task::spawn_blocking(move || sweep(&runner, &running, keep, now))
                .await
                .map_err(|e| e.to_string())??;
            let mut jobs = jobs.lock().unwrap_or_else(PoisonError::into_inner);
            for id in &removed {
                jobs.remove(id);
            }
            Ok(removed.len())
        }
    }

    /// [`LocalEngine::sweep`] in the background, when the last was an hour ago or more.
    fn sweep_now_and_then(&self) {
        let mut swept = self.swept.lock().unwrap_or_else(PoisonError::into_inner);
        if swept.is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
            return;
        }
        *swept = Some(std::time::Instant::now());
        let (sweeping, name) = (self.sweeping(SystemTime::now()), self.name.clone());
        tokio::spawn(async move {
            match sweeping.await {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::info!(engine = %name, removed, "removed the directories of jobs that ended long ago");
                }
                Err(error) => {
                    tracing::warn!(engine = %name, %error, "cannot sweep job directories");
                }
            }
        });
    }

    /// Whether steps run without the sandbox (`unsandboxed = true`).
    pub fn unsandboxed(&self) -> bool {
        matches!(self.runner.isolation(), Isolation::Unsandboxed)
    }

    /// Fails, saying why, when the sandbox cannot start on this host.
    async fn sandbox_ready(&self) -> Result<(), EngineError> {
        self.probed
            .get_or_try_init(|| self.runner.probe())
            .await
            .map(|_| ())
            .map_err(|message| EngineError::Unavailable {
                engine: self.name.clone(),
                message: format!(
                    "{message} (install bubblewrap, or set `unsandboxed = true` on this engine to run jobs with no isolation)"
                ),
            })
    }

    /// The runner (where job directories and artifacts are).
    pub fn runner(&self) -> &LocalRunner {
        &self.runner
    }

    fn tracked(&self, id: JobId) -> Option<Arc<Tracked>> {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    fn unknown(&self, id: JobId) -> EngineError {
        EngineError::UnknownJob {
            engine: self.name.clone(),
            id,
        }
    }
}

#[async_trait]
impl Engine for LocalEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "local"
    }

    fn arches(&self) -> &[String] {
        &self.arches
    }

    fn max_running(&self) -> usize {
        self.max_running
    }

    /// The objects' namespace means nothing on this machine; plugins render for this one.
    fn namespace(&self) -> &str {
        omni_engine::DEFAULT_NAMESPACE
    }

    fn warnings(&self) -> Vec<String> {
        if self.unsandboxed() {
            vec![
                "unsandboxed: every step runs as a plain process of the server's user, with no \
                 isolation (unsandboxed = true)"
                    .to_owned(),
            ]
        } else {
            Vec::new()
        }
    }

    async fn check(&self) -> Result<(), EngineError> {
        let root = self.runner.root().to_owned();
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(|e| EngineError::Unavailable {
                engine: self.name.clone(),
                message: format!("cannot create {}: {e}", root.display()),
            })?;
        self.sandbox_ready().await
    }

    async fn submit(&self, job: &EngineJob) -> Result<(), EngineError> {
        let mut plan = Plan::from_rendered(&job.rendered).map_err(|e| EngineError::Rejected {
            engine: self.name.clone(),
            message: e.to_string(),
        })?;
        plan.arch = Some(job.arch.clone());
        let steps: Vec<String> = plan.steps.iter().map(|s| s.name.clone()).collect();
        self.sandbox_ready().await?;
        self.sweep_now_and_then();
        // Holding the lock while starting makes a second submit of the same job wait and then
        // find it, rather than start it twice.
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if jobs.contains_key(&job.id) {
            return Ok(());
        }
        let mut run = self
            .runner
            .start_with(&job.id.to_string(), plan, job.inputs.clone())
            .map_err(|e| EngineError::Failed {
                engine: self.name.clone(),
                message: e.to_string(),
            })?;
        let spool = match Spool::create(run.dir()) {
            Ok(spool) => spool,
            Err(e) => {
                run.cancel();
                return Err(EngineError::Failed {
                    engine: self.name.clone(),
                    message: format!("cannot write the job's log in {}: {e}", run.dir().display()),
                });
            }
        };
        let tracked = Arc::new(Tracked {
            dir: run.dir().to_owned(),
            spool,
            progress: watch::Sender::new(Snapshot {
                running: false,
                steps: vec![StepState::Pending; steps.len()],
                outcome: None,
            }),
            lines: watch::Sender::new(Lines::default()),
            max_log_bytes: self.max_log_bytes,
            canceller: run.canceller(),
            steps,
            output_dir: self.runner.volume_dir(&job.id.to_string(), OUTPUT_VOLUME),
            outputs: Mutex::new(Outputs::default()),
        });
        jobs.insert(job.id, Arc::clone(&tracked));
        drop(jobs);
        tracing::info!(engine = %self.name, job = %job.id, dir = %run.dir().display(), "local job started");
        tokio::spawn(
            async move {
                while let Some(event) = run.events.recv().await {
                    // The outputs are looked at before followers hear of a step's end or the
                    // job's, so that they are known when the end is.
                    match &event {
                        Event::StepEnded { step, .. } => scan(&tracked, Some(step.clone())).await,
                        Event::Ended(_) => scan(&tracked, None).await,
                        _ => {}
                    }
                    if record(&tracked, event) {
                        break;
                    }
                }
            }
            .in_current_span(),
        );
        Ok(())
    }

    fn progress(&self, id: JobId) -> ProgressStream {
        let Some(tracked) = self.tracked(id) else {
            return futures::stream::iter([Err(self.unknown(id))]).boxed();
        };
        let receiver = tracked.progress.subscribe();
        let names = tracked.steps.clone();
        let empty = Snapshot {
            running: false,
            steps: vec![StepState::Pending; names.len()],
            outcome: None,
        };
        futures::stream::unfold(
            (receiver, empty, Vec::<Progress>::new(), false),
            move |(mut receiver, mut seen, mut pending, mut done)| {
                let names = names.clone();
                async move {
                    loop {
                        if let Some(item) = pending.pop() {
                            return Some((Ok(item), (receiver, seen, pending, done)));
                        }
                        if done {
                            return None;
                        }
                        let now = receiver.borrow_and_update().clone();
                        let mut changes = diff(&names, &seen, &now);
                        done = now.outcome.is_some();
                        seen = now;
                        if changes.is_empty() && !done && receiver.changed().await.is_err() {
                            // The engine forgot the job (cleanup) while it was followed.
                            return None;
                        }
                        changes.reverse();
                        pending = changes;
                    }
                }
            },
        )
        .boxed()
    }

    fn logs(&self, id: JobId, after: Option<LogCursor>) -> LogStreamOf {
        let Some(tracked) = self.tracked(id) else {
            return futures::stream::iter([Err(self.unknown(id))]).boxed();
        };
        let receiver = tracked.lines.subscribe();
        let steps = tracked.steps.clone();
        let name = self.name.clone();
        // The state is gone once reading failed: the error was the stream's last item.
        futures::stream::unfold(
            Some((receiver, None, 0usize, 0usize, Vec::<EngineLine>::new())),
            move |state| {
                let (steps, tracked, name) = (steps.clone(), Arc::clone(&tracked), name.clone());
                let after = after.clone();
                async move {
                    let (mut receiver, mut reader, mut read, mut seen_at_time, mut ready) = state?;
                    loop {
                        if let Some(line) = ready.pop() {
                            let state = (receiver, reader, read, seen_at_time, ready);
                            return Some((Ok(line), Some(state)));
                        }
                        let Lines { count, ended, .. } = *receiver.borrow_and_update();
                        if count > read {
                            // A chunk at a time: a follower that comes late to a long log
                            // holds only a chunk of it.
                            let upto = count.min(read + READ_CHUNK);
                            let next = tracked.spool.flush().and_then(|()| {
                                let reader = match &mut reader {
                                    Some(reader) => reader,
                                    None => reader.insert(tracked.spool.reader()?),
                                };
                                (read..upto).map(|_| reader.next_line()).collect()
                            });
                            let lines: Vec<EngineLine> = match next {
                                Ok(lines) => lines,
                                Err(e) => {
                                    let error = EngineError::Failed {
                                        engine: name,
                                        message: format!("cannot read the job's log: {e}"),
                                    };
                                    return Some((Err(error), None));
                                }
                            };
                            read = upto;
                            ready.extend(lines.into_iter().filter(|line| {
                                after
                                    .as_ref()
                                    .is_none_or(|c| c.admits(&steps, line, &mut seen_at_time))
                            }));
                            ready.reverse();
                            continue;
                        }
                        if ended || receiver.changed().await.is_err() {
                            return None;
                        }
                    }
                }
            },
        )
        .boxed()
    }

    async fn cancel(&self, id: JobId) -> Result<(), EngineError> {
        if let Some(tracked) = self.tracked(id) {
            tracked.canceller.cancel();
        }
        Ok(())
    }

    async fn outputs(&self, id: JobId) -> Result<Vec<Output>, EngineError> {
        let tracked = self.tracked(id).ok_or_else(|| self.unknown(id))?;
        if tracked.progress.borrow().outcome.is_none() {
            return Err(EngineError::Failed {
                engine: self.name.clone(),
                message: format!("job {id} has not ended: its outputs are not known yet"),
            });
        }
        let outputs = tracked
            .outputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .list(&tracked.output_dir);
        let bytes: u64 = outputs.iter().map(|o| o.size).sum();
        if outputs.len() > self.max_outputs || bytes > self.max_output_bytes {
            return Err(EngineError::Failed {
                engine: self.name.clone(),
                message: format!(
                    "the job left {} files of {bytes} bytes in its output, more than this engine keeps ({} files, {} bytes: max_outputs, max_output_mib)",
                    outputs.len(),
                    self.max_outputs,
                    self.max_output_bytes
                ),
            });
        }
        Ok(outputs)
    }

    async fn cleanup(&self, id: JobId) -> Result<(), EngineError> {
        let tracked = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        if let Some(tracked) = tracked {
            // A job still running is stopped first, so nothing writes into its directory while
            // it is removed.
            tracked.canceller.cancel();
            let mut receiver = tracked.progress.subscribe();
            let _ = receiver.wait_for(|s| s.outcome.is_some()).await;
        }
        let runner = self.runner.clone();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || runner.remove(&id.to_string()))
            .await
            .map_err(|e| EngineError::Failed {
                engine: name.clone(),
                message: e.to_string(),
            })?
            .map_err(|e| EngineError::Failed {
                engine: name,
                message: format!("cannot remove the job's directory: {e}"),
            })
    }
}

/// Looks at the job's output volume after `step` ended (`None`: the job's end), off the
/// runtime's threads (a repository's output is thousands of files).
async fn scan(tracked: &Arc<Tracked>, step: Option<String>) {
    let tracked = Arc::clone(tracked);
    let looked = tokio::task::spawn_blocking(move || {
        tracked
            .outputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .scan(&tracked.output_dir, step.as_deref());
    })
    .await;
    if let Err(error) = looked {
        tracing::error!(%error, "looking at a job's output failed");
    }
}

/// Applies one runner event to a tracked job; true once the run has ended.
fn record(tracked: &Tracked, event: Event) -> bool {
    let index = |step: &str| tracked.steps.iter().position(|s| s == step);
    match event {
        Event::StepStarted { step } => {
            tracked.progress.send_modify(|s| {
                s.running = true;
                if let Some(i) = index(&step) {
                    s.steps[i] = StepState::Running;
                }
            });
        }
        Event::Line { step, stderr, line } => {
            let line = EngineLine {
                step,
                stream: if stderr {
                    LogStream::Stderr
                } else {
                    LogStream::Stdout
                },
                time: Utc::now(),
                line,
            };
            let max = tracked.max_log_bytes;
            tracked.lines.send_if_modified(|kept| {
                if kept.truncated {
                    return false;
                }
                let cost = line_cost(&line);
                let kept_line = if kept.bytes + cost > max {
                    kept.truncated = true;
                    EngineLine {
                        stream: LogStream::Stderr,
                        line: format!(
                            "[omni] the local engine keeps at most {max} bytes of a job's log (text and per-line bookkeeping): the lines the job prints from here on are dropped"
                        ),
                        ..line
                    }
                } else {
                    kept.bytes += cost;
                    line
                };
                match tracked.spool.append(&kept_line) {
                    Ok(()) => kept.count += 1,
                    Err(error) => {
                        // A full disk: the job runs on, its later lines are lost (and said so).
                        tracing::error!(%error, "cannot write a job's log: its later lines are dropped");
                        kept.truncated = true;
                    }
                }
                true
            });
        }
        Event::StepEnded { step, exit_code } => {
            tracked.progress.send_modify(|s| {
                if let Some(i) = index(&step) {
                    s.steps[i] = if exit_code == Some(0) {
                        StepState::Succeeded
                    } else {
                        StepState::Failed
                    };
                }
            });
        }
        Event::Ended(outcome) => {
            let outcome = match outcome {
                RunOutcome::Succeeded => Outcome::Succeeded,
                RunOutcome::Failed(message) | RunOutcome::DeadlineExceeded(message) => {
                    Outcome::Failed(message)
                }
                RunOutcome::Cancelled => Outcome::Cancelled("cancelled".to_owned()),
            };
            // Its end's time, for the sweep that removes the directory later.
            if let Err(error) = std::fs::write(tracked.dir.join(ENDED), b"") {
                tracing::warn!(%error, "cannot mark a job's directory as ended");
            }
            // Lines first: a follower that sees the end has every line.
            tracked.lines.send_modify(|kept| kept.ended = true);
            tracked.progress.send_modify(|s| {
                let failed = !matches!(outcome, Outcome::Succeeded);
                // A step that could not start is the one that failed.
                let mut blamed = s.steps.contains(&StepState::Failed);
                for step in &mut s.steps {
                    *step = match *step {
                        StepState::Running if failed => StepState::Failed,
                        StepState::Pending if failed && !blamed => {
                            blamed = true;
                            StepState::Failed
                        }
                        StepState::Pending if failed => StepState::Skipped,
                        other => other,
                    };
                    if *step == StepState::Failed {
                        blamed = true;
                    }
                }
                s.running = true;
                s.outcome = Some(outcome);
            });
            return true;
        }
    }
    false
}

/// What changed from `before` to `after`, in the order a follower should hear it.
fn diff(names: &[String], before: &Snapshot, after: &Snapshot) -> Vec<Progress> {
    let mut changes = Vec::new();
    if after.running && !before.running {
        changes.push(Progress::Running);
    }
    for ((name, old), new) in names.iter().zip(&before.steps).zip(&after.steps) {
        if old != new {
            changes.push(Progress::Step {
                name: name.clone(),
                state: *new,
            });
        }
    }
    if let (None, Some(outcome)) = (&before.outcome, &after.outcome) {
        changes.push(Progress::Ended(outcome.clone()));
    }
    changes
}
