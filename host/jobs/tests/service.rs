//! The job service over the real srpm plugin and an embedded store: what it stores, the events
//! it hands out, and the moves it refuses.

use omni_jobs::{Cancelled, JobError, Submission};
use omni_store::{Created, JobState, new_job_id};
use serde_json::json;

fn submission(name: &str) -> Submission {
    Submission {
        service: "obs".into(),
        task: "srpm".into(),
        domain: "default".into(),
        arch: "x86_64".into(),
        params: json!({"spec": format!("Name: {name}\n")}),
        idempotency: None,
        plugin: None,
    }
}

#[tokio::test]
async fn every_change_is_an_event_in_order() {
    let (_dirs, jobs) = omni_test_support::job_service(&["srpm"]);
    let mut events = jobs.subscribe();
    let Created::New(job) = jobs.submit(submission("a")).await.unwrap() else {
        panic!("not new");
    };
    assert_eq!(job.plugin.task, "srpm");
    assert_eq!(job.plugin.digest.len(), 64);
    assert_eq!(
        omni_store::id_time(job.id).unwrap().timestamp_millis(),
        job.created_at.timestamp_millis(),
        "the creation time is the id's"
    );
    jobs.transition(
        job.id,
        JobState::Queued,
        Some("waiting for capacity".into()),
    )
    .await
    .unwrap();
    jobs.transition(job.id, JobState::Running, None)
        .await
        .unwrap();
    jobs.transition(job.id, JobState::Failed, Some("exit code 2".into()))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = events.recv().await.unwrap();
        assert_eq!(event.job_id, job.id);
        assert_eq!(event.service, "obs");
        seen.push((event.seq, event.from, event.to, event.message));
    }
    assert_eq!(
        seen,
        vec![
            (0, None, JobState::Pending, None),
            (
                1,
                Some(JobState::Pending),
                JobState::Queued,
                Some("waiting for capacity".into())
            ),
            (2, Some(JobState::Queued), JobState::Running, None),
            (
                3,
                Some(JobState::Running),
                JobState::Failed,
                Some("exit code 2".into())
            ),
        ]
    );
}

#[tokio::test]
async fn moves_outside_the_table_are_refused_and_nothing_is_written() {
    let (_dirs, jobs) = omni_test_support::job_service(&["srpm"]);
    let job = jobs.submit(submission("b")).await.unwrap().job().clone();
    let mut events = jobs.subscribe();
    match jobs.transition(job.id, JobState::Running, None).await {
        Err(JobError::Illegal { from, to, .. }) => {
            assert_eq!((from, to), (JobState::Pending, JobState::Running));
        }
        other => panic!("expected an illegal move, got {other:?}"),
    }
    assert_eq!(jobs.get(job.id).await.unwrap().state, JobState::Pending);
    assert!(events.try_recv().is_err(), "an event for a refused move");

    assert!(matches!(
        jobs.cancel(job.id).await.unwrap(),
        Cancelled::Now(_)
    ));
    assert!(matches!(
        jobs.cancel(job.id).await.unwrap(),
        Cancelled::AlreadyEnded(_)
    ));
    assert!(matches!(
        jobs.transition(job.id, JobState::Queued, None).await,
        Err(JobError::Illegal { .. })
    ));
    let missing = new_job_id();
    assert!(matches!(
        jobs.cancel(missing).await,
        Err(JobError::NotFound(_))
    ));
    assert!(matches!(
        jobs.purge(missing).await,
        Err(JobError::NotFound(_))
    ));
    jobs.purge(job.id).await.unwrap();
    assert!(matches!(jobs.get(job.id).await, Err(JobError::NotFound(_))));
}

#[tokio::test]
async fn submissions_the_plugin_cannot_take_are_not_stored() {
    let (_dirs, jobs) = omni_test_support::job_service(&["srpm"]);
    let mut unknown = submission("c");
    unknown.task = "kiwi".into();
    assert!(matches!(
        jobs.submit(unknown).await,
        Err(JobError::NoSuchTask(_))
    ));
    let mut arch = submission("c");
    arch.arch = "sparc".into();
    assert!(matches!(
        jobs.submit(arch).await,
        Err(JobError::UnsupportedArch { .. })
    ));
    let mut params = submission("c");
    params.params = json!({"spec": "Name: c\n", "colour": "red"});
    let error = jobs.submit(params).await.unwrap_err();
    assert_eq!(error.field_errors().unwrap()[0].path, "/colour");
    let page = jobs.list(&omni_store::JobQuery::default()).await.unwrap();
    assert!(page.items.is_empty());
}

#[tokio::test]
async fn a_job_is_rendered_by_the_plugin_version_that_accepted_it() {
    let (dirs, jobs) = omni_test_support::job_service(&["srpm"]);
    let Created::New(job) = jobs.submit(submission("a")).await.unwrap() else {
        panic!("a new job")
    };
    let accepted = job.plugin.digest.clone();

    // The plugin is replaced before the job starts: the job still renders, with the version it
    // records (kept), not with the one serving now.
    let path = dirs.plugins.path().join("srpm.wasm");
    let replaced = omni_test_support::rebuilt(&std::fs::read(&path).unwrap(), "2");
    std::fs::write(&path, replaced).unwrap();
    dirs.registry.scan();
    assert_ne!(dirs.registry.get("srpm").unwrap().digest(), accepted);
    let rendered = jobs.render(&job, "omni-jobs").await.unwrap();
    assert!(!rendered.manifests.is_empty());
    // Even with no plugin serving the task at all: only the kept version can render it.
    std::fs::remove_file(&path).unwrap();
    dirs.registry.scan();
    assert!(dirs.registry.get("srpm").is_none());
    assert!(jobs.render(&job, "omni-jobs").await.is_ok());

    // A job whose version is kept nowhere fails to render, saying which version it needs.
    let mut lost = job.clone();
    lost.plugin.digest = "0".repeat(64);
    let error = jobs.render(&lost, "omni-jobs").await.unwrap_err();
    assert!(matches!(error, JobError::VersionGone { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "the plugin version that accepted the job (srpm@{}, sha256 {}) or its template set is no longer kept",
            job.plugin.version,
            "0".repeat(64)
        )
    );
}

/// The templates are edited between a job's submission and its render: the job renders with
/// the set it was accepted with (kept by its digest), a new job with the edited one; a set
/// kept nowhere fails the render.
#[tokio::test]
async fn a_job_is_rendered_by_the_templates_it_was_accepted_with() {
    let templates = tempfile::tempdir().unwrap();
    omni_test_support::copy_templates("srpm", templates.path());
    let sandbox = omni_test_support::sandbox_over(
        templates.path(),
        omni_runtime::SandboxConfig {
            cache_dir: Some(omni_test_support::workspace().join("target/omni-test-cache")),
            ..omni_runtime::SandboxConfig::default()
        },
    );
    let (_plugins, registry) = omni_test_support::registry(sandbox, &["srpm"]);
    let data = tempfile::tempdir().unwrap();
    let store = omni_store_embedded::EmbeddedStore::open(data.path(), Default::default()).unwrap();
    let jobs = omni_jobs::JobService::new(
        std::sync::Arc::new(store),
        registry as _,
        omni_test_support::artifacts_in(data.path()),
    );
    let image = |rendered: &omni_core::Rendered| {
        let text = serde_json::to_string(&rendered.manifests).unwrap();
        ["openeuler:24.03-lts-sp1", "openeuler:edited"]
            .into_iter()
            .filter(|image| text.contains(image))
            .collect::<Vec<_>>()
    };
    let Created::New(old) = jobs.submit(submission("old")).await.unwrap() else {
        panic!("a new job")
    };
    let accepted = old.plugin.templates.clone().expect("the set is recorded");
    assert_eq!(accepted.len(), 64);
    assert_eq!(
        image(&jobs.render(&old, "omni-jobs").await.unwrap()),
        ["openeuler:24.03-lts-sp1"]
    );

    let settings = templates.path().join("srpm/settings.yaml");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(
        &settings,
        text.replace(
            "openeuler/openeuler:24.03-lts-sp1",
            "openeuler/openeuler:edited",
        ),
    )
    .unwrap();

    // The old job: its own set, from the kept copy.
    assert_eq!(
        image(&jobs.render(&old, "omni-jobs").await.unwrap()),
        ["openeuler:24.03-lts-sp1"]
    );
    // A new job: the edited set, another digest.
    let Created::New(new) = jobs.submit(submission("new")).await.unwrap() else {
        panic!("a new job")
    };
    assert_ne!(new.plugin.templates.as_deref(), Some(accepted.as_str()));
    assert_eq!(
        image(&jobs.render(&new, "omni-jobs").await.unwrap()),
        ["openeuler:edited"]
    );
    // A set kept nowhere: the render fails, naming what the job needs.
    let mut lost = old.clone();
    lost.plugin.templates = Some("0".repeat(64));
    let error = jobs.render(&lost, "omni-jobs").await.unwrap_err();
    assert!(matches!(error, JobError::VersionGone { .. }), "{error:?}");
}
