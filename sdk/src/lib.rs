//! # omni-sdk: Omni task types as plain Rust types
//!
//! An Omni plugin is a WebAssembly component that implements the WIT world `job-handler`
//! (`omni:plugin@0.1.0`, in the repository's `wit/`). This crate hides the component model: a
//! plugin is a type that implements [`Plugin`], its params are a serde type whose JSON Schema is
//! generated from the same definition (schemars, with `#[garde(...)]` rules checked at run time and
//! written into the schema), its Kubernetes objects are rendered from the task's templates with
//! minijinja, and [`export_plugin!`] turns it into the component's exports.
//!
//! What the crate owns: the guest side of the contract (bindings, conversions, the template loader
//! that asks the host, error mapping) and the helpers plugins share. What it must not know about:
//! the host's engines, store or HTTP API.
//!
//! # Layout
//! - [`Plugin`], [`Job`], [`FieldError`], [`Manifest`], [`Rendered`], [`Error`]: the contract in
//!   Rust types.
//! - [`Context`]: what a plugin may use while it runs — templates, settings, the host's log.
//! - [`k8s`]: helpers for the objects every task renders (labels, resources, arch node selector).
//! - [`Pattern`]: a regular expression for `#[garde(pattern(...))]`, written once for the check and
//!   the schema.
//! - [`testing`]: a native harness, so a plugin's tests run with `cargo test` without wasmtime.
//! - [`export_plugin!`]: the component's exports, on `wasm32` targets only.
//!
//! # A complete plugin
//!
//! `src/lib.rs` of a crate with `crate-type = ["cdylib", "rlib"]`, built with
//! `cargo build --target wasm32-wasip2`:
//!
//! ```
//! use omni_sdk::{Context, Error, FieldError, Job, JsonSchema, Plugin, Rendered};
//! use serde::{Deserialize, Serialize};
//!
//! /// Params of an `echo` job.
//! #[derive(Debug, Serialize, Deserialize, JsonSchema, garde::Validate)]
//! #[serde(deny_unknown_fields)]
//! pub struct Params {
//!     /// The text to print.
//!     #[garde(length(min = 1, max = 4096))]
//!     pub text: String,
//! }
//!
//! /// Prints a line.
//! pub struct Echo;
//!
//! impl Plugin for Echo {
//!     type Params = Params;
//!     const TASK: &'static str = "echo";
//!     const DESCRIPTION: &'static str = "Prints a line";
//!     const ARCHES: &'static [&'static str] = &["x86_64", "aarch64"];
//!     const STEPS: &'static [&'static str] = &["echo"];
//!     const TEMPLATES: &'static [&'static str] = &["job.yaml"];
//!
//!     fn check(params: &Params, _ctx: &Context) -> Vec<FieldError> {
//!         if params.text.contains('\0') {
//!             return vec![FieldError::new("/text", "must not contain NUL")];
//!         }
//!         Vec::new()
//!     }
//!
//!     fn serialize(job: &Job, params: Params, ctx: &Context) -> Result<Rendered, Error> {
//!         let objects = ctx.render("job.yaml", &serde_json::json!({
//!             "job": job, "params": params, "node_arch": job.node_arch(),
//!         }))?;
//!         Rendered::from_objects(Self::TASK, job, objects)
//!     }
//! }
//!
//! omni_sdk::export_plugin!(Echo);
//!
//! # let dir = tempdir();
//! # std::fs::write(dir.join("job.yaml"), "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ job.name }}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: echo\n        image: busybox\n        args: [echo, {{ params.text | tojson }}]\n").unwrap();
//! // Its tests, natively, with the task's templates directory:
//! let harness = omni_sdk::testing::Harness::<Echo>::new(&dir);
//! let rendered = harness
//!     .serialize(&Job::example("x86_64"), &serde_json::json!({"text": "hi"}))
//!     .unwrap();
//! assert_eq!(rendered.primary, Job::example("x86_64").name);
//! let errors = harness.validate(&serde_json::json!({"text": ""})).unwrap_err();
//! assert_eq!(errors[0].path, "/text");
//! # fn tempdir() -> std::path::PathBuf {
//! #     let d = std::env::temp_dir().join(format!("omni-sdk-doc-{}", std::process::id()));
//! #     std::fs::create_dir_all(&d).unwrap();
//! #     d
//! # }
//! ```
//!
//! The templates live in the host's `templates/<task>/` directory, where operators edit them
//! without rebuilding the plugin; the host serves them to the plugin through the `template`
//! import, and the native harness reads them from the directory you give it.

#[doc(hidden)]
pub mod __private;
mod context;
pub mod k8s;
mod pattern;
pub mod testing;
mod types;
mod url;

pub use __private::escape as json_pointer_escape;
pub use context::{Context, Level};
pub use omni_arch as arch;
pub use pattern::Pattern;
pub use schemars::{self, JsonSchema};
pub use serde_json;
pub use types::{Description, Error, FieldError, Job, Manifest, Rendered};
pub use url::url_error;

/// A task type.
///
/// Implement it on a plain type and pass that type to [`export_plugin!`]. The associated
/// constants are what `describe` answers; the plugin's version is its crate's version.
pub trait Plugin {
    /// The job's params. `#[serde(deny_unknown_fields)]` makes unknown keys an error;
    /// `#[garde(...)]` rules are checked before [`Plugin::check`] and appear in the schema.
    type Params: serde::de::DeserializeOwned + JsonSchema + garde::Validate<Context = ()>;

    /// The task name jobs ask for: lowercase letters, digits and `-`, 1 to 63 long.
    const TASK: &'static str;
    /// One line for humans.
    const DESCRIPTION: &'static str;
    /// The API arches (`x86_64`, `aarch64`, ...) the task can build for.
    const ARCHES: &'static [&'static str];
    /// The names of the job's steps, in the order they run.
    const STEPS: &'static [&'static str];
    /// The template files the plugin renders or includes. When the host pre-initializes the
    /// component (see the `job-handler-preinit` world), these are compiled once, with
    /// [`SETTINGS`] parsed, instead of on every call; a template not listed here still works,
    /// compiled by each call that uses it.
    const TEMPLATES: &'static [&'static str] = &[];

    /// Rules that need more than one field or the operator's settings. Runs after the params
    /// deserialized and passed their `#[garde]` rules; the default accepts everything.
    fn check(params: &Self::Params, ctx: &Context) -> Vec<FieldError> {
        let _ = (params, ctx);
        Vec::new()
    }

    /// Renders the Kubernetes objects that run `job`.
    ///
    /// # Errors
    /// [`Error::Template`] when the operator's templates are missing or wrong,
    /// [`Error::InvalidParams`] or [`Error::Internal`] for anything else the plugin can name.
    fn serialize(job: &Job, params: Self::Params, ctx: &Context) -> Result<Rendered, Error>;
}

/// Exports a [`Plugin`] as the component's `job-handler` world.
///
/// On `wasm32` targets this generates the exports the host calls; elsewhere it expands to
/// nothing, so the same crate builds natively for its tests.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::bindings::{self, omni::plugin::types as wit};

            struct Guest;

            impl bindings::Guest for Guest {
                fn describe() -> wit::PluginInfo {
                    $crate::__private::describe::<$plugin>(env!("CARGO_PKG_VERSION"))
                }

                fn validate(params: String) -> Result<(), Vec<wit::FieldError>> {
                    $crate::__private::validate::<$plugin>(&params)
                }

                fn serialize(
                    job: wit::JobContext,
                    params: String,
                ) -> Result<wit::Rendered, wit::SerializeError> {
                    $crate::__private::serialize::<$plugin>(job, &params)
                }

                fn wizer_initialize() {
                    $crate::__private::initialize::<$plugin>()
                }
            }

    bindings::export!(Guest with_types_in $crate::__private::bindings);
        };
    };
}
