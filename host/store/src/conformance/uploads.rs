//! The cases of [`UploadIndex`](crate::UploadIndex): one record per domain and sha256, whose
//! expiry only grows, kept for a grace after it expires, then forgotten.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::unique_service;
use crate::model::*;
use crate::{Store, UPLOAD_GRACE, now};

/// The sha256s of `domain`'s kept uploads, as listed.
async fn listed(store: &Arc<dyn Store>, domain: &str) -> Vec<String> {
    store
        .list_uploads(domain)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.sha256)
        .collect()
}

fn upload(domain: &str, byte: u8, expires_at: DateTime<Utc>) -> Upload {
    Upload {
        domain: domain.to_owned(),
        sha256: format!("{byte:02x}").repeat(32),
        size: 1000 + u64::from(byte),
        // Stores keep milliseconds.
        created_at: chrono::SubsecRound::trunc_subsecs(now(), 3),
        expires_at: chrono::SubsecRound::trunc_subsecs(expires_at, 3),
    }
}

/// An upload is read back by domain and sha256 and listed by its domain only; written again,
/// its record keeps the later expiry and the first creation, in either order.
pub async fn uploads_are_kept_by_domain_with_the_later_expiry(store: Arc<dyn Store>) {
    let domain = unique_service();
    let other = unique_service();
    let day = now() + TimeDelta::days(1);
    let week = now() + TimeDelta::days(7);

    let first = upload(&domain, 0xab, day);
    assert_eq!(store.put_upload(&first).await.unwrap(), first);
    assert_eq!(
        store.get_upload(&domain, &first.sha256).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.get_upload(&other, &first.sha256).await.unwrap(), None);
    assert_eq!(
        store.get_upload(&domain, &"00".repeat(32)).await.unwrap(),
        None
    );

    // Kept longer: the later expiry, the first creation.
    let mut longer = first.clone();
    longer.expires_at = chrono::SubsecRound::trunc_subsecs(week, 3);
    longer.created_at = first.created_at + TimeDelta::seconds(5);
    let merged = store.put_upload(&longer).await.unwrap();
    assert_eq!(merged.expires_at, longer.expires_at);
    assert_eq!(merged.created_at, first.created_at);
    // A write with an earlier expiry arriving after it shortens nothing.
    let kept = store.put_upload(&first).await.unwrap();
    assert_eq!(kept.expires_at, longer.expires_at);
    assert_eq!(
        store.get_upload(&domain, &first.sha256).await.unwrap(),
        Some(kept.clone())
    );

    let second = upload(&domain, 0x01, day);
    store.put_upload(&second).await.unwrap();
    store.put_upload(&upload(&other, 0x02, day)).await.unwrap();
    assert_eq!(
        listed(&store, &domain).await,
        vec![second.sha256.clone(), first.sha256.clone()]
    );
}

/// A record that expired is still read for [`UPLOAD_GRACE`]; past it, it is forgotten (by
/// `forget_uploads`, or by the backend itself), while records still kept stay.
pub async fn expired_uploads_are_forgotten_after_the_grace(store: Arc<dyn Store>) {
    let domain = unique_service();
    let grace = TimeDelta::from_std(UPLOAD_GRACE).unwrap();
    // Expired a minute ago: within the grace, read with its expiry in the past.
    let recent = upload(&domain, 0x10, now() - TimeDelta::minutes(1));
    store.put_upload(&recent).await.unwrap();
    let read = store.get_upload(&domain, &recent.sha256).await.unwrap();
    assert_eq!(read, Some(recent.clone()));
    // Expired past the grace: never read, whether or not the backend kept the row.
    let old = upload(&domain, 0x11, now() - grace - TimeDelta::minutes(1));
    store.put_upload(&old).await.unwrap();
    assert_eq!(store.get_upload(&domain, &old.sha256).await.unwrap(), None);
    let alive = upload(&domain, 0x12, now() + TimeDelta::days(1));
    store.put_upload(&alive).await.unwrap();

    store.forget_uploads(&domain, now()).await.unwrap();
    assert_eq!(store.get_upload(&domain, &old.sha256).await.unwrap(), None);
    assert_eq!(
        listed(&store, &domain).await,
        vec![recent.sha256.clone(), alive.sha256.clone()]
    );
    // Later, the one in its grace is forgotten too.
    store
        .forget_uploads(&domain, now() + grace + TimeDelta::minutes(2))
        .await
        .unwrap();
    let later = listed(&store, &domain).await;
    assert!(later.contains(&alive.sha256), "{later:?}");
}
