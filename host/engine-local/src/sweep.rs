//! Removing what jobs leave: the directories of jobs that ended `keep_finished` ago, and of
//! jobs a crash left behind ([`crate::LocalEngine::sweep`] runs [`sweep`] off the async
//! threads).

use std::time::{Duration, SystemTime};

use omni_engine::JobId;

use crate::LocalRunner;

/// The file a job's directory holds once the job has ended: its time is the end's.
pub(crate) const ENDED: &str = "ended";

/// The blocking part of [`crate::LocalEngine::sweep`]: removes what has expired under the runner's
/// root, except the directories of `running` jobs; returns the ids of the jobs removed.
pub(crate) fn sweep(
    runner: &LocalRunner,
    running: &[JobId],
    keep: Duration,
    now: SystemTime,
) -> Result<Vec<JobId>, String> {
    let root = runner.root();
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list {}: {e}", root.display())),
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.parse::<JobId>().ok()) else {
            continue; // not a job's directory
        };
        if running.contains(&id) {
            continue;
        }
        let dir = entry.path();
        // Its end, or else (not ended here: an earlier run's, or another engine's under the
        // same root) the last sign of life: the directory or its log changing.
        let modified = |name: &str| std::fs::metadata(dir.join(name)).and_then(|m| m.modified());
        let changed = modified(ENDED).or_else(|_| {
            let log = modified(crate::spool::FILE_NAME).ok();
            modified("").map(|at| log.map_or(at, |log| log.max(at)))
        });
        let expired = changed.is_ok_and(|at| now.duration_since(at).is_ok_and(|age| age > keep));
        if !expired {
            continue;
        }
        match runner.remove(&id.to_string()) {
            Ok(()) => removed.push(id),
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot remove an expired job's directory");
            }
        }
    }
    Ok(removed)
}
