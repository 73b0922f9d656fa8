//! What the binary's test files share: `omni serve` started on a free loopback port, small
//! HTTP helpers, and a follower of a job's log as server-sent events.

#![allow(dead_code)] // each test binary uses a part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use omni_test_support::{component_path as component, workspace};
use serde_json::Value;

pub fn omni() -> Command {
    Command::new(env!("CARGO_BIN_EXE_omni"))
}

/// A new bearer token from `omni token`: the token and the SHA-256 the configuration keeps.
pub fn token() -> (String, String) {
    let made = omni().arg("token").output().unwrap();
    assert!(made.status.success(), "omni token failed");
    let made = String::from_utf8_lossy(&made.stdout).into_owned();
    let field = |name: &str| {
        made.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {made:?}"))
            .trim()
            .to_owned()
    };
    let (token, sha256) = (field("token:"), field("sha256:"));
    assert!(token.starts_with("omni_") && sha256.len() == 64, "{made}");
    (token, sha256)
}

pub struct Server {
    pub child: Child,
    pub url: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `omni serve` on a free loopback port and waits until it listens.
pub fn serve(plugin_dir: &Path, data_dir: &Path) -> Server {
    serve_with(plugin_dir, data_dir, &[])
}

/// [`serve`] with more environment variables.
pub fn serve_with(plugin_dir: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Server {
    serve_on("127.0.0.1:0", plugin_dir, data_dir, env)
}

/// [`serve_with`] on `listen`.
pub fn serve_on(listen: &str, plugin_dir: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Server {
    let mut command = omni();
    command
        .args(["serve", "--listen", listen])
        .arg("--plugin-dir")
        .arg(plugin_dir)
        .arg("--template-dir")
        .arg(workspace().join("templates"))
        .arg("--data-dir")
        .arg(data_dir)
        .envs(env.iter().copied());
    start(command)
}

/// Starts `command` (an `omni serve`) and waits until it listens.
pub fn start(mut command: Command) -> Server {
    let mut child = command
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("omni serve exited before listening")
            .unwrap();
        // The URL ends at a space or, in a JSON log line, at the closing quote.
        if let Some((_, url)) = line.split_once("omni listening on ") {
            let end = url.find(['"', ' ']).unwrap_or(url.len());
            break url[..end].trim().to_owned();
        }
    };
    // Keep draining the log (so the server never blocks on a full pipe) and keep it for asserts.
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        lines
            .map_while(Result::ok)
            .for_each(|l| sink.lock().unwrap().push(l));
    });
    Server { child, url, log }
}

pub async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

pub async fn wait_for_status(url: &str, want: u16) {
    for _ in 0..1000 {
        if get(url).await.0 == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} never answered {want}");
}

/// Polls job `id` until it has ended; its last state.
pub async fn ended(url: &str, id: &str) -> Value {
    for _ in 0..6000 {
        let (_, job) = get(&format!("{url}/v1/jobs/{id}")).await;
        if ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} never ended");
}

pub fn install(dir: &Path, name: &str) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::copy(component(name), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).unwrap();
}

/// One server-sent event: its name, id and data.
#[derive(Debug, Clone)]
pub struct Sse {
    pub event: String,
    pub id: String,
    pub data: Value,
}

/// Opens a follow stream (`Accept: text/event-stream`) with `query` and `headers`.
pub async fn open(
    server: &Server,
    id: &str,
    query: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .get(format!("{}/v1/jobs/{id}/logs{query}", server.url))
        .header("accept", "text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    response
}

/// Every event of a follow stream until it ends (the server closes it after `end` or `lagged`).
pub async fn events(response: reqwest::Response) -> Vec<Sse> {
    let read = response
        .bytes_stream()
        .eventsource()
        .map(|event| {
            let event = event.expect("a well-formed event");
            Sse {
                event: event.event,
                id: event.id,
                data: serde_json::from_str(&event.data).unwrap_or(Value::Null),
            }
        })
        .collect::<Vec<_>>();
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("the follow stream ended")
}

pub fn texts(events: &[Sse]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "line")
        .map(|e| e.data["line"].as_str().unwrap().to_owned())
        .collect()
}
