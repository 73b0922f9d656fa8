//! Webhook secrets at rest: each is sealed with ChaCha20-Poly1305 under the operator's current
//! key, with a random nonce, the webhook's id as associated data (a sealed secret opens only in
//! its own row), and the key's id beside the ciphertext, so that a secret sealed under an older
//! key still opens while that key is configured. [`Keyring::needs_reseal`] and
//! [`crate::Webhooks::reseal`] move every stored secret to the current key.
//!
//! A stored secret is `sealed:v1:<key id>:<base64 of nonce ‖ ciphertext ‖ tag>`; one without
//! the prefix is a row written before secrets were sealed, read as it is and sealed by the next
//! reseal.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What a sealed secret starts with.
pub const SEALED: &str = "sealed:v1:";
const NONCE_LEN: usize = 12;

/// One key of `[webhooks] secret_keys`: inline (`key`) or in a file (`file`), 32 bytes as
/// base64 or hex.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyConfig {
    /// The key itself.
    #[serde(default)]
    pub key: Option<String>,
    /// A file holding the key (surrounding whitespace is ignored).
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl fmt::Debug for SecretKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeyConfig")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("file", &self.file)
            .finish()
    }
}

/// Why a key or a secret could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A configured key is not 32 bytes of base64 or hex, or names both or neither of `key`
    /// and `file`.
    #[error("invalid webhook secret key {which}: {reason}")]
    Key {
        /// Which one (its place in `secret_keys`, or its file).
        which: String,
        /// What is wrong.
        reason: String,
    },
    /// A key file cannot be read or made.
    #[error("cannot use the webhook secret key file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The secret was sealed with a key that is not configured.
    #[error("the secret is sealed with key {0}, which is not configured")]
    UnknownKey(String),
    /// The secret does not open (changed, or not sealed for this webhook).
    #[error("the secret does not open with key {0} (damaged, or moved from another webhook)")]
    Damaged(String),
}

/// The operator's keys, the current one first. Cloning is cheap enough (a few keys).
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, Key)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("ids", &ids).finish()
    }
}

impl Keyring {
    /// The keyring of these keys, the current one first; `None` when there is none.
    pub fn new(keys: Vec<[u8; 32]>) -> Option<Self> {
        (!keys.is_empty()).then(|| Keyring {
            keys: keys
                .into_iter()
                .map(|key| (key_id(&key), Key::from(key)))
                .collect(),
        })
    }

    /// A keyring of one random key, kept nowhere: what sealed under it opens only in this
    /// process (for tests, and the API's state without a configuration).
    pub fn ephemeral() -> Self {
        Keyring::new(vec![random()]).unwrap_or_else(|| unreachable!())
    }

    /// The configured keys, the current one first.
    ///
    /// # Errors
    /// [`SecretError::Key`] for an entry that is not one key of 32 bytes (or for no entry),
    /// [`SecretError::File`] for a file that cannot be read.
    pub fn load(config: &[SecretKeyConfig]) -> Result<Self, SecretError> {
        let mut keys = Vec::with_capacity(config.len());
        for (at, entry) in config.iter().enumerate() {
            let (text, which) = match (&entry.key, &entry.file) {
                (Some(key), None) => (key.clone(), format!("secret_keys[{at}]")),
                (None, Some(path)) => (
                    std::fs::read_to_string(path).map_err(|source| SecretError::File {
                        path: path.clone(),
                        source,
                    })?,
                    path.display().to_string(),
                ),
                _ => {
                    return Err(SecretError::Key {
                        which: format!("secret_keys[{at}]"),
                        reason: "give either key or file".to_owned(),
                    });
                }
            };
            keys.push(decode_key(&text).map_err(|reason| SecretError::Key { which, reason })?);
        }
        Keyring::new(keys).ok_or_else(|| SecretError::Key {
            which: "secret_keys".to_owned(),
            reason: "no key is configured".to_owned(),
        })
    }

    /// The key in `path`, made there (random, readable by the owner only) when there is none:
    /// the default of a single server, whose store is in the same data directory.
    ///
    /// # Errors
    /// [`SecretError::File`] when the file cannot be read or made, [`SecretError::Key`] when it
    /// does not hold a key.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let file_error = |source| SecretError::File {
            path: path.to_owned(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                let key = random();
                file.write_all(format!("{}\n", BASE64.encode(key)).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(file_error)?;
                tracing::info!(file = %path.display(), "made a key for webhook secrets");
                Ok(Keyring::new(vec![key]).unwrap_or_else(|| unreachable!()))
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                Keyring::load(&[SecretKeyConfig {
                    key: None,
                    file: Some(path.to_owned()),
                }])
            }
            Err(error) => Err(file_error(error)),
        }
    }

    /// The current key's id (what new secrets are sealed with).
    pub fn current_id(&self) -> &str {
        &self.keys[0].0
    }

    /// `secret` of webhook `id`, sealed with the current key.
    pub fn seal(&self, id: Uuid, secret: &str) -> String {
        let (key_id, key) = &self.keys[0];
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = ChaCha20Poly1305::new(key)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: id.as_bytes(),
                },
            )
            // Only a plaintext longer than 256 GiB fails.
            .unwrap_or_else(|_| unreachable!());
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{SEALED}{key_id}:{}", BASE64.encode(bytes))
    }

    /// The secret of webhook `id` as stored (sealed, or plain from before sealing).
    ///
    /// # Errors
    /// [`SecretError::UnknownKey`] when its key is not configured, [`SecretError::Damaged`]
    /// when it does not open.
    pub fn open(&self, id: Uuid, stored: &str) -> Result<String, SecretError> {
        let Some(rest) = stored.strip_prefix(SEALED) else {
            return Ok(stored.to_owned());
        };
        let (key_id, data) = rest
            .split_once(':')
            .ok_or_else(|| SecretError::Damaged(String::new()))?;
        let (_, key) = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .ok_or_else(|| SecretError::UnknownKey(key_id.to_owned()))?;
        let damaged = || SecretError::Damaged(key_id.to_owned());
        let bytes = BASE64.decode(data).map_err(|_| damaged())?;
        if bytes.len() < NONCE_LEN {
            return Err(damaged());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = ChaCha20Poly1305::new(key)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| damaged())?;
        String::from_utf8(plain).map_err(|_| damaged())
    }

    /// The id of the key `stored` is sealed with (`None` for a plain one).
    pub fn key_of(stored: &str) -> Option<&str> {
        stored
            .strip_prefix(SEALED)?
            .split_once(':')
            .map(|(id, _)| id)
    }

    /// Whether `stored` is not sealed with the current key.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        Keyring::key_of(stored) != Some(self.current_id())
    }
}

/// A key's id: the start of a hash of it, so that no name has to be configured and none can
/// be given to two keys.
fn key_id(key: &[u8; 32]) -> String {
    let digest = Sha256::new()
        .chain_update(b"omni webhook secret key id\0")
        .chain_update(key)
        .finalize();
    hex::encode(&digest[..8])
}

fn random() -> [u8; 32] {
    rand::random()
}

/// 32 bytes from 64 hex digits or base64.
fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|e| e.to_string())?
    } else {
        BASE64
            .decode(text)
            .map_err(|_| "is neither 64 hex digits nor base64".to_owned())?
    };
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("is {} bytes long; a key is 32", bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_its_key_in_its_own_row_only() {
        let a = Keyring::new(vec![[1; 32]]).unwrap();
        let b_then_a = Keyring::new(vec![[2; 32], [1; 32]]).unwrap();
        let b = Keyring::new(vec![[2; 32]]).unwrap();
        let id = Uuid::new_v4();
        let sealed = a.seal(id, "s3cret");
        assert!(sealed.starts_with(SEALED) && !sealed.contains("s3cret"));
        assert_ne!(sealed, a.seal(id, "s3cret"), "a nonce per seal");
        assert_eq!(Keyring::key_of(&sealed), Some(a.current_id()));
        assert_eq!(b_then_a.open(id, &sealed).unwrap(), "s3cret");
        assert!(b_then_a.needs_reseal(&sealed) && !a.needs_reseal(&sealed));
        assert!(matches!(
            b.open(id, &sealed),
            Err(SecretError::UnknownKey(_))
        ));
        assert!(matches!(
            a.open(Uuid::new_v4(), &sealed),
            Err(SecretError::Damaged(_))
        ));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(a.open(id, &tampered).is_err());
        // A row from before sealing reads as it is, and is due for a reseal.
        assert_eq!(a.open(id, "plain").unwrap(), "plain");
        assert!(a.needs_reseal("plain"));
    }

    #[test]
    fn keys_come_as_hex_or_base64_inline_or_from_a_file_and_a_default_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, format!("{}\n", BASE64.encode([7u8; 32]))).unwrap();
        let ring = Keyring::load(&[
            SecretKeyConfig {
                key: Some(hex::encode([9u8; 32])),
                file: None,
            },
            SecretKeyConfig {
                key: None,
                file: Some(file),
            },
        ])
        .unwrap();
        assert_eq!(ring.current_id(), key_id(&[9; 32]));
        assert_eq!(ring.keys.len(), 2);
        for bad in ["short", &hex::encode([1u8; 16]), &BASE64.encode([1u8; 31])] {
            let entry = SecretKeyConfig {
                key: Some(bad.to_owned()),
                file: None,
            };
            assert!(Keyring::load(&[entry]).is_err(), "{bad}");
        }
        assert!(Keyring::load(&[]).is_err());
        let made = dir.path().join("made.key");
        let first = Keyring::load_or_create(&made).unwrap();
        let again = Keyring::load_or_create(&made).unwrap();
        assert_eq!(first.current_id(), again.current_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&made).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let debug = format!(
            "{:?}",
            SecretKeyConfig {
                key: Some("hidden".into()),
                file: None
            }
        );
        assert!(!debug.contains("hidden"));
    }
}
