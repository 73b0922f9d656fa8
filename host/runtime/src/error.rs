//! What can go wrong when loading or calling a plugin. Every message names the plugin (its task
//! and version, or its file when it never got that far).

use std::path::PathBuf;

pub use omni_core::PluginError;

/// A plugin file could not be loaded. The previous version of its task, if any, keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than a plugin may be.
    #[error("{path}: {size} bytes, more than the {limit} bytes a plugin may have")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// The file is not a WebAssembly component wasmtime can compile.
    #[error("{path}: not a valid WebAssembly component: {source:#}")]
    Compile {
        /// The file.
        path: PathBuf,
        /// wasmtime's error.
        #[source]
        source: wasmtime::Error,
    },
    /// The component does not implement the `job-handler` world this host speaks, or imports
    /// something the host does not give.
    #[error("{path}: does not fit omni:plugin/job-handler@0.1.0: {source:#}")]
    Link {
        /// The file.
        path: PathBuf,
        /// wasmtime's error.
        #[source]
        source: wasmtime::Error,
    },
    /// `describe` failed: the call itself, or its answer was too large.
    #[error("{path}: describe: {source}")]
    Describe {
        /// The file.
        path: PathBuf,
        /// Why the call failed.
        #[source]
        source: PluginError,
    },
    /// `describe` answered something the host does not accept.
    #[error("{path}: describe: {message}")]
    BadInfo {
        /// The file.
        path: PathBuf,
        /// What is wrong with the answer.
        message: String,
    },
    /// Another file already provides the task.
    #[error("{path}: task {task:?} is already provided by {other}")]
    Conflict {
        /// The file.
        path: PathBuf,
        /// The task both claim.
        task: String,
        /// The file that keeps it.
        other: PathBuf,
    },
}

/// A plugin could not be pre-initialized ([`Plugin::prepare`](crate::Plugin::prepare)). It keeps
/// serving without a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The component does not export `wizer-initialize`: there is nothing to snapshot.
    #[error("{plugin} does not export {}", crate::prepare::INITIALIZE)]
    NotExported {
        /// `task@version`.
        plugin: String,
    },
    /// The pre-initializer could not instrument the component.
    #[error("cannot instrument the component: {source:#}")]
    Instrument {
        /// The pre-initializer's error.
        #[source]
        source: wasmtime::Error,
    },
    /// The instrumented component, or the snapshot, did not compile or link.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The instrumented component could not be instantiated.
    #[error("cannot instantiate the component to initialize it: {source:#}")]
    Instantiate {
        /// wasmtime's error.
        #[source]
        source: wasmtime::Error,
    },
    /// The instrumented component has no callable `wizer-initialize`.
    #[error("{}: {source:#}", crate::prepare::INITIALIZE)]
    NoInitialize {
        /// wasmtime's error.
        #[source]
        source: wasmtime::Error,
    },
    /// `wizer-initialize` failed (trapped, or ran out of time or memory).
    #[error("{} failed: {source:#}", crate::prepare::INITIALIZE)]
    Initialize {
        /// wasmtime's error.
        #[source]
        source: wasmtime::Error,
    },
    /// The initialized instance's state could not be read through the instrumentation's export.
    #[error("cannot read the initialized instance: {export}: {source:#}")]
    ReadInstance {
        /// The export that failed, `instance#func`.
        export: String,
        /// wasmtime's error.
        #[source]
        source: wasmtime::Error,
    },
    /// The pre-initializer could not write the snapshot.
    #[error("cannot write the snapshot: {source:#}")]
    Write {
        /// The pre-initializer's error.
        #[source]
        source: wasmtime::Error,
    },
    /// The snapshot does not describe itself as the plugin did: it is not the same plugin.
    #[error("the snapshot describes itself differently ({answer})")]
    Changed {
        /// What its `describe` answered, as debug text.
        answer: String,
    },
}
