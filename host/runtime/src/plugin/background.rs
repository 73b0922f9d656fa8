//! The work a shared plugin does beside its calls, on a thread of its own and one plugin at a
//! time ([`OPTIMIZING`]): compiling the optimized code of a plugin that serves quick code, and
//! pre-initializing a component that exports `wizer-initialize` (again after a template edit).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use super::contract::check_info;
use super::{Code, Plugin, Prepared};
use crate::error::PrepareError;
use crate::prepare;
use crate::sandbox::Tier;

/// Optimizing compiles and pre-initializations run one at a time, so that a burst of new plugin
/// versions neither takes every core from the calls being served nor compiles versions already
/// replaced.
static OPTIMIZING: Mutex<()> = Mutex::new(());

impl Plugin {
    /// Pre-initializes the plugin now, on the calling thread: its snapshot serves new calls
    /// once this returns `Ok`. Loading through the registry does this in the background.
    ///
    /// # Errors
    /// Why there is no snapshot: the component does not export `wizer-initialize`, or
    /// initializing, snapshotting or checking it failed.
    pub fn prepare(&self) -> Result<(), PrepareError> {
        let Some(bytes) = &self.source else {
            return Err(PrepareError::NotExported {
                plugin: self.label.to_string(),
            });
        };
        let (component, reads) =
            match prepare::cached_snapshot(&self.sandbox, &self.digest, &self.task) {
                Some(cached) => cached,
                None => prepare::snapshot(
                    &self.sandbox,
                    &self.path,
                    bytes,
                    &self.digest,
                    &self.task,
                    &self.label,
                    self.limits,
                )?,
            };
        let code = Code::link(&self.sandbox, &self.path, &component, Tier::Optimized)?;
        // The snapshot must still be the same plugin.
        match self.call_on(&code, self.live_templates(), self.limits, |h, s| {
            h.call_describe(s)
        }) {
            Ok(info) if check_info(info.clone()).as_ref() == Ok(&self.info) => {
                self.prepared
                    .store(Some(Arc::new(Prepared { code, reads })));
                Ok(())
            }
            answer => Err(PrepareError::Changed {
                answer: format!("{answer:?}"),
            }),
        }
    }

    /// [`Plugin::prepare`] with its outcome logged; a failure leaves the plugin serving without
    /// a snapshot (and not trying again until it is reloaded).
    fn prepare_in_background(&self) {
        let start = Instant::now();
        match self.prepare() {
            Ok(()) => tracing::info!(
                plugin = self.label(),
                ms = start.elapsed().as_millis(),
                "plugin pre-initialized"
            ),
            Err(e) => {
                self.prepared.store(None);
                tracing::warn!(
                    plugin = self.label(),
                    "cannot pre-initialize, serving without a snapshot: {e}"
                );
            }
        }
        self.preparing.store(false, Ordering::Release);
    }

    /// The snapshot, while the template files it read are unchanged; after an edit, starts
    /// (once) a new pre-initialization in the background and answers `None` meanwhile.
    pub(super) fn current_snapshot(&self) -> Option<Arc<Prepared>> {
        let prepared = self.prepared.load_full()?;
        let templates = self.sandbox.templates();
        if prepared
            .reads
            .iter()
            .all(|read| templates.stamp(&self.task, &read.name) == read.stamp)
        {
            return Some(prepared);
        }
        self.in_background(None);
        None
    }

    /// Starts the plugin's background work on a thread of its own, one at a time with every
    /// other plugin's ([`OPTIMIZING`]): Cranelift's code for `to_optimize` (the component's
    /// bytes, when it serves quick code), then a pre-initialization when the component exports
    /// `wizer-initialize` and none is under way or queued already. Nothing happens for a plugin
    /// that is gone (replaced or unloaded) by the time the thread runs, or that is not shared
    /// ([`Plugin::load`]'s: there is no background work for it).
    pub(super) fn in_background(&self, to_optimize: Option<Arc<Vec<u8>>>) {
        if self.this.strong_count() == 0 {
            return;
        }
        let prepare = self.source.is_some() && !self.preparing.swap(true, Ordering::AcqRel);
        if to_optimize.is_none() && !prepare {
            return;
        }
        let weak = self.this.clone();
        let spawned = std::thread::Builder::new()
            .name("omni-optimize".into())
            .spawn(move || {
                let _one_at_a_time = OPTIMIZING
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(bytes) = to_optimize {
                    optimize(&weak, &bytes);
                }
                if let Some(plugin) = weak.upgrade().filter(|_| prepare) {
                    plugin.prepare_in_background();
                }
            });
        if let Err(e) = spawned {
            if prepare {
                self.preparing.store(false, Ordering::Release);
            }
            tracing::warn!(plugin = self.label(), "cannot start background work: {e}");
        }
    }
}

/// Compiles a quickly loaded plugin's optimized code, checks it and swaps it in; on the
/// optimizing thread. Does nothing once the plugin is gone (replaced or unloaded).
/// The caller holds [`OPTIMIZING`].
fn optimize(weak: &Weak<Plugin>, bytes: &[u8]) {
    let Some(plugin) = weak.upgrade() else {
        return;
    };
    let start = Instant::now();
    let optimized = plugin
        .sandbox
        .compile_into_cache(&plugin.path, bytes, &plugin.digest)
        .and_then(|component| {
            Code::link(&plugin.sandbox, &plugin.path, &component, Tier::Optimized)
        });
    let code = match optimized {
        Ok(code) => Arc::new(code),
        Err(e) => {
            tracing::warn!(
                plugin = plugin.label(),
                "optimized compile failed, staying on quick code: {e}"
            );
            return;
        }
    };
    // The same component must say the same of itself on either compiler.
    match plugin.call_on(&code, plugin.live_templates(), plugin.limits, |h, s| {
        h.call_describe(s)
    }) {
        Ok(info) if check_info(info.clone()).as_ref() == Ok(&plugin.info) => {
            plugin.code.store(code);
            tracing::info!(
                plugin = plugin.label(),
                compile_ms = start.elapsed().as_millis(),
                "plugin optimized"
            );
        }
        answer => tracing::warn!(
            plugin = plugin.label(),
            "optimized code describes itself differently ({answer:?}); staying on quick code"
        ),
    }
}
