//! The webhook routes over a real HTTP server on loopback, with an embedded store:
//! registration (each bad field named, internal addresses refused), listing (never with the
//! secret), delivery state, deletion, and the cap per domain.

mod common;

use common::server::{server, server_with};
use omni_store::JobState;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_validated_each_bad_field_named() {
    let server = server().await;
    let good = json!({"url": "https://ci.example.com/omni", "events": ["job.succeeded"], "secret": "s3cret"});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body.to_string()
    };
    let long_secret = "x".repeat(omni_webhooks::MAX_SECRET + 1);
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        (
            with("url", json!("ftp://ci.example.com/")),
            Some("/url"),
            "not http",
        ),
        (
            with("url", json!("file:///etc/passwd")),
            Some("/url"),
            "a file",
        ),
        (
            with("url", json!("https://user:pw@ci.example.com/")),
            Some("/url"),
            "credentials",
        ),
        (
            with("url", json!("https://token@ci.example.com/")),
            Some("/url"),
            "a user",
        ),
        (with("url", json!("not a url")), Some("/url"), "not a URL"),
        (
            with("url", json!("https://ci.example.com/#frag")),
            Some("/url"),
            "a fragment",
        ),
        (with("events", json!([])), Some("/events"), "no events"),
        (
            with("events", json!(["job.done"])),
            Some("/events"),
            "an unknown event",
        ),
        (
            with("events", json!(["*", "job.failed"])),
            Some("/events"),
            "* with others",
        ),
        (
            with("secret", json!("")),
            Some("/secret"),
            "an empty secret",
        ),
        (
            with("secret", json!(long_secret)),
            Some("/secret"),
            "a long secret",
        ),
        (
            with("domain", json!("Bad Domain")),
            Some("/domain"),
            "a bad domain",
        ),
        (
            with("events", json!("job.failed")),
            None,
            "events not a list",
        ),
        (with("colour", json!("red")), None, "an unknown field"),
        (
            r#"{"url": "https://x.example/", "events": ["*"]}"#.to_owned(),
            None,
            "no secret",
        ),
        (r#"{"url": "#.to_owned(), None, "not JSON"),
    ];
    for (body, path, what) in cases {
        let (status, headers, answer) = server.post("/v1/webhooks", &body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{what}"
        );
        if let Some(path) = path {
            assert_eq!(answer["errors"][0]["path"], path, "{what}: {answer}");
        }
    }
    // Well-formed, but a literal address in a range deliveries may not reach: 422, early (the
    // deliverer checks every destination again when connecting).
    for url in [
        "http://127.0.0.1:9/hook",
        "http://[::ffff:127.0.0.1]:9/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/",
        "http://10.0.0.1/",
    ] {
        let (status, _, answer) = server.post("/v1/webhooks", &with("url", json!(url))).await;
        assert_eq!(status, 422, "{url}: {answer}");
        assert_eq!(answer["title"], "destination not allowed", "{url}");
        assert_eq!(answer["errors"][0]["path"], "/url", "{url}: {answer}");
    }
    let (_, _, list) = server.get("/v1/webhooks").await;
    assert_eq!(list["items"], json!([]), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_registered_shown_without_their_secret_and_deleted() {
    let server = server().await;
    let (status, headers, made) = server
        .post(
            "/v1/webhooks",
            &json!({"url": "https://ci.example.com/hook", "events": ["job.pending", "job.cancelled"],
                    "secret": "s3cret", "domain": "tenant-a"})
            .to_string(),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/v1/webhooks/{id}").as_str());
    assert_eq!(made["domain"], "tenant-a");
    assert_eq!(made["events"], json!(["job.pending", "job.cancelled"]));
    assert!(made.get("secret").is_none() && !made.to_string().contains("s3cret"));
    assert_eq!(made["delivery"]["delivered"], 0);

    // No deliverer runs here: the events it wants wait, the others do not count.
    server
        .job("ci", "rpm", "tenant-a", &[JobState::Cancelled])
        .await;
    server
        .job("ci", "rpm", "tenant-a", &[JobState::Queued])
        .await;
    server.job("ci", "rpm", "tenant-b", &[]).await;
    let (status, _, one) = server.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 200);
    assert!(!one.to_string().contains("s3cret"));
    assert_eq!(one["delivery"]["pending"], 3, "{one}");
    assert_eq!(one["delivery"]["pending_more"], false);
    assert_eq!(one["delivery"]["attempts"], 0);
    assert_eq!(one["delivery"]["last_error"], Value::Null);

    let (status, _, list) = server.get("/v1/webhooks").await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert!(!list.to_string().contains("s3cret"));

    assert_eq!(server.delete(&format!("/v1/webhooks/{id}")).await, 204);
    assert_eq!(server.delete(&format!("/v1/webhooks/{id}")).await, 404);
    let (status, content_type, _) = server.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(
        (status, content_type.as_str()),
        (404, "application/problem+json")
    );
    assert_eq!(server.get("/v1/webhooks/not-a-uuid").await.0, 404);
    assert_eq!(server.delete("/v1/webhooks/not-a-uuid").await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_has_at_most_max_per_domain_webhooks() {
    let server = server_with(omni_webhooks::Webhooks::new(
        &omni_webhooks::WebhooksConfig {
            max_per_domain: 2,
            ..omni_webhooks::WebhooksConfig::default()
        },
        omni_webhooks::Keyring::ephemeral(),
    ))
    .await;
    let register = |domain: Option<&str>| {
        let mut body =
            json!({"url": "https://ci.example.com/hook", "events": ["*"], "secret": "s"});
        if let Some(domain) = domain {
            body["domain"] = json!(domain);
        }
        body.to_string()
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, _, made) = server
            .post("/v1/webhooks", &register(Some("tenant-a")))
            .await;
        assert_eq!(status, 201, "{made}");
        ids.push(made["id"].as_str().unwrap().to_owned());
    }
    let (status, headers, problem) = server
        .post("/v1/webhooks", &register(Some("tenant-a")))
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(problem["title"], "too many webhooks");
    assert!(
        problem["detail"].as_str().unwrap().contains("tenant-a"),
        "{problem}"
    );
    // Other domains, and the webhooks without one, have their own count.
    for domain in [Some("tenant-b"), None, None] {
        let (status, _, made) = server.post("/v1/webhooks", &register(domain)).await;
        assert_eq!(status, 201, "{domain:?}: {made}");
    }
    assert_eq!(server.post("/v1/webhooks", &register(None)).await.0, 409);
    // A deleted one makes room.
    assert_eq!(
        server.delete(&format!("/v1/webhooks/{}", ids[0])).await,
        204
    );
    assert_eq!(
        server
            .post("/v1/webhooks", &register(Some("tenant-a")))
            .await
            .0,
        201
    );
    let (_, _, list) = server.get("/v1/webhooks").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 5);
}
