//! Webhook delivery end to end: an embedded store, the job service moving jobs, the deliverer,
//! and real HTTP receivers on loopback that verify every signature, count, and fail on purpose
//! (500s, then answers that come too late) before they recover. No timed assertions: every wait
//! has a generous deadline.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use omni_store::{Event, JobId, JobState, Store, Webhook};
use omni_store_embedded::{EmbeddedConfig, EmbeddedStore};
use omni_webhooks::{Deliverer, WebhooksConfig};

/// A receiver on 127.0.0.1: it answers 500 to the first `fail` requests, lets the next `hang`
/// ones wait past the deliverer's timeout, then answers 200 (after `delay`).
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

struct ReceiverState {
    secret: String,
    fail: AtomicUsize,
    hang: AtomicUsize,
    delay: Duration,
    requests: AtomicUsize,
    bad: Mutex<Vec<String>>,
    /// The events answered 200, in the order they came.
    acked: Mutex<Vec<Event>>,
}

impl Receiver {
    async fn start(secret: &str, fail: usize, hang: usize, delay: Duration) -> Self {
        let state = Arc::new(ReceiverState {
            secret: secret.to_owned(),
            fail: AtomicUsize::new(fail),
            hang: AtomicUsize::new(hang),
            delay,
            requests: AtomicUsize::new(0),
            bad: Mutex::new(Vec::new()),
            acked: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn acked(&self) -> Vec<Event> {
        self.state.acked.lock().unwrap().clone()
    }

    fn unique(&self) -> usize {
        self.acked()
            .iter()
            .map(|e| e.id.clone())
            .collect::<HashSet<_>>()
            .len()
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let event: Event = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(e) => {
            state.bad.lock().unwrap().push(format!("body: {e}"));
            return StatusCode::BAD_REQUEST;
        }
    };
    if !omni_webhooks::verify(state.secret.as_bytes(), &body, &header("x-omni-signature")) {
        state
            .bad
            .lock()
            .unwrap()
            .push(format!("signature of {}", event.id));
        return StatusCode::UNAUTHORIZED;
    }
    if header("content-type") != "application/json"
        || header("x-omni-event-id") != event.id
        || header("x-omni-event") != event.name()
    {
        state
            .bad
            .lock()
            .unwrap()
            .push(format!("headers of {}", event.id));
        return StatusCode::BAD_REQUEST;
    }
    let take = |counter: &AtomicUsize| {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    };
    if take(&state.fail) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if take(&state.hang) {
        // Far past the deliverer's timeout: it gives up on this one and tries again.
        tokio::time::sleep(Duration::from_secs(5)).await;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    tokio::time::sleep(state.delay).await;
    state.acked.lock().unwrap().push(event);
    StatusCode::NO_CONTENT
}

fn config() -> WebhooksConfig {
    WebhooksConfig {
        timeout: Duration::from_millis(500),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(300),
        lease_ttl: Duration::from_secs(3),
        poll_interval: Duration::from_millis(100),
        window: 64,
        concurrency: 8,
        // The receivers are on loopback, which deliveries may not reach by default.
        allow_addresses: vec!["127.0.0.1/32".parse().unwrap()],
        ..WebhooksConfig::default()
    }
}

fn webhook(url: String, events: &[&str], secret: &str, domain: Option<&str>) -> Webhook {
    Webhook {
        id: uuid::Uuid::new_v4(),
        domain: domain.map(str::to_owned),
        url,
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        secret: secret.to_owned(),
        created_at: omni_store::now(),
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    omni_test_support::eventually(what, || std::future::ready(done().then_some(()))).await;
}

/// Makes a job in the store (past the job service, which would ask a plugin) and moves it
/// along `path` through the job service.
async fn run_job(
    store: &Arc<dyn Store>,
    jobs: &omni_jobs::JobService,
    domain: &str,
    path: &[JobState],
) -> JobId {
    let job = omni_test_support::pending_job("ci", "rpm", domain);
    store.create_job(&job, None).await.unwrap();
    for to in path {
        jobs.transition(job.id, *to, None).await.unwrap();
    }
    job.id
}

const DONE: [JobState; 3] = [JobState::Queued, JobState::Running, JobState::Succeeded];

/// Each job's events, in the order they first arrived, must be its history's order.
fn assert_in_order_per_job(acked: &[Event], expected: &HashMap<JobId, Vec<JobState>>) {
    let mut seen = HashSet::new();
    let mut per_job: HashMap<JobId, Vec<JobState>> = HashMap::new();
    for event in acked {
        if seen.insert(event.id.clone()) {
            per_job.entry(event.job_id).or_default().push(event.to);
        }
    }
    assert_eq!(&per_job, expected);
}

fn open(dir: &Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(dir, EmbeddedConfig::default()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_signed_and_in_order_per_job_through_failures_and_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (_plugins, jobs) = omni_test_support::job_service_over(store.clone());
    let all = Receiver::start("s3cret-all", 40, 3, Duration::ZERO).await;
    let succeeded = Receiver::start("s3cret-ok", 0, 0, Duration::ZERO).await;
    let hook_all = webhook(all.url(), &["*"], "s3cret-all", None);
    let hook_ok = webhook(
        succeeded.url(),
        &["job.succeeded"],
        "s3cret-ok",
        Some("default"),
    );
    webhooks().register(&jobs, &hook_all).await.unwrap();
    webhooks().register(&jobs, &hook_ok).await.unwrap();
    let deliverer = Deliverer::new(jobs.clone(), config(), &webhooks()).unwrap();
    let _running = deliverer.spawn();

    let mut expected: HashMap<JobId, Vec<JobState>> = HashMap::new();
    for _ in 0..12 {
        let id = run_job(&store, &jobs, "default", &DONE).await;
        expected.insert(
            id,
            vec![
                JobState::Pending,
                JobState::Queued,
                JobState::Running,
                JobState::Succeeded,
            ],
        );
    }
    let other = run_job(&store, &jobs, "other", &[JobState::Cancelled]).await;
    expected.insert(other, vec![JobState::Pending, JobState::Cancelled]);

    wait_for("every event at the receiver of all events", || {
        all.unique() == 12 * 4 + 2
    })
    .await;
    wait_for("every success at the receiver of successes", || {
        succeeded.unique() == 12
    })
    .await;
    assert!(all.state.bad.lock().unwrap().is_empty());
    assert!(succeeded.state.bad.lock().unwrap().is_empty());
    assert_in_order_per_job(&all.acked(), &expected);
    let successes: HashMap<JobId, Vec<JobState>> = expected
        .iter()
        .filter(|(_, path)| path.contains(&JobState::Succeeded))
        .map(|(id, _)| (*id, vec![JobState::Succeeded]))
        .collect();
    assert_in_order_per_job(&succeeded.acked(), &successes);
    // The failures happened (40 answers of 500 and 3 that came too late) and were retried.
    assert!(all.state.requests.load(Ordering::SeqCst) >= 12 * 4 + 2 + 43);
    assert_eq!(succeeded.state.requests.load(Ordering::SeqCst), 12);

    // The delivery state shows the last failure, the last success, and nothing failing now.
    let mut state = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let delivery = store.get_delivery(hook_all.id).await.unwrap().unwrap();
        if delivery.delivered >= 12 * 4 + 2 && delivery.attempts == 0 {
            state = Some(delivery);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state = state.expect("the delivery state catches up");
    let error = state.last_error.expect("the last error is kept");
    assert!(
        error.contains("500") || error.contains("no answer within"),
        "{error}"
    );
    assert!(state.last_error_at.is_some() && state.last_success_at.is_some());
    assert!(deliverer.is_leading());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Slow answers, so that deliveries are in flight when the deliverer stops.
    let receiver = Receiver::start("restart", 0, 0, Duration::from_millis(20)).await;
    let hook = webhook(receiver.url(), &["*"], "restart", None);
    let mut expected: HashMap<JobId, Vec<JobState>> = HashMap::new();
    let path = || {
        vec![
            JobState::Pending,
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
        ]
    };
    {
        let store = open(dir.path());
        let (_plugins, jobs) = omni_test_support::job_service_over(store.clone());
        webhooks().register(&jobs, &hook).await.unwrap();
        let deliverer = Deliverer::new(jobs.clone(), config(), &webhooks()).unwrap();
        let running = deliverer.spawn();
        for _ in 0..30 {
            expected.insert(run_job(&store, &jobs, "default", &DONE).await, path());
        }
        wait_for("some deliveries", || receiver.unique() >= 20).await;
        drop(running);
        drop(deliverer);
        // Changes while nobody delivers: recorded, delivered after the restart.
        for _ in 0..5 {
            expected.insert(run_job(&store, &jobs, "default", &DONE).await, path());
        }
    }
    let before = receiver.unique();
    assert!(before < 35 * 4, "everything arrived before the restart");
    // The file is free once the old store's last task has let go of it.
    let store = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match EmbeddedStore::open(dir.path(), EmbeddedConfig::default()) {
                Ok(store) => break Arc::new(store) as Arc<dyn Store>,
                Err(error) => {
                    assert!(tokio::time::Instant::now() < deadline, "{error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    let (_plugins, jobs) = omni_test_support::job_service_over(store.clone());
    let deliverer = Deliverer::new(jobs.clone(), config(), &webhooks()).unwrap();
    let _running = deliverer.spawn();
    wait_for("every event after the restart", || {
        receiver.unique() == 35 * 4
    })
    .await;
    assert!(receiver.state.bad.lock().unwrap().is_empty());
    assert_in_order_per_job(&receiver.acked(), &expected);
    // At least once: what was in flight may come twice, but at most one window's worth.
    let acked = receiver.acked().len();
    assert!(acked - 35 * 4 <= config().window, "{acked} answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_delivers_and_a_deleted_webhook_gets_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (_plugins, jobs) = omni_test_support::job_service_over(store.clone());
    let receiver = Receiver::start("two", 0, 0, Duration::ZERO).await;
    let hook = webhook(
        receiver.url(),
        &["job.succeeded", "job.failed"],
        "two",
        None,
    );
    webhooks().register(&jobs, &hook).await.unwrap();
    // Two deliverers over one store, as two replicas would be.
    let a = Deliverer::new(jobs.clone(), config(), &webhooks()).unwrap();
    let b = Deliverer::new(jobs.clone(), config(), &webhooks()).unwrap();
    let _a = a.spawn();
    let _b = b.spawn();
    for _ in 0..10 {
        run_job(&store, &jobs, "default", &DONE).await;
    }
    wait_for("ten successes", || receiver.unique() == 10).await;
    assert_eq!(receiver.acked().len(), 10, "each event once");
    assert!(a.is_leading() != b.is_leading(), "one replica delivers");
    assert!(store.delete_webhook(hook.id).await.unwrap());
    // A webhook registered after the delete is found by the same read of the webhook list that
    // stops the deleted one's delivery: once it has an event, the deleted one gets no more.
    let witness = Receiver::start("three", 0, 0, Duration::ZERO).await;
    let seen = webhook(witness.url(), &["job.succeeded"], "three", None);
    webhooks().register(&jobs, &seen).await.unwrap();
    let first = run_job(&store, &jobs, "default", &DONE).await;
    wait_for("the new webhook's first event", || {
        witness.acked().iter().any(|e| e.job_id == first)
    })
    .await;
    let last = run_job(&store, &jobs, "default", &DONE).await;
    wait_for("the new webhook's second event", || {
        witness.acked().iter().any(|e| e.job_id == last)
    })
    .await;
    assert!(
        receiver.acked().iter().all(|e| e.job_id != last),
        "the deleted webhook got an event of a job run after its delete was seen"
    );
}

/// Registration with the test key (the same in every call).
fn webhooks() -> omni_webhooks::Webhooks {
    omni_webhooks::Webhooks::new(
        &WebhooksConfig::default(),
        omni_webhooks::Keyring::new(vec![[7; 32]]).unwrap(),
    )
}
