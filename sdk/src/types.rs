//! The contract's values as Rust types, independent of the generated bindings.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One thing wrong in a job's params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON Pointer into the params (`/packages/0`); empty for the params as a whole.
    pub path: String,
    /// What is wrong, for the person who submitted the job.
    pub message: String,
}

impl FieldError {
    /// A field error at `path` (a JSON Pointer such as `/spec`).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// What `describe` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Description {
    /// The task name.
    pub task: String,
    /// The plugin's version.
    pub version: String,
    /// One line for humans.
    pub description: String,
    /// API arches the task builds for.
    pub arches: Vec<String>,
    /// JSON Schema of the params.
    pub params_schema: Value,
    /// Step names in order.
    pub steps: Vec<String>,
}

/// The job a plugin renders objects for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id (a time-based UUID in text).
    pub id: String,
    /// The submitting service.
    pub service: String,
    /// The tenant domain.
    pub domain: String,
    /// The Kubernetes namespace the objects go to.
    pub namespace: String,
    /// The name the host chose for the job's objects (a DNS-1123 label).
    pub name: String,
    /// The API arch (`x86_64`).
    pub arch: String,
}

impl Job {
    /// The `kubernetes.io/arch` value for the job's arch (`amd64` for `x86_64`).
    ///
    /// The host only schedules jobs whose arch it knows, so this is an empty string only for a
    /// job made up by hand.
    pub fn node_arch(&self) -> &'static str {
        omni_arch::to_kubernetes(&self.arch).unwrap_or("")
    }

    /// A job as the host would pass it, for tests and examples: fixed id, `omni-jobs` namespace.
    pub fn example(arch: &str) -> Self {
        let id = "3f1e2d4c-8a7b-11f0-9c5d-0242ac120002".to_owned();
        Self {
            name: format!("omni-{id}"),
            id,
            service: "example".to_owned(),
            domain: "default".to_owned(),
            namespace: "omni-jobs".to_owned(),
            arch: arch.to_owned(),
        }
    }
}

/// One rendered Kubernetes object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// The whole object.
    pub body: Value,
}

/// The objects that run a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rendered {
    /// Objects to apply, in order.
    pub manifests: Vec<Manifest>,
    /// The name of the batch/v1 Job whose status is the job's status.
    pub primary: String,
}

/// Labels every object of a job carries, so engines and operators can find them.
pub(crate) const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "omni");
/// The label holding the Omni job id.
pub(crate) const JOB_ID_LABEL: &str = "omni.io/job-id";
/// The label holding the task name.
pub(crate) const TASK_LABEL: &str = "omni.io/task";

impl Rendered {
    /// Turns rendered objects into the answer of `serialize`.
    ///
    /// Every object must have `apiVersion`, `kind` and `metadata.name`; each gets the job's
    /// namespace and the labels `app.kubernetes.io/managed-by: omni`, `omni.io/job-id` and
    /// `omni.io/task` (on a Job's pod template too). Exactly one object must be a `batch/v1` Job:
    /// it becomes the primary.
    ///
    /// # Errors
    /// [`Error::Template`] when an object lacks those fields, no Job or more than one is rendered.
    pub fn from_objects(task: &str, job: &Job, objects: Vec<Value>) -> Result<Self, Error> {
        let mut manifests = Vec::with_capacity(objects.len());
        let mut primary = None;
        for (index, mut body) in objects.into_iter().enumerate() {
            let field = |body: &Value, pointer: &str| {
                body.pointer(pointer)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        Error::Template(format!("object {index} has no string at {pointer}"))
                    })
            };
            let api_version = field(&body, "/apiVersion")?;
            let kind = field(&body, "/kind")?;
            let name = field(&body, "/metadata/name")?;
            stamp(&mut body, "/metadata", task, job, true);
            if api_version == "batch/v1" && kind == "Job" {
                stamp(&mut body, "/spec/template/metadata", task, job, false);
                if primary.replace(name.clone()).is_some() {
                    return Err(Error::Template(
                        "more than one batch/v1 Job rendered".into(),
                    ));
                }
            }
            manifests.push(Manifest {
                api_version,
                kind,
                name,
                body,
            });
        }
        let primary = primary
            .ok_or_else(|| Error::Template("no batch/v1 Job among the rendered objects".into()))?;
        Ok(Self { manifests, primary })
    }

    /// The objects as one multi-document YAML text, for golden tests and humans.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for manifest in &self.manifests {
            out.push_str("---\n");
            out.push_str(&serde_norway::to_string(&manifest.body).unwrap_or_default());
        }
        out
    }
}

/// Sets namespace (on top-level metadata) and Omni's labels at `pointer`, creating the maps.
fn stamp(body: &mut Value, pointer: &str, task: &str, job: &Job, namespace: bool) {
    let mut at = body;
    for key in pointer.split('/').skip(1) {
        let Some(map) = at.as_object_mut() else {
            return;
        };
        at = map
            .entry(key)
            .or_insert_with(|| Value::Object(Default::default()));
    }
    let Some(metadata) = at.as_object_mut() else {
        return;
    };
    if namespace {
        metadata.insert("namespace".into(), Value::String(job.namespace.clone()));
    }
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(labels) = labels.as_object_mut() {
        labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
        labels.insert(JOB_ID_LABEL.into(), job.id.clone().into());
        labels.insert(TASK_LABEL.into(), task.into());
    }
}

/// Why `serialize` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The params are not valid.
    InvalidParams(Vec<FieldError>),
    /// A template is missing or does not render: the operator's `templates/` is wrong.
    Template(String),
    /// Anything else the plugin can name.
    Internal(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidParams(errors) => {
                f.write_str("invalid params:")?;
                for e in errors {
                    write!(
                        f,
                        " {}: {};",
                        if e.path.is_empty() { "/" } else { &e.path },
                        e.message
                    )?;
                }
                Ok(())
            }
            Self::Template(message) => write!(f, "template: {message}"),
            Self::Internal(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamps_labels_and_namespace_and_finds_the_job() {
        let job = Job::example("x86_64");
        let objects = vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "labels": {"a": "b"}}}),
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"template": {}}}),
        ];
        let rendered = Rendered::from_objects("rpm", &job, objects).unwrap();
        assert_eq!(rendered.primary, "j");
        let cm = &rendered.manifests[0].body;
        assert_eq!(cm["metadata"]["namespace"], "omni-jobs");
        assert_eq!(cm["metadata"]["labels"]["a"], "b");
        assert_eq!(cm["metadata"]["labels"]["omni.io/job-id"], job.id.as_str());
        let pod = &rendered.manifests[1].body["spec"]["template"]["metadata"]["labels"];
        assert_eq!(pod["app.kubernetes.io/managed-by"], "omni");
        assert_eq!(pod["omni.io/task"], "rpm");
    }

    #[test]
    fn rejects_objects_without_identity_or_without_a_job() {
        let job = Job::example("x86_64");
        let err = Rendered::from_objects("t", &job, vec![json!({"kind": "Job"})]).unwrap_err();
        assert_eq!(
            err,
            Error::Template("object 0 has no string at /apiVersion".into())
        );
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let err = Rendered::from_objects("t", &job, vec![cm]).unwrap_err();
        assert!(matches!(err, Error::Template(m) if m.contains("no batch/v1 Job")));
        let j = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}});
        let err = Rendered::from_objects("t", &job, vec![j.clone(), j]).unwrap_err();
        assert!(matches!(err, Error::Template(m) if m.contains("more than one")));
    }
}
