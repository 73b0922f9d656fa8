//! `omni serve` killed with SIGKILL while a job runs on the local engine: no process of the job
//! outlives the server (each step runs under bubblewrap's init, which dies with the server and
//! takes the step's pid namespace with it), and the server started again over the same data
//! ends the job it lost instead of running it a second time, and runs the next one.

mod common;

use common::{ended, install, serve_with};
use omni_test_support::{eventually, sleeping};
use serde_json::{Value, json};

async fn submit(url: &str, params: Value) -> String {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/jobs"))
        .json(
            &json!({"service": "obs", "task": "hostile", "arch": std::env::consts::ARCH,
                       "params": params}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_leaves_no_process_and_does_not_run_the_job_again() {
    let (plugins, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    install(plugins.path(), "hostile");
    let mut server = serve_with(plugins.path(), data.path(), &[]);
    // A step that prints, then sleeps a time no other process here sleeps.
    let seconds = format!("{}", 3000 + std::process::id() % 1000);
    let id = submit(
        &server.url,
        json!({"behaviour": "print", "lines": 1, "pause": seconds.parse::<u32>().unwrap()}),
    )
    .await;
    eventually("the step to be sleeping", || async {
        sleeping(&seconds).then_some(())
    })
    .await;

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    eventually("the job's processes to be gone", || async {
        (!sleeping(&seconds)).then_some(())
    })
    .await;

    let again = serve_with(plugins.path(), data.path(), &[]);
    let lost = ended(&again.url, &id).await;
    assert_eq!(lost["state"], "failed", "{lost:#}");
    assert!(
        lost["message"]
            .as_str()
            .is_some_and(|m| m.contains("no longer has the job")),
        "{lost:#}"
    );
    assert!(!sleeping(&seconds), "the job was not started again");
    let next = submit(&again.url, json!({"behaviour": "print", "lines": 2})).await;
    assert_eq!(ended(&again.url, &next).await["state"], "succeeded");
}
