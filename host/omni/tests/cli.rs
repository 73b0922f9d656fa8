//! The `omni` binary end to end: `omni serve` on a real port with real plugin files, hot reload
//! through the watcher and SIGHUP, and `omni plugin render` without a server.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{ended, get, install, omni, serve, start, wait_for_status};
use omni_test_support::{component_path as component, workspace};
use serde_json::{Value, json};

#[tokio::test]
async fn serve_loads_renders_and_reloads_plugins() {
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    install(plugins.path(), "srpm");
    let server = serve(plugins.path(), data.path());

    let (status, list) = get(&format!("{}/v1/plugins", server.url)).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["task"], "srpm");
    let response = reqwest::Client::new()
        .post(format!("{}/v1/plugins/srpm/render", server.url))
        .json(&json!({"params": {"spec": "Name: hello\n"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let rendered: Value = response.json().await.unwrap();
    assert!(rendered["primary"].as_str().unwrap().starts_with("omni-"));

    // A plugin renamed into the directory is picked up by the watcher.
    install(plugins.path(), "rpm");
    wait_for_status(&format!("{}/v1/plugins/rpm", server.url), 200).await;

    // A removed plugin is unloaded.
    std::fs::remove_file(plugins.path().join("rpm.wasm")).unwrap();
    wait_for_status(&format!("{}/v1/plugins/rpm", server.url), 404).await;

    // SIGHUP rescans.
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    for _ in 0..1000 {
        if server
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("SIGHUP: rescanning plugins"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("SIGHUP: rescanning plugins"))
    );
    assert_eq!(get(&format!("{}/v1/plugins/srpm", server.url)).await.0, 200);

    // The compile cache is in the data directory: srpm's optimized code, written in the
    // background while it served from quick code (rpm's too, unless it was removed first).
    let srpm = format!(
        "{}-",
        omni_runtime::sandbox::digest(&std::fs::read(component("srpm")).unwrap())
    );
    let cached = || {
        let dir = std::fs::read_dir(data.path().join("cache/components"));
        dir.into_iter().flatten().flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&srpm) && name.ends_with(".cwasm")
        })
    };
    for _ in 0..3000 {
        if cached() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cached(), "srpm's optimized code is cached");
}

#[test]
fn serve_refuses_a_non_loopback_address_without_users() {
    let out = omni()
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0"),
        "{stderr}"
    );
}

#[test]
fn serve_rejects_an_unknown_configuration_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("omni.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nplugins_dir = \"x\"\n").unwrap();
    let out = omni()
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `plugins_dir`"), "{stderr}");
}

#[test]
fn plugin_render_runs_a_plugin_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let params = dir.path().join("p.json");
    std::fs::write(&params, json!({"spec": "Name: hello\n"}).to_string()).unwrap();
    let out = omni()
        .args(["plugin", "render"])
        .arg(component("srpm"))
        .arg("--params")
        .arg(&params)
        .arg("--template-dir")
        .arg(workspace().join("templates"))
        .args(["--arch", "aarch64"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("kind: Job"), "{stdout}");
    assert!(stdout.contains("kubernetes.io/arch: arm64"), "{stdout}");

    std::fs::write(
        &params,
        json!({"spec": "Name: hello\n", "colour": "red"}).to_string(),
    )
    .unwrap();
    let out = omni()
        .args(["plugin", "render"])
        .arg(component("srpm"))
        .arg("--params")
        .arg(&params)
        .arg("--template-dir")
        .arg(workspace().join("templates"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/colour: unknown field `colour`"),
        "{stderr}"
    );
}

/// Every job answered 201 is on disk: submissions race a SIGKILL, and after a restart on the
/// same data directory each acknowledged job reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_jobs_survive_a_killed_server() {
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    install(plugins.path(), "srpm");
    let mut server = serve(plugins.path(), data.path());
    let url = server.url.clone();
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let url = url.clone();
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in 0.. {
                    let body = json!({"service": "obs", "task": "srpm",
                        "params": {"spec": format!("Name: c{client}-{i}\n")}});
                    let Ok(response) = http.post(format!("{url}/v1/jobs")).json(&body).send().await
                    else {
                        return;
                    };
                    if response.status() != 201 {
                        return;
                    }
                    let Ok(job) = response.json::<Value>().await else {
                        return;
                    };
                    acknowledged
                        .lock()
                        .unwrap()
                        .push(job["id"].as_str().unwrap().to_owned());
                }
            })
        })
        .collect();
    while acknowledged.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for client in clients {
        client.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let server = serve(plugins.path(), data.path());
    for id in &acknowledged {
        let (status, job) = get(&format!("{}/v1/jobs/{id}", server.url)).await;
        assert_eq!(status, 200, "job {id} was acknowledged and is gone: {job}");
        assert_eq!(job["id"], id.as_str());
    }
}

const SPEC: &str = "Name: hello\nVersion: 1.0\nRelease: 1\nSummary: Says hello\nLicense: MIT\nBuildArch: noarch\n\n%description\nSays hello.\n\n%files\n";

/// The README's walk-through: with no configuration, a submitted SRPM job runs on the local
/// engine to success, and its source RPM is in the job's directory under the data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_job_runs_on_the_default_local_engine() {
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    install(plugins.path(), "srpm");
    let server = serve(plugins.path(), data.path());
    let (status, ready) = get(&format!("{}/readyz", server.url)).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["engines"][0]["name"], "local", "{ready}");
    assert_eq!(ready["engines"][0]["ready"], true, "{ready}");
    assert_eq!(
        ready["engines"][0]["warnings"],
        json!([]),
        "sandboxed: {ready}"
    );
    let (id, job) = srpm_job(&server.url).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["engine"], "local");
    assert_eq!(
        job["steps"],
        json!([{"name": "fetch", "state": "succeeded"}, {"name": "build", "state": "succeeded"}])
    );
    let srpm = data
        .path()
        .join("jobs")
        .join(&id)
        .join("volumes/output/hello-1.0-1.src.rpm");
    assert!(srpm.is_file(), "{srpm:?}");

    // An arch no engine runs is refused at once.
    let (arch, http) = (std::env::consts::ARCH, reqwest::Client::new());
    let other = if arch == "aarch64" {
        "x86_64"
    } else {
        "aarch64"
    };
    let response = http
        .post(format!("{}/v1/jobs", server.url))
        .json(&json!({"service": "obs", "task": "srpm", "arch": other, "params": {"spec": SPEC}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["path"], "/arch", "{problem:#}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no engine runs jobs for"),
        "{problem:#}"
    );
}

/// "Five minutes with Omni" as written: `omni serve` with no flags in a directory holding
/// `./templates` and `./.omni/plugins`, so every directory is the relative default. The job's
/// steps run elsewhere, and still find their input under `./.omni/data`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relative_default_directories_work_from_where_the_server_started() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cwd.path().join(".omni/plugins")).unwrap();
    install(&cwd.path().join(".omni/plugins"), "srpm");
    omni_test_support::copy_templates("srpm", &cwd.path().join("templates"));
    let mut command = omni();
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(cwd.path())
        .env_remove("OMNI_DATA_DIR")
        .env_remove("OMNI_PLUGIN_DIR")
        .env_remove("OMNI_TEMPLATE_DIR")
        .env_remove("OMNI_CONFIG");
    let server = start(command);
    let (id, job) = srpm_job(&server.url).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let srpm = cwd
        .path()
        .join(".omni/data/jobs")
        .join(&id)
        .join("volumes/output/hello-1.0-1.src.rpm");
    assert!(srpm.is_file(), "{srpm:?}");
}

#[test]
fn serve_refuses_a_data_directory_another_server_holds() {
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let _first = serve(plugins.path(), data.path());
    let output = omni()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--plugin-dir")
        .arg(plugins.path())
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot open the embedded store in"),
        "{stderr}"
    );
}

/// Submits the SRPM job of [`SPEC`] for this machine's arch (201) and waits until it ends: its id
/// and the job as it ended.
async fn srpm_job(url: &str) -> (String, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/jobs"))
        .json(
            &json!({"service": "obs", "task": "srpm", "arch": std::env::consts::ARCH,
                      "params": {"spec": SPEC}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let job: Value = response.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let job = ended(url, &id).await;
    (id, job)
}
