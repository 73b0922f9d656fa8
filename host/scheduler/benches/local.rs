//! The local engine's own cost per job, printed for the README (`make bench`).
//!
//! The same one-step job (`/bin/true`) four ways, one after another: the command spawned
//! directly (tokio::process, waited, its output read); the job through the local engine without
//! its sandbox (`unsandboxed = true`: plan, job directory, process group, progress and log
//! streams followed to the end, cleanup), and with it (the default: the step in bubblewrap, with
//! its uid, mounts and limits); and the job through all of Omni (submission validated by the
//! plugin and stored, queued, rendered, run by the local engine in its sandbox, followed, its
//! end recorded in the embedded store). The engine's overhead is its p50 minus the direct p50;
//! the sandbox's cost per step is the sandboxed p50 minus the unsandboxed one.

mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use omni_engine::{Engine, EngineJob, Progress};
use omni_engine::{Manifest, Rendered};
use omni_engine_local::{LocalEngine, LocalEngineConfig};
use omni_jobs::Submission;
use serde_json::json;

use common::{local_scheduler, percentile};

const JOBS: usize = 300;

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let p50 = percentile(&samples, 0.5);
    println!(
        "{name:<42} p50 {:>8.2} ms   p99 {:>8.2} ms   ({} jobs)",
        p50.as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.len()
    );
    p50
}

fn true_job() -> EngineJob {
    let id = uuid::Uuid::new_v4();
    let name = format!("omni-{id}");
    let body = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "run", "image": "none", "command": ["/bin/true"]}]}}},
    });
    EngineJob {
        inputs: Default::default(),
        id,
        name: name.clone(),
        namespace: "omni-jobs".into(),
        task: "bench".into(),
        arch: std::env::consts::ARCH.into(),
        rendered: Rendered {
            manifests: vec![Manifest {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: name.clone(),
                body,
            }],
            primary: name,
        },
    }
}

async fn direct() -> Vec<Duration> {
    let mut samples = Vec::with_capacity(JOBS);
    for _ in 0..JOBS {
        let start = Instant::now();
        let output = tokio::process::Command::new("/bin/true")
            .output()
            .await
            .unwrap();
        assert!(output.status.success());
        samples.push(start.elapsed());
    }
    samples
}

async fn through_the_engine(engine: &LocalEngine) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(JOBS);
    for _ in 0..JOBS {
        let job = true_job();
        let start = Instant::now();
        engine.submit(&job).await.unwrap();
        let mut logs = engine.logs(job.id, None);
        let mut progress = engine.progress(job.id);
        while let Some(item) = progress.next().await {
            if let Progress::Ended(outcome) = item.unwrap() {
                assert_eq!(outcome, omni_engine::Outcome::Succeeded);
                break;
            }
        }
        while logs.next().await.is_some() {}
        engine.cleanup(job.id).await.unwrap();
        samples.push(start.elapsed());
    }
    samples
}

async fn through_omni() -> Vec<Duration> {
    let (_dirs, jobs) = omni_test_support::job_service(&["hostile"]);
    let (_root, _handle) = local_scheduler(&jobs).await;
    let mut events = jobs.subscribe();
    let mut samples = Vec::with_capacity(JOBS);
    for _ in 0..JOBS {
        let start = Instant::now();
        let created = jobs
            .submit(Submission {
                service: "bench".into(),
                task: "hostile".into(),
                domain: "default".into(),
                arch: std::env::consts::ARCH.into(),
                params: json!({"behaviour": "behave"}),
                idempotency: None,
                plugin: None,
            })
            .await
            .unwrap();
        let id = created.job().id;
        loop {
            let event = events.recv().await.unwrap();
            if event.job_id == id && event.to.is_final() {
                assert_eq!(event.to, omni_store::JobState::Succeeded, "{event:?}");
                break;
            }
        }
        samples.push(start.elapsed());
    }
    samples
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("local engine, one-step job running /bin/true, one job at a time:");
        let root = tempfile::tempdir().unwrap();
        let plain = LocalEngine::new(
            &LocalEngineConfig {
                unsandboxed: true,
                ..LocalEngineConfig::new()
            },
            root.path().join("plain"),
        );
        let sandboxed = LocalEngine::new(&LocalEngineConfig::new(), root.path().join("sandboxed"));
        // Warm up the page cache and the allocator.
        direct().await;
        let direct = report("the command spawned directly", direct().await);
        let plain_p50 = report(
            "through the local engine, unsandboxed",
            through_the_engine(&plain).await,
        );
        let sandboxed_p50 = report(
            "through the local engine, sandboxed",
            through_the_engine(&sandboxed).await,
        );
        report(
            "through Omni (submit -> succeeded stored)",
            through_omni().await,
        );
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "the local engine's own overhead per job (p50 difference, unsandboxed): {:.2} ms",
            ms(plain_p50.saturating_sub(direct))
        );
        println!(
            "the sandbox's cost per step (p50 difference): {:.2} ms; sandboxed / unsandboxed p50: {:.1}",
            ms(sandboxed_p50.saturating_sub(plain_p50)),
            sandboxed_p50.as_secs_f64() / plain_p50.as_secs_f64()
        );
    });
}
