//! The plugin host's performance, printed as the README's table (`make bench`).
//!
//! For each of the three task plugins: compile time (Cranelift, and the quick Winch tier a new
//! plugin serves from first), pre-initialization time, cached load time, render calls per second
//! and p50/p99 latency through the full host path (fresh instance from the pre-initialized
//! snapshot, deadline, memory and output caps) on one thread and on two, beside the same
//! rendering done natively in Rust (the SDK's harness, prepared the same way, same code) in the
//! same run, and without the snapshot, and on quick code. Then: how fast a changed plugin serves after its rename (on
//! quick code) and runs optimized code, how many calls fail while it is swapped under load, and
//! the peak RSS of a host process with the three plugins loaded from the cache. Last, the same
//! figures for the Python plugin (`sign`, built with componentize-py): its component's size,
//! compiles, a load from the compile cache (a restart), renders, the same rendering natively in
//! CPython, and how much a host's RSS grows when it loads it and renders.

use std::path::{Path, PathBuf};

use omni_test_support::{component as wasm, rebuilt, workspace};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use omni_runtime::{JobContext, Plugin, Registry, Sandbox, Tier};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(2);

fn sandbox(cache: &Path) -> Arc<Sandbox> {
    omni_test_support::sandbox_with(json!({}), Some(cache.to_owned()))
}

fn job() -> JobContext {
    omni_test_support::job("x86_64")
}

fn params(task: &str) -> Value {
    match task {
        "iso" => json!({"mode": "release", "version": "24.03-LTS",
            "packages": ["kernel", "systemd", "bash", "coreutils", "dnf", "openssh-server", "vim-enhanced",
                         "NetworkManager", "chrony", "rsyslog", "sudo", "tar", "gzip", "xz", "less"]}),
        _ => {
            json!({"spec": "Name: hello\nVersion: 1.0\nRelease: 1\nSummary: x\nLicense: MIT\n%description\nx\n",
                    "defines": {"dist": ".oe2403"}})
        }
    }
}

fn sdk_job() -> omni_sdk::Job {
    let j = job();
    omni_sdk::Job {
        id: j.job_id,
        service: j.service,
        domain: j.domain,
        namespace: j.namespace,
        name: j.name,
        arch: j.arch,
    }
}

/// Runs `f` for [`RUN`] on `threads` threads; answers (calls/s, sorted latencies).
fn measure(threads: usize, f: impl Fn() + Sync) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let lats: Vec<Vec<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut lat = Vec::new();
                    while start.elapsed() < RUN {
                        let t = Instant::now();
                        f();
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all: Vec<Duration> = lats.into_iter().flatten().collect();
    all.sort();
    (all.len() as f64 / elapsed, all)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn native(task: &str) -> Box<dyn Fn() + Sync> {
    let dir = workspace().join("templates").join(task);
    let p = params(task);
    let j = sdk_job();
    match task {
        "iso" => {
            let h = omni_sdk::testing::Harness::<omni_plugin_iso::Iso>::prepared(dir);
            Box::new(move || drop(h.serialize(&j, &p).expect("native render")))
        }
        "rpm" => {
            let h = omni_sdk::testing::Harness::<omni_plugin_rpm::Rpm>::prepared(dir);
            Box::new(move || drop(h.serialize(&j, &p).expect("native render")))
        }
        _ => {
            let h = omni_sdk::testing::Harness::<omni_plugin_srpm::Srpm>::prepared(dir);
            Box::new(move || drop(h.serialize(&j, &p).expect("native render")))
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rss-probe") {
        rss_probe(Path::new(&args[i + 1]));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--rss-probe-python") {
        rss_probe_python(Path::new(&args[i + 1]));
        return;
    }
    let cache = tempfile::tempdir().expect("tempdir");
    let sandbox = sandbox(cache.path());
    println!("pooling allocator: {}\n", sandbox.is_pooling());
    println!(
        "| plugin | compile | quick compile | pre-initialize | cached load | 1 thread: renders/s | p50 | p99 | 2 threads: renders/s | p50 | p99 | native p50 | wasm/native | p50 without snapshot | quick code p50 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for task in ["iso", "rpm", "srpm"] {
        let bytes = wasm(task);
        let path = PathBuf::from(format!("{task}.wasm"));
        let t = Instant::now();
        let plugin = Plugin::load(&sandbox, &path, &bytes).expect("load");
        let compile = t.elapsed();
        let t = Instant::now();
        plugin.prepare().expect("pre-initialize");
        let prepare = t.elapsed();
        let t = Instant::now();
        let quick = Plugin::load_quick(&sandbox, &path, &bytes).expect("quick load");
        let quick_compile = t.elapsed();
        assert_eq!(quick.tier(), Tier::Quick);
        let mut loads: Vec<Duration> = (0..20)
            .map(|_| {
                let t = Instant::now();
                drop(Plugin::load(&sandbox, &path, &bytes).expect("cached load"));
                t.elapsed()
            })
            .collect();
        loads.sort();
        let p = params(task).to_string();
        let j = job();
        let call = || drop(plugin.serialize_blocking(&j, &p).expect("render"));
        for _ in 0..200 {
            call();
        }
        let (rate1, lat1) = measure(1, call);
        let (rate2, lat2) = measure(2, call);
        let native = native(task);
        for _ in 0..200 {
            native();
        }
        let (_, nat) = measure(1, &native);
        let plain = Plugin::load(&sandbox, &path, &bytes).expect("cached load");
        let (_, plain_lat) = measure(1, || {
            drop(plain.serialize_blocking(&j, &p).expect("render"));
        });
        let (_, quick_lat) = measure(1, || {
            drop(quick.serialize_blocking(&j, &p).expect("render"));
        });
        println!(
            "| {task} | {} | {} | {} | {} | {rate1:.0} | {} | {} | {rate2:.0} | {} | {} | {} | {:.1} | {} | {} |",
            ms(compile),
            ms(quick_compile),
            ms(prepare),
            ms(pct(&loads, 0.5)),
            us(pct(&lat1, 0.5)),
            us(pct(&lat1, 0.99)),
            us(pct(&lat2, 0.5)),
            us(pct(&lat2, 0.99)),
            us(pct(&nat, 0.5)),
            pct(&lat1, 0.5).as_secs_f64() / pct(&nat, 0.5).as_secs_f64(),
            us(pct(&plain_lat, 0.5)),
            us(pct(&quick_lat, 0.5)),
        );
    }
    // The sandbox's fixed cost per call: a plugin that renders one small Job from Rust, with no
    // templates, settings or YAML.
    let hostile =
        Plugin::load(&sandbox, Path::new("hostile.wasm"), &wasm("hostile")).expect("load");
    let behave = json!({"behaviour": "behave"}).to_string();
    let j = job();
    let (rate, lat) = measure(1, || {
        drop(hostile.serialize_blocking(&j, &behave).expect("render"));
    });
    println!(
        "\nfixed cost of a call (fresh instance, limits on, a trivial plugin): p50 {}, p99 {}, {rate:.0} calls/s on one thread",
        us(pct(&lat, 0.5)),
        us(pct(&lat, 0.99))
    );
    swap_under_load(&sandbox);
    let out = std::process::Command::new(&args[0])
        .arg("--rss-probe")
        .arg(cache.path())
        .output()
        .expect("rss probe");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    python(&sandbox, cache.path(), &args[0]);
}

/// Params of a `sign` job: two RPMs.
fn sign_params() -> String {
    json!({"rpms": {
        "hello-1.0-1.x86_64.rpm": {"upload": "a".repeat(64)},
        "hello-debuginfo-1.0-1.x86_64.rpm": {"upload": "b".repeat(64)},
    }})
    .to_string()
}

/// The Python plugin's figures (a table of their own: it has no snapshot of the host's).
fn python(sandbox: &Arc<Sandbox>, cache: &Path, exe: &str) {
    let bytes = wasm("sign");
    let path = PathBuf::from("sign.wasm");
    let t = Instant::now();
    let plugin = Plugin::load(sandbox, &path, &bytes).expect("load");
    let compile = t.elapsed();
    let t = Instant::now();
    let quick = Plugin::load_quick(sandbox, &path, &bytes).expect("quick load");
    let quick_compile = t.elapsed();
    let mut loads: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            drop(Plugin::load(sandbox, &path, &bytes).expect("cached load"));
            t.elapsed()
        })
        .collect();
    loads.sort();
    let (p, j) = (sign_params(), job());
    let plain = Plugin::load(sandbox, &path, &bytes).expect("cached load");
    let (_, plain_lat) = measure(1, || {
        drop(plain.serialize_blocking(&j, &p).expect("render"));
    });
    // The host's snapshot of the SDK's `wizer-initialize` (settings parsed, templates compiled).
    let t = Instant::now();
    let prepared = plugin.prepare();
    let prepare = t.elapsed();
    let prepare = match prepared {
        Ok(()) => ms(prepare),
        Err(e) => format!("failed: {e}"),
    };
    let call = || drop(plugin.serialize_blocking(&j, &p).expect("render"));
    for _ in 0..20 {
        call();
    }
    let (rate1, lat1) = measure(1, call);
    let (rate2, lat2) = measure(2, call);
    let (_, quick_lat) = measure(1, || {
        drop(quick.serialize_blocking(&j, &p).expect("render"));
    });
    let native = native_python();
    println!(
        "\n| Python plugin | component | compile | quick compile | pre-initialize | cached load | 1 thread: renders/s | p50 | p99 | 2 threads: renders/s | p50 | p99 | native CPython p50 | p50 without snapshot | quick code p50 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| sign | {:.1} MB | {} | {} | {prepare} | {} | {rate1:.0} | {} | {} | {rate2:.0} | {} | {} | {native} | {} | {} |",
        bytes.len() as f64 / 1e6,
        ms(compile),
        ms(quick_compile),
        ms(pct(&loads, 0.5)),
        us(pct(&lat1, 0.5)),
        us(pct(&lat1, 0.99)),
        us(pct(&lat2, 0.5)),
        us(pct(&lat2, 0.99)),
        us(pct(&plain_lat, 0.5)),
        us(pct(&quick_lat, 0.5)),
    );
    let out = std::process::Command::new(exe)
        .arg("--rss-probe-python")
        .arg(cache)
        .output()
        .expect("rss probe");
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

/// The same render natively in CPython (the SDK's harness, the pinned virtualenv), and what
/// importing the plugin's modules costs there: what componentize-py's build-time
/// pre-initialization saves every call (each starts from the imported state).
fn native_python() -> String {
    let script = r#"
import json, sys, time
t = time.perf_counter()
from omni_sdk import Job
from omni_sdk.testing import Harness
from sign import Sign
imports = time.perf_counter() - t
h = Harness(Sign, sys.argv[1])
params = json.loads(sys.argv[2])
job = Job.example()
for _ in range(20):
    h.serialize(job, params)
lat = []
end = time.perf_counter() + 2
while time.perf_counter() < end:
    t = time.perf_counter()
    h.serialize(job, params)
    lat.append(time.perf_counter() - t)
lat.sort()
print(f"{lat[len(lat) // 2] * 1e6:.0f} µs ({imports * 1e3:.0f} ms to import)")
"#;
    let python = workspace().join("sdk/python");
    let venv = std::process::Command::new(python.join("env.sh"))
        .output()
        .expect("sdk/python/env.sh");
    let venv = String::from_utf8_lossy(&venv.stdout).trim().to_owned();
    let out = std::process::Command::new(format!("{venv}/bin/python"))
        .args(["-c", script])
        .arg(workspace().join("templates/sign"))
        .arg(sign_params())
        .env(
            "PYTHONPATH",
            format!(
                "{}:{venv}/vendor:{}",
                python.display(),
                workspace().join("plugins/sign").display()
            ),
        )
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// In a fresh process: the host's RSS before and after it loads the Python plugin from the
/// cache and renders with it.
fn rss_probe_python(cache: &Path) {
    let rss = || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        (kib("VmRSS:"), kib("VmHWM:"))
    };
    let sandbox = sandbox(cache);
    let (before, _) = rss();
    let plugin = Plugin::load(&sandbox, Path::new("sign.wasm"), &wasm("sign")).expect("load");
    // Serving from its snapshot, as a running host does shortly after a start (when it has one).
    let _ = plugin.prepare();
    for _ in 0..100 {
        drop(
            plugin
                .serialize_blocking(&job(), &sign_params())
                .expect("render"),
        );
    }
    let (after, peak) = rss();
    println!(
        "host RSS with the Python plugin loaded from the cache and 100 renders: {before} kB before, {after} kB after (+{:.1} MiB), peak {peak} kB (+{:.1} MiB)",
        (after.saturating_sub(before)) as f64 / 1024.0,
        (peak.saturating_sub(before)) as f64 / 1024.0
    );
}

/// Renames changed versions of the rpm plugin into a watched directory while two threads render
/// with it; reports the time from rename to the new version serving (on quick code) and to its
/// optimized code serving, and failed calls.
fn swap_under_load(sandbox: &Arc<Sandbox>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = wasm("rpm");
    std::fs::write(dir.path().join("rpm.wasm"), &bytes).expect("write");
    let registry = Arc::new(Registry::new(Arc::clone(sandbox), dir.path()));
    registry.scan();
    let _watch = runtime.block_on(async { registry.watch() }).expect("watch");
    let swap = |n: u8| {
        let changed = rebuilt(&bytes, &n.to_string());
        let digest = omni_runtime::sandbox::digest(&changed);
        let tmp = dir.path().join("rpm.wasm.tmp");
        std::fs::write(&tmp, &changed).expect("write");
        let t = Instant::now();
        std::fs::rename(&tmp, dir.path().join("rpm.wasm")).expect("rename");
        let plugin = loop {
            match registry.get("rpm").filter(|p| p.digest() == digest) {
                Some(plugin) => break plugin,
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        let serving = t.elapsed();
        while plugin.tier() != Tier::Optimized {
            std::thread::sleep(Duration::from_millis(1));
        }
        (serving, t.elapsed())
    };
    let report = |what: &str, swaps: Vec<(Duration, Duration)>| {
        let (mut serving, mut optimized): (Vec<_>, Vec<_>) = swaps.into_iter().unzip();
        serving.sort();
        optimized.sort();
        format!(
            "{what}: rename -> serving p50 {}, max {}; rename -> optimized code serving p50 {}, max {}",
            ms(pct(&serving, 0.5)),
            ms(*serving.last().expect("swaps")),
            ms(pct(&optimized, 0.5)),
            ms(*optimized.last().expect("swaps")),
        )
    };
    let idle = (0..5).map(|n| swap(100 + n)).collect();
    println!(
        "\n{}",
        report("swap while idle (5 renames of a changed rpm.wasm)", idle)
    );
    let stop = AtomicBool::new(false);
    let (ok, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut swaps = Vec::new();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let p = params("rpm").to_string();
                let j = job();
                while !stop.load(Ordering::Relaxed) {
                    match registry
                        .get("rpm")
                        .map(|plugin| plugin.serialize_blocking(&j, &p))
                    {
                        Some(Ok(_)) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
        for n in 0..10 {
            swaps.push(swap(n));
        }
        stop.store(true, Ordering::Relaxed);
    });
    println!(
        "{}; {} calls served, {} failed",
        report(
            "swap under load (10 renames of a changed rpm.wasm, 2 threads rendering)",
            swaps
        ),
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
}

/// In a fresh process: load the three plugins from the cache, render with each, report VmHWM.
fn rss_probe(cache: &Path) {
    let sandbox = sandbox(cache);
    let dir = tempfile::tempdir().expect("tempdir");
    for task in ["iso", "rpm", "srpm"] {
        std::fs::write(dir.path().join(format!("{task}.wasm")), wasm(task)).expect("write");
    }
    let registry = Registry::new(sandbox, dir.path());
    registry.scan();
    for task in ["iso", "rpm", "srpm"] {
        let plugin = registry.get(task).expect("loaded");
        // Serving from its snapshot, as a running host does shortly after a start.
        omni_test_support::wait_until(&format!("{task}'s snapshot"), || plugin.is_prepared());
        for _ in 0..100 {
            drop(
                plugin
                    .serialize_blocking(&job(), &params(task).to_string())
                    .expect("render"),
            );
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?");
    let now: Vec<String> = ["RssAnon", "RssFile", "RssShmem"]
        .iter()
        .filter_map(|key| status.lines().find(|l| l.starts_with(key)))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    println!(
        "peak RSS of a host with the three plugins loaded from the cache and rendering: {} (now: {})",
        hwm.trim_start_matches("VmHWM:").trim(),
        now.join(", ")
    );
}
