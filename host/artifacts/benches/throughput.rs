//! Artifact throughput and memory: a file of 1 GiB (or the MiB given as the first argument or
//! in `OMNI_BENCH_ARTIFACT_MIB`; `-- 2048` for the 2 GiB) streamed into the store and
//! back out, on the directory backend and on the S3 testbed (`tests/testbed/s3.sh`, started
//! through `omni_test_support::s3` unless `OMNI_TEST_S3` points elsewhere), with the S3
//! backend's defaults (8 MiB parts, 2 in flight). Prints a markdown table: MB/s each way
//! (10^6 bytes a second), and how much the process's resident memory grew at its peak while
//! streaming (the peak RSS, `VmHWM`, reset before each run through `/proc/self/clear_refs`,
//! against the RSS before; and the highest anonymous RSS, `RssAnon`, sampled every 5 ms). Exits
//! non-zero when a run grew by 64 MiB or more, the bound.
//!
//! The body is made as it is sent: 64 KiB pieces (an HTTP body's frames), each a fresh copy of
//! part of one 1 MiB buffer, so the bench itself holds nothing that grows with the file while
//! what the store keeps of the body shows.
//!
//! `cargo bench -p omni-artifacts --bench throughput [-- MIB]`

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use omni_artifacts::{ArtifactStore, ArtifactsConfig, ByteStream, PutLimits};

const PIECE: usize = 64 * 1024;
const LIMIT_MIB: f64 = 64.0;

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Memory growth while `run` runs: (peak RSS over the RSS before, peak anonymous RSS over the
/// anonymous RSS before), in MiB.
async fn measured<T>(run: impl Future<Output = T>) -> (T, f64, f64) {
    // "5" resets the peak RSS (VmHWM) to the current RSS.
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting VmHWM");
    let rss_before = status_kib("VmRSS");
    let anon_before = status_kib("RssAnon");
    let anon_peak = Arc::new(AtomicU64::new(anon_before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (anon_peak, done) = (Arc::clone(&anon_peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                anon_peak.fetch_max(status_kib("RssAnon"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = run.await;
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let hwm = status_kib("VmHWM");
    let mib = |kib: u64| kib as f64 / 1024.0;
    (
        out,
        mib(hwm.saturating_sub(rss_before)),
        mib(anon_peak
            .load(Ordering::Relaxed)
            .saturating_sub(anon_before)),
    )
}

fn body(size: u64) -> ByteStream {
    let block = omni_artifacts::conformance::data(1 << 20, 42);
    let pieces = size.div_ceil(PIECE as u64);
    futures::stream::iter(0..pieces)
        .map(move |i| {
            let at = usize::try_from(i * PIECE as u64 % (1 << 20)).unwrap();
            let len = usize::try_from((size - i * PIECE as u64).min(PIECE as u64)).unwrap();
            // A fresh buffer per piece, as a network body's frames are: pieces sharing one
            // buffer would hide what the store keeps of them.
            Ok::<Bytes, io::Error>(Bytes::copy_from_slice(&block[at..at + len]))
        })
        .boxed()
}

struct Row {
    backend: &'static str,
    put_mbs: f64,
    get_mbs: f64,
    put_growth: (f64, f64),
    get_growth: (f64, f64),
}

async fn run(backend: &'static str, store: Arc<dyn ArtifactStore>, size: u64) -> Row {
    let key = format!("bench/{}/file.iso", std::process::id());
    let t0 = Instant::now();
    let (stored, put_hwm, put_anon) =
        measured(store.put(&key, body(size), PutLimits::default())).await;
    let put_secs = t0.elapsed().as_secs_f64();
    let stored = stored.expect("put");
    assert_eq!(stored.size, size);

    let t0 = Instant::now();
    let (read, get_hwm, get_anon) = measured(async {
        let download = store.get(&key, None).await.expect("get");
        download
            .stream
            .try_fold(0u64, |n, chunk| async move { Ok(n + chunk.len() as u64) })
            .await
            .expect("reading")
    })
    .await;
    let get_secs = t0.elapsed().as_secs_f64();
    assert_eq!(read, size);
    store.delete(&key).await.expect("delete");
    let mbs = |secs: f64| size as f64 / 1e6 / secs;
    Row {
        backend,
        put_mbs: mbs(put_secs),
        get_mbs: mbs(get_secs),
        put_growth: (put_hwm, put_anon),
        get_growth: (get_hwm, get_anon),
    }
}

fn size_mib() -> u64 {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .or_else(|| std::env::var("OMNI_BENCH_ARTIFACT_MIB").ok())
        .map(|s| s.parse().expect("the size is a number of MiB"))
        .unwrap_or(1024)
}

fn main() {
    let size = size_mib() * 1024 * 1024;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let directory = ArtifactsConfig::default().build(dir.path()).unwrap();
    let server = omni_test_support::s3::server();
    let s3_config: ArtifactsConfig = toml::from_str(&format!(
        "kind = \"s3\"\nendpoint = \"{}\"\nbucket = \"{}\"\nallow_http = true\ncredentials_file = \"{}\"\n",
        server.endpoint,
        server.bucket,
        server.credentials_file.display()
    ))
    .unwrap();
    let s3 = s3_config.build(dir.path()).unwrap();

    let rows = runtime.block_on(async {
        vec![
            run("directory", directory, size).await,
            run("s3 (SeaweedFS testbed)", s3, size).await,
        ]
    });
    println!(
        "\n{} MiB, one file each way; memory growth at the peak while streaming (VmHWM over the RSS before / RssAnon sampled):\n",
        size >> 20
    );
    println!("| backend | put MB/s | get MB/s | memory growth, put | memory growth, get |");
    println!("|---|---|---|---|---|");
    let mut over = false;
    for row in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.1} / {:.1} MiB | {:.1} / {:.1} MiB |",
            row.backend,
            row.put_mbs,
            row.get_mbs,
            row.put_growth.0,
            row.put_growth.1,
            row.get_growth.0,
            row.get_growth.1
        );
        over |= [row.put_growth, row.get_growth]
            .iter()
            .any(|(hwm, anon)| *hwm >= LIMIT_MIB || *anon >= LIMIT_MIB);
    }
    if over {
        eprintln!("memory grew by {LIMIT_MIB} MiB or more while streaming");
        std::process::exit(1);
    }
}
