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

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job as KubeJob;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use omni_engine::{
    Engine, EngineError, EngineJob, JobId, LogCursor, LogStreamOf, Progress, ProgressStream,
    StepState,
};
use omni_engine_kube::{KubeEngine, KubeEngineConfig};
use omni_jobs::Submission;
use omni_scheduler::{Scheduler, SchedulerConfig};
use omni_store::JobState;
use serde_json::json;

use common::percentile;

/// Submissions in flight at once.
const SUBMITTERS: usize = 16;
/// Label patches in flight at once.
const PATCHERS: usize = 64;
/// How long all N jobs are watched, running, while the bench measures CPU.
const WATCH_WINDOW: Duration = Duration::from_secs(20);

/// When something happened to a job, as one observer saw it.
type Marks = Arc<Mutex<HashMap<JobId, Instant>>>;

fn mark(marks: &Marks, id: JobId) {
    marks.lock().unwrap().entry(id).or_insert_with(Instant::now);
}

/// The Kubernetes engine, with the kwok stage `run` on every pod and the times Omni's follower
/// saw a job's pod run and finish.
#[derive(Debug)]
struct Observed {
    engine: KubeEngine,
    pod_running: Marks,
    step_finished: Marks,
}

#[async_trait]
impl Engine for Observed {
    fn name(&self) -> &str {
        self.engine.name()
    }
    fn kind(&self) -> &'static str {
        self.engine.kind()
    }
    fn arches(&self) -> &[String] {
        self.engine.arches()
    }
    fn max_running(&self) -> usize {
        self.engine.max_running()
    }
    fn namespace(&self) -> &str {
        self.engine.namespace()
    }
    async fn check(&self) -> Result<(), EngineError> {
        self.engine.check().await
    }
    async fn submit(&self, job: &EngineJob) -> Result<(), EngineError> {
        let mut job = job.clone();
        for manifest in &mut job.rendered.manifests {
            if manifest.kind == "Job" {
                manifest.body["spec"]["template"]["metadata"]["labels"]["omni.io/kwok-stage"] =
                    json!("run");
            }
        }
        self.engine.submit(&job).await
    }
    fn progress(&self, id: JobId) -> ProgressStream {
        let running = self.pod_running.clone();
        let finished = self.step_finished.clone();
        self.engine
            .progress(id)
            .inspect(move |item| match item {
                Ok(Progress::Running)
                | Ok(Progress::Step {
                    state: StepState::Running,
                    ..
                }) => mark(&running, id),
                // The last step (the only container) ends last.
                Ok(Progress::Step {
                    state: StepState::Succeeded,
                    name,
                }) if name == "build" => mark(&finished, id),
                _ => {}
            })
            .boxed()
    }
    fn logs(&self, id: JobId, after: Option<LogCursor>) -> LogStreamOf {
        self.engine.logs(id, after)
    }
    async fn cancel(&self, id: JobId) -> Result<(), EngineError> {
        self.engine.cancel(id).await
    }
    async fn cleanup(&self, id: JobId) -> Result<(), EngineError> {
        self.engine.cleanup(id).await
    }
}

/// This process's resident set now and at its peak (kB), and its CPU time so far.
struct Usage {
    rss_kb: u64,
    hwm_kb: u64,
    cpu: Duration,
}

fn usage() -> Usage {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // After the command's closing parenthesis: fields 3.., utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // Clock ticks of 1/100 s (USER_HZ on Linux).
    let ticks = fields[11] + fields[12];
    Usage {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
        cpu: Duration::from_millis(ticks * 10),
    }
}

/// One latency line: from `from` to `to`, over the jobs that have both.
fn row(
    name: &str,
    from: &HashMap<JobId, Instant>,
    to: &HashMap<JobId, Instant>,
) -> Option<Duration> {
    let mut samples: Vec<Duration> = from
        .iter()
        .filter_map(|(id, start)| Some(to.get(id)?.saturating_duration_since(*start)))
        .collect();
    if samples.is_empty() {
        println!("| {name} | - | - | 0 |");
        return None;
    }
    samples.sort();
    let p99 = percentile(&samples, 0.99);
    println!(
        "| {name} | {} | {} | {} |",
        ms(percentile(&samples, 0.5)),
        ms(p99),
        samples.len()
    );
    Some(p99)
}

fn ms(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn mib(kb: u64) -> String {
    format!("{:.0} MiB", kb as f64 / 1024.0)
}

fn snapshot(marks: &Marks) -> HashMap<JobId, Instant> {
    marks.lock().unwrap().clone()
}

async fn wait_for(what: &str, marks: &Marks, n: usize, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        let count = marks.lock().unwrap().len();
        if count >= n {
            return true;
        }
        if Instant::now() > deadline {
            println!("(gave up waiting for {what}: {count} of {n} after {patience:?})");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bench's own view of the cluster: when it first saw each job's pod Running and
/// Succeeded, and its Job Complete.
struct Cluster {
    pod_running: Marks,
    pod_succeeded: Marks,
    job_complete: Marks,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn job_id(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<JobId> {
    meta.labels.as_ref()?.get("omni.io/job-id")?.parse().ok()
}

fn observe(client: &Client, namespace: &str) -> Cluster {
    let pod_running = Marks::default();
    let pod_succeeded = Marks::default();
    let job_complete = Marks::default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let jobs: Api<KubeJob> = Api::namespaced(client.clone(), namespace);
    let (running, succeeded) = (pod_running.clone(), pod_succeeded.clone());
    let pod_task = tokio::spawn(async move {
        let mut stream = watcher(pods, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(pod)) = stream.next().await {
            let Some(id) = job_id(&pod.metadata) else {
                continue;
            };
            match pod.status.and_then(|s| s.phase).as_deref() {
                Some("Running") => mark(&running, id),
                Some("Succeeded") => mark(&succeeded, id),
                _ => {}
            }
        }
    });
    let complete = job_complete.clone();
    let job_task = tokio::spawn(async move {
        let mut stream = watcher(jobs, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(job)) = stream.next().await {
            let Some(id) = job_id(&job.metadata) else {
                continue;
            };
            let done = job
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| c.type_ == "Complete" && c.status == "True");
            if done {
                mark(&complete, id);
            }
        }
    });
    Cluster {
        pod_running,
        pod_succeeded,
        job_complete,
        _tasks: vec![pod_task, job_task],
    }
}

/// Gives both fake nodes room for `pods` pods of the srpm plugin's size (2 CPU, 4 GiB).
async fn make_room(client: &Client, pods: usize) {
    let nodes: Api<Node> = Api::all(client.clone());
    for name in ["kwok-amd64", "kwok-arm64"] {
        let node = nodes.get_status(name).await.unwrap();
        let have: usize = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get("pods"))
            .and_then(|q| q.0.parse().ok())
            .unwrap_or(0);
        if have >= pods {
            continue;
        }
        let room = json!({"pods": pods.to_string(), "cpu": (pods * 2).to_string(),
                          "memory": format!("{}Gi", pods * 4)});
        let patch = json!({"status": {"capacity": room, "allocatable": room}});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        eprintln!("raised node {name}'s capacity to {pods} pods");
    }
}

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
