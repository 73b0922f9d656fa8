//! What can go wrong when loading or calling a plugin. Every message names the plugin (its task
//! and version, or its file when it never got that far).

use std::path::PathBuf;
use std::time::Duration;

use crate::plugin::FieldError;

/// A plugin call failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin rejected the params: the caller's mistake, with field errors.
    #[error("plugin {plugin}: invalid params")]
    InvalidParams {
        /// `task@version`.
        plugin: String,
        /// What is wrong, by JSON Pointer.
        errors: Vec<FieldError>,
    },
    /// The plugin's templates are missing or wrong: the operator's mistake.
    #[error("plugin {plugin}: template error: {message}")]
    Template {
        /// `task@version`.
        plugin: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin reported another failure it could name.
    #[error("plugin {plugin} failed: {message}")]
    Failed {
        /// `task@version`.
        plugin: String,
        /// The plugin's message.
        message: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("plugin {plugin} timed out after {limit:?}")]
    Timeout {
        /// `task@version`.
        plugin: String,
        /// The deadline.
        limit: Duration,
    },
    /// The plugin tried to grow its memory past its cap.
    #[error("plugin {plugin} exceeded its memory limit of {limit} bytes (asked for {requested})")]
    MemoryExceeded {
        /// `task@version`.
        plugin: String,
        /// The cap.
        limit: usize,
        /// The size it asked to grow to.
        requested: usize,
    },
    /// The plugin's answer was larger than allowed.
    #[error("plugin {plugin} answered {size} bytes, more than its output limit of {limit}")]
    OutputTooLarge {
        /// `task@version`.
        plugin: String,
        /// The answer's size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The plugin called something the sandbox does not give plugins (files, sockets).
    #[error("plugin {plugin} was stopped: it called {call}, and plugins get no {what}")]
    Denied {
        /// `task@version`.
        plugin: String,
        /// The WASI function it called.
        call: String,
        /// What the sandbox withholds (`filesystem`, `network`).
        what: &'static str,
    },
    /// The plugin panicked.
    #[error("plugin {plugin} panicked: {message}")]
    Panicked {
        /// `task@version`.
        plugin: String,
        /// The panic message the plugin printed.
        message: String,
    },
    /// The plugin trapped for another reason (a bug in the plugin).
    #[error("plugin {plugin} crashed: {message}")]
    Trapped {
        /// `task@version`.
        plugin: String,
        /// The trap and its backtrace's first line.
        message: String,
    },
    /// The plugin's answer breaks the contract (a manifest that is not a Kubernetes object...).
    #[error("plugin {plugin} answered something invalid: {message}")]
    BadOutput {
        /// `task@version`.
        plugin: String,
        /// What is wrong with it.
        message: String,
    },
    /// The host could not run the call (no free instance slot, the worker thread died).
    #[error("plugin {plugin} could not be run: {message}")]
    Host {
        /// `task@version`.
        plugin: String,
        /// Why.
        message: String,
    },
}

impl PluginError {
    /// A short stable name of the error's kind, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidParams { .. } => "invalid_params",
            Self::Template { .. } => "template",
            Self::Failed { .. } => "failed",
            Self::Timeout { .. } => "timeout",
            Self::MemoryExceeded { .. } => "memory",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::Denied { .. } => "denied",
            Self::Panicked { .. } => "panic",
            Self::Trapped { .. } => "trap",
            Self::BadOutput { .. } => "bad_output",
            Self::Host { .. } => "host",
        }
    }
}

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
