//! The event stream and the webhook routes over a real HTTP server on loopback, with an embedded
//! store: SSE resume with `Last-Event-ID` and `after`, filters, validation errors, and the
//! webhooks' registration, listing (never with the secret), delivery state and deletion.
//! No timed assertions: every wait has a generous deadline.

use std::sync::Arc;
use std::time::Duration;

use omni_api::{AppState, EventsConfig, router};
use omni_jobs::JobService;
use omni_store::{Event, JobId, JobState, Store};
use omni_store_embedded::{EmbeddedConfig, EmbeddedStore};
use serde_json::{Value, json};

struct Server {
    base: String,
    /// The store under `jobs`: jobs are made in it directly (the job service would ask a plugin).
    store: Arc<dyn Store>,
    jobs: JobService,
    client: reqwest::Client,
    _dirs: (omni_test_support::Plugins, tempfile::TempDir),
}

async fn server() -> Server {
    server_with(omni_webhooks::Webhooks::default()).await
}

/// [`server`] with these webhook settings.
async fn server_with(webhooks: omni_webhooks::Webhooks) -> Server {
    let data = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(data.path(), EmbeddedConfig::default()).unwrap());
    let (plugins, jobs) = omni_test_support::job_service_over(store.clone());
    let app = router(AppState {
        events: EventsConfig {
            poll_interval: Duration::from_millis(100),
            keep_alive: Duration::from_millis(500),
        },
        webhooks,
        ..AppState::new(jobs.clone(), Arc::clone(&plugins.registry))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base,
        store,
        jobs,
        client: reqwest::Client::new(),
        _dirs: (plugins, data),
    }
}

impl Server {
    /// Makes a job in `domain`/`service`/`task` and moves it along `path`.
    async fn job(&self, service: &str, task: &str, domain: &str, path: &[JobState]) -> JobId {
        let job = omni_test_support::pending_job(service, task, domain);
        self.store.create_job(&job, None).await.unwrap();
        for to in path {
            self.jobs.transition(job.id, *to, None).await.unwrap();
        }
        job.id
    }

    async fn stream(&self, query: &str, last_event_id: Option<&str>) -> Sse {
        let mut request = self
            .client
            .get(format!("{}/v1/events{query}", self.base))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Sse {
            response,
            buffer: String::new(),
            comments: 0,
        }
    }

    async fn get(&self, path: &str) -> (u16, String, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    async fn post(&self, path: &str, body: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let headers = response.headers().clone();
        let (status, _, body) = answer(response).await;
        (status, headers, body)
    }

    async fn delete(&self, path: &str) -> u16 {
        self.client
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

async fn answer(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, content_type, body)
}

/// A server-sent event stream being read.
struct Sse {
    response: reqwest::Response,
    buffer: String,
    comments: usize,
}

impl Sse {
    /// The next `event: job`, with its `id:`.
    async fn next(&mut self) -> (String, Event) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut name = None;
                let mut id = None;
                let mut data = String::new();
                for line in frame.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        name = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if name.is_none() && data.is_empty() {
                    continue;
                }
                assert_eq!(name.as_deref(), Some("job"), "{frame}");
                let event: Event = serde_json::from_str(&data).unwrap();
                let id = id.expect("every event has an id");
                assert_eq!(id, event.id);
                return (id, event);
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event within the deadline")
                .unwrap()
                .expect("the stream stays open");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    async fn take(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::new();
        for _ in 0..n {
            events.push(self.next().await.1);
        }
        events
    }
}

fn moves(events: &[Event]) -> Vec<(JobId, JobState)> {
    events.iter().map(|e| (e.job_id, e.to)).collect()
}

const DONE: [JobState; 3] = [JobState::Queued, JobState::Running, JobState::Succeeded];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_after_last_event_id_with_every_later_event_once() {
    let server = server().await;
    // Before the stream: not in it (a stream without an id starts at the end).
    server.job("ci", "rpm", "default", &DONE).await;
    let mut live = server.stream("", None).await;
    let a = server.job("ci", "rpm", "default", &DONE).await;
    let first = live.take(4).await;
    assert_eq!(
        moves(&first),
        [
            (a, JobState::Pending),
            (a, JobState::Queued),
            (a, JobState::Running),
            (a, JobState::Succeeded)
        ]
    );
    assert_eq!(first[1].from, Some(JobState::Pending));
    assert_eq!(first[0].service, "ci");
    drop(live);

    // While nobody listens.
    let b = server
        .job("ci", "srpm", "default", &[JobState::Cancelled])
        .await;
    let mut expected = vec![
        (a, JobState::Running),
        (a, JobState::Succeeded),
        (b, JobState::Pending),
        (b, JobState::Cancelled),
    ];
    for resume in ["header", "query"] {
        let mut resumed = match resume {
            "header" => server.stream("", Some(&first[1].id)).await,
            _ => {
                server
                    .stream(&format!("?after={}", first[1].id), None)
                    .await
            }
        };
        let replayed = resumed.take(expected.len()).await;
        assert_eq!(moves(&replayed), expected, "resumed by {resume}");
        assert_eq!(replayed[..2], first[2..]);
        // Then live, with nothing repeated in between.
        let c = server.job("ci", "iso", "default", &[]).await;
        assert_eq!(moves(&resumed.take(1).await), [(c, JobState::Pending)]);
        expected.push((c, JobState::Pending));
    }
    // Idle streams get keep-alive comments.
    let mut idle = server.stream("", None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while idle.comments == 0 {
        let chunk = tokio::time::timeout_at(deadline, idle.response.chunk())
            .await
            .expect("a keep-alive within the deadline")
            .unwrap()
            .unwrap();
        idle.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        idle.comments +=
            idle.buffer.matches("\n:").count() + usize::from(idle.buffer.starts_with(':'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_pick_domain_service_and_task() {
    let server = server().await;
    let mut both = server.stream("?domain=tenant-a&service=obs", None).await;
    let mut task = server.stream("?task=iso", None).await;
    let mine = server.job("obs", "rpm", "tenant-a", &[]).await;
    server.job("obs", "rpm", "tenant-b", &[]).await;
    server.job("koji", "rpm", "tenant-a", &[]).await;
    let iso = server.job("koji", "iso", "tenant-b", &[]).await;
    let last = server
        .job("obs", "iso", "tenant-a", &[JobState::Cancelled])
        .await;
    assert_eq!(
        moves(&both.take(3).await),
        [
            (mine, JobState::Pending),
            (last, JobState::Pending),
            (last, JobState::Cancelled)
        ]
    );
    assert_eq!(
        moves(&task.take(3).await),
        [
            (iso, JobState::Pending),
            (last, JobState::Pending),
            (last, JobState::Cancelled)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_false_answers_pages_of_the_stored_events_from_the_oldest() {
    let server = server().await;
    let a = server.job("ci", "rpm", "default", &DONE).await;
    let b = server
        .job("ci", "srpm", "tenant-a", &[JobState::Cancelled])
        .await;
    let page = |v: &Value| -> Vec<(JobId, JobState)> {
        let events: Vec<Event> = serde_json::from_value(v["items"].clone()).unwrap();
        moves(&events)
    };
    let all = vec![
        (a, JobState::Pending),
        (a, JobState::Queued),
        (a, JobState::Running),
        (a, JobState::Succeeded),
        (b, JobState::Pending),
        (b, JobState::Cancelled),
    ];
    let (status, content_type, body) = server.get("/v1/events?follow=false").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(page(&body), all);

    // In pages of 4: a full one, then the rest (short: caught up), then nothing after it.
    let (_, _, first) = server.get("/v1/events?follow=false&limit=4").await;
    assert_eq!(page(&first), all[..4]);
    let next = first["next"].as_str().unwrap();
    let (_, _, rest) = server
        .get(&format!("/v1/events?follow=false&limit=4&after={next}"))
        .await;
    assert_eq!(page(&rest), all[4..]);
    let next = rest["next"].as_str().unwrap();
    let (_, _, none) = server
        .get(&format!("/v1/events?follow=false&after={next}"))
        .await;
    assert_eq!(page(&none), []);
    // An empty `after` or `Last-Event-ID` is no position (the SSE spec's "no last id"): from
    // the oldest, as without one.
    let (status, _, empty) = server.get("/v1/events?follow=false&after=").await;
    assert_eq!((status, page(&empty)), (200, all.clone()));
    let response = server
        .client
        .get(format!("{}/v1/events?follow=false", server.base))
        .header("last-event-id", "")
        .send()
        .await
        .unwrap();
    let (status, _, empty) = answer(response).await;
    assert_eq!((status, page(&empty)), (200, all.clone()));
    // A later event comes after that `next`, and a stream resumed from it starts there.
    let c = server.job("ci", "iso", "default", &[]).await;
    let (_, _, later) = server
        .get(&format!("/v1/events?follow=false&after={next}"))
        .await;
    assert_eq!(page(&later), [(c, JobState::Pending)]);
    let mut resumed = server.stream(&format!("?after={next}"), None).await;
    assert_eq!(moves(&resumed.take(1).await), [(c, JobState::Pending)]);

    // Filters apply; bad follow and limit values are 400s naming them.
    let (_, _, tenant) = server.get("/v1/events?follow=false&domain=tenant-a").await;
    assert_eq!(page(&tenant), all[4..]);
    for (query, path) in [
        ("?follow=maybe", "/query/follow"),
        ("?follow=false&limit=0", "/query/limit"),
        ("?follow=false&limit=1001", "/query/limit"),
        ("?follow=false&after=12abc", "/query/after"),
    ] {
        let (status, _, body) = server.get(&format!("/v1/events{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["errors"][0]["path"], path, "{query}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_and_event_ids_answer_400_naming_them() {
    let server = server().await;
    for (query, header, path) in [
        ("?domain=Not_A_Name", None, Some("/query/domain")),
        ("?service=", None, Some("/query/service")),
        (
            &format!("?task={}", "x".repeat(64)),
            None,
            Some("/query/task"),
        ),
        ("?after=12abc", None, Some("/query/after")),
        ("", Some("not-an-id"), Some("/headers/last-event-id")),
        ("", Some("-1"), Some("/headers/last-event-id")),
        ("?colour=red", None, None),
    ] as [(&str, Option<&str>, Option<&str>); 7]
    {
        let mut request = server
            .client
            .get(format!("{}/v1/events{query}", server.base));
        if let Some(id) = header {
            request = request.header("last-event-id", id);
        }
        let (status, content_type, body) = answer(request.send().await.unwrap()).await;
        assert_eq!(status, 400, "{query} {header:?}: {body}");
        assert_eq!(content_type, "application/problem+json");
        match path {
            Some(path) => assert_eq!(body["errors"][0]["path"], path, "{body}"),
            None => assert!(
                body["detail"].as_str().unwrap().contains("colour"),
                "{body}"
            ),
        }
    }
}

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
