//! One loaded plugin and its calls. Every call gets a fresh instance from the pre-linked
//! `InstancePre`, so no state leaks between jobs, under the plugin's [`Limits`].
//!
//! A plugin loaded with [`Plugin::load_tiered`] may start on quickly compiled code (see
//! [`crate::sandbox`]): its optimized code is compiled on a background thread, checked (it
//! links and describes itself the same), and swapped in atomically; a call in flight finishes on
//! the code it started with.
//!
//! # Layout
//! - this file: the plugin, its loading, and its calls (`validate`, `serialize`) each under its
//!   limits, with what ended a failed one (deadline, a wait past it, memory, a denied import, a
//!   panic, a trap).
//! - `background`: the work a shared plugin does beside its calls, one plugin at a time:
//!   optimizing quick code, and pre-initializing ([`Plugin::prepare`]).
//! - `contract`: what the host accepts of `describe` and `serialize` answers.

mod background;
mod contract;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use chrono::{DateTime, Utc};
use serde_json::Value;
use wasmtime::component::Component;
use wasmtime::{Engine, Store};

use crate::bindings::omni::plugin::types as wit;
use crate::bindings::{JobHandler, JobHandlerPre};
use contract::{check_info, check_rendered, field_errors, info_size};
use omni_core::{JobContext, PluginError, PluginInfo, Rendered, TaskPlugin};

use crate::error::LoadError;
use crate::limits::Limits;
use crate::prepare;
use crate::sandbox::{Denied, EPOCH_TICK, Sandbox, Tier, digest};
use crate::state::{HostState, Reads, TemplateSource};
use crate::templates::TemplateSet;

/// Time the outer timeout adds to a call's deadline before giving up on the worker thread. The
/// epoch deadline stops wasm code; this bounds time spent in the host on the plugin's behalf.
const OUTER_GRACE: Duration = Duration::from_millis(500);

/// A loaded plugin as the job service sees it ([`TaskPlugin`]): its calls run on blocking
/// threads, which need the plugin shared. Bound to a kept template set, it renders with that set
/// (a job accepted with templates that have changed since); else with the templates directory.
#[derive(Debug)]
pub(crate) struct Shared(pub(crate) Arc<Plugin>, pub(crate) Option<Arc<TemplateSet>>);

#[async_trait::async_trait]
impl TaskPlugin for Shared {
    fn info(&self) -> &PluginInfo {
        self.0.info()
    }

    fn digest(&self) -> &str {
        self.0.digest()
    }

    async fn validate(&self, params: String) -> Result<(), PluginError> {
        self.0.validate(params).await
    }

    async fn serialize(&self, job: JobContext, params: String) -> Result<Rendered, PluginError> {
        match &self.1 {
            Some(set) => {
                self.0
                    .serialize_with_templates(job, params, Arc::clone(set))
                    .await
            }
            None => self.0.serialize(job, params).await,
        }
    }
}

/// A plugin's compiled, pre-linked code and the Engine it runs in.
struct Code {
    pre: JobHandlerPre<HostState>,
    engine: Engine,
    tier: Tier,
}

impl Code {
    fn link(
        sandbox: &Sandbox,
        path: &Path,
        component: &Component,
        tier: Tier,
    ) -> Result<Self, LoadError> {
        let link_error = |source| LoadError::Link {
            path: path.to_owned(),
            source,
        };
        let backend = sandbox.backend(tier);
        let pre = backend
            .linker
            .instantiate_pre(component)
            .map_err(link_error)?;
        Ok(Self {
            pre: JobHandlerPre::new(pre).map_err(link_error)?,
            engine: backend.engine.clone(),
            tier,
        })
    }
}

/// A pre-initialized snapshot of a plugin (see [`crate::prepare`]) and the template files its
/// initialization read, as they were.
struct Prepared {
    code: Code,
    reads: Reads,
}

/// A loaded plugin: a compiled, pre-linked component and what it said it is.
pub struct Plugin {
    info: PluginInfo,
    /// The plugin itself, for the background work its calls start (a plugin made by
    /// [`Plugin::load`] has none).
    this: Weak<Plugin>,
    /// The component, kept to pre-initialize it again after a template edit; `None` when it
    /// does not export `wizer-initialize`.
    source: Option<Arc<Vec<u8>>>,
    prepared: ArcSwapOption<Prepared>,
    /// A pre-initialization is under way or queued.
    preparing: AtomicBool,
    digest: String,
    path: PathBuf,
    loaded_at: DateTime<Utc>,
    limits: Limits,
    code: ArcSwap<Code>,
    sandbox: Arc<Sandbox>,
    task: Arc<str>,
    label: Arc<str>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("plugin", &self.label)
            .field("digest", &self.digest)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Compiles (or loads from the cache), links and checks a component: it must instantiate,
    /// answer `describe`, and describe itself acceptably (task name, semver version, known arches,
    /// a JSON Schema object, step names). It serves without a snapshot until [`Plugin::prepare`]
    /// is called, and after a template edit until it is called again.
    ///
    /// # Errors
    /// A [`LoadError`] naming the file and what was wrong.
    pub fn load(sandbox: &Arc<Sandbox>, path: &Path, bytes: &[u8]) -> Result<Self, LoadError> {
        let digest = digest(bytes);
        let component = sandbox.compile(path, bytes, &digest)?;
        let mut plugin = Self::checked(sandbox, path, digest, &component, Tier::Optimized)?;
        if prepare::exports_initialize(&component) {
            plugin.source = Some(Arc::new(bytes.to_vec()));
        }
        Ok(plugin)
    }

    /// As [`Plugin::load`], but serving as soon as possible: a component that is not in the
    /// compile cache starts on quickly compiled code, and its optimized code replaces it when a
    /// background thread has compiled it (into the cache) and checked it. `digest` is the sha256
    /// of `bytes` as the registry computed it (hashing megabytes once per load is enough), and
    /// the bytes go to that thread as they are.
    ///
    /// # Errors
    /// As [`Plugin::load`].
    pub(crate) fn load_tiered(
        sandbox: &Arc<Sandbox>,
        path: &Path,
        bytes: Vec<u8>,
        digest: String,
    ) -> Result<Arc<Self>, LoadError> {
        let (component, tier) = sandbox.compile_first(path, &bytes, &digest)?;
        let mut plugin = Self::checked(sandbox, path, digest, &component, tier)?;
        let bytes = Arc::new(bytes);
        if prepare::exports_initialize(&component) {
            plugin.source = Some(Arc::clone(&bytes));
        }
        let plugin = Arc::new_cyclic(|this| {
            plugin.this = this.clone();
            plugin
        });
        plugin.in_background((tier == Tier::Quick).then_some(bytes));
        Ok(plugin)
    }

    /// As [`Plugin::load`], but on quick code only, never cached nor optimized: for a process
    /// that makes a call or two and exits (`omni plugin render`), where compiling is the cost.
    ///
    /// # Errors
    /// As [`Plugin::load`].
    pub fn load_quick(
        sandbox: &Arc<Sandbox>,
        path: &Path,
        bytes: &[u8],
    ) -> Result<Self, LoadError> {
        let digest = digest(bytes);
        let (component, tier) = sandbox.compile_quick(path, bytes, &digest)?;
        Self::checked(sandbox, path, digest, &component, tier)
    }

    /// Which compiler's code new calls run on when they do not run on a pre-initialized
    /// snapshot (which is always Cranelift's).
    pub fn tier(&self) -> Tier {
        self.code.load().tier
    }

    /// Whether new calls start from a pre-initialized snapshot: the component exports
    /// `wizer-initialize`, its snapshot is made, and the template files its initialization read
    /// are unchanged since (when they changed, asking starts a new snapshot, as a call would).
    pub fn is_prepared(&self) -> bool {
        self.current_snapshot().is_some()
    }

    fn checked(
        sandbox: &Arc<Sandbox>,
        path: &Path,
        digest: String,
        component: &Component,
        tier: Tier,
    ) -> Result<Self, LoadError> {
        let code = Code::link(sandbox, path, component, tier)?;
        let file = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        // Until it says which task it is, a plugin runs as the task its file is named for
        // (`<task>.wasm`): `describe` runs under that task's limits (the defaults for a file
        // named otherwise) and sees that task's templates.
        let named = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut plugin = Self {
            this: Weak::new(),
            source: None,
            prepared: ArcSwapOption::empty(),
            preparing: AtomicBool::new(false),
            info: PluginInfo {
                task: String::new(),
                version: String::new(),
                description: String::new(),
                arches: Vec::new(),
                params_schema: Value::Null,
                steps: Vec::new(),
            },
            digest,
            path: path.to_owned(),
            loaded_at: Utc::now(),
            limits: sandbox.limits().for_task(&named),
            code: ArcSwap::from_pointee(code),
            sandbox: Arc::clone(sandbox),
            task: named.as_str().into(),
            label: file.as_str().into(),
        };
        let describe_error = |source| LoadError::Describe {
            path: path.to_owned(),
            source,
        };
        let start = Instant::now();
        let info = plugin.call(plugin.limits, |h, s| h.call_describe(s));
        let task = info.as_ref().map_or(file.as_str(), |i| i.task.as_str());
        crate::metrics::call(task, "describe", start, &info);
        let info = info.map_err(describe_error)?;
        plugin
            .check_size(plugin.limits, info_size(&info))
            .map_err(describe_error)?;
        plugin.info = check_info(info).map_err(|message| LoadError::BadInfo {
            path: path.to_owned(),
            message,
        })?;
        plugin.limits = sandbox.limits().for_task(&plugin.info.task);
        plugin.task = plugin.info.task.as_str().into();
        plugin.label = format!("{}@{}", plugin.info.task, plugin.info.version).into();
        Ok(plugin)
    }

    /// What the plugin said it is.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// sha256 of the component file, lowercase hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When it was loaded.
    pub fn loaded_at(&self) -> DateTime<Utc> {
        self.loaded_at
    }

    /// Its call limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// `task@version`, as errors and logs name it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Checks params (JSON text) on the calling thread.
    ///
    /// # Errors
    /// [`PluginError::InvalidParams`] with field errors, or why the call failed.
    pub fn validate_blocking(&self, params: &str) -> Result<(), PluginError> {
        let start = Instant::now();
        let result = self.validate_unmeasured(params);
        crate::metrics::call(&self.task, "validate", start, &result);
        result
    }

    fn validate_unmeasured(&self, params: &str) -> Result<(), PluginError> {
        let limits = self.limits;
        let answer = self.call(limits, |h, s| h.call_validate(s, params))?;
        match answer {
            Ok(()) => Ok(()),
            Err(errors) => {
                self.check_size(
                    limits,
                    errors.iter().map(|e| e.path.len() + e.message.len()).sum(),
                )?;
                Err(PluginError::InvalidParams {
                    plugin: self.label.to_string(),
                    errors: field_errors(errors),
                })
            }
        }
    }

    /// Renders a job's manifests on the calling thread.
    ///
    /// # Errors
    /// [`PluginError::InvalidParams`], [`PluginError::Template`] or [`PluginError::Failed`] as the
    /// plugin reported, or why the call failed.
    pub fn serialize_blocking(
        &self,
        job: &JobContext,
        params: &str,
    ) -> Result<Rendered, PluginError> {
        let start = Instant::now();
        let result = self.serialize_unmeasured(job, params, None);
        crate::metrics::call(&self.task, "serialize", start, &result);
        result
    }

    /// [`Plugin::serialize_blocking`] with the kept template set `templates` instead of the
    /// templates directory (a job accepted with templates that have changed since), on the
    /// plugin's plain code: its pre-initialized snapshot read the directory's files.
    ///
    /// # Errors
    /// As [`Plugin::serialize_blocking`].
    pub fn serialize_with_templates_blocking(
        &self,
        job: &JobContext,
        params: &str,
        templates: &Arc<TemplateSet>,
    ) -> Result<Rendered, PluginError> {
        let start = Instant::now();
        let result = self.serialize_unmeasured(job, params, Some(templates));
        crate::metrics::call(&self.task, "serialize", start, &result);
        result
    }

    /// [`Plugin::serialize_with_templates_blocking`] on a blocking thread, under the outer
    /// timeout.
    ///
    /// # Errors
    /// As [`Plugin::serialize_blocking`].
    pub async fn serialize_with_templates(
        self: &Arc<Self>,
        job: JobContext,
        params: String,
        templates: Arc<TemplateSet>,
    ) -> Result<Rendered, PluginError> {
        let this = Arc::clone(self);
        self.off_thread("serialize", move || {
            this.serialize_with_templates_blocking(&job, &params, &templates)
        })
        .await
    }

    fn serialize_unmeasured(
        &self,
        job: &JobContext,
        params: &str,
        templates: Option<&Arc<TemplateSet>>,
    ) -> Result<Rendered, PluginError> {
        let limits = self.limits;
        let context = wit::JobContext {
            job_id: job.job_id.clone(),
            service: job.service.clone(),
            domain: job.domain.clone(),
            namespace: job.namespace.clone(),
            name: job.name.clone(),
            arch: job.arch.clone(),
        };
        let answer = match templates {
            Some(set) => self.call_on(
                &self.code.load_full(),
                TemplateSource::Fixed(Arc::clone(set)),
                limits,
                |h, s| h.call_serialize(s, &context, params),
            ),
            None => self.call(limits, |h, s| h.call_serialize(s, &context, params)),
        }?;
        let plugin = || self.label.to_string();
        match answer {
            Ok(rendered) => {
                let size = rendered.primary.len()
                    + rendered
                        .manifests
                        .iter()
                        .map(|m| m.api_version.len() + m.kind.len() + m.name.len() + m.body.len())
                        .sum::<usize>();
                self.check_size(limits, size)?;
                check_rendered(rendered, job).map_err(|message| PluginError::BadOutput {
                    plugin: plugin(),
                    message,
                })
            }
            Err(error) => {
                let (size, error) = match error {
                    wit::SerializeError::InvalidParams(errors) => (
                        errors.iter().map(|e| e.path.len() + e.message.len()).sum(),
                        PluginError::InvalidParams {
                            plugin: plugin(),
                            errors: field_errors(errors),
                        },
                    ),
                    wit::SerializeError::Template(message) => (
                        message.len(),
                        PluginError::Template {
                            plugin: plugin(),
                            message,
                        },
                    ),
                    wit::SerializeError::Internal(message) => (
                        message.len(),
                        PluginError::Failed {
                            plugin: plugin(),
                            message,
                        },
                    ),
                };
                self.check_size(limits, size)?;
                Err(error)
            }
        }
    }

    /// [`Plugin::validate_blocking`] on a blocking thread, under the outer timeout.
    ///
    /// # Errors
    /// As [`Plugin::validate_blocking`].
    pub async fn validate(self: &Arc<Self>, params: String) -> Result<(), PluginError> {
        let this = Arc::clone(self);
        self.off_thread("validate", move || this.validate_blocking(&params))
            .await
    }

    /// [`Plugin::serialize_blocking`] on a blocking thread, under the outer timeout.
    ///
    /// # Errors
    /// As [`Plugin::serialize_blocking`].
    pub async fn serialize(
        self: &Arc<Self>,
        job: JobContext,
        params: String,
    ) -> Result<Rendered, PluginError> {
        let this = Arc::clone(self);
        self.off_thread("serialize", move || this.serialize_blocking(&job, &params))
            .await
    }

    /// Runs `f` (which records its own call) on a blocking thread; the failures of the thread
    /// itself are recorded here.
    async fn off_thread<R: Send + 'static>(
        &self,
        export: &'static str,
        f: impl FnOnce() -> Result<R, PluginError> + Send + 'static,
    ) -> Result<R, PluginError> {
        let limit = self.limits.timeout;
        let error =
            match tokio::time::timeout(limit + OUTER_GRACE, tokio::task::spawn_blocking(f)).await {
                Ok(Ok(result)) => return result,
                Ok(Err(join)) => PluginError::Host {
                    plugin: self.label.to_string(),
                    message: join.to_string(),
                },
                Err(_) => PluginError::Timeout {
                    plugin: self.label.to_string(),
                    limit,
                },
            };
        crate::metrics::error(&self.task, export, &error);
        Err(error)
    }

    /// A call on the pre-initialized snapshot while it is current, else on the plain code.
    fn call<R>(
        &self,
        limits: Limits,
        f: impl FnOnce(&JobHandler, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let live = self.live_templates();
        match self.current_snapshot() {
            Some(prepared) => self.call_on(&prepared.code, live, limits, f),
            None => self.call_on(&self.code.load_full(), live, limits, f),
        }
    }

    /// The templates directory, as calls read it.
    fn live_templates(&self) -> TemplateSource {
        TemplateSource::Live(Arc::clone(self.sandbox.templates()))
    }

    fn call_on<R>(
        &self,
        code: &Code,
        templates: TemplateSource,
        limits: Limits,
        f: impl FnOnce(&JobHandler, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let state = HostState::new(
            templates,
            Arc::clone(&self.task),
            Arc::clone(&self.label),
            limits,
        );
        let mut store = Store::new(&code.engine, state);
        limit(&mut store, limits);
        let result = code
            .pre
            .instantiate(&mut store)
            .and_then(|handler| f(&handler, &mut store));
        result.map_err(|e| self.classify(&e, &store, limits))
    }

    fn classify(
        &self,
        error: &wasmtime::Error,
        store: &Store<HostState>,
        limits: Limits,
    ) -> PluginError {
        let plugin = self.label.to_string();
        if let Some(requested) = store.data().limiter.exceeded {
            return PluginError::MemoryExceeded {
                plugin,
                limit: limits.memory,
                requested,
            };
        }
        if let Some(asked) = store.data().waited {
            return PluginError::WaitPastDeadline {
                plugin,
                asked,
                limit: limits.timeout,
            };
        }
        if let Some(denied) = error.downcast_ref::<Denied>() {
            return PluginError::Denied {
                plugin,
                call: denied.call.clone(),
                what: denied.what,
            };
        }
        if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
            return PluginError::Timeout {
                plugin,
                limit: limits.timeout,
            };
        }
        let stderr = String::from_utf8_lossy(&store.data().stderr.contents()).into_owned();
        if let Some(message) = panic_message(&stderr) {
            return PluginError::Panicked { plugin, message };
        }
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => PluginError::Trapped {
                plugin,
                message: format!("{trap}; {}", first_line(&format!("{error:#}"))),
            },
            None => PluginError::Host {
                plugin,
                message: first_line(&format!("{error:#}")).to_owned(),
            },
        }
    }

    fn check_size(&self, limits: Limits, size: usize) -> Result<(), PluginError> {
        if size > limits.output {
            return Err(PluginError::OutputTooLarge {
                plugin: self.label.to_string(),
                size,
                limit: limits.output,
            });
        }
        Ok(())
    }
}

/// Puts a store under `limits`: its memory cap and its deadline.
pub(crate) fn limit(store: &mut Store<HostState>, limits: Limits) {
    store.limiter(|s| &mut s.limiter);
    let ticks = limits
        .timeout
        .as_micros()
        .div_ceil(EPOCH_TICK.as_micros())
        .max(1);
    store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    store.epoch_deadline_trap();
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The message of a Rust panic as the guest's std prints it to stderr:
/// `thread '<unnamed>' panicked at src/lib.rs:1:2:\nmessage\nnote: ...`.
fn panic_message(stderr: &str) -> Option<String> {
    let (_, after) = stderr.split_once("panicked at ")?;
    let mut lines = after.lines();
    let location = lines.next()?.trim_end_matches(':');
    let message: Vec<&str> = lines.take_while(|l| !l.starts_with("note: ")).collect();
    Some(format!("{} (at {location})", message.join("\n").trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_extracted_from_stderr() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:78:31:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("boom (at src/lib.rs:78:31)")
        );
        assert_eq!(panic_message("just noise"), None);
    }
}
