//! What the host accepts of a plugin's answers: `describe`'s (a task name, a semver version,
//! known arches, a JSON Schema object, step names) and `serialize`'s (JSON objects whose bodies
//! match what they declare, in the job's namespace, with a `batch/v1` Job as the primary).

use serde_json::Value;

use crate::bindings::omni::plugin::types as wit;
use omni_core::{JobContext, Manifest, Name, PluginInfo, Rendered};

pub(super) fn field_errors(errors: Vec<wit::FieldError>) -> Vec<omni_core::FieldError> {
    errors
        .into_iter()
        .map(|e| omni_core::FieldError {
            path: e.path,
            message: e.message,
        })
        .collect()
}

pub(super) fn info_size(info: &wit::PluginInfo) -> usize {
    info.task.len()
        + info.version.len()
        + info.description.len()
        + info.params_schema.len()
        + info
            .arches
            .iter()
            .chain(&info.steps)
            .map(String::len)
            .sum::<usize>()
}

fn is_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    version.len() <= 64
        && parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

pub(super) fn check_info(info: wit::PluginInfo) -> Result<PluginInfo, String> {
    if !Name::is_valid(&info.task) {
        return Err(format!("task name {:?} {}", info.task, Name::RULE));
    }
    if !is_semver(&info.version) {
        return Err(format!(
            "version {:?} of task {} is not semver (1.2.3)",
            info.version, info.task
        ));
    }
    if info.arches.is_empty() {
        return Err(format!("task {} names no arches", info.task));
    }
    if let Some(arch) = info.arches.iter().find(|a| !omni_arch::is_known(a)) {
        return Err(format!("task {} names an unknown arch {arch:?}", info.task));
    }
    if info.steps.is_empty() || info.steps.iter().any(|s| !Name::is_valid(s)) {
        return Err(format!(
            "task {} must name its steps as DNS labels, got {:?}",
            info.task, info.steps
        ));
    }
    let params_schema: Value = serde_json::from_str(&info.params_schema)
        .map_err(|e| format!("params schema of task {} is not JSON: {e}", info.task))?;
    if !params_schema.is_object() {
        return Err(format!(
            "params schema of task {} is not a JSON object",
            info.task
        ));
    }
    Ok(PluginInfo {
        task: info.task,
        version: info.version,
        description: info.description,
        arches: info.arches,
        params_schema,
        steps: info.steps,
    })
}

/// Checks what `serialize` answered against the contract and parses the bodies.
pub(super) fn check_rendered(
    rendered: wit::Rendered,
    job: &JobContext,
) -> Result<Rendered, String> {
    let mut manifests = Vec::with_capacity(rendered.manifests.len());
    for (i, m) in rendered.manifests.into_iter().enumerate() {
        let body: Value = serde_json::from_str(&m.body)
            .map_err(|e| format!("manifest {i} ({} {}) is not JSON: {e}", m.kind, m.name))?;
        let field = |pointer: &str| body.pointer(pointer).and_then(Value::as_str);
        if !body.is_object() {
            return Err(format!(
                "manifest {i} ({} {}) is not a JSON object",
                m.kind, m.name
            ));
        }
        for (pointer, declared) in [
            ("/apiVersion", &m.api_version),
            ("/kind", &m.kind),
            ("/metadata/name", &m.name),
        ] {
            if field(pointer) != Some(declared.as_str()) {
                return Err(format!(
                    "manifest {i} declares {pointer} {declared:?} but its body has {:?}",
                    field(pointer)
                ));
            }
        }
        if !is_dns_subdomain(&m.name) {
            return Err(format!(
                "manifest {i} ({}) has an invalid name {:?}",
                m.kind, m.name
            ));
        }
        if let Some(namespace) = field("/metadata/namespace")
            && namespace != job.namespace
        {
            return Err(format!(
                "{} {} is in namespace {namespace:?}, not the job's {:?}",
                m.kind, m.name, job.namespace
            ));
        }
        manifests.push(Manifest {
            api_version: m.api_version,
            kind: m.kind,
            name: m.name,
            body,
        });
    }
    if !manifests
        .iter()
        .any(|m| m.name == rendered.primary && m.api_version == "batch/v1" && m.kind == "Job")
    {
        return Err(format!(
            "primary {:?} is not a batch/v1 Job among the manifests",
            rendered.primary
        ));
    }
    Ok(Rendered {
        manifests,
        primary: rendered.primary,
    })
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert!(is_semver("0.1.0"));
        assert!(is_semver("1.2.3-rc.1+build"));
        assert!(!is_semver("1.2"));
        assert!(!is_semver("v1.2.3"));
        assert!(is_dns_subdomain("omni-1.input"));
        assert!(!is_dns_subdomain("Omni"));
    }
}
