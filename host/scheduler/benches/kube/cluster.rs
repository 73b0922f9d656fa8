//! The bench's own view of the cluster, watched the way the engine watches it, to tell the
//! cluster's part of each latency from Omni's; and room for N pods on the fake nodes.

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job as KubeJob;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use omni_engine::JobId;
use serde_json::json;

use crate::marks::{Marks, mark};

/// The bench's own view of the cluster: when it first saw each job's pod Running and
/// Succeeded, and its Job Complete.
pub(crate) struct Cluster {
    pub(crate) pod_running: Marks,
    pub(crate) pod_succeeded: Marks,
    pub(crate) job_complete: Marks,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub(crate) fn job_id(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<JobId> {
    meta.labels.as_ref()?.get("omni.io/job-id")?.parse().ok()
}

pub(crate) fn observe(client: &Client, namespace: &str) -> Cluster {
    let pod_running = Marks::default();
    let pod_succeeded = Marks::default();
    let job_complete = Marks::default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let jobs: Api<KubeJob> = Api::namespaced(client.clone(), namespace);
    let (running, succeeded) = (pod_running.clone(), pod_succeeded.clone());
    let pod_task = tokio::spawn(async move {
        let mut stream = watcher(pods, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(pod)) = stream.next().await {
            let Some(id) = job_id(&pod.metadata) else {
                continue;
            };
            match pod.status.and_then(|s| s.phase).as_deref() {
                Some("Running") => mark(&running, id),
                Some("Succeeded") => mark(&succeeded, id),
                _ => {}
            }
        }
    });
    let complete = job_complete.clone();
    let job_task = tokio::spawn(async move {
        let mut stream = watcher(jobs, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(job)) = stream.next().await {
            let Some(id) = job_id(&job.metadata) else {
                continue;
            };
            let done = job
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| c.type_ == "Complete" && c.status == "True");
            if done {
                mark(&complete, id);
            }
        }
    });
    Cluster {
        pod_running,
        pod_succeeded,
        job_complete,
        _tasks: vec![pod_task, job_task],
    }
}

/// Gives both fake nodes room for `pods` pods of the srpm plugin's size (2 CPU, 4 GiB).
pub(crate) async fn make_room(client: &Client, pods: usize) {
    let nodes: Api<Node> = Api::all(client.clone());
    for name in ["kwok-amd64", "kwok-arm64"] {
        let node = nodes.get_status(name).await.unwrap();
        let have: usize = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get("pods"))
            .and_then(|q| q.0.parse().ok())
            .unwrap_or(0);
        if have >= pods {
            continue;
        }
        let room = json!({"pods": pods.to_string(), "cpu": (pods * 2).to_string(),
                          "memory": format!("{}Gi", pods * 4)});
        let patch = json!({"status": {"capacity": room, "allocatable": room}});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        eprintln!("raised node {name}'s capacity to {pods} pods");
    }
}
