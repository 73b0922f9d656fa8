//! Webhooks an older server wrote (before migration 0003: no count in `webhooks_by_domain`, the
//! webhooks for every domain in `webhooks` only) are listed, counted against the cap, deleted
//! and resealed by this one. In a keyspace of its own (dropped at the end), since the partition
//! of the webhooks for every domain is one per keyspace.

use std::time::Duration;

use omni_store::{Webhook, WebhookStore};
use omni_store_cassandra::CassandraStore;
use uuid::Uuid;

mod common;

fn hook(domain: Option<&str>) -> Webhook {
    Webhook {
        id: Uuid::new_v4(),
        domain: domain.map(str::to_owned),
        url: "https://example.com/hook".into(),
        events: vec!["*".into()],
        secret: "old-secret".into(),
        created_at: omni_store::now(),
    }
}

/// Writes `hook` as the older server's `put_webhook` did: plain inserts, a copy by domain only
/// for a webhook with a domain, no count.
async fn write_as_older_server(store: &CassandraStore, hook: &Webhook) {
    let session = store.session();
    session
        .query_unpaged(
            "INSERT INTO webhooks (id, domain, url, events, secret, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
            (
                hook.id,
                hook.domain.as_deref(),
                &hook.url,
                &hook.events,
                &hook.secret,
                hook.created_at,
            ),
        )
        .await
        .unwrap();
    if let Some(domain) = &hook.domain {
        session
            .query_unpaged(
                "INSERT INTO webhooks_by_domain (domain, id, url, events, secret, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                (
                    domain,
                    hook.id,
                    &hook.url,
                    &hook.events,
                    &hook.secret,
                    hook.created_at,
                ),
            )
            .await
            .unwrap();
    }
}

fn ids(hooks: &[Webhook], domain: Option<&str>) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = hooks
        .iter()
        .filter(|h| h.domain.as_deref() == domain)
        .map(|h| h.id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_of_an_older_server_are_counted_deleted_and_resealed() {
    common::share_the_node();
    let suffix = &Uuid::new_v4().simple().to_string()[..8];
    let config = common::config(&format!("omni_older_hooks_{suffix}"));
    let store = CassandraStore::connect(&config).await.unwrap();
    let old_a = hook(Some("ci"));
    let old_b = hook(Some("ci"));
    let old_global = hook(None);
    let old_global_2 = hook(None);
    for old in [&old_a, &old_b, &old_global, &old_global_2] {
        write_as_older_server(&store, old).await;
    }
    let listed = store.list_webhooks(None).await.unwrap();
    assert_eq!(
        ids(&listed, None),
        ids(&[old_global.clone(), old_global_2.clone()], None)
    );
    assert_eq!(store.list_webhooks(Some("ci")).await.unwrap().len(), 2);

    // The older rows count: two of three places are taken, in the domain and for every domain.
    let new = hook(Some("ci"));
    assert!(!store.create_webhook(&hook(Some("ci")), 2).await.unwrap());
    assert!(store.create_webhook(&new, 3).await.unwrap());
    assert!(!store.create_webhook(&hook(Some("ci")), 3).await.unwrap());
    let new_global = hook(None);
    assert!(!store.create_webhook(&hook(None), 2).await.unwrap());
    assert!(store.create_webhook(&new_global, 3).await.unwrap());
    assert!(!store.create_webhook(&hook(None), 3).await.unwrap());
    let listed = store.list_webhooks(None).await.unwrap();
    let mut globals = vec![old_global.id, old_global_2.id, new_global.id];
    globals.sort();
    assert_eq!(
        ids(&listed, None),
        globals,
        "each webhook for every domain once"
    );

    // Deleting an older webhook frees its place, once.
    assert!(store.delete_webhook(old_a.id).await.unwrap());
    assert!(!store.delete_webhook(old_a.id).await.unwrap());
    assert!(store.create_webhook(&hook(Some("ci")), 3).await.unwrap());
    assert!(!store.create_webhook(&hook(Some("ci")), 3).await.unwrap());
    assert!(store.delete_webhook(old_global.id).await.unwrap());
    assert!(store.create_webhook(&hook(None), 3).await.unwrap());
    assert!(!store.create_webhook(&hook(None), 3).await.unwrap());

    // An older webhook's secret is replaced in both tables.
    assert!(
        store
            .replace_secret(old_b.id, "old-secret", "sealed")
            .await
            .unwrap()
    );
    for listing in [None, Some("ci")] {
        let hooks = store.list_webhooks(listing).await.unwrap();
        let secret = hooks.iter().find(|h| h.id == old_b.id).map(|h| &h.secret);
        assert_eq!(secret.map(String::as_str), Some("sealed"), "{listing:?}");
    }

    let mut drop =
        scylla::statement::Statement::new(format!("DROP KEYSPACE IF EXISTS {}", config.keyspace));
    drop.set_request_timeout(Some(Duration::from_secs(60)));
    store.session().query_unpaged(drop, ()).await.unwrap();
}
