//! `[artifacts]`: which backend keeps the files, and how to reach it (documented in the crate
//! docs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::{ArtifactError, ArtifactStore, Directory, S3};

/// `[artifacts]` of the server's config: `kind = "directory"` (the default) or `kind = "s3"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawConfig")]
pub enum ArtifactsConfig {
    /// Files under a directory.
    Directory(DirectoryConfig),
    /// An S3-compatible object store.
    S3(S3Config),
}

impl Default for ArtifactsConfig {
    fn default() -> Self {
        Self::Directory(DirectoryConfig::default())
    }
}

/// `kind = "directory"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// The root, relative to the data directory unless absolute; `artifacts` when left out.
    pub path: Option<PathBuf>,
}

/// `kind = "s3"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The server's URL (`http://127.0.0.1:8333`); AWS's own endpoint for `region` when left
    /// out.
    pub endpoint: Option<String>,
    /// The bucket, which must exist.
    pub bucket: String,
    /// The region requests are signed for (`us-east-1` by default; most other servers ignore
    /// it).
    pub region: String,
    /// Keys are kept under `<prefix>/` in the bucket, so that several installations (or other
    /// data) can share one.
    pub prefix: Option<String>,
    /// Plain `http://` endpoints are refused unless this is set.
    pub allow_http: bool,
    /// `https://<bucket>.<endpoint>/` requests instead of path-style `https://<endpoint>/<bucket>/`
    /// (which SeaweedFS and MinIO expect, and the default).
    pub virtual_hosted_style: bool,
    /// An AWS shared credentials file (INI); without it the credentials come from
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
    pub credentials_file: Option<PathBuf>,
    /// The section of `credentials_file` to read (`default`).
    pub profile: Option<String>,
    /// The size of a multipart upload's parts, in MiB (8; S3 needs at least 5).
    pub part_size_mib: u32,
    /// How many parts of one upload are sent at once (2): a put holds about
    /// `part_size_mib * (parts_in_flight + 1)` in memory.
    pub parts_in_flight: u32,
}

/// What the TOML says, before it is checked against its kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    kind: Kind,
    path: Option<PathBuf>,
    endpoint: Option<String>,
    bucket: Option<String>,
    region: Option<String>,
    prefix: Option<String>,
    allow_http: Option<bool>,
    virtual_hosted_style: Option<bool>,
    credentials_file: Option<PathBuf>,
    profile: Option<String>,
    part_size_mib: Option<u32>,
    parts_in_flight: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum Kind {
    #[default]
    Directory,
    S3,
}

impl TryFrom<RawConfig> for ArtifactsConfig {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Self, String> {
        match raw.kind {
            Kind::Directory => {
                let s3_fields = [
                    ("endpoint", raw.endpoint.is_some()),
                    ("bucket", raw.bucket.is_some()),
                    ("region", raw.region.is_some()),
                    ("prefix", raw.prefix.is_some()),
                    ("allow_http", raw.allow_http.is_some()),
                    ("virtual_hosted_style", raw.virtual_hosted_style.is_some()),
                    ("credentials_file", raw.credentials_file.is_some()),
                    ("profile", raw.profile.is_some()),
                    ("part_size_mib", raw.part_size_mib.is_some()),
                    ("parts_in_flight", raw.parts_in_flight.is_some()),
                ];
                if let Some((field, _)) = s3_fields.iter().find(|(_, set)| *set) {
                    return Err(format!(
                        "`{field}` is a setting of kind = \"s3\", not of kind = \"directory\""
                    ));
                }
                Ok(Self::Directory(DirectoryConfig { path: raw.path }))
            }
            Kind::S3 => {
                if raw.path.is_some() {
                    return Err(
                        "`path` is a setting of kind = \"directory\", not of kind = \"s3\"".into(),
                    );
                }
                let bucket = raw.bucket.ok_or("kind = \"s3\" needs `bucket`")?;
                if bucket.is_empty() {
                    return Err("`bucket` is empty".into());
                }
                let part_size_mib = raw.part_size_mib.unwrap_or(8);
                if !(5..=512).contains(&part_size_mib) {
                    return Err(
                        "`part_size_mib` must be from 5 to 512 (S3's smallest part is 5 MiB)"
                            .into(),
                    );
                }
                let parts_in_flight = raw.parts_in_flight.unwrap_or(2);
                if !(1..=8).contains(&parts_in_flight) {
                    return Err("`parts_in_flight` must be from 1 to 8".into());
                }
                let prefix = match raw.prefix {
                    Some(prefix) => {
                        let trimmed = prefix.trim_matches('/');
                        crate::validate_key(trimmed).map_err(|e| format!("`prefix`: {e}"))?;
                        Some(trimmed.to_owned())
                    }
                    None => None,
                };
                Ok(Self::S3(S3Config {
                    endpoint: raw.endpoint,
                    bucket,
                    region: raw.region.unwrap_or_else(|| "us-east-1".into()),
                    prefix,
                    allow_http: raw.allow_http.unwrap_or(false),
                    virtual_hosted_style: raw.virtual_hosted_style.unwrap_or(false),
                    credentials_file: raw.credentials_file,
                    profile: raw.profile,
                    part_size_mib,
                    parts_in_flight,
                }))
            }
        }
    }
}

impl ArtifactsConfig {
    /// The store this config describes, over the data directory `data_dir`. Makes the
    /// directory backend's root; reads the S3 credentials (it does not reach the server).
    ///
    /// # Errors
    /// [`ArtifactError::Io`] when the directory cannot be made; [`ArtifactError::Config`] when
    /// the S3 credentials cannot be read or the client not made.
    pub fn build(&self, data_dir: &Path) -> Result<Arc<dyn ArtifactStore>, ArtifactError> {
        Ok(match self {
            Self::Directory(config) => {
                let root = data_dir.join(config.path.as_deref().unwrap_or(Path::new("artifacts")));
                Arc::new(Directory::open(root)?)
            }
            Self::S3(config) => Arc::new(S3::new(config)?),
        })
    }
}

/// An access key, its secret and maybe a session token.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) key_id: String,
    pub(crate) secret: String,
    pub(crate) token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// The credentials: from `credentials_file` when set, else from the environment.
    pub(crate) fn credentials(&self) -> Result<Credentials, ArtifactError> {
        match &self.credentials_file {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    ArtifactError::Config(format!(
                        "reading credentials_file {}: {e}",
                        file.display()
                    ))
                })?;
                let profile = self.profile.as_deref().unwrap_or("default");
                parse_credentials(&text, profile).map_err(|e| {
                    ArtifactError::Config(format!("credentials_file {}: {e}", file.display()))
                })
            }
            None => {
                let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
                match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                    (Some(key_id), Some(secret)) => Ok(Credentials {
                        key_id,
                        secret,
                        token: var("AWS_SESSION_TOKEN"),
                    }),
                    _ => Err(ArtifactError::Config(
                        "kind = \"s3\" needs credentials: set credentials_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
                    )),
                }
            }
        }
    }
}

/// Reads `[profile]` of an AWS shared credentials file: `key = value` lines, `#` and `;`
/// comments.
fn parse_credentials(text: &str, profile: &str) -> Result<Credentials, String> {
    let (mut in_profile, mut found) = (false, false);
    let (mut key_id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = section.trim() == profile;
            found |= in_profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!("a line of [{profile}] is not `name = value`"));
        };
        let value = Some(value.trim().to_owned());
        match name.trim() {
            "aws_access_key_id" => key_id = value,
            "aws_secret_access_key" => secret = value,
            "aws_session_token" => token = value,
            _ => {}
        }
    }
    if !found {
        return Err(format!("no [{profile}] section"));
    }
    match (key_id, secret) {
        (Some(key_id), Some(secret)) if !key_id.is_empty() && !secret.is_empty() => {
            Ok(Credentials {
                key_id,
                secret,
                token: token.filter(|t| !t.is_empty()),
            })
        }
        _ => Err(format!(
            "[{profile}] needs aws_access_key_id and aws_secret_access_key"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ArtifactsConfig, String> {
        #[derive(Deserialize)]
        struct Top {
            #[serde(default)]
            artifacts: ArtifactsConfig,
        }
        toml::from_str::<Top>(text)
            .map(|t| t.artifacts)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn directory_is_the_default() {
        assert_eq!(parse("").unwrap(), ArtifactsConfig::default());
        assert_eq!(parse("[artifacts]").unwrap(), ArtifactsConfig::default());
        assert_eq!(
            parse("[artifacts]\npath = \"/srv/a\"").unwrap(),
            ArtifactsConfig::Directory(DirectoryConfig {
                path: Some("/srv/a".into())
            })
        );
    }

    #[test]
    fn s3_with_defaults() {
        let config = parse(
            "[artifacts]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:8333\"\nbucket = \"b\"\nallow_http = true\nprefix = \"/prod/\"",
        )
        .unwrap();
        let ArtifactsConfig::S3(s3) = config else {
            panic!("not s3: {config:?}")
        };
        assert_eq!(s3.bucket, "b");
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(s3.prefix.as_deref(), Some("prod"));
        assert!(s3.allow_http && !s3.virtual_hosted_style);
        assert_eq!((s3.part_size_mib, s3.parts_in_flight), (8, 2));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, says) in [
            ("[artifacts]\nkind = \"s3\"", "needs `bucket`"),
            (
                "[artifacts]\nbucket = \"b\"",
                "`bucket` is a setting of kind = \"s3\"",
            ),
            (
                "[artifacts]\nkind = \"s3\"\nbucket = \"b\"\npath = \"x\"",
                "`path` is a setting",
            ),
            ("[artifacts]\nkind = \"ftp\"", "unknown variant"),
            ("[artifacts]\nbukket = \"b\"", "unknown field"),
            (
                "[artifacts]\nkind = \"s3\"\nbucket = \"b\"\npart_size_mib = 4",
                "5 to 512",
            ),
            (
                "[artifacts]\nkind = \"s3\"\nbucket = \"b\"\nprefix = \"a/../b\"",
                "`prefix`",
            ),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn credentials_file_profiles() {
        let text = "# made by aws configure\n[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n\n[other]\naws_access_key_id=AK2\naws_secret_access_key=SK2\naws_session_token=T\n";
        assert_eq!(
            parse_credentials(text, "default").unwrap(),
            Credentials {
                key_id: "AK".into(),
                secret: "SK".into(),
                token: None
            }
        );
        assert_eq!(
            parse_credentials(text, "other").unwrap().token.as_deref(),
            Some("T")
        );
        assert!(
            parse_credentials(text, "missing")
                .unwrap_err()
                .contains("no [missing]")
        );
        assert!(parse_credentials("[default]\naws_access_key_id = AK\n", "default").is_err());
    }

    #[test]
    fn directory_builds_under_the_data_dir() {
        let data = tempfile::tempdir().unwrap();
        let store = ArtifactsConfig::default().build(data.path()).unwrap();
        assert_eq!(store.kind(), "directory");
        assert!(data.path().join("artifacts").is_dir());
    }
}
