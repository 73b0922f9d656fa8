//! Where deliveries may go, proved against a real receiver on loopback: by default every way of
//! naming it (the literal address, its IPv4-mapped IPv6 form, `[::1]`, `localhost`) is refused
//! when connecting and the receiver never gets a request, and the webhook's owner reads only a
//! generic error; with `127.0.0.1/32` allowed, the same receiver gets its deliveries, and a
//! closed port shows the generic error, not the connection's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use omni_store::{Delivery, JobState, Store, Webhook};
use omni_store_embedded::{EmbeddedConfig, EmbeddedStore};
use omni_webhooks::{Deliverer, NOT_ALLOWED, UNREACHABLE, WebhooksConfig};

/// A receiver on 127.0.0.1 that counts requests and answers 204.
async fn receiver() -> (SocketAddr, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::ready(axum::http::StatusCode::NO_CONTENT)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, requests)
}

fn config(allow: &[&str]) -> WebhooksConfig {
    WebhooksConfig {
        timeout: Duration::from_secs(5),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        poll_interval: Duration::from_millis(100),
        allow_addresses: allow.iter().map(|range| range.parse().unwrap()).collect(),
        ..WebhooksConfig::default()
    }
}

fn webhook(url: String) -> Webhook {
    Webhook {
        id: uuid::Uuid::new_v4(),
        domain: None,
        url,
        events: vec!["*".to_owned()],
        secret: "s3cret".to_owned(),
        created_at: omni_store::now(),
    }
}

/// Registers a webhook for each of `urls` under `config`, runs a job, and waits until each
/// webhook's delivery state satisfies `done`; returns the states.
async fn deliver(
    urls: Vec<String>,
    config: WebhooksConfig,
    done: impl Fn(&Delivery) -> bool,
) -> Vec<Delivery> {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).unwrap());
    let (_plugins, jobs) = omni_test_support::job_service_over(store.clone());
    let hooks: Vec<Webhook> = urls.into_iter().map(webhook).collect();
    for hook in &hooks {
        webhooks().register(&jobs, hook).await.unwrap();
    }
    let deliverer = Deliverer::new(jobs.clone(), config, &webhooks()).unwrap();
    let _running = deliverer.spawn();
    let job = omni_test_support::pending_job("ci", "rpm", "default");
    store.create_job(&job, None).await.unwrap();
    jobs.transition(job.id, JobState::Cancelled, None)
        .await
        .unwrap();
    let mut states = Vec::new();
    for hook in &hooks {
        let state =
            omni_test_support::eventually(&format!("{}'s delivery state", hook.url), || {
                let store = store.clone();
                let done = &done;
                async move {
                    store
                        .get_delivery(hook.id)
                        .await
                        .unwrap()
                        .filter(|delivery| done(delivery))
                }
            })
            .await;
        states.push(state);
    }
    states
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_name_of_loopback_is_refused_when_connecting_and_the_owner_sees_a_generic_error() {
    let (addr, requests) = receiver().await;
    let port = addr.port();
    let urls = vec![
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
    ];
    let states = deliver(urls.clone(), config(&[]), |d| d.last_error.is_some()).await;
    for (url, state) in urls.iter().zip(&states) {
        assert_eq!(state.last_error.as_deref(), Some(NOT_ALLOWED), "{url}");
        assert_eq!(state.delivered, 0, "{url}");
    }
    // Every webhook has tried (and failed) already: a request that got through would be counted.
    assert_eq!(requests.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_range_is_delivered_to_and_a_closed_port_shows_a_generic_error() {
    let (addr, requests) = receiver().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let urls = vec![
        format!("http://127.0.0.1:{}/hook", addr.port()),
        format!("http://127.0.0.1:{closed}/hook"),
    ];
    let states = deliver(urls, config(&["127.0.0.1/32"]), |d| {
        d.delivered > 0 || d.last_error.is_some()
    })
    .await;
    assert!(states[0].delivered >= 1, "{:?}", states[0]);
    assert!(requests.load(Ordering::SeqCst) >= 1);
    // "Connection refused" would tell the owner the port is closed.
    assert_eq!(states[1].last_error.as_deref(), Some(UNREACHABLE));
}

/// Registration with the test key (the same in every call).
fn webhooks() -> omni_webhooks::Webhooks {
    omni_webhooks::Webhooks::new(
        &WebhooksConfig::default(),
        omni_webhooks::Keyring::new(vec![[7; 32]]).unwrap(),
    )
}
