//! `omni serve` with a Kubernetes engine on the testbed's cluster (real kube-apiserver,
//! controllers and scheduler; kwok plays the pods): a job of each task plugin, for each arch,
//! goes pending -> queued -> running -> succeeded, and its pod ran on the node of its arch; a
//! job's log, followed over HTTP while it runs, has each step's pod log once, in step order.

mod common;

use common::{ended, events, get, install, open, serve_with, texts};
use serde_json::{Value, json};

fn params(task: &str) -> Value {
    match task {
        "iso" => json!({"mode": "release", "version": "24.03-LTS", "packages": ["kernel", "bash"]}),
        "rpm" => json!({"scm_url": "https://gitee.com/src-openeuler/zlib.git",
                        "ref": "openEuler-24.03-LTS", "spec_path": "zlib.spec"}),
        _ => {
            json!({"spec": "Name: hello\nVersion: 1.0\nRelease: 1\nSummary: hi\nLicense: MIT\n%description\nhi\n%files\n"})
        }
    }
}

/// `omni serve` with one Kubernetes engine on the testbed, in a namespace of its own.
async fn kube_server(plugins: &[&str]) -> (common::Server, String, [tempfile::TempDir; 2]) {
    let kubeconfig = omni_test_support::kubernetes::kubeconfig();
    let namespace = format!(
        "omni-e2e-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let plugin_dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    for task in plugins {
        install(plugin_dir.path(), task);
    }
    let config = data.path().join("omni.toml");
    std::fs::write(
        &config,
        format!(
            "[[engines]]\nkind = \"kubernetes\"\nname = \"kwok\"\narches = [\"x86_64\", \"aarch64\"]\n\
             max_running = 8\nkubeconfig = {:?}\nnamespace = {namespace:?}\n",
            kubeconfig.display().to_string()
        ),
    )
    .unwrap();
    let server = serve_with(
        plugin_dir.path(),
        data.path(),
        &[("OMNI_CONFIG", config.to_str().unwrap())],
    );
    let (status, ready) = get(&format!("{}/readyz", server.url)).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["engines"][0]["kind"], "kubernetes", "{ready}");
    assert_eq!(ready["engines"][0]["ready"], true, "{ready}");
    (server, namespace, [plugin_dir, data])
}

fn delete_namespace(namespace: &str) {
    let _ = omni_test_support::kubernetes::testbed(&[
        "kubectl",
        "delete",
        "namespace",
        namespace,
        "--wait=false",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_every_plugin_succeed_on_the_node_of_their_arch() {
    let (server, namespace, _dirs) = kube_server(&["iso", "rpm", "srpm"]).await;
    let http = reqwest::Client::new();
    let mut submitted = Vec::new();
    for task in ["iso", "rpm", "srpm"] {
        for arch in ["x86_64", "aarch64"] {
            let response = http
                .post(format!("{}/v1/jobs", server.url))
                .json(
                    &json!({"service": "e2e", "task": task, "arch": arch, "params": params(task)}),
                )
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert_eq!(status, 201, "{task} on {arch}: {body:#}");
            submitted.push((task, arch, body["id"].as_str().unwrap().to_owned()));
        }
    }
    for (task, arch, id) in &submitted {
        let job = ended(&server.url, id).await;
        assert_eq!(job["state"], "succeeded", "{task} on {arch}: {job:#}");
        assert_eq!(job["engine"], "kwok");
        let node = omni_test_support::kubernetes::testbed(&[
            "kubectl",
            "-n",
            &namespace,
            "get",
            "pods",
            "-l",
            &format!("omni.io/job-id={id}"),
            "-o",
            "jsonpath={.items[*].spec.nodeName}",
        ]);
        let want = if *arch == "aarch64" {
            "kwok-arm64"
        } else {
            "kwok-amd64"
        };
        assert_eq!(node, want, "{task} on {arch}");
    }
    delete_namespace(&namespace);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_log_is_followed_over_http_step_by_step() {
    let (server, namespace, _dirs) = kube_server(&["srpm"]).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/jobs", server.url))
        .json(&json!({"service": "e2e", "task": "srpm", "params": params("srpm")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let job: Value = response.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    // Followed from its submission: kwok serves every container the testbed's one log line.
    let followed = events(open(&server, &id, "", &[]).await).await;
    let last = followed.last().unwrap();
    assert_eq!(last.event, "end", "{followed:?}");
    assert_eq!(last.data["state"], "succeeded");
    let steps: Vec<&str> = followed
        .iter()
        .filter(|e| e.event == "line")
        .map(|e| e.data["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["fetch", "build"], "{followed:?}");
    for line in texts(&followed) {
        assert!(line.starts_with("kwok fake container"), "{line}");
    }
    // The stored log is what was followed.
    let (_, page) = get(&format!("{}/v1/jobs/{id}/logs", server.url)).await;
    let stored: Vec<&Value> = page["items"].as_array().unwrap().iter().collect();
    let sent: Vec<&Value> = followed
        .iter()
        .filter(|e| e.event == "line")
        .map(|e| &e.data)
        .collect();
    assert_eq!(stored, sent);
    delete_namespace(&namespace);
}
