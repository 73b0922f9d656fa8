//! # omni-plugin-rpm-common: what the `rpm` and `srpm` task types share
//!
//! Both tasks build from one spec file, given in one of two forms: inline (`spec`, its file name
//! from its `Name:` tag or `spec_name`, with optional `sources`: base64 contents and modes) or
//! from source control (`scm_url`, `ref`, `spec_path`); both take optional rpm macro `defines`,
//! the build step's `resources` and a `timeout_seconds`. This crate owns those params
//! ([`Params`]), the operator's settings both tasks read from their `settings.yaml`
//! ([`Settings`]), the rules that need more than one field or the settings ([`check`]), and the
//! data their templates render with ([`render`]). The two plugins differ only in their steps and
//! their templates (`rpmbuild -bb` or `-bs`).
//!
//! # Layout
//! - here: params, checks and rendering;
//! - `settings`: the operator's [`Settings`], and the `.repo` file of their repositories;
//! - [`sources`]: an inline source's content and mode, the names rpm takes, and how the
//!   ConfigMap carries them;
//! - [`spec_name`]: an inline spec's file name from its `Name:` tag.
//!
//! It knows nothing of engines or of the host: like a plugin, it sees only a job, its params and
//! the task's templates directory through [`omni_sdk::Context`].

use std::collections::BTreeMap;

use base64::Engine as _;
use omni_sdk::k8s::{CONFIG_MAP_DATA_LIMIT, Resources};
use omni_sdk::{Context, Error, FieldError, Job, JsonSchema, Level, Pattern, Rendered};
use serde::{Deserialize, Serialize};
use serde_json::json;

mod settings;
pub mod sources;
pub mod spec_name;

pub use settings::{Deps, Images, Repository, Settings, settings};
pub use sources::{Mode, Source, SourceFile, UploadedSource};

/// ConfigMap keys the templates use for their own files (sources have keys of their own,
/// [`sources`]).
const SPEC_KEY: &str = "spec";
/// See [`SPEC_KEY`].
const MACROS_KEY: &str = "macros";

/// Params of an `rpm` or `srpm` job.
///
/// Exactly one spec form: `spec` (inline, optionally with `sources`), or `scm_url`, `ref` and
/// `spec_path` together; an error names each field that is missing or not allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, garde::Validate)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {
        "title": "inline spec",
        "required": ["spec"],
        "not": {"anyOf": [{"required": ["scm_url"]}, {"required": ["ref"]}, {"required": ["spec_path"]}]}
    },
    {
        "title": "spec from source control",
        "required": ["scm_url", "ref", "spec_path"],
        "not": {"anyOf": [
            {"required": ["spec"]},
            {"required": ["spec_name"]},
            {"required": ["sources"], "properties": {"sources": {"minProperties": 1}}}
        ]}
    }
]))]
pub struct Params {
    /// The spec file's text (inline form).
    #[garde(length(min = 1, max = CONFIG_MAP_DATA_LIMIT))]
    pub spec: Option<String>,

    /// The inline spec's file name under `SPECS/` (and in the source RPM). Without it, the
    /// spec's `Name:` tag plus `.spec`, with the macros the plugin can expand
    /// ([`spec_name`]). A file name as a source's is.
    #[garde(skip)]
    #[schemars(length(min = 1, max = 255), pattern(r"^[^/\u0000]+$"))]
    pub spec_name: Option<String>,

    /// Files the inline spec's `Source`/`Patch` tags name, written into `SOURCES/`: file name
    /// -> base64 content (standard alphabet, padded), or -> `{"content": ..., "mode": "0755"}`
    /// (mode: octal string or integer value, permission bits only; 0644 without one), or ->
    /// `{"upload": "<sha256>", "mode": ...}`, a file sent to `POST /v1/uploads` in the job's
    /// domain (any size). A name is any file name rpm finds in `SOURCES/`: not empty, not `.`
    /// or `..`, no `/` or NUL, at most 255 bytes. Spec and inline sources together must stay
    /// under the size of one ConfigMap (about 1 MiB); larger ones are uploads.
    #[serde(default)]
    #[schemars(extend(
        "propertyNames" = {"minLength": 1, "maxLength": 255, "pattern": "^[^/\\u0000]+$", "not": {"enum": [".", ".."]}},
        "additionalProperties" = {"oneOf": [
            {"type": "string", "contentEncoding": "base64"},
            {
                "type": "object",
                "required": ["content"],
                "additionalProperties": false,
                "properties": {
                    "content": {"type": "string", "contentEncoding": "base64"},
                    "mode": {"oneOf": [
                        {"type": "string", "pattern": "^[0-7]{3,4}$"},
                        {"type": "integer", "minimum": 0, "maximum": 511}
                    ]}
                }
            },
            {
                "type": "object",
                "required": ["upload"],
                "additionalProperties": false,
                "properties": {
                    "upload": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                    "mode": {"oneOf": [
                        {"type": "string", "pattern": "^[0-7]{3,4}$"},
                        {"type": "integer", "minimum": 0, "maximum": 511}
                    ]}
                }
            }
        ]},
        "maxProperties" = 500
    ))]
    #[garde(length(max = 500))]
    pub sources: BTreeMap<String, Source>,

    /// Git repository to clone (source control form). `https://` unless the operator allows
    /// `http://` and `git://` too; no credentials in the URL.
    #[schemars(pattern(r"^https://\S+$"))]
    #[garde(length(min = 1, max = 2048))]
    pub scm_url: Option<String>,

    /// Branch, tag or commit to check out (source control form).
    // Checked in `check`, not by garde: garde 0.22 names fields as Rust does and ignores its own
    // `rename`, so its errors would point at `/git_ref`.
    #[serde(rename = "ref")]
    #[schemars(length(min = 1, max = 255), pattern(GIT_REF))]
    #[garde(skip)]
    pub git_ref: Option<String>,

    /// Path of the spec file inside the repository, relative, ending in `.spec` (source control
    /// form). The files beside it become the build's sources.
    #[garde(length(max = 1024), pattern(SPEC_PATH))]
    pub spec_path: Option<String>,

    /// rpm macros to define for the build (`{"dist": ".oe2403"}` is `%dist .oe2403`): name ->
    /// value, a value on one line.
    #[serde(default)]
    #[schemars(extend(
        "propertyNames" = {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "maxLength": 64},
        "additionalProperties" = {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": "^[^\\r\\n]*$"},
        "maxProperties" = 100
    ))]
    #[garde(length(max = 100))]
    pub defines: BTreeMap<String, String>,

    /// CPU and memory of the build step.
    #[serde(default)]
    #[garde(dive)]
    pub resources: Resources,

    /// How long the whole job may run, in seconds.
    #[serde(default = "default_timeout")]
    #[garde(range(min = 60, max = 172_800))]
    pub timeout_seconds: u32,
}

fn default_timeout() -> u32 {
    3600
}

/// The spec form a job chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `spec` (and `sources`) in the params.
    Inline,
    /// `scm_url`, `ref` and `spec_path`.
    Scm,
}

impl Form {
    fn name(self) -> &'static str {
        match self {
            Self::Inline => "inline",
            Self::Scm => "scm",
        }
    }
}

/// A JSON Pointer to `/<field>/<key>`, with `key` escaped.
fn pointer(field: &str, key: &str) -> String {
    format!("/{field}/{}", omni_sdk::json_pointer_escape(key))
}

/// The rules of [`Params`] that garde cannot say: exactly one spec form, the SCM transport the
/// operator allows, source names and contents, macro names and values, and the ConfigMap size.
///
/// When the settings cannot be read, `scm_url` is held to the default policy (https only) and
/// the error is logged; `serialize` then reports the broken settings.
pub fn check(params: &Params, ctx: &Context) -> Vec<FieldError> {
    let allow_insecure = match settings(ctx) {
        Ok(settings) => settings.allow_insecure_scm,
        Err(e) => {
            ctx.log(
                Level::Error,
                &format!("checking params with the default policy: {e}"),
            );
            false
        }
    };
    let mut errors = form_errors(params);
    if let Some(url) = &params.scm_url
        && let Some(message) = scm_url_error(url, allow_insecure)
    {
        errors.push(FieldError::new("/scm_url", message));
    }
    if let Some(git_ref) = &params.git_ref
        && !is_safe_ref(git_ref)
    {
        errors.push(FieldError::new(
            "/ref",
            "must be a branch, tag or commit: letters, digits and `._/+-`, not starting with \
             `-`, `.` or `/`, without `..`, at most 255",
        ));
    }
    errors.extend(source_errors(params));
    errors.extend(define_errors(&params.defines));
    if params.spec.is_some()
        && let Err(error) = inline_spec_file(params)
    {
        errors.push(error);
    }
    errors
}

/// The inline spec's file name: `spec_name`, else its `Name:` tag's value and `.spec`
/// ([`spec_name::package_name`]); a file name as a source's is, and none of the sources'.
///
/// # Errors
/// At `/spec_name` or `/spec`, saying why there is no such name.
pub fn inline_spec_file(params: &Params) -> Result<String, FieldError> {
    let (path, file) = match &params.spec_name {
        Some(name) => ("/spec_name", name.clone()),
        None => {
            let spec = params.spec.as_deref().unwrap_or_default();
            let Some(name) = spec_name::package_name(spec, &params.defines) else {
                return Err(FieldError::new(
                    "/spec",
                    "has no `Name:` tag (rpm needs one); give it, or `spec_name` for the file",
                ));
            };
            ("/spec", format!("{name}.spec"))
        }
    };
    if let Some(message) = sources::name_error(&file) {
        let what = if path == "/spec" {
            format!(
                "the `Name:` tag makes the spec's file name {file:?}, which {message}; give                  `spec_name`"
            )
        } else {
            message.to_owned()
        };
        return Err(FieldError::new(path, what));
    }
    if params.sources.contains_key(&file) {
        return Err(FieldError::new(
            pointer("sources", &file),
            format!("has the spec's file name ({file}): both would be one file of the source RPM"),
        ));
    }
    Ok(file)
}

/// Which form `params` chose, if exactly one is complete; [`check`] has vetted them before
/// `serialize` runs, so `None` there is a bug.
pub fn form(params: &Params) -> Option<Form> {
    match (
        &params.spec,
        &params.scm_url,
        &params.git_ref,
        &params.spec_path,
    ) {
        (Some(_), None, None, None) => Some(Form::Inline),
        (None, Some(_), Some(_), Some(_))
            if params.sources.is_empty() && params.spec_name.is_none() =>
        {
            Some(Form::Scm)
        }
        _ => None,
    }
}

fn form_errors(params: &Params) -> Vec<FieldError> {
    let scm = [
        ("/scm_url", params.scm_url.is_some()),
        ("/ref", params.git_ref.is_some()),
        ("/spec_path", params.spec_path.is_some()),
    ];
    let any_scm = scm.iter().any(|(_, given)| *given);
    let mut errors = Vec::new();
    if params.spec.is_some() {
        for (path, _) in scm.iter().filter(|(_, given)| *given) {
            errors.push(FieldError::new(
                *path,
                "not allowed with `spec`: give the spec inline or from source control, not both",
            ));
        }
    } else if any_scm {
        for (path, _) in scm.iter().filter(|(_, given)| !*given) {
            errors.push(FieldError::new(
                *path,
                "missing: `scm_url`, `ref` and `spec_path` go together",
            ));
        }
        if !params.sources.is_empty() {
            errors.push(FieldError::new(
                "/sources",
                "not allowed with `scm_url`: sources come from the repository",
            ));
        }
        if params.spec_name.is_some() {
            errors.push(FieldError::new(
                "/spec_name",
                "not allowed with `scm_url`: the spec's file name is `spec_path`'s",
            ));
        }
    } else {
        errors.push(FieldError::new(
            "/spec",
            "missing: give `spec` (the spec file's text), or `scm_url`, `ref` and `spec_path`",
        ));
    }
    errors
}

/// Why `url` is not an SCM URL this service clones, if it is not.
fn scm_url_error(url: &str, allow_insecure: bool) -> Option<String> {
    let schemes: &[&str] = if allow_insecure {
        &["https", "http", "git"]
    } else {
        &["https"]
    };
    omni_sdk::url_error(url, schemes)
}

/// A git ref that cannot be read as an option, a revision range (`a..b`) or a revision
/// expression (`@{`, `^`, `~`, `:`).
static GIT_REF: Pattern = Pattern::new(r"^[A-Za-z0-9_+](?:[A-Za-z0-9_+/-]|\.[A-Za-z0-9_+/-])*$");

/// A relative path of a `.spec` file, with no `..` or hidden components.
static SPEC_PATH: Pattern =
    Pattern::new(r"^(?:[A-Za-z0-9_+][A-Za-z0-9._+-]*/)*[A-Za-z0-9_+][A-Za-z0-9._+-]*\.spec$");

/// Whether `git_ref` is what the schema says `ref` is.
fn is_safe_ref(git_ref: &str) -> bool {
    !git_ref.is_empty() && git_ref.len() <= 255 && GIT_REF.is_match(git_ref)
}

/// The bytes the job's ConfigMap holds: spec, macros and decoded sources, plus their keys.
fn config_map_size(params: &Params, decoded_sources: usize) -> usize {
    let spec = params.spec.as_deref().map_or(0, str::len);
    SPEC_KEY.len()
        + spec
        + MACROS_KEY.len()
        + macros(&params.defines).len()
        + decoded_sources
        + sources::overhead(&params.sources)
}

fn source_errors(params: &Params) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut decoded = 0;
    for (name, source) in &params.sources {
        let path = pointer("sources", name);
        let named = sources::check(name, source, &path);
        if !named.is_empty() {
            errors.extend(named);
            continue;
        }
        let Some(content) = source.content() else {
            continue;
        };
        match base64::engine::general_purpose::STANDARD.decode(content) {
            Ok(bytes) => decoded += bytes.len(),
            Err(e) => errors.push(FieldError::new(
                path,
                format!("is not base64 (standard alphabet, padded): {e}"),
            )),
        }
    }
    let size = config_map_size(params, decoded);
    if errors.is_empty() && size > CONFIG_MAP_DATA_LIMIT {
        let path = if params.sources.is_empty() {
            "/spec"
        } else {
            "/sources"
        };
        errors.push(FieldError::new(
            path,
            format!(
                "spec and sources take {size} bytes, more than the {CONFIG_MAP_DATA_LIMIT} an \
                 inline job can carry; send large sources to POST /v1/uploads and name them \
                 by sha256 (`{{\"upload\": \"<sha256>\"}}`), or build from source control \
                 (`scm_url`)"
            ),
        ));
    }
    errors
}

fn define_errors(defines: &BTreeMap<String, String>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (name, value) in defines {
        let path = pointer("defines", name);
        let mut chars = name.chars();
        let name_ok = name.len() <= 64
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            errors.push(FieldError::new(
                path,
                "is not an rpm macro name: a letter or `_`, then letters, digits and `_`, at most 64",
            ));
        } else if value.is_empty() {
            errors.push(FieldError::new(
                path,
                "must not be empty: rpm rejects macros without a body",
            ));
        } else if value.contains(['\n', '\r']) {
            errors.push(FieldError::new(path, "must be one line"));
        } else if value.len() > 4096 {
            errors.push(FieldError::new(path, "is longer than 4096 bytes"));
        }
    }
    errors
}

/// The `macros` file: one `%name value` line per define, in name order.
pub fn macros(defines: &BTreeMap<String, String>) -> String {
    defines
        .iter()
        .map(|(name, value)| format!("%{name} {value}\n"))
        .collect()
}

/// Renders `configmap.yaml` and `job.yaml` of the task's templates for `job`.
///
/// The templates see `job`, `node_arch`, `params`, `settings`, `form` (`inline` or `scm`),
/// `spec_file` (the spec's file name under `SPECS/`), `macros` (the `macros` file's text),
/// `sources` (what the ConfigMap holds of each source, [`sources::entries`]), `uploads`
/// (whether any source is an upload: the job then declares the `uploads` volume),
/// `repo_file` (the `.repo` file of `deps.repositories`, empty without any),
/// `resources` and `helper_resources` (container `resources` objects).
///
/// # Errors
/// [`Error::Template`] when the settings or templates are wrong; [`Error::Internal`] when the
/// params did not pass [`check`].
pub fn render(task: &str, job: &Job, params: &Params, ctx: &Context) -> Result<Rendered, Error> {
    let settings = settings(ctx)?;
    let form = form(params)
        .ok_or_else(|| Error::Internal("params reached serialize without one spec form".into()))?;
    let spec_file = match form {
        Form::Inline => inline_spec_file(params).map_err(|e| {
            Error::Internal(format!(
                "params reached serialize without a spec name: {e:?}"
            ))
        })?,
        Form::Scm => {
            let path = params.spec_path.as_deref().unwrap_or_default();
            path.rsplit('/').next().unwrap_or(path).to_owned()
        }
    };
    let data = json!({
        "job": job,
        "node_arch": job.node_arch(),
        "params": params,
        "settings": settings,
        "form": form.name(),
        "spec_file": spec_file,
        "macros": macros(&params.defines),
        "sources": sources::entries(&params.sources),
        "uploads": sources::any_upload(&params.sources),
        "repo_file": settings.deps.repo_file().map_err(Error::Template)?,
        "resources": params.resources.requirements(),
        "helper_resources": settings.job.helper_resources.requirements(),
    });
    let mut objects = ctx.render("configmap.yaml", &data)?;
    objects.extend(ctx.render("job.yaml", &data)?);
    Rendered::from_objects(task, job, objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_escape_keys() {
        assert_eq!(pointer("files", "/etc/a~b"), "/files/~1etc~1a~0b");
    }

    #[test]
    fn macros_are_one_line_each_in_name_order() {
        let defines = BTreeMap::from([
            ("z".to_owned(), "1".to_owned()),
            ("a".to_owned(), "%{z}".to_owned()),
        ]);
        assert_eq!(macros(&defines), "%a %{z}\n%z 1\n");
        assert_eq!(macros(&BTreeMap::new()), "");
    }

    #[test]
    fn refs() {
        for ok in [
            "main",
            "v1.2.3",
            "refs/pull/7/head",
            "0123abcd",
            "+x",
            "_a.b",
        ] {
            assert!(is_safe_ref(ok), "{ok}");
        }
        for bad in [
            "", "-b", ".a", "/a", "a..b", "a.", "a b", "a@{1}", "a^", "a~1", "a:b", "é",
        ] {
            assert!(!is_safe_ref(bad), "{bad}");
        }
        assert!(!is_safe_ref(&"a".repeat(256)));
    }

    #[test]
    fn scm_urls() {
        assert_eq!(
            scm_url_error("https://gitee.com/src-openeuler/zlib.git", false),
            None
        );
        assert!(scm_url_error("http://example.com/a.git", false).is_some());
        assert_eq!(scm_url_error("http://example.com/a.git", true), None);
        assert_eq!(scm_url_error("git://example.com/a.git", true), None);
        assert!(scm_url_error("ssh://example.com/a.git", true).is_some());
        assert!(scm_url_error("file:///etc", true).is_some());
        assert!(scm_url_error("https://", false).is_some());
        assert!(scm_url_error("https://user:token@example.com/a.git", false).is_some());
        assert!(scm_url_error("https://example.com/a b", false).is_some());
        assert!(scm_url_error("example.com/a.git", false).is_some());
    }
}
