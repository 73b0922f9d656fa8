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
        max_log_bytes: 1000,
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
        marker.line.contains("keeps at most 1000 bytes"),
        "{marker:?}"
    );
    assert_eq!(marker.stream, omni_engine::LogStream::Stderr);
    // Each line costs its text, its step's name and its own record.
    let cost = |l: &omni_engine::EngineLine| {
        l.line.len() + l.step.len() + std::mem::size_of::<omni_engine::EngineLine>()
    };
    let bytes: usize = kept.iter().map(cost).sum();
    assert!(
        bytes <= 1000 && bytes > 1000 - cost(&kept[0]) - 4,
        "{bytes} bytes kept"
    );
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
    let dir = engine.runner().job_dir(&job.id.to_string());
    assert!(dir.join("home/went-on").exists());
    // The log is spooled in the job's directory, beside (not in) what the steps see, and a
    // follower that comes after the end reads it all again.
    assert!(dir.join("log.jsonl").is_file());
    let again: Vec<_> = engine
        .logs(job.id, None)
        .map(|l| l.unwrap())
        .collect()
        .await;
    assert_eq!(again, lines);
    engine.cleanup(job.id).await.unwrap();
    assert!(!dir.exists());
}

/// A job printing a million empty lines costs the engine a bounded log, not one record a line.
#[tokio::test]
async fn a_million_empty_lines_are_cut_at_the_limit() {
    let root = tempfile::tempdir().unwrap();
    let config = LocalEngineConfig {
        max_log_bytes: 64 * 1024,
        ..LocalEngineConfig::new()
    };
    let engine = LocalEngine::new(&config, root.path().to_owned());
    let job = omni_engine::conformance::one_job(&json!({
        "restartPolicy": "Never",
        "containers": [{"name": "print", "image": "none",
                        "command": ["/bin/sh", "-c", "yes '' | head -n 1000000"]}],
    }));
    engine.submit(&job).await.unwrap();
    let lines: Vec<_> = engine
        .logs(job.id, None)
        .map(|l| l.unwrap())
        .collect()
        .await;
    let most = 64 * 1024 / ("print".len() + std::mem::size_of::<omni_engine::EngineLine>());
    assert_eq!(lines.len(), most + 1, "the kept lines and the marker");
    assert!(
        lines
            .last()
            .unwrap()
            .line
            .contains("keeps at most 65536 bytes")
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
    assert!(engine.warnings().is_empty());

    config.unsandboxed = true;
    let engine = LocalEngine::new(&config, root.path().to_owned());
    assert!(engine.unsandboxed());
    // `/readyz` shows it.
    let warnings = engine.warnings();
    assert!(
        warnings.len() == 1 && warnings[0].contains("no isolation"),
        "{warnings:?}"
    );
    engine.check().await.unwrap();
    engine.submit(&job).await.unwrap();
    let lines: Vec<_> = engine
        .logs(job.id, None)
        .map(|l| l.unwrap().line)
        .collect()
        .await;
    assert_eq!(lines, ["hi"]);
}

/// A job's directory goes `keep_finished` after the job ended, with its log; so does one a
/// crash left behind; a running job's stays, and so does what is not a job's.
#[tokio::test]
async fn directories_of_jobs_that_ended_long_ago_are_removed() {
    use std::time::{Duration, SystemTime};

    let root = tempfile::tempdir().unwrap();
    let config = LocalEngineConfig {
        keep_finished: Duration::from_secs(60),
        ..LocalEngineConfig::new()
    };
    let engine = LocalEngine::new(&config, root.path().to_owned());
    let job = |command: &str| {
        omni_engine::conformance::one_job(&json!({
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "none", "command": ["/bin/sh", "-c", command]}],
        }))
    };
    let (ended, running) = (job("echo hi"), job("sleep 600"));
    engine.submit(&ended).await.unwrap();
    engine.submit(&running).await.unwrap();
    let lines: Vec<_> = engine.logs(ended.id, None).collect().await;
    assert_eq!(lines.len(), 1);
    let dir = |id: omni_engine::JobId| engine.runner().job_dir(&id.to_string());
    let stray = root.path().join(omni_engine::JobId::new_v4().to_string());
    std::fs::create_dir(&stray).unwrap();
    let other = root.path().join("not-a-job");
    std::fs::create_dir(&other).unwrap();

    // Not yet.
    assert_eq!(engine.sweep(SystemTime::now()).await.unwrap(), 0);
    assert!(dir(ended.id).exists() && stray.exists());

    let later = SystemTime::now() + Duration::from_secs(120);
    assert_eq!(engine.sweep(later).await.unwrap(), 2);
    assert!(!dir(ended.id).exists(), "the ended job's directory is gone");
    assert!(!stray.exists(), "the stray directory is gone");
    assert!(dir(running.id).exists(), "the running job's stays");
    assert!(other.exists(), "what is not a job's stays");
    // The engine forgot the ended job.
    let after: Vec<_> = engine.logs(ended.id, None).collect().await;
    assert!(
        matches!(
            after.as_slice(),
            [Err(omni_engine::EngineError::UnknownJob { .. })]
        ),
        "{after:?}"
    );
    engine.cleanup(running.id).await.unwrap();
}
