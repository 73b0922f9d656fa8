//! Secrets at rest, end to end: a webhook registered under key A is stored sealed (its secret
//! nowhere in the row); after a restart with keys [B, A] its deliveries are still signed with
//! the original secret; the reseal moves the row to key B; after another restart with only [B]
//! deliveries are still signed right, and a deliverer with only [A] can no longer open it. The
//! receiver is real, on loopback, and checks every signature.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use omni_store::{JobState, Store, Webhook};
use omni_store_embedded::{EmbeddedConfig, EmbeddedStore};
use omni_webhooks::{Deliverer, Keyring, Resealed, Webhooks, WebhooksConfig};

const SECRET: &str = "the-original-secret";
const A: [u8; 32] = [0xa; 32];
const B: [u8; 32] = [0xb; 32];

/// A receiver on 127.0.0.1 that keeps, per request, whether the signature verified with
/// [`SECRET`].
async fn receiver() -> (String, Arc<Mutex<Vec<bool>>>) {
    let verified = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&verified);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let signature = headers
                .get("x-omni-signature")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let good = omni_webhooks::verify(SECRET.as_bytes(), &body, signature);
            seen.lock().unwrap().push(good);
            std::future::ready(if good {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::UNAUTHORIZED
            })
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, verified)
}

fn config() -> WebhooksConfig {
    WebhooksConfig {
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        poll_interval: Duration::from_millis(100),
        allow_addresses: vec!["127.0.0.1/32".parse().unwrap()],
        ..WebhooksConfig::default()
    }
}

fn webhooks(keys: &[[u8; 32]]) -> Webhooks {
    Webhooks::new(&config(), Keyring::new(keys.to_vec()).unwrap())
}

/// The store in `dir`, opened as soon as the previous one has let go of its file.
async fn open(dir: &Path) -> Arc<dyn Store> {
    omni_test_support::eventually("the store to open", || {
        std::future::ready(
            EmbeddedStore::open(dir, EmbeddedConfig::default())
                .ok()
                .map(|store| Arc::new(store) as Arc<dyn Store>),
        )
    })
    .await
}

/// The stored row of the one webhook.
async fn row(store: &Arc<dyn Store>) -> Webhook {
    let mut rows = store.list_webhooks(None).await.unwrap();
    assert_eq!(rows.len(), 1);
    rows.remove(0)
}

/// A "server" over `dir` with `keys`: the reseal of a start, then a deliverer; runs one job and
/// waits until the receiver has one more verified delivery. Returns what the reseal did.
async fn start_and_deliver(
    dir: &Path,
    keys: &[[u8; 32]],
    verified: &Arc<Mutex<Vec<bool>>>,
) -> Resealed {
    let store = open(dir).await;
    let (_plugins, jobs) = omni_test_support::job_service_over(store.clone());
    let webhooks = webhooks(keys);
    let resealed = webhooks.reseal(&jobs).await.unwrap();
    let deliverer = Deliverer::new(jobs.clone(), config(), &webhooks).unwrap();
    let running = deliverer.spawn();
    let before = verified
        .lock()
        .unwrap()
        .iter()
        .filter(|good| **good)
        .count();
    let job = omni_test_support::pending_job("ci", "rpm", "default");
    store.create_job(&job, None).await.unwrap();
    jobs.transition(job.id, JobState::Cancelled, None)
        .await
        .unwrap();
    omni_test_support::eventually("a verified delivery", || {
        let count = verified
            .lock()
            .unwrap()
            .iter()
            .filter(|good| **good)
            .count();
        std::future::ready((count > before).then_some(()))
    })
    .await;
    drop(running);
    resealed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_by_resealing_and_deliveries_stay_signed_with_the_original_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (url, verified) = receiver().await;
    let hook = Webhook {
        id: uuid::Uuid::new_v4(),
        domain: None,
        url,
        events: vec!["*".to_owned()],
        secret: SECRET.to_owned(),
        created_at: omni_store::now(),
    };
    let key_a = webhooks(&[A]).keyring().current_id().to_owned();
    let key_b = webhooks(&[B]).keyring().current_id().to_owned();
    {
        let store = open(dir.path()).await;
        let (_plugins, jobs) = omni_test_support::job_service_over(store.clone());
        webhooks(&[A]).register(&jobs, &hook).await.unwrap();
        let stored = row(&store).await;
        assert!(!stored.secret.contains(SECRET), "{}", stored.secret);
        assert_eq!(Keyring::key_of(&stored.secret), Some(key_a.as_str()));
    }
    // Restarted with B first: A still opens the secret; the start reseals it with B.
    let resealed = start_and_deliver(dir.path(), &[B, A], &verified).await;
    assert_eq!(
        resealed,
        Resealed {
            resealed: 1,
            failed: 0
        }
    );
    {
        let store = open(dir.path()).await;
        let stored = row(&store).await;
        assert_eq!(Keyring::key_of(&stored.secret), Some(key_b.as_str()));
        assert!(!stored.secret.contains(SECRET));
        // A alone no longer opens it.
        assert!(
            Keyring::new(vec![A])
                .unwrap()
                .open(hook.id, &stored.secret)
                .is_err()
        );
    }
    // Restarted with B only: nothing to reseal, deliveries still signed right.
    let resealed = start_and_deliver(dir.path(), &[B], &verified).await;
    assert_eq!(resealed, Resealed::default());
    assert!(
        verified.lock().unwrap().iter().all(|good| *good),
        "a delivery was signed with something else than the original secret"
    );
}
