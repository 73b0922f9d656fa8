//! The engine's picture of its jobs: one watcher over the managed Jobs and one over their pods
//! (label `app.kubernetes.io/managed-by=omni`, kube-runtime's default backoff; every relist
//! after a lost watch resyncs the picture), folded into a map from job id to the job's
//! [`JobView`], which each `progress` and `logs` stream follows through a `tokio::sync::watch`
//! channel of its own job. No request is made per job.
//!
//! A Job deleted before it ended (a cancel, or someone else) stays as a tombstone, with its
//! cancelled view, until `cleanup` forgets it or [`TOMBSTONE_TTL`] has passed, so that its
//! progress and logs can still be read to the end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::{StreamExt, future::Either};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use omni_engine::{JobId, Progress, StepState};
use tokio::sync::watch;

use crate::apply::{JOB_ID, SELECTOR};
use crate::status::{self, JobView, Phase};

/// How long a Job deleted before `cleanup` is remembered.
pub(crate) const TOMBSTONE_TTL: Duration = Duration::from_secs(15 * 60);

/// What is known of one job.
#[derive(Debug)]
struct Entry {
    /// The Job, while the cluster has it (or a tombstone's last copy). Boxed: a `Job` struct is
    /// large even when slim, and the map's table holds every entry inline.
    job: Option<Box<Job>>,
    /// When the Job went away (a tombstone).
    deleted: Option<Instant>,
    /// Its pods (one, most often). A list, not a map: a B-tree node holds room for eleven
    /// `Pod`s, over 20 KiB for a job's one pod.
    pods: Vec<Pod>,
    /// The view, for every follower; `None` until the Job is known.
    view: watch::Sender<Option<JobView>>,
}

impl Entry {
    fn new() -> Entry {
        Entry {
            job: None,
            deleted: None,
            pods: Vec::new(),
            view: watch::Sender::new(None),
        }
    }

    /// Recomputes the view; an ended view stays as it is (the first word on the end is kept,
    /// as Kubernetes may go on changing a finished Job's pods).
    fn refresh(&self) {
        let Some(job) = &self.job else { return };
        let ended = |v: &Option<JobView>| {
            matches!(
                v,
                Some(JobView {
                    phase: Phase::Ended(_),
                    ..
                })
            )
        };
        let same_job = |v: &Option<JobView>| v.as_ref().map(|v| &v.uid) == Some(&job.metadata.uid);
        let next = status::view(job, &self.pods, self.deleted.is_some());
        self.view.send_if_modified(|current| {
            if ended(current) && same_job(current) {
                return false;
            }
            let next = Some(next);
            if *current == next {
                return false;
            }
            *current = next;
            true
        });
    }
}

/// Which objects a relist of one kind has shown so far.
#[derive(Debug, Default)]
struct Relist {
    /// Keys known when the relist began, and not yet seen in it.
    unseen: Option<HashSet<(JobId, String)>>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<JobId, Entry>,
    /// Jobs `cleanup` deleted and forgot, with the uids of their Jobs: later events of those
    /// Jobs and of the job's pods are ignored until the Jobs' deletion is seen.
    forgotten: HashMap<JobId, HashSet<String>>,
    /// Forgotten jobs whose Jobs the running relist still listed.
    forgotten_listed: HashSet<JobId>,
    jobs_relist: Relist,
    pods_relist: Relist,
}

/// The shared map; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    state: Arc<Mutex<State>>,
    /// Set once both watchers have listed everything once.
    ready: watch::Sender<bool>,
}

fn job_id_of(labels: Option<&BTreeMap<String, String>>) -> Option<JobId> {
    labels?.get(JOB_ID)?.parse().ok()
}

impl Tracker {
    pub(crate) fn new() -> Tracker {
        Tracker {
            state: Arc::default(),
            ready: watch::Sender::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a map that is still consistent enough to read.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until the watchers have listed the cluster once.
    pub(crate) async fn ready(&self) {
        let mut ready = self.ready.subscribe();
        // The sender lives in `self`: waiting cannot fail.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// A follower of job `id`'s view, if the engine knows the job.
    pub(crate) fn follow(&self, id: JobId) -> Option<watch::Receiver<Option<JobView>>> {
        let state = self.lock();
        let entry = state.entries.get(&id)?;
        entry.job.as_ref()?;
        Some(entry.view.subscribe())
    }

    /// The step names of job `id`'s Job as last seen, if known.
    pub(crate) fn steps(&self, id: JobId) -> Option<Vec<String>> {
        Some(status::step_names(
            self.lock().entries.get(&id)?.job.as_deref()?,
        ))
    }

    /// The name of job `id`'s newest pod, if any.
    pub(crate) fn pod_name(&self, id: JobId) -> Option<String> {
        let state = self.lock();
        status::current_pod(&state.entries.get(&id)?.pods)?
            .metadata
            .name
            .clone()
    }

    /// Records a Job (from the watcher, or as `submit` applied it).
    pub(crate) fn apply_job(&self, mut job: Job) {
        let Some(id) = job_id_of(job.metadata.labels.as_ref()) else {
            return;
        };
        status::slim_job(&mut job);
        let mut state = self.lock();
        if let Some(uids) = state.forgotten.get(&id) {
            if job
                .metadata
                .uid
                .as_ref()
                .is_some_and(|uid| uids.contains(uid))
            {
                if state.jobs_relist.unseen.is_some() {
                    state.forgotten_listed.insert(id);
                }
                return;
            }
            // A new Job of the same id (submitted again after its cleanup).
            state.forgotten.remove(&id);
        }
        if let Some(unseen) = &mut state.jobs_relist.unseen {
            unseen.remove(&(id, String::new()));
        }
        let entry = state.entries.entry(id).or_insert_with(Entry::new);
        let replaced = entry
            .job
            .as_ref()
            .is_some_and(|j| j.metadata.uid != job.metadata.uid);
        if replaced {
            entry.deleted = None;
        }
        entry.job = Some(Box::new(job));
        entry.refresh();
    }

    fn delete_job(state: &mut State, id: JobId) {
        if state.forgotten.remove(&id).is_some() {
            state.entries.remove(&id);
            return;
        }
        let Some(entry) = state.entries.get_mut(&id) else {
            return;
        };
        if entry.job.is_some() {
            entry.deleted = Some(Instant::now());
            entry.refresh();
            tracing::debug!(job = %id, "job deleted from the cluster");
        } else {
            state.entries.remove(&id);
        }
    }

    fn apply_pod(&self, mut pod: Pod) {
        let Some(id) = job_id_of(pod.metadata.labels.as_ref()) else {
            return;
        };
        let Some(name) = pod.metadata.name.clone() else {
            return;
        };
        status::slim_pod(&mut pod);
        let mut state = self.lock();
        if state.forgotten.contains_key(&id) {
            return;
        }
        if let Some(unseen) = &mut state.pods_relist.unseen {
            unseen.remove(&(id, name.clone()));
        }
        let entry = state.entries.entry(id).or_insert_with(Entry::new);
        match entry
            .pods
            .iter_mut()
            .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
        {
            Some(known) => *known = pod,
            None => entry.pods.push(pod),
        }
        entry.refresh();
    }

    fn delete_pod(state: &mut State, id: JobId, name: &str) {
        let Some(entry) = state.entries.get_mut(&id) else {
            return;
        };
        entry
            .pods
            .retain(|p| p.metadata.name.as_deref() != Some(name));
        if entry.job.is_none() && entry.pods.is_empty() {
            state.entries.remove(&id);
        } else {
            entry.refresh();
        }
    }

    /// Forgets job `id` (its `cleanup`, which deleted the Jobs with `uids`): it is unknown from
    /// now on, and late events of those Jobs do not bring it back.
    pub(crate) fn forget(&self, id: JobId, uids: impl IntoIterator<Item = String>) {
        let mut state = self.lock();
        let mut uids: HashSet<String> = uids.into_iter().collect();
        if let Some(uid) = state
            .entries
            .remove(&id)
            .and_then(|e| e.job.and_then(|j| j.metadata.uid))
        {
            uids.insert(uid);
        }
        if !uids.is_empty() {
            state.forgotten.insert(id, uids);
        }
    }

    fn prune(state: &mut State) {
        state
            .entries
            .retain(|_, e| e.deleted.is_none_or(|at| at.elapsed() < TOMBSTONE_TTL));
    }

    fn job_event(&self, event: Event<Job>) {
        match event {
            Event::Apply(job) | Event::InitApply(job) => self.apply_job(job),
            Event::Delete(job) => {
                if let Some(id) = job_id_of(job.metadata.labels.as_ref()) {
                    Self::delete_job(&mut self.lock(), id);
                }
            }
            Event::Init => {
                let mut state = self.lock();
                let keys = state
                    .entries
                    .iter()
                    .filter(|(_, e)| e.job.is_some() && e.deleted.is_none())
                    .map(|(id, _)| (*id, String::new()))
                    .collect();
                state.jobs_relist.unseen = Some(keys);
            }
            Event::InitDone => {
                let mut state = self.lock();
                let gone = state.jobs_relist.unseen.take().unwrap_or_default();
                for (id, _) in gone {
                    Self::delete_job(&mut state, id);
                }
                // A forgotten Job the list no longer has will send no events.
                let listed = std::mem::take(&mut state.forgotten_listed);
                state.forgotten.retain(|id, _| listed.contains(id));
                Self::prune(&mut state);
            }
        }
    }

    fn pod_event(&self, event: Event<Pod>) {
        match event {
            Event::Apply(pod) | Event::InitApply(pod) => self.apply_pod(pod),
            Event::Delete(pod) => {
                let id = job_id_of(pod.metadata.labels.as_ref());
                if let (Some(id), Some(name)) = (id, pod.metadata.name.as_deref()) {
                    Self::delete_pod(&mut self.lock(), id, name);
                }
            }
            Event::Init => {
                let mut state = self.lock();
                let keys = state
                    .entries
                    .iter()
                    .flat_map(|(id, e)| {
                        e.pods
                            .iter()
                            .filter_map(|p| Some((*id, p.metadata.name.clone()?)))
                    })
                    .collect();
                state.pods_relist.unseen = Some(keys);
            }
            Event::InitDone => {
                let mut state = self.lock();
                let gone = state.pods_relist.unseen.take().unwrap_or_default();
                for (id, name) in gone {
                    Self::delete_pod(&mut state, id, &name);
                }
            }
        }
    }

    /// Runs the two watchers until the task is aborted (the engine is dropped).
    pub(crate) async fn run(self, engine: String, jobs: Api<Job>, pods: Api<Pod>) {
        let config = || watcher::Config::default().labels(SELECTOR);
        let jobs = watcher::watcher(jobs, config())
            .default_backoff()
            .map(Either::Left);
        let pods = watcher::watcher(pods, config())
            .default_backoff()
            .map(Either::Right);
        let mut events = std::pin::pin!(futures::stream::select(jobs, pods));
        let (mut jobs_listed, mut pods_listed) = (false, false);
        while let Some(event) = events.next().await {
            match event {
                Either::Left(Ok(event)) => {
                    jobs_listed |= matches!(event, Event::InitDone);
                    self.job_event(event);
                }
                Either::Right(Ok(event)) => {
                    pods_listed |= matches!(event, Event::InitDone);
                    self.pod_event(event);
                }
                Either::Left(Err(error)) | Either::Right(Err(error)) => {
                    tracing::warn!(%engine, %error, "watching the cluster failed; retrying");
                }
            }
            if jobs_listed && pods_listed && !*self.ready.borrow() {
                tracing::info!(%engine, "the cluster's jobs are listed; following them");
                self.ready.send_replace(true);
            }
        }
    }
}

/// What a follower learns going from `before` (nothing yet, for the first view) to `after`:
/// `Waiting` while nothing runs, `Running` once, each step that moved (in step order), and
/// `Ended` last.
pub(crate) fn changes(before: Option<&JobView>, after: &JobView) -> Vec<Progress> {
    let mut out = Vec::new();
    let was_running = before.is_some_and(|b| !matches!(b.phase, Phase::Waiting(_)));
    match &after.phase {
        Phase::Waiting(reason) => {
            let same =
                matches!(before, Some(JobView { phase: Phase::Waiting(r), .. }) if r == reason);
            if !same {
                out.push(Progress::Waiting {
                    reason: reason.clone(),
                });
            }
        }
        Phase::Running => {
            if !was_running {
                out.push(Progress::Running);
            }
        }
        Phase::Ended(_) => {
            let any_ran = after
                .steps
                .iter()
                .any(|(_, s)| matches!(s, StepState::Succeeded | StepState::Failed));
            if !was_running && any_ran {
                out.push(Progress::Running);
            }
        }
    }
    for (i, (name, state)) in after.steps.iter().enumerate() {
        let old = before.and_then(|b| b.steps.get(i)).map(|(_, s)| *s);
        let moved = match old {
            Some(old) => old != *state,
            None => *state != StepState::Pending,
        };
        if moved {
            out.push(Progress::Step {
                name: name.clone(),
                state: *state,
            });
        }
    }
    if let Phase::Ended(outcome) = &after.phase {
        out.push(Progress::Ended(outcome.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use StepState::{Pending, Running, Skipped, Succeeded};
    use omni_engine::Outcome;

    fn view(phase: Phase, steps: &[(&str, StepState)]) -> JobView {
        JobView {
            uid: Some("u".into()),
            phase,
            steps: steps.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect(),
        }
    }

    fn job(id: JobId, uid: &str) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("omni-{id}"), "uid": uid,
                         "labels": {"app.kubernetes.io/managed-by": "omni", "omni.io/job-id": id.to_string()}},
            "spec": {"template": {"spec": {"containers": [{"name": "build"}]}}},
        }))
        .unwrap()
    }

    fn phase(tracker: &Tracker, id: JobId) -> Option<Phase> {
        let view = tracker.follow(id)?.borrow().clone()?;
        Some(view.phase)
    }

    #[test]
    fn a_relist_ends_the_jobs_it_no_longer_lists() {
        let tracker = Tracker::new();
        let (kept, gone) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        tracker.job_event(Event::InitApply(job(kept, "a")));
        tracker.job_event(Event::InitApply(job(gone, "b")));
        tracker.job_event(Event::InitDone);
        assert_eq!(phase(&tracker, gone), Some(Phase::Waiting(None)));
        // The watch was lost; while it was, `gone` was deleted.
        tracker.job_event(Event::Init);
        tracker.job_event(Event::InitApply(job(kept, "a")));
        tracker.job_event(Event::InitDone);
        assert_eq!(phase(&tracker, kept), Some(Phase::Waiting(None)));
        assert!(
            matches!(
                phase(&tracker, gone),
                Some(Phase::Ended(Outcome::Cancelled(_)))
            ),
            "{:?}",
            phase(&tracker, gone)
        );
    }

    #[test]
    fn a_forgotten_job_stays_forgotten_until_it_is_submitted_again() {
        let tracker = Tracker::new();
        let id = uuid::Uuid::new_v4();
        tracker.apply_job(job(id, "a"));
        tracker.forget(id, ["a".to_owned()]);
        assert!(tracker.follow(id).is_none());
        // A late update of the deleted Job does not bring it back ...
        tracker.job_event(Event::Apply(job(id, "a")));
        assert!(tracker.follow(id).is_none());
        tracker.job_event(Event::Delete(job(id, "a")));
        assert!(tracker.follow(id).is_none());
        // ... a new Job of the same id does.
        tracker.apply_job(job(id, "b"));
        assert_eq!(phase(&tracker, id), Some(Phase::Waiting(None)));
    }

    #[test]
    fn a_first_look_at_an_ended_job_tells_it_all() {
        let after = view(
            Phase::Ended(Outcome::Succeeded),
            &[("first", Succeeded), ("second", Succeeded)],
        );
        assert_eq!(
            changes(None, &after),
            [
                Progress::Running,
                Progress::Step {
                    name: "first".into(),
                    state: Succeeded
                },
                Progress::Step {
                    name: "second".into(),
                    state: Succeeded
                },
                Progress::Ended(Outcome::Succeeded),
            ]
        );
    }

    #[test]
    fn only_what_moved_is_told() {
        let waiting = view(
            Phase::Waiting(None),
            &[("first", Pending), ("second", Pending)],
        );
        assert_eq!(
            changes(None, &waiting),
            [Progress::Waiting { reason: None }]
        );
        let running = view(Phase::Running, &[("first", Running), ("second", Pending)]);
        assert_eq!(
            changes(Some(&waiting), &running),
            [
                Progress::Running,
                Progress::Step {
                    name: "first".into(),
                    state: Running
                }
            ]
        );
        let ended = view(
            Phase::Ended(Outcome::Failed("x".into())),
            &[("first", StepState::Failed), ("second", Skipped)],
        );
        assert_eq!(
            changes(Some(&running), &ended),
            [
                Progress::Step {
                    name: "first".into(),
                    state: StepState::Failed
                },
                Progress::Step {
                    name: "second".into(),
                    state: Skipped
                },
                Progress::Ended(Outcome::Failed("x".into())),
            ]
        );
    }
}
