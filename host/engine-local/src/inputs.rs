//! A job's input files ([`omni_engine::Inputs`]: the uploads its params name), written into the
//! pod's [`INPUTS_VOLUME`] before the first step, each as a file named by its sha256, read-only.
//! The bytes are checked as they are written: a file of another size or sha256 than its record
//! fails the job, and nothing it wrote stays.

use std::path::Path;

use futures::StreamExt as _;
use omni_engine::{INPUTS_VOLUME, Inputs};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::plan::{Plan, Volume};

/// Writes `inputs` into `dir`, the job's [`INPUTS_VOLUME`]; answers why not, for the job's
/// message.
pub(crate) async fn write(inputs: &Inputs, dir: &Path) -> Result<(), String> {
    let Some(source) = &inputs.source else {
        return Ok(());
    };
    for file in &inputs.files {
        let path = dir.join(&file.sha256);
        let written = async {
            let mut stream = source.open(&file.sha256).await?;
            let mut out = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| format!("reading it failed: {e}"))?;
                size += chunk.len() as u64;
                if size > file.size {
                    return Err(format!("it has more than its {} bytes", file.size));
                }
                hasher.update(&chunk);
                out.write_all(&chunk)
                    .await
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            out.flush()
                .await
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            let sha256 = hex::encode(hasher.finalize());
            if size != file.size || sha256 != file.sha256 {
                return Err(format!(
                    "it has {size} bytes of sha256 {sha256}, not the {} bytes recorded",
                    file.size
                ));
            }
            // The steps read it; none changes it.
            set_read_only(&path).map_err(|e| format!("cannot make it read-only: {e}"))
        }
        .await;
        if let Err(message) = written {
            let _ = std::fs::remove_file(&path);
            return Err(format!("input {}: {message}", file.sha256));
        }
    }
    Ok(())
}

fn set_read_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
}

/// Why `plan` cannot take `inputs`: its [`INPUTS_VOLUME`] is a ConfigMap's, not an empty
/// directory the engine fills.
pub(crate) fn check(plan: &Plan, inputs: &Inputs) -> Result<(), String> {
    if inputs.files.is_empty() {
        return Ok(());
    }
    match plan.volumes.get(INPUTS_VOLUME) {
        Some(Volume::ConfigMap(_)) => Err(format!(
            "volume {INPUTS_VOLUME:?} holds the job's input files and must be an emptyDir, not a \
             ConfigMap's"
        )),
        _ => Ok(()),
    }
}
