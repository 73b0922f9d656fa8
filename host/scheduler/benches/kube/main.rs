//! Omni on the Kubernetes testbed at scale, printed for the README (`make bench`).
//!
//! Omni runs in this process as `omni serve` would: the job service over the real srpm plugin
//! and an embedded store, the scheduler, and the Kubernetes engine on the testbed's cluster
//! (kwok plays the pods), with `max_running` = N. N jobs are submitted (16 at a time); each
//! pod carries the kwok stage `run` (added to the rendered Job by a thin wrapper around the
//! engine, which also notes when Omni's follower sees each progress item), so it runs until the
//! bench lets it finish by removing that label (kwok's `pod-complete` then ends it). The bench
//! also watches the namespace's pods and Jobs itself, the way the engine does, to tell the
//! cluster's part of each latency from Omni's.
//!
//! `cargo bench -p omni-scheduler --bench kube -- 1000` (or `OMNI_BENCH_KUBE_JOBS=1000`; a
//! comma-separated list runs each in turn). The testbed is started when it does not run
//! (`tests/testbed/kubernetes.sh start`), or `OMNI_TEST_KUBECONFIG` names a cluster. The fake
//! nodes' capacity is raised to hold N pods (their `status`, once; the tests need far less).
//!
//! - here: one run of N jobs, its figures printed as the README's table.
//! - `observed`: the engine wrapper that adds the kwok stage and notes what Omni's follower saw.
//! - `cluster`: the bench's own watchers of the cluster, and room on the fake nodes.
//! - `marks`: when something happened to each job, as one observer saw it.
//! - `report`: this process's memory and CPU, and the latency rows.

mod cluster;
#[path = "../common/mod.rs"]
mod common;
mod marks;
mod observed;
mod report;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use omni_engine::Engine;
use omni_engine_kube::{KubeEngine, KubeEngineConfig};
use omni_jobs::Submission;
use omni_scheduler::{Scheduler, SchedulerConfig};
use omni_store::JobState;
use serde_json::json;

use cluster::{job_id, make_room, observe};
use marks::{Marks, mark, snapshot, wait_for};
use observed::Observed;
use report::{mib, ms, row, usage};

/// Submissions in flight at once.
const SUBMITTERS: usize = 16;
/// Label patches in flight at once.
const PATCHERS: usize = 64;
/// How long all N jobs are watched, running, while the bench measures CPU.
const WATCH_WINDOW: Duration = Duration::from_secs(20);

async fn run(client: &Client, kubeconfig: &std::path::Path, n: usize) {
    let namespace = format!(
        "omni-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let (_dirs, jobs) = omni_test_support::job_service(&["srpm"]);
    let config: KubeEngineConfig = serde_json::from_value(json!({
        "name": "kwok", "arches": ["x86_64", "aarch64"], "max_running": n,
        "kubeconfig": kubeconfig, "namespace": namespace,
    }))
    .unwrap();
    let engine = KubeEngine::connect(&config).await.unwrap();
    let cluster = observe(client, &namespace);
    let pod_running = Marks::default();
    let step_finished = Marks::default();
    let observed = Arc::new(Observed {
        engine,
        pod_running: pod_running.clone(),
        step_finished: step_finished.clone(),
    });
    let scheduler = Scheduler::new(
        jobs.clone(),
        vec![observed as Arc<dyn Engine>],
        SchedulerConfig::default(),
    )
    .unwrap();
    let _handle = scheduler.spawn();
    while !scheduler.is_leading() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Omni's transitions, as its subscribers get them; the peak of `running` at once.
    let recorded_running = Marks::default();
    let recorded_succeeded = Marks::default();
    let peak = Arc::new(AtomicUsize::new(0));
    let lagged = Arc::new(AtomicUsize::new(0));
    let mut events = jobs.subscribe();
    let events_task = {
        let (running, succeeded) = (recorded_running.clone(), recorded_succeeded.clone());
        let (peak, lagged) = (peak.clone(), lagged.clone());
        tokio::spawn(async move {
            let mut now_running = 0usize;
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if event.to == JobState::Running {
                            mark(&running, event.job_id);
                            now_running += 1;
                            peak.fetch_max(now_running, Ordering::Relaxed);
                        } else if event.from == Some(JobState::Running) {
                            now_running = now_running.saturating_sub(1);
                            if event.to == JobState::Succeeded {
                                mark(&succeeded, event.job_id);
                            } else {
                                eprintln!(
                                    "job {} ended {}: {:?}",
                                    event.job_id, event.to, event.message
                                );
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                        lagged.fetch_add(k as usize, Ordering::Relaxed);
                    }
                    Err(_) => return,
                }
            }
        })
    };

    let before = usage();
    let start = Instant::now();
    let accepted = Marks::default();
    let spec = "Name: hello\nVersion: 1.0\nRelease: 1\nSummary: hi\nLicense: MIT\n%description\nhi\n%files\n";
    futures::stream::iter(0..n)
        .map(|i| {
            let (jobs, accepted) = (jobs.clone(), accepted.clone());
            async move {
                let created = jobs
                    .submit(Submission {
                        service: "bench".into(),
                        task: "srpm".into(),
                        domain: "default".into(),
                        arch: if i % 2 == 0 { "x86_64" } else { "aarch64" }.into(),
                        params: json!({"spec": spec}),
                        idempotency: None,
                        plugin: None,
                    })
                    .await
                    .unwrap();
                accepted
                    .lock()
                    .unwrap()
                    .insert(created.job().id, Instant::now());
            }
        })
        .buffer_unordered(SUBMITTERS)
        .collect::<()>()
        .await;
    let submitted = start.elapsed();
    // Generous: the cluster creates the pods at its own pace.
    let patience = Duration::from_secs(120) + Duration::from_millis(100) * n as u32;
    wait_for("Omni seeing every pod run", &pod_running, n, patience).await;
    let all_running = start.elapsed();
    wait_for(
        "Omni recording every job running",
        &recorded_running,
        n,
        patience,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let watching = usage();
    eprintln!(
        "[{n}] all running after {}: RSS {}, CPU {:.1} s so far; watching for {WATCH_WINDOW:?}",
        ms(all_running),
        mib(watching.rss_kb),
        watching.cpu.as_secs_f64()
    );
    tokio::time::sleep(WATCH_WINDOW).await;
    let watched = usage();
    eprintln!(
        "[{n}] watching: {:.2} CPU-s per s; letting the pods finish",
        watched.cpu.saturating_sub(watching.cpu).as_secs_f64() / WATCH_WINDOW.as_secs_f64()
    );

    // Let every pod finish: without the label, kwok's pod-complete ends it.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    // Their names and labels only: N whole pods would be most of this process's memory.
    let listed = pods
        .list_metadata(&ListParams::default().labels("app.kubernetes.io/managed-by=omni"))
        .await
        .unwrap();
    let triggered = Marks::default();
    let finish_start = Instant::now();
    futures::stream::iter(listed.items)
        .map(|pod| {
            let (pods, triggered) = (pods.clone(), triggered.clone());
            async move {
                let (Some(id), Some(name)) = (job_id(&pod.metadata), pod.metadata.name) else {
                    return;
                };
                let patch = json!({"metadata": {"labels": {"omni.io/kwok-stage": null}}});
                pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .unwrap();
                mark(&triggered, id);
            }
        })
        .buffer_unordered(PATCHERS)
        .collect::<()>()
        .await;
    let patched = finish_start.elapsed();
    wait_for(
        "Omni recording every job succeeded",
        &recorded_succeeded,
        n,
        patience,
    )
    .await;
    let finished = finish_start.elapsed();
    let after = usage();
    events_task.abort();

    let accepted = snapshot(&accepted);
    let triggered = snapshot(&triggered);
    println!();
    println!(
        "{n} srpm jobs, max_running {n}: submitted in {}, all pods running (as Omni saw) {} after the first submit; \
         finish: {n} label patches in {}, all recorded succeeded {} after the first",
        ms(submitted),
        ms(all_running),
        ms(patched),
        ms(finished)
    );
    println!(
        "peak jobs recorded `running` at once: {} of {n}; events missed by the bench's subscriber: {}",
        peak.load(Ordering::Relaxed),
        lagged.load(Ordering::Relaxed)
    );
    println!();
    println!("| latency | p50 | p99 | jobs |");
    println!("|---|---|---|---|");
    row(
        "submit accepted -> Omni records `running` (rendered, Job and ConfigMap applied)",
        &accepted,
        &snapshot(&recorded_running),
    );
    row(
        "submit accepted -> pod Running, seen by the bench's watcher (cluster: Job controller, scheduler, kwok)",
        &accepted,
        &snapshot(&cluster.pod_running),
    );
    row(
        "submit accepted -> pod Running as Omni sees it (its step running)",
        &accepted,
        &snapshot(&pod_running),
    );
    let running_lag = row(
        "Omni's own part: pod Running seen by the bench -> seen by Omni",
        &snapshot(&cluster.pod_running),
        &snapshot(&pod_running),
    );
    row(
        "finish trigger (label removed) -> pod Succeeded, seen by the bench (kwok)",
        &triggered,
        &snapshot(&cluster.pod_succeeded),
    );
    row(
        "finish trigger -> Job Complete, seen by the bench (Job controller)",
        &triggered,
        &snapshot(&cluster.job_complete),
    );
    row(
        "finish trigger -> Omni sees the step succeeded",
        &triggered,
        &snapshot(&step_finished),
    );
    row(
        "finish trigger -> Omni records `succeeded`",
        &triggered,
        &snapshot(&recorded_succeeded),
    );
    let ended_lag = row(
        "Omni's own part: Job Complete seen by the bench -> Omni records `succeeded`",
        &snapshot(&cluster.job_complete),
        &snapshot(&recorded_succeeded),
    );
    let window = watched.cpu.saturating_sub(watching.cpu).as_secs_f64();
    println!();
    println!(
        "this process (Omni and the bench's driver and watchers): RSS {} before, {} while all {n} were watched, peak (VmHWM) {}",
        mib(before.rss_kb),
        mib(watching.rss_kb),
        mib(after.hwm_kb)
    );
    println!(
        "CPU: {:.1} s submitting and starting, {:.2} s per second while watching {n} running jobs ({:.0} s window), {:.1} s finishing",
        watching.cpu.saturating_sub(before.cpu).as_secs_f64(),
        window / WATCH_WINDOW.as_secs_f64(),
        WATCH_WINDOW.as_secs_f64(),
        after.cpu.saturating_sub(watched.cpu).as_secs_f64()
    );
    let lag = running_lag.max(ended_lag).unwrap_or_default();
    println!(
        "targets: p99 state lag (Omni's own part) {} (< 2 s: {}), RSS while watching {} (< 500 MiB: {})",
        ms(lag),
        if lag < Duration::from_secs(2) {
            "met"
        } else {
            "missed"
        },
        mib(watching.rss_kb),
        if watching.rss_kb < 500 * 1024 {
            "met"
        } else {
            "missed"
        }
    );

    drop(_handle);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces
        .delete(&namespace, &DeleteParams::background())
        .await;
}

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .chain(std::env::var("OMNI_BENCH_KUBE_JOBS").ok())
        .flat_map(|a| {
            a.split(',')
                .filter_map(|n| n.trim().replace('_', "").parse().ok())
                .collect::<Vec<usize>>()
        })
        .collect();
    let counts = if counts.is_empty() {
        vec![1000]
    } else {
        counts
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let kubeconfig = omni_test_support::kubernetes::kubeconfig();
        let file = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .unwrap();
        let client = Client::try_from(config).unwrap();
        make_room(&client, counts.iter().copied().max().unwrap_or(0) + 200).await;
        for n in counts {
            run(&client, &kubeconfig, n).await;
        }
    });
}
