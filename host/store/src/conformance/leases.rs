//! The case of [`LeaseStore`](crate::LeaseStore): one holder, renewals, races, lapses.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use super::unique_service;
use crate::Store;

/// One holder at a time; a lapsed lease can be taken; only the holder releases.
pub async fn leases_have_one_holder(store: Arc<dyn Store>) {
    let name = format!("scheduler-{}", unique_service());
    let ttl = Duration::from_secs(30);
    let a = store.acquire_lease(&name, "replica-a", ttl).await.unwrap();
    let a = a.expect("a free lease is taken");
    assert_eq!(a.holder, "replica-a");
    assert_eq!(
        store.acquire_lease(&name, "replica-b", ttl).await.unwrap(),
        None
    );
    let renewed = store
        .acquire_lease(&name, "replica-a", ttl)
        .await
        .unwrap()
        .expect("the holder renews");
    assert!(renewed.expires_at >= a.expires_at);
    assert!(!store.release_lease(&name, "replica-b").await.unwrap());
    assert!(store.release_lease(&name, "replica-a").await.unwrap());
    assert!(
        store
            .acquire_lease(&name, "replica-b", ttl)
            .await
            .unwrap()
            .is_some()
    );

    // Racing for a free lease: one winner.
    let race = format!("race-{}", unique_service());
    let racers = (0..8).map(|i| {
        let store = store.clone();
        let race = race.clone();
        tokio::spawn(async move {
            store
                .acquire_lease(&race, &format!("replica-{i}"), ttl)
                .await
        })
    });
    let won = join_all(racers)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().as_ref().unwrap().is_some())
        .count();
    assert_eq!(won, 1);

    // A lapsed lease goes to the next asker.
    let short = format!("short-{}", unique_service());
    store
        .acquire_lease(&short, "replica-a", Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let taken = store
        .acquire_lease(&short, "replica-b", ttl)
        .await
        .unwrap()
        .expect("a lapsed lease is free");
    assert_eq!(taken.holder, "replica-b");
}
