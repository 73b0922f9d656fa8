//! The one name rule every backend applies to keys and prefixes.

use crate::ArtifactError;

/// The longest key, in bytes: S3's limit, less room for a configured prefix.
pub const MAX_KEY_LEN: usize = 960;

/// The longest segment, in bytes: a file name's limit on Linux file systems.
const MAX_SEGMENT_LEN: usize = 255;

/// Segments starting with this are the backends' own (temporary files, deleted prefixes).
pub(crate) const RESERVED: &str = ".omni-";

/// Checks that `key` names an object: a relative path of `/`-separated segments, none empty,
/// `.` or `..`, none with a control character (NUL included) or `\`, none longer than 255 bytes
/// or starting with `.omni-`, at most [`MAX_KEY_LEN`] bytes in all.
///
/// # Errors
/// [`ArtifactError::InvalidKey`] naming the rule it breaks.
pub fn validate_key(key: &str) -> Result<(), ArtifactError> {
    let invalid = |reason| {
        Err(ArtifactError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return invalid("it is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return invalid("it is longer than 960 bytes");
    }
    if key.starts_with('/') {
        return invalid("it is absolute (starts with /)");
    }
    for segment in key.split('/') {
        match segment {
            "" => return invalid("it has an empty segment (// or a trailing /)"),
            "." | ".." => return invalid("it has a . or .. segment"),
            _ => {}
        }
        if segment.chars().any(char::is_control) {
            return invalid("it has a control character");
        }
        if segment.contains('\\') {
            return invalid("it has a backslash");
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return invalid("it has a segment longer than 255 bytes");
        }
        if segment.starts_with(RESERVED) {
            return invalid("it has a segment starting with .omni- (reserved)");
        }
    }
    Ok(())
}

/// Checks a prefix: empty (everything), or a key (what is under `<prefix>/`). A trailing `/`
/// is allowed and means the same; the answer is the prefix without it.
///
/// # Errors
/// [`ArtifactError::InvalidKey`] as [`validate_key`].
pub fn validate_prefix(prefix: &str) -> Result<&str, ArtifactError> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        if prefix.is_empty() {
            return Ok("");
        }
        return Err(ArtifactError::InvalidKey {
            key: prefix.to_owned(),
            reason: "it is absolute (starts with /)",
        });
    }
    validate_key(trimmed).map_err(|e| match e {
        ArtifactError::InvalidKey { reason, .. } => ArtifactError::InvalidKey {
            key: prefix.to_owned(),
            reason,
        },
        other => other,
    })?;
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_keys_pass() {
        for key in [
            "a",
            "jobs/3f1e2d4c-8a7b-11f0-9c5d-0242ac120002/repodata/repomd.xml",
            "uploads/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ".treeinfo",
            "x/.omni",
            "naïve/ünïcode file (1).rpm",
        ] {
            validate_key(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }

    #[test]
    fn bad_keys_say_why() {
        for (key, why) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("a//b", "empty segment"),
            ("a/", "empty segment"),
            ("../a", ". or .."),
            ("a/./b", ". or .."),
            ("a/..", ". or .."),
            ("a\0b", "control"),
            ("a\nb", "control"),
            ("a\\b", "backslash"),
            ("a/.omni-tmp-1", "reserved"),
        ] {
            match validate_key(key) {
                Err(ArtifactError::InvalidKey { reason, .. }) => {
                    assert!(reason.contains(why), "{key:?}: {reason}");
                }
                other => panic!("{key:?}: {other:?}"),
            }
        }
        assert!(validate_key(&"a".repeat(256)).is_err());
        assert!(validate_key(&"a/".repeat(500)).is_err());
    }

    #[test]
    fn prefixes() {
        assert_eq!(validate_prefix("").unwrap(), "");
        assert_eq!(validate_prefix("jobs/1/").unwrap(), "jobs/1");
        assert_eq!(validate_prefix("jobs/1").unwrap(), "jobs/1");
        assert!(validate_prefix("/").is_err());
        assert!(validate_prefix("jobs//").is_err());
        assert!(validate_prefix("../jobs").is_err());
    }
}
