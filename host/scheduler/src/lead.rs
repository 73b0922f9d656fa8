//! Leading: the lease, taking over every unfinished job when this replica gets it, and the loop
//! that schedules while it holds it (new jobs announced by the job service, scans of the store
//! for the others, a placement round after every change).

use std::sync::Arc;

use omni_jobs::{JobError, Lease, job_span};
use omni_store::{Job, JobQuery, JobState};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::Inner;
use crate::queue::{State, Waiting};

/// The lease whose holder schedules.
const LEASE: &str = "scheduler";

/// One scan in this many looks for pending jobs of any age, not only recent ones.
const FULL_SCAN_EVERY: u32 = 64;

impl Inner {
    /// Holds or waits for the lease; schedules while holding it.
    pub(crate) async fn run(self: Arc<Self>) {
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
}
