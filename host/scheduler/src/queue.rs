//! The queue and the slots: jobs waiting in order, the jobs holding a slot on an engine, the
//! engines resting after they could not be reached, and placement, which starts every queued
//! job that fits on the least loaded engine for its arch.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use omni_store::{Job, JobId};
use tokio::task::JoinSet;

use crate::Inner;

/// A queued job, as much of it as placement needs.
#[derive(Debug, Clone)]
pub(crate) struct Waiting {
    pub(crate) id: JobId,
    pub(crate) arch: String,
    pub(crate) domain: String,
    pub(crate) task: String,
}

impl Waiting {
    pub(crate) fn of(job: &Job) -> Waiting {
        Waiting {
            id: job.id,
            arch: job.arch.clone(),
            domain: job.domain.clone(),
            task: job.task.clone(),
        }
    }

    pub(crate) fn slot(&self, engine: usize) -> Slot {
        Slot {
            engine,
            domain: self.domain.clone(),
            task: self.task.clone(),
        }
    }
}

/// A job holding a slot on an engine.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    engine: usize,
    domain: String,
    task: String,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// Whether this replica holds the lease.
    pub(crate) leading: bool,
    queue: VecDeque<Waiting>,
    /// The ids in `queue`, so that queueing a job is not a scan of the queue.
    queued: HashSet<JobId>,
    pub(crate) slots: HashMap<JobId, Slot>,
    /// Engines not to try before this time (they could not be reached).
    resting: HashMap<usize, tokio::time::Instant>,
}

impl State {
    pub(crate) fn push_back(&mut self, waiting: Waiting) {
        if self.queued.insert(waiting.id) {
            self.queue.push_back(waiting);
        }
    }

    pub(crate) fn push_front(&mut self, waiting: Waiting) {
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

impl Inner {
    /// Starts every queued job that fits, in queue order: a job that does not fit does not hold
    /// back the jobs behind it that do (another arch, another domain).
    ///
    /// One pass over the queue with the running jobs counted once: a round is linear in the
    /// queue and the slots (10,000 queued jobs and 10,000 running ones are 20,000 steps, not
    /// 10^8), and it stops looking as soon as no engine has a free slot.
    pub(crate) fn place(self: &Arc<Self>, followers: &mut JoinSet<()>) {
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

    /// Puts a job back at the head of the queue; with `rest`, that engine is left alone a while.
    pub(crate) fn requeue(&self, waiting: Waiting, rest: Option<usize>) {
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
    pub(crate) fn release(&self, id: JobId) {
        self.lock().slots.remove(&id);
        self.wake.notify_one();
    }
}
