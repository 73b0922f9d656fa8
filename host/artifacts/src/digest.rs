//! Digests, and the counting, hashing, limit-checking view of a body being put.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::{ArtifactError, PutLimits, Stored};

/// A sha256 digest; shown and parsed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(sha2::Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

/// Why a string is not a sha256.
#[derive(Debug, thiserror::Error)]
#[error("a sha256 is 64 hex digits")]
pub struct BadSha256;

impl FromStr for Sha256 {
    type Err = BadSha256;

    fn from_str(s: &str) -> Result<Self, BadSha256> {
        let mut out = [0; 32];
        if s.len() != 64 {
            return Err(BadSha256);
        }
        hex::decode_to_slice(s.to_ascii_lowercase(), &mut out).map_err(|_| BadSha256)?;
        Ok(Self(out))
    }
}

/// Counts and hashes the bytes of a body as they pass, and enforces its limits.
pub(crate) struct Meter {
    limits: PutLimits,
    size: u64,
    hasher: sha2::Sha256,
}

impl Meter {
    pub(crate) fn new(limits: PutLimits) -> Self {
        Self {
            limits,
            size: 0,
            hasher: sha2::Sha256::new(),
        }
    }

    /// Counts `len` bytes, failing as soon as the size passes the cap (before they are kept).
    fn count(&mut self, len: usize) -> Result<(), ArtifactError> {
        self.size += len as u64;
        match self.limits.max_size {
            Some(limit) if self.size > limit => Err(ArtifactError::TooLarge { limit }),
            _ => Ok(()),
        }
    }

    /// Counts and hashes `bytes`.
    pub(crate) fn update(&mut self, bytes: &[u8]) -> Result<(), ArtifactError> {
        self.count(bytes.len())?;
        self.hasher.update(bytes);
        Ok(())
    }

    /// The size and digest of everything seen, checked against the expected digest.
    pub(crate) fn finish(self) -> Result<Stored, ArtifactError> {
        let sha256 = Sha256(self.hasher.finalize().into());
        if let Some(expected) = self.limits.sha256
            && expected != sha256
        {
            return Err(ArtifactError::Sha256Mismatch {
                expected,
                actual: sha256,
            });
        }
        Ok(Stored {
            size: self.size,
            sha256,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let empty = Sha256::of(b"");
        let text = empty.to_string();
        assert_eq!(
            text,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(text.parse::<Sha256>().unwrap(), empty);
        assert_eq!(text.to_uppercase().parse::<Sha256>().unwrap(), empty);
        assert!("abc".parse::<Sha256>().is_err());
        assert!("zz".repeat(32).parse::<Sha256>().is_err());
    }

    #[test]
    fn meter_enforces_limits() {
        let mut meter = Meter::new(PutLimits {
            sha256: None,
            max_size: Some(4),
        });
        meter.update(b"abcd").unwrap();
        assert!(matches!(
            meter.update(b"e"),
            Err(ArtifactError::TooLarge { limit: 4 })
        ));

        let meter = Meter::new(PutLimits {
            sha256: Some(Sha256::of(b"x")),
            max_size: None,
        });
        assert!(matches!(
            meter.finish(),
            Err(ArtifactError::Sha256Mismatch { .. })
        ));
    }
}
