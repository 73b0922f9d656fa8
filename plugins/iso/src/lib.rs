//! # omni-plugin-iso: the `iso` task type
//!
//! Builds an openEuler ISO image, in one of two modes chosen by the `mode` param:
//!
//! - `release`: an installer ISO of an openEuler release with the packages the job lists.
//!   Params: `version` (a release named in the operator's `settings.yaml`) and `packages`
//!   (1 to 5000 unique RPM names). Steps: `rootfs-download` fetches the release's cached rootfs
//!   (its URL is in the settings), `image-build` runs omni-imager with the job's `conf.yaml`,
//!   package list and `.repo` file (rendered into the job's ConfigMap), `collect` moves the ISO
//!   and its sha256 to `$OMNI_OUTPUT`.
//! - `customize`: an existing ISO with a new volume label, kickstart and files. Params:
//!   `base_iso` (an https URL), optional `base_iso_sha256`, `volume_label`, optional `kickstart`
//!   (mapped to `/ks.cfg`) and optional `files` (absolute path in the ISO -> text). Steps:
//!   `fetch` downloads and checks the base ISO, `customize` runs xorriso (`-indev` the base,
//!   `-outdev` the new ISO in `$OMNI_OUTPUT`, `-volid`, one `-map` per file, `-boot_image any
//!   replay`) and writes its sha256.
//!
//! Both modes take the build step's `resources` (default 4 CPUs, 8Gi) and `timeout_seconds`
//! (default 14400). [`Iso::check`] reports each field that is missing or not allowed for the
//! chosen mode. The Kubernetes objects are `templates/iso/configmap.yaml` and `job.yaml`;
//! images, releases and policy are in `templates/iso/settings.yaml`.

use std::collections::{BTreeMap, HashMap};

use omni_sdk::k8s::{CONFIG_MAP_DATA_LIMIT, JobSettings, Resources};
use omni_sdk::{Context, Error, FieldError, Job, JsonSchema, Level, Pattern, Plugin, Rendered};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What an `iso` job builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// An installer ISO of a release with the job's packages (`version`, `packages`).
    Release,
    /// An existing ISO with a new label, kickstart and files (`base_iso`, `volume_label`, ...).
    Customize,
}

static PACKAGE_NAME: Pattern = Pattern::new(r"^[A-Za-z0-9_+][A-Za-z0-9._+-]*$");
/// The shape of an openEuler release (`24.03-LTS-SP1`); settings.yaml lists which exist.
static RELEASE_VERSION: Pattern = Pattern::new(r"^[0-9]{2}\.[0-9]{2}(-LTS(-SP[0-9]+)?)?$");
static SHA256: Pattern = Pattern::new(r"^[0-9a-fA-F]{64}$");
/// An ISO 9660 volume id as xorriso writes it.
static VOLUME_LABEL: Pattern = Pattern::new(r"^[A-Z0-9_-]{1,32}$");

/// An RPM package name (`kernel`, `python3-pip`, `gcc-c++`).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, garde::Validate,
)]
#[serde(transparent)]
#[garde(transparent)]
pub struct PackageName(#[garde(length(max = 128), pattern(PACKAGE_NAME))] pub String);

/// Params of an `iso` job. Which fields are required or allowed depends on `mode`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, garde::Validate)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {
        "title": "release",
        "properties": {"mode": {"const": "release"}},
        "required": ["mode", "version", "packages"],
        "not": {"anyOf": [
            {"required": ["base_iso"]}, {"required": ["base_iso_sha256"]},
            {"required": ["volume_label"]}, {"required": ["kickstart"]}, {"required": ["files"]}
        ]}
    },
    {
        "title": "customize",
        "properties": {"mode": {"const": "customize"}},
        "required": ["mode", "base_iso", "volume_label"],
        "not": {"anyOf": [{"required": ["version"]}, {"required": ["packages"]}]}
    }
]))]
pub struct Params {
    /// `release` or `customize`.
    #[garde(skip)]
    pub mode: Mode,

    /// The openEuler release to build from (`24.03-LTS-SP1`); one of the releases this service
    /// offers (release mode).
    #[garde(length(max = 32), pattern(RELEASE_VERSION))]
    pub version: Option<String>,

    /// The packages to offer in the installer (release mode).
    #[schemars(extend("uniqueItems" = true))]
    #[garde(length(min = 1, max = 5000), dive)]
    pub packages: Option<Vec<PackageName>>,

    /// URL of the ISO to customize (customize mode): https, or http if the operator allows it.
    #[schemars(pattern(r"^https://\S+$"))]
    #[garde(length(min = 1, max = 2048))]
    pub base_iso: Option<String>,

    /// The base ISO's sha256, checked before it is used (customize mode).
    #[garde(pattern(SHA256))]
    pub base_iso_sha256: Option<String>,

    /// The new ISO's volume label (customize mode). Boot menus often find the installer by the
    /// label (`inst.stage2=hd:LABEL=...`): change theirs through `files` when it changes.
    #[garde(pattern(VOLUME_LABEL))]
    pub volume_label: Option<String>,

    /// A kickstart file, placed at `/ks.cfg` (customize mode).
    #[garde(length(min = 1, max = CONFIG_MAP_DATA_LIMIT))]
    pub kickstart: Option<String>,

    /// Files to add or replace (customize mode): absolute path in the ISO -> text content.
    // garde's `length` on a map does not reach the schema: `maxProperties` says it there.
    #[schemars(extend(
        "propertyNames" = {"pattern": "^(/[A-Za-z0-9._+-]+)+$", "maxLength": 1024},
        "maxProperties" = 200
    ))]
    #[garde(length(max = 200))]
    pub files: Option<BTreeMap<String, String>>,

    /// CPU and memory of the build step (`image-build` or `customize`). A field left out takes
    /// the SDK's default (2 CPUs, 4Gi), not this default's.
    #[serde(default = "default_resources")]
    #[garde(dive)]
    pub resources: Resources,

    /// How long the whole job may run, in seconds.
    #[serde(default = "default_timeout")]
    #[garde(range(min = 60, max = 172_800))]
    pub timeout_seconds: u32,
}

fn default_resources() -> Resources {
    Resources {
        cpu: "4".to_owned(),
        memory: "8Gi".to_owned(),
    }
}

fn default_timeout() -> u32 {
    14_400
}

/// The operator's choices, from `templates/iso/settings.yaml`. Image names live only there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The images the steps run.
    pub images: Images,
    /// How the Jobs run (`job:`): pull policy, retries, TTL, helper resources.
    pub job: JobSettings,
    /// omni-imager's `--build-type`.
    pub build_type: String,
    /// Whether `base_iso` may be an `http://` URL.
    #[serde(default)]
    pub allow_insecure_base_iso: bool,
    /// The releases release mode builds, by version.
    pub releases: BTreeMap<String, Release>,
}

/// Worker images (name and tag or digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Images {
    /// Runs `rootfs-download`, `collect` and `fetch`: sh, curl, sha256sum.
    pub tools: String,
    /// Runs `image-build`: omni-imager.
    pub imager: String,
    /// Runs `customize`: sh, cp, xorriso, sha256sum.
    pub xorriso: String,
}

/// One release that release mode builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Base URL of the release's repositories.
    pub repo_url: String,
    /// URL of the cached rootfs tarball, per API arch.
    pub rootfs: BTreeMap<String, String>,
}

fn settings(ctx: &Context) -> Result<Settings, Error> {
    let settings: Settings = ctx.settings()?;
    if let Err(report) = garde::Validate::validate(&settings.job) {
        return Err(Error::Template(format!("settings.yaml: job: {report}")));
    }
    Ok(settings)
}

/// The ISO path `kickstart` is mapped to.
const KICKSTART_PATH: &str = "/ks.cfg";

/// A JSON Pointer to `/<field>/<key>`, with `key` escaped.
fn pointer(field: &str, key: &str) -> String {
    format!("/{field}/{}", omni_sdk::json_pointer_escape(key))
}

/// Builds ISO images.
#[derive(Debug)]
pub struct Iso;

impl Plugin for Iso {
    type Params = Params;

    const TASK: &'static str = "iso";
    const DESCRIPTION: &'static str =
        "Builds an openEuler ISO image from a release's packages, or customizes an existing ISO";
    const ARCHES: &'static [&'static str] = &["x86_64", "aarch64"];
    const STEPS: &'static [&'static str] = &[
        "rootfs-download",
        "image-build",
        "collect",
        "fetch",
        "customize",
    ];
    const TEMPLATES: &'static [&'static str] =
        &["configmap.yaml", "job.yaml", "mounts.j2", "openEuler.repo"];

    /// Fields missing or not allowed for the mode, the release against the settings, unique
    /// packages, the base ISO's URL, file paths and the ConfigMap's size.
    ///
    /// When the settings cannot be read, `version` is not checked, `base_iso` is held to https,
    /// and the error is logged; `serialize` then reports the broken settings.
    fn check(params: &Params, ctx: &Context) -> Vec<FieldError> {
        let settings = settings(ctx)
            .inspect_err(|e| {
                ctx.log(
                    Level::Error,
                    &format!("checking params without settings: {e}"),
                );
            })
            .ok();
        let mut errors = mode_errors(params);
        if let (Some(version), Some(settings)) = (&params.version, &settings)
            && !settings.releases.contains_key(version)
        {
            let known: Vec<&str> = settings.releases.keys().map(String::as_str).collect();
            errors.push(FieldError::new(
                "/version",
                format!(
                    "unknown release `{version}`; this service builds {}",
                    known.join(", ")
                ),
            ));
        }
        if let Some(packages) = &params.packages {
            let mut first_index = HashMap::new();
            for (index, package) in packages.iter().enumerate() {
                let first = *first_index.entry(&package.0).or_insert(index);
                if first != index {
                    errors.push(FieldError::new(
                        format!("/packages/{index}"),
                        format!("duplicate of /packages/{first}"),
                    ));
                }
            }
        }
        if let Some(url) = &params.base_iso {
            let allow_http = settings.as_ref().is_some_and(|s| s.allow_insecure_base_iso);
            if let Some(message) = url_error(url, allow_http) {
                errors.push(FieldError::new("/base_iso", message));
            }
        }
        errors.extend(file_errors(params));
        errors
    }

    fn serialize(job: &Job, params: Params, ctx: &Context) -> Result<Rendered, Error> {
        let settings = settings(ctx)?;
        let release = match params.mode {
            Mode::Customize => None,
            Mode::Release => {
                let version = params.version.as_deref().unwrap_or_default();
                let release = settings.releases.get(version).ok_or_else(|| {
                    Error::Internal(format!("release {version} reached serialize unchecked"))
                })?;
                let rootfs_url = release.rootfs.get(&job.arch).ok_or_else(|| {
                    Error::Template(format!(
                        "settings.yaml: release {version} has no rootfs for {}",
                        job.arch
                    ))
                })?;
                Some(json!({
                    "version": version,
                    "repo_url": format!("{}/", release.repo_url.trim_end_matches('/')),
                    "rootfs_url": rootfs_url,
                }))
            }
        };
        let data = json!({
            "job": job,
            "node_arch": job.node_arch(),
            "params": params,
            "settings": settings,
            "release": release,
            "entries": entries(&params),
            "iso_name": format!("{}.iso", job.name),
            "resources": params.resources.requirements(),
            "helper_resources": settings.job.helper_resources.requirements(),
        });
        let mut objects = ctx.render("configmap.yaml", &data)?;
        objects.extend(ctx.render("job.yaml", &data)?);
        Rendered::from_objects(Self::TASK, job, objects)
    }
}

/// The customize mode's files, with the ConfigMap keys they are stored under: `kickstart`, then
/// `file-0`, `file-1`, ... in path order. Paths are not keys: `/` is not allowed in a key.
fn entries(params: &Params) -> Vec<serde_json::Value> {
    let kickstart = params
        .kickstart
        .iter()
        .map(|content| ("kickstart".to_owned(), KICKSTART_PATH, content));
    let files = params.files.iter().flatten().enumerate();
    kickstart
        .chain(
            files.map(|(index, (path, content))| (format!("file-{index}"), path.as_str(), content)),
        )
        .map(|(key, path, content)| json!({"key": key, "path": path, "content": content}))
        .collect()
}

/// The fields `params.mode` requires that are missing, and the fields it does not allow.
fn mode_errors(params: &Params) -> Vec<FieldError> {
    let release = [
        ("/version", params.version.is_some()),
        ("/packages", params.packages.is_some()),
    ];
    let customize_required = [
        ("/base_iso", params.base_iso.is_some()),
        ("/volume_label", params.volume_label.is_some()),
    ];
    let customize_optional = [
        ("/base_iso_sha256", params.base_iso_sha256.is_some()),
        ("/kickstart", params.kickstart.is_some()),
        ("/files", params.files.is_some()),
    ];
    let (mode, required, not_allowed): (_, &[_], Vec<_>) = match params.mode {
        Mode::Release => (
            "release",
            &release,
            customize_required
                .iter()
                .chain(&customize_optional)
                .collect(),
        ),
        Mode::Customize => ("customize", &customize_required, release.iter().collect()),
    };
    let missing = required
        .iter()
        .filter(|(_, given)| !given)
        .map(|(path, _)| {
            FieldError::new(*path, format!("missing: required when mode is `{mode}`"))
        });
    let extra = not_allowed
        .into_iter()
        .filter(|(_, given)| *given)
        .map(|(path, _)| FieldError::new(*path, format!("not allowed when mode is `{mode}`")));
    missing.chain(extra).collect()
}

/// Why `url` is not a base ISO URL this service downloads, if it is not.
fn url_error(url: &str, allow_http: bool) -> Option<String> {
    omni_sdk::url_error(
        url,
        if allow_http {
            &["https", "http"]
        } else {
            &["https"]
        },
    )
}

/// Whether `path` is an absolute path of plain segments (`[A-Za-z0-9._+-]`), none `.` or `..`.
fn is_iso_path(path: &str) -> bool {
    path.len() <= 1024
        && path.strip_prefix('/').is_some_and(|rest| {
            rest.split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-')
                    })
            })
        })
}

fn file_errors(params: &Params) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for path in params.files.iter().flatten().map(|(path, _)| path) {
        if !is_iso_path(path) {
            errors.push(FieldError::new(
                pointer("files", path),
                "must be an absolute path in the ISO: `/`-separated letters, digits and `._+-`, \
                 no `.` or `..` segments, at most 1024",
            ));
        } else if path == KICKSTART_PATH && params.kickstart.is_some() {
            errors.push(FieldError::new(
                pointer("files", path),
                "conflicts with `kickstart`, which goes to /ks.cfg",
            ));
        }
    }
    // The ConfigMap holds the contents, a manifest line per file and the keys.
    let size: usize = entries(params)
        .iter()
        .map(|e| {
            let (key, path, content) = (&e["key"], &e["path"], &e["content"]);
            let len = |v: &serde_json::Value| v.as_str().map_or(0, str::len);
            2 * len(key) + len(path) + len(content) + 2
        })
        .sum();
    if errors.is_empty() && size > CONFIG_MAP_DATA_LIMIT {
        let path = if params.files.as_ref().is_some_and(|f| !f.is_empty()) {
            "/files"
        } else {
            "/kickstart"
        };
        errors.push(FieldError::new(
            path,
            format!("kickstart and files take {size} bytes, more than the {CONFIG_MAP_DATA_LIMIT} a job can carry"),
        ));
    }
    errors
}

omni_sdk::export_plugin!(Iso);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_paths() {
        for ok in [
            "/ks.cfg",
            "/etc/motd",
            "/EFI/BOOT/grub.cfg",
            "/isolinux/isolinux.cfg",
            "/a/.hidden",
        ] {
            assert!(is_iso_path(ok), "{ok}");
        }
        for bad in [
            "",
            "/",
            "ks.cfg",
            "/etc/../x",
            "/./x",
            "/a//b",
            "/a/",
            "/a b",
            "/a\n",
            "/é",
        ] {
            assert!(!is_iso_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn base_iso_urls() {
        assert_eq!(url_error("https://repo.openeuler.org/a.iso", false), None);
        assert!(url_error("http://repo.openeuler.org/a.iso", false).is_some());
        assert_eq!(url_error("http://repo.openeuler.org/a.iso", true), None);
        assert!(url_error("ftp://repo.openeuler.org/a.iso", true).is_some());
        assert!(url_error("https://u:p@host/a.iso", false).is_some());
        assert!(url_error("https:///a.iso", false).is_some());
    }

    #[test]
    fn entries_name_kickstart_then_files_in_path_order() {
        let params = Params {
            mode: Mode::Customize,
            version: None,
            packages: None,
            base_iso: Some("https://h/a.iso".into()),
            base_iso_sha256: None,
            volume_label: Some("X".into()),
            kickstart: Some("text".into()),
            files: Some(BTreeMap::from([
                ("/z".into(), "1".into()),
                ("/a".into(), "2".into()),
            ])),
            resources: default_resources(),
            timeout_seconds: 60,
        };
        let keys: Vec<(String, String)> = entries(&params)
            .iter()
            .map(|e| {
                (
                    e["key"].as_str().unwrap().to_owned(),
                    e["path"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected = [("kickstart", "/ks.cfg"), ("file-0", "/a"), ("file-1", "/z")];
        assert_eq!(keys, expected.map(|(k, p)| (k.to_owned(), p.to_owned())));
    }
}
