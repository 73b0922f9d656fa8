//! Pre-initialization: a component that exports `wizer-initialize` (the WIT world
//! `job-handler-preinit`; the SDK exports it) is run once, that function called, and the
//! instance's memories and globals written into a new component with Wasmtime's pre-initializer
//! (wizer). Every call then starts from that snapshot — a fresh instance still, its memory a
//! copy-on-write image — instead of parsing the operator's settings and compiling templates
//! again.
//!
//! The snapshot holds what the initialization read from `templates/<task>/`, so it serves only
//! while those files are as they were read (their [`Stamp`](crate::templates::Stamp)s, checked on
//! every call); after an edit, calls go to the plain component, which reads the templates
//! itself, until a new snapshot is ready.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmtime::component::{Component, Instance, Lift, WasmList};
use wasmtime::{AsContextMut, Store};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use crate::error::PrepareError;
use crate::limits::Limits;
use crate::sandbox::{Sandbox, digest, write_then_rename};
use crate::state::{HostState, Read, Reads};

/// The export the host calls before a snapshot; its name is the one wizer looks for.
pub(crate) const INITIALIZE: &str = "wizer-initialize";

/// Whether `component` can be pre-initialized.
pub(crate) fn exports_initialize(component: &Component) -> bool {
    component.get_export_index(None, INITIALIZE).is_some()
}

/// What the compile cache keeps of a snapshot, beside its compiled code
/// (`<component sha256>-<engine key>.preinit.json`): which snapshot the component gave, and the
/// template files its initialization read with the sha256 of their text then.
#[derive(Serialize, Deserialize)]
struct Manifest {
    snapshot: String,
    reads: Vec<ManifestRead>,
}

#[derive(Serialize, Deserialize)]
struct ManifestRead {
    name: String,
    sha256: Option<String>,
}

/// The sha256 of the snapshot the compile cache holds for the component with sha256
/// `component`, if it holds one.
pub(crate) fn snapshot_of(sandbox: &Sandbox, component: &str) -> Option<String> {
    let manifest = sandbox.cache_file(component, "preinit.json")?;
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(manifest).ok()?).ok()?;
    Some(manifest.snapshot).filter(|s| crate::versions::is_digest(s))
}

/// The snapshot made earlier of the component with sha256 `component`, from the compile cache,
/// if every template file its initialization read still has the text it had: a restart does
/// not initialize, snapshot or compile anything again.
pub(crate) fn cached_snapshot(
    sandbox: &Sandbox,
    component: &str,
    task: &Arc<str>,
) -> Option<(Component, Reads)> {
    let manifest = sandbox.cache_file(component, "preinit.json")?;
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(manifest).ok()?).ok()?;
    // It names a file of the cache: only a sha256 in hex may.
    if manifest.snapshot.len() != 64 || !manifest.snapshot.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut reads = Vec::with_capacity(manifest.reads.len());
    for read in manifest.reads {
        let (text, stamp) = sandbox.templates().get_stamped(task, &read.name);
        let sha256 = text.map(|text| digest(text.as_bytes()));
        if sha256 != read.sha256 {
            return None;
        }
        reads.push(Read {
            name: read.name,
            stamp,
            sha256,
        });
    }
    Some((sandbox.cached(&manifest.snapshot)?, reads))
}

/// A snapshot of `bytes` (sha256 `component`) after `wizer-initialize`, compiled (Cranelift,
/// through the compile cache: the same component and template files give the same snapshot,
/// byte for byte), and what the initialization read.
///
/// # Errors
/// Why it could not be made, for the host's log; the plugin keeps serving without it.
pub(crate) fn snapshot(
    sandbox: &Sandbox,
    path: &Path,
    bytes: &[u8],
    component: &str,
    task: &Arc<str>,
    label: &Arc<str>,
    limits: Limits,
) -> Result<(Component, Reads), PrepareError> {
    let mut wizer = Wizer::new();
    // A component's export is a lifted core function: removing that from the core module (the
    // default) leaves the lift dangling. Kept, it is never called on a snapshot.
    wizer.keep_init_func(true);
    let (cx, instrumented) = wizer
        .instrument_component(bytes)
        .map_err(|source| PrepareError::Instrument { source })?;
    // It runs once: quick code (not cached) is the cheapest way to run it, where there is any.
    let (code, tier) = sandbox.compile_quick(path, &instrumented, &digest(&instrumented))?;
    let backend = sandbox.backend(tier);
    let state = HostState::for_snapshot(
        Arc::clone(sandbox.templates()),
        Arc::clone(task),
        Arc::clone(label),
        limits,
    );
    let mut store = Store::new(&backend.engine, state);
    crate::plugin::limit(&mut store, limits);
    let instance = backend
        .linker
        .instantiate(&mut store, &code)
        .map_err(|source| PrepareError::Instantiate { source })?;
    let init = instance
        .get_typed_func::<(), ()>(&mut store, INITIALIZE)
        .map_err(|source| PrepareError::NoInitialize { source })?;
    init.call(&mut store, ())
        .map_err(|source| PrepareError::Initialize { source })?;
    let mut state = Snapshotting {
        store: &mut store,
        instance,
        error: None,
    };
    // Every call of `Snapshotting` is synchronous: the future is ready when first polled.
    let snapshot = futures::executor::block_on(wizer.snapshot_component(&cx, &mut state));
    if let Some((export, source)) = state.error {
        return Err(PrepareError::ReadInstance { export, source });
    }
    let snapshot = snapshot.map_err(|source| PrepareError::Write { source })?;
    let reads = store.data_mut().reads.take().unwrap_or_default();
    let snapshot_digest = digest(&snapshot);
    let compiled = sandbox.compile(path, &snapshot, &snapshot_digest)?;
    if let Some(file) = sandbox.cache_file(component, "preinit.json") {
        let manifest = Manifest {
            snapshot: snapshot_digest,
            reads: reads
                .iter()
                .map(|read| ManifestRead {
                    name: read.name.clone(),
                    sha256: read.sha256.clone(),
                })
                .collect(),
        };
        let written = serde_json::to_vec(&manifest)
            .map_err(std::io::Error::other)
            .and_then(|json| write_then_rename(&file, &json));
        if let Err(e) = written {
            tracing::warn!(file = %file.display(), "cannot write the compile cache: {e}");
        }
    }
    Ok((compiled, reads))
}

/// The initialized instance, as wizer reads it: through the accessor functions its
/// instrumentation added. A failed read is kept (the trait has no error path) and the snapshot
/// refused.
struct Snapshotting<'a> {
    store: &'a mut Store<HostState>,
    instance: Instance,
    /// The first read that failed: its export (`instance#func`) and why.
    error: Option<(String, wasmtime::Error)>,
}

impl Snapshotting<'_> {
    fn call<R: Lift + 'static, T: Default>(
        &mut self,
        instance: &str,
        func: &str,
        read: impl FnOnce(&mut Store<HostState>, R) -> T,
    ) -> T {
        if self.error.is_some() {
            return T::default();
        }
        let store = &mut *self.store;
        let initialized = self.instance;
        let answer = (|| -> wasmtime::Result<T> {
            let (_, exported) = initialized
                .get_export(store.as_context_mut(), None, instance)
                .ok_or_else(|| wasmtime::format_err!("no export {instance}"))?;
            let (_, func_index) = initialized
                .get_export(store.as_context_mut(), Some(&exported), func)
                .ok_or_else(|| wasmtime::format_err!("no export {instance}#{func}"))?;
            let f = initialized.get_typed_func::<(), (R,)>(store.as_context_mut(), func_index)?;
            let (value,) = f.call(store.as_context_mut(), ())?;
            Ok(read(store, value))
        })();
        answer.unwrap_or_else(|e| {
            self.error = Some((format!("{instance}#{func}"), e));
            T::default()
        })
    }
}

impl ComponentInstanceState for Snapshotting<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        let mut contents = Some(contents);
        self.call(instance, func, |store, list: WasmList<u8>| {
            if let Some(contents) = contents.take() {
                contents(list.as_le_slice(&*store));
            }
        });
        if let Some(contents) = contents {
            // Wizer's contract: `contents` is called. With nothing read, the snapshot is refused.
            contents(&[]);
        }
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, value| value)
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, value| value)
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, value: f32| value.to_bits())
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, value: f64| value.to_bits())
    }
}
