//! What the scheduler's benchmarks share.

#![allow(dead_code)] // each benchmark uses a part

use std::sync::Arc;
use std::time::Duration;

use omni_engine::Engine;
use omni_engine_local::{LocalEngine, LocalEngineConfig};
use omni_jobs::JobService;
use omni_scheduler::{Scheduler, SchedulerConfig, SchedulerHandle};

/// The `p` quantile (0 to 1) of `sorted`.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// A scheduler over `jobs` with one default local engine (job directories in the returned
/// temp dir), leading once this returns.
pub async fn local_scheduler(jobs: &JobService) -> (tempfile::TempDir, SchedulerHandle) {
    let root = tempfile::tempdir().unwrap();
    let engine = Arc::new(LocalEngine::new(
        &LocalEngineConfig::new(),
        root.path().to_owned(),
    ));
    let scheduler = Scheduler::new(
        jobs.clone(),
        vec![engine as Arc<dyn Engine>],
        SchedulerConfig::default(),
    )
    .unwrap();
    let handle = scheduler.spawn();
    while !scheduler.is_leading() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (root, handle)
}
