//! The versions of plugins kept after they stop serving, so that a job is rendered by the
//! component that validated it whatever the plugins directory holds when the job starts.
//!
//! Every component the registry loads is copied, by its sha256, into the versions directory
//! (`<data_dir>/plugin-versions/<sha256>.wasm` for `omni serve`), beside what it said it is
//! (`<sha256>.json`: task, version, when it was first kept), each written to a temporary file and
//! renamed, so a reader never sees half a file; the component is written last, so one that is
//! there has its description. A plugin that stops serving (replaced by a
//! newer file, or its file removed) stays loaded among the most recently used few
//! ([`LOADED`]); an older version is loaded again from its kept copy when a job asks for it
//! (its code usually comes from the compile cache, which is keyed by the same digest), and the
//! copy's sha256 is checked first, so a damaged or altered file is never run as that version.
//!
//! Templates are versioned the same way, as sets ([`TemplateSet`]): the set of a task's
//! templates when a job is accepted is kept by its digest (`templates/<digest>.json` under the
//! versions directory, written once, read back only if its files still give its digest), and
//! a job whose templates have changed since is rendered with its kept set
//! ([`Registry::version_with_templates`]).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::plugin::Plugin;
use crate::registry::Registry;
use crate::sandbox::{Sandbox, digest};
use crate::templates::TemplateSet;

/// How many template sets stay in memory (the most recently used).
const SETS: usize = 16;

/// How many plugins that no longer serve stay loaded (the most recently used).
pub const LOADED: usize = 8;

/// How long a rollback waits for another scan's load of the file it wrote.
const ROLLBACK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The kept versions of a registry's plugins.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    /// Where components are kept by digest; `None` keeps only those still loaded.
    dir: Option<PathBuf>,
    /// Plugins that no longer serve, the most recently used first.
    loaded: Mutex<Vec<Arc<Plugin>>>,
    /// Template sets kept or read back, the most recently used first (all there is of them
    /// without a directory).
    sets: Mutex<Vec<Arc<TemplateSet>>>,
}

impl Kept {
    /// Versions kept in `dir` (made when the first component is kept), or only in memory.
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            loaded: Mutex::default(),
            sets: Mutex::default(),
        }
    }

    /// Keeps `set` (once: a set of that digest already kept stays as it is).
    ///
    /// # Errors
    /// When the directory cannot be made or written.
    pub(crate) fn keep_templates(&self, set: &Arc<TemplateSet>) -> std::io::Result<()> {
        // A set in memory is kept already (written, or read back): every submission asks, and
        // it costs no file system call then.
        if self
            .sets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|kept| kept.digest == set.digest)
        {
            return Ok(());
        }
        let Some(dir) = &self.dir else {
            self.remember_set(Arc::clone(set));
            return Ok(());
        };
        let dir = dir.join("templates");
        let path = dir.join(format!("{}.json", set.digest));
        if path.is_file() {
            self.remember_set(Arc::clone(set));
            return Ok(());
        }
        std::fs::create_dir_all(&dir)?;
        let stored = StoredSet {
            digest: set.digest.clone(),
            files: set
                .files
                .iter()
                .map(|(name, text)| (name.clone(), text.to_string()))
                .collect(),
        };
        write_atomically(&dir, &path, &serde_json::to_vec(&stored)?)?;
        self.remember_set(Arc::clone(set));
        Ok(())
    }

    /// The kept template set with `digest`, from memory or read back (and checked).
    pub(crate) fn templates(&self, digest: &str) -> Option<Arc<TemplateSet>> {
        if !is_digest(digest) {
            return None;
        }
        if let Some(set) = self
            .sets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|set| set.digest == digest)
        {
            return Some(Arc::clone(set));
        }
        let path = self
            .dir
            .as_ref()?
            .join("templates")
            .join(format!("{digest}.json"));
        let stored: StoredSet = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        let set = TemplateSet::new(
            stored
                .files
                .into_iter()
                .map(|(name, text)| (name, Arc::from(text)))
                .collect(),
        );
        if set.digest != digest {
            tracing::error!(
                path = %path.display(),
                "a kept template set does not have the digest its name says; it is not used"
            );
            return None;
        }
        let set = Arc::new(set);
        self.remember_set(Arc::clone(&set));
        Some(set)
    }

    fn remember_set(&self, set: Arc<TemplateSet>) {
        let mut sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        sets.retain(|s| s.digest != set.digest);
        sets.insert(0, set);
        sets.truncate(SETS);
    }

    /// Whether the component with `digest` is to be kept: there is a directory, and no copy in
    /// it yet.
    pub(crate) fn wants(&self, digest: &str) -> bool {
        self.dir
            .as_ref()
            .is_some_and(|dir| !component_path(dir, digest).is_file())
    }

    /// Keeps `bytes`, whose sha256 is `digest`, the component of `task`'s plugin `version`
    /// (an earlier copy is replaced by the same bytes).
    ///
    /// # Errors
    /// When the directory cannot be made or written.
    pub(crate) fn keep(
        &self,
        task: &str,
        version: &str,
        digest: &str,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        std::fs::create_dir_all(dir)?;
        let kept = KeptVersion {
            task: task.to_owned(),
            version: version.to_owned(),
            digest: digest.to_owned(),
            kept_at: Utc::now(),
        };
        write_atomically(dir, &index_path(dir, digest), &serde_json::to_vec(&kept)?)?;
        write_atomically(dir, &component_path(dir, digest), bytes)
    }

    /// The versions of `task` kept in the directory, the most recently kept first.
    pub(crate) fn list(&self, task: &str) -> Vec<KeptVersion> {
        let Some(entries) = self
            .dir
            .as_ref()
            .and_then(|dir| std::fs::read_dir(dir).ok())
        else {
            return Vec::new();
        };
        let mut kept: Vec<KeptVersion> = entries
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json")))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .filter(|k: &KeptVersion| k.task == task && is_digest(&k.digest))
            .filter(|k| {
                self.dir
                    .as_ref()
                    .is_some_and(|d| component_path(d, &k.digest).is_file())
            })
            .collect();
        kept.sort_by(|a, b| b.kept_at.cmp(&a.kept_at).then(a.digest.cmp(&b.digest)));
        kept
    }

    /// The bytes of the kept component with `digest`, checked against it.
    pub(crate) fn bytes(&self, digest: &str) -> Option<Vec<u8>> {
        if !is_digest(digest) {
            return None;
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
        Some(bytes)
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
        let bytes = self.bytes(digest)?;
        let path = component_path(self.dir.as_ref()?, digest);
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

    /// The digests of the plugins that stopped serving and stay loaded, and of the template
    /// sets in memory: the most recently used, which a prune leaves.
    pub(crate) fn recent(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        let sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        (
            loaded.iter().map(|p| p.digest().to_owned()).collect(),
            sets.iter().map(|s| s.digest.clone()).collect(),
        )
    }

    /// Deletes the kept components (and their index files) whose digest is not in
    /// `components`, and the kept template sets whose digest is not in `sets`; answers how
    /// many of each went and the digests of the components still kept.
    pub(crate) fn prune(
        &self,
        components: &BTreeSet<String>,
        sets: &BTreeSet<String>,
    ) -> (usize, usize, BTreeSet<String>) {
        let Some(dir) = &self.dir else {
            return (0, 0, BTreeSet::new());
        };
        let mut gone = (0, 0);
        let mut still = BTreeSet::new();
        for (folder, extension) in [(dir.clone(), "wasm"), (dir.join("templates"), "json")] {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(digest) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(&format!(".{extension}")))
                    .filter(|d| is_digest(d))
                else {
                    continue;
                };
                let keep = if extension == "wasm" {
                    components
                } else {
                    sets
                };
                if keep.contains(digest) {
                    if extension == "wasm" {
                        still.insert(digest.to_owned());
                    }
                    continue;
                }
                match std::fs::remove_file(entry.path()) {
                    Ok(()) if extension == "wasm" => {
                        // The index after the component: a component there has its index.
                        let _ = std::fs::remove_file(index_path(dir, digest));
                        gone.0 += 1;
                    }
                    Ok(()) => gone.1 += 1,
                    Err(error) => tracing::warn!(
                        file = %entry.path().display(),
                        %error,
                        "cannot prune a kept plugin version"
                    ),
                }
            }
        }
        (gone.0, gone.1, still)
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

impl Registry {
    /// Keeps a copy of every component it loads in `dir`, by sha256, so that the versions
    /// that no longer serve can be loaded again for the jobs they accepted (see
    /// [`crate::versions`]); without it only the few still loaded are found.
    #[must_use]
    pub fn keeping_versions_in(mut self, dir: impl Into<PathBuf>) -> Self {
        self.kept = Arc::new(Kept::new(Some(dir.into())));
        self
    }

    /// The versions of `task`'s plugin kept, the most recently kept first (none when versions
    /// are not kept).
    pub fn versions(&self, task: &str) -> Vec<KeptVersion> {
        self.kept.list(task)
    }

    /// The digest of the version of `task`'s plugin that calls itself `version`: the serving
    /// one if it does, else the most recently kept one that does.
    pub fn digest_of(&self, task: &str, version: &str) -> Option<String> {
        if let Some(serving) = self.get(task).filter(|p| p.info().version == version) {
            return Some(serving.digest().to_owned());
        }
        self.kept
            .list(task)
            .into_iter()
            .find(|kept| kept.version == version)
            .map(|kept| kept.digest)
    }

    /// Makes the kept version of `task` with `digest` the one serving: its component is written
    /// over the file that serves the task now (`<task>.wasm` when none does), through a
    /// temporary file renamed in, and the directory scanned, as an operator's own rename would
    /// be. Blocks while the component loads (from the compile cache, usually).
    ///
    /// # Errors
    /// [`RollbackError::NotKept`] when no kept version of the task has that digest;
    /// [`RollbackError::Write`] when the plugins directory cannot be written;
    /// [`RollbackError::Load`] when the version did not come to serve (its load error).
    pub fn rollback(&self, task: &str, digest: &str) -> Result<(), RollbackError> {
        let not_kept = || RollbackError::NotKept {
            task: task.to_owned(),
            digest: digest.to_owned(),
        };
        // A task name is a plain name (as `describe` must give): it makes a file name below.
        if !omni_core::Name::is_valid(task)
            || !self.kept.list(task).iter().any(|k| k.digest == digest)
        {
            return Err(not_kept());
        }
        let bytes = self.kept.bytes(digest).ok_or_else(not_kept)?;
        let path = self.get(task).map_or_else(
            || self.dir().join(format!("{task}.wasm")),
            |serving| serving.path().to_owned(),
        );
        let write = || -> std::io::Result<()> {
            let mut file = tempfile::Builder::new()
                .prefix(".rollback-")
                .suffix(".tmp")
                .tempfile_in(self.dir())?;
            std::io::Write::write_all(&mut file, &bytes)?;
            file.as_file().sync_all()?;
            file.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|source| RollbackError::Write {
            path: path.clone(),
            source,
        })?;
        self.scan();
        // The watcher may have seen the rename first: its scan loads the file, and this one
        // left it to that scan. Wait for that load (it ends: its describe has a deadline), then
        // scan again, which swaps it in if that scan has not yet.
        let waited = std::time::Instant::now();
        while self.loading().contains(&path) && waited.elapsed() < ROLLBACK_WAIT {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if self.get(task).is_none_or(|p| p.digest() != digest) {
            self.scan();
        }
        if self.get(task).is_some_and(|p| p.digest() == digest) {
            return Ok(());
        }
        let error = self
            .status(task)
            .and_then(|s| s.error)
            .unwrap_or_else(|| format!("{} does not serve {task}", path.display()));
        Err(RollbackError::Load(error))
    }

    /// The version of `task`'s plugin whose component has the sha256 `digest`: the one serving
    /// now, one that served before and is still loaded, or one loaded again from its kept copy
    /// (compiled on a blocking thread, usually from the compile cache).
    pub async fn version(&self, task: &str, digest: &str) -> Option<Arc<Plugin>> {
        if let Some(serving) = self.get(task).filter(|p| p.digest() == digest) {
            return Some(serving);
        }
        let (kept, sandbox) = (Arc::clone(&self.kept), Arc::clone(self.sandbox()));
        let (task, digest) = (task.to_owned(), digest.to_owned());
        tokio::task::spawn_blocking(move || kept.find(&sandbox, &task, &digest))
            .await
            .ok()
            .flatten()
    }
}

impl Registry {
    /// What a prune leaves of the kept versions (see [`omni_core::Plugins::prune`]): the
    /// components and template sets stored jobs record (`in_use`), the serving components and
    /// their tasks' template sets, and the most recently used of both.
    pub(crate) fn to_keep(
        &self,
        in_use: &omni_core::InUse,
    ) -> (BTreeSet<String>, BTreeSet<String>) {
        let serving = self.serving();
        let (recent, recent_sets) = self.kept.recent();
        let mut components = in_use.components.clone();
        components.extend(serving.iter().map(|p| p.digest().to_owned()));
        components.extend(recent);
        let mut sets = in_use.templates.clone();
        sets.extend(recent_sets);
        for plugin in &serving {
            let task: Arc<str> = Arc::from(plugin.info().task.as_str());
            sets.insert(self.sandbox().templates().set(&task).digest.clone());
        }
        (components, sets)
    }

    /// The digest of `task`'s templates as they are now, the set kept so that a job accepted
    /// with it can be rendered with it later (see [`crate::versions`]).
    pub fn templates_digest(&self, task: &str) -> String {
        keep_templates(&self.kept, self.sandbox(), task)
    }

    /// The version of `task`'s plugin with `digest` (as [`Registry::version`]) bound to the
    /// template set `templates`: as it is when the directory still holds that set, else
    /// rendering with the kept set. `None` when either is not kept.
    pub async fn version_with_templates(
        &self,
        task: &str,
        digest: &str,
        templates: &str,
    ) -> Option<(Arc<Plugin>, Option<Arc<TemplateSet>>)> {
        let plugin = self.version(task, digest).await?;
        let (kept, sandbox) = (Arc::clone(&self.kept), Arc::clone(self.sandbox()));
        let (task, templates) = (Arc::<str>::from(task), templates.to_owned());
        tokio::task::spawn_blocking(move || {
            if sandbox.templates().set(&task).digest == templates {
                return Some((plugin, None));
            }
            let set = kept.templates(&templates)?;
            Some((plugin, Some(set)))
        })
        .await
        .ok()
        .flatten()
    }
}

/// Deletes the kept components and template sets not in `components` and `sets`, then the
/// compile cache's files of components neither in `components` nor still kept (and of other
/// wasmtime builds). Blocks on the file system.
pub(crate) fn prune(
    kept: &Kept,
    sandbox: &Sandbox,
    components: &BTreeSet<String>,
    sets: &BTreeSet<String>,
) -> omni_core::Pruned {
    let (pruned, template_sets, mut live) = kept.prune(components, sets);
    live.extend(components.iter().cloned());
    omni_core::Pruned {
        components: pruned,
        template_sets,
        cache_files: sandbox.evict_cache(&live),
    }
}

/// Keeps `task`'s template set as it is now in `kept`; answers its digest.
pub(crate) fn keep_templates(kept: &Kept, sandbox: &Sandbox, task: &str) -> String {
    let set = sandbox.templates().set(&Arc::from(task));
    if let Err(error) = kept.keep_templates(&set) {
        tracing::error!(%error, task, "cannot keep the task's template set");
    }
    set.digest.clone()
}

/// A kept template set as its file holds it.
#[derive(Serialize, Deserialize)]
struct StoredSet {
    digest: String,
    files: std::collections::BTreeMap<String, String>,
}

/// Why [`Registry::rollback`] did not make a version serve.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// No kept version of the task has the digest.
    #[error("no version of {task} with sha256 {digest} is kept")]
    NotKept {
        /// The task.
        task: String,
        /// The digest asked for.
        digest: String,
    },
    /// The plugins directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The version was written but does not serve: its load error.
    #[error("{0}")]
    Load(String),
}

/// A kept version of a plugin, as its index file in the versions directory says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptVersion {
    /// The task it serves.
    pub task: String,
    /// The version it said it is.
    pub version: String,
    /// The sha256 of its component, hex.
    pub digest: String,
    /// When it was first kept (first loaded by a server keeping versions there).
    pub kept_at: DateTime<Utc>,
}

/// Writes `bytes` to `path` (in `dir`) through a temporary file renamed over it.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Where the description of the component with `digest` is kept under `dir`.
fn index_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join(format!("{digest}.json"))
}

/// Where the component with `digest` is kept under `dir`.
fn component_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join(format!("{digest}.wasm"))
}

/// Whether `text` is a sha256 as the registry writes it (64 lowercase hex digits): only such a
/// name is ever joined to the versions directory.
pub fn is_digest(text: &str) -> bool {
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
