//! Jobs on the local engine, from submission to their end.

use futures::StreamExt as _;
use omni_engine::testing::{Act, Scripted};
use omni_jobs::JobError;
use omni_store::StepState;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_srpm_job_runs_to_success_on_the_local_engine_with_its_log_and_artifact() {
    let world = world(2, config());
    // base64 of "#!/bin/sh\necho hello\n"
    let params = json!({"spec": SPEC, "sources": {"hello.sh": "IyEvYmluL3NoCmVjaG8gaGVsbG8K"},
                        "defines": {"dist": ".oe2403"}});
    let job = submit(&world.jobs, "srpm", "default", params).await;
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    assert_eq!(done.engine.as_deref(), Some("local"));
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    assert!(
        done.steps.iter().all(|s| s.state == StepState::Succeeded),
        "{:?}",
        done.steps
    );
    let history = world.jobs.history(job.id).await.unwrap();
    assert_eq!(
        states(&history),
        [
            JobState::Pending,
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded
        ]
    );

    // Its log, stored in order with a sequence from 1, step by step.
    let log = world
        .jobs
        .stored_logs(
            job.id,
            &LogQuery {
                step: None,
                after: None,
                limit: 10_000,
            },
        )
        .await
        .unwrap()
        .items;
    assert!(!log.is_empty());
    for (i, line) in log.iter().enumerate() {
        assert_eq!(line.seq, i as u64 + 1);
    }
    let steps: Vec<&str> = log.iter().map(|l| l.step.as_str()).collect();
    let first_build = steps.iter().position(|s| *s == "build").unwrap();
    assert!(
        steps[..first_build].iter().all(|s| *s == "fetch"),
        "{steps:?}"
    );
    assert!(
        steps[first_build..].iter().all(|s| *s == "build"),
        "{steps:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.line.contains("hello-1.0-1.oe2403.src.rpm")),
        "{log:#?}"
    );

    // Its artifact, kept in the job's output directory.
    let srpm = world
        .engine
        .runner()
        .volume_dir(&job.id.to_string(), "output")
        .join("hello-1.0-1.oe2403.src.rpm");
    let info = std::process::Command::new("rpm")
        .args(["-qp", "--qf", "%{NAME}-%{VERSION}"])
        .arg(&srpm)
        .output()
        .unwrap();
    assert!(info.status.success(), "{srpm:?}: {info:?}");
    assert_eq!(String::from_utf8_lossy(&info.stdout), "hello-1.0");

    // The output is the job's one artifact, recorded before its end, its bytes in the
    // artifact store those of the file.
    let page = world
        .jobs
        .list_artifacts(
            job.id,
            &omni_store::ArtifactQuery {
                after: None,
                limit: 100,
            },
        )
        .await
        .unwrap();
    let bytes = std::fs::read(&srpm).unwrap();
    assert_eq!(page.items.len(), 1, "{page:#?}");
    let artifact = &page.items[0];
    assert_eq!(artifact.name, "hello-1.0-1.oe2403.src.rpm");
    assert_eq!(artifact.size, bytes.len() as u64);
    assert_eq!(
        artifact.sha256,
        omni_artifacts::Sha256::of(&bytes).to_string()
    );
    assert_eq!(artifact.media_type, "application/x-rpm");
    assert_eq!(artifact.step.as_deref(), Some("build"));
    let (_, download) = world
        .jobs
        .open_artifact(job.id, &artifact.name, None)
        .await
        .unwrap();
    let kept: Vec<u8> = download
        .stream
        .map(|chunk| chunk.unwrap().to_vec())
        .concat()
        .await;
    assert!(kept == bytes, "the kept artifact is not the file");
    let events = omni_test_support::events_of(&world.jobs, job.id, 5).await;
    let names: Vec<&str> = events.iter().map(omni_store::Event::name).collect();
    assert_eq!(
        names,
        [
            "job.pending",
            "job.queued",
            "job.running",
            "job.artifacts",
            "job.succeeded"
        ]
    );

    // Purging removes the job's directory and its artifacts.
    world.jobs.purge(job.id).await.unwrap();
    omni_test_support::eventually("the purged job's artifact to go", || {
        std::future::ready((!srpm.exists()).then_some(()))
    })
    .await;
    let gone = world
        .jobs
        .artifact_store()
        .list(&omni_jobs::artifacts_prefix(job.id))
        .await
        .unwrap();
    assert!(gone.is_empty(), "{gone:?}");
}

/// A job leaving a file whose name cannot be an artifact's fails at once, naming the file and
/// the rule (trying again changes nothing), and keeps none of its outputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_whose_name_cannot_be_an_artifacts_fails_the_job_naming_it() {
    let world = world(1, config());
    let job = hostile(&world.jobs, "odd-output").await;
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Failed, "{done:#?}");
    let message = done.message.clone().unwrap_or_default();
    assert!(
        message.contains("\"bad\\u{1}name\"") && message.contains("control character"),
        "{message}"
    );
    let page = world
        .jobs
        .list_artifacts(
            job.id,
            &omni_store::ArtifactQuery {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(page.items.is_empty(), "{page:#?}");
}

/// A source larger than a request body can carry is sent as an upload and named by its sha256:
/// the local engine gives it to the job's `fetch` step, and the source RPM packs it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_srpm_job_packs_a_source_sent_as_an_upload_larger_than_a_body() {
    let world = world(1, config());
    // A real tarball of 3 MiB that does not compress: over the 1 MiB body limit as it is,
    // and over it again once base64 inflates it.
    let dir = tempfile::tempdir().unwrap();
    let tarball = omni_test_support::incompressible_tarball(dir.path(), "big-1.0", 3);
    let bytes = std::fs::read(&tarball).unwrap();
    assert!(bytes.len() > 3 << 20, "{}", bytes.len());
    let body: omni_artifacts::ByteStream = Box::pin(futures::stream::once({
        let bytes = bytes.clone();
        async move { Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)) }
    }));
    let (upload, _) = world.jobs.put_upload("default", body, None).await.unwrap();

    let spec = "Name: big\nVersion: 1.0\nRelease: 1\nSummary: Big\nLicense: MIT\n\
                Source0: big-1.0.tar.gz\nBuildArch: noarch\n\n%description\nBig.\n\n\
                %prep\n%setup -q\n\n%files\n";
    let params = json!({"spec": spec, "sources": {
        "big-1.0.tar.gz": {"upload": upload.sha256, "mode": "0640"}
    }});
    assert!(params.to_string().len() < 1024);
    let job = submit(&world.jobs, "srpm", "default", params).await;
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");

    // The source RPM holds the tarball, byte for byte (rpm's sha256 of it), with its mode.
    let srpm = world
        .engine
        .runner()
        .volume_dir(&job.id.to_string(), "output")
        .join("big-1.0-1.src.rpm");
    let files = std::process::Command::new("rpm")
        .args([
            "-qp",
            "--qf",
            "[%{FILENAMES} %{FILEDIGESTS} %{FILEMODES:perms}\n]",
        ])
        .arg(&srpm)
        .output()
        .unwrap();
    assert!(files.status.success(), "{files:?}");
    let listing = String::from_utf8_lossy(&files.stdout);
    let want = format!("big-1.0.tar.gz {} -rw-r-----", upload.sha256);
    assert!(listing.lines().any(|l| l == want), "{listing}");
}

/// A job that leaves more in its output than the engine keeps fails, saying so, and none of
/// it becomes an artifact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_output_is_past_the_engines_caps_fails_and_keeps_nothing() {
    let (_dirs, jobs) = omni_test_support::job_service(&["srpm"]);
    let root = tempfile::tempdir().unwrap();
    let config = LocalEngineConfig {
        name: "local".into(),
        arches: vec!["x86_64".into()],
        max_outputs: 0,
        ..LocalEngineConfig::new()
    };
    let engine = Arc::new(LocalEngine::new(&config, root.path().to_owned()));
    let scheduler = Scheduler::new(
        jobs.clone(),
        vec![engine as Arc<dyn Engine>],
        self::config(),
    )
    .unwrap();
    let _handle = scheduler.spawn();
    let params = json!({"spec": SPEC, "sources": {"hello.sh": "IyEvYmluL3NoCmVjaG8gaGVsbG8K"}});
    let job = submit(&jobs, "srpm", "default", params).await;
    let done = ended(&jobs, job.id).await;
    assert_eq!(done.state, JobState::Failed, "{done:#?}");
    let message = done.message.unwrap_or_default();
    assert!(
        message.starts_with("the job succeeded, but its outputs could not be read")
            && message.contains("more than this engine keeps (0 files"),
        "{message}"
    );
    let page = jobs
        .list_artifacts(
            job.id,
            &omni_store::ArtifactQuery {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(page.items.is_empty(), "{page:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_beyond_capacity_wait_queued_and_run_in_submission_order() {
    let world = world(1, config());
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(hostile(&world.jobs, "behave").await.id);
    }
    let mut jobs = Vec::new();
    for id in &ids {
        jobs.push(ended(&world.jobs, *id).await);
    }
    for pair in jobs.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(a.state, JobState::Succeeded, "{a:#?}");
        assert!(
            a.finished_at.unwrap() <= b.started_at.unwrap(),
            "one slot, yet {} started before {} ended",
            b.id,
            a.id
        );
    }
    for job in &jobs[1..] {
        let history = world.jobs.history(job.id).await.unwrap();
        assert_eq!(
            states(&history),
            [
                JobState::Pending,
                JobState::Queued,
                JobState::Running,
                JobState::Succeeded
            ]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_limit_holds_its_jobs_back_but_not_other_domains() {
    let mut config = config();
    config.max_running_per_domain.insert("busy".into(), 1);
    let world = world(4, config);
    let linger = json!({"behaviour": "linger"});
    let first = submit(&world.jobs, "hostile", "busy", linger.clone()).await;
    running(&world.jobs, first.id).await;
    let second = submit(&world.jobs, "hostile", "busy", linger.clone()).await;
    let other = submit(&world.jobs, "hostile", "default", linger.clone()).await;
    // The other domain's job runs although it came after the held one.
    running(&world.jobs, other.id).await;
    assert_eq!(
        world.jobs.get(second.id).await.unwrap().state,
        JobState::Queued
    );
    world.jobs.cancel(first.id).await.unwrap();
    let second = running(&world.jobs, second.id).await;
    let first = ended(&world.jobs, first.id).await;
    assert_eq!(first.state, JobState::Cancelled);
    assert!(second.started_at.unwrap() >= first.finished_at.unwrap());
    for id in [second.id, other.id] {
        world.jobs.cancel(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_of_one_arch_share_the_load() {
    let (_dirs, jobs) = omni_test_support::job_service(&["hostile"]);
    let root = tempfile::tempdir().unwrap();
    let engines: Vec<Arc<dyn Engine>> = ["left", "right"]
        .into_iter()
        .map(|name| {
            let config = LocalEngineConfig {
                name: name.into(),
                max_running: 1,
                arches: vec!["x86_64".into()],
                ..LocalEngineConfig::new()
            };
            Arc::new(LocalEngine::new(&config, root.path().join(name))) as Arc<dyn Engine>
        })
        .collect();
    let scheduler = Scheduler::new(jobs.clone(), engines, config()).unwrap();
    let _handle = scheduler.spawn();
    let first = hostile(&jobs, "linger").await;
    let second = hostile(&jobs, "linger").await;
    let first = running(&jobs, first.id).await;
    let second = running(&jobs, second.id).await;
    let mut on: Vec<&str> = [&first, &second]
        .iter()
        .map(|j| j.engine.as_deref().unwrap())
        .collect();
    on.sort_unstable();
    assert_eq!(on, ["left", "right"]);
    for job in [first, second] {
        jobs.cancel(job.id).await.unwrap();
        assert_eq!(ended(&jobs, job.id).await.state, JobState::Cancelled);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_error_fails_the_job_with_the_plugins_message() {
    let world = world(2, config());
    let job = hostile(&world.jobs, "panic").await;
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Failed);
    let message = done.message.unwrap();
    assert!(message.contains("rendering failed"), "{message}");
    assert!(message.contains("panics on purpose"), "{message}");
    let history = world.jobs.history(job.id).await.unwrap();
    assert_eq!(
        states(&history),
        [JobState::Pending, JobState::Queued, JobState::Failed]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_engine_refuses_fails_with_the_engines_reason() {
    let world = world(2, config());
    let job = hostile(&world.jobs, "no-command").await;
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Failed);
    let message = done.message.unwrap();
    assert!(message.contains("rejected"), "{message}");
    assert!(message.contains("has no command"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job_on_its_engine() {
    let world = world(2, config());
    let job = hostile(&world.jobs, "linger").await;
    wait_for(&world.jobs, job.id, "ran its step", |j| {
        j.steps[0].state == StepState::Running
    })
    .await;
    world.jobs.cancel(job.id).await.unwrap();
    // The engine saw it end as cancelled: its process was killed, not left sleeping.
    let mut progress = world.engine.progress(job.id);
    let end = tokio::time::timeout(PATIENCE, async {
        use futures::StreamExt;
        loop {
            match progress.next().await {
                Some(Ok(omni_engine::Progress::Ended(outcome))) => return outcome,
                Some(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(end, omni_engine::Outcome::Cancelled(_)), "{end:?}");
    let done = ended(&world.jobs, job.id).await;
    assert_eq!(done.state, JobState::Cancelled);
    assert_eq!(done.steps[0].state, StepState::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arch_no_engine_serves_is_refused_at_submit() {
    let world = world(2, config());
    let mut arm = submission("hostile", "default", json!({"behaviour": "behave"}));
    arm.arch = "aarch64".into();
    let error = world.jobs.submit(arm).await.unwrap_err();
    assert!(
        matches!(&error, JobError::NoEngine { arch, served } if arch == "aarch64" && served == &["x86_64"]),
        "{error:?}"
    );
}

/// What the real plugin renders reaches the engine for its namespace (a scripted engine, which
/// shows what it was given; the unit tests' in-process plugin cannot show the real one's
/// objects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_objects_are_rendered_for_the_namespace_of_the_engine_that_runs_it() {
    let (_dirs, jobs) = omni_test_support::job_service(&["hostile"]);
    let engine = Scripted::builder("a").namespace("builds-arm").build();
    let (_, _, _handle) = replica(&jobs, vec![Arc::clone(&engine) as Arc<dyn Engine>]);
    let job = hostile(&jobs, "behave").await;
    running(&jobs, job.id).await;
    let given = engine.submits();
    assert_eq!(given[0].namespace, "builds-arm");
    let objects: Vec<&str> = given[0]
        .rendered
        .manifests
        .iter()
        .map(|m| m.body["metadata"]["namespace"].as_str().unwrap_or(""))
        .collect();
    assert!(!objects.is_empty());
    assert!(objects.iter().all(|n| *n == "builds-arm"), "{objects:?}");
    // What the engine was given is on the job's record (its provenance), and a re-render by
    // the job's recorded versions gives the same bytes.
    let stored = jobs.get(job.id).await.unwrap();
    let rendering = stored.rendering.clone().expect("the job's rendering");
    assert_eq!(
        rendering,
        omni_jobs::provenance::rendering(&given[0].rendered, "builds-arm")
    );
    let again = jobs.rerender(&stored, "elsewhere").await.unwrap();
    assert_eq!(again, given[0].rendered);
    engine.play(
        job.id,
        [Act::Run, Act::End(omni_engine::Outcome::Succeeded)],
    );
    let done = ended(&jobs, job.id).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
}
