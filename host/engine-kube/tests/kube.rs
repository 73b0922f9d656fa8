//! The Kubernetes engine on the testbed, beyond the conformance suite: node selection by arch,
//! the API server's own rejection messages, a restarted engine finding its running jobs, running
//! steps taking turns at the log connections, owned objects going with their Job, and an
//! unreachable cluster.

mod common;

use chrono::DurationRound;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use omni_engine::Manifest;
use omni_engine::{Engine, EngineError, Outcome, Progress};
use serde_json::json;

use common::{JobSpec, PATIENCE};

const NAMESPACE: &str = "omni-test-kube";

fn pods(client: kube::Client) -> Api<Pod> {
    Api::namespaced(client, NAMESPACE)
}

async fn pod_of(client: &kube::Client, id: omni_engine::JobId) -> Option<Pod> {
    let params = ListParams::default().labels(&format!("omni.io/job-id={id}"));
    pods(client.clone())
        .list(&params)
        .await
        .ok()?
        .items
        .into_iter()
        .next()
}

/// Removes the label that keeps job `id`'s pod running: kwok's default stages complete it.
async fn let_finish(client: &kube::Client, id: omni_engine::JobId) {
    let name = pod_of(client, id)
        .await
        .expect("the job's pod")
        .metadata
        .name
        .unwrap();
    let unlabel = json!({"metadata": {"labels": {"omni.io/kwok-stage": null}}});
    pods(client.clone())
        .patch(&name, &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .expect("unlabel the pod");
}

/// The next line of a log stream.
async fn next_line(logs: &mut omni_engine::LogStreamOf) -> String {
    tokio::time::timeout(PATIENCE, logs.next())
        .await
        .expect("a line")
        .expect("the stream goes on")
        .expect("a line, not an error")
        .line
}

/// Lets a running job finish, then checks that its log ends with no line more (the read after
/// the step's end repeats nothing) and that it succeeded; cleans it up.
async fn finish_with_nothing_more(
    engine: &omni_engine_kube::KubeEngine,
    client: &kube::Client,
    id: omni_engine::JobId,
    logs: omni_engine::LogStreamOf,
) {
    let_finish(client, id).await;
    let rest: Vec<_> = tokio::time::timeout(PATIENCE, logs.collect::<Vec<_>>())
        .await
        .expect("the end of the logs");
    assert!(rest.is_empty(), "{rest:?}");
    let progress = common::progress_until_end(engine, id).await;
    assert_eq!(common::outcome(&progress), &Outcome::Succeeded);
    engine.cleanup(id).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_lands_on_the_node_of_its_arch() {
    let engine = common::engine(NAMESPACE).await;
    let client = common::client().await;
    for arch in ["amd64", "arm64"] {
        let id = common::new_id();
        let spec = JobSpec {
            init: &["fetch"],
            containers: &["build"],
            stage: None,
            node_arch: arch,
            gated: false,
        };
        let job = common::engine_job(id, vec![common::job_manifest(id, &spec)]);
        engine.submit(&job).await.expect("submit");
        let progress = common::progress_until_end(&engine, id).await;
        assert_eq!(
            common::outcome(&progress),
            &Outcome::Succeeded,
            "{progress:?}"
        );
        let pod = pod_of(&client, id).await.expect("the job's pod");
        let node = pod.spec.and_then(|s| s.node_name);
        assert_eq!(node.as_deref(), Some(format!("kwok-{arch}").as_str()));
        engine.cleanup(id).await.expect("cleanup");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_manifest_is_rejected_with_the_servers_message() {
    let engine = common::engine(NAMESPACE).await;
    let id = common::new_id();
    let spec = JobSpec {
        init: &[],
        containers: &[],
        stage: None,
        node_arch: "amd64",
        gated: false,
    };
    let job = common::engine_job(id, vec![common::job_manifest(id, &spec)]);
    match engine.submit(&job).await {
        Err(EngineError::Rejected { message, .. }) => assert!(
            message.contains("spec.template.spec.containers: Required value"),
            "{message}"
        ),
        other => panic!("not rejected: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_finds_a_running_job_and_sees_it_end() {
    let client = common::client().await;
    let id = common::new_id();
    let spec = JobSpec {
        init: &[],
        containers: &["build"],
        stage: Some("run"),
        node_arch: "arm64",
        gated: false,
    };
    let job = common::engine_job(id, vec![common::job_manifest(id, &spec)]);
    {
        let first = common::engine(NAMESPACE).await;
        first.submit(&job).await.expect("submit");
        let mut progress = first.progress(id);
        tokio::time::timeout(PATIENCE, async {
            while let Some(item) = progress.next().await {
                match item.expect("progress") {
                    Progress::Running => return,
                    Progress::Ended(outcome) => panic!("ended: {outcome:?}"),
                    _ => {}
                }
            }
        })
        .await
        .expect("Running");
    }
    // A new instance, as after a restart of omni: it knows the job from the cluster alone.
    let second = common::engine(NAMESPACE).await;
    let mut progress = second.progress(id);
    let first = tokio::time::timeout(PATIENCE, progress.next())
        .await
        .expect("first item");
    assert_eq!(first.map(Result::ok), Some(Some(Progress::Running)));
    // The pod loses the label that kept it running: kwok's default stages complete it.
    let_finish(&client, id).await;
    let end = tokio::time::timeout(PATIENCE, async {
        while let Some(item) = progress.next().await {
            if let Progress::Ended(outcome) = item.expect("progress") {
                return outcome;
            }
        }
        panic!("no end");
    })
    .await
    .expect("the end");
    assert_eq!(end, Outcome::Succeeded);
    second.cleanup(id).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_steps_log_is_followed_and_ends_without_repeats() {
    let engine = common::engine(NAMESPACE).await;
    let client = common::client().await;
    let dir = tempfile::tempdir().unwrap();
    let id = common::new_id();
    let spec = JobSpec {
        init: &[],
        containers: &["build"],
        stage: Some("run"),
        node_arch: "amd64",
        gated: true,
    };
    let files = common::write_logs(dir.path(), id, &[("build", &["compiling"])]);
    let file = files[0].1.clone();
    common::release(client.clone(), NAMESPACE.to_owned(), id, files);
    let job = common::engine_job(id, vec![common::job_manifest(id, &spec)]);
    engine.submit(&job).await.expect("submit");
    let mut logs = engine.logs(id, None);
    assert_eq!(next_line(&mut logs).await, "compiling");
    // The step prints more while it runs: the open stream brings it. It prints it in the same
    // millisecond (the store's precision, and the cursor's) as the line before, a little later:
    // the cursor counts both lines of that millisecond, so the re-reads after it repeat neither.
    let mut text = std::fs::read_to_string(&file).unwrap();
    let first: chrono::DateTime<chrono::Utc> = text
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .expect("the first line's time");
    let time = (first
        .duration_trunc(chrono::TimeDelta::milliseconds(1))
        .unwrap()
        + chrono::TimeDelta::nanoseconds(999_999))
    .format("%Y-%m-%dT%H:%M:%S%.9fZ");
    text.push_str(&format!("{time} stdout F linking\n"));
    std::fs::write(&file, text).unwrap();
    assert_eq!(next_line(&mut logs).await, "linking");
    // It ends; its log is then read once more, from the start of the last line's second:
    // nothing comes twice.
    finish_with_nothing_more(&engine, &client, id, logs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_steps_take_turns_at_one_log_connection_and_lose_no_line() {
    // One connection for follows: the two running steps share it in turns.
    let engine = common::engine_with(NAMESPACE, json!({"max_log_streams": 1})).await;
    let client = common::client().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = JobSpec {
        init: &[],
        containers: &["build"],
        stage: Some("run"),
        node_arch: "amd64",
        gated: true,
    };
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let id = common::new_id();
        let files = common::write_logs(dir.path(), id, &[("build", &["compiling"])]);
        let file = files[0].1.clone();
        common::release(client.clone(), NAMESPACE.to_owned(), id, files);
        let job = common::engine_job(id, vec![common::job_manifest(id, &spec)]);
        engine.submit(&job).await.expect("submit");
        jobs.push((id, file, engine.logs(id, None)));
    }
    for (_, _, logs) in &mut jobs {
        assert_eq!(next_line(logs).await, "compiling");
    }
    // Both print more while they run: each gets it in its turn, once.
    for (round, text) in ["linking", "packaging"].into_iter().enumerate() {
        for (_, file, _) in &jobs {
            let mut log = std::fs::read_to_string(file).unwrap();
            let time = chrono::Utc::now() + chrono::TimeDelta::milliseconds(round as i64);
            log.push_str(&format!(
                "{} stdout F {text}\n",
                time.format("%Y-%m-%dT%H:%M:%S%.9fZ")
            ));
            std::fs::write(file, log).unwrap();
        }
        for (_, _, logs) in &mut jobs {
            assert_eq!(next_line(logs).await, text);
        }
    }
    for (id, _, logs) in jobs {
        finish_with_nothing_more(&engine, &client, id, logs).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_fails_the_job_at_once() {
    let engine = common::engine(NAMESPACE).await;
    let client = common::client().await;
    let id = common::new_id();
    let spec = JobSpec {
        init: &["fetch"],
        containers: &["build"],
        stage: Some("image-pull-backoff"),
        node_arch: "arm64",
        gated: false,
    };
    let job = common::engine_job(id, vec![common::job_manifest(id, &spec)]);
    engine.submit(&job).await.expect("submit");
    let progress = common::progress_until_end(&engine, id).await;
    let Outcome::Failed(message) = common::outcome(&progress) else {
        panic!("not failed: {progress:?}");
    };
    assert!(
        message.starts_with(
            "step fetch: image registry.invalid/omni/test:1 could not be pulled: ImagePullBackOff"
        ),
        "{message}"
    );
    assert!(
        progress.contains(&Progress::Step {
            name: "build".into(),
            state: omni_engine::StepState::Skipped
        }),
        "{progress:?}"
    );
    // Kubernetes itself would keep trying until the Job's deadline: the Job is still there.
    let jobs: Api<Job> = Api::namespaced(client, NAMESPACE);
    assert!(
        jobs.get_opt(&job.name)
            .await
            .expect("get the Job")
            .is_some()
    );
    engine.cleanup(id).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_fails_the_job_with_the_jobs_reason() {
    let engine = common::engine(NAMESPACE).await;
    let id = common::new_id();
    let spec = JobSpec {
        init: &[],
        containers: &["build"],
        stage: Some("run"),
        node_arch: "amd64",
        gated: false,
    };
    let mut manifest = common::job_manifest(id, &spec);
    manifest.body["spec"]["activeDeadlineSeconds"] = 1.into();
    let job = common::engine_job(id, vec![manifest]);
    engine.submit(&job).await.expect("submit");
    let progress = common::progress_until_end(&engine, id).await;
    let Outcome::Failed(message) = common::outcome(&progress) else {
        panic!("not failed: {progress:?}");
    };
    assert!(message.starts_with("DeadlineExceeded"), "{message}");
    engine.cleanup(id).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_objects_go_with_their_job() {
    let engine = common::engine(NAMESPACE).await;
    let client = common::client().await;
    let id = common::new_id();
    let spec = JobSpec {
        init: &[],
        containers: &["build"],
        stage: Some("run"),
        node_arch: "amd64",
        gated: false,
    };
    let input = format!("omni-{id}-input");
    let config_map = Manifest {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: input.clone(),
        body: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": input},
                     "data": {"spec": "Name: hello"}}),
    };
    let job = common::engine_job(id, vec![common::job_manifest(id, &spec), config_map]);
    engine.submit(&job).await.expect("submit");
    engine.submit(&job).await.expect("submit again");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    let applied = maps.get(&input).await.expect("the ConfigMap");
    let kube_job = jobs.get(&job.name).await.expect("the Job");
    let owner = applied.metadata.owner_references.unwrap_or_default();
    assert_eq!(owner.len(), 1, "{owner:?}");
    assert_eq!(owner[0].kind, "Job");
    assert_eq!(Some(&owner[0].uid), kube_job.metadata.uid.as_ref());
    let labels = applied.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("omni.io/job-id"), Some(&id.to_string()));
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("omni")
    );

    engine.cancel(id).await.expect("cancel");
    let progress = common::progress_until_end(&engine, id).await;
    assert!(
        matches!(common::outcome(&progress), Outcome::Cancelled(_)),
        "{progress:?}"
    );
    // The garbage collector deletes what the Job owned.
    common::eventually("the ConfigMap deleted", || {
        let maps = maps.clone();
        let input = input.clone();
        async move {
            match maps.get_opt(&input).await {
                Ok(None) => Some(()),
                _ => None,
            }
        }
    })
    .await;
    engine.cleanup(id).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_unavailable() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: u\ncurrent-context: gone\n"
        ),
    )
    .unwrap();
    let config: omni_engine_kube::KubeEngineConfig = serde_json::from_value(json!({
        "name": "gone", "arches": ["x86_64"], "max_running": 1, "kubeconfig": kubeconfig,
    }))
    .unwrap();
    let engine = tokio::time::timeout(PATIENCE, omni_engine_kube::KubeEngine::connect(&config))
        .await
        .expect("connect returns")
        .expect("connecting to an unreachable cluster is not an error");
    let check = tokio::time::timeout(PATIENCE, engine.check())
        .await
        .expect("check returns");
    assert!(
        matches!(check, Err(EngineError::Unavailable { .. })),
        "{check:?}"
    );
    let id = common::new_id();
    let spec = JobSpec {
        init: &[],
        containers: &["build"],
        stage: None,
        node_arch: "amd64",
        gated: false,
    };
    let job = common::engine_job(id, vec![common::job_manifest(id, &spec)]);
    let submit = tokio::time::timeout(PATIENCE, engine.submit(&job))
        .await
        .expect("submit returns");
    assert!(
        matches!(submit, Err(EngineError::Unavailable { .. })),
        "{submit:?}"
    );
}
