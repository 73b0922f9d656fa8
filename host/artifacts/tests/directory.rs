//! The conformance suite against the directory backend, one fresh directory per case, and what
//! is the directory backend's own: where files go, and what a crash leaves.

use std::sync::Arc;

use omni_artifacts::conformance::{body, data};
use omni_artifacts::{ArtifactError, ArtifactStore, Directory, PutLimits, Sha256};

async fn store() -> Arc<dyn ArtifactStore> {
    // The directory lives as long as the test process; each case gets its own.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    Arc::new(Directory::open(dir.join("artifacts")).expect("open"))
}

omni_artifacts::conformance_tests!(store);

/// An object is a plain file at its key's path, its sha256 in an extended attribute: an
/// operator can read what a job made with `ls` and `sha256sum`.
#[tokio::test]
async fn objects_are_files_at_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = Directory::open(dir.path()).unwrap();
    let bytes = data(70_000, 1);
    store
        .put(
            "jobs/1/repodata/repomd.xml",
            body(&bytes, 4096),
            PutLimits::default(),
        )
        .await
        .unwrap();
    let file = dir.path().join("jobs/1/repodata/repomd.xml");
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    // No temporary file stays beside it.
    let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["repomd.xml"]);
    let info = store.head("jobs/1/repodata/repomd.xml").await.unwrap();
    assert_eq!(info.sha256, Some(Sha256::of(&bytes)));
    // Deleting the last object of a directory removes the empty directories up to the root.
    store.delete("jobs/1/repodata/repomd.xml").await.unwrap();
    assert!(!dir.path().join("jobs").exists());
    assert!(dir.path().is_dir());
}

/// What a crash leaves (a put's temporary file, a prefix renamed for deletion) is neither
/// listed nor readable, and opening the store again removes it.
#[tokio::test]
async fn leftovers_of_a_crash_are_ignored_then_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Directory::open(dir.path()).unwrap();
    store
        .put("jobs/1/a.rpm", body(&data(10, 1), 10), PutLimits::default())
        .await
        .unwrap();
    let tmp = dir.path().join("jobs/1/.omni-tmp-0123");
    std::fs::write(&tmp, b"half").unwrap();
    let trash = dir.path().join(".omni-trash-0123/x");
    std::fs::create_dir_all(&trash).unwrap();
    std::fs::write(trash.join("y"), b"gone").unwrap();
    let keys: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["jobs/1/a.rpm"]);
    assert!(matches!(
        store.head("jobs/1/.omni-tmp-0123").await,
        Err(ArtifactError::InvalidKey { .. })
    ));
    drop(store);
    let store = Directory::open(dir.path()).unwrap();
    assert!(!tmp.exists());
    assert!(!dir.path().join(".omni-trash-0123").exists());
    assert_eq!(store.list("").await.unwrap().len(), 1);
}

/// A put into a directory the process may not write fails with the path, and stores nothing.
#[tokio::test]
async fn file_system_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = Directory::open(dir.path()).unwrap();
    // A file where the key needs a directory.
    store
        .put("jobs", body(&data(1, 1), 1), PutLimits::default())
        .await
        .unwrap();
    match store
        .put("jobs/1/a", body(&data(1, 1), 1), PutLimits::default())
        .await
    {
        Err(ArtifactError::Io { what, .. }) => assert!(what.contains("jobs"), "{what}"),
        other => panic!("{other:?}"),
    }
}
