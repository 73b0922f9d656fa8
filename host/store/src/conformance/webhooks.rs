//! The cases of [`WebhookStore`](crate::WebhookStore): webhooks by domain, and their delivery
//! state.

use std::sync::Arc;

use chrono::TimeDelta;

use super::unique_service;
use crate::model::*;
use crate::{Store, now};

/// Webhooks are listed all or by domain, and deleted once.
pub async fn webhooks_are_stored_by_domain(store: Arc<dyn Store>) {
    let domain = unique_service();
    let hook = |domain: Option<&str>| Webhook {
        id: uuid::Uuid::new_v4(),
        domain: domain.map(str::to_owned),
        url: "http://127.0.0.1:9/hook".into(),
        events: vec!["job.succeeded".into(), "job.failed".into()],
        secret: "s3cret".into(),
        created_at: now(),
    };
    let mine = hook(Some(&domain));
    let global = hook(None);
    store.put_webhook(&mine).await.unwrap();
    store.put_webhook(&global).await.unwrap();
    assert_eq!(
        store.list_webhooks(Some(&domain)).await.unwrap(),
        vec![mine.clone()]
    );
    let all = store.list_webhooks(None).await.unwrap();
    assert!(all.contains(&mine) && all.contains(&global));
    assert!(store.delete_webhook(mine.id).await.unwrap());
    assert!(!store.delete_webhook(mine.id).await.unwrap());
    assert!(store.list_webhooks(Some(&domain)).await.unwrap().is_empty());
    assert!(store.delete_webhook(global.id).await.unwrap());
}

/// A webhook's delivery state reads back as written, and is deleted with the webhook.
pub async fn delivery_state_round_trips_and_goes_with_its_webhook(store: Arc<dyn Store>) {
    let hook = Webhook {
        id: uuid::Uuid::new_v4(),
        domain: None,
        url: "https://example.com/hook".into(),
        events: vec!["*".into()],
        secret: "s3cret".into(),
        created_at: now(),
    };
    store.put_webhook(&hook).await.unwrap();
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
}
