//! A scripted engine for tests (feature `testing`): [`Scripted`] keeps its jobs in memory and
//! does nothing by itself. The test plays each job's life ([`Scripted::play`] with [`Act`]s:
//! it starts, its steps move, it prints, it ends, or the engine loses it), decides how the
//! engine answers submissions ([`Scripted::answer`]: accept, be unavailable, reject, or take
//! the job and never answer), sets its capacity, and reads what it was given and asked
//! ([`Scripted::submits`], [`Scripted::cancels`], [`Scripted::cleanups`]).
//!
//! It is an [`Engine`] like the others: its progress and log streams follow the trait's
//! contract (where a job is on attaching, then every change; lines after a cursor, until the
//! job has ended) and it passes the conformance suite (`omni-engine`'s `tests/conformance.rs`),
//! so what a scheduler test learns against it holds for the real engines.
//!
//! Its progress and log streams, which wait for the test's next act, are in `streams`.
//!
//! ```ignore
//! let engine = Scripted::builder("a").max_running(1).build();
//! // ... the scheduler submits a job ...
//! engine.play(id, [Act::Run, Act::Step("build".into(), StepState::Running)]);
//! engine.play(id, [Act::Log("build".into(), "hello".into()), Act::End(Outcome::Succeeded)]);
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::watch;

mod streams;

use crate::{
    Engine, EngineError, EngineJob, EngineLine, JobId, LogCursor, LogStream, LogStreamOf, Outcome,
    Progress, ProgressStream, StepState,
};

/// One thing that happens to a job on a [`Scripted`] engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// It waits to start ([`Progress::Waiting`]), for the reason given.
    Wait(Option<String>),
    /// Its first step started ([`Progress::Running`]).
    Run,
    /// The step moved.
    Step(String, StepState),
    /// The step printed a line on stdout.
    Log(String, String),
    /// The step printed a line on stderr.
    LogErr(String, String),
    /// It ended; nothing follows (later acts but [`Act::Lose`] are ignored).
    End(Outcome),
    /// The engine no longer has it (removed by someone else, or an engine that keeps nothing
    /// restarted): its streams end with [`EngineError::UnknownJob`].
    Lose,
}

/// How a [`Scripted`] engine answers [`Engine::submit`] (and [`Engine::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// It takes the job (a job it has already is not taken twice).
    Accept,
    /// It cannot be reached: [`EngineError::Unavailable`], the job is not taken.
    Unavailable,
    /// It refuses the job's objects: [`EngineError::Rejected`] with this message.
    Reject(String),
    /// It takes the job, then never answers (a caller that dies while waiting).
    AcceptAndHang,
}

/// How a [`Scripted`] engine is made: its name, arches, capacity and namespace.
#[derive(Debug, Clone)]
pub struct ScriptedBuilder {
    name: String,
    arches: Vec<String>,
    max_running: usize,
    namespace: String,
}

impl ScriptedBuilder {
    /// The API arches it runs jobs for (`x86_64` unless set).
    #[must_use]
    pub fn arches(mut self, arches: &[&str]) -> Self {
        self.arches = arches.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// How many jobs it runs at once at most (2 unless set; [`Scripted::set_max_running`]
    /// changes it later).
    #[must_use]
    pub fn max_running(mut self, max: usize) -> Self {
        self.max_running = max;
        self
    }

    /// The namespace its jobs' objects are rendered for ([`crate::DEFAULT_NAMESPACE`] unless
    /// set).
    #[must_use]
    pub fn namespace(mut self, namespace: &str) -> Self {
        namespace.clone_into(&mut self.namespace);
        self
    }

    /// The engine.
    pub fn build(self) -> Arc<Scripted> {
        let (changed, _) = watch::channel(0);
        Arc::new(Scripted {
            name: self.name,
            arches: self.arches,
            max_running: AtomicUsize::new(self.max_running),
            namespace: self.namespace,
            state: Arc::new(Mutex::new(State {
                answer: Answer::Accept,
                jobs: HashMap::new(),
                scripts: HashMap::new(),
                submits: Vec::new(),
                cancels: Vec::new(),
                cleanups: Vec::new(),
            })),
            changed: Arc::new(changed),
        })
    }
}

/// An engine whose jobs do what the test plays (see the module's documentation).
#[derive(Debug)]
pub struct Scripted {
    name: String,
    arches: Vec<String>,
    max_running: AtomicUsize,
    namespace: String,
    state: Arc<Mutex<State>>,
    /// Bumped on every change, so that open streams look again.
    changed: Arc<watch::Sender<u64>>,
}

#[derive(Debug)]
struct State {
    answer: Answer,
    jobs: HashMap<JobId, Job>,
    /// Acts played as soon as the job is first taken.
    scripts: HashMap<JobId, Vec<Act>>,
    submits: Vec<EngineJob>,
    cancels: Vec<JobId>,
    cleanups: Vec<JobId>,
}

/// A job the engine has.
#[derive(Debug, Default)]
struct Job {
    /// Every change, in order (the snapshot of a stream that attaches is made from these).
    changes: Vec<Progress>,
    started: bool,
    waiting: Option<Option<String>>,
    /// The steps in the order they first appeared, with their state.
    steps: Vec<(String, StepState)>,
    lines: Vec<EngineLine>,
    outcome: Option<Outcome>,
}

impl Job {
    /// Where the job is now, as a stream that attaches first tells it.
    fn snapshot(&self) -> Vec<Progress> {
        let mut now = Vec::new();
        if self.started {
            now.push(Progress::Running);
        } else if let Some(reason) = &self.waiting {
            now.push(Progress::Waiting {
                reason: reason.clone(),
            });
        }
        now.extend(self.steps.iter().map(|(name, state)| Progress::Step {
            name: name.clone(),
            state: *state,
        }));
        now.extend(self.outcome.clone().map(Progress::Ended));
        now
    }

    fn step_names(&self) -> Vec<String> {
        self.steps.iter().map(|(name, _)| name.clone()).collect()
    }

    fn step(&mut self, name: &str, state: StepState) {
        match self.steps.iter_mut().find(|(n, _)| n == name) {
            Some((_, s)) => *s = state,
            None => self.steps.push((name.to_owned(), state)),
        }
        self.changes.push(Progress::Step {
            name: name.to_owned(),
            state,
        });
    }

    fn line(&mut self, step: &str, stream: LogStream, line: String) {
        if !self.steps.iter().any(|(n, _)| n == step) {
            self.step(step, StepState::Running);
        }
        self.lines.push(EngineLine {
            step: step.to_owned(),
            stream,
            time: Utc::now(),
            line,
        });
    }

    /// Plays `act`; `false` when the job is to be forgotten.
    fn play(&mut self, act: Act) -> bool {
        if self.outcome.is_some() {
            return act != Act::Lose;
        }
        match act {
            Act::Wait(reason) => {
                self.waiting = Some(reason.clone());
                self.changes.push(Progress::Waiting { reason });
            }
            Act::Run => {
                self.started = true;
                self.changes.push(Progress::Running);
            }
            Act::Step(name, state) => self.step(&name, state),
            Act::Log(step, line) => self.line(&step, LogStream::Stdout, line),
            Act::LogErr(step, line) => self.line(&step, LogStream::Stderr, line),
            Act::End(outcome) => {
                self.outcome = Some(outcome.clone());
                self.changes.push(Progress::Ended(outcome));
            }
            Act::Lose => return false,
        }
        true
    }
}

impl Scripted {
    /// An engine named `name`: arch `x86_64`, 2 jobs at once, the default namespace.
    pub fn builder(name: &str) -> ScriptedBuilder {
        ScriptedBuilder {
            name: name.to_owned(),
            arches: vec!["x86_64".to_owned()],
            max_running: 2,
            namespace: crate::DEFAULT_NAMESPACE.to_owned(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a submission and answers it; an accepted job the engine did not have is taken.
    fn take(&self, job: &EngineJob) -> Result<Answer, EngineError> {
        let mut state = self.lock();
        state.submits.push(job.clone());
        match &state.answer {
            Answer::Unavailable => {
                return Err(EngineError::Unavailable {
                    engine: self.name.clone(),
                    message: "scripted to be unavailable".into(),
                });
            }
            Answer::Reject(message) => {
                return Err(EngineError::Rejected {
                    engine: self.name.clone(),
                    message: message.clone(),
                });
            }
            Answer::Accept | Answer::AcceptAndHang => {}
        }
        if !state.jobs.contains_key(&job.id) {
            let mut taken = Job::default();
            let mut keep = true;
            for act in state.scripts.remove(&job.id).unwrap_or_default() {
                keep = keep && taken.play(act);
            }
            if keep {
                state.jobs.insert(job.id, taken);
            }
        }
        Ok(state.answer.clone())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// From now on, submissions are answered so.
    pub fn answer(&self, answer: Answer) {
        self.lock().answer = answer;
    }

    /// Its capacity from now on.
    pub fn set_max_running(&self, max: usize) {
        self.max_running.store(max, Ordering::SeqCst);
    }

    /// Acts to play on job `id` as soon as the engine takes it (a job that runs by itself).
    pub fn prepare(&self, id: JobId, acts: impl IntoIterator<Item = Act>) {
        self.lock().scripts.entry(id).or_default().extend(acts);
    }

    /// Plays `acts` on job `id`, in order.
    ///
    /// # Panics
    /// When the engine does not have the job (the test's script is wrong).
    pub fn play(&self, id: JobId, acts: impl IntoIterator<Item = Act>) {
        let mut state = self.lock();
        let job = state
            .jobs
            .get_mut(&id)
            .unwrap_or_else(|| panic!("engine {} does not have job {id}", self.name));
        let mut keep = true;
        for act in acts {
            keep = keep && job.play(act);
        }
        if !keep {
            state.jobs.remove(&id);
        }
        drop(state);
        self.bump();
    }

    /// Whether the engine has job `id` (it took it, and has not lost or cleaned it up).
    pub fn has(&self, id: JobId) -> bool {
        self.lock().jobs.contains_key(&id)
    }

    /// The jobs it has, in no order.
    pub fn jobs(&self) -> Vec<JobId> {
        self.lock().jobs.keys().copied().collect()
    }

    /// Every submission it was given, taken or not, in order.
    pub fn submits(&self) -> Vec<EngineJob> {
        self.lock().submits.clone()
    }

    /// The ids of the submissions it was given, in order.
    pub fn submitted(&self) -> Vec<JobId> {
        self.lock().submits.iter().map(|job| job.id).collect()
    }

    /// Every job it was asked to cancel, in order.
    pub fn cancels(&self) -> Vec<JobId> {
        self.lock().cancels.clone()
    }

    /// Every job it was asked to clean up, in order.
    pub fn cleanups(&self) -> Vec<JobId> {
        self.lock().cleanups.clone()
    }
}

#[async_trait]
impl Engine for Scripted {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn arches(&self) -> &[String] {
        &self.arches
    }

    fn max_running(&self) -> usize {
        self.max_running.load(Ordering::SeqCst)
    }

    fn namespace(&self) -> &str {
        &self.namespace
    }

    async fn check(&self) -> Result<(), EngineError> {
        if self.lock().answer == Answer::Unavailable {
            return Err(EngineError::Unavailable {
                engine: self.name.clone(),
                message: "scripted to be unavailable".into(),
            });
        }
        Ok(())
    }

    async fn submit(&self, job: &EngineJob) -> Result<(), EngineError> {
        let answer = self.take(job)?;
        self.bump();
        if answer == Answer::AcceptAndHang {
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    fn progress(&self, id: JobId) -> ProgressStream {
        streams::progress(self, id)
    }

    fn logs(&self, id: JobId, after: Option<LogCursor>) -> LogStreamOf {
        streams::logs(self, id, after)
    }

    async fn cancel(&self, id: JobId) -> Result<(), EngineError> {
        let mut state = self.lock();
        state.cancels.push(id);
        if let Some(job) = state.jobs.get_mut(&id)
            && job.outcome.is_none()
        {
            let running: Vec<String> = job
                .steps
                .iter()
                .filter(|(_, s)| *s == StepState::Running)
                .map(|(name, _)| name.clone())
                .collect();
            for name in running {
                job.step(&name, StepState::Failed);
            }
            job.play(Act::End(Outcome::Cancelled("cancelled".into())));
        }
        drop(state);
        self.bump();
        Ok(())
    }

    async fn cleanup(&self, id: JobId) -> Result<(), EngineError> {
        let mut state = self.lock();
        state.cleanups.push(id);
        state.jobs.remove(&id);
        drop(state);
        self.bump();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn job() -> EngineJob {
        let id = uuid_like();
        EngineJob {
            inputs: Default::default(),
            id,
            name: format!("omni-{id}"),
            namespace: crate::DEFAULT_NAMESPACE.into(),
            task: "t".into(),
            arch: "x86_64".into(),
            rendered: crate::Rendered {
                manifests: Vec::new(),
                primary: format!("omni-{id}"),
            },
        }
    }

    /// A fresh id (the crate has no uuid dependency of its own outside the suite).
    fn uuid_like() -> JobId {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        JobId::from_u128(NEXT.fetch_add(1, Ordering::SeqCst) as u128)
    }

    #[tokio::test]
    async fn a_lost_job_ends_the_streams_that_follow_it_as_unknown() {
        let engine = Scripted::builder("a").build();
        let job = job();
        engine.submit(&job).await.unwrap();
        engine.play(job.id, [Act::Run]);
        let mut progress = engine.progress(job.id);
        let mut logs = engine.logs(job.id, None);
        assert_eq!(progress.next().await.unwrap().unwrap(), Progress::Running);
        engine.play(job.id, [Act::Lose]);
        assert!(matches!(
            progress.next().await,
            Some(Err(EngineError::UnknownJob { .. }))
        ));
        assert!(progress.next().await.is_none());
        assert!(matches!(
            logs.next().await,
            Some(Err(EngineError::UnknownJob { .. }))
        ));
        assert!(logs.next().await.is_none());
        assert!(!engine.has(job.id));
    }

    #[tokio::test]
    async fn submissions_are_answered_as_scripted_and_all_noted() {
        let engine = Scripted::builder("a").build();
        let job = job();
        engine.answer(Answer::Unavailable);
        assert!(matches!(
            engine.submit(&job).await,
            Err(EngineError::Unavailable { .. })
        ));
        assert!(engine.check().await.is_err());
        engine.answer(Answer::Reject("no command".into()));
        let refused = engine.submit(&job).await.unwrap_err();
        assert!(refused.to_string().contains("no command"), "{refused}");
        assert!(!engine.has(job.id));
        engine.answer(Answer::Accept);
        engine.submit(&job).await.unwrap();
        assert!(engine.has(job.id));
        assert_eq!(engine.submitted(), [job.id, job.id, job.id]);
        engine.set_max_running(7);
        assert_eq!(engine.max_running(), 7);
    }
}
