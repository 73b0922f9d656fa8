//! The wasmtime side: the Engine every plugin runs in, the on-disk compile cache, the epoch
//! ticker that enforces deadlines, and the linker that decides what a plugin can reach.
//!
//! Compiling in two tiers: a component that is not in the cache is first compiled with Winch,
//! wasmtime's baseline compiler (about five times faster to compile than Cranelift, slower code),
//! so that a new or changed plugin serves within a fraction of a second of its file's rename;
//! Cranelift then compiles it in the background, the result goes into the cache, and the plugin
//! switches to it for the calls that start after that (see [`crate::Plugin`]). A cached
//! component is always Cranelift's. The quick tier is a second Engine with the same settings
//! except the compiler and the allocator (on demand: it serves for seconds).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Strategy};

use crate::bindings::JobHandler;
use crate::error::LoadError;
use crate::limits::LimitsConfig;
use crate::state::HostState;
use crate::templates::Templates;

/// How often the epoch advances: the resolution of every deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The most linear memories one plugin instance may have (under the pooling allocator, where
/// each takes a slot of the pool shared by all plugins); a component with more fails to load.
pub const MAX_MEMORIES_PER_COMPONENT: u32 = 8;

/// How the sandbox is set up.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where compiled components are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// Call limits, per task with defaults.
    pub limits: LimitsConfig,
    /// Instances that may run at once with the pooling allocator (each reserves address space,
    /// not memory). `0` uses the on-demand allocator instead.
    pub max_instances: u32,
    /// Serve a component that is not in the cache from a quick (Winch) compile while Cranelift
    /// compiles it in the background. `false` waits for Cranelift.
    pub quick_compile: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            limits: LimitsConfig::default(),
            max_instances: 256,
            quick_compile: true,
        }
    }
}

/// The sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// wasmtime refused the Engine's configuration, or linking the host's imports.
    #[error("cannot set up the plugin sandbox: {source}")]
    Wasmtime {
        /// wasmtime's error.
        #[source]
        source: wasmtime::Error,
    },
    /// The compile cache's directory cannot be made.
    #[error("cannot set up the plugin sandbox: {}: {source}", dir.display())]
    CacheDir {
        /// The directory.
        dir: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The thread that ticks the Engines' epochs (the calls' deadlines) cannot start.
    #[error("cannot set up the plugin sandbox: {source}")]
    Ticker {
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

impl From<wasmtime::Error> for SetupError {
    fn from(source: wasmtime::Error) -> Self {
        SetupError::Wasmtime { source }
    }
}

/// Which compiler produced a plugin's code (`quick` or `optimized` in `GET /v1/plugins`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Winch: compiled fast, serving until the optimized code is ready.
    Quick,
    /// Cranelift: what the cache holds and what a plugin ends up running.
    Optimized,
}

/// An Engine and the linker of its plugins.
pub(crate) struct Backend {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
}

impl Backend {
    fn new(engine: Engine) -> Result<Self, SetupError> {
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        deny(&mut linker)?;
        quiet_clocks(&mut linker)?;
        JobHandler::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
        Ok(Self { engine, linker })
    }
}

/// The Engines and everything shared by the plugins that run in them.
pub struct Sandbox {
    optimized: Backend,
    quick: Option<Backend>,
    cache_dir: Option<PathBuf>,
    engine_key: String,
    limits: LimitsConfig,
    templates: Arc<Templates>,
    pooling: bool,
    stop_ticker: Arc<AtomicBool>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("cache_dir", &self.cache_dir)
            .field("engine_key", &self.engine_key)
            .field("pooling", &self.pooling)
            .finish_non_exhaustive()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

fn engine_config(pool: Option<PoolingAllocationConfig>, strategy: Strategy) -> Config {
    let mut config = Config::new();
    config.strategy(strategy);
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    if let Some(pool) = pool {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

impl Sandbox {
    /// Sets up the Engine (pooling allocator when `max_instances > 0` and the OS allows it), the
    /// linker and the epoch ticker thread.
    ///
    /// # Errors
    /// When wasmtime rejects the configuration or the cache directory cannot be created.
    pub fn new(config: SandboxConfig, templates: Arc<Templates>) -> Result<Self, SetupError> {
        let (engine, pooling) = Self::build_engine(&config)?;
        let quick = if config.quick_compile {
            // Winch does not serve every CPU Cranelift does; without it, loads wait for Cranelift.
            let mut quick = engine_config(None, Strategy::Winch);
            // On the calling thread, not in the compile thread pool: a new plugin's quick
            // compile must not queue behind a background Cranelift compile.
            quick.parallel_compilation(false);
            match Engine::new(&quick) {
                Ok(engine) => Some(Backend::new(engine)?),
                Err(e) => {
                    tracing::warn!("no quick compiles ({e}); plugins load on Cranelift's code");
                    None
                }
            }
        } else {
            None
        };
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| SetupError::CacheDir {
                dir: dir.clone(),
                source,
            })?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let mut ticking = vec![engine.clone()];
        ticking.extend(quick.as_ref().map(|q| q.engine.clone()));
        let stop = Arc::clone(&stop_ticker);
        std::thread::Builder::new()
            .name("omni-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.iter().for_each(Engine::increment_epoch);
                }
            })
            .map_err(|source| SetupError::Ticker { source })?;
        Ok(Self {
            optimized: Backend::new(engine)?,
            quick,
            cache_dir: config.cache_dir,
            engine_key,
            limits: config.limits,
            templates,
            pooling,
            stop_ticker,
        })
    }

    fn build_engine(config: &SandboxConfig) -> Result<(Engine, bool), SetupError> {
        if config.max_instances > 0 {
            let n = config.max_instances;
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(n)
                .total_core_instances(n * 4)
                .total_memories(n * 2)
                // A plugin of many memories (empty ones cost the limiter nothing) would take
                // the pool's slots from the others: components from Rust and componentize-py
                // have one or two.
                .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
                .total_tables(n * 4)
                .total_stacks(n)
                .max_memory_size(config.limits.max_memory())
                // Keep pages of reused slots resident instead of faulting them in on every
                // call: most of the cost of a fresh instance is first-touch page faults.
                .linear_memory_keep_resident(8 << 20)
                .table_keep_resident(1 << 20)
                .pagemap_scan(wasmtime::Enabled::Auto);
            match Engine::new(&engine_config(Some(pool), Strategy::Cranelift)) {
                Ok(engine) => return Ok((engine, true)),
                Err(e) => tracing::warn!(
                    "pooling allocator unavailable ({e}); using on-demand allocation"
                ),
            }
        }
        Engine::new(&engine_config(None, Strategy::Cranelift))
            .map(|e| (e, false))
            .map_err(SetupError::from)
    }

    pub(crate) fn backend(&self, tier: Tier) -> &Backend {
        match (tier, &self.quick) {
            (Tier::Quick, Some(quick)) => quick,
            _ => &self.optimized,
        }
    }

    /// The templates served to plugins.
    pub fn templates(&self) -> &Arc<Templates> {
        &self.templates
    }

    /// Call limits.
    pub fn limits(&self) -> &LimitsConfig {
        &self.limits
    }

    /// Whether instances come from the pooling allocator.
    pub fn is_pooling(&self) -> bool {
        self.pooling
    }

    /// Cranelift's code for a component: from the cache, keyed by the content's sha256 and the
    /// Engine's compatibility hash (an artifact compiled with other settings never loads), or
    /// compiled now and written into the cache.
    ///
    /// # Errors
    /// [`LoadError::Compile`] when the bytes are not a valid component.
    pub fn compile(&self, path: &Path, bytes: &[u8], digest: &str) -> Result<Component, LoadError> {
        match self.cached(digest) {
            Some(component) => Ok(component),
            None => self.compile_into_cache(path, bytes, digest),
        }
    }

    /// Compiles with Cranelift, bypassing the cache for reading, and writes the cache.
    pub(crate) fn compile_into_cache(
        &self,
        path: &Path,
        bytes: &[u8],
        digest: &str,
    ) -> Result<Component, LoadError> {
        let component = self.compile_with(&self.optimized, path, bytes)?;
        if let Some(cached) = self.cache_path(digest)
            && let Err(e) = write_cache(&component, &cached)
        {
            tracing::warn!(file = %cached.display(), "cannot write the compile cache: {e}");
        }
        Ok(component)
    }

    /// The fastest code to serve now: Cranelift's from the cache, else [`Sandbox::compile_quick`].
    ///
    /// # Errors
    /// [`LoadError::Compile`] when the bytes are not a valid component.
    pub(crate) fn compile_first(
        &self,
        path: &Path,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(Component, Tier), LoadError> {
        match self.cached(digest) {
            Some(component) => Ok((component, Tier::Optimized)),
            None => self.compile_quick(path, bytes, digest),
        }
    }

    /// Quick (Winch) code, without reading the cache; Cranelift's, into the cache, when quick
    /// compiling is off or Winch refuses the component (Cranelift's error is the one to report,
    /// and it may accept what Winch cannot).
    ///
    /// # Errors
    /// [`LoadError::Compile`] when the bytes are not a valid component.
    pub(crate) fn compile_quick(
        &self,
        path: &Path,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(Component, Tier), LoadError> {
        if let Some(quick) = &self.quick {
            match self.compile_with(quick, path, bytes) {
                Ok(component) => return Ok((component, Tier::Quick)),
                Err(e) => tracing::debug!("Winch refused the component, trying Cranelift: {e}"),
            }
        }
        let component = self.compile_into_cache(path, bytes, digest)?;
        Ok((component, Tier::Optimized))
    }

    fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        self.cache_file(digest, "cwasm")
    }

    /// `<stem>-<engine key>.<extension>` in the cache directory, if there is one.
    pub(crate) fn cache_file(&self, stem: &str, extension: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        Some(dir.join(format!("{stem}-{}.{extension}", self.engine_key)))
    }

    /// Deletes the compile cache's files of components whose sha256 is not in `live` (nor
    /// the snapshot a live component's pre-initialization made), and every file of another
    /// engine's build (another wasmtime, other settings: never read again). Answers how many
    /// went.
    pub(crate) fn evict_cache(&self, live: &std::collections::BTreeSet<String>) -> usize {
        let Some(dir) = &self.cache_dir else {
            return 0;
        };
        let mut stems = live.clone();
        for component in live {
            if let Some(snapshot) = crate::prepare::snapshot_of(self, component) {
                stems.insert(snapshot);
            }
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut gone = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // `<sha256>-<engine key>.<extension>`; anything else is not the cache's.
            let Some((stem, rest)) = name.split_once('-') else {
                continue;
            };
            if !crate::versions::is_digest(stem) || !rest.contains('.') {
                continue;
            }
            let ours = rest.starts_with(&format!("{}.", self.engine_key));
            if ours && stems.contains(stem) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => gone += 1,
                Err(error) => tracing::warn!(file = name, %error, "cannot evict a cache file"),
            }
        }
        gone
    }

    /// Cranelift's code for the component with this sha256, if the cache has it.
    pub(crate) fn cached(&self, digest: &str) -> Option<Component> {
        let cached = self.cache_path(digest)?;
        let artifact = std::fs::read(&cached).ok()?;
        // Read into memory rather than `deserialize_file`'s mmap: a cache file truncated in
        // place by someone else would otherwise crash the host with SIGBUS.
        // SAFETY: `cached` is in the host's own cache directory, written only by `compile` from
        // `Component::serialize` of a component with the same digest and an engine with the same
        // compatibility hash; wasmtime checks the header and compatibility again and errors
        // instead of loading a mismatched artifact.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(&self.optimized.engine, &artifact) };
        loaded
            .inspect_err(|e| {
                tracing::warn!(file = %cached.display(), "cached component unusable, recompiling: {e}");
            })
            .ok()
    }

    fn compile_with(
        &self,
        backend: &Backend,
        path: &Path,
        bytes: &[u8],
    ) -> Result<Component, LoadError> {
        Component::new(&backend.engine, bytes).map_err(|source| LoadError::Compile {
            path: path.to_owned(),
            source,
        })
    }
}

fn write_cache(component: &Component, path: &Path) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    write_then_rename(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file renamed over it: a reader sees the old
/// file or the new one, never a part.
pub(crate) fn write_then_rename(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The sha256 of `bytes` in lowercase hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Marks a trap raised because a plugin called something the sandbox withholds.
#[derive(Debug, thiserror::Error)]
#[error("{call} is not available to plugins")]
pub(crate) struct Denied {
    pub(crate) call: String,
    pub(crate) what: &'static str,
}

/// The WASI entry points to sockets. Every other WASI call on a socket needs a handle that only
/// these give, so trapping them closes the whole interface. (With an empty WASI context they
/// would merely fail; trapping tells the operator what the plugin tried.)
///
/// The filesystem is not trapped: a language runtime asks for its preopened directories when
/// it starts or raises (componentize-py's Python does, handling an exception), and gets none
/// from the empty context; with no directory to resolve a path in, every open then fails as a
/// call the plugin sees (an error code), and nothing on the host can be reached.
const DENIED: &[(&str, &str, &str)] = &[
    (
        "wasi:sockets/instance-network@0.2.12",
        "instance-network",
        "network",
    ),
    (
        "wasi:sockets/tcp-create-socket@0.2.12",
        "create-tcp-socket",
        "network",
    ),
    (
        "wasi:sockets/udp-create-socket@0.2.12",
        "create-udp-socket",
        "network",
    ),
    (
        "wasi:sockets/ip-name-lookup@0.2.12",
        "resolve-addresses",
        "network",
    ),
];

fn deny(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    for (interface, function, what) in DENIED {
        let call = format!("{interface}#{function}");
        linker
            .instance(interface)?
            .func_new(function, move |_, _, _, _| {
                Err(wasmtime::Error::new(Denied {
                    call: call.clone(),
                    what,
                }))
            })?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// Marks a trap raised because a plugin asked to wait (sleep) until after its call's deadline.
#[derive(Debug, thiserror::Error)]
#[error("asked to wait {asked:?}, past its deadline")]
pub(crate) struct WaitPastDeadline {
    pub(crate) asked: Duration,
}

/// A pollable that is ready at once.
struct Ready;

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for Ready {
    async fn ready(&mut self) {}
}

const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Clock waits that never block the host's thread. wasmtime-wasi's `subscribe-duration` and
/// `subscribe-instant` give a pollable that `wasi:io/poll#poll` (or `pollable.block`) waits on
/// in the host, where the epoch deadline cannot interrupt it: a plugin sleeping for an hour
/// would hold its thread (and a scan, when it sleeps in `describe`) for that hour. Here a wait
/// that ends within the call's deadline is ready at once (`sleep` returns at once: a plugin has
/// nothing to wait for, no file, socket or other process), and one that would end after it fails
/// the call at once, with its own error ([`WaitPastDeadline`]). Every other pollable a plugin can
/// have (stdio streams, all in memory) is always ready, so `poll` never blocks either.
fn quiet_clocks(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime::StoreContextMut;
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::DynPollable;

    fn wait(
        mut store: StoreContextMut<'_, HostState>,
        asked: Duration,
    ) -> wasmtime::Result<(Resource<DynPollable>,)> {
        let state = store.data_mut();
        if state.started.elapsed().saturating_add(asked) > state.timeout {
            state.waited = Some(asked);
            return Err(wasmtime::Error::new(WaitPastDeadline { asked }));
        }
        let table = state.table();
        let ready = table.push(Ready)?;
        Ok((wasmtime_wasi::p2::subscribe(table, ready)?,))
    }

    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |store: StoreContextMut<'_, HostState>, (nanos,): (u64,)| {
            wait(store, Duration::from_nanos(nanos))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |store: StoreContextMut<'_, HostState>, (when,): (u64,)| {
            let now = u64::try_from(store.data().started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            wait(store, Duration::from_nanos(when.saturating_sub(now)))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eviction leaves the files of live components (and the snapshot a live component's
    /// pre-initialization made) of this build, and deletes those of other components and of
    /// other builds; files that are not the cache's are left.
    #[test]
    fn the_cache_keeps_only_live_components_of_this_build() {
        let cache = tempfile::tempdir().unwrap();
        let templates = tempfile::tempdir().unwrap();
        let config = SandboxConfig {
            cache_dir: Some(cache.path().to_owned()),
            max_instances: 0,
            quick_compile: false,
            ..SandboxConfig::default()
        };
        let sandbox = Sandbox::new(config, Arc::new(Templates::new(templates.path()))).unwrap();
        let key = sandbox.engine_key.clone();
        let (live, dead, snapshot) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let files = [
            format!("{live}-{key}.cwasm"),
            format!("{live}-{key}.preinit.json"),
            format!("{snapshot}-{key}.cwasm"),
            format!("{dead}-{key}.cwasm"),
            format!("{dead}-{key}.preinit.json"),
            format!("{live}-0123456789abcdef.cwasm"),
            "notes.txt".to_owned(),
        ];
        for file in &files {
            std::fs::write(cache.path().join(file), b"x").unwrap();
        }
        std::fs::write(
            cache.path().join(&files[1]),
            format!(r#"{{"snapshot": "{snapshot}", "reads": []}}"#),
        )
        .unwrap();
        let gone = sandbox.evict_cache(&[live.clone()].into());
        assert_eq!(gone, 3);
        let mut left: Vec<String> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want = vec![
            files[0].clone(),
            files[1].clone(),
            files[2].clone(),
            files[6].clone(),
        ];
        want.sort();
        assert_eq!(left, want);
    }
}
