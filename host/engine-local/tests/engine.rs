//! The local engine beyond the conformance suite: what it keeps of a job's log; a host where
//! the sandbox cannot start.

use futures::StreamExt;
use omni_engine::Engine;
use omni_engine_local::{LocalEngine, LocalEngineConfig};
use serde_json::json;

#[tokio::test]
async fn a_jobs_log_is_kept_up_to_the_limit_then_a_marker_and_the_job_runs_on() {
    let root = tempfile::tempdir().unwrap();
    let config = LocalEngineConfig {
        max_log_bytes: 100,
        ..LocalEngineConfig::new()
    };
    let engine = LocalEngine::new(&config, root.path().to_owned());
    let job = omni_engine::conformance::one_job(&json!({
        "restartPolicy": "Never",
        "containers": [{"name": "print", "image": "none",
                        "command": ["/bin/sh", "-c", "seq -f 'line %.0f' 1 1000; touch \"$HOME/went-on\""]}],
    }));
    engine.submit(&job).await.unwrap();
    let lines: Vec<_> = engine
        .logs(job.id, None)
        .map(|l| l.unwrap())
        .collect()
        .await;
    let (marker, kept) = lines.split_last().unwrap();
    assert!(
        marker.line.contains("keeps at most 100 bytes"),
        "{marker:?}"
    );
    assert_eq!(marker.stream, omni_engine::LogStream::Stderr);
    let bytes: usize = kept.iter().map(|l| l.line.len()).sum();
    assert!(bytes <= 100 && bytes > 90, "{bytes} bytes kept");
    assert_eq!(kept[0].line, "line 1");
    // The job ran to its end all the same.
    let mut progress = engine.progress(job.id);
    let mut outcome = None;
    while let Some(item) = progress.next().await {
        if let omni_engine::Progress::Ended(o) = item.unwrap() {
            outcome = Some(o);
        }
    }
    assert_eq!(outcome, Some(omni_engine::Outcome::Succeeded));
    assert!(
        engine
            .runner()
            .job_dir(&job.id.to_string())
            .join("home/went-on")
            .exists()
    );
    engine.cleanup(job.id).await.unwrap();
}

/// Where bubblewrap cannot run, the engine says so and takes no job; `unsandboxed = true` runs
/// them as plain processes.
#[tokio::test]
async fn without_a_sandbox_the_engine_refuses_jobs_unless_unsandboxed() {
    let root = tempfile::tempdir().unwrap();
    let mut config = LocalEngineConfig::new();
    config.sandbox.bwrap = "/nonexistent/bwrap".into();
    let engine = LocalEngine::new(&config, root.path().to_owned());
    let error = engine.check().await.unwrap_err().to_string();
    assert!(
        error.contains("cannot start")
            && error.contains("/nonexistent/bwrap")
            && error.contains("unsandboxed = true"),
        "{error}"
    );
    let job = omni_engine::conformance::one_job(&json!({
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": "none", "command": ["/bin/sh", "-c", "echo hi"]}],
    }));
    assert!(matches!(
        engine.submit(&job).await,
        Err(omni_engine::EngineError::Unavailable { .. })
    ));

    config.unsandboxed = true;
    let engine = LocalEngine::new(&config, root.path().to_owned());
    assert!(engine.unsandboxed());
    engine.check().await.unwrap();
    engine.submit(&job).await.unwrap();
    let lines: Vec<_> = engine
        .logs(job.id, None)
        .map(|l| l.unwrap().line)
        .collect()
        .await;
    assert_eq!(lines, ["hi"]);
}
