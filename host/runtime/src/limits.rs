//! Limits on every plugin call, configurable per plugin (by task name) with defaults.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

/// What one call of a plugin may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall time of one call; enforced by epoch interruption inside the sandbox and by an outer
    /// timeout around it.
    pub timeout: Duration,
    /// Memory of one instance, in bytes: all its linear memories together.
    pub memory: usize,
    /// Total size of a call's answer (manifest bodies, names, errors), in bytes.
    pub output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
            memory: 64 << 20,
            output: 4 << 20,
        }
    }
}

/// Limits as written in configuration: a default and overrides per task. Every key is optional;
/// a missing one falls back to the default, then to the built-in value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Default for every plugin.
    #[serde(default)]
    pub default: LimitsOverride,
    /// Overrides by task name.
    #[serde(default)]
    pub tasks: HashMap<String, LimitsOverride>,
}

/// Some or all of [`Limits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsOverride {
    /// Milliseconds per call.
    pub timeout_ms: Option<u64>,
    /// Memory per instance in MiB.
    pub memory_mib: Option<usize>,
    /// Answer size in KiB.
    pub output_kib: Option<usize>,
}

impl LimitsOverride {
    fn apply(&self, mut limits: Limits) -> Limits {
        if let Some(ms) = self.timeout_ms {
            limits.timeout = Duration::from_millis(ms);
        }
        if let Some(mib) = self.memory_mib {
            limits.memory = mib << 20;
        }
        if let Some(kib) = self.output_kib {
            limits.output = kib << 10;
        }
        limits
    }
}

impl LimitsConfig {
    /// The limits of `task`.
    pub fn for_task(&self, task: &str) -> Limits {
        let base = self.default.apply(Limits::default());
        self.tasks.get(task).map_or(base, |o| o.apply(base))
    }

    /// The largest memory any plugin may have: the size of the sandbox's memory slots.
    pub fn max_memory(&self) -> usize {
        let base = self.default.apply(Limits::default()).memory;
        self.tasks
            .values()
            .map(|o| o.apply(Limits::default()).memory)
            .fold(base, usize::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_fall_back_to_default_then_built_in() {
        let config: LimitsConfig = serde_json::from_value(serde_json::json!({
            "default": {"timeout_ms": 500},
            "tasks": {"iso": {"memory_mib": 256}}
        }))
        .unwrap();
        let iso = config.for_task("iso");
        assert_eq!(iso.timeout, Duration::from_millis(500));
        assert_eq!(iso.memory, 256 << 20);
        assert_eq!(iso.output, Limits::default().output);
        assert_eq!(config.for_task("rpm").memory, Limits::default().memory);
        assert_eq!(config.max_memory(), 256 << 20);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err =
            serde_json::from_value::<LimitsConfig>(serde_json::json!({"default": {"timeout": 1}}))
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `timeout`"), "{err}");
    }
}
