//! The versions of plugins kept after they stop serving, so that a job is rendered by the
//! component that validated it whatever the plugins directory holds when the job starts.
//!
//! Every component the registry loads is copied, by its sha256, into the versions directory
//! (`<data_dir>/plugin-versions/<sha256>.wasm` for `omni serve`), written to a temporary file and
//! renamed, so a reader never sees half a component. A plugin that stops serving (replaced by a
//! newer file, or its file removed) stays loaded among the most recently used few
//! ([`LOADED`]); an older version is loaded again from its kept copy when a job asks for it
//! (its code usually comes from the compile cache, which is keyed by the same digest), and the
//! copy's sha256 is checked first, so a damaged or altered file is never run as that version.
//!
//! What a version does not pin yet: the templates. Every version reads the templates directory
//! as it is at the call.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::plugin::Plugin;
use crate::sandbox::{Sandbox, digest};

/// How many plugins that no longer serve stay loaded (the most recently used).
pub const LOADED: usize = 8;

/// The kept versions of a registry's plugins.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    /// Where components are kept by digest; `None` keeps only those still loaded.
    dir: Option<PathBuf>,
    /// Plugins that no longer serve, the most recently used first.
    loaded: Mutex<Vec<Arc<Plugin>>>,
}

impl Kept {
    /// Versions kept in `dir` (made when the first component is kept), or only in memory.
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            loaded: Mutex::default(),
        }
    }

    /// Whether the component with `digest` is to be kept: there is a directory, and no copy in
    /// it yet.
    pub(crate) fn wants(&self, digest: &str) -> bool {
        self.dir
            .as_ref()
            .is_some_and(|dir| !component_path(dir, digest).is_file())
    }

    /// Keeps `bytes`, whose sha256 is `digest` (an earlier copy is replaced by the same bytes).
    ///
    /// # Errors
    /// When the directory cannot be made or written.
    pub(crate) fn keep(&self, digest: &str, bytes: &[u8]) -> std::io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let path = component_path(dir, digest);
        std::fs::create_dir_all(dir)?;
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        file.write_all(bytes)?;
        file.as_file().sync_all()?;
        file.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The kept version of `task` with `digest`: loaded already, or loaded now from its copy
    /// (which blocks while it compiles: call it off the async threads).
    pub(crate) fn find(
        &self,
        sandbox: &Arc<Sandbox>,
        task: &str,
        digest: &str,
    ) -> Option<Arc<Plugin>> {
        if !is_digest(digest) {
            return None;
        }
        {
            let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(at) = loaded
                .iter()
                .position(|p| p.digest() == digest && p.info().task == task)
            {
                let plugin = loaded.remove(at);
                loaded.insert(0, Arc::clone(&plugin));
                return Some(plugin);
            }
        }
        let path = component_path(self.dir.as_ref()?, digest);
        let bytes = std::fs::read(&path).ok()?;
        if self::digest(&bytes) != digest {
            tracing::error!(
                path = %path.display(),
                "a kept plugin version does not have the sha256 its name says; it is not run"
            );
            return None;
        }
        let plugin = match Plugin::load(sandbox, &path, &bytes) {
            Ok(plugin) => Arc::new(plugin),
            Err(error) => {
                tracing::error!(%error, "cannot load a kept plugin version");
                return None;
            }
        };
        if plugin.info().task != task {
            return None;
        }
        self.remember(Arc::clone(&plugin));
        Some(plugin)
    }

    /// Remembers a plugin that stopped serving (or was loaded again), as the most recently
    /// used.
    pub(crate) fn remember(&self, plugin: Arc<Plugin>) {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        loaded.retain(|p| p.digest() != plugin.digest());
        loaded.insert(0, plugin);
        loaded.truncate(LOADED);
    }
}

/// Where the component with `digest` is kept under `dir`.
fn component_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join(format!("{digest}.wasm"))
}

/// Whether `text` is a sha256 as the registry writes it (64 lowercase hex digits): only such a
/// name is ever joined to the versions directory.
pub(crate) fn is_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_sha256_is_a_digest() {
        assert!(is_digest(&digest(b"x")));
        for bad in [
            "",
            "../x",
            &"A".repeat(64),
            &"0".repeat(63),
            &"0".repeat(65),
        ] {
            assert!(!is_digest(bad), "{bad}");
        }
    }
}
