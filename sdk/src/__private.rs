//! What [`export_plugin!`](crate::export_plugin) expands to calls; not a public API.
//!
//! The generic functions here are the whole behaviour of a plugin's exports. The native
//! [`testing`](crate::testing) harness calls the same functions, so a plugin's tests exercise
//! exactly what the component runs.

use serde_json::Value;

use crate::{Context, Description, Error, FieldError, Job, Plugin, Rendered};

/// The generated bindings of the `job-handler` world.
#[cfg(target_arch = "wasm32")]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "omni:plugin/job-handler-preinit",
        pub_export_macro: true,
        default_bindings_module: "omni_sdk::__private::bindings",
    });
}

pub(crate) fn describe_plugin<P: Plugin>(version: &str) -> Description {
    let schema = schemars::schema_for!(P::Params);
    Description {
        task: P::TASK.to_owned(),
        version: version.to_owned(),
        description: P::DESCRIPTION.to_owned(),
        arches: P::ARCHES.iter().map(|a| (*a).to_owned()).collect(),
        params_schema: serde_json::to_value(&schema).unwrap_or(Value::Null),
        steps: P::STEPS.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Parses and checks params: JSON syntax, then the type (serde), then `#[garde]` rules, then
/// [`Plugin::check`]. Stops at the first stage that finds anything wrong.
pub(crate) fn parse_params<P: Plugin>(
    text: &str,
    ctx: &Context,
) -> Result<P::Params, Vec<FieldError>> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| vec![FieldError::new("", format!("params are not JSON: {e}"))])?;
    if !value.is_object() {
        return Err(vec![FieldError::new("", "params must be a JSON object")]);
    }
    let params: P::Params = serde_path_to_error::deserialize(&value).map_err(|e| {
        let mut path = pointer_of_serde_path(e.path());
        let message = e.inner().to_string();
        // serde reports an unknown or a missing key at its parent; point at the key itself.
        let key = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|prefix| message.strip_prefix(prefix))
            .and_then(|rest| rest.split('`').next());
        if let Some(key) = key {
            let segment = format!("/{}", escape(key));
            if !path.ends_with(&segment) {
                path.push_str(&segment);
            }
        }
        vec![FieldError::new(path, message)]
    })?;
    if let Err(report) = garde::Validate::validate(&params) {
        return Err(report
            .iter()
            .map(|(path, error)| FieldError::new(pointer_of_garde_path(path), error.message()))
            .collect());
    }
    let errors = P::check(&params, ctx);
    if errors.is_empty() {
        Ok(params)
    } else {
        Err(errors)
    }
}

pub(crate) fn serialize_job<P: Plugin>(
    job: &Job,
    params: &str,
    ctx: &Context,
) -> Result<Rendered, Error> {
    if omni_arch::to_kubernetes(&job.arch).is_none() || !P::ARCHES.contains(&job.arch.as_str()) {
        return Err(Error::Internal(format!(
            "task {} does not build for arch {:?} (it builds for {})",
            P::TASK,
            job.arch,
            P::ARCHES.join(", ")
        )));
    }
    let params = parse_params::<P>(params, ctx).map_err(Error::InvalidParams)?;
    P::serialize(job, params, ctx)
}

/// Escapes one JSON Pointer segment (RFC 6901): `~` as `~0`, `/` as `~1`.
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn pointer_of_serde_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => out.push_str(&format!("/{}", escape(key))),
            Segment::Enum { variant } => out.push_str(&format!("/{}", escape(variant))),
            Segment::Unknown => {}
        }
    }
    out
}

fn pointer_of_garde_path(path: &garde::Path) -> String {
    let mut out = String::new();
    // garde keeps the leaf first; `__iter` is its only accessor of the components.
    for (kind, component) in path.__iter().rev() {
        if kind != garde::error::Kind::None {
            out.push('/');
            out.push_str(&escape(component));
        }
    }
    out
}

#[cfg(target_arch = "wasm32")]
mod guest {
    use std::sync::{Arc, OnceLock};

    use super::bindings::omni::plugin::{host, types as wit};
    use crate::{Context, Error, FieldError, Job, Level, Plugin};

    /// The context `wizer-initialize` prepared, in the host's snapshot of the instance; empty
    /// when the host runs the component without pre-initializing it.
    static PREPARED: OnceLock<Context> = OnceLock::new();

    /// The prepared context, or a fresh one for this call.
    fn with_context<R>(f: impl FnOnce(&Context) -> R) -> R {
        match PREPARED.get() {
            Some(ctx) => f(ctx),
            None => f(&context()),
        }
    }

    fn context() -> Context {
        Context::new(
            Arc::new(host::template),
            Arc::new(|level, message| {
                let level = match level {
                    Level::Debug => host::Level::Debug,
                    Level::Info => host::Level::Info,
                    Level::Warn => host::Level::Warn,
                    Level::Error => host::Level::Error,
                };
                host::log(level, message);
            }),
        )
    }

    fn field_errors(errors: Vec<FieldError>) -> Vec<wit::FieldError> {
        errors
            .into_iter()
            .map(|e| wit::FieldError {
                path: e.path,
                message: e.message,
            })
            .collect()
    }

    /// `describe` of the component.
    pub fn describe<P: Plugin>(version: &str) -> wit::PluginInfo {
        let d = super::describe_plugin::<P>(version);
        wit::PluginInfo {
            task: d.task,
            version: d.version,
            description: d.description,
            arches: d.arches,
            params_schema: d.params_schema.to_string(),
            steps: d.steps,
        }
    }

    /// `wizer-initialize` of the component: parses the settings and compiles
    /// [`Plugin::TEMPLATES`] into the context every call of the snapshot starts with.
    pub fn initialize<P: Plugin>() {
        let ctx = context();
        if let Err(e) = ctx.prepare(P::TEMPLATES) {
            // Not fatal: the calls that need the file report it to whoever submitted the job.
            ctx.log(crate::Level::Warn, &format!("while pre-initializing: {e}"));
        }
        // Set once: the host calls this on one instance, before its snapshot.
        let _ = PREPARED.set(ctx);
    }

    /// `validate` of the component.
    pub fn validate<P: Plugin>(params: &str) -> Result<(), Vec<wit::FieldError>> {
        with_context(|ctx| super::parse_params::<P>(params, ctx))
            .map(drop)
            .map_err(field_errors)
    }

    /// `serialize` of the component.
    pub fn serialize<P: Plugin>(
        job: wit::JobContext,
        params: &str,
    ) -> Result<wit::Rendered, wit::SerializeError> {
        let job = Job {
            id: job.job_id,
            service: job.service,
            domain: job.domain,
            namespace: job.namespace,
            name: job.name,
            arch: job.arch,
        };
        let rendered = with_context(|ctx| super::serialize_job::<P>(&job, params, ctx)).map_err(
            |e| match e {
                Error::InvalidParams(errors) => {
                    wit::SerializeError::InvalidParams(field_errors(errors))
                }
                Error::Template(m) => wit::SerializeError::Template(m),
                Error::Internal(m) => wit::SerializeError::Internal(m),
            },
        )?;
        Ok(wit::Rendered {
            manifests: rendered
                .manifests
                .into_iter()
                .map(|m| wit::Manifest {
                    api_version: m.api_version,
                    kind: m.kind,
                    name: m.name,
                    body: m.body.to_string(),
                })
                .collect(),
            primary: rendered.primary,
        })
    }
}

#[cfg(target_arch = "wasm32")]
pub use guest::{describe, initialize, serialize, validate};
