//! The cases of [`WebhookStore`](crate::WebhookStore): webhooks by domain, the cap per domain
//! under racing creates and deletes, the compare-and-set of a secret, and the delivery state.

use std::sync::Arc;

use chrono::TimeDelta;
use futures::future::join_all;
use uuid::Uuid;

use super::unique_service;
use crate::model::*;
use crate::{Store, now};

/// No cap: the cases that are not about it.
const UNCAPPED: usize = usize::MAX;

fn hook(domain: Option<&str>) -> Webhook {
    Webhook {
        id: Uuid::new_v4(),
        domain: domain.map(str::to_owned),
        url: "http://127.0.0.1:9/hook".into(),
        events: vec!["job.succeeded".into(), "job.failed".into()],
        secret: "s3cret".into(),
        created_at: now(),
    }
}

/// Webhooks are listed all or by domain, and deleted once.
pub async fn webhooks_are_stored_by_domain(store: Arc<dyn Store>) {
    let domain = unique_service();
    let mine = hook(Some(&domain));
    let global = hook(None);
    assert!(store.create_webhook(&mine, UNCAPPED).await.unwrap());
    assert!(store.create_webhook(&global, UNCAPPED).await.unwrap());
    // Created again (a retry): still one, unchanged.
    let again = Webhook {
        url: "https://example.com/other".into(),
        ..mine.clone()
    };
    assert!(store.create_webhook(&again, UNCAPPED).await.unwrap());
    assert_eq!(
        store.list_webhooks(Some(&domain)).await.unwrap(),
        vec![mine.clone()]
    );
    let all = store.list_webhooks(None).await.unwrap();
    assert!(all.contains(&mine) && all.contains(&global));
    // Webhooks for every domain have a cap of their own (none at all here).
    let refused = hook(None);
    assert!(!store.create_webhook(&refused, 0).await.unwrap());
    assert!(
        !store
            .list_webhooks(None)
            .await
            .unwrap()
            .iter()
            .any(|h| h.id == refused.id)
    );
    assert!(store.delete_webhook(mine.id).await.unwrap());
    assert!(!store.delete_webhook(mine.id).await.unwrap());
    assert!(store.list_webhooks(Some(&domain)).await.unwrap().is_empty());
    assert!(store.delete_webhook(global.id).await.unwrap());
    assert!(
        !store
            .list_webhooks(None)
            .await
            .unwrap()
            .iter()
            .any(|h| h.id == global.id)
    );
}

/// Of many creates of one domain at once, exactly the cap's number are stored.
pub async fn racing_creates_of_one_domain_stop_at_the_cap(store: Arc<dyn Store>) {
    const CAP: usize = 5;
    let domain = unique_service();
    let racers = (0..20).map(|_| {
        let store = store.clone();
        let hook = hook(Some(&domain));
        tokio::spawn(async move { store.create_webhook(&hook, CAP).await })
    });
    let created = join_all(racers)
        .await
        .into_iter()
        .filter(|result| *result.as_ref().unwrap().as_ref().unwrap())
        .count();
    assert_eq!(created, CAP);
    assert_eq!(store.list_webhooks(Some(&domain)).await.unwrap().len(), CAP);
    let listed = store.list_webhooks(None).await.unwrap();
    let stored = listed
        .iter()
        .filter(|h| h.domain.as_deref() == Some(domain.as_str()))
        .count();
    assert_eq!(stored, CAP);
    // Another domain has places of its own.
    assert!(
        store
            .create_webhook(&hook(Some(&unique_service())), CAP)
            .await
            .unwrap()
    );
}

/// A delete frees one place, once, even when several replicas delete the webhook at once.
pub async fn deletes_free_places_exactly(store: Arc<dyn Store>) {
    const CAP: usize = 2;
    let domain = unique_service();
    let [a, b, c, d, e] = std::array::from_fn(|_| hook(Some(&domain)));
    assert!(store.create_webhook(&a, CAP).await.unwrap());
    assert!(store.create_webhook(&b, CAP).await.unwrap());
    assert!(!store.create_webhook(&c, CAP).await.unwrap());
    let deletes = (0..8).map(|_| {
        let (store, id) = (store.clone(), a.id);
        tokio::spawn(async move { store.delete_webhook(id).await })
    });
    let deleted = join_all(deletes)
        .await
        .into_iter()
        .filter(|result| *result.as_ref().unwrap().as_ref().unwrap())
        .count();
    assert_eq!(deleted, 1, "one delete finds the webhook");
    assert!(store.create_webhook(&c, CAP).await.unwrap());
    assert!(!store.create_webhook(&d, CAP).await.unwrap());
    assert!(!store.delete_webhook(a.id).await.unwrap());
    assert!(!store.create_webhook(&d, CAP).await.unwrap());
    assert!(store.delete_webhook(b.id).await.unwrap());
    assert!(store.delete_webhook(c.id).await.unwrap());
    assert!(store.create_webhook(&d, CAP).await.unwrap());
    assert!(store.create_webhook(&e, CAP).await.unwrap());
    let mut listed: Vec<Uuid> = store
        .list_webhooks(Some(&domain))
        .await
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    listed.sort();
    let mut expected = vec![d.id, e.id];
    expected.sort();
    assert_eq!(listed, expected);
}

/// A secret is replaced only while it is the one read: a stale one changes nothing, and of
/// two replacements racing from the same secret one wins.
pub async fn a_secret_is_replaced_only_while_it_is_the_one_read(store: Arc<dyn Store>) {
    let domain = unique_service();
    let hook = hook(Some(&domain));
    assert!(store.create_webhook(&hook, UNCAPPED).await.unwrap());
    let secret_of = |hooks: Vec<Webhook>| {
        hooks
            .into_iter()
            .find(|h| h.id == hook.id)
            .map(|h| h.secret)
    };
    assert!(
        store
            .replace_secret(hook.id, &hook.secret, "second")
            .await
            .unwrap()
    );
    assert!(
        !store
            .replace_secret(hook.id, &hook.secret, "stale")
            .await
            .unwrap()
    );
    for listing in [None, Some(domain.as_str())] {
        let hooks = store.list_webhooks(listing).await.unwrap();
        assert_eq!(secret_of(hooks).as_deref(), Some("second"), "{listing:?}");
    }
    let racers = ["third", "fourth"].map(|secret| {
        let store = store.clone();
        tokio::spawn(async move { store.replace_secret(hook.id, "second", secret).await })
    });
    let won = join_all(racers)
        .await
        .into_iter()
        .filter(|result| *result.as_ref().unwrap().as_ref().unwrap())
        .count();
    assert_eq!(won, 1);
    let all = secret_of(store.list_webhooks(None).await.unwrap());
    let by_domain = secret_of(store.list_webhooks(Some(&domain)).await.unwrap());
    assert!(
        matches!(all.as_deref(), Some("third" | "fourth")),
        "{all:?}"
    );
    assert_eq!(all, by_domain);
    assert!(store.delete_webhook(hook.id).await.unwrap());
}

/// Replacing the secret of a webhook deleted since it was read does not bring it back.
pub async fn a_secret_replaced_after_a_delete_stays_deleted(store: Arc<dyn Store>) {
    let domain = unique_service();
    let hook = hook(Some(&domain));
    assert!(store.create_webhook(&hook, 1).await.unwrap());
    assert!(store.delete_webhook(hook.id).await.unwrap());
    assert!(
        !store
            .replace_secret(hook.id, &hook.secret, "resealed")
            .await
            .unwrap()
    );
    assert!(
        !store
            .list_webhooks(None)
            .await
            .unwrap()
            .iter()
            .any(|h| h.id == hook.id)
    );
    assert!(store.list_webhooks(Some(&domain)).await.unwrap().is_empty());
    assert!(!store.delete_webhook(hook.id).await.unwrap());
    // Its place is still free.
    assert!(
        store
            .create_webhook(&self::hook(Some(&domain)), 1)
            .await
            .unwrap()
    );
}

/// A webhook's delivery state reads back as written, and is deleted with the webhook.
pub async fn delivery_state_round_trips_and_goes_with_its_webhook(store: Arc<dyn Store>) {
    let hook = Webhook {
        url: "https://example.com/hook".into(),
        events: vec!["*".into()],
        ..hook(Some(&unique_service()))
    };
    assert!(store.create_webhook(&hook, UNCAPPED).await.unwrap());
    assert_eq!(store.get_delivery(hook.id).await.unwrap(), None);
    let head = store.events_head().await.unwrap();
    let mut delivery = Delivery::starting_at(hook.id, head.clone());
    store.put_delivery(&delivery).await.unwrap();
    assert_eq!(
        store.get_delivery(hook.id).await.unwrap(),
        Some(delivery.clone())
    );
    delivery.delivered = 41;
    delivery.attempts = 3;
    delivery.last_error = Some("answered 500".into());
    delivery.last_error_at = Some(now());
    delivery.last_success_at = Some(now() - TimeDelta::seconds(5));
    store.put_delivery(&delivery).await.unwrap();
    assert_eq!(store.get_delivery(hook.id).await.unwrap(), Some(delivery));
    // The stored position is one the stream takes.
    store
        .read_events(Some(&head), &EventFilter::default(), 1)
        .await
        .unwrap();
    assert!(store.delete_webhook(hook.id).await.unwrap());
    assert_eq!(store.get_delivery(hook.id).await.unwrap(), None);
    // The state of a webhook that was never stored (its registration was refused) goes too.
    let refused = Delivery::starting_at(Uuid::new_v4(), head);
    store.put_delivery(&refused).await.unwrap();
    assert!(!store.delete_webhook(refused.webhook_id).await.unwrap());
    assert_eq!(store.get_delivery(refused.webhook_id).await.unwrap(), None);
}
