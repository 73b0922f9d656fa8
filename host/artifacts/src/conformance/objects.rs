//! Round trips, ranges, names, replacing and deleting, listings.

use std::sync::Arc;

use bytes::Bytes;

use super::{LARGE, assert_same, body, data, keys, put, read, read_range, unique_prefix};
use crate::{ArtifactError, ArtifactStore, ByteRange, PutLimits, Sha256};

/// Empty, small and multipart-sized objects come back byte for byte, with their size and
/// sha256 in `head` and the download.
pub async fn round_trip_empty_small_and_large(store: Arc<dyn ArtifactStore>) {
    let p = unique_prefix();
    for (name, len) in [("empty", 0), ("small", 1000), ("large", LARGE)] {
        let key = format!("{p}/{name}");
        let bytes = data(len, len as u64);
        put(&store, &key, &bytes).await;
        assert_same(&read(&store, &key).await.unwrap(), &bytes, &key);
        let info = store.head(&key).await.unwrap();
        assert_eq!((info.key.as_str(), info.size), (key.as_str(), len as u64));
        // Small objects record their hash on every backend; a big one put without an expected
        // hash may have none (S3 sends metadata before the body), but never a wrong one.
        if len < LARGE {
            assert_eq!(
                info.sha256,
                Some(Sha256::of(&bytes)),
                "{key}: recorded sha256"
            );
        } else if let Some(sha256) = info.sha256 {
            assert_eq!(sha256, Sha256::of(&bytes), "{key}: recorded sha256");
        }
        let download = store.get(&key, None).await.unwrap();
        assert_eq!((download.size, download.range), (len as u64, 0..len as u64));
        assert_eq!(download.sha256, info.sha256);
    }
    // A big object put with its expected hash records it.
    let key = format!("{p}/large-checked");
    let bytes = data(LARGE, 7);
    let limits = PutLimits {
        sha256: Some(Sha256::of(&bytes)),
        max_size: Some(LARGE as u64),
    };
    store
        .put(&key, body(&bytes, 1 << 20), limits)
        .await
        .unwrap();
    assert_eq!(
        store.head(&key).await.unwrap().sha256,
        Some(Sha256::of(&bytes))
    );
    assert_same(&read(&store, &key).await.unwrap(), &bytes, &key);
}

/// Ranges as HTTP has them: the start, the middle, the tail, an end past the object's (cut),
/// a suffix longer than the object (all of it); ranges that select nothing are
/// `RangeNotSatisfiable` with the object's size.
pub async fn ranges_start_middle_suffix_and_past_the_end(store: Arc<dyn ArtifactStore>) {
    let p = unique_prefix();
    let key = format!("{p}/ranged");
    let bytes = data(LARGE, 3);
    let len = bytes.len() as u64;
    put(&store, &key, &bytes).await;
    // Across a part boundary of a multipart upload (5 MiB parts).
    let mid = len / 3;
    for (range, expected) in [
        (ByteRange::Bounded { start: 0, end: 10 }, 0..10),
        (
            ByteRange::Bounded {
                start: mid,
                end: mid + 5 * 1024 * 1024 + 17,
            },
            mid..mid + 5 * 1024 * 1024 + 17,
        ),
        (ByteRange::From(len - 5), len - 5..len),
        (ByteRange::Suffix(100), len - 100..len),
        (
            ByteRange::Bounded {
                start: len - 3,
                end: len + 1000,
            },
            len - 3..len,
        ),
        (ByteRange::Suffix(len + 10), 0..len),
    ] {
        let download = store.get(&key, Some(range)).await.unwrap();
        assert_eq!(download.size, len, "{range:?}: size");
        assert_eq!(download.range, expected, "{range:?}: range");
        let got = read_range(&store, &key, Some(range)).await.unwrap();
        let (start, end) = (
            usize::try_from(expected.start).unwrap(),
            usize::try_from(expected.end).unwrap(),
        );
        assert_same(&got, &bytes[start..end], &format!("{range:?}"));
    }
    for range in [
        ByteRange::From(len),
        ByteRange::From(len + 1),
        ByteRange::Bounded {
            start: len,
            end: len + 5,
        },
        ByteRange::Bounded { start: 5, end: 5 },
        ByteRange::Suffix(0),
    ] {
        match store.get(&key, Some(range)).await {
            Err(ArtifactError::RangeNotSatisfiable { range: r, size }) => {
                assert_eq!((r, size), (range, len));
            }
            other => panic!("{range:?}: {other:?}"),
        }
    }
    let empty = format!("{p}/empty");
    put(&store, &empty, &data(0, 0)).await;
    assert!(matches!(
        store.get(&empty, Some(ByteRange::From(0))).await,
        Err(ArtifactError::RangeNotSatisfiable { size: 0, .. })
    ));
}

/// Keys with directories (a repository's `repodata/repomd.xml`) are objects like any other,
/// beside files at every level.
pub async fn names_with_subdirectories(store: Arc<dyn ArtifactStore>) {
    let p = unique_prefix();
    let names = [
        "repodata/repomd.xml",
        "repodata/0a1b-primary.xml.zst",
        "Packages/h/hello-2.12-1.x86_64.rpm",
        "Packages/h/hello world+1 (ünï)&=?#%.rpm",
        "hello-2.12-1.src.rpm",
        ".treeinfo",
        "images/pxeboot/vmlinuz",
    ];
    for (i, name) in names.iter().enumerate() {
        put(&store, &format!("{p}/{name}"), &data(100 + i, i as u64)).await;
    }
    for (i, name) in names.iter().enumerate() {
        let key = format!("{p}/{name}");
        assert_same(
            &read(&store, &key).await.unwrap(),
            &data(100 + i, i as u64),
            &key,
        );
    }
    let mut expected: Vec<String> = names.iter().map(|n| format!("{p}/{n}")).collect();
    expected.sort();
    assert_eq!(keys(&store, &p).await, expected);
    assert_eq!(
        keys(&store, &format!("{p}/repodata/")).await,
        vec![
            format!("{p}/repodata/0a1b-primary.xml.zst"),
            format!("{p}/repodata/repomd.xml")
        ]
    );
}

/// Every call refuses a bad name with `InvalidKey` and stores nothing.
pub async fn bad_names_are_refused_everywhere(store: Arc<dyn ArtifactStore>) {
    let p = unique_prefix();
    let bad = [
        String::new(),
        format!("/{p}/abs"),
        format!("{p}//a"),
        format!("{p}/a/"),
        format!("{p}/../{p}-escape"),
        format!("{p}/./a"),
        format!("{p}/a\0b"),
        format!("{p}/a\\b"),
        format!("{p}/.omni-tmp-x"),
        format!("{p}/{}", "n".repeat(256)),
    ];
    for key in &bad {
        let is_invalid =
            |r: &Result<_, ArtifactError>| matches!(r, Err(ArtifactError::InvalidKey { .. }));
        assert!(
            is_invalid(
                &store
                    .put(key, body(&data(10, 1), 4), PutLimits::default())
                    .await
                    .map(|_| ())
            ),
            "put {key:?}"
        );
        assert!(
            is_invalid(&store.get(key, None).await.map(|_| ())),
            "get {key:?}"
        );
        assert!(
            is_invalid(&store.head(key).await.map(|_| ())),
            "head {key:?}"
        );
        assert!(is_invalid(&store.delete(key).await), "delete {key:?}");
    }
    for prefix in ["/", "a//", "../x", "x/../y"] {
        assert!(
            matches!(
                store.list(prefix).await,
                Err(ArtifactError::InvalidKey { .. })
            ),
            "list {prefix:?}"
        );
        assert!(
            matches!(
                store.delete_prefix(prefix).await,
                Err(ArtifactError::InvalidKey { .. })
            ),
            "delete_prefix {prefix:?}"
        );
    }
    assert!(matches!(
        store.delete_prefix("").await,
        Err(ArtifactError::InvalidKey { .. })
    ));
    assert_eq!(keys(&store, &p).await, Vec::<String>::new());
    assert!(keys(&store, &format!("{p}-escape")).await.is_empty());
}

/// A second put replaces the object whole; a delete removes it, and deleting again succeeds.
pub async fn replacing_and_deleting(store: Arc<dyn ArtifactStore>) {
    let p = unique_prefix();
    let key = format!("{p}/a/b.rpm");
    put(&store, &key, &data(LARGE, 1)).await;
    let second = data(5000, 2);
    put(&store, &key, &second).await;
    assert_same(&read(&store, &key).await.unwrap(), &second, &key);
    let info = store.head(&key).await.unwrap();
    assert_eq!((info.size, info.sha256), (5000, Some(Sha256::of(&second))));
    store.delete(&key).await.unwrap();
    assert!(matches!(
        store.head(&key).await,
        Err(ArtifactError::NotFound { .. })
    ));
    store.delete(&key).await.unwrap();
    assert!(keys(&store, &p).await.is_empty());
    // Deleting a "directory" of keys deletes no object.
    put(&store, &key, &second).await;
    store.delete(&format!("{p}/a")).await.unwrap();
    assert_same(&read(&store, &key).await.unwrap(), &second, &key);
}

/// What is not there is `NotFound` (get, head), an empty listing, a zero count.
pub async fn missing_objects_are_not_found(store: Arc<dyn ArtifactStore>) {
    let p = unique_prefix();
    let key = format!("{p}/nothing/here");
    match store.get(&key, None).await {
        Err(ArtifactError::NotFound { key: k }) => assert_eq!(k, key),
        other => panic!("get: {other:?}"),
    }
    assert!(matches!(
        store.get(&key, Some(ByteRange::From(0))).await,
        Err(ArtifactError::NotFound { .. })
    ));
    assert!(matches!(
        store.get(&key, Some(ByteRange::Suffix(0))).await,
        Err(ArtifactError::NotFound { .. })
    ));
    assert!(matches!(
        store.head(&key).await,
        Err(ArtifactError::NotFound { .. })
    ));
    store.delete(&key).await.unwrap();
    assert!(keys(&store, &p).await.is_empty());
    assert_eq!(store.delete_prefix(&p).await.unwrap(), 0);
    // A "directory" is not an object.
    put(&store, &format!("{p}/dir/file"), &data(3, 3)).await;
    assert!(matches!(
        store.head(&format!("{p}/dir")).await,
        Err(ArtifactError::NotFound { .. })
    ));
    assert!(matches!(
        store.get(&format!("{p}/dir"), None).await,
        Err(ArtifactError::NotFound { .. })
    ));
}

/// A listing holds what is under the prefix at a segment boundary, sorted, with sizes; a prefix
/// delete removes exactly that and answers how many.
pub async fn list_and_delete_a_prefix(store: Arc<dyn ArtifactStore>) {
    let p = unique_prefix();
    let job_a = format!("{p}/jobs/a");
    let job_b = format!("{p}/jobs/b");
    let job_ab = format!("{p}/jobs/ab");
    for (prefix, n) in [(&job_a, 5), (&job_b, 2), (&job_ab, 1)] {
        for i in 0..n {
            put(
                &store,
                &format!("{prefix}/out/{i}.rpm"),
                &data(10 * (i + 1), i as u64),
            )
            .await;
        }
    }
    put(&store, &format!("{p}/jobs/a.log"), &data(1, 1)).await;
    let listed = store.list(&job_a).await.unwrap();
    let expected: Vec<(String, u64)> = (0..5)
        .map(|i| (format!("{job_a}/out/{i}.rpm"), 10 * (i + 1)))
        .collect();
    assert_eq!(
        listed
            .iter()
            .map(|o| (o.key.clone(), o.size))
            .collect::<Vec<_>>(),
        expected
    );
    assert_eq!(keys(&store, &format!("{job_a}/")).await.len(), 5);
    assert_eq!(keys(&store, &format!("{p}/jobs")).await.len(), 9);
    assert_eq!(store.delete_prefix(&job_a).await.unwrap(), 5);
    assert!(keys(&store, &job_a).await.is_empty());
    assert!(matches!(
        store.head(&format!("{job_a}/out/0.rpm")).await,
        Err(ArtifactError::NotFound { .. })
    ));
    assert_eq!(keys(&store, &job_b).await.len(), 2);
    assert_eq!(keys(&store, &job_ab).await.len(), 1);
    assert_eq!(keys(&store, &format!("{p}/jobs")).await.len(), 4);
    assert_eq!(store.delete_prefix(&job_a).await.unwrap(), 0);
    // The prefix can be used again after.
    put(&store, &format!("{job_a}/again"), &data(4, 4)).await;
    assert_eq!(keys(&store, &job_a).await, vec![format!("{job_a}/again")]);
    assert_eq!(store.delete_prefix(&format!("{p}/")).await.unwrap(), 5);
    assert!(keys(&store, &p).await.is_empty());
}

/// `children` names what is one level under a prefix, objects and "directories" alike, once
/// each and sorted; nothing there is an empty list, an object has none, a bad prefix is
/// refused.
pub async fn children_are_the_names_one_level_down(store: Arc<dyn ArtifactStore>) {
    let p = unique_prefix();
    for key in [
        "jobs/b/x.rpm",
        "jobs/b/repodata/repomd.xml",
        "jobs/a/y.iso",
        "jobs/c",
        "top",
    ] {
        put(&store, &format!("{p}/{key}"), &Bytes::from_static(b"x")).await;
    }
    assert_eq!(store.children(&p).await.unwrap(), ["jobs", "top"]);
    assert_eq!(
        store.children(&format!("{p}/jobs")).await.unwrap(),
        ["a", "b", "c"]
    );
    assert_eq!(
        store.children(&format!("{p}/jobs/b")).await.unwrap(),
        ["repodata", "x.rpm"]
    );
    assert!(
        store
            .children(&format!("{p}/none"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .children(&format!("{p}/top"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.children(&format!("{p}/../x")).await.is_err());
    assert!(store.children("").await.unwrap().contains(&p));
}
