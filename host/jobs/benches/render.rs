//! What rendering a job by the plugin version it records costs (`make bench`): a stored job's
//! render through `JobService::render`, which finds the component by the job's digest, beside
//! the same render called on the serving plugin directly; then the same job after its plugin
//! file was replaced, rendered by the kept version (from the registry's cache of retired
//! versions). Each on one thread, for two seconds, after a warm-up; p50 and p99.

use std::sync::Arc;
use std::time::{Duration, Instant};

use omni_core::JobContext;
use omni_jobs::Submission;
use serde_json::json;

const RUN: Duration = Duration::from_secs(2);

/// Calls `f` for [`RUN`] after a warm-up; answers the sorted latencies.
async fn measure<F, Fut>(mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..20 {
        f().await;
    }
    let start = Instant::now();
    let mut latencies = Vec::new();
    while start.elapsed() < RUN {
        let one = Instant::now();
        f().await;
        latencies.push(one.elapsed());
    }
    latencies.sort();
    latencies
}

fn row(what: &str, latencies: &[Duration]) -> Duration {
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let (p50, p99) = (at(0.5), at(0.99));
    println!(
        "| {what} | {:.0} | {:.2} ms | {:.2} ms |",
        latencies.len() as f64 / RUN.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    p50
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (dirs, jobs) = omni_test_support::job_service(&["srpm"]);
        let srpm = dirs.registry.get("srpm").expect("srpm loads");
        omni_test_support::wait_until("srpm's snapshot", || srpm.is_prepared());
        let params = json!({"spec": "Name: hello\nVersion: 1.0\nRelease: 1\nSummary: x\nLicense: MIT\n%description\nx\n",
                            "defines": {"dist": ".oe2403"}});
        let job = jobs
            .submit(Submission {
                service: "bench".into(),
                task: "srpm".into(),
                domain: "default".into(),
                arch: "x86_64".into(),
                params: params.clone(),
                idempotency: None,
                plugin: None,
            })
            .await
            .unwrap()
            .job()
            .clone();

        println!("rendering a stored srpm job, one call at a time:");
        println!("| path | renders/s | p50 | p99 |");
        println!("| --- | --- | --- | --- |");
        let text = params.to_string();
        let direct = row(
            "the serving plugin called directly",
            &measure(|| {
                let srpm = Arc::clone(&srpm);
                let text = text.clone();
                async move {
                    let context = JobContext::new(job.id, "bench", "default", "omni-jobs", "x86_64");
                    srpm.serialize(context, text).await.unwrap();
                }
            })
            .await,
        );
        let pinned = row(
            "JobService::render, by the job's digest (serving)",
            &measure(|| async { jobs.render(&job, "omni-jobs").await.unwrap(); }).await,
        );

        // Another file replaces the plugin: the job still names the old digest.
        let bytes = omni_test_support::rebuilt(&omni_test_support::component("srpm"), "bench");
        let tmp = dirs.plugins.path().join(".srpm.wasm.tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, dirs.plugins.path().join("srpm.wasm")).unwrap();
        dirs.registry.scan();
        assert_ne!(dirs.registry.get("srpm").unwrap().digest(), job.plugin.digest);
        let kept = row(
            "JobService::render, by the job's digest (a kept, retired version)",
            &measure(|| async { jobs.render(&job, "omni-jobs").await.unwrap(); }).await,
        );
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "finding the job's version costs {:.3} ms (serving) and {:.3} ms (kept) per render at p50",
            ms(pinned.saturating_sub(direct)),
            ms(kept.saturating_sub(direct))
        );
    });
}
