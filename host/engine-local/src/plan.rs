//! From rendered manifests to what runs here: the primary Job's init containers in order, then
//! its containers, each with its command, environment and mounts, and the volumes they share.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar};
use omni_engine::Rendered;

/// Why a rendered job cannot run locally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The primary Job is not among the manifests, or is not a valid Job.
    #[error("the rendered manifests hold no valid batch/v1 Job {0:?}")]
    NoJob(String),
    /// An object could not be read as its kind.
    #[error("{kind} {name:?} is not valid: {message}")]
    Invalid {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Something the local engine does not do (it says what, rather than run it wrongly).
    #[error("the local engine cannot run this job: {0}")]
    Unsupported(String),
}

/// A volume of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Volume {
    /// Files from a ConfigMap's `data` and `binaryData` (or the `items` it names), by path
    /// relative to the volume.
    ConfigMap(BTreeMap<String, Vec<u8>>),
    /// An empty directory shared by the steps.
    EmptyDir,
}

/// Where a step sees one of the pod's volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The absolute path inside the step (`mountPath`).
    pub path: String,
    /// The volume's name.
    pub volume: String,
    /// `readOnly` (ConfigMap volumes are read-only whatever it says, as on Kubernetes).
    pub read_only: bool,
}

/// One process to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPlan {
    /// The container's name.
    pub name: String,
    /// `command` then `args`.
    pub argv: Vec<String>,
    /// Literal values and ConfigMap references, resolved, in order.
    pub env: Vec<(String, String)>,
    /// `workingDir`, if set.
    pub working_dir: Option<String>,
    /// The volumes it mounts.
    pub mounts: Vec<Mount>,
    /// Its memory limit in bytes (`resources.limits.memory`, else `requests.memory`).
    pub memory: Option<u64>,
    /// Whether the pod's annotation [`NETWORK_ANNOTATION`] names it: the step asks for network.
    pub network: bool,
    /// The uid it runs as inside its sandbox (`securityContext.runAsUser`; the build user
    /// without it). Uid 0 there is root of the job's own root only: outside it is the job's uid.
    pub user: Option<u32>,
    /// `securityContext.readOnlyRootFilesystem`, or named by [`READ_ONLY_ROOT_ANNOTATION`]: it
    /// sees the job's root as it stands, read-only (so a root step needs no writable root
    /// prepared for it).
    pub read_only_root: bool,
}

/// The pod template annotation naming, comma-separated, the steps that need network (a `fetch`
/// that clones a repository). Kubernetes ignores it; the local engine gives every other step
/// none.
pub const NETWORK_ANNOTATION: &str = "omni.io/network";

/// The pod template annotation naming, comma-separated, the steps that leave the job's root
/// as it is (as `securityContext.readOnlyRootFilesystem` says, without making Kubernetes mount
/// the container's root read-only): a root step so named needs no writable root prepared for it
/// on the local engine ([`crate::root`]). Kubernetes ignores it.
pub const READ_ONLY_ROOT_ANNOTATION: &str = "omni.io/read-only-root";

/// Everything a local run needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Init containers in order, then containers.
    pub steps: Vec<StepPlan>,
    /// The pod's volumes by name.
    pub volumes: BTreeMap<String, Volume>,
    /// `activeDeadlineSeconds`.
    pub deadline: Option<Duration>,
    /// The job's API arch, which picks its build root (`[engines.sandbox.roots]`); the engine
    /// sets it, the manifests do not say it.
    pub arch: Option<String>,
}

fn invalid(kind: &str, name: &str, error: impl std::fmt::Display) -> PlanError {
    PlanError::Invalid {
        kind: kind.to_owned(),
        name: name.to_owned(),
        message: error.to_string(),
    }
}

impl Plan {
    /// The plan of `rendered`'s primary Job.
    ///
    /// # Errors
    /// [`PlanError`] when the Job is missing or invalid, or uses what the local engine does not
    /// do (a volume kind other than configMap and emptyDir, an env source other than literal
    /// values and ConfigMap keys, a container without a command).
    pub fn from_rendered(rendered: &Rendered) -> Result<Plan, PlanError> {
        let mut config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        let mut job = None;
        for manifest in &rendered.manifests {
            match (manifest.api_version.as_str(), manifest.kind.as_str()) {
                ("v1", "ConfigMap") => {
                    let map: ConfigMap = serde_json::from_value(manifest.body.clone())
                        .map_err(|e| invalid("ConfigMap", &manifest.name, e))?;
                    let mut files: BTreeMap<String, Vec<u8>> = map
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    files.extend(
                        map.binary_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0)),
                    );
                    config_maps.insert(manifest.name.clone(), files);
                }
                ("batch/v1", "Job") if manifest.name == rendered.primary => {
                    let parsed: Job = serde_json::from_value(manifest.body.clone())
                        .map_err(|e| invalid("Job", &manifest.name, e))?;
                    job = Some(parsed);
                }
                _ => {}
            }
        }
        let job = job.ok_or_else(|| PlanError::NoJob(rendered.primary.clone()))?;
        let spec = job
            .spec
            .ok_or_else(|| invalid("Job", &rendered.primary, "no spec"))?;
        let pod = spec
            .template
            .spec
            .ok_or_else(|| invalid("Job", &rendered.primary, "no pod template spec"))?;

        let mut volumes = BTreeMap::new();
        for volume in pod.volumes.unwrap_or_default() {
            let kind = if let Some(source) = &volume.config_map {
                let data = config_maps.get(&source.name).ok_or_else(|| {
                    PlanError::Unsupported(format!(
                        "volume {:?} names ConfigMap {:?}, which is not among the rendered objects",
                        volume.name, source.name
                    ))
                })?;
                let files = match &source.items {
                    None => data.clone(),
                    Some(items) => items
                        .iter()
                        .map(|item| match data.get(&item.key) {
                            Some(bytes) => Ok((item.path.clone(), bytes.clone())),
                            None => Err(PlanError::Unsupported(format!(
                                "volume {:?} names key {:?}, which ConfigMap {:?} does not have",
                                volume.name, item.key, source.name
                            ))),
                        })
                        .collect::<Result<_, _>>()?,
                };
                Volume::ConfigMap(files)
            } else if volume.empty_dir.is_some() {
                Volume::EmptyDir
            } else {
                return Err(PlanError::Unsupported(format!(
                    "volume {:?} is neither a configMap nor an emptyDir",
                    volume.name
                )));
            };
            volumes.insert(volume.name, kind);
        }

        let named = |annotation: &str| -> Vec<String> {
            spec.template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get(annotation))
                .map(|names| names.split(',').map(|n| n.trim().to_owned()).collect())
                .unwrap_or_default()
        };
        let networked = named(NETWORK_ANNOTATION);
        let read_only = named(READ_ONLY_ROOT_ANNOTATION);
        let containers = pod
            .init_containers
            .unwrap_or_default()
            .into_iter()
            .chain(pod.containers);
        let mut steps: Vec<StepPlan> = containers
            .map(|container| step(container, &config_maps, &volumes, &networked))
            .collect::<Result<_, _>>()?;
        for (annotation, names) in [
            (NETWORK_ANNOTATION, &networked),
            (READ_ONLY_ROOT_ANNOTATION, &read_only),
        ] {
            if let Some(name) = names.iter().find(|n| !steps.iter().any(|s| &s.name == *n)) {
                return Err(invalid(
                    "Job",
                    &rendered.primary,
                    format!("annotation {annotation} names {name:?}, which is not a container"),
                ));
            }
        }
        for step in &mut steps {
            step.read_only_root |= read_only.contains(&step.name);
        }
        let deadline = spec
            .active_deadline_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs);
        Ok(Plan {
            steps,
            volumes,
            deadline,
            arch: None,
        })
    }
}

fn step(
    container: Container,
    config_maps: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    volumes: &BTreeMap<String, Volume>,
    networked: &[String],
) -> Result<StepPlan, PlanError> {
    let name = container.name;
    let mut argv = container.command.unwrap_or_default();
    if argv.is_empty() {
        // An image's entrypoint means nothing without the image.
        return Err(PlanError::Unsupported(format!(
            "container {name:?} has no command (the local engine runs no images)"
        )));
    }
    argv.extend(container.args.unwrap_or_default());
    let env = container
        .env
        .unwrap_or_default()
        .iter()
        .map(|var| env_value(&name, var, config_maps))
        .collect::<Result<_, _>>()?;
    let mounts = container
        .volume_mounts
        .unwrap_or_default()
        .into_iter()
        .map(|mount| {
            let Some(volume) = volumes.get(&mount.name) else {
                return Err(PlanError::Unsupported(format!(
                    "container {name:?} mounts volume {:?}, which the pod does not have",
                    mount.name
                )));
            };
            if !is_mount_path(&mount.mount_path) {
                return Err(invalid(
                    "Job",
                    &name,
                    format!(
                        "mountPath {:?} of container {name:?} is not an absolute path without `.` or `..` below /",
                        mount.mount_path
                    ),
                ));
            }
            Ok(Mount {
                path: mount.mount_path,
                read_only: mount.read_only == Some(true)
                    || matches!(volume, Volume::ConfigMap(_)),
                volume: mount.name,
            })
        })
        .collect::<Result<_, _>>()?;
    let memory = container
        .resources
        .as_ref()
        .and_then(|r| {
            r.limits
                .as_ref()
                .and_then(|l| l.get("memory"))
                .or_else(|| r.requests.as_ref().and_then(|q| q.get("memory")))
        })
        .map(|quantity| {
            bytes(&quantity.0).ok_or_else(|| {
                invalid(
                    "Job",
                    &name,
                    format!(
                        "memory {:?} of container {name:?} is not a quantity",
                        quantity.0
                    ),
                )
            })
        })
        .transpose()?;
    let user = container
        .security_context
        .as_ref()
        .and_then(|c| c.run_as_user)
        .map(|uid| {
            u32::try_from(uid).map_err(|_| {
                invalid(
                    "Job",
                    &name,
                    format!("runAsUser {uid} of container {name:?} is not a uid"),
                )
            })
        })
        .transpose()?;
    let read_only_root = container
        .security_context
        .as_ref()
        .and_then(|c| c.read_only_root_filesystem)
        == Some(true);
    Ok(StepPlan {
        user,
        read_only_root,
        network: networked.contains(&name),
        name,
        argv,
        env,
        working_dir: container.working_dir,
        mounts,
        memory,
    })
}

/// An absolute path naming something below `/` with no `.`, `..` or empty part: a volume goes
/// exactly where it says, never over the sandbox's root.
fn is_mount_path(path: &str) -> bool {
    path.strip_prefix('/').is_some_and(|rest| {
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        !rest.is_empty()
            && rest
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != "..")
    })
}

/// A Kubernetes quantity of bytes (`512Mi`, `4Gi`, `1G`, `1500000`), rounded down.
fn bytes(quantity: &str) -> Option<u64> {
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "Pi" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let number: f64 = number.parse().ok()?;
    Some((number * factor) as u64)
}

fn env_value(
    container: &str,
    var: &EnvVar,
    config_maps: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
) -> Result<(String, String), PlanError> {
    let unsupported = || {
        PlanError::Unsupported(format!(
            "env {:?} of container {container:?} comes from neither a value nor a ConfigMap key",
            var.name
        ))
    };
    if let Some(value) = &var.value {
        return Ok((var.name.clone(), value.clone()));
    }
    let Some(source) = var
        .value_from
        .as_ref()
        .and_then(|f| f.config_map_key_ref.as_ref())
    else {
        return if var.value_from.is_none() {
            // `value` absent and no source: the empty string, as Kubernetes does.
            Ok((var.name.clone(), String::new()))
        } else {
            Err(unsupported())
        };
    };
    let value = config_maps
        .get(&source.name)
        .and_then(|data| data.get(&source.key))
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned());
    match value {
        Some(value) => Ok((var.name.clone(), value)),
        None if source.optional == Some(true) => Ok((var.name.clone(), String::new())),
        None => Err(PlanError::Unsupported(format!(
            "env {:?} of container {container:?} names key {:?} of ConfigMap {:?}, which does not exist",
            var.name, source.key, source.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_mount_paths() {
        assert_eq!(bytes("4Gi"), Some(4 << 30));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1.5Mi"), Some(3 << 19));
        assert_eq!(bytes("100"), Some(100));
        assert_eq!(bytes("1Xi"), None);
        assert!(is_mount_path("/work") && is_mount_path("/a/b/"));
        for bad in ["/", "work", "/a/../b", "/a//b", "/./a", ""] {
            assert!(!is_mount_path(bad), "{bad}");
        }
    }
}
