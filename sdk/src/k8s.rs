//! Helpers for the Kubernetes objects every task renders.
//!
//! Templates stay the place where objects are written; these are the pieces of params and
//! checks that every task needs the same way, so three plugins don't write them three times.

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Pattern;

/// A Kubernetes resource quantity as written in manifests (`500m`, `2`, `4Gi`, `1.5G`).
pub static QUANTITY: Pattern =
    Pattern::new(r"^([0-9]+(\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$");

/// CPU and memory of a job's build step: requests equal limits, so a build gets what it asked
/// for and cannot take a node's memory from other jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores (`2`, `500m`).
    #[serde(default = "default_cpu")]
    #[garde(length(min = 1, max = 32), pattern(QUANTITY))]
    pub cpu: String,
    /// Memory (`4Gi`, `512Mi`).
    #[serde(default = "default_memory")]
    #[garde(length(min = 1, max = 32), pattern(QUANTITY))]
    pub memory: String,
}

fn default_cpu() -> String {
    "2".to_owned()
}

fn default_memory() -> String {
    "4Gi".to_owned()
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpu: default_cpu(),
            memory: default_memory(),
        }
    }
}

impl Resources {
    /// The container's `resources` object (requests = limits).
    pub fn requirements(&self) -> Value {
        let amounts = json!({"cpu": self.cpu, "memory": self.memory});
        json!({"requests": amounts, "limits": amounts})
    }
}

/// `imagePullPolicy` values.
pub static PULL_POLICY: Pattern = Pattern::new(r"^(IfNotPresent|Always|Never)$");

/// How a task's Jobs run, as the operator sets it under `job:` in the task's `settings.yaml`;
/// the same keys for every task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// `imagePullPolicy` of every step: `IfNotPresent` (the default), `Always` or `Never`.
    #[serde(default = "default_pull_policy")]
    #[garde(pattern(PULL_POLICY))]
    pub image_pull_policy: String,
    /// The Job's `backoffLimit`: how often a failed pod is retried (default 0).
    #[serde(default)]
    #[garde(skip)]
    pub backoff_limit: u32,
    /// The Job's `ttlSecondsAfterFinished`; none keeps finished Jobs until something deletes them.
    #[serde(default)]
    #[garde(skip)]
    pub ttl_seconds_after_finished: Option<u32>,
    /// CPU and memory of the steps other than the build step.
    #[garde(dive)]
    pub helper_resources: Resources,
    /// `sizeLimit` of the `work` volume (`50Gi`); none for no limit.
    #[serde(default)]
    #[garde(inner(pattern(QUANTITY)))]
    pub work_size_limit: Option<String>,
}

fn default_pull_policy() -> String {
    "IfNotPresent".to_owned()
}

/// Whether `name` is a DNS-1123 label (what Kubernetes accepts as most object names).
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// Whether `key` is a valid ConfigMap data key (`[-._a-zA-Z0-9]+`, at most 253 long, not `.`,
/// and not starting with `..`, as Kubernetes validates it).
pub fn is_config_map_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && !key.starts_with("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The largest total size of a ConfigMap's data that etcd accepts (1 MiB), less room for the
/// object's metadata.
pub const CONFIG_MAP_DATA_LIMIT: usize = 1024 * 1024 - 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_default_and_render_requests_equal_to_limits() {
        let r: Resources = serde_json::from_value(json!({"cpu": "500m"})).unwrap();
        assert_eq!(r.memory, "4Gi");
        assert_eq!(r.requirements()["limits"]["cpu"], "500m");
        assert_eq!(r.requirements()["requests"], r.requirements()["limits"]);
        assert!(r.validate().is_ok());
        let bad = Resources {
            cpu: "two".into(),
            ..Resources::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn job_settings_default_and_reject_what_kubernetes_would() {
        let job: JobSettings = serde_json::from_value(json!({"helper_resources": {}})).unwrap();
        assert_eq!(job.image_pull_policy, "IfNotPresent");
        assert_eq!(
            (job.backoff_limit, job.ttl_seconds_after_finished),
            (0, None)
        );
        assert!(job.validate().is_ok());
        let bad = JobSettings {
            image_pull_policy: "Sometimes".into(),
            work_size_limit: Some("big".into()),
            ..job
        };
        let report = bad.validate().unwrap_err().to_string();
        assert!(
            report.contains("image_pull_policy") && report.contains("work_size_limit"),
            "{report}"
        );
        let unknown =
            serde_json::from_value::<JobSettings>(json!({"helper_resources": {}, "retries": 1}));
        assert!(unknown.is_err());
    }

    #[test]
    fn names_and_keys() {
        assert!(is_dns_label("omni-3f1e"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("A"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_config_map_key("ks.cfg"));
        assert!(!is_config_map_key("etc/passwd"));
        assert!(!is_config_map_key(".."));
        assert!(!is_config_map_key("..data"));
    }

    #[test]
    fn the_quantity_pattern_is_in_the_schema() {
        let schema = serde_json::to_value(schemars::schema_for!(Resources)).unwrap();
        assert_eq!(schema["properties"]["cpu"]["pattern"], QUANTITY.as_str());
    }
}
