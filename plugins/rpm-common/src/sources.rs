//! Sources: what a job gives for each file of `SOURCES/` ([`Source`]: inline, or an upload by
//! its sha256), the rules their names and modes follow, and the list the templates write them
//! from ([`entries`]).
//!
//! A source's name is any name rpm can find in `SOURCES/` ([`name_error`]), so it cannot be a
//! ConfigMap key: the ConfigMap holds each source under a key of its own (`source-<n>`), and
//! beside it `source-<n>.meta`, its mode and name (`0755 vsftpd@.service`), which the `fetch`
//! step reads as data, never as shell text.

use std::collections::BTreeMap;

use omni_sdk::FieldError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The longest file name Linux file systems take (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// The mode of a source that gives none, as `git` and `cp` would leave a plain file.
pub const DEFAULT_MODE: u32 = 0o644;

/// One source: its content (base64), an object with its content and mode, or an upload (a
/// file sent to `POST /v1/uploads`, by its sha256) and its mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Source {
    /// The content, base64 (standard alphabet, padded); mode 0644.
    Content(String),
    /// The content and, optionally, the mode.
    File(SourceFile),
    /// An upload of the job's domain and, optionally, the mode.
    Upload(UploadedSource),
}

/// A source sent as an upload: the host checks that the job's domain has it and its engine
/// puts it in the job's `uploads` volume, named by its sha256, before the first step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadedSource {
    /// The upload's sha256 (64 hex digits).
    pub upload: String,
    /// The file's mode (0644 when absent).
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// A source with its mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// The content, base64 (standard alphabet, padded).
    pub content: String,
    /// The file's mode (0644 when absent).
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// A file mode: an octal string (`"0755"`, `"755"`) or its value as an integer (`493`), as
/// Kubernetes takes `mode`. Permission bits only: no setuid, setgid or sticky bit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Mode {
    /// Octal digits.
    Octal(String),
    /// The value.
    Bits(u64),
}

impl Mode {
    /// The permission bits, or why there are none.
    pub fn bits(&self) -> Result<u32, String> {
        let value = match self {
            Mode::Octal(text) => {
                let digits = text.len();
                if !(3..=4).contains(&digits) || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                    return Err(format!(
                        "{text:?} is not an octal mode: 3 or 4 digits 0-7, like \"0755\""
                    ));
                }
                u32::from_str_radix(text, 8).map_err(|e| e.to_string())?
            }
            Mode::Bits(value) => u32::try_from(*value).unwrap_or(u32::MAX),
        };
        if value > 0o777 {
            return Err(format!(
                "{value:#o} sets more than the permission bits (setuid, setgid and sticky are \
                 not allowed; an integer is the mode's value, so 0755 is 493)"
            ));
        }
        Ok(value)
    }
}

impl Source {
    /// The base64 content, for an inline source.
    pub fn content(&self) -> Option<&str> {
        match self {
            Source::Content(content) | Source::File(SourceFile { content, .. }) => Some(content),
            Source::Upload(_) => None,
        }
    }

    /// The upload's sha256 (lowercase), for an uploaded source.
    pub fn upload(&self) -> Option<String> {
        match self {
            Source::Upload(uploaded) => Some(uploaded.upload.to_ascii_lowercase()),
            _ => None,
        }
    }

    /// The mode given, if any.
    pub fn mode(&self) -> Option<&Mode> {
        match self {
            Source::Content(_) => None,
            Source::File(file) => file.mode.as_ref(),
            Source::Upload(uploaded) => uploaded.mode.as_ref(),
        }
    }
}

/// Why `name` is not a file name rpm can find in `SOURCES/` (or that a spec can have), if it is
/// not: empty, `.`, `..`, with a `/` or a NUL, or longer than [`NAME_MAX`] bytes. Any other
/// byte is allowed (`vsftpd@.service`, `a b`, `-rf`, `$(id)`): the steps pass names as data.
pub fn name_error(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name == "." || name == ".." {
        Some("must not be `.` or `..`")
    } else if name.contains('/') {
        Some("must be a file name, without `/`")
    } else if name.contains('\0') {
        Some("must not hold a NUL byte")
    } else if name.len() > NAME_MAX {
        Some("is longer than 255 bytes")
    } else {
        None
    }
}

/// The ConfigMap key of the `index`th source (in name order).
fn key(index: usize) -> String {
    format!("source-{index}")
}

/// The `.meta` file of a source: its mode (4 octal digits), a space, its name.
fn meta(mode: u32, name: &str) -> String {
    format!("{mode:04o} {name}")
}

/// The bytes the sources add to the ConfigMap beyond their decoded contents: keys, `.meta`
/// files, and an upload's sha256.
pub fn overhead(sources: &BTreeMap<String, Source>) -> usize {
    sources
        .iter()
        .enumerate()
        .map(|(index, (name, source))| {
            let content = match source {
                Source::Upload(_) => ".upload".len() + 64,
                _ => 0,
            };
            2 * key(index).len() + ".meta".len() + meta(0, name).len() + content
        })
        .sum()
}

/// Whether any source is an upload (the job then has an `uploads` volume).
pub fn any_upload(sources: &BTreeMap<String, Source>) -> bool {
    sources.values().any(|s| matches!(s, Source::Upload(_)))
}

/// What the templates write the sources from, in name order: `key` (the content's ConfigMap
/// key), `meta_key`, `meta`, and `content` (base64) for an inline source or `upload_key` and
/// `upload` (its sha256, which the `fetch` step finds in the `uploads` volume) for an upload.
/// Modes that do not pass [`check`] count as the default; `serialize` runs only on params that
/// passed.
pub fn entries(sources: &BTreeMap<String, Source>) -> Vec<Value> {
    sources
        .iter()
        .enumerate()
        .map(|(index, (name, source))| {
            let mode = source
                .mode()
                .and_then(|m| m.bits().ok())
                .unwrap_or(DEFAULT_MODE);
            json!({
                "key": key(index),
                "meta_key": format!("{}.meta", key(index)),
                "meta": meta(mode, name),
                "content": source.content(),
                "upload_key": format!("{}.upload", key(index)),
                "upload": source.upload(),
            })
        })
        .collect()
}

/// Errors of one source's name and mode at `path` (`/sources/<name>`).
pub fn check(name: &str, source: &Source, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(message) = name_error(name) {
        errors.push(FieldError::new(path, message));
    }
    if let Some(Err(message)) = source.mode().map(Mode::bits) {
        errors.push(FieldError::new(format!("{path}/mode"), message));
    }
    if let Source::Upload(uploaded) = source
        && !(uploaded.upload.len() == 64 && uploaded.upload.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        errors.push(FieldError::new(
            format!("{path}/upload"),
            "is not a sha256: 64 hex digits",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_rpm_takes() {
        for ok in [
            "vsftpd@.service",
            "a b",
            "-rf",
            "$(touch omni-marker)",
            "`id`",
            ".hidden",
            "..a",
            "spec",
            "macros",
            "line\nbreak",
            "ünïcode",
        ] {
            assert_eq!(name_error(ok), None, "{ok:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "/",
            "$(touch /tmp/x)",
            "a\0b",
            &"x".repeat(256),
        ] {
            assert!(name_error(bad).is_some(), "{bad:?}");
        }
        assert_eq!(name_error(&"x".repeat(255)), None);
    }

    #[test]
    fn modes() {
        assert_eq!(Mode::Octal("0755".into()).bits(), Ok(0o755));
        assert_eq!(Mode::Octal("640".into()).bits(), Ok(0o640));
        assert_eq!(Mode::Bits(493).bits(), Ok(0o755));
        assert_eq!(Mode::Bits(0).bits(), Ok(0));
        for bad in [
            "4755", "2755", "1777", "0758", "75", "07555", "", "0x1ed", "+755",
        ] {
            assert!(Mode::Octal(bad.into()).bits().is_err(), "{bad}");
        }
        // 755 as an integer is 0o1363: the sticky bit, refused rather than taken as octal.
        for bad in [755, 512, 0o4755, u64::MAX] {
            assert!(Mode::Bits(bad).bits().is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_carry_mode_and_name_as_data() {
        let sources = BTreeMap::from([
            ("vsftpd@.service".to_owned(), Source::Content("YQ==".into())),
            (
                "$(id) x".to_owned(),
                Source::File(SourceFile {
                    content: "Yg==".into(),
                    mode: Some(Mode::Octal("0755".into())),
                }),
            ),
            (
                "zlib-1.3.1.tar.gz".to_owned(),
                Source::Upload(UploadedSource {
                    upload: "AB".repeat(32),
                    mode: Some(Mode::Bits(0o640)),
                }),
            ),
        ]);
        assert_eq!(
            entries(&sources),
            [
                json!({"key": "source-0", "meta_key": "source-0.meta", "meta": "0755 $(id) x", "content": "Yg==",
                       "upload_key": "source-0.upload", "upload": null}),
                json!({"key": "source-1", "meta_key": "source-1.meta", "meta": "0644 vsftpd@.service", "content": "YQ==",
                       "upload_key": "source-1.upload", "upload": null}),
                // An upload: its sha256 (lowercase), no content.
                json!({"key": "source-2", "meta_key": "source-2.meta", "meta": "0640 zlib-1.3.1.tar.gz", "content": null,
                       "upload_key": "source-2.upload", "upload": "ab".repeat(32)}),
            ]
        );
        assert!(any_upload(&sources));
    }
}
