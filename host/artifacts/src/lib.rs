//! # omni-artifacts: where Omni keeps files
//!
//! The files jobs leave behind (RPMs, SRPMs, ISOs, a repository's `repodata/`) and the files
//! submitted to jobs (sources too large for a request body) are kept in an artifact store behind
//! one trait, [`ArtifactStore`], held as `Arc<dyn ArtifactStore>`. Two backends pass the same
//! conformance suite ([`conformance_tests!`], feature `conformance`): [`Directory`], files under
//! the data directory's `artifacts/` (the embedded default, one machine), and [`S3`], any
//! S3-compatible object store (several replicas share it). This crate knows nothing of jobs,
//! HTTP or tokens: it keeps bytes under names, and whoever calls it decides what the names are
//! and who may use them.
//!
//! ## Keys
//!
//! An object is named by a key, a relative path of `/`-separated segments, such as
//! `jobs/<job-id>/repodata/repomd.xml` (a job's artifact, its name relative to the job's output
//! directory) or `uploads/<sha256>` (a submitted file, by content). [`validate_key`], used by
//! every backend, refuses an empty key, a leading `/`, an empty segment (`a//b`, a trailing `/`),
//! `.` and `..`, control characters (NUL among them), `\`, segments longer than 255 bytes, keys
//! longer than 1024 bytes, and segments starting with `.omni-` (the backends' own temporary
//! names). A prefix ([`validate_prefix`]) is a key naming a "directory" (`jobs/<job-id>`), or
//! empty for everything.
//!
//! ## Guarantees
//!
//! - Streaming: [`ArtifactStore::put`] reads a stream of unknown length and keeps at most a few
//!   buffers of it in memory (the directory backend a bounded channel to its writer thread; S3
//!   parts of [`S3Config::part_size_mib`], at most [`S3Config::parts_in_flight`] at once);
//!   [`ArtifactStore::get`] answers a stream. A 2 GiB file goes in and out with the process
//!   growing by a few tens of MiB at most (`benches/throughput.rs` measures it).
//! - Checked: the size and sha256 are computed while the bytes stream; a size cap and an
//!   expected sha256 ([`PutLimits`]) are enforced while streaming, and a put that breaks either
//!   stores nothing ([`ArtifactError::TooLarge`], [`ArtifactError::Sha256Mismatch`]).
//! - Atomic: a reader sees the old object or the new one whole, never part of one. The directory
//!   backend writes a temporary file in the target's directory, fsyncs it and renames it over
//!   the target; S3 uploads big objects as a multipart upload, which the server makes visible
//!   only when completed, and aborts it on any error. Of two puts of one key, one wins whole.
//! - The sha256 travels with the object, never in a separate record, so it cannot describe
//!   another version of it: an extended attribute (`user.omni.sha256`) of the directory
//!   backend's file, set before the rename; the user metadata `x-amz-meta-sha256` of an S3
//!   object. S3 metadata is sent when the upload starts, so it is recorded when the hash is known
//!   then: when the caller gave the expected sha256, or when the whole object fits in one part;
//!   a larger object put without an expected hash has none ([`ObjectInfo::sha256`] is `None`),
//!   and the caller keeps the hash [`ArtifactStore::put`] returned (as the job's record of its
//!   artifacts does).
//!
//! ## Performance
//!
//! `make bench` (`cargo bench -p omni-artifacts --bench throughput -- 2048`) streams a 2 GiB
//! file in and out of each backend. On the 2-core development machine (SeaweedFS on the same
//! machine, a cargo build idle), 2026-12-04:
//!
//! | backend | put MB/s | get MB/s | memory growth, put | memory growth, get |
//! |---|---|---|---|---|
//! | directory | 329 | 4274 (page cache) | 2.2 MiB | 2.9 MiB |
//! | S3 (SeaweedFS testbed) | 52 | 472 | 17.6 MiB | 2.2 MiB |
//!
//! Memory growth is the peak RSS over the RSS before the transfer; the S3 put holds its parts
//! (8 MiB, 2 in flight). The S3 figures are the testbed's: `weed` shares the two cores with the
//! client.
//!
//! ## Configuration
//!
//! `[artifacts]` in the server's config, [`ArtifactsConfig`], built with
//! [`ArtifactsConfig::build`]:
//!
//! ```toml
//! [artifacts]
//! kind = "directory"          # the default; the whole table may be left out
//! path = "artifacts"          # relative to the data directory (the default)
//! ```
//!
//! ```toml
//! [artifacts]
//! kind = "s3"
//! endpoint = "http://127.0.0.1:8333"   # leave out for AWS itself
//! bucket = "omni-artifacts"
//! region = "us-east-1"                 # the default
//! prefix = "prod"                      # optional: keys go under prod/ in the bucket
//! allow_http = true                    # plain HTTP endpoints are refused unless this is set
//! virtual_hosted_style = false         # the default: path-style requests (SeaweedFS, MinIO)
//! credentials_file = "/etc/omni/s3-credentials"  # else AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
//! profile = "default"                  # the section of credentials_file
//! part_size_mib = 8                    # multipart part size (5..=512)
//! parts_in_flight = 2                  # parts uploaded at once (1..=8)
//! ```
//!
//! The credentials file is the AWS shared credentials file (INI: `[profile]` sections with
//! `aws_access_key_id`, `aws_secret_access_key` and optionally `aws_session_token`): the format
//! every S3 tool already writes and reads (`aws configure`, the SDKs, rclone, s3cmd's importers),
//! so an operator mounts the same file (a Kubernetes Secret) that their other tools use.
//!
//! # Layout
//! - `key`: [`validate_key`] and [`validate_prefix`], the one name rule of every backend.
//! - `error`: [`ArtifactError`].
//! - `digest`: [`Sha256`], a digest and its hex form; the hashing, counting reader of puts.
//! - `media`: [`media_type`], a file's media type by its name.
//! - `directory`: [`Directory`], files under a root directory.
//! - `s3`: [`S3`], an S3-compatible object store through `object_store`.
//! - `config`: [`ArtifactsConfig`], [`S3Config`] and the credentials file.
//! - `conformance`: the suite (feature `conformance`).

use std::fmt::Debug;
use std::io;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

mod config;
mod digest;
mod directory;
mod error;
mod key;
mod media;
mod s3;

#[cfg(feature = "conformance")]
#[doc(hidden)]
pub mod conformance;

pub use config::{ArtifactsConfig, DirectoryConfig, S3Config};
pub use digest::Sha256;
pub use directory::Directory;
pub use error::ArtifactError;
pub use key::{MAX_KEY_LEN, validate_key, validate_prefix};
pub use media::media_type;
pub use s3::S3;

/// A stream of bytes going into or coming out of the store.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// What a put must respect, checked while the bytes stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutLimits {
    /// The sha256 the object must have; a put of other bytes stores nothing.
    pub sha256: Option<Sha256>,
    /// The most bytes the object may have; a longer stream stores nothing.
    pub max_size: Option<u64>,
}

/// What a put stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Its size in bytes.
    pub size: u64,
    /// The sha256 of its bytes.
    pub sha256: Sha256,
}

/// An object as the store describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// The sha256 recorded with it, when one is (see the crate docs); listings leave it out.
    pub sha256: Option<Sha256>,
}

/// Which bytes of an object to read, as an HTTP `Range` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// From this offset to the end.
    From(u64),
    /// From `start` up to, not including, `end`; an end past the object's is cut to it.
    Bounded {
        /// The first byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// The last this many bytes (all of them when the object is shorter).
    Suffix(u64),
}

impl ByteRange {
    /// The bytes this range selects of an object of `size` bytes.
    ///
    /// # Errors
    /// [`ArtifactError::RangeNotSatisfiable`] when it selects no byte: it starts at or past the
    /// end, is empty, or asks for the last 0 bytes (an empty object satisfies no range).
    pub fn resolve(self, size: u64) -> Result<Range<u64>, ArtifactError> {
        let range = match self {
            Self::From(start) => start..size,
            Self::Bounded { start, end } => start..end.min(size),
            Self::Suffix(n) => size.saturating_sub(n)..size,
        };
        if range.start >= range.end {
            return Err(ArtifactError::RangeNotSatisfiable { range: self, size });
        }
        Ok(range)
    }
}

/// An object being read.
pub struct Download {
    /// The object's whole size.
    pub size: u64,
    /// The bytes the stream carries (all of them without a range).
    pub range: Range<u64>,
    /// The sha256 recorded with the object, when one is.
    pub sha256: Option<Sha256>,
    /// The bytes.
    pub stream: ByteStream,
}

impl Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("size", &self.size)
            .field("range", &self.range)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// Where files are kept, by key (see the crate docs for keys and guarantees). Safe to call
/// from many tasks at once; every backend passes the conformance suite.
#[async_trait]
pub trait ArtifactStore: Send + Sync + Debug {
    /// The backend's name, for logs and metrics: `directory` or `s3`.
    fn kind(&self) -> &'static str;

    /// Stores the bytes of `body` under `key`, replacing any object there once the last byte
    /// is in: a reader sees the old object or the new one, whole.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidKey`]; [`ArtifactError::TooLarge`] and
    /// [`ArtifactError::Sha256Mismatch`] when the bytes break `limits`;
    /// [`ArtifactError::Body`] when `body` fails; [`ArtifactError::Io`] or
    /// [`ArtifactError::Backend`] when the backend does. In every case nothing is stored.
    async fn put(
        &self,
        key: &str,
        body: ByteStream,
        limits: PutLimits,
    ) -> Result<Stored, ArtifactError>;

    /// Reads the object under `key`, all of it or `range`.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidKey`], [`ArtifactError::NotFound`],
    /// [`ArtifactError::RangeNotSatisfiable`]; backend errors. The stream itself may fail later
    /// with an I/O error (the object deleted or the connection lost while reading).
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Download, ArtifactError>;

    /// The size and recorded sha256 of the object under `key`.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidKey`], [`ArtifactError::NotFound`]; backend errors.
    async fn head(&self, key: &str) -> Result<ObjectInfo, ArtifactError>;

    /// Every object under `prefix` (see [`validate_prefix`]), sorted by key, without their
    /// sha256.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidKey`] for a bad prefix; backend errors. No object under it is
    /// an empty list, not an error.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ArtifactError>;

    /// The names one level under `prefix` (see [`validate_prefix`]), sorted: of the objects
    /// there and of the "directories" that hold others (`jobs` has one name per job, however
    /// many objects each has). Nothing under it is an empty list.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidKey`] for a bad prefix; backend errors.
    async fn children(&self, prefix: &str) -> Result<Vec<String>, ArtifactError>;

    /// Deletes the object under `key`; deleting what is not there succeeds (S3 cannot tell
    /// without another request, and a retried delete must not fail).
    ///
    /// # Errors
    /// [`ArtifactError::InvalidKey`]; backend errors.
    async fn delete(&self, key: &str) -> Result<(), ArtifactError>;

    /// Deletes every object under `prefix` (a job's artifacts: `jobs/<job-id>`) and answers how
    /// many there were. An empty prefix is refused: nothing deletes the whole store.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidKey`]; backend errors (some objects may be gone then: calling
    /// again finishes the work).
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, ArtifactError>;
}
