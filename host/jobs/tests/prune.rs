//! Pruning plugin versions through the job service over the real registry: what no stored job
//! records goes (components with their index files, template sets), what a job records, what
//! serves and the serving task's template set stay, and the job still renders.

use std::sync::Arc;

use omni_jobs::{JobService, Submission};
use omni_store::{Created, Store};

fn kept(dir: &std::path::Path, digest: &str) {
    std::fs::write(dir.join(format!("{digest}.wasm")), b"old component").unwrap();
    std::fs::write(
        dir.join(format!("{digest}.json")),
        format!(
            r#"{{"task": "srpm", "version": "0.0.1", "digest": "{digest}", "kept_at": "2026-01-01T00:00:00Z"}}"#
        ),
    )
    .unwrap();
}

#[tokio::test]
async fn prune_removes_only_the_versions_no_job_records() {
    let data = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        omni_store_embedded::EmbeddedStore::open(data.path(), Default::default()).unwrap(),
    );
    let sandbox = omni_test_support::sandbox(serde_json::json!({}));
    let (plugins, registry) = omni_test_support::registry(sandbox, &["srpm"]);
    let jobs = JobService::new(
        Arc::clone(&store),
        registry as _,
        omni_test_support::artifacts_in(data.path()),
    );
    let versions = plugins.path().join(omni_test_support::VERSIONS);
    let created = jobs
        .submit(Submission {
            service: "t".into(),
            task: "srpm".into(),
            domain: "default".into(),
            arch: "x86_64".into(),
            params: serde_json::json!({"spec": "Name: hello\n"}),
            idempotency: None,
            plugin: None,
        })
        .await
        .unwrap();
    let Created::New(job) = created else {
        panic!("a new job")
    };
    let serving = job.plugin.digest.clone();
    let serving_set = job.plugin.templates.clone().unwrap();

    // An old version no job records, one a stored job records, and their template sets.
    let (unused, recorded) = ("d".repeat(64), "e".repeat(64));
    kept(&versions, &unused);
    kept(&versions, &recorded);
    let (unused_set, recorded_set) = ("1".repeat(64), "2".repeat(64));
    for set in [&unused_set, &recorded_set] {
        std::fs::write(
            versions.join("templates").join(format!("{set}.json")),
            b"{}",
        )
        .unwrap();
    }
    let mut old = omni_test_support::pending_job("t", "srpm", "default");
    old.plugin.digest = recorded.clone();
    old.plugin.templates = Some(recorded_set.clone());
    store.create_job(&old, None).await.unwrap();

    let pruned = jobs.prune_plugin_versions().await.unwrap();
    assert_eq!(
        (pruned.components, pruned.template_sets),
        (1, 1),
        "{pruned:?}"
    );
    let exists = |name: String| versions.join(name).exists();
    assert!(!exists(format!("{unused}.wasm")) && !exists(format!("{unused}.json")));
    assert!(exists(format!("{recorded}.wasm")) && exists(format!("{recorded}.json")));
    assert!(exists(format!("{serving}.wasm")));
    assert!(!exists(format!("templates/{unused_set}.json")));
    assert!(exists(format!("templates/{recorded_set}.json")));
    assert!(exists(format!("templates/{serving_set}.json")));
    // Again: nothing more to do.
    let again = jobs.prune_plugin_versions().await.unwrap();
    assert_eq!((again.components, again.template_sets), (0, 0));
    jobs.render(&jobs.get(job.id).await.unwrap(), "ns")
        .await
        .unwrap();
}
