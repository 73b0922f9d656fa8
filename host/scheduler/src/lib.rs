//! # omni-scheduler: from a stored job to an engine, and back
//!
//! [`Scheduler`] owns the middle of a job's life. It takes `pending` jobs (announced by the job
//! service on this replica, or found in the store) into a queue as `queued`, in submission
//! order; starts each on an engine that serves its arch and has a free slot (`max_running` per
//! engine, and the optional per-domain and per-task limits of [`SchedulerConfig`]), the least
//! loaded of them; renders its objects with the task's plugin at that moment (a render error
//! fails the job with the plugin's message); and follows it on the engine: its steps, its log
//! lines (stored in batches) and its end. A job the engine refuses fails with the engine's
//! message; an engine that cannot be reached leaves the job queued and is tried again.
//!
//! The engine a job goes to is written on the job (still `queued`) before it is submitted
//! there, and `running` after: a leader that dies in between leaves a queued job with an
//! engine, which the next leader starts on that engine again at once (a submit the engine has
//! seen starts nothing twice), never on another where it would run twice.
//!
//! Scheduling happens once per cluster: the replica that holds the `scheduler` lease in the
//! store does it, renews it while it lives, and on taking it over (a start, a restart, another
//! replica's death) re-attaches to every job that engines are running. Every replica stops the
//! jobs it cancels on their engine itself ([`omni_jobs::Dispatch`]), so a cancel does not wait
//! for the leader.
//!
//! It knows the job service, the plugins and engines as `Arc<dyn Engine>`; it knows nothing of
//! HTTP or of the kind of store or engine.
//!
//! # Layout
//! - [`SchedulerConfig`]: limits and timings.
//! - [`Scheduler`]: the queue, the slots, the lease, the followers of running jobs.
//! - `follow`: one running job, its progress and its logs.
//!
//! The work on one job (queueing, starting, following, collecting its log, cancelling it on its
//! engine) runs in its [`omni_jobs::job_span`], so every log line about a job names it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use omni_core::JobContext;
use omni_engine::{Engine, EngineError, EngineJob};
use omni_jobs::{Dispatch, JobError, JobService, Lease, job_span};
use omni_store::{Job, JobId, JobQuery, JobState, StoreError};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::Instrument as _;

mod follow;

/// The lease whose holder schedules.
const LEASE: &str = "scheduler";

/// One scan in this many looks for pending jobs of any age, not only recent ones.
const FULL_SCAN_EVERY: u32 = 64;

/// Jobs being started (read, rendered, submitted) at once on one engine. A job holds its slot
/// from placement on, but its rendered objects exist only while it starts: 10,000 jobs placed
/// at once would otherwise hold 10,000 renders in memory while the engine submits a few at a
/// time.
const MAX_STARTING: usize = 64;

/// `[scheduler]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Jobs of one domain running at once at most, by domain (no limit for a domain not named).
    pub max_running_per_domain: BTreeMap<String, usize>,
    /// Jobs of one task running at once at most, by task.
    pub max_running_per_task: BTreeMap<String, usize>,
    /// How long the scheduling lease lasts unless renewed: the longest a dead leader's jobs wait
    /// for another replica to take them over.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often the store is searched for pending jobs this replica was not told of (those
    /// submitted on other replicas), and queued jobs are tried again.
    #[serde(with = "humantime_serde")]
    pub scan_interval: Duration,
    /// How long an engine that could not be reached is left alone before the next try.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_running_per_domain: BTreeMap::new(),
            max_running_per_task: BTreeMap::new(),
            lease_ttl: Duration::from_secs(15),
            scan_interval: Duration::from_secs(2),
            retry_after: Duration::from_secs(5),
        }
    }
}

/// Why the scheduler could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Two engines share a name.
    #[error("two engines are named {0:?}")]
    DuplicateEngine(String),
}

/// A queued job, as much of it as placement needs.
#[derive(Debug, Clone)]
struct Waiting {
    id: JobId,
    arch: String,
    domain: String,
    task: String,
}

impl Waiting {
    fn of(job: &Job) -> Waiting {
        Waiting {
            id: job.id,
            arch: job.arch.clone(),
            domain: job.domain.clone(),
            task: job.task.clone(),
        }
    }

    fn slot(&self, engine: usize) -> Slot {
        Slot {
            engine,
            domain: self.domain.clone(),
            task: self.task.clone(),
        }
    }
}

/// A job holding a slot on an engine.
#[derive(Debug, Clone)]
struct Slot {
    engine: usize,
    domain: String,
    task: String,
}

#[derive(Debug, Default)]
struct State {
    /// Whether this replica holds the lease.
    leading: bool,
    queue: VecDeque<Waiting>,
    /// The ids in `queue`, so that queueing a job is not a scan of the queue.
    queued: HashSet<JobId>,
    slots: HashMap<JobId, Slot>,
    /// Engines not to try before this time (they could not be reached).
    resting: HashMap<usize, tokio::time::Instant>,
}

impl State {
    fn push_back(&mut self, waiting: Waiting) {
        if self.queued.insert(waiting.id) {
            self.queue.push_back(waiting);
        }
    }

    fn push_front(&mut self, waiting: Waiting) {
        if self.queued.insert(waiting.id) {
            self.queue.push_front(waiting);
        }
    }
}

/// What runs now, counted once per placement round and kept up to date as jobs are placed.
#[derive(Debug, Default)]
struct Running {
    by_engine: Vec<usize>,
    by_domain: HashMap<String, usize>,
    by_task: HashMap<String, usize>,
}

impl Running {
    fn of(slots: &HashMap<JobId, Slot>, engines: usize) -> Self {
        let mut running = Running {
            by_engine: vec![0; engines],
            ..Running::default()
        };
        for slot in slots.values() {
            running.add(slot);
        }
        running
    }

    fn add(&mut self, slot: &Slot) {
        if let Some(count) = self.by_engine.get_mut(slot.engine) {
            *count += 1;
        }
        *self.by_domain.entry(slot.domain.clone()).or_default() += 1;
        *self.by_task.entry(slot.task.clone()).or_default() += 1;
    }
}

/// The scheduler. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    jobs: JobService,
    engines: Vec<Arc<dyn Engine>>,
    config: SchedulerConfig,
    replica: String,
    state: Mutex<State>,
    wake: Notify,
    /// Per engine, bounds the jobs starting at once ([`MAX_STARTING`]).
    starting: Vec<tokio::sync::Semaphore>,
}

impl Scheduler {
    /// A scheduler for `jobs` over `engines`, attached to the job service (which from now on
    /// refuses arches no engine serves and tells the scheduler of cancels). A job's objects are
    /// rendered for the namespace of the engine that runs it. Nothing runs until
    /// [`Scheduler::spawn`].
    ///
    /// # Errors
    /// [`SchedulerError::DuplicateEngine`].
    pub fn new(
        jobs: JobService,
        engines: Vec<Arc<dyn Engine>>,
        config: SchedulerConfig,
    ) -> Result<Self, SchedulerError> {
        for (i, engine) in engines.iter().enumerate() {
            if engines[..i].iter().any(|e| e.name() == engine.name()) {
                return Err(SchedulerError::DuplicateEngine(engine.name().to_owned()));
            }
        }
        let starting = engines
            .iter()
            .map(|_| tokio::sync::Semaphore::new(MAX_STARTING))
            .collect();
        let scheduler = Scheduler {
            inner: Arc::new(Inner {
                jobs,
                engines,
                config,
                replica: format!("replica-{}", uuid::Uuid::new_v4().simple()),
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                starting,
            }),
        };
        scheduler.inner.jobs.attach(Arc::new(scheduler.clone()));
        Ok(scheduler)
    }

    /// The engines.
    pub fn engines(&self) -> &[Arc<dyn Engine>] {
        &self.inner.engines
    }

    /// Whether this replica schedules now (holds the lease).
    pub fn is_leading(&self) -> bool {
        self.inner.lock().leading
    }

    /// Starts scheduling in the background: the lease, the queue, the followers. Dropping the
    /// handle stops all of it (running jobs go on on their engines and are re-attached by the
    /// next leader).
    pub fn spawn(&self) -> SchedulerHandle {
        let inner = Arc::clone(&self.inner);
        SchedulerHandle(tokio::spawn(async move { inner.run().await }))
    }
}

/// The running scheduler; dropping it stops it.
#[derive(Debug)]
pub struct SchedulerHandle(tokio::task::JoinHandle<()>);

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[async_trait]
impl Dispatch for Scheduler {
    fn arches(&self) -> Vec<String> {
        let mut arches: Vec<String> = self
            .inner
            .engines
            .iter()
            .flat_map(|e| e.arches().iter().cloned())
            .collect();
        arches.sort();
        arches.dedup();
        arches
    }

    async fn cancelled(&self, job: &Job) {
        // In the background: the cancel is stored, and a cluster that does not answer must not
        // hold the caller's request.
        if let Some(engine) = self.inner.engine(job).cloned() {
            let id = job.id;
            let span = job_span(id, &job.task, &job.domain);
            tokio::spawn(
                async move {
                    if let Err(error) = engine.cancel(id).await {
                        // The leader's follower sees the job cancelled in the store and cancels again.
                        tracing::warn!(engine = engine.name(), %error, "cannot cancel on the engine");
                    }
                }
                .instrument(span),
            );
        }
    }

    async fn purged(&self, job: &Job) {
        if let Some(engine) = self.inner.engine(job).cloned() {
            let id = job.id;
            let span = job_span(id, &job.task, &job.domain);
            tokio::spawn(
                async move {
                    if let Err(error) = engine.cleanup(id).await {
                        tracing::warn!(engine = engine.name(), %error, "cannot clean up a purged job");
                    }
                }
                .instrument(span),
            );
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn engine(&self, job: &Job) -> Option<&Arc<dyn Engine>> {
        self.engine_index(job).map(|index| &self.engines[index])
    }

    /// Where the engine recorded on `job` is among the configured ones.
    fn engine_index(&self, job: &Job) -> Option<usize> {
        let name = job.engine.as_deref()?;
        self.engines.iter().position(|e| e.name() == name)
    }

    /// Starts `waiting` on engine `index` in the background; its slot is the caller's to take.
    fn spawn_start(self: &Arc<Self>, waiting: Waiting, index: usize, followers: &mut JoinSet<()>) {
        let this = Arc::clone(self);
        let span = job_span(waiting.id, &waiting.task, &waiting.domain);
        followers.spawn(async move { this.start(waiting, index).await }.instrument(span));
    }

    /// Holds or waits for the lease; schedules while holding it.
    async fn run(self: Arc<Self>) {
        let mut events = self.jobs.subscribe();
        let mut lease = Lease::new(
            self.jobs.leases(),
            LEASE,
            self.replica.clone(),
            self.config.lease_ttl,
        );
        loop {
            lease.acquire().await;
            let mut followers = JoinSet::new();
            match self.take_over(&mut followers).await {
                Ok(()) => self.lead(&mut lease, &mut events, &mut followers).await,
                Err(error) => tracing::warn!(%error, "cannot read the unfinished jobs"),
            }
            // Lost the lease (or never finished taking over): another replica takes the jobs.
            followers.shutdown().await;
            *self.lock() = State::default();
            lease.release().await;
        }
    }

    /// Reads every unfinished job: those on engines get a follower, the others are queued in
    /// submission order.
    async fn take_over(self: &Arc<Self>, followers: &mut JoinSet<()>) -> Result<(), JobError> {
        let mut unfinished = Vec::new();
        for state in [JobState::Pending, JobState::Queued, JobState::Running] {
            unfinished.extend(self.all(state, None).await?);
        }
        // Ids are time-based: oldest first is submission order.
        unfinished.sort_by_key(|job| job.id.get_timestamp().map(|t| t.to_unix()));
        self.lock().leading = true;
        for job in unfinished {
            self.adopt(job, followers).await;
        }
        Ok(())
    }

    /// Every job in `state` (created since `since`), from the store's listing.
    async fn all(
        &self,
        state: JobState,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Vec<Job>, JobError> {
        let mut query = JobQuery {
            state: Some(state),
            since,
            limit: JobQuery::MAX_LIMIT,
            ..JobQuery::default()
        };
        let mut jobs = Vec::new();
        loop {
            let page = self.jobs.list(&query).await?;
            jobs.extend(page.items);
            match page.next {
                Some(after) => query.after = Some(after),
                None => return Ok(jobs),
            }
        }
    }

    /// Takes one unfinished job in hand.
    async fn adopt(self: &Arc<Self>, job: Job, followers: &mut JoinSet<()>) {
        match job.state {
            JobState::Pending => self.enqueue(job).await,
            JobState::Queued => match self.engine_index(&job) {
                // A leader was starting it there and died before recording it running: it may
                // run there now. It starts there again at once (submitting it again starts
                // nothing twice), not on another engine, where it would run twice.
                Some(index) => {
                    let waiting = Waiting::of(&job);
                    self.lock().slots.insert(job.id, waiting.slot(index));
                    self.spawn_start(waiting, index, followers);
                }
                None => {
                    if let Some(name) = job.engine.as_deref() {
                        tracing::warn!(job = %job.id, engine = name,
                            "a job was being started on an engine that is no longer configured; it waits for another");
                    }
                    self.push(&job);
                }
            },
            JobState::Running => {
                let Some(index) = self.engine_index(&job) else {
                    let message = format!(
                        "the job ran on engine {:?}, which is no longer configured",
                        job.engine.as_deref().unwrap_or("")
                    );
                    let span = job_span(job.id, &job.task, &job.domain);
                    self.end(job.id, JobState::Failed, message)
                        .instrument(span)
                        .await;
                    return;
                };
                self.lock()
                    .slots
                    .insert(job.id, Waiting::of(&job).slot(index));
                let this = Arc::clone(self);
                let span = job_span(job.id, &job.task, &job.domain);
                // The follower gets the steps only, not the whole job.
                let (id, steps) = (job.id, job.steps);
                followers
                    .spawn(async move { this.follow(id, steps, index).await }.instrument(span));
            }
            _ => {}
        }
    }

    /// `pending -> queued`, then into the queue.
    async fn enqueue(&self, job: Job) {
        let span = job_span(job.id, &job.task, &job.domain);
        self.enqueue_in_span(job).instrument(span).await;
    }

    async fn enqueue_in_span(&self, job: Job) {
        match self
            .jobs
            .transition(
                job.id,
                JobState::Queued,
                Some("waiting for an engine with a free slot".to_owned()),
            )
            .await
        {
            Ok(job) => self.push(&job),
            // Cancelled (or taken) meanwhile.
            Err(JobError::Illegal { .. } | JobError::NotFound(_)) => {}
            Err(error) => tracing::warn!(%error, "cannot queue a job"),
        }
    }

    fn push(&self, job: &Job) {
        let mut state = self.lock();
        if state.slots.contains_key(&job.id) {
            return;
        }
        state.push_back(Waiting::of(job));
    }

    /// Schedules until the lease is lost.
    async fn lead(
        self: &Arc<Self>,
        lease: &mut Lease,
        events: &mut tokio::sync::broadcast::Receiver<omni_jobs::JobEvent>,
        followers: &mut JoinSet<()>,
    ) {
        let mut scan = tokio::time::interval(self.config.scan_interval);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut scanned_since = chrono::Utc::now();
        let mut scans = 0u32;
        loop {
            self.place(followers);
            tokio::select! {
                () = tokio::time::sleep_until(lease.renew_at()) => {
                    if !lease.renew().await {
                        return;
                    }
                }
                event = events.recv() => match event {
                    Ok(event) if event.to == JobState::Pending => {
                        if let Ok(job) = self.jobs.get(event.job_id).await {
                            self.enqueue(job).await;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Missed some: the scan finds them.
                        scanned_since = chrono::Utc::now() - chrono::TimeDelta::hours(1);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = scan.tick() => {
                    // Jobs submitted on other replicas, with a margin for clocks and slow writes;
                    // now and then all of them, for a job a failed write left pending.
                    scans = scans.wrapping_add(1);
                    let since = (!scans.is_multiple_of(FULL_SCAN_EVERY))
                        .then(|| scanned_since - chrono::TimeDelta::minutes(1));
                    scanned_since = chrono::Utc::now();
                    match self.all(JobState::Pending, since).await {
                        Ok(mut pending) => {
                            pending.sort_by_key(|job| job.id.get_timestamp().map(|t| t.to_unix()));
                            for job in pending {
                                self.enqueue(job).await;
                            }
                        }
                        Err(error) => tracing::warn!(%error, "cannot look for pending jobs"),
                    }
                }
                () = self.wake.notified() => {}
                Some(ended) = followers.join_next() => {
                    if let Err(error) = ended && error.is_panic() {
                        tracing::error!(%error, "a job's follower panicked");
                    }
                }
            }
        }
    }

    /// Starts every queued job that fits, in queue order: a job that does not fit does not hold
    /// back the jobs behind it that do (another arch, another domain).
    ///
    /// One pass over the queue with the running jobs counted once: a round is linear in the
    /// queue and the slots (10,000 queued jobs and 10,000 running ones are 20,000 steps, not
    /// 10^8), and it stops looking as soon as no engine has a free slot.
    fn place(self: &Arc<Self>, followers: &mut JoinSet<()>) {
        let now = tokio::time::Instant::now();
        let mut guard = self.lock();
        let state = &mut *guard;
        state.resting.retain(|_, until| *until > now);
        // Nothing waits: no need to count what runs (every job's end wakes a round).
        if state.queue.is_empty() {
            return;
        }
        let mut running = Running::of(&state.slots, self.engines.len());
        let usable = |index: usize| !state.resting.contains_key(&index);
        let mut free: usize = self
            .engines
            .iter()
            .enumerate()
            .filter(|(index, _)| usable(*index))
            .map(|(index, engine)| {
                engine
                    .max_running()
                    .saturating_sub(running.by_engine[index])
            })
            .sum();
        if free == 0 {
            return;
        }
        let over =
            |limits: &BTreeMap<String, usize>, counts: &HashMap<String, usize>, key: &str| {
                limits
                    .get(key)
                    .is_some_and(|max| counts.get(key).copied().unwrap_or(0) >= *max)
            };
        let queue = std::mem::take(&mut state.queue);
        let mut kept = VecDeque::with_capacity(queue.len());
        for waiting in queue {
            if free == 0
                || over(
                    &self.config.max_running_per_domain,
                    &running.by_domain,
                    &waiting.domain,
                )
                || over(
                    &self.config.max_running_per_task,
                    &running.by_task,
                    &waiting.task,
                )
            {
                kept.push_back(waiting);
                continue;
            }
            // The least loaded engine for the arch with a free slot.
            let choice = self
                .engines
                .iter()
                .enumerate()
                .filter(|(index, engine)| engine.arches().contains(&waiting.arch) && usable(*index))
                .map(|(index, engine)| (index, running.by_engine[index], engine.max_running()))
                .filter(|(_, running, max)| running < max)
                .min_by(|a, b| (a.1 * b.2).cmp(&(b.1 * a.2)))
                .map(|(index, ..)| index);
            let Some(engine) = choice else {
                kept.push_back(waiting);
                continue;
            };
            let slot = waiting.slot(engine);
            running.add(&slot);
            free -= 1;
            state.queued.remove(&waiting.id);
            state.slots.insert(waiting.id, slot);
            self.spawn_start(waiting, engine, followers);
        }
        state.queue = kept;
    }

    /// Renders a queued job, submits it to `engine`, and follows it.
    async fn start(self: Arc<Self>, waiting: Waiting, index: usize) {
        // Never closed, so acquiring cannot fail; held until the job runs or ends here.
        let starting = self.starting[index].acquire().await.ok();
        let engine = Arc::clone(&self.engines[index]);
        let id = waiting.id;
        let queued = match self.jobs.get(id).await {
            Ok(job) if job.state == JobState::Queued => job,
            Ok(_) | Err(JobError::NotFound(_)) => {
                self.release(id);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read a queued job");
                self.requeue(waiting, None);
                return;
            }
        };
        let rendered = match self.jobs.render(&queued, engine.namespace()).await {
            Ok(rendered) => rendered,
            Err(JobError::NoSuchTask(task)) => {
                let message = format!("no plugin is loaded for task {task:?} to render it");
                self.end(id, JobState::Failed, message).await;
                self.release(id);
                return;
            }
            Err(error) => {
                self.end(id, JobState::Failed, format!("rendering failed: {error}"))
                    .await;
                self.release(id);
                return;
            }
        };
        // The engine is on record before the submit: whoever takes over from here finds it.
        match self.jobs.assign_engine(id, engine.name()).await {
            Ok(_) => {}
            // Cancelled (or purged) meanwhile.
            Err(JobError::Store(StoreError::Conflict { .. }) | JobError::NotFound(_)) => {
                self.release(id);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot record the engine of a job; it waits");
                self.requeue(waiting, None);
                return;
            }
        }
        let submission = EngineJob {
            id,
            name: JobContext::object_name(id),
            namespace: engine.namespace().to_owned(),
            task: queued.task.clone(),
            arch: queued.arch.clone(),
            rendered,
        };
        match engine.submit(&submission).await {
            Ok(()) => {}
            Err(EngineError::Unavailable { message, .. }) => {
                tracing::warn!(engine = engine.name(), %message, "engine unavailable; the job waits");
                self.requeue(waiting, Some(index));
                return;
            }
            Err(error) => {
                self.end(id, JobState::Failed, error.to_string()).await;
                self.release(id);
                return;
            }
        }
        // What a running job does not need, gone before it is followed for its whole life.
        drop((submission, queued));
        let started = self
            .jobs
            .transition_on(
                id,
                JobState::Running,
                Some(format!("started on engine {}", engine.name())),
                Some(engine.name().to_owned()),
            )
            .await;
        drop(starting);
        match started {
            Ok(job) => {
                tracing::info!(engine = engine.name(), "job started");
                // `{ job }` moves the job into a temporary: the rest of it is dropped at the end
                // of this statement, not after the job has run.
                let steps = { job }.steps;
                self.follow(id, steps, index).await;
            }
            // Cancelled (or purged) while it was being started: the cancel found no engine yet.
            Err(JobError::Illegal { .. } | JobError::NotFound(_)) => {
                let _ = engine.cancel(id).await;
                self.release(id);
            }
            Err(error) => {
                // Not recorded as running, so nobody would follow it: stop it there and try the
                // whole start again later.
                tracing::warn!(%error, "cannot record a started job; it waits");
                let _ = engine.cancel(id).await;
                let _ = engine.cleanup(id).await;
                self.requeue(waiting, None);
            }
        }
    }

    /// Puts a job back at the head of the queue; with `rest`, that engine is left alone a while.
    fn requeue(&self, waiting: Waiting, rest: Option<usize>) {
        let mut state = self.lock();
        state.slots.remove(&waiting.id);
        if let Some(index) = rest {
            state
                .resting
                .insert(index, tokio::time::Instant::now() + self.config.retry_after);
        }
        if state.leading {
            state.push_front(waiting);
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Frees a job's slot.
    fn release(&self, id: JobId) {
        self.lock().slots.remove(&id);
        self.wake.notify_one();
    }

    /// Ends a job (from wherever it is) with a message; a job that ended already stays as it is.
    async fn end(&self, id: JobId, to: JobState, message: String) {
        match self.jobs.transition(id, to, Some(message)).await {
            Ok(_) | Err(JobError::Illegal { .. } | JobError::NotFound(_)) => {}
            Err(error) => tracing::warn!(%error, "cannot record the end of a job"),
        }
    }
}
