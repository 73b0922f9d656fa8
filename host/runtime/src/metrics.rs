//! The plugin host's metrics, recorded through the `metrics` facade: whoever installs a recorder
//! (the `omni` binary, through omni-api) exports them; without one, recording does nothing.

use std::time::Instant;

use crate::error::PluginError;

/// Histogram of plugin calls, by `task` and `export`.
pub const CALL_SECONDS: &str = "omni_plugin_call_duration_seconds";
/// Counter of failed plugin calls, by `task`, `export` and `kind`.
pub const ERRORS: &str = "omni_plugin_errors_total";
/// Counter of plugin file loads, by `outcome`.
pub const LOADS: &str = "omni_plugin_loads_total";

/// Registers the help texts of the metrics above with the installed recorder.
pub fn describe() {
    metrics::describe_histogram!(
        CALL_SECONDS,
        metrics::Unit::Seconds,
        "Plugin calls made by this replica, by task and export (describe, validate, serialize), \
         from instantiation to the checked answer, failed calls included. A describe that failed \
         is labelled with the plugin's file name as its task."
    );
    metrics::describe_counter!(
        ERRORS,
        "Plugin calls made by this replica that failed, by task, export and kind (invalid_params \
         is the caller's mistake; timeout, memory, output_too_large, denied, panic, trap, \
         bad_output, template, failed and host are the plugin's or the host's)."
    );
    metrics::describe_counter!(
        LOADS,
        "Plugin files (re)loaded by this replica's scans, by outcome (loaded, failed: the \
         previous version keeps serving)."
    );
}

/// Records one call of `export` on `task` that began at `start`.
pub(crate) fn call<T>(
    task: &str,
    export: &'static str,
    start: Instant,
    result: &Result<T, PluginError>,
) {
    metrics::histogram!(CALL_SECONDS, "task" => task.to_owned(), "export" => export)
        .record(start.elapsed());
    if let Err(error) = result {
        self::error(task, export, error);
    }
}

/// Records a failed call whose time is not the plugin's (the outer timeout, a lost thread).
pub(crate) fn error(task: &str, export: &'static str, error: &PluginError) {
    metrics::counter!(ERRORS, "task" => task.to_owned(), "export" => export, "kind" => error.kind())
        .increment(1);
}

/// Records the load of one plugin file.
pub(crate) fn load(loaded: bool) {
    let outcome = if loaded { "loaded" } else { "failed" };
    metrics::counter!(LOADS, "outcome" => outcome).increment(1);
}
