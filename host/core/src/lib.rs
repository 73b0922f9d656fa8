//! # omni-core: the model and the plugin contract, with no I/O
//!
//! What every other crate of the host agrees on, as kube-core is under kube-client: job ids, the
//! [`Name`] rule (services, tasks, domains, steps), CPU arches and their Kubernetes names, the
//! job and step states with the one table of allowed transitions, the plugin contract (what a
//! plugin says it is, the job context it renders for, the manifests it answers, how a call fails,
//! and the [`plugin::Plugins`] trait the job service validates and renders through), and the
//! kinds of events with the names webhooks filter on.
//!
//! It does no I/O and knows nothing of tokio, HTTP, storage backends, engines or wasmtime: the
//! plugin host (`omni-runtime`) implements its plugin traits, the store, the engines and the API
//! build on its types.
//!
//! # Layout
//! - [`id`]: [`JobId`], time-based ids, the store's clock precision.
//! - [`name`]: [`Name`], one rule for service, task, domain and step names.
//! - [`arch`]: API arch names and their `kubernetes.io/arch` values.
//! - [`state`]: [`JobState`], [`StepState`], [`TRANSITIONS`].
//! - [`plugin`]: the plugin contract: [`PluginInfo`], [`JobContext`], [`Rendered`],
//!   [`FieldError`], [`PluginError`], and the [`Plugins`] trait.
//! - [`event`]: [`EventKind`], the names webhooks filter on.
//! - [`log`]: which output a log line came from ([`LogStream`]).

pub mod event;
pub mod id;
pub mod log;
pub mod name;
pub mod plugin;
pub mod state;
mod unknown;

/// CPU architectures: the API's names (`x86_64`, `aarch64`, ...) and their `kubernetes.io/arch`
/// values (`amd64`, `arm64`, ...), from the one table plugins share (`omni-arch`).
pub mod arch {
    pub use omni_arch::{ARCHES, from_kubernetes, is_known, to_kubernetes};
}

pub use event::EventKind;
pub use id::{JobId, id_time, new_job_id, now};
pub use log::LogStream;
pub use name::{InvalidName, Name};
pub use plugin::{
    DEFAULT_NAMESPACE, FieldError, InUse, JobContext, Manifest, PluginError, PluginInfo, Plugins,
    Pruned, Rendered, TaskPlugin,
};
pub use state::{IllegalTransition, JobState, StepState, TRANSITIONS, UnknownState};
