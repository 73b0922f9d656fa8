//! The state of one plugin instance: what the `host` import and WASI see, and the limiter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{Deterministic, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::omni::plugin::host::{Host, Level};
use crate::bindings::omni::plugin::types;
use crate::limits::Limits;
use crate::sandbox::digest;
use crate::templates::{Stamp, TemplateSet, Templates};

/// A template file an instance read.
#[derive(Debug, Clone)]
pub(crate) struct Read {
    pub(crate) name: String,
    /// The file's stamp before it was read; `None`: there was nothing to serve.
    pub(crate) stamp: Option<Stamp>,
    /// sha256 of the text served; `None`: nothing was.
    pub(crate) sha256: Option<String>,
}

/// The template files an instance read, each once.
pub(crate) type Reads = Vec<Read>;

/// The most log lines one call may write; the rest are counted and dropped.
const LOG_LINES_PER_CALL: u32 = 200;
/// The longest log line kept, in bytes.
const LOG_LINE_BYTES: usize = 4096;
/// How much of the plugin's stderr is kept (it carries the panic message).
pub(crate) const STDERR_BYTES: usize = 16 * 1024;

/// Per-instance state: one per call.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) limiter: MemoryLimiter,
    /// When the instance was made: the zero of its monotonic clock.
    pub(crate) started: Instant,
    /// How long its call may run: no wait it asks for may end later than `started` + this.
    pub(crate) timeout: Duration,
    /// Set when the plugin asked to wait past its deadline, so the trap that follows is
    /// reported as what it is.
    pub(crate) waited: Option<Duration>,
    templates: TemplateSource,
    task: Arc<str>,
    plugin: Arc<str>,
    log_lines: u32,
    /// Set on the instance a pre-initialization snapshots: what it read.
    pub(crate) reads: Option<Reads>,
}

/// Where an instance's templates come from.
#[derive(Debug, Clone)]
pub(crate) enum TemplateSource {
    /// The templates directory as it is at each read.
    Live(Arc<Templates>),
    /// One kept set (a job's, accepted with templates that have changed since).
    Fixed(Arc<TemplateSet>),
}

impl HostState {
    /// `task` names the templates directory; `plugin` (`task@version`) tags log lines.
    pub(crate) fn new(
        templates: TemplateSource,
        task: Arc<str>,
        plugin: Arc<str>,
        limits: Limits,
    ) -> Self {
        Self::with_wasi(WasiCtxBuilder::new(), templates, task, plugin, limits)
    }

    /// As [`HostState::new`], for the instance a pre-initialization snapshots: it records the
    /// template files read, and its randomness (hash seeds) is fixed, so that the same component
    /// and files always give the same snapshot, which the compile cache then finds.
    pub(crate) fn for_snapshot(
        templates: Arc<Templates>,
        task: Arc<str>,
        plugin: Arc<str>,
        limits: Limits,
    ) -> Self {
        let mut wasi = WasiCtxBuilder::new();
        wasi.secure_random(Deterministic::new(SNAPSHOT_SEED.to_vec()))
            .insecure_random(Deterministic::new(SNAPSHOT_SEED.to_vec()))
            .insecure_random_seed(u128::from_le_bytes(SNAPSHOT_SEED));
        let mut state =
            Self::with_wasi(wasi, TemplateSource::Live(templates), task, plugin, limits);
        state.reads = Some(Vec::new());
        state
    }

    fn with_wasi(
        mut wasi: WasiCtxBuilder,
        templates: TemplateSource,
        task: Arc<str>,
        plugin: Arc<str>,
        limits: Limits,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_BYTES);
        let started = Instant::now();
        // No preopened directories, no environment, no arguments, no initial directory, no
        // inherited stdio: a language runtime asking for them at start gets empty answers, and
        // every path it opens fails as a call (no directory to resolve it in). stderr is
        // captured (bounded) so a panic's message can be reported. Network access is denied by
        // the default socket address check, and sockets are trapped in the linker. The
        // monotonic clock counts from `started`, which the linker's clock waits measure against
        // (see `crate::sandbox`).
        let wasi = wasi
            .stderr(stderr.clone())
            .monotonic_clock(SinceStart(started))
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            stderr,
            limiter: MemoryLimiter::new(limits.memory),
            started,
            timeout: limits.timeout,
            waited: None,
            templates,
            task,
            plugin,
            log_lines: 0,
            reads: None,
        }
    }
}

impl HostState {
    /// The instance's resources (WASI's and the host's).
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

/// The plugin's monotonic clock: nanoseconds since its instance was made.
struct SinceStart(Instant);

impl wasmtime_wasi::HostMonotonicClock for SinceStart {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The bytes a snapshotted instance's randomness repeats: any fixed value will do.
const SNAPSHOT_SEED: [u8; 16] = *b"omni-preinit-rng";

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl Host for HostState {
    fn template(&mut self, name: String) -> Option<String> {
        let (text, stamp) = match &self.templates {
            TemplateSource::Live(templates) => templates.get_stamped(&self.task, &name),
            TemplateSource::Fixed(set) => (set.get(&name).cloned(), None),
        };
        if let Some(reads) = &mut self.reads
            && !reads.iter().any(|read| read.name == name)
        {
            reads.push(Read {
                name,
                stamp,
                sha256: text.as_ref().map(|text| digest(text.as_bytes())),
            });
        }
        text.map(|text| text.to_string())
    }

    fn log(&mut self, level: Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > LOG_LINES_PER_CALL {
            if self.log_lines == LOG_LINES_PER_CALL + 1 {
                tracing::warn!(plugin = %self.plugin, "plugin log limit reached; dropping further lines of this call");
            }
            return;
        }
        let mut end = message.len().min(LOG_LINE_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let message = &message[..end];
        match level {
            Level::Debug => tracing::debug!(plugin = %self.plugin, "{message}"),
            Level::Info => tracing::info!(plugin = %self.plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin = %self.plugin, "{message}"),
            Level::Error => tracing::error!(plugin = %self.plugin, "{message}"),
        }
    }
}

/// Caps an instance's memory: the sum of all its linear memories (a component may have many,
/// one per core module or more), and remembers that it was hit, so the trap that follows is
/// reported as what it is. Tables are capped the same way, summed.
pub(crate) struct MemoryLimiter {
    cap: usize,
    /// Bytes of every linear memory of the store, as grown so far.
    memory: usize,
    /// Elements of every table of the store.
    elements: usize,
    pub(crate) exceeded: Option<usize>,
}

/// The most table elements an instance may have, over all its tables (function references;
/// plugins need few).
const TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            memory: 0,
            elements: 0,
            exceeded: None,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Called when a memory is made (from 0) and each time one grows: the store's total
        // moves by the difference, whichever memory it is.
        let total = (self.memory - current.min(self.memory)).saturating_add(desired);
        if total > self.cap {
            self.exceeded = Some(total);
            // An error (not `Ok(false)`) traps at once, where the guest asked, instead of letting
            // its allocator turn the failure into an abort with a vaguer message.
            return Err(wasmtime::format_err!(
                "memory cap of {} bytes reached",
                self.cap
            ));
        }
        self.memory = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.elements - current.min(self.elements)).saturating_add(desired);
        if total > TABLE_ELEMENTS {
            return Ok(false);
        }
        self.elements = total;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module with three memories, each asking for 1 MiB more when `grow` is called.
    const THREE_MEMORIES: &str = r#"(module
        (memory $a 1) (memory $b 1) (memory $c 1)
        (func (export "grow") (param i32) (result i32)
            (drop (memory.grow $a (i32.const 16)))
            (drop (memory.grow $b (i32.const 16)))
            (memory.grow $c (i32.const 16))))"#;

    fn store(
        cap: usize,
    ) -> (
        wasmtime::Store<MemoryLimiter>,
        wasmtime::TypedFunc<i32, i32>,
    ) {
        let engine = wasmtime::Engine::default();
        let module =
            wasmtime::Module::new(&engine, wat::parse_str(THREE_MEMORIES).unwrap()).unwrap();
        let mut store = wasmtime::Store::new(&engine, MemoryLimiter::new(cap));
        store.limiter(|l| l);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let grow = instance.get_typed_func(&mut store, "grow").unwrap();
        (store, grow)
    }

    #[test]
    fn the_cap_is_on_the_sum_of_an_instance_s_memories() {
        // Each memory alone stays far under the cap; together they pass it.
        let (mut store, grow) = store(4 << 20);
        assert_eq!(store.data().memory, 3 * (64 << 10));
        grow.call(&mut store, 0)
            .expect("3 x (64 KiB + 1 MiB) fits in 4 MiB");
        let err = grow.call(&mut store, 0).unwrap_err();
        assert!(
            format!("{err:#}").contains("memory cap of 4194304 bytes reached"),
            "{err:#}"
        );
        let exceeded = store.data().exceeded.expect("the cap was hit");
        assert!(exceeded > 4 << 20, "{exceeded}");
    }

    #[test]
    fn memories_made_at_instantiation_count() {
        let engine = wasmtime::Engine::default();
        let module =
            wasmtime::Module::new(&engine, wat::parse_str(THREE_MEMORIES).unwrap()).unwrap();
        let mut store = wasmtime::Store::new(&engine, MemoryLimiter::new(128 << 10));
        store.limiter(|l| l);
        let err = wasmtime::Instance::new(&mut store, &module, &[]).unwrap_err();
        assert!(
            format!("{err:#}").contains("memory cap of 131072 bytes reached"),
            "{err:#}"
        );
    }
}
