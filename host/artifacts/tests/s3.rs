//! The conformance suite against a real S3 server (`omni_test_support::s3`: the SeaweedFS of
//! `tests/testbed/s3.sh`, or `OMNI_TEST_S3`), signed with the keys of its credentials file, and
//! what is the S3 backend's own: its configuration and the parts of a multipart upload.

use std::sync::Arc;

use omni_artifacts::conformance::{body, data};
use omni_artifacts::{ArtifactError, ArtifactStore, ArtifactsConfig, PutLimits, Sha256};

/// The `[artifacts]` table of a server using the tests' S3 server, with 5 MiB parts (S3's
/// smallest) so the suite's big objects go as multipart uploads of three parts.
fn config_toml(prefix: &str) -> String {
    let server = omni_test_support::s3::server();
    format!(
        "kind = \"s3\"\nendpoint = \"{}\"\nbucket = \"{}\"\nallow_http = true\ncredentials_file = \"{}\"\nprefix = \"{prefix}\"\npart_size_mib = 5\n",
        server.endpoint,
        server.bucket,
        server.credentials_file.display()
    )
}

fn build(toml_text: &str) -> Result<Arc<dyn ArtifactStore>, ArtifactError> {
    let config: ArtifactsConfig = toml::from_str(toml_text).expect("config");
    config.build(std::path::Path::new("/nonexistent"))
}

async fn store() -> Arc<dyn ArtifactStore> {
    // Every case keeps its objects under a unique prefix of its own; this one keeps the
    // tests' objects apart from anything else in the bucket.
    build(&config_toml("conformance")).expect("S3 store")
}

omni_artifacts::conformance_tests!(store);

/// A store with another prefix sees none of the first one's objects, and the keys it lists are
/// its own (without the prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_keep_installations_apart() {
    let unique = uuid_like();
    let a = build(&config_toml(&format!("iso-{unique}/a"))).unwrap();
    let b = build(&config_toml(&format!("iso-{unique}/b"))).unwrap();
    a.put("jobs/1/x.rpm", body(&data(5, 1), 5), PutLimits::default())
        .await
        .unwrap();
    assert!(matches!(
        b.head("jobs/1/x.rpm").await,
        Err(ArtifactError::NotFound { .. })
    ));
    assert!(b.list("").await.unwrap().is_empty());
    let listed: Vec<String> = a
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, ["jobs/1/x.rpm"]);
    assert_eq!(a.delete_prefix("jobs").await.unwrap(), 1);
}

/// Wrong keys are refused by the server (the signature is checked): the error is a backend
/// error, not a missing object, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        "[default]\naws_access_key_id = NOTAKEY\naws_secret_access_key = notasecret\n",
    )
    .unwrap();
    let text = config_toml("wrong").replace(
        &omni_test_support::s3::server()
            .credentials_file
            .display()
            .to_string(),
        &file.display().to_string(),
    );
    let store = build(&text).unwrap();
    match store
        .put("a", body(&data(3, 3), 3), PutLimits::default())
        .await
    {
        Err(ArtifactError::Backend { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.head("a").await,
        Err(ArtifactError::Backend { .. })
    ));
}

/// A plain-HTTP endpoint is refused unless `allow_http` says so; missing credentials are named.
#[test]
fn configuration_mistakes_are_named() {
    let text = config_toml("x").replace("allow_http = true\n", "");
    match build(&text) {
        Err(ArtifactError::Config(message)) => assert!(message.contains("allow_http"), "{message}"),
        other => panic!("{other:?}"),
    }
    let text = config_toml("x").replace("credentials_file", "profile = \"nope\"\ncredentials_file");
    match build(&text) {
        Err(ArtifactError::Config(message)) => assert!(message.contains("no [nope]"), "{message}"),
        other => panic!("{other:?}"),
    }
}

/// A multipart-sized object put with its expected hash carries it as metadata, read back by
/// `head` and `get`, including for a range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expected_hash_is_recorded_on_multipart_uploads() {
    let store = store().await;
    let key = format!("hash-{}/big", uuid_like());
    let bytes = data(12 * 1024 * 1024, 12);
    let sha256 = Sha256::of(&bytes);
    let limits = PutLimits {
        sha256: Some(sha256),
        max_size: None,
    };
    store
        .put(&key, body(&bytes, 1 << 16), limits)
        .await
        .unwrap();
    assert_eq!(store.head(&key).await.unwrap().sha256, Some(sha256));
    let download = store
        .get(&key, Some(omni_artifacts::ByteRange::Suffix(10)))
        .await
        .unwrap();
    assert_eq!(download.sha256, Some(sha256));
    store.delete(&key).await.unwrap();
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Signs `method url` with the tests' keys through `curl --aws-sigv4` (the testbed's own
/// probe), for what the backend does not expose: multipart uploads in progress.
fn signed_curl(method: &str, url: &str) -> String {
    let server = omni_test_support::s3::server();
    let text = std::fs::read_to_string(&server.credentials_file).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().strip_prefix('='))
            .unwrap()
            .trim()
            .to_owned()
    };
    let user = format!(
        "{}:{}",
        field("aws_access_key_id"),
        field("aws_secret_access_key")
    );
    let out = std::process::Command::new("curl")
        .args([
            "-sf",
            "-X",
            method,
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
        ])
        .arg(user)
        .arg(url)
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {method} {url}: {}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

/// The multipart uploads in progress under `prefix/` (ListMultipartUploads).
fn uploads_in_progress(prefix: &str) -> Vec<String> {
    let server = omni_test_support::s3::server();
    let xml = signed_curl(
        "GET",
        &format!(
            "{}/{}?prefix={prefix}%2F&uploads=",
            server.endpoint, server.bucket
        ),
    );
    xml.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split_once("</Key>").map(|(key, _)| key.to_owned()))
        .filter(|key| !key.is_empty())
        .collect()
}

/// A multipart upload that fails (its body breaks after two parts, its hash is wrong, it passes
/// the cap) is aborted: the server keeps no upload in progress under its key. An upload left
/// open on purpose is listed, so the check sees what it looks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_multipart_uploads_are_aborted() {
    let prefix = format!("abort-{}", uuid_like());
    let store = build(&config_toml(&prefix)).unwrap();
    let bytes = data(omni_artifacts::conformance::LARGE, 4);
    let failing = futures::StreamExt::boxed(futures::StreamExt::chain(
        body(&bytes, 1 << 16),
        futures::stream::iter([Err(std::io::Error::other("gone"))]),
    ));
    assert!(matches!(
        store.put("broken", failing, PutLimits::default()).await,
        Err(ArtifactError::Body(_))
    ));
    let wrong = PutLimits {
        sha256: Some(Sha256::of(b"other")),
        max_size: None,
    };
    assert!(matches!(
        store.put("wrong", body(&bytes, 1 << 16), wrong).await,
        Err(ArtifactError::Sha256Mismatch { .. })
    ));
    let capped = PutLimits {
        sha256: None,
        max_size: Some(11 * 1024 * 1024),
    };
    assert!(matches!(
        store.put("capped", body(&bytes, 1 << 16), capped).await,
        Err(ArtifactError::TooLarge { .. })
    ));
    assert_eq!(uploads_in_progress(&prefix), Vec::<String>::new());
    assert!(store.list("").await.unwrap().is_empty());

    let server = omni_test_support::s3::server();
    let open = format!("{}/{}/{prefix}/left-open", server.endpoint, server.bucket);
    let answer = signed_curl("POST", &format!("{open}?uploads="));
    let upload_id = answer
        .split_once("<UploadId>")
        .and_then(|(_, rest)| rest.split_once("</UploadId>"))
        .map(|(id, _)| id.to_owned())
        .expect("an upload id");
    assert_eq!(
        uploads_in_progress(&prefix),
        vec![format!("{prefix}/left-open")]
    );
    signed_curl("DELETE", &format!("{open}?uploadId={upload_id}"));
}

/// A put dropped half way (a request cancelled by its timeout) aborts its multipart upload: it
/// is listed in progress while the body hangs, and gone once the put's task is cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_put_aborts_its_upload() {
    let prefix = format!("cancel-{}", uuid_like());
    let store = build(&config_toml(&prefix)).unwrap();
    let bytes = data(omni_artifacts::conformance::LARGE, 5);
    let hanging = futures::StreamExt::boxed(futures::StreamExt::chain(
        body(&bytes, 1 << 16),
        futures::stream::pending(),
    ));
    let put = tokio::spawn(async move { store.put("hangs", hanging, PutLimits::default()).await });
    let key = format!("{prefix}/hangs");
    omni_test_support::eventually("the upload in progress", || {
        let listed = uploads_in_progress(&prefix);
        let key = key.clone();
        async move { (listed == [key]).then_some(()) }
    })
    .await;
    put.abort();
    assert!(put.await.unwrap_err().is_cancelled());
    omni_test_support::eventually("the upload aborted", || {
        let listed = uploads_in_progress(&prefix);
        async move { listed.is_empty().then_some(()) }
    })
    .await;
}
