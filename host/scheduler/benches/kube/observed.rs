//! The Kubernetes engine as the bench runs it: the kwok stage `run` on every pod, and the times
//! Omni's follower saw each job's pod run and its last step finish.

use async_trait::async_trait;
use futures::StreamExt;
use omni_engine::{
    Engine, EngineError, EngineJob, JobId, LogCursor, LogStreamOf, Progress, ProgressStream,
    StepState,
};
use omni_engine_kube::KubeEngine;
use serde_json::json;

use crate::marks::{Marks, mark};

/// The Kubernetes engine, with the kwok stage `run` on every pod and the times Omni's follower
/// saw a job's pod run and finish.
#[derive(Debug)]
pub(crate) struct Observed {
    pub(crate) engine: KubeEngine,
    pub(crate) pod_running: Marks,
    pub(crate) step_finished: Marks,
}

#[async_trait]
impl Engine for Observed {
    fn name(&self) -> &str {
        self.engine.name()
    }
    fn kind(&self) -> &'static str {
        self.engine.kind()
    }
    fn arches(&self) -> &[String] {
        self.engine.arches()
    }
    fn max_running(&self) -> usize {
        self.engine.max_running()
    }
    fn namespace(&self) -> &str {
        self.engine.namespace()
    }
    async fn check(&self) -> Result<(), EngineError> {
        self.engine.check().await
    }
    async fn submit(&self, job: &EngineJob) -> Result<(), EngineError> {
        let mut job = job.clone();
        for manifest in &mut job.rendered.manifests {
            if manifest.kind == "Job" {
                manifest.body["spec"]["template"]["metadata"]["labels"]["omni.io/kwok-stage"] =
                    json!("run");
            }
        }
        self.engine.submit(&job).await
    }
    fn progress(&self, id: JobId) -> ProgressStream {
        let running = self.pod_running.clone();
        let finished = self.step_finished.clone();
        self.engine
            .progress(id)
            .inspect(move |item| match item {
                Ok(Progress::Running)
                | Ok(Progress::Step {
                    state: StepState::Running,
                    ..
                }) => mark(&running, id),
                // The last step (the only container) ends last.
                Ok(Progress::Step {
                    state: StepState::Succeeded,
                    name,
                }) if name == "build" => mark(&finished, id),
                _ => {}
            })
            .boxed()
    }
    fn logs(&self, id: JobId, after: Option<LogCursor>) -> LogStreamOf {
        self.engine.logs(id, after)
    }
    async fn cancel(&self, id: JobId) -> Result<(), EngineError> {
        self.engine.cancel(id).await
    }
    async fn cleanup(&self, id: JobId) -> Result<(), EngineError> {
        self.engine.cleanup(id).await
    }
}
