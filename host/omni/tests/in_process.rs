//! The server as a library function: `omni::serve` in this test's process, on a listener the test
//! made, stopped by a future the test completes — no process, no port race, no signals.

use omni_test_support::{component_path, eventually, workspace};
use serde_json::{Value, json};

fn config(plugins: &std::path::Path, data: &std::path::Path) -> omni::config::Config {
    omni::config::Config {
        plugin_dir: plugins.to_owned(),
        template_dir: workspace().join("templates"),
        data_dir: data.to_owned(),
        ..omni::config::Config::default()
    }
}

/// A server started in this process over `plugins` and `data`, ready.
struct Running {
    url: String,
    client: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn start(plugins: &std::path::Path, data: &std::path::Path) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(omni::serve(config(plugins, data), listener, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        let ready = eventually("the server to be ready or to end", || async {
            if server.is_finished() {
                return Some(false);
            }
            let answer = client.get(format!("{url}/readyz")).send().await.ok()?;
            answer.status().is_success().then_some(true)
        })
        .await;
        if !ready {
            let ended = server.await.expect("the server task panicked");
            panic!("the server ended before it was ready: {ended:?}");
        }
        Running {
            url,
            client,
            stop,
            server,
        }
    }

    /// Submits the README's SRPM job and waits until it ends; answers the job.
    async fn run_srpm_job(&self) -> Value {
        let spec = "Name: hello\nVersion: 1.0\nRelease: 1\nSummary: hi\nLicense: MIT\nBuildArch: noarch\n%description\nhi\n%files\n";
        let created: Value = self
            .client
            .post(format!("{}/v1/jobs", self.url))
            .json(&json!({"service": "test", "task": "srpm", "arch": std::env::consts::ARCH, "params": {"spec": spec}}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        eventually("the job to end", || async {
            let job: Value = self
                .client
                .get(format!("{}/v1/jobs/{id}", self.url))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            matches!(
                job["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
            .then_some(job)
        })
        .await
    }

    /// Completes the shutdown future and waits until `serve` returned.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(omni_test_support::PATIENCE, self.server)
            .await
            .expect("the server stopped when asked")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_in_process_runs_a_job_and_stops_when_asked() {
    let (plugins, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::copy(component_path("srpm"), plugins.path().join("srpm.wasm")).unwrap();
    let server = Running::start(plugins.path(), data.path()).await;
    let done = server.run_srpm_job().await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    server.stop().await;
}

#[tokio::test]
async fn a_server_in_process_without_auth_refuses_an_address_that_is_not_loopback() {
    let (plugins, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let error = omni::serve(config(plugins.path(), data.path()), listener, async {})
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("refusing to listen"),
        "{error:#}"
    );
}

/// A job a newer server left in a state this one does not know (written to the store before
/// this server starts) is shown as it is, refused a cancel or a purge with 409, and left alone
/// by the scheduler: a job submitted after it runs to its end while it stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_in_a_state_this_server_does_not_know_is_shown_and_left_alone() {
    use omni_store::{JobState, JobStore, PluginRef};

    let (plugins, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::copy(component_path("srpm"), plugins.path().join("srpm.wasm")).unwrap();
    let created = omni_store::now();
    let future = omni_store::Job {
        rendering: None,
        id: omni_store::new_job_id(),
        service: "test".into(),
        task: "srpm".into(),
        domain: "default".into(),
        arch: std::env::consts::ARCH.into(),
        state: JobState::Other("verifying"),
        params: json!({"spec": "Name: x"}),
        plugin: PluginRef {
            task: "srpm".into(),
            version: "9.0.0".into(),
            digest: "ab".repeat(32),
            templates: None,
        },
        engine: None,
        message: Some("checking signatures".into()),
        steps: Vec::new(),
        created_at: created,
        updated_at: created,
        started_at: None,
        finished_at: None,
    };
    {
        let store = omni_store_embedded::EmbeddedStore::open(
            &data.path().join("store"),
            omni_store_embedded::EmbeddedConfig::default(),
        )
        .unwrap();
        store.create_job(&future, None).await.unwrap();
    }
    let server = Running::start(plugins.path(), data.path()).await;
    let (url, client) = (&server.url, &server.client);
    let job_url = format!("{url}/v1/jobs/{}", future.id);
    let get = || async {
        let answer = client.get(&job_url).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        answer.json::<Value>().await.unwrap()
    };
    let shown = get().await;
    assert_eq!(shown["state"], "verifying", "{shown:#}");
    assert_eq!(shown["message"], "checking signatures", "{shown:#}");
    let listed: Value = client
        .get(format!("{url}/v1/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["items"][0]["id"],
        future.id.to_string(),
        "{listed:#}"
    );
    assert_eq!(listed["items"][0]["state"], "verifying");
    for purge in ["false", "true"] {
        let answer = client
            .delete(format!("{job_url}?purge={purge}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 409, "purge={purge}");
    }

    // The scheduler passes over it: a later job is scheduled, run and ended meanwhile.
    assert_eq!(server.run_srpm_job().await["state"], "succeeded");
    assert_eq!(get().await, shown, "the job was left as it was");
    server.stop().await;
}
