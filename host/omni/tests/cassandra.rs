//! `omni serve` on the Cassandra store (the project's testbed node): a node killed in the middle
//! of a burst of submissions makes the API answer 503 with `Retry-After`, the server recovers by
//! itself when the node is back, and every job it answered 201 for reads back. An unreachable
//! store at start is a clear error.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{get, install, omni, serve_with};
use omni_test_support::cassandra;
use serde_json::{Value, json};

#[derive(Debug, Default)]
struct Seen {
    acknowledged: Vec<String>,
    unavailable: usize,
    without_retry_after: usize,
    other: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_503_then_recovered_and_nothing_acknowledged_is_lost() {
    // This test kills the node: it waits for every other test binary using it.
    let _node = cassandra::own_the_node();
    let point = cassandra::testbed(&["start"], true);
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    install(plugins.path(), "srpm");
    // With Cassandra, the key of webhook secrets must be configured.
    let config = data.path().join("omni.toml");
    std::fs::write(
        &config,
        format!("[[webhooks.secret_keys]]\nkey = \"{}\"\n", "ab".repeat(32)),
    )
    .unwrap();
    let env = [
        ("OMNI_CASSANDRA_CONTACT_POINTS", point.as_str()),
        ("OMNI_CASSANDRA_KEYSPACE", "omni_e2e"),
        ("OMNI_CONFIG", config.to_str().unwrap()),
    ];
    let server = serve_with(plugins.path(), data.path(), &env);
    let url = server.url.clone();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|client| {
            let (url, seen, stop) = (url.clone(), seen.clone(), stop.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let body = json!({"service": "obs", "task": "srpm",
                        "params": {"spec": format!("Name: c{client}-{i}\n")}});
                    let response =
                        match http.post(format!("{url}/v1/jobs")).json(&body).send().await {
                            Ok(response) => response,
                            Err(e) => {
                                seen.lock().unwrap().other.push(e.to_string());
                                continue;
                            }
                        };
                    let status = response.status().as_u16();
                    let retry_after = response.headers().contains_key("retry-after");
                    let answer: Value = response.json().await.unwrap_or(Value::Null);
                    {
                        let mut seen = seen.lock().unwrap();
                        match status {
                            201 => seen
                                .acknowledged
                                .push(answer["id"].as_str().unwrap().to_owned()),
                            503 => {
                                seen.unavailable += 1;
                                if !retry_after {
                                    seen.without_retry_after += 1;
                                }
                            }
                            _ => seen.other.push(format!("{status}: {answer}")),
                        }
                    }
                    let pause = if status == 503 { 100 } else { 0 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            })
        })
        .collect();

    let acknowledged = || seen.lock().unwrap().acknowledged.len();
    wait_until("100 submissions", || acknowledged() >= 100).await;
    cassandra::testbed(&["kill"], true);
    wait_until("a 503 while the node is down", || {
        seen.lock().unwrap().unavailable > 0
    })
    .await;
    let before_restart = acknowledged();
    cassandra::testbed(&["start"], true);
    // The server reconnects by itself: submissions are accepted again.
    wait_until("submissions after the restart", || {
        acknowledged() > before_restart + 20
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.without_retry_after, 0, "a 503 without Retry-After");
    assert!(
        seen.other.is_empty(),
        "answers other than 201 or 503: {:?}",
        seen.other
    );
    let (status, _) = get(&format!("{url}/readyz")).await;
    assert_eq!(status, 200);
    for id in &seen.acknowledged {
        let (status, job) = get(&format!("{url}/v1/jobs/{id}")).await;
        assert_eq!(status, 200, "job {id} was acknowledged and is gone: {job}");
    }
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn serve_refuses_to_start_on_an_unreachable_store() {
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let output = omni()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--plugin-dir")
        .arg(plugins.path())
        .arg("--data-dir")
        .arg(data.path())
        // Nothing listens on port 1.
        .env("OMNI_CASSANDRA_CONTACT_POINTS", "127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot open the cassandra store at 127.0.0.1:1"),
        "{stderr}"
    );
}
