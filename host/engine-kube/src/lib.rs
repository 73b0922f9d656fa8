//! # omni-engine-kube: jobs on a Kubernetes cluster
//!
//! [`KubeEngine`] is the [`Engine`] that runs a job's rendered objects on a Kubernetes cluster
//! through kube: it applies them with server-side apply in its namespace (the Job first, the
//! others owned by it so the garbage collector removes them with it), follows every managed Job
//! and pod with one watcher per kind (not one per job), maps their statuses to Omni's job and
//! step states, streams each step's container log, and deletes Jobs to cancel and clean up. It
//! keeps nothing of its own: a new instance (a restarted omni) finds the running jobs in the
//! cluster by their labels.
//!
//! It knows nothing of HTTP, the store or the scheduler; what plugins render reaches it as
//! [`EngineJob`]s.
//!
//! # Layout
//! - [`KubeEngineConfig`], [`Propagation`], [`KubeEngine`]: configuration and the engine.
//! - `apply`: the objects as applied (namespace, labels, owner references).
//! - `status`: a Job and its pods to Omni's states and failure messages.
//! - `tracker`: the watchers and the per-job views that progress and logs follow.
//! - `logs`: container logs, step by step, resumable.

mod apply;
mod logs;
mod status;
mod tracker;

use std::collections::HashMap;
use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, Scope};
use kube::{Api, Client, Config};
use omni_engine::{
    Engine, EngineError, EngineJob, JobId, LogCursor, LogStreamOf, Progress, ProgressStream,
};
use serde::Deserialize;
use tokio::sync::{OnceCell, watch};

use crate::apply::{JOB_ID, MANAGED_BY};
use crate::status::JobView;
use crate::tracker::Tracker;

/// The field manager of every server-side apply.
const FIELD_MANAGER: &str = "omni";

/// How a cancel or cleanup deletes a Job's pods and owned objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    /// The Job goes at once; the garbage collector removes its pods and objects after.
    #[default]
    Background,
    /// The Job stays, being deleted, until its pods and objects are gone.
    Foreground,
}

fn default_namespace() -> String {
    omni_engine::DEFAULT_NAMESPACE.to_owned()
}

fn default_max_log_streams() -> usize {
    256
}

/// An `[[engines]]` entry of kind `kubernetes`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeEngineConfig {
    /// The engine's name, unique among engines.
    pub name: String,
    /// The API arches (`x86_64`, `aarch64`, ...) it runs jobs for; the rendered Jobs' node
    /// selectors pick the nodes.
    pub arches: Vec<String>,
    /// How many jobs it runs at once at most.
    pub max_running: usize,
    /// The kubeconfig file; without it, the in-cluster service account or the usual inference
    /// (`KUBECONFIG`, `~/.kube/config`).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context; its current context without it.
    #[serde(default)]
    pub context: Option<String>,
    /// The namespace its jobs' objects are rendered for and go to; created when missing
    /// (`omni-jobs`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// How cancel and cleanup delete (`background`, or `foreground`).
    #[serde(default)]
    pub propagation: Propagation,
    /// Running steps whose logs are followed at once at most (256); beyond it, running steps
    /// take turns of a few seconds, and their lines come in those turns.
    #[serde(default = "default_max_log_streams")]
    pub max_log_streams: usize,
}

/// The part of the engine its background tasks share.
pub(crate) struct Inner {
    pub(crate) name: String,
    namespace: String,
    propagation: Propagation,
    client: Client,
    jobs: Api<Job>,
    pub(crate) pods: Api<Pod>,
    pub(crate) tracker: Tracker,
    /// Resolved kinds of the objects applied so far.
    kinds: Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>,
    namespace_ready: OnceCell<()>,
    /// Bounds the apply requests in flight: kube's client speaks HTTP/1.1, so each one is a
    /// connection of its own, and a scheduler starting thousands of jobs at once would open
    /// thousands (and hold their memory) without it.
    applying: tokio::sync::Semaphore,
    /// Bounds the log connections.
    pub(crate) logs: logs::LogConnections,
}

/// Apply requests in flight at once, per engine.
const MAX_APPLYING: usize = 32;

impl Inner {
    pub(crate) fn unknown(&self, id: JobId) -> EngineError {
        EngineError::UnknownJob {
            engine: self.name.clone(),
            id,
        }
    }

    fn unavailable(&self, message: impl fmt::Display) -> EngineError {
        EngineError::Unavailable {
            engine: self.name.clone(),
            message: message.to_string(),
        }
    }

    /// A kube error as the engine's: the API server's refusal of an object (a 4xx other than
    /// 401, 403, 408 and 429, which say nothing about the object) is a rejection with its
    /// message; anything else (no answer, 5xx, a timeout) means the cluster is unavailable.
    fn error(&self, error: kube::Error) -> EngineError {
        match error {
            kube::Error::Api(response)
                if (400..500).contains(&response.code)
                    && !matches!(response.code, 401 | 403 | 408 | 429) =>
            {
                EngineError::Rejected {
                    engine: self.name.clone(),
                    message: response.message,
                }
            }
            error => self.unavailable(error),
        }
    }

    fn delete_params(&self) -> DeleteParams {
        match self.propagation {
            Propagation::Background => DeleteParams::background(),
            Propagation::Foreground => DeleteParams::foreground(),
        }
    }

    /// Creates the namespace unless it exists (once per engine); not being allowed to is fine,
    /// as long as it exists.
    async fn ensure_namespace(&self) -> Result<(), EngineError> {
        self.namespace_ready
            .get_or_try_init(|| async {
                let namespaces: Api<Namespace> = Api::all(self.client.clone());
                let namespace = Namespace {
                    metadata: ObjectMeta {
                        name: Some(self.namespace.clone()),
                        labels: Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into()),
                        ..ObjectMeta::default()
                    },
                    ..Namespace::default()
                };
                match namespaces.create(&PostParams::default(), &namespace).await {
                    Ok(_) => {
                        tracing::info!(engine = %self.name, namespace = %self.namespace, "created the namespace");
                        Ok(())
                    }
                    Err(kube::Error::Api(r)) if r.code == 409 => Ok(()),
                    Err(kube::Error::Api(r)) if r.code == 403 => {
                        tracing::info!(engine = %self.name, namespace = %self.namespace, message = %r.message,
                            "not allowed to create the namespace; assuming it exists");
                        Ok(())
                    }
                    Err(error) => Err(self.error(error)),
                }
            })
            .await
            .map(|_| ())
    }

    async fn resolve(
        &self,
        gvk: &GroupVersionKind,
    ) -> Result<(ApiResource, ApiCapabilities), EngineError> {
        let known = self
            .kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(gvk)
            .cloned();
        if let Some(known) = known {
            return Ok(known);
        }
        let resolved = kube::discovery::pinned_kind(&self.client, gvk)
            .await
            .map_err(|error| match error {
                kube::Error::Discovery(_) => EngineError::Rejected {
                    engine: self.name.clone(),
                    message: format!(
                        "the cluster has no kind {}/{} {}",
                        gvk.group, gvk.version, gvk.kind
                    ),
                },
                error => self.error(error),
            })?;
        self.kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(gvk.clone(), resolved.clone());
        Ok(resolved)
    }

    async fn apply(&self, object: &apply::Object) -> Result<DynamicObject, EngineError> {
        let gvk = GroupVersionKind::gvk(&object.group, &object.version, &object.kind);
        let (resource, capabilities) = self.resolve(&gvk).await?;
        if capabilities.scope != Scope::Namespaced {
            return Err(EngineError::Rejected {
                engine: self.name.clone(),
                message: format!(
                    "{} {:?} is cluster-scoped; the engine applies namespaced objects only",
                    object.kind, object.name
                ),
            });
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        // Never closed, so acquiring cannot fail.
        let _permit = self.applying.acquire().await.ok();
        api.patch(&object.name, &params, &Patch::Apply(&object.body))
            .await
            .map_err(|e| self.error(e))
    }
}

/// The Kubernetes engine. Dropping it stops its watchers.
pub struct KubeEngine {
    inner: Arc<Inner>,
    arches: Vec<String>,
    max_running: usize,
    watch: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for KubeEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeEngine")
            .field("name", &self.inner.name)
            .field("namespace", &self.inner.namespace)
            .field("arches", &self.arches)
            .finish_non_exhaustive()
    }
}

impl Drop for KubeEngine {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

impl KubeEngine {
    /// Connects to the cluster `config` names, creates the namespace when it can, and starts
    /// following the managed Jobs and pods. An unreachable cluster is not an error here: the
    /// watchers retry, [`Engine::check`] says it is unavailable, and the namespace is created
    /// on the first submit.
    ///
    /// Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// [`EngineError::Failed`] when the kubeconfig cannot be read or used (a missing file, an
    /// unknown context, no configuration at all).
    pub async fn connect(config: &KubeEngineConfig) -> Result<KubeEngine, EngineError> {
        let failed = |message: String| EngineError::Failed {
            engine: config.name.clone(),
            message,
        };
        let options = KubeConfigOptions {
            context: config.context.clone(),
            ..KubeConfigOptions::default()
        };
        let client_config = match (&config.kubeconfig, &config.context) {
            (Some(path), _) => {
                let file = Kubeconfig::read_from(path)
                    .map_err(|e| failed(format!("kubeconfig {}: {e}", path.display())))?;
                Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| failed(format!("kubeconfig {}: {e}", path.display())))?
            }
            (None, Some(_)) => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| failed(format!("kubeconfig: {e}")))?,
            (None, None) => Config::infer()
                .await
                .map_err(|e| failed(format!("no cluster configuration: {e}")))?,
        };
        let client = Client::try_from(client_config).map_err(|e| failed(format!("client: {e}")))?;
        let inner = Arc::new(Inner {
            name: config.name.clone(),
            namespace: config.namespace.clone(),
            propagation: config.propagation,
            jobs: Api::namespaced(client.clone(), &config.namespace),
            pods: Api::namespaced(client.clone(), &config.namespace),
            client,
            tracker: Tracker::new(),
            kinds: Mutex::default(),
            namespace_ready: OnceCell::new(),
            applying: tokio::sync::Semaphore::new(MAX_APPLYING),
            logs: logs::LogConnections::new(config.max_log_streams),
        });
        if let Err(error) = inner.ensure_namespace().await {
            tracing::warn!(engine = %inner.name, %error, "could not make sure the namespace exists; trying again on submit");
        }
        let watch = tokio::spawn(inner.tracker.clone().run(
            inner.name.clone(),
            inner.jobs.clone(),
            inner.pods.clone(),
        ));
        tracing::info!(engine = %inner.name, namespace = %inner.namespace, "kubernetes engine connected");
        Ok(KubeEngine {
            inner,
            arches: config.arches.clone(),
            max_running: config.max_running,
            watch,
        })
    }

    /// The namespace its jobs go to.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    fn selector(id: JobId) -> String {
        format!("{}={},{JOB_ID}={id}", MANAGED_BY.0, MANAGED_BY.1)
    }
}

/// A follower of one job's view as progress items, ending after `Ended`.
fn follow(
    inner: Arc<Inner>,
    id: JobId,
    mut view: watch::Receiver<Option<JobView>>,
) -> ProgressStream {
    struct State {
        inner: Arc<Inner>,
        view: watch::Receiver<Option<JobView>>,
        last: Option<JobView>,
        queue: VecDeque<Progress>,
        done: bool,
    }
    // Whatever the receiver held before is news to this follower.
    view.mark_changed();
    let state = State {
        inner,
        view,
        last: None,
        queue: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(state, move |mut state| async move {
        loop {
            if let Some(item) = state.queue.pop_front() {
                state.done = matches!(item, Progress::Ended(_));
                return Some((Ok(item), state));
            }
            if state.done {
                return None;
            }
            if state.view.changed().await.is_err() {
                // Forgotten (cleaned up) before it ended.
                state.done = true;
                let error = state.inner.unknown(id);
                return Some((Err(error), state));
            }
            let current = state.view.borrow_and_update().clone();
            if let Some(current) = current
                && state.last.as_ref() != Some(&current)
            {
                state
                    .queue
                    .extend(tracker::changes(state.last.as_ref(), &current));
                state.last = Some(current);
            }
        }
    })
    .boxed()
}

#[async_trait]
impl Engine for KubeEngine {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn arches(&self) -> &[String] {
        &self.arches
    }

    fn max_running(&self) -> usize {
        self.max_running
    }

    fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    async fn check(&self) -> Result<(), EngineError> {
        // What the engine needs, with its credentials: reading Jobs in its namespace (an
        // anonymous GET /version would pass with a revoked token).
        self.inner
            .jobs
            .list_metadata(&ListParams::default().limit(1))
            .await
            .map(|_| ())
            .map_err(|e| self.inner.unavailable(e))
    }

    async fn submit(&self, job: &EngineJob) -> Result<(), EngineError> {
        let inner = &self.inner;
        if !job.inputs.files.is_empty() {
            // Said, not run wrongly: the job's `fetch` would find its uploads missing.
            return Err(EngineError::Rejected {
                engine: inner.name.clone(),
                message: format!(
                    "the job uses {} uploaded file(s), and the Kubernetes engine cannot give a \
                     job its uploads yet; run it on a local engine",
                    job.inputs.files.len()
                ),
            });
        }
        let mut objects =
            apply::prepare(job, &inner.namespace).map_err(|e| EngineError::Rejected {
                engine: inner.name.clone(),
                message: e.to_string(),
            })?;
        inner.ensure_namespace().await?;
        let count = objects.len();
        let (primary, others) = objects.split_at_mut(1);
        let primary = &primary[0];
        let applied = inner.apply(primary).await?;
        let uid = applied
            .metadata
            .uid
            .clone()
            .ok_or_else(|| EngineError::Failed {
                engine: inner.name.clone(),
                message: format!("the applied Job {:?} has no uid", primary.name),
            })?;
        // Known at once, so that progress right after submit does not call it unknown.
        match serde_json::to_value(&applied).and_then(serde_json::from_value::<Job>) {
            Ok(applied) => inner.tracker.apply_job(applied),
            Err(error) => {
                tracing::warn!(engine = %inner.name, job = %job.id, %error, "the applied Job does not read as a Job");
            }
        }
        for object in others {
            apply::owned_by(object, &primary.name, &uid);
            inner.apply(object).await?;
        }
        tracing::info!(engine = %inner.name, job = %job.id, name = %primary.name, objects = count, "submitted");
        Ok(())
    }

    fn progress(&self, id: JobId) -> ProgressStream {
        let inner = self.inner.clone();
        futures::stream::once(async move {
            inner.tracker.ready().await;
            match inner.tracker.follow(id) {
                Some(view) => follow(inner, id, view),
                None => futures::stream::iter([Err(inner.unknown(id))]).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    fn logs(&self, id: JobId, after: Option<LogCursor>) -> LogStreamOf {
        logs::stream(self.inner.clone(), id, after)
    }

    async fn cancel(&self, id: JobId) -> Result<(), EngineError> {
        let inner = &self.inner;
        // From the cluster, not the watchers' picture: it may not be complete yet.
        let params = ListParams::default().labels(&Self::selector(id));
        let jobs = inner.jobs.list(&params).await.map_err(|e| inner.error(e))?;
        for job in jobs {
            let finished = job
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True");
            let Some(name) = job.metadata.name.as_deref() else {
                continue;
            };
            if finished || job.metadata.deletion_timestamp.is_some() {
                // A finished Job is left to its ttlSecondsAfterFinished.
                continue;
            }
            match inner.jobs.delete(name, &inner.delete_params()).await {
                Ok(_) => {
                    tracing::info!(engine = %inner.name, job = %id, %name, "cancelled: Job deleted");
                }
                Err(kube::Error::Api(r)) if r.code == 404 => {}
                Err(error) => return Err(inner.unavailable(error)),
            }
        }
        Ok(())
    }

    async fn cleanup(&self, id: JobId) -> Result<(), EngineError> {
        let inner = &self.inner;
        let params = ListParams::default().labels(&Self::selector(id));
        let jobs = inner.jobs.list(&params).await.map_err(|e| inner.error(e))?;
        let mut deleted = Vec::new();
        for job in jobs {
            let Some(name) = job.metadata.name.as_deref() else {
                continue;
            };
            match inner.jobs.delete(name, &inner.delete_params()).await {
                Ok(_) => {
                    tracing::info!(engine = %inner.name, job = %id, %name, "cleaned up: Job deleted");
                }
                Err(kube::Error::Api(r)) if r.code == 404 => {}
                Err(error) => return Err(inner.unavailable(error)),
            }
            deleted.extend(job.metadata.uid);
        }
        inner.tracker.forget(id, deleted);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_has_defaults_and_refuses_unknown_fields() {
        let config: KubeEngineConfig = serde_json::from_value(serde_json::json!({
            "name": "cluster-a", "arches": ["x86_64", "aarch64"], "max_running": 8
        }))
        .unwrap();
        assert_eq!(config.namespace, "omni-jobs");
        assert_eq!(config.propagation, Propagation::Background);
        assert_eq!(config.kubeconfig, None);
        assert_eq!(config.max_log_streams, 256);
        let foreground: KubeEngineConfig = serde_json::from_value(serde_json::json!({
            "name": "b", "arches": ["x86_64"], "max_running": 1, "propagation": "foreground",
            "kubeconfig": "/etc/omni/kubeconfig", "context": "prod", "namespace": "builds"
        }))
        .unwrap();
        assert_eq!(foreground.propagation, Propagation::Foreground);
        assert!(
            serde_json::from_value::<KubeEngineConfig>(serde_json::json!({
                "name": "c", "arches": [], "max_running": 1, "nmespace": "x"
            }))
            .is_err()
        );
    }
}
