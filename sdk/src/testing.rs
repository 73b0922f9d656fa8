//! A native test harness: run a plugin's `describe`, `validate` and `serialize` with
//! `cargo test` on the host target, reading templates from a directory, without wasmtime.
//!
//! The harness calls the same code the component's exports call; only the template loader and
//! the log differ (a directory and stderr instead of the host's imports). Templates are read
//! the way the host reads them: only plain file names inside the directory.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::{Context, Description, Error, FieldError, Job, Plugin, Rendered};

/// Runs a [`Plugin`] natively against a templates directory.
#[derive(Debug)]
pub struct Harness<P> {
    dir: PathBuf,
    prepared: Option<Context>,
    plugin: PhantomData<fn() -> P>,
}

impl<P: Plugin> Harness<P> {
    /// A harness reading templates from `dir` (usually `templates/<task>` of the repository).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
            prepared: None,
            plugin: PhantomData,
        }
    }

    /// As [`Harness::new`], but every call shares one context prepared the way the host's
    /// pre-initialization prepares a component: [`SETTINGS`](crate::SETTINGS) parsed and
    /// [`Plugin::TEMPLATES`] compiled once, so later edits of those files are not seen.
    ///
    /// # Panics
    /// When one of those files is missing or does not parse: `TEMPLATES` names a file the
    /// plugin's templates directory does not have, or the file is broken.
    pub fn prepared(dir: impl AsRef<Path>) -> Self {
        let mut harness = Self::new(dir);
        let ctx = harness.fresh_context();
        if let Err(e) = ctx.prepare(P::TEMPLATES) {
            panic!("{} cannot be pre-initialized: {e}", P::TASK);
        }
        harness.prepared = Some(ctx);
        harness
    }

    fn with_context<R>(&self, f: impl FnOnce(&Context) -> R) -> R {
        match &self.prepared {
            Some(ctx) => f(ctx),
            None => f(&self.fresh_context()),
        }
    }

    fn fresh_context(&self) -> Context {
        let dir = self.dir.clone();
        Context::new(
            Arc::new(move |name| {
                if !is_plain_file_name(name) {
                    return None;
                }
                std::fs::read_to_string(dir.join(name)).ok()
            }),
            Arc::new(|level, message| eprintln!("[plugin {level:?}] {message}")),
        )
    }

    /// What `describe` answers, with the version `0.0.0-test`.
    pub fn describe(&self) -> Description {
        crate::__private::describe_plugin::<P>("0.0.0-test")
    }

    /// What `validate` answers for `params`.
    ///
    /// # Errors
    /// The field errors the component would return.
    pub fn validate(&self, params: &Value) -> Result<(), Vec<FieldError>> {
        let params = params.to_string();
        self.with_context(|ctx| crate::__private::parse_params::<P>(&params, ctx))
            .map(drop)
    }

    /// What `serialize` answers for `job` and `params`.
    ///
    /// # Errors
    /// The error the component would return.
    pub fn serialize(&self, job: &Job, params: &Value) -> Result<Rendered, Error> {
        let params = params.to_string();
        self.with_context(|ctx| crate::__private::serialize_job::<P>(job, &params, ctx))
    }

    /// Renders [`Job::example`] for `arch` with `params`, and checks every object against its
    /// Kubernetes type ([`check_kubernetes_types`]).
    ///
    /// # Panics
    /// When the plugin refuses, or an object is not of its type: the test fails with why.
    #[cfg(feature = "k8s")]
    pub fn render(&self, arch: &str, params: &Value) -> Rendered {
        let rendered = self
            .serialize(&Job::example(arch), params)
            .unwrap_or_else(|e| panic!("{} refused {params}: {e}", P::TASK));
        if let Err(e) = check_kubernetes_types(&rendered) {
            panic!(
                "{} rendered an object that is not of its type: {e}",
                P::TASK
            );
        }
        rendered
    }

    /// The JSON Pointers of the field errors `validate` answers for `params`.
    ///
    /// # Panics
    /// When `params` are valid.
    pub fn error_paths(&self, params: &Value) -> Vec<String> {
        match self.validate(params) {
            Ok(()) => panic!("{} accepted {params}", P::TASK),
            Err(errors) => errors.into_iter().map(|e| e.path).collect(),
        }
    }
}

/// Asserts that the plugin answers from the host's pre-initialized snapshot as from a fresh
/// instance: for each of `params` (valid or not), `validate`, and `serialize` of
/// [`Job::example`] for every arch of [`Plugin::ARCHES`], answer the same from
/// [`Harness::prepared`] (one context shared by every call) as from [`Harness::new`].
///
/// # Panics
/// When an answer differs, or when [`Plugin::TEMPLATES`] names a file `dir` does not have or
/// that does not compile.
pub fn assert_prepared_answers_as_fresh<P: Plugin>(dir: impl AsRef<Path>, params: &[Value]) {
    let fresh = Harness::<P>::new(&dir);
    let prepared = Harness::<P>::prepared(&dir);
    for params in params {
        assert_eq!(
            prepared.validate(params),
            fresh.validate(params),
            "validate {params}"
        );
        for arch in P::ARCHES {
            let job = Job::example(arch);
            assert_eq!(
                prepared.serialize(&job, params),
                fresh.serialize(&job, params),
                "serialize {params} for {arch}"
            );
        }
    }
}

/// `params` with `key` set to `value`.
pub fn with(mut params: Value, key: &str, value: Value) -> Value {
    params[key] = value;
    params
}

/// `params` without `key`.
pub fn without(mut params: Value, key: &str) -> Value {
    if let Some(object) = params.as_object_mut() {
        object.remove(key);
    }
    params
}

/// The pod template spec of the rendered batch/v1 Job.
///
/// # Panics
/// When nothing rendered is a Job.
pub fn job_pod(rendered: &Rendered) -> &Value {
    let job = rendered
        .manifests
        .iter()
        .find(|m| m.kind == "Job")
        .unwrap_or_else(|| panic!("no Job among the rendered objects"));
    &job.body["spec"]["template"]["spec"]
}

/// The names of a pod spec's steps: its init containers, then its containers.
pub fn step_names(pod: &Value) -> Vec<&str> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod[k].as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// Whether `name` is a file name the host serves from a task's templates directory: no
/// directories, no parent references, no hidden files.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
}

/// Why a rendered object is not of its Kubernetes type ([`check_kubernetes_types`]). Each error
/// names the object (`Job x`).
#[cfg(feature = "k8s")]
#[derive(Debug, thiserror::Error)]
pub enum KubernetesTypeError {
    /// No k8s-openapi type is known here for the object's `apiVersion` and `kind`.
    #[error("{kind} {name}: no k8s-openapi type known for {api_version} {kind}")]
    UnknownKind {
        /// The object's `apiVersion`.
        api_version: String,
        /// Its `kind`.
        kind: String,
        /// Its name.
        name: String,
    },
    /// The object does not deserialize into its type.
    #[error("{kind} {name}: {source}")]
    Json {
        /// The object's `kind`.
        kind: String,
        /// Its name.
        name: String,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// The object has a field its type does not have, or one of the wrong form: it does not come
    /// back unchanged from the typed value.
    #[error("{kind} {name}: {path} is not a field of the type, or has the wrong form")]
    Field {
        /// The object's `kind`.
        kind: String,
        /// Its name.
        name: String,
        /// The JSON Pointer of the field.
        path: String,
    },
}

/// Checks that every rendered object deserializes into its k8s-openapi type (for the kinds Omni
/// plugins render), so a typo in a template fails a test instead of a cluster's admission.
///
/// # Errors
/// The first object that does not match its type, or a kind this function does not know.
#[cfg(feature = "k8s")]
pub fn check_kubernetes_types(rendered: &Rendered) -> Result<(), KubernetesTypeError> {
    use k8s_openapi::api::{batch::v1 as batch, core::v1 as core};
    /// Where the object differs from its typed value, if anywhere.
    // k8s-openapi ignores unknown fields, so a typo (`nodeSelecter`) would deserialize fine:
    // the object must also come back unchanged from the typed value.
    fn check<T: serde::de::DeserializeOwned + serde::Serialize>(
        body: &Value,
    ) -> Result<Option<String>, serde_json::Error> {
        let typed: T = serde_json::from_value(body.clone())?;
        let back = serde_json::to_value(&typed)?;
        Ok(first_difference(body, &back, String::new()))
    }
    for m in &rendered.manifests {
        let checked = match (m.api_version.as_str(), m.kind.as_str()) {
            ("batch/v1", "Job") => check::<batch::Job>(&m.body),
            ("v1", "ConfigMap") => check::<core::ConfigMap>(&m.body),
            ("v1", "Secret") => check::<core::Secret>(&m.body),
            ("v1", "PersistentVolumeClaim") => check::<core::PersistentVolumeClaim>(&m.body),
            _ => {
                return Err(KubernetesTypeError::UnknownKind {
                    api_version: m.api_version.clone(),
                    kind: m.kind.clone(),
                    name: m.name.clone(),
                });
            }
        };
        let (kind, name) = (m.kind.clone(), m.name.clone());
        match checked {
            Ok(None) => {}
            Ok(Some(path)) => return Err(KubernetesTypeError::Field { kind, name, path }),
            Err(source) => return Err(KubernetesTypeError::Json { kind, name, source }),
        }
    }
    Ok(())
}

/// The JSON Pointer of the first place where `a` and `b` differ.
#[cfg(feature = "k8s")]
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            a.keys()
                .chain(b.keys())
                .find_map(|k| match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => first_difference(x, y, format!("{at}/{k}")),
                    _ => Some(format!("{at}/{k}")),
                })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, format!("{at}/{i}"))),
        _ if a == b => None,
        _ => Some(if at.is_empty() { "/".to_owned() } else { at }),
    }
}
