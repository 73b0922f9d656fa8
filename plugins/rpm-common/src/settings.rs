//! The operator's settings both tasks read from their `settings.yaml`: worker images, how the
//! Jobs run, the SCM policy, and (for `rpm`) where BuildRequires come from.

use omni_sdk::k8s::JobSettings;
use omni_sdk::{Context, Error};
use serde::{Deserialize, Serialize};

/// The operator's choices, from the task's `settings.yaml`. Image names live only there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The images the steps run.
    pub images: Images,
    /// How the Jobs run (`job:`): pull policy, retries, TTL, helper resources.
    pub job: JobSettings,
    /// Whether `scm_url` may be `http://` or `git://` (unauthenticated transports).
    #[serde(default)]
    pub allow_insecure_scm: bool,
    /// How the `rpm` task's `deps` step finds BuildRequires (`deps:`; `srpm` has no such step).
    #[serde(default)]
    pub deps: Deps,
}

/// Where BuildRequires come from (`deps:` in the `rpm` task's settings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deps {
    /// The repositories dnf installs BuildRequires from, and only those; none: the build
    /// root's own configuration (the builder image's, or the local engine's root's
    /// `/etc/yum.repos.d`).
    #[serde(default)]
    pub repositories: Vec<Repository>,
    /// Fail a spec with BuildRequires when the build root has no dnf, instead of building
    /// against what the root has (as `rpmbuild --nodeps` would, said in the log).
    #[serde(default)]
    pub require_dnf: bool,
}

/// One dnf repository (a section of a `.repo` file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    /// Its id: letters, digits, `._-`.
    pub name: String,
    /// Where it is: `https://`, `http://` or `file://` (dnf expands `$basearch`).
    pub baseurl: String,
    /// Whether packages must be signed by `gpgkey`.
    #[serde(default = "yes")]
    pub gpgcheck: bool,
    /// The signing key's URL.
    #[serde(default)]
    pub gpgkey: Option<String>,
}

fn yes() -> bool {
    true
}

impl Deps {
    /// The `.repo` file of [`Deps::repositories`]; empty when there are none.
    ///
    /// # Errors
    /// A message naming the repository whose name or URLs cannot go into a `.repo` file.
    pub fn repo_file(&self) -> Result<String, String> {
        let mut text = String::new();
        for repo in &self.repositories {
            let name_ok = !repo.name.is_empty()
                && repo
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !name_ok {
                return Err(format!(
                    "deps.repositories: {:?} is not a repository id (letters, digits, `._-`)",
                    repo.name
                ));
            }
            let urls = std::iter::once(&repo.baseurl).chain(repo.gpgkey.as_ref());
            for url in urls {
                let scheme_ok = ["https://", "http://", "file:///"]
                    .iter()
                    .any(|s| url.starts_with(s));
                if !scheme_ok || url.chars().any(char::is_control) || url.contains(' ') {
                    return Err(format!(
                        "deps.repositories: {}: {url:?} is not an https://, http:// or file:/// URL on one line",
                        repo.name
                    ));
                }
            }
            text.push_str(&format!(
                "[{name}]\nname={name}\nbaseurl={url}\nenabled=1\ngpgcheck={check}\n",
                name = repo.name,
                url = repo.baseurl,
                check = u8::from(repo.gpgcheck),
            ));
            if let Some(key) = &repo.gpgkey {
                text.push_str(&format!("gpgkey={key}\n"));
            }
        }
        Ok(text)
    }
}

/// Worker images (name and tag or digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Images {
    /// Runs `fetch`: a POSIX sh, `cp` and `git`.
    pub fetch: String,
    /// Runs `build` (and, for `rpm`, `deps`): `rpmbuild` (and `dnf` with dnf-plugins-core).
    pub builder: String,
}

/// Reads and checks the task's settings.
///
/// # Errors
/// [`Error::Template`] when `settings.yaml` is missing, does not match [`Settings`] or holds a
/// bad quantity.
pub fn settings(ctx: &Context) -> Result<Settings, Error> {
    let settings: Settings = ctx.settings()?;
    if let Err(report) = garde::Validate::validate(&settings.job) {
        return Err(Error::Template(format!("settings.yaml: job: {report}")));
    }
    settings
        .deps
        .repo_file()
        .map_err(|e| Error::Template(format!("settings.yaml: {e}")))?;
    Ok(settings)
}
