//! # @CRATE@: the `@TASK@` task type
//!
//! An Omni plugin: it describes the task, checks a job's params and renders the Kubernetes
//! objects that run it from `templates/@TASK@/` (`job.yaml`, with the operator's choices in
//! `settings.yaml`). A `@TASK@` job prints `message` `count` times in one step, `run`.
//!
//! Change the params, the checks and the templates to make it your own task; the tests in
//! `tests/` run it natively (`cargo test`), and `cargo build --target wasm32-wasip2 --profile
//! plugin` builds the component the server loads.

use omni_sdk::{Context, Error, FieldError, Job, JsonSchema, Plugin, Rendered};
use serde::{Deserialize, Serialize};

/// The params of a `@TASK@` job. Their JSON Schema (`GET /v1/plugins/@TASK@`) is generated
/// from this type: its doc comments, its serde attributes and its `#[garde(...)]` rules.
#[derive(Debug, Serialize, Deserialize, JsonSchema, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The line the job prints.
    #[garde(length(min = 1, max = 4096))]
    pub message: String,
    /// How many times it prints it (at most the operator's `max_count`).
    #[serde(default = "default_count")]
    #[garde(range(min = 1))]
    pub count: u32,
}

fn default_count() -> u32 {
    1
}

/// The operator's choices: `templates/@TASK@/settings.yaml`, read on every call (edit it and
/// the next job uses it, without a rebuild).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The image of the `run` step.
    pub image: String,
    /// The largest `count` a job may ask for.
    pub max_count: u32,
}

/// The `@TASK@` task type.
#[derive(Debug)]
pub struct @TYPE@;

impl Plugin for @TYPE@ {
    type Params = Params;

    const TASK: &'static str = "@TASK@";
    const DESCRIPTION: &'static str = "Prints a message (a new Omni task type)";
    const ARCHES: &'static [&'static str] = &["x86_64", "aarch64"];
    const STEPS: &'static [&'static str] = &["run"];
    /// Compiled once when the host pre-initializes the plugin, not on every call: list every
    /// template you render or include.
    const TEMPLATES: &'static [&'static str] = &["job.yaml"];

    /// Rules beyond one field's `#[garde]` ones: here, the operator's limit.
    fn check(params: &Params, ctx: &Context) -> Vec<FieldError> {
        match ctx.settings::<Settings>() {
            Ok(settings) if params.count > settings.max_count => vec![FieldError::new(
                "/count",
                format!("must be at most {}", settings.max_count),
            )],
            Ok(_) => Vec::new(),
            Err(e) => vec![FieldError::new("", e.to_string())],
        }
    }

    fn serialize(job: &Job, params: Params, ctx: &Context) -> Result<Rendered, Error> {
        let settings: Settings = ctx.settings()?;
        let objects = ctx.render(
            "job.yaml",
            &serde_json::json!({
                "job": job,
                "params": params,
                "settings": settings,
                "node_arch": job.node_arch(),
            }),
        )?;
        Rendered::from_objects(Self::TASK, job, objects)
    }
}

omni_sdk::export_plugin!(@TYPE@);
