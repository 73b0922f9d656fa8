//! A real HTTP server on loopback over an embedded store, for the event stream's and the
//! webhook routes' tests, and a reader of its server-sent events.

use std::sync::Arc;
use std::time::Duration;

use omni_api::{AppState, EventsConfig, router};
use omni_jobs::JobService;
use omni_store::{Event, JobId, JobState, Store};
use omni_store_embedded::{EmbeddedConfig, EmbeddedStore};
use serde_json::Value;

pub struct Server {
    pub base: String,
    /// The store under `jobs`: jobs are made in it directly (the job service would ask a plugin).
    pub store: Arc<dyn Store>,
    pub jobs: JobService,
    pub client: reqwest::Client,
    _dirs: (omni_test_support::Plugins, tempfile::TempDir),
}

pub async fn server() -> Server {
    server_with(omni_webhooks::Webhooks::default()).await
}

/// [`server`] with these webhook settings.
pub async fn server_with(webhooks: omni_webhooks::Webhooks) -> Server {
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
    pub async fn job(&self, service: &str, task: &str, domain: &str, path: &[JobState]) -> JobId {
        let job = omni_test_support::pending_job(service, task, domain);
        self.store.create_job(&job, None).await.unwrap();
        for to in path {
            self.jobs.transition(job.id, *to, None).await.unwrap();
        }
        job.id
    }

    pub async fn stream(&self, query: &str, last_event_id: Option<&str>) -> Sse {
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

    pub async fn get(&self, path: &str) -> (u16, String, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, reqwest::header::HeaderMap, Value) {
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

    pub async fn delete(&self, path: &str) -> u16 {
        self.client
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

pub async fn answer(response: reqwest::Response) -> (u16, String, Value) {
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
pub struct Sse {
    pub response: reqwest::Response,
    pub buffer: String,
    pub comments: usize,
}

impl Sse {
    /// The next `event: job`, with its `id:`.
    pub async fn next(&mut self) -> (String, Event) {
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

    pub async fn take(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::new();
        for _ in 0..n {
            events.push(self.next().await.1);
        }
        events
    }
}
