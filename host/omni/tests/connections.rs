//! `omni serve`'s connections attacked as a hostile client would, against the real binary: half-sent
//! requests, slow bodies, too many connections and streams from one client, and a stop
//! (SIGTERM) with streams open and a request in flight. A test fails only when the server hangs
//! past a generous timeout; how fast it answered or stopped is a benchmark's business.

mod common;

use std::time::Duration;

use common::{Server, install, omni, start};
use futures::StreamExt as _;
use omni_test_support::{PATIENCE, eventually};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `omni serve` with `[http]` set to `http` (TOML lines), an srpm plugin and its own data.
fn serve_http(dir: &std::path::Path, http: &str) -> Server {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, "srpm");
    let config = dir.join("omni.toml");
    std::fs::write(&config, format!("[http]\n{http}\n")).unwrap();
    let mut command = omni();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--plugin-dir")
        .arg(&plugins)
        .arg("--template-dir")
        .arg(omni_test_support::workspace().join("templates"))
        .arg("--data-dir")
        .arg(dir.join("data"));
    start(command)
}

fn address(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; what it sent. Fails on a hang.
async fn until_closed(connection: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut buffer = [0u8; 4096];
        loop {
            match connection.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .expect("the server closed the connection");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_and_slow_bodies_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_http(
        dir.path(),
        "header_read_timeout = \"1s\"\nrequest_timeout = \"2s\"",
    );
    // Heads that never end: each connection is closed, none answered.
    let mut halves = Vec::new();
    for _ in 0..20 {
        let mut connection = TcpStream::connect(address(&server)).await.unwrap();
        connection
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        halves.push(connection);
    }
    for connection in &mut halves {
        let answer = until_closed(connection).await;
        assert!(!answer.contains("200 OK"), "{answer}");
    }
    // An idle keep-alive connection is closed too.
    let mut idle = TcpStream::connect(address(&server)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A body that never arrives in full: 503 once the request timeout passes.
    let mut slow = TcpStream::connect(address(&server)).await.unwrap();
    slow.write_all(
        b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"service\":",
    )
    .await
    .unwrap();
    let answer = until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_its_connections_and_one_caller_its_streams_then_429() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_http(
        dir.path(),
        "header_read_timeout = \"5m\"\nmax_connections_per_address = 4\nmax_streams_per_caller = 2",
    );
    let url = server.url.clone();
    // Two streams held open; the third is refused with Retry-After.
    let client = reqwest::Client::new();
    let stream = || client.get(format!("{url}/v1/events")).send();
    let first = stream().await.unwrap();
    let second = stream().await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let refused = stream().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("max_streams_per_caller"),
        "{problem}"
    );
    // A stream closed gives its place back.
    drop(first);
    eventually("a stream's place to come back", || async {
        let again = stream().await.ok()?;
        (again.status() == 200).then_some(())
    })
    .await;
    drop(second);

    // Connections: the four this address may hold (half-sent heads), then 429 and closed.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut held = Vec::new();
    let mut refused = String::new();
    for _ in 0..6 {
        let mut connection = TcpStream::connect(address(&server)).await.unwrap();
        connection
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        connection.read_exact(&mut head).await.unwrap();
        if head.ends_with(b"429") {
            refused = until_closed(&mut connection).await;
            break;
        }
        assert!(head.ends_with(b"200"), "{}", String::from_utf8_lossy(&head));
        held.push(connection);
    }
    assert!(refused.contains("max_connections_per_address"), "{refused}");
    assert!(held.len() <= 4, "held {}", held.len());
    // One let go: a new connection is served again.
    held.clear();
    eventually("a connection's place to come back", || async {
        let answer = client.get(format!("{url}/healthz")).send().await.ok()?;
        (answer.status() == 200).then_some(())
    })
    .await;
}

/// SIGTERM with two event streams open and a job submission in flight: the streams get a last
/// `shutdown` event and end, the submission is answered, the server exits on its own, and the
/// job it acknowledged is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_streams_answers_what_is_in_flight_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve_http(dir.path(), "shutdown_timeout = \"5m\"");
    let url = server.url.clone();
    let client = reqwest::Client::new();
    let mut streams = Vec::new();
    for _ in 0..2 {
        let response = client.get(format!("{url}/v1/events")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        streams.push(event_names(response));
    }
    // A request whose body is half sent when the signal comes.
    let body = serde_json::json!({
        "service": "test", "task": "srpm", "arch": std::env::consts::ARCH,
        "params": {"spec": "Name: x\nVersion: 1\nRelease: 1\nSummary: x\nLicense: MIT\n%description\nx\n%files\n"},
    })
    .to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut in_flight = TcpStream::connect(address(&server)).await.unwrap();
    in_flight
        .write_all(
            format!(
                "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{head}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Connections are accepted in order: once a later one is answered, this one was taken.
    assert_eq!(common::get(&format!("{url}/healthz")).await.0, 200);

    let pid = server.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    for stream in &mut streams {
        let last = tokio::time::timeout(PATIENCE, async {
            let mut last = None;
            while let Some(event) = stream.next().await {
                last = Some(event);
            }
            last
        })
        .await
        .expect("the stream ended");
        assert_eq!(last.as_deref(), Some("shutdown"));
    }
    in_flight.write_all(tail.as_bytes()).await.unwrap();
    let answer = until_closed(&mut in_flight).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let created: Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
    let exited = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the server exited");
    assert!(exited.success(), "{exited:?}");
    drop(server);

    let again = serve_http(dir.path(), "");
    let (status, job) = common::get(&format!(
        "{}/v1/jobs/{}",
        again.url,
        created["id"].as_str().unwrap()
    ))
    .await;
    assert_eq!(status, 200, "{job}");
}

/// The event names of a server-sent event stream, as they come.
fn event_names(response: reqwest::Response) -> futures::stream::BoxStream<'static, String> {
    use eventsource_stream::Eventsource as _;
    response
        .bytes_stream()
        .eventsource()
        .filter_map(|event| async move { event.ok().map(|e| e.event) })
        .boxed()
}
