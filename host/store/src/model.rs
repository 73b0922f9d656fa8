//! What the store keeps: jobs and their state history, log lines, the records of jobs'
//! artifacts, leases, webhooks and idempotency keys.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use omni_core::{EventKind, JobId, JobState, LogStream, StepState, now};

/// Which plugin accepted a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRef {
    /// The task it serves.
    pub task: String,
    /// Its version (from `describe`).
    pub version: String,
    /// The sha256 of its component file, hex.
    pub digest: String,
    /// The digest of the task's template set it was accepted with (see `omni-runtime`'s
    /// `TemplateSet`), which renders it; absent on jobs of servers that did not record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<String>,
}

/// One step of a job (an init container, then the containers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Its name, from the plugin.
    pub name: String,
    /// Where it is.
    pub state: StepState,
}

/// A job: what the store keeps of it (as a [record](crate::record), read leniently: fields
/// a newer server added are ignored here and kept by the backends when they write it back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Time-based id.
    pub id: JobId,
    /// The service that asked for it (e.g. `obs`).
    pub service: String,
    /// The task type (a plugin's task name).
    pub task: String,
    /// The tenant it belongs to.
    pub domain: String,
    /// The CPU architecture it builds for (API names: `x86_64`, `aarch64`, ...).
    pub arch: String,
    /// Where it is.
    pub state: JobState,
    /// The task's parameters, as the plugin validated them.
    pub params: serde_json::Value,
    /// The plugin that accepted it.
    pub plugin: PluginRef,
    /// The engine it runs on: recorded as it is being started there (still queued), kept after.
    pub engine: Option<String>,
    /// Why it is where it is (set by the last transition that said something).
    pub message: Option<String>,
    /// Its steps, in order.
    pub steps: Vec<Step>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// What its plugin rendered for its engine, recorded as it was assigned one (absent before,
    /// and on jobs of servers that did not record it): its provenance's record of the objects
    /// applied, which a re-render by the recorded versions must match byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendering: Option<Rendering>,
}

/// What a job's plugin rendered for its engine: where, and each object's sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendering {
    /// The namespace the objects were rendered for (the engine's).
    pub namespace: String,
    /// The objects, in apply order.
    pub manifests: Vec<ManifestDigest>,
    /// The container images the Job's steps run, in step order, each once.
    #[serde(default)]
    pub images: Vec<String>,
}

/// One rendered object and the sha256 of its body (the JSON text the plugin rendered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDigest {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// The sha256 of its body, lowercase hex.
    pub sha256: String,
}

impl Job {
    /// Its fields whose JSON is replaced whole when a [record](crate::record) of a newer format
    /// is written back (the others are merged, keeping what a newer server added).
    pub const OPAQUE: &'static [&'static str] = &["params"];

    /// Applies an allowed transition to this record (the backends' shared bookkeeping):
    /// state, message, engine and the times.
    pub fn apply(&mut self, transition: &Transition) {
        self.state = transition.to;
        self.updated_at = transition.time;
        if transition.message.is_some() {
            self.message.clone_from(&transition.message);
        }
        if transition.engine.is_some() {
            self.engine.clone_from(&transition.engine);
        }
        if transition.to == JobState::Running {
            self.started_at = Some(transition.time);
        }
        if transition.to.is_final() {
            self.finished_at = Some(transition.time);
            // Steps the engine did not report on end with the job: all of them succeeded if it
            // did; otherwise the one running failed (or was cut short) and the rest never ran.
            let succeeded = transition.to == JobState::Succeeded;
            for step in &mut self.steps {
                step.state = match step.state {
                    StepState::Pending | StepState::Running if succeeded => StepState::Succeeded,
                    StepState::Running => StepState::Failed,
                    StepState::Pending => StepState::Skipped,
                    ended => ended,
                };
            }
        }
    }
}

/// A move asked of the store: applied only if the job is still in `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state the caller saw.
    pub from: JobState,
    /// The state to move to.
    pub to: JobState,
    /// When.
    pub time: DateTime<Utc>,
    /// Why (kept as the job's message when set).
    pub message: Option<String>,
    /// The engine that took the job (set when it is queued or started on one).
    pub engine: Option<String>,
}

impl Transition {
    /// `from -> to` now, with no message.
    pub fn new(from: JobState, to: JobState) -> Self {
        Transition {
            from,
            to,
            time: now(),
            message: None,
            engine: None,
        }
    }

    /// With a message.
    #[must_use]
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// With the engine that took the job.
    #[must_use]
    pub fn engine(mut self, engine: impl Into<String>) -> Self {
        self.engine = Some(engine.into());
        self
    }
}

/// One entry of a job's state history (and the payload of a job-change event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// The job.
    pub job_id: JobId,
    /// Its place in the job's history: 0 is the creation.
    pub seq: u32,
    /// The state before (none for the creation).
    pub from: Option<JobState>,
    /// The state after.
    pub to: JobState,
    /// When.
    pub time: DateTime<Utc>,
    /// Why.
    pub message: Option<String>,
}

/// What a listing asks for. Every filter is optional; jobs come newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQuery {
    /// Only this service's jobs.
    pub service: Option<String>,
    /// Only this task's jobs.
    pub task: Option<String>,
    /// Only this domain's jobs.
    pub domain: Option<String>,
    /// Only jobs of these domains (the ones the caller may read); every domain when `None`.
    pub domains: Option<BTreeSet<String>>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only jobs created before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many (1 to [`JobQuery::MAX_LIMIT`]).
    pub limit: usize,
    /// Continue after this job (the last one of the previous page).
    pub after: Option<JobId>,
}

impl JobQuery {
    /// The default page size.
    pub const DEFAULT_LIMIT: usize = 100;
    /// The largest page size.
    pub const MAX_LIMIT: usize = 1000;

    /// Whether `job` passes the filters (not the paging).
    pub fn matches(&self, job: &Job) -> bool {
        self.service.as_ref().is_none_or(|s| *s == job.service)
            && self.task.as_ref().is_none_or(|t| *t == job.task)
            && self.allows_domain(&job.domain)
            && self.state.is_none_or(|s| s == job.state)
            && self.since.is_none_or(|t| job.created_at >= t)
            && self.until.is_none_or(|t| job.created_at < t)
    }

    /// Whether jobs of `domain` pass the `domain` and `domains` filters.
    pub fn allows_domain(&self, domain: &str) -> bool {
        self.domain.as_ref().is_none_or(|d| d == domain)
            && self.domains.as_ref().is_none_or(|ds| ds.contains(domain))
    }
}

impl Default for JobQuery {
    fn default() -> Self {
        JobQuery {
            service: None,
            task: None,
            domain: None,
            domains: None,
            state: None,
            since: None,
            until: None,
            limit: JobQuery::DEFAULT_LIMIT,
            after: None,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    /// The jobs, newest first.
    pub items: Vec<Job>,
    /// Where the next page starts (the last item's id), if there may be one.
    pub next: Option<JobId>,
}

/// One line a job's step printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The step that printed it.
    pub step: String,
    /// When it was printed.
    pub time: DateTime<Utc>,
    /// Its place in the job's log, increasing across steps (the cursor).
    pub seq: u64,
    /// stdout or stderr.
    pub stream: LogStream,
    /// The text, without its line ending.
    pub line: String,
}

/// What a log read asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// Only this step's lines.
    pub step: Option<String>,
    /// Only lines after this sequence number.
    pub after: Option<u64>,
    /// At most this many.
    pub limit: usize,
}

/// One page of a job's log, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// The lines, by `seq`.
    pub items: Vec<LogLine>,
    /// The cursor to read on from (the last line's `seq`) when the page was full.
    pub next: Option<u64>,
}

/// A file a job made, as the store records it (its bytes are in the artifact store, under
/// `jobs/<job id>/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Its name: its path relative to the job's output directory (`repodata/repomd.xml`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The sha256 of its bytes, lowercase hex.
    pub sha256: String,
    /// Its media type (`application/x-rpm`, ...), from its name.
    pub media_type: String,
    /// The step that made it (last wrote it), when the engine can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// A file submitted for jobs to use, as the store records it (its bytes are in the artifact
/// store, under `uploads/<domain>/<sha256>`). Content-addressed: one record per domain and
/// content, however often it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The tenant it was sent to; only that domain's jobs use it.
    pub domain: String,
    /// The sha256 of its bytes, lowercase hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was first stored.
    pub created_at: DateTime<Utc>,
    /// When it is no longer needed: sent again or used by a job, it is kept longer.
    pub expires_at: DateTime<Utc>,
}

impl Upload {
    /// The record of two writes of one upload: the later expiry, the earlier creation.
    #[must_use]
    pub fn merged(&self, other: &Upload) -> Upload {
        Upload {
            domain: self.domain.clone(),
            sha256: self.sha256.clone(),
            size: self.size,
            created_at: self.created_at.min(other.created_at),
            expires_at: self.expires_at.max(other.expires_at),
        }
    }
}

/// What an artifacts read asks for: names after `after`, in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactQuery {
    /// Only names after this one (the cursor).
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
}

/// One page of a job's artifacts, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactPage {
    /// The artifacts, by name (byte order).
    pub items: Vec<Artifact>,
    /// The cursor to read on from (the last name) when the page was full.
    pub next: Option<String>,
}

/// What a `job.artifacts` event tells: how many artifacts were stored, and their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactsStored {
    /// How many.
    pub count: u64,
    /// Their sizes together.
    pub bytes: u64,
}

impl ArtifactsStored {
    /// The summary of `artifacts`.
    pub fn of(artifacts: &[Artifact]) -> Self {
        ArtifactsStored {
            count: artifacts.len() as u64,
            bytes: artifacts.iter().map(|a| a.size).sum(),
        }
    }
}

/// Who holds a piece of once-per-cluster work, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// What is held (e.g. `scheduler`, `job/<id>/logs`).
    pub name: String,
    /// Who holds it (a replica's id).
    pub holder: String,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// A registered webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Its id.
    pub id: Uuid,
    /// The domain whose events it gets (all domains when none).
    pub domain: Option<String>,
    /// Where events are POSTed.
    pub url: String,
    /// Which events (`job.succeeded`, ...; `*` for all).
    pub events: Vec<String>,
    /// The HMAC key of the signature header.
    pub secret: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// A client's `Idempotency-Key` and the fingerprint of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The key, as sent (scoped by the caller: the API prefixes the user once there are users).
    pub key: String,
    /// sha256 of the request, hex: the same key with another fingerprint is a conflict.
    pub fingerprint: String,
}

impl IdempotencyKey {
    /// A key with the fingerprint of `request` (its canonical bytes).
    pub fn new(key: impl Into<String>, request: &[u8]) -> Self {
        use sha2::Digest;
        IdempotencyKey {
            key: key.into(),
            fingerprint: hex::encode(sha2::Sha256::digest(request)),
        }
    }
}

/// What [`crate::JobStore::create_job`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// Stored a new job.
    New(Job),
    /// The idempotency key had made this job already; nothing was written.
    Existing(Job),
}

impl Created {
    /// The job, new or not.
    pub fn job(&self) -> &Job {
        match self {
            Created::New(job) | Created::Existing(job) => job,
        }
    }
}

/// One job's change as the event stream shows it (`GET /v1/events`, webhooks): the API's
/// `{"id", "job_id", "service", "task", "domain", "from", "to", "time", "message"}`, and
/// `artifacts` for the event of artifacts stored (`job.artifacts`; `from` and `to` are then
/// both the state the job was in).
///
/// `id` is opaque: the store that recorded the event made it, ids increase in the order readers
/// get the events, and [`crate::EventStore::read_events`] after an id yields every later event once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The event's id (a cursor of the stream).
    pub id: String,
    /// The job.
    pub job_id: JobId,
    /// Its service.
    pub service: String,
    /// Its task.
    pub task: String,
    /// Its domain.
    pub domain: String,
    /// The state before (none for the creation).
    pub from: Option<JobState>,
    /// The state after.
    pub to: JobState,
    /// When the change happened.
    pub time: DateTime<Utc>,
    /// Why.
    pub message: Option<String>,
    /// The artifacts stored, for a `job.artifacts` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<ArtifactsStored>,
}

impl Event {
    /// The event of `change` to `job` (the job as it is after the change), with `id`.
    pub fn new(id: String, job: &Job, change: &StateChange) -> Self {
        Event {
            id,
            job_id: job.id,
            service: job.service.clone(),
            task: job.task.clone(),
            domain: job.domain.clone(),
            from: change.from,
            to: change.to,
            time: change.time,
            message: change.message.clone(),
            artifacts: None,
        }
    }

    /// The event of `artifacts` stored for `job` (as it is now), with `id`.
    pub fn stored(id: String, job: &Job, artifacts: &[Artifact], time: DateTime<Utc>) -> Self {
        Event {
            id,
            job_id: job.id,
            service: job.service.clone(),
            task: job.task.clone(),
            domain: job.domain.clone(),
            from: Some(job.state),
            to: job.state,
            time,
            message: None,
            artifacts: Some(ArtifactsStored::of(artifacts)),
        }
    }

    /// Its kind: a job's move to `to`, or its artifacts stored.
    pub fn kind(&self) -> EventKind {
        match self.artifacts {
            Some(_) => EventKind::Artifacts,
            None => EventKind::Job(self.to),
        }
    }

    /// Its name for webhooks: `job.<to>` (`job.pending`, ..., `job.cancelled`) or
    /// `job.artifacts`.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}

/// Which events a reader wants. Every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only this domain's jobs.
    pub domain: Option<String>,
    /// Only jobs of these domains (the ones the caller may read); every domain when `None`.
    pub domains: Option<BTreeSet<String>>,
    /// Only this service's jobs.
    pub service: Option<String>,
    /// Only this task's jobs.
    pub task: Option<String>,
}

impl EventFilter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        self.domain.as_ref().is_none_or(|d| *d == event.domain)
            && self
                .domains
                .as_ref()
                .is_none_or(|ds| ds.contains(&event.domain))
            && self.service.as_ref().is_none_or(|s| *s == event.service)
            && self.task.as_ref().is_none_or(|t| *t == event.task)
    }
}

/// One read of the event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// The matching events, in stream order.
    pub items: Vec<Event>,
    /// Where to read on from: the position after everything this read looked at (matching or
    /// not). It is an id or a position between ids; pass it as `after` to the next read.
    pub next: String,
}

/// The delivery state of one webhook: its place in the event stream and how delivery goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The webhook.
    pub webhook_id: Uuid,
    /// Every event up to this position has been delivered (or did not match the webhook).
    pub delivered_through: String,
    /// Events delivered so far (2xx answers).
    pub delivered: u64,
    /// Failed attempts of the delivery under way (0 when nothing is failing).
    pub attempts: u32,
    /// The last failure (answer status, timeout, connection error).
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<DateTime<Utc>>,
    /// When a delivery last succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
}

impl Delivery {
    /// A webhook's state before its first delivery: it gets the events after `position`.
    pub fn starting_at(webhook_id: Uuid, position: String) -> Self {
        Delivery {
            webhook_id,
            delivered_through: position,
            delivered: 0,
            attempts: 0,
            last_error: None,
            last_error_at: None,
            last_success_at: None,
        }
    }
}
