//! The plugin contract: what a plugin says it is, the job it renders for, what it answers, how
//! a call fails, and the traits through which the job service validates and renders jobs.
//!
//! The WIT world `omni:plugin/job-handler` (the repository's `wit/`) is the contract's wire
//! form; these are its host-side types, checked. `omni-runtime` runs the components and
//! implements [`Plugins`] and [`TaskPlugin`]; nothing else needs wasmtime to speak of plugins.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::JobId;

/// The namespace objects are rendered for where no engine says another (Kubernetes engines
/// say theirs; dry runs and the local engine use this).
pub const DEFAULT_NAMESPACE: &str = "omni-jobs";

/// What a plugin says it is (its `describe`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginInfo {
    /// Task name.
    pub task: String,
    /// Plugin version.
    pub version: String,
    /// One line for humans.
    pub description: String,
    /// API arches it builds for.
    pub arches: Vec<String>,
    /// JSON Schema of the params.
    pub params_schema: Value,
    /// Step names in order.
    pub steps: Vec<String>,
}

/// One thing wrong in a job's params (or in a request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON Pointer into the params (or the request).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// The error `message` at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The job a plugin renders for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContext {
    /// Job id.
    pub job_id: String,
    /// Submitting service.
    pub service: String,
    /// Tenant domain.
    pub domain: String,
    /// Kubernetes namespace of the objects.
    pub namespace: String,
    /// Name of the job's objects.
    pub name: String,
    /// API arch.
    pub arch: String,
}

impl JobContext {
    /// The context of job `id`: its objects are named `omni-<id>` in `namespace`. Every render,
    /// a job's and a dry run's, is given its context by this one function.
    pub fn new(
        id: JobId,
        service: impl Into<String>,
        domain: impl Into<String>,
        namespace: impl Into<String>,
        arch: impl Into<String>,
    ) -> Self {
        JobContext {
            job_id: id.to_string(),
            service: service.into(),
            domain: domain.into(),
            namespace: namespace.into(),
            name: Self::object_name(id),
            arch: arch.into(),
        }
    }

    /// The name of job `id`'s objects.
    pub fn object_name(id: JobId) -> String {
        format!("omni-{id}")
    }
}

/// One rendered Kubernetes object.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// What `serialize` answered, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rendered {
    /// Objects in the order to apply them.
    pub manifests: Vec<Manifest>,
    /// Name of the batch/v1 Job to watch.
    pub primary: String,
}

/// A plugin call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The plugin rejected the params: the caller's mistake, with field errors.
    #[error("plugin {plugin}: invalid params")]
    InvalidParams {
        /// `task@version`.
        plugin: String,
        /// What is wrong, by JSON Pointer.
        errors: Vec<FieldError>,
    },
    /// The plugin's templates are missing or wrong: the operator's mistake.
    #[error("plugin {plugin}: template error: {message}")]
    Template {
        /// `task@version`.
        plugin: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin reported another failure it could name.
    #[error("plugin {plugin} failed: {message}")]
    Failed {
        /// `task@version`.
        plugin: String,
        /// The plugin's message.
        message: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("plugin {plugin} timed out after {limit:?}")]
    Timeout {
        /// `task@version`.
        plugin: String,
        /// The deadline.
        limit: Duration,
    },
    /// The plugin asked to wait (sleep, or poll a clock) until after its call's deadline. It is
    /// stopped when it asks, not at the deadline: no thread of the host waits on a plugin.
    #[error(
        "plugin {plugin} was stopped: it asked to wait {asked:?}, past its deadline of {limit:?}"
    )]
    WaitPastDeadline {
        /// `task@version`.
        plugin: String,
        /// The wait it asked for.
        asked: Duration,
        /// The deadline of its call.
        limit: Duration,
    },
    /// The plugin tried to grow its memory past its cap.
    #[error("plugin {plugin} exceeded its memory limit of {limit} bytes (asked for {requested})")]
    MemoryExceeded {
        /// `task@version`.
        plugin: String,
        /// The cap.
        limit: usize,
        /// The size it asked to grow to.
        requested: usize,
    },
    /// The plugin's answer was larger than allowed.
    #[error("plugin {plugin} answered {size} bytes, more than its output limit of {limit}")]
    OutputTooLarge {
        /// `task@version`.
        plugin: String,
        /// The answer's size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The plugin called something the sandbox does not give plugins (sockets).
    #[error("plugin {plugin} was stopped: it called {call}, and plugins get no {what}")]
    Denied {
        /// `task@version`.
        plugin: String,
        /// The WASI function it called.
        call: String,
        /// What the sandbox withholds (`network`).
        what: &'static str,
    },
    /// The plugin panicked.
    #[error("plugin {plugin} panicked: {message}")]
    Panicked {
        /// `task@version`.
        plugin: String,
        /// The panic message the plugin printed.
        message: String,
    },
    /// The plugin trapped for another reason (a bug in the plugin).
    #[error("plugin {plugin} crashed: {message}")]
    Trapped {
        /// `task@version`.
        plugin: String,
        /// The trap and its backtrace's first line.
        message: String,
    },
    /// The plugin's answer breaks the contract (a manifest that is not a Kubernetes object...).
    #[error("plugin {plugin} answered something invalid: {message}")]
    BadOutput {
        /// `task@version`.
        plugin: String,
        /// What is wrong with it.
        message: String,
    },
    /// The host could not run the call (no free instance slot, the worker thread died).
    #[error("plugin {plugin} could not be run: {message}")]
    Host {
        /// `task@version`.
        plugin: String,
        /// Why.
        message: String,
    },
}

impl PluginError {
    /// A short stable name of the error's kind, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidParams { .. } => "invalid_params",
            Self::Template { .. } => "template",
            Self::Failed { .. } => "failed",
            Self::Timeout { .. } => "timeout",
            Self::WaitPastDeadline { .. } => "wait",
            Self::MemoryExceeded { .. } => "memory",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::Denied { .. } => "denied",
            Self::Panicked { .. } => "panic",
            Self::Trapped { .. } => "trap",
            Self::BadOutput { .. } => "bad_output",
            Self::Host { .. } => "host",
        }
    }
}

/// One loaded task plugin, as the job service uses it.
#[async_trait]
pub trait TaskPlugin: Send + Sync + fmt::Debug {
    /// What it said it is.
    fn info(&self) -> &PluginInfo;

    /// The sha256 of its component, hex.
    fn digest(&self) -> &str;

    /// Checks a job's params (JSON text).
    ///
    /// # Errors
    /// [`PluginError::InvalidParams`] with the fields at fault; any other [`PluginError`] when
    /// the call itself failed.
    async fn validate(&self, params: String) -> Result<(), PluginError>;

    /// Renders a job's objects for `job` from its params (JSON text).
    ///
    /// # Errors
    /// A [`PluginError`] naming the plugin and what went wrong.
    async fn serialize(&self, job: JobContext, params: String) -> Result<Rendered, PluginError>;
}

/// The loaded plugins, by task, and the versions of them kept to render the jobs they accepted.
#[async_trait]
pub trait Plugins: Send + Sync + fmt::Debug {
    /// The plugin serving `task` now, if one is loaded.
    fn plugin(&self, task: &str) -> Option<Arc<dyn TaskPlugin>>;

    /// The version of `task`'s plugin whose component has the sha256 `digest`: the one serving
    /// now, or an earlier one still kept (loaded again if it must be), whatever serves now.
    /// `None` when no version with that digest is kept for the task.
    async fn version(&self, task: &str, digest: &str) -> Option<Arc<dyn TaskPlugin>> {
        self.plugin(task).filter(|plugin| plugin.digest() == digest)
    }

    /// The digest of the version of `task`'s plugin that calls itself `version`: the serving
    /// one if it does, else the most recently kept one that does.
    fn digest_of(&self, task: &str, version: &str) -> Option<String> {
        self.plugin(task)
            .filter(|plugin| plugin.info().version == version)
            .map(|plugin| plugin.digest().to_owned())
    }

    /// The digest of `task`'s templates as they are now, kept so that a job accepted with them
    /// is rendered with them later; `None` when templates are not versioned (the job then
    /// renders with the templates of its render's time).
    async fn templates(&self, task: &str) -> Option<String> {
        let _ = task;
        None
    }

    /// As [`Plugins::version`], bound to the template set with the digest `templates`: it
    /// renders with that set whatever the templates are when it renders. `None` when the
    /// version or the set is not kept.
    async fn version_with_templates(
        &self,
        task: &str,
        digest: &str,
        templates: &str,
    ) -> Option<Arc<dyn TaskPlugin>> {
        let _ = templates;
        self.version(task, digest).await
    }

    /// Deletes the kept versions and template sets that no stored job records (`in_use`), that
    /// do not serve and are not among the few most recently used, and the compiled code of
    /// components no longer kept or serving. Answers what went; nothing without kept versions.
    async fn prune(&self, in_use: &InUse) -> Pruned {
        let _ = in_use;
        Pruned::default()
    }
}

/// What the stored jobs record of their plugins: the versions to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InUse {
    /// The sha256 of each component a stored job records.
    pub components: std::collections::BTreeSet<String>,
    /// The digest of each template set a stored job records.
    pub templates: std::collections::BTreeSet<String>,
}

/// What a prune deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Kept components (with their index files).
    pub components: usize,
    /// Kept template sets.
    pub template_sets: usize,
    /// Files of the compile cache.
    pub cache_files: usize,
}
