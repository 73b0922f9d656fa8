//! The plugins directory: which component serves which task, hot reload, and per-file status.
//!
//! A scan reads every `*.wasm` file of the directory (hidden files and other names, such as
//! `rpm.wasm.tmp` being written, are ignored), loads the new or changed ones off the request
//! path, and swaps the whole task table atomically. Calls in flight keep the [`Plugin`] they
//! started with (an `Arc`), so a swap or removal never breaks them.
//!
//! - A file that fails to load is reported with its error; the version it replaced keeps
//!   serving.
//! - A file that changes while it is read (an author copying it in place instead of writing
//!   elsewhere and renaming) is not loaded; the next change event scans it again.
//! - Two files claiming one task: the one that already serves it, else the older file, keeps
//!   it; the other is reported as a conflict.
//! - A removed file unloads its task for new calls.
//! - Loads do not wait for one another: each new or changed file loads on a thread of its own,
//!   its `describe` under its task's limits ([`Plugin`] runs it as the task the file is named
//!   for), and scans run at once; only the swap of the table is serialized. A plugin whose
//!   `describe` runs to its deadline holds back nothing but its own load.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::error::LoadError;
use crate::plugin::Plugin;
use crate::sandbox::{Sandbox, Tier, digest};
use crate::versions::Kept;

/// The largest plugin file loaded, in bytes.
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;
/// How long the watcher waits for a burst of file events to settle before scanning.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often the polling fallback looks at the directory when native watching is unavailable.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The status of one plugin file.
#[derive(Debug, Clone)]
pub enum FileStatus {
    /// It serves its task.
    Ready,
    /// Its last load failed (an older version of it may still serve).
    Error(String),
}

#[derive(Debug, Clone)]
struct FileEntry {
    modified: SystemTime,
    len: u64,
    digest: Option<String>,
    /// The plugin loaded from this file (the newest that loaded), serving unless in conflict.
    plugin: Option<Arc<Plugin>>,
    /// The last load error of this file, cleared by a successful load.
    error: Option<(String, DateTime<Utc>)>,
}

impl FileEntry {
    /// Whether the entry is of the file as `meta` describes it.
    fn is_version(&self, meta: &std::fs::Metadata) -> bool {
        Version {
            modified: self.modified,
            len: self.len,
        } == Version::of(meta)
    }
}

/// A version of a plugin file, as the directory shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    modified: SystemTime,
    len: u64,
}

impl Version {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            len: meta.len(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct Snapshot {
    tasks: HashMap<String, Arc<Plugin>>,
    files: BTreeMap<PathBuf, FileEntry>,
}

/// What `GET /v1/plugins` shows for one plugin file.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    /// The task it serves, when it loaded.
    pub task: Option<String>,
    /// Its version.
    pub version: Option<String>,
    /// sha256 of the serving component.
    pub digest: Option<String>,
    /// One line for humans.
    pub description: Option<String>,
    /// API arches.
    pub arches: Vec<String>,
    /// JSON Schema of the params.
    pub params_schema: Option<Value>,
    /// Step names.
    pub steps: Vec<String>,
    /// When the serving version was loaded.
    pub loaded_at: Option<DateTime<Utc>>,
    /// The serving version's code: `quick` (Winch's, while Cranelift compiles the optimized
    /// code in the background) or `optimized`.
    pub tier: Option<Tier>,
    /// Whether calls start from a pre-initialized snapshot (settings parsed, templates compiled
    /// once): true once it is made, false while its template files changed since and a new one
    /// is made, or when the component does not export `wizer-initialize`.
    pub preinitialized: Option<bool>,
    /// `ready` when a version of it serves, `error` when none does.
    pub status: &'static str,
    /// The last load error of the file, even while an older version serves.
    pub error: Option<String>,
    /// When that error happened.
    pub error_at: Option<DateTime<Utc>>,
    /// The file's name in the plugins directory.
    pub file: String,
}

/// The plugins of one directory.
pub struct Registry {
    sandbox: Arc<Sandbox>,
    dir: PathBuf,
    state: ArcSwap<Snapshot>,
    /// Serializes the swaps of `state` (not the scans: loads run outside it).
    swap_lock: Mutex<()>,
    /// The files being loaded, and which version of each.
    loading: Mutex<HashMap<PathBuf, Version>>,
    scanned: AtomicBool,
    /// The versions that no longer serve, kept for the jobs they accepted.
    pub(crate) kept: Arc<Kept>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl omni_core::Plugins for Registry {
    fn plugin(&self, task: &str) -> Option<Arc<dyn omni_core::TaskPlugin>> {
        let plugin = self.get(task)?;
        Some(Arc::new(crate::plugin::Shared(plugin, None)))
    }

    async fn version(&self, task: &str, digest: &str) -> Option<Arc<dyn omni_core::TaskPlugin>> {
        let plugin = self.version(task, digest).await?;
        Some(Arc::new(crate::plugin::Shared(plugin, None)))
    }

    fn digest_of(&self, task: &str, version: &str) -> Option<String> {
        self.digest_of(task, version)
    }

    async fn templates(&self, task: &str) -> Option<String> {
        let (kept, sandbox) = (Arc::clone(&self.kept), Arc::clone(self.sandbox()));
        let task = task.to_owned();
        tokio::task::spawn_blocking(move || crate::versions::keep_templates(&kept, &sandbox, &task))
            .await
            .ok()
    }

    async fn version_with_templates(
        &self,
        task: &str,
        digest: &str,
        templates: &str,
    ) -> Option<Arc<dyn omni_core::TaskPlugin>> {
        let (plugin, set) = self.version_with_templates(task, digest, templates).await?;
        Some(Arc::new(crate::plugin::Shared(plugin, set)))
    }

    async fn prune(&self, in_use: &omni_core::InUse) -> omni_core::Pruned {
        let (components, sets) = self.to_keep(in_use);
        let (kept, sandbox) = (Arc::clone(&self.kept), Arc::clone(self.sandbox()));
        tokio::task::spawn_blocking(move || {
            crate::versions::prune(&kept, &sandbox, &components, &sets)
        })
        .await
        .unwrap_or_default()
    }
}

impl Registry {
    /// A registry of the plugins in `dir`; nothing is loaded until [`Registry::scan`].
    pub fn new(sandbox: Arc<Sandbox>, dir: impl Into<PathBuf>) -> Self {
        Self {
            sandbox,
            dir: dir.into(),
            state: ArcSwap::from_pointee(Snapshot::default()),
            swap_lock: Mutex::new(()),
            loading: Mutex::new(HashMap::new()),
            scanned: AtomicBool::new(false),
            kept: Arc::new(Kept::new(None)),
        }
    }

    /// The plugins directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sandbox plugins run in.
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// Whether a scan has completed (for readiness).
    pub fn is_scanned(&self) -> bool {
        self.scanned.load(Ordering::Acquire)
    }

    /// Every plugin serving a task now.
    pub(crate) fn serving(&self) -> Vec<Arc<Plugin>> {
        self.state.load().tasks.values().cloned().collect()
    }

    /// The plugin serving `task` now.
    pub fn get(&self, task: &str) -> Option<Arc<Plugin>> {
        self.state.load().tasks.get(task).cloned()
    }

    /// Every plugin file and its status, ordered by task then file.
    pub fn list(&self) -> Vec<PluginStatus> {
        let state = self.state.load();
        let mut list: Vec<PluginStatus> = state
            .files
            .iter()
            .map(|(path, entry)| {
                let serving = entry.plugin.as_ref().filter(|p| {
                    state
                        .tasks
                        .get(&p.info().task)
                        .is_some_and(|s| Arc::ptr_eq(s, p))
                });
                status_of(path, entry, serving)
            })
            .collect();
        list.sort_by(|a, b| (&a.task, &a.file).cmp(&(&b.task, &b.file)));
        list
    }

    /// The status of the file serving `task`.
    pub fn status(&self, task: &str) -> Option<PluginStatus> {
        let state = self.state.load();
        let plugin = state.tasks.get(task)?;
        let entry = state.files.get(plugin.path())?;
        Some(status_of(plugin.path(), entry, Some(plugin)))
    }

    /// Scans the directory now, on a blocking thread; see the module docs for the rules.
    pub async fn rescan(self: &Arc<Self>) {
        let this = Arc::clone(self);
        if let Err(e) = tokio::task::spawn_blocking(move || this.scan()).await {
            tracing::error!("plugin scan failed: {e}");
        }
    }

    /// Scans the directory on the calling thread (it compiles: keep it off async workers), and
    /// returns once the files it found new or changed are loaded (each on a thread of its own,
    /// under its own limits) and the task table is swapped.
    ///
    /// Loading is not serialized: scans may run at once, and only the swap of their results
    /// takes a lock, briefly. A file whose same version another scan is loading is left to that
    /// scan, so a plugin whose `describe` runs until its deadline delays only the scan that
    /// loads it, never the reloads of other files.
    pub fn scan(&self) {
        let current = self.state.load_full();
        let listing = self.list_files();
        let loaded: Vec<(PathBuf, FileEntry)> = std::thread::scope(|scope| {
            let loads: Vec<_> = listing
                .iter()
                .filter(|(path, meta)| {
                    !current
                        .files
                        .get(path)
                        .is_some_and(|entry| entry.is_version(meta))
                })
                .filter_map(|(path, meta)| {
                    let version = Version::of(meta);
                    let mut loading = lock(&self.loading);
                    if loading.get(path) == Some(&version) {
                        return None;
                    }
                    loading.insert(path.clone(), version);
                    let previous = current.files.get(path);
                    Some(scope.spawn(move || {
                        let entry = self.scan_file(path, meta, previous);
                        let mut loading = lock(&self.loading);
                        if loading.get(path) == Some(&version) {
                            loading.remove(path);
                        }
                        (path.clone(), entry)
                    }))
                })
                .collect();
            loads
                .into_iter()
                .filter_map(|load| load.join().ok())
                .collect()
        });
        self.swap(loaded);
        self.scanned.store(true, Ordering::Release);
    }

    /// The plugin files being loaded now (their `describe` may still run), in no order.
    pub fn loading(&self) -> Vec<PathBuf> {
        lock(&self.loading).keys().cloned().collect()
    }

    /// Puts the entries a scan loaded into the task table, drops the files that are gone, and
    /// swaps the table; under the swap lock. An entry made of a version of its file that is no
    /// longer on disk does not replace one of the version that is (a later scan loaded it).
    fn swap(&self, loaded: Vec<(PathBuf, FileEntry)>) {
        let _guard = lock(&self.swap_lock);
        let old = self.state.load_full();
        let mut files = old.files.clone();
        for (path, entry) in loaded {
            let on_disk = std::fs::metadata(&path).ok();
            let stale = |e: &FileEntry| !on_disk.as_ref().is_some_and(|m| e.is_version(m));
            if stale(&entry) && files.get(&path).is_some_and(|newer| !stale(newer)) {
                continue;
            }
            files.insert(path, entry);
        }
        files.retain(|path, _| path.is_file());

        // Assign tasks: the file already serving a task keeps it, then older files first.
        let mut order: Vec<&PathBuf> = files.keys().collect();
        order.sort_by_key(|path| {
            let entry = &files[*path];
            let owner = entry.plugin.as_ref().is_some_and(|p| {
                old.tasks
                    .get(&p.info().task)
                    .is_some_and(|serving| serving.path() == p.path())
            });
            (!owner, entry.modified, (*path).clone())
        });
        let mut tasks: HashMap<String, Arc<Plugin>> = HashMap::new();
        let mut conflicts = Vec::new();
        for path in order {
            let Some(plugin) = &files[path].plugin else {
                continue;
            };
            let task = plugin.info().task.clone();
            match tasks.get(&task) {
                Some(other) => conflicts.push(LoadError::Conflict {
                    path: path.clone(),
                    task,
                    other: other.path().to_owned(),
                }),
                None => {
                    tasks.insert(task, Arc::clone(plugin));
                }
            }
        }
        for conflict in conflicts {
            let LoadError::Conflict { path, .. } = &conflict else {
                continue;
            };
            tracing::warn!("{conflict}");
            if let Some(entry) = files.get_mut(path) {
                entry.error = Some((conflict.to_string(), Utc::now()));
            }
        }
        for (task, plugin) in &tasks {
            if !old.tasks.get(task).is_some_and(|p| Arc::ptr_eq(p, plugin)) {
                tracing::info!(
                    task,
                    plugin = plugin.label(),
                    digest = plugin.digest(),
                    "plugin ready"
                );
            }
        }
        for task in old.tasks.keys().filter(|t| !tasks.contains_key(*t)) {
            tracing::info!(task, "plugin unloaded");
        }
        for (task, plugin) in &old.tasks {
            if !tasks.get(task).is_some_and(|p| Arc::ptr_eq(p, plugin)) {
                self.kept.remember(Arc::clone(plugin));
            }
        }
        self.state.store(Arc::new(Snapshot { tasks, files }));
    }

    fn list_files(&self) -> Vec<(PathBuf, std::fs::Metadata)> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "cannot read the plugins directory: {e}");
                return Vec::new();
            }
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                !name.starts_with('.') && name.ends_with(".wasm")
            })
            .filter_map(|e| {
                let meta = std::fs::metadata(e.path()).ok()?;
                meta.is_file().then(|| (e.path(), meta))
            })
            .collect()
    }

    fn scan_file(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
        previous: Option<&FileEntry>,
    ) -> FileEntry {
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some(previous) = previous.filter(|e| e.is_version(meta)) {
            return previous.clone();
        }
        let mut entry = FileEntry {
            modified,
            len: meta.len(),
            digest: None,
            plugin: previous.and_then(|p| p.plugin.clone()),
            error: None,
        };
        let fail = |mut entry: FileEntry, error: String| {
            crate::metrics::load(false);
            tracing::warn!("plugin not loaded: {error}");
            entry.error = Some((error, Utc::now()));
            entry
        };
        if meta.len() > MAX_PLUGIN_BYTES {
            let e = LoadError::TooLarge {
                path: path.to_owned(),
                size: meta.len(),
                limit: MAX_PLUGIN_BYTES,
            };
            return fail(entry, e.to_string());
        }
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(source) => {
                return fail(
                    entry,
                    LoadError::Read {
                        path: path.to_owned(),
                        source,
                    }
                    .to_string(),
                );
            }
        };
        let after = std::fs::metadata(path).ok();
        if after.as_ref().and_then(|m| m.modified().ok()) != Some(modified)
            || bytes.len() as u64 != meta.len()
        {
            // Keep the stale modified time so the next scan reads it again.
            entry.modified = SystemTime::UNIX_EPOCH;
            return fail(
                entry,
                format!(
                    "{}: changed while it was read (still being written?)",
                    path.display()
                ),
            );
        }
        let digest = digest(&bytes);
        if let Some(previous) = previous.filter(|p| p.digest.as_deref() == Some(digest.as_str())) {
            return FileEntry {
                modified,
                len: meta.len(),
                ..previous.clone()
            };
        }
        entry.digest = Some(digest.clone());
        // A copy to keep once it has loaded (none when one is kept already).
        let copy = self.kept.wants(&digest).then(|| bytes.clone());
        match Plugin::load_tiered(&self.sandbox, path, bytes, digest.clone()) {
            Ok(plugin) => {
                let info = plugin.info();
                if let Some(copy) = copy
                    && let Err(error) = self.kept.keep(&info.task, &info.version, &digest, &copy)
                {
                    // Jobs it accepts render while it serves or stays loaded, but not later.
                    tracing::error!(
                        path = %path.display(), %error, "cannot keep a copy of a plugin version"
                    );
                }
                crate::metrics::load(true);
                entry.plugin = Some(plugin);
                entry
            }
            Err(e) => fail(entry, e.to_string()),
        }
    }

    /// Watches the directory and rescans on changes (debounced), with a polling fallback when
    /// the OS cannot watch. Creates the directory when it is missing. Watching stops when the
    /// returned handle is dropped.
    ///
    /// # Errors
    /// When neither native watching nor polling can be set up.
    pub fn watch(self: &Arc<Self>) -> Result<WatchHandle, notify::Error> {
        use notify::RecursiveMode;
        use notify_debouncer_full::{
            DebounceEventResult, FileIdMap, new_debouncer, new_debouncer_opt,
        };
        std::fs::create_dir_all(&self.dir).map_err(notify::Error::io)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let handler = move |result: DebounceEventResult| {
            if let Err(errors) = &result {
                tracing::warn!("plugin watcher: {errors:?}");
            }
            // A full channel means a scan is already pending: it will see this change too.
            let _ = tx.try_send(());
        };
        let watcher = match new_debouncer(DEBOUNCE, None, handler.clone())
            .and_then(|mut d| d.watch(&self.dir, RecursiveMode::NonRecursive).map(|()| d))
        {
            Ok(d) => Watcher::Native(d),
            Err(e) => {
                tracing::warn!(
                    "native file watching unavailable ({e}); polling every {POLL_INTERVAL:?}"
                );
                let config = notify::Config::default().with_poll_interval(POLL_INTERVAL);
                let mut d = new_debouncer_opt::<_, notify::PollWatcher, _>(
                    DEBOUNCE,
                    None,
                    handler,
                    FileIdMap::new(),
                    config,
                )?;
                d.watch(&self.dir, RecursiveMode::NonRecursive)?;
                Watcher::Poll(d)
            }
        };
        let registry = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                let Some(registry) = registry.upgrade() else {
                    break;
                };
                // Not awaited: a scan that loads a slow plugin must not hold back the next.
                tokio::spawn(async move { registry.rescan().await });
            }
        });
        Ok(WatchHandle {
            _watcher: watcher,
            task,
        })
    }
}

fn status_of(path: &Path, entry: &FileEntry, serving: Option<&Arc<Plugin>>) -> PluginStatus {
    let info = serving.map(|p| p.info());
    PluginStatus {
        task: info.map(|i| i.task.clone()),
        version: info.map(|i| i.version.clone()),
        digest: serving.map(|p| p.digest().to_owned()),
        description: info.map(|i| i.description.clone()),
        arches: info.map(|i| i.arches.clone()).unwrap_or_default(),
        params_schema: info.map(|i| i.params_schema.clone()),
        steps: info.map(|i| i.steps.clone()).unwrap_or_default(),
        loaded_at: serving.map(|p| p.loaded_at()),
        tier: serving.map(|p| p.tier()),
        preinitialized: serving.map(|p| p.is_prepared()),
        status: if serving.is_some() { "ready" } else { "error" },
        error: entry.error.as_ref().map(|(e, _)| e.clone()),
        error_at: entry.error.as_ref().map(|(_, at)| *at),
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// Held only so that dropping the handle stops watching.
#[allow(dead_code)]
enum Watcher {
    Native(
        notify_debouncer_full::Debouncer<
            notify::RecommendedWatcher,
            notify_debouncer_full::RecommendedCache,
        >,
    ),
    Poll(notify_debouncer_full::Debouncer<notify::PollWatcher, notify_debouncer_full::FileIdMap>),
}

/// Keeps the plugins directory watched while it lives.
pub struct WatchHandle {
    _watcher: Watcher,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for WatchHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHandle").finish_non_exhaustive()
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
