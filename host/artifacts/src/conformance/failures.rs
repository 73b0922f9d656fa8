//! Puts that must store nothing, and racing puts.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use super::{LARGE, assert_same, body, data, keys, put, read, unique_prefix};
use crate::{ArtifactError, ArtifactStore, ByteStream, PutLimits, Sha256};

/// A put whose bytes do not hash to the expected sha256 fails with both digests and stores
/// nothing: no new object, and an old one stays as it was (small and multipart-sized).
pub async fn a_wrong_sha256_stores_nothing(store: Arc<dyn ArtifactStore>) {
    let p = unique_prefix();
    for len in [0, 100, LARGE] {
        let fresh = format!("{p}/fresh-{len}");
        let kept = format!("{p}/kept-{len}");
        let old = data(300, 9);
        put(&store, &kept, &old).await;
        let bytes = data(len, 1);
        let wrong = Sha256::of(b"something else");
        for key in [&fresh, &kept] {
            let limits = PutLimits {
                sha256: Some(wrong),
                max_size: None,
            };
            match store.put(key, body(&bytes, 100_000), limits).await {
                Err(ArtifactError::Sha256Mismatch { expected, actual }) => {
                    assert_eq!((expected, actual), (wrong, Sha256::of(&bytes)), "{key}");
                }
                other => panic!("{key}: {other:?}"),
            }
        }
        assert!(
            matches!(
                store.head(&fresh).await,
                Err(ArtifactError::NotFound { .. })
            ),
            "{fresh}"
        );
        assert_same(&read(&store, &kept).await.unwrap(), &old, &kept);
        // The right hash goes in.
        let right = PutLimits {
            sha256: Some(Sha256::of(&bytes)),
            max_size: None,
        };
        store
            .put(&fresh, body(&bytes, 100_000), right)
            .await
            .unwrap();
        assert_same(&read(&store, &fresh).await.unwrap(), &bytes, &fresh);
    }
    assert_eq!(keys(&store, &p).await.len(), 6);
}

/// A body one byte over `max_size` fails with `TooLarge` and stores nothing, old objects stay;
/// exactly `max_size` bytes go in.
pub async fn the_size_cap_stores_nothing(store: Arc<dyn ArtifactStore>) {
    let p = unique_prefix();
    for len in [10, LARGE] {
        let key = format!("{p}/capped-{len}");
        let bytes = data(len + 1, 5);
        let cap = PutLimits {
            sha256: None,
            max_size: Some(len as u64),
        };
        match store.put(&key, body(&bytes, 65_536), cap).await {
            Err(ArtifactError::TooLarge { limit }) => assert_eq!(limit, len as u64),
            other => panic!("{key}: {other:?}"),
        }
        assert!(
            matches!(store.head(&key).await, Err(ArtifactError::NotFound { .. })),
            "{key}"
        );
        let old = data(7, 7);
        put(&store, &key, &old).await;
        assert!(matches!(
            store.put(&key, body(&bytes, 65_536), cap).await,
            Err(ArtifactError::TooLarge { .. })
        ));
        assert_same(&read(&store, &key).await.unwrap(), &old, &key);
        let exact = bytes.slice(..len);
        let stored = store.put(&key, body(&exact, 65_536), cap).await.unwrap();
        assert_eq!(stored.size, len as u64);
        assert_same(&read(&store, &key).await.unwrap(), &exact, &key);
    }
    assert_eq!(keys(&store, &p).await.len(), 2);
}

/// A body that fails part way (a client gone) fails the put with `Body` and stores nothing,
/// before and after the first part.
pub async fn a_failing_body_stores_nothing(store: Arc<dyn ArtifactStore>) {
    let p = unique_prefix();
    for at in [1000, LARGE - 1000] {
        let key = format!("{p}/broken-{at}");
        let bytes = data(at, 2);
        let failing: ByteStream = body(&bytes, 65_536)
            .chain(futures::stream::iter([Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the client went away",
            ))]))
            .boxed();
        match store.put(&key, failing, PutLimits::default()).await {
            Err(ArtifactError::Body(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("{key}: {other:?}"),
        }
        assert!(
            matches!(store.head(&key).await, Err(ArtifactError::NotFound { .. })),
            "{key}"
        );
    }
    assert!(keys(&store, &p).await.is_empty());
}

/// Four puts of one key at once, each of other multipart-sized bytes, while a reader reads it
/// in a loop: every read and the object left are one put's bytes whole, and a recorded sha256
/// is that put's.
pub async fn concurrent_puts_leave_one_whole_object(store: Arc<dyn ArtifactStore>) {
    let p = unique_prefix();
    let key = format!("{p}/contended.iso");
    let versions: Vec<Bytes> = (0..4)
        .map(|i| data(LARGE + i * 1000, 100 + i as u64))
        .collect();
    let first = data(1000, 1);
    put(&store, &key, &first).await;
    let mut allowed = versions.clone();
    allowed.push(first);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, key, allowed, done) = (
            Arc::clone(&store),
            key.clone(),
            allowed.clone(),
            Arc::clone(&done),
        );
        tokio::spawn(async move {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                let Ok(download) = store.get(&key, None).await else {
                    panic!("the object vanished during the puts");
                };
                // A replaced object may fail mid-stream (S3 checks the ETag when resuming);
                // what a read does return whole must be one version.
                let chunks: Result<Vec<Bytes>, _> =
                    futures::TryStreamExt::try_collect(download.stream).await;
                if let Ok(chunks) = chunks {
                    let got: Vec<u8> = chunks.concat();
                    assert!(
                        allowed.iter().any(|v| v[..] == got[..]),
                        "a read saw a mix of versions ({} bytes)",
                        got.len()
                    );
                    reads += 1;
                }
            }
            reads
        })
    };
    let puts: Vec<_> = versions
        .iter()
        .map(|bytes| {
            let (store, key, bytes) = (Arc::clone(&store), key.clone(), bytes.clone());
            tokio::spawn(async move {
                store
                    .put(&key, body(&bytes, 262_144), PutLimits::default())
                    .await
            })
        })
        .collect();
    for put in puts {
        put.await.expect("put task").expect("put");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.await.expect("reader") > 0);
    let got = read(&store, &key).await.unwrap();
    let winner = versions
        .iter()
        .find(|v| v[..] == got[..])
        .expect("the object is one put's bytes whole");
    if let Some(sha256) = store.head(&key).await.unwrap().sha256 {
        assert_eq!(sha256, Sha256::of(winner));
    }
    assert_eq!(keys(&store, &p).await, vec![key]);
}
