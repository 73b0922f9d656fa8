//! Shared by the engine's tests on the testbed: engines on a namespace of the test binary, and
//! Jobs whose pods kwok plays. A pod's log lines come from files this module writes, named by a
//! kwok `Logs` object created once the Job's pod exists; until then the pod is held by a
//! scheduling gate, so no step starts (and no log is read) before its log file is in place.

#![allow(dead_code)] // each test binary uses its part

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client, Config};
use omni_engine::Manifest;
use omni_engine::{Engine, EngineJob, JobId, Outcome, Progress, Rendered};
use omni_engine_kube::{KubeEngine, KubeEngineConfig};
use serde_json::{Value, json};

/// How long a test waits for the cluster to do something (a guard against a hang).
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The scheduling gate that holds a pod until its log files are known to kwok.
const GATE: &str = "omni.io/test-logs";

/// An engine on `namespace` of the test cluster.
pub async fn engine(namespace: &str) -> KubeEngine {
    engine_with(namespace, json!({})).await
}

/// An engine on `namespace` of the test cluster, with the configuration's other keys from
/// `extra`.
pub async fn engine_with(namespace: &str, extra: Value) -> KubeEngine {
    let mut config = json!({
        "name": "testbed",
        "arches": ["x86_64", "aarch64"],
        "max_running": 4,
        "kubeconfig": omni_test_support::kubernetes::kubeconfig(),
        "namespace": namespace,
    });
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    let config: KubeEngineConfig = serde_json::from_value(config).unwrap();
    KubeEngine::connect(&config).await.expect("connect")
}

/// A client of the test cluster.
pub async fn client() -> Client {
    let file =
        kube::config::Kubeconfig::read_from(omni_test_support::kubernetes::kubeconfig()).unwrap();
    let config = Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// A container that kwok will pretend to run.
pub fn container(name: &str) -> Value {
    json!({"name": name, "image": "registry.invalid/omni/test:1", "command": ["/bin/true"]})
}

/// What a test Job looks like.
pub struct JobSpec<'a> {
    pub init: &'a [&'a str],
    pub containers: &'a [&'a str],
    /// The `omni.io/kwok-stage` label (see tests/testbed/kubernetes/kwok-omni-stages.yaml).
    pub stage: Option<&'a str>,
    /// The node arch (`amd64`, `arm64`).
    pub node_arch: &'a str,
    /// Hold the pod until [`release`] gave it its logs.
    pub gated: bool,
}

/// The Job's rendered manifest for job `id`, as a plugin would render it.
pub fn job_manifest(id: JobId, spec: &JobSpec<'_>) -> Manifest {
    let name = format!("omni-{id}");
    let mut labels = json!({});
    if let Some(stage) = spec.stage {
        labels["omni.io/kwok-stage"] = stage.into();
    }
    let mut pod = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "nodeSelector": {"kubernetes.io/arch": spec.node_arch},
        "initContainers": spec.init.iter().map(|n| container(n)).collect::<Vec<_>>(),
        "containers": spec.containers.iter().map(|n| container(n)).collect::<Vec<_>>(),
    });
    if spec.gated {
        pod["schedulingGates"] = json!([{"name": GATE}]);
    }
    let body = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "omni-jobs",
                     "labels": {"app.kubernetes.io/managed-by": "omni", "omni.io/job-id": id.to_string()}},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    });
    Manifest {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name,
        body,
    }
}

/// A job of `manifests`, the first being its Job.
pub fn engine_job(id: JobId, manifests: Vec<Manifest>) -> EngineJob {
    EngineJob {
        inputs: Default::default(),
        id,
        name: format!("omni-{id}"),
        namespace: "omni-jobs".into(),
        task: "test".into(),
        arch: "x86_64".into(),
        rendered: Rendered {
            primary: manifests[0].name.clone(),
            manifests,
        },
    }
}

/// Writes `lines` of each step as CRI log files under `dir`; returns (step, file) pairs.
pub fn write_logs(dir: &Path, id: JobId, steps: &[(&str, &[&str])]) -> Vec<(String, String)> {
    let start = Utc::now();
    let mut n = 0;
    steps
        .iter()
        .map(|(step, lines)| {
            let file = dir.join(format!("{id}-{step}.log"));
            let mut text = String::new();
            for line in *lines {
                n += 1;
                let time = start + chrono::TimeDelta::milliseconds(n);
                text.push_str(&format!(
                    "{} stdout F {line}\n",
                    time.format("%Y-%m-%dT%H:%M:%S%.9fZ")
                ));
            }
            std::fs::write(&file, text).unwrap();
            ((*step).to_owned(), file.display().to_string())
        })
        .collect()
}

/// Once job `id`'s pod exists (polling), names its log files in a kwok `Logs` object and lifts
/// its scheduling gate. Runs in the background; a pod that never comes fails nobody here (the
/// test waiting for the job does).
pub fn release(client: Client, namespace: String, id: JobId, logs: Vec<(String, String)>) {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let gvk = GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Logs");
        let kwok_logs: Api<DynamicObject> = Api::namespaced_with(
            client,
            &namespace,
            &ApiResource::from_gvk_with_plural(&gvk, "logs"),
        );
        let params = ListParams::default().labels(&format!("omni.io/job-id={id}"));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::time::Instant::now() < deadline {
            let Ok(list) = pods.list(&params).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Some(name) = list.items.first().and_then(|p| p.metadata.name.clone()) else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let object: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "Logs",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"logs": logs.iter().map(|(step, file)| json!({
                    "containers": [step], "logsFile": file, "follow": true,
                })).collect::<Vec<_>>()},
            }))
            .unwrap();
            if let Err(e) = kwok_logs.create(&PostParams::default(), &object).await {
                eprintln!("creating the Logs of {name}: {e}");
            }
            let lift = json!({"spec": {"schedulingGates": null}});
            if let Err(e) = pods
                .patch(&name, &PatchParams::default(), &Patch::Merge(&lift))
                .await
            {
                eprintln!("lifting the gate of {name}: {e}");
            }
            return;
        }
    });
}

/// Every progress item of job `id` on `engine` until it ends.
pub async fn progress_until_end(engine: &dyn Engine, id: JobId) -> Vec<Progress> {
    let mut stream = engine.progress(id);
    let mut seen = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while let Some(item) = stream.next().await {
            let item = item.unwrap_or_else(|e| panic!("progress of {id}: {e}"));
            let ended = matches!(item, Progress::Ended(_));
            seen.push(item);
            if ended {
                return;
            }
        }
        panic!("the progress of {id} ended without Ended: {seen:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("progress of {id}: no end after {PATIENCE:?}"));
    seen
}

/// The outcome at the end of `progress`.
pub fn outcome(progress: &[Progress]) -> &Outcome {
    match progress.last() {
        Some(Progress::Ended(outcome)) => outcome,
        other => panic!("no outcome: {other:?}"),
    }
}

#[allow(unused_imports)] // each test binary uses a part
pub use omni_test_support::eventually;

/// A fresh job id.
pub fn new_id() -> JobId {
    uuid::Uuid::new_v4()
}

/// Holds whatever a test's fixture must keep alive.
pub type Keep = Arc<tempfile::TempDir>;
