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
    #[error("{path}: not a valid WebAssembly component: {message}")]
    Compile {
        /// The file.
        path: PathBuf,
        /// wasmtime's message.
        message: String,
    },
    /// The component does not implement the `job-handler` world this host speaks, or imports
    /// something the host does not give.
    #[error("{path}: does not fit omni:plugin/job-handler@0.1.0: {message}")]
    Link {
        /// The file.
        path: PathBuf,
        /// wasmtime's message.
        message: String,
    },
    /// `describe` failed or answered something the host does not accept.
    #[error("{path}: describe: {message}")]
    Describe {
        /// The file.
        path: PathBuf,
        /// Why.
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
