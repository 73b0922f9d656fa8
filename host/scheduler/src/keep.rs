//! Keeping a job's outputs as its artifacts when it ends on an engine that has them (the local
//! engine): each file streamed into the artifact store, then their records in one batch (one
//! `job.artifacts` event), before the job's end is recorded, so whoever sees it end finds its
//! artifacts.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use omni_artifacts::{ByteStream, PutLimits};
use omni_engine::{Engine, Output};
use omni_jobs::{JobError, JobService};
use omni_store::{Artifact, JobId};

/// Files put at once.
const PUTS_IN_FLIGHT: usize = 4;
/// Attempts at keeping a job's outputs before the job fails saying why.
const ATTEMPTS: u32 = 3;

/// Keeps the outputs engine has of ended job `id`; answers why they could not be kept, when
/// they could not (the job must not succeed without them).
pub(crate) async fn keep_outputs(
    jobs: &JobService,
    engine: &Arc<dyn Engine>,
    id: JobId,
    retry: std::time::Duration,
) -> Result<(), String> {
    let outputs = match engine.outputs(id).await {
        Ok(outputs) => outputs,
        Err(error) => return Err(format!("its outputs could not be read: {error}")),
    };
    if outputs.is_empty() {
        return Ok(());
    }
    // A name that cannot be an artifact's fails the job at once: trying again changes nothing.
    for output in &outputs {
        omni_jobs::check_artifact_name(&output.name)
            .map_err(|error| format!("its artifacts could not be kept: {error}"))?;
    }
    let mut attempt = 1;
    loop {
        match keep(jobs, id, &outputs).await {
            // Purged meanwhile: nothing to keep them for.
            Ok(()) | Err(JobError::NotFound(_)) => return Ok(()),
            Err(error) if attempt >= ATTEMPTS => {
                return Err(format!("its artifacts could not be kept: {error}"));
            }
            Err(error) => {
                tracing::warn!(%error, attempt, "cannot keep the job's artifacts; trying again");
                attempt += 1;
                tokio::time::sleep(retry).await;
            }
        }
    }
}

async fn keep(jobs: &JobService, id: JobId, outputs: &[Output]) -> Result<(), JobError> {
    // Owned futures: a stream of futures borrowing from here is not `Send` for every
    // lifetime the spawned follower needs.
    let artifacts: Vec<Artifact> = futures::stream::iter(outputs.to_vec())
        .map(|output| {
            let jobs = jobs.clone();
            async move { put(&jobs, id, &output).await }
        })
        .buffered(PUTS_IN_FLIGHT)
        .try_collect()
        .await?;
    jobs.record_artifacts(id, &artifacts).await?;
    tracing::info!(
        artifacts = artifacts.len(),
        bytes = artifacts.iter().map(|a| a.size).sum::<u64>(),
        "kept the job's artifacts"
    );
    Ok(())
}

/// Streams one output into the artifact store. The file is opened without following a link
/// (the engine lists regular files only, and no process of the job is left to swap one in;
/// this holds even if one were), and must still be the size the engine saw.
async fn put(jobs: &JobService, id: JobId, output: &Output) -> Result<Artifact, JobError> {
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
        .open(&output.path)
        .await
        .map_err(|e| io_error(output, e))?;
    let meta = file.metadata().await.map_err(|e| io_error(output, e))?;
    if !meta.is_file() || meta.len() != output.size {
        return Err(io_error(
            output,
            std::io::Error::other("it changed after the job ended"),
        ));
    }
    let body: ByteStream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).boxed();
    let limits = PutLimits {
        sha256: None,
        max_size: Some(output.size),
    };
    jobs.put_artifact(id, &output.name, output.step.clone(), body, limits)
        .await
}

fn io_error(output: &Output, error: std::io::Error) -> JobError {
    JobError::Artifacts(omni_artifacts::ArtifactError::Io {
        what: format!(
            "reading output {} at {}",
            output.name,
            output.path.display()
        ),
        source: error,
    })
}
