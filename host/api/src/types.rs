//! The API's own bodies: what the routes answer, as the OpenAPI document describes them. These
//! are the only types with `utoipa` on them; each is made from the model (`omni-core`,
//! `omni-store`) or the plugin host's status, so the model can change inside without changing
//! the HTTP contract (docs/api.md) by accident.
//!
//! Fields of the model's types (job, step and log states, names) are shown with named schemas
//! built from the model's own lists and rules ([`JobStateSchema`], [`NameSchema`], ...), so a
//! value added there appears in the document without a second list here.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use omni_core::{EventKind, JobId, JobState, LogStream, Name, StepState};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};

/// A string schema with these values.
fn one_of(values: impl IntoIterator<Item = &'static str>, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.into_iter().collect::<Vec<_>>()))
        .description(Some(description))
        .build()
}

/// A named schema made from the model: a type to name in `value_type = ...` of a field whose
/// Rust type is the model's (which has no `utoipa`).
macro_rules! model_schema {
    ($(#[$doc:meta])* $ty:ident = $name:literal, $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $ty;

        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                Schema::Object($schema).into()
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

model_schema!(
    /// The schema of the model's [`JobState`].
    JobStateSchema = "JobState",
    one_of(
        JobState::ALL.map(JobState::as_str),
        "Where a job is in its life. During a rolling upgrade, a state a newer server wrote may \
         appear as it is (docs/api.md, \"States\").",
    )
);

model_schema!(
    /// The schema of the model's [`StepState`].
    StepStateSchema = "StepState",
    one_of(StepState::ALL.map(StepState::as_str), "Where a step is.")
);

model_schema!(
    /// The schema of the model's [`LogStream`].
    LogStreamSchema = "LogStream",
    one_of(
        LogStream::ALL.map(LogStream::as_str),
        "Which output a log line came from.",
    )
);

model_schema!(
    /// The schema of the plugin host's compile tier.
    TierSchema = "Tier",
    one_of(
        ["quick", "optimized"],
        "Which compiler produced a plugin's code (`quick` or `optimized` in `GET /v1/plugins`).",
    )
);

model_schema!(
    /// The schema of a service, task or domain [`Name`].
    NameSchema = "Name",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(Name::MAX_LEN))
        .pattern(Some(Name::PATTERN))
        .description(Some(
            "A service, task or domain name: lowercase letters, digits and '-', 1 to 63 long, \
             not starting or ending with '-'.",
        ))
        .build()
);

/// The names of the events a webhook can ask for.
pub fn event_names() -> Vec<&'static str> {
    EventKind::names().collect()
}

/// Which plugin accepted a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginRef {
    /// The task it serves.
    pub task: String,
    /// Its version (from `describe`).
    pub version: String,
    /// The sha256 of its component file, hex.
    pub digest: String,
    /// The digest of the task's template set the job was accepted with, which renders it
    /// (absent on jobs an older server accepted).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub templates: Option<String>,
}

/// One step of a job (an init container, then the containers).
#[derive(Debug, Serialize, ToSchema)]
pub struct Step {
    /// Its name, from the plugin.
    pub name: String,
    /// Where it is.
    #[schema(value_type = StepStateSchema)]
    pub state: StepState,
}

/// A job.
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    /// Time-based id.
    #[schema(value_type = uuid::Uuid)]
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
    #[schema(value_type = JobStateSchema)]
    pub state: JobState,
    /// The task's parameters, as the plugin validated them: in a job's own answers, and in
    /// listings only with `view=full` (they may be large).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, required = false)]
    pub params: Option<Value>,
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
    /// Where its artifacts are listed (`/v1/jobs/{id}/artifacts`).
    pub artifacts: String,
}

impl From<omni_store::Job> for Job {
    fn from(job: omni_store::Job) -> Self {
        Job {
            artifacts: format!("/v1/jobs/{}/artifacts", job.id),
            id: job.id,
            service: job.service,
            task: job.task,
            domain: job.domain,
            arch: job.arch,
            state: job.state,
            params: Some(job.params),
            plugin: PluginRef {
                task: job.plugin.task,
                version: job.plugin.version,
                digest: job.plugin.digest,
                templates: job.plugin.templates,
            },
            engine: job.engine,
            message: job.message,
            steps: job
                .steps
                .into_iter()
                .map(|s| Step {
                    name: s.name,
                    state: s.state,
                })
                .collect(),
            created_at: job.created_at,
            updated_at: job.updated_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
        }
    }
}

/// One job state change (or artifacts of a job stored) as the event stream shows it
/// (`GET /v1/events`, webhooks).
///
/// `id` is opaque: ids increase in the order readers get the events, and reading after an id
/// yields every later event once.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    /// The event's id (a cursor of the stream).
    pub id: String,
    /// The job.
    #[schema(value_type = uuid::Uuid)]
    pub job_id: JobId,
    /// Its service.
    pub service: String,
    /// Its task.
    pub task: String,
    /// Its domain.
    pub domain: String,
    /// The state before (none for the creation).
    #[schema(value_type = Option<JobStateSchema>)]
    pub from: Option<JobState>,
    /// The state after.
    #[schema(value_type = JobStateSchema)]
    pub to: JobState,
    /// When the change happened.
    pub time: DateTime<Utc>,
    /// Why.
    pub message: Option<String>,
    /// Its name: `job.<to>` for a state change, `job.artifacts` for artifacts stored (what
    /// webhooks filter on).
    #[schema(value_type = String, example = "job.succeeded")]
    pub kind: &'static str,
    /// How many artifacts were stored, and their bytes (`job.artifacts` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub artifacts: Option<ArtifactsStored>,
}

/// What a `job.artifacts` event tells.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactsStored {
    /// How many artifacts were stored.
    pub count: u64,
    /// Their sizes together, in bytes.
    pub bytes: u64,
}

impl From<omni_store::Event> for Event {
    fn from(event: omni_store::Event) -> Self {
        Event {
            kind: event.name(),
            artifacts: event.artifacts.map(|a| ArtifactsStored {
                count: a.count,
                bytes: a.bytes,
            }),
            id: event.id,
            job_id: event.job_id,
            service: event.service,
            task: event.task,
            domain: event.domain,
            from: event.from,
            to: event.to,
            time: event.time,
            message: event.message,
        }
    }
}

/// One line a job's step printed.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogLine {
    /// The step that printed it.
    pub step: String,
    /// When it was printed.
    pub time: DateTime<Utc>,
    /// Its place in the job's log, increasing across steps (the cursor).
    pub seq: u64,
    /// stdout or stderr.
    #[schema(value_type = LogStreamSchema)]
    pub stream: LogStream,
    /// The text, without its line ending.
    pub line: String,
}

impl From<omni_store::LogLine> for LogLine {
    fn from(line: omni_store::LogLine) -> Self {
        LogLine {
            step: line.step,
            time: line.time,
            seq: line.seq,
            stream: line.stream,
            line: line.line,
        }
    }
}

/// One thing wrong in a request or in a job's params.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON Pointer into the request (or the params).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl From<omni_core::FieldError> for FieldError {
    fn from(error: omni_core::FieldError) -> Self {
        FieldError {
            path: error.path,
            message: error.message,
        }
    }
}

/// One rendered Kubernetes object.
#[derive(Debug, Serialize, ToSchema)]
pub struct Manifest {
    /// `apiVersion`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// The object.
    pub body: Value,
}

/// What a plugin rendered for a job (a dry run's answer).
#[derive(Debug, Serialize, ToSchema)]
pub struct Rendered {
    /// Objects in the order to apply them.
    pub manifests: Vec<Manifest>,
    /// Name of the batch/v1 Job to watch.
    pub primary: String,
}

impl From<omni_core::Rendered> for Rendered {
    fn from(rendered: omni_core::Rendered) -> Self {
        Rendered {
            manifests: rendered
                .manifests
                .into_iter()
                .map(|m| Manifest {
                    api_version: m.api_version,
                    kind: m.kind,
                    name: m.name,
                    body: m.body,
                })
                .collect(),
            primary: rendered.primary,
        }
    }
}

/// The schema of a plugin file's status.
fn status() -> Object {
    one_of(
        ["ready", "error"],
        "`ready` when a version of it serves, `error` when none does.",
    )
}

/// What `GET /v1/plugins` shows for one plugin file.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginStatus {
    /// The task it serves, when it loaded.
    pub task: Option<String>,
    /// Its version.
    pub version: Option<String>,
    /// sha256 of the serving component.
    pub digest: Option<String>,
    /// One line for humans.
    pub description: Option<String>,
    /// API arches.
    pub arches: Vec<String>,
    /// JSON Schema of the params.
    pub params_schema: Option<Value>,
    /// Step names.
    pub steps: Vec<String>,
    /// When the serving version was loaded.
    pub loaded_at: Option<DateTime<Utc>>,
    /// The serving version's code: `quick` (Winch's, while Cranelift compiles the optimized
    /// code in the background) or `optimized`.
    #[schema(value_type = Option<TierSchema>)]
    pub tier: Option<omni_runtime::Tier>,
    /// Whether calls start from a pre-initialized snapshot (settings parsed, templates compiled
    /// once): true once it is made, false while its template files changed since and a new one
    /// is made, or when the component does not export `wizer-initialize`.
    pub preinitialized: Option<bool>,
    /// `ready` when a version of it serves, `error` when none does.
    #[schema(schema_with = status)]
    pub status: &'static str,
    /// The last load error of the file, even while an older version serves.
    pub error: Option<String>,
    /// When that error happened.
    pub error_at: Option<DateTime<Utc>>,
    /// The file's name in the plugins directory.
    pub file: String,
}

impl From<omni_runtime::PluginStatus> for PluginStatus {
    fn from(s: omni_runtime::PluginStatus) -> Self {
        PluginStatus {
            task: s.task,
            version: s.version,
            digest: s.digest,
            description: s.description,
            arches: s.arches,
            params_schema: s.params_schema,
            steps: s.steps,
            loaded_at: s.loaded_at,
            tier: s.tier,
            preinitialized: s.preinitialized,
            status: s.status,
            error: s.error,
            error_at: s.error_at,
            file: s.file,
        }
    }
}
