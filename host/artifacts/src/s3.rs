//! The S3 backend, through `object_store`'s S3 client.
//!
//! An object that fits in one part is buffered and sent as one `PutObject` with its sha256 in
//! the user metadata `sha256` (`x-amz-meta-sha256`); a larger one goes as a multipart upload of
//! [`S3Config::part_size_mib`] parts, at most [`S3Config::parts_in_flight`] sent at once, which
//! the server shows only once completed and which is aborted on any error (a failed body, a
//! broken limit, or the put's future dropped). Its metadata is sent when the upload starts, so
//! it carries the sha256 only when the caller gave the expected one.
//!
//! An upload a crashed server left in progress is invisible but keeps its parts' storage: give
//! the bucket a lifecycle rule that aborts incomplete multipart uploads after a day
//! (`AbortIncompleteMultipartUpload`), as for any bucket written with multipart uploads.

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};

use crate::config::S3Config;
use crate::digest::Meter;
use crate::{
    ArtifactError, ArtifactStore, ByteRange, ByteStream, Download, ObjectInfo, PutLimits, Sha256,
    Stored, validate_key, validate_prefix,
};

/// The user metadata key of an object's sha256.
const SHA256_META: &str = "sha256";

/// An S3-compatible object store.
#[derive(Debug)]
pub struct S3 {
    store: AmazonS3,
    /// Keys live under this in the bucket (no trailing `/`).
    prefix: Option<String>,
    part_size: usize,
    parts_in_flight: usize,
}

impl S3 {
    /// A client for `config` (it does not reach the server: the first call does).
    ///
    /// # Errors
    /// [`ArtifactError::Config`] when the credentials cannot be read or the client not made (a
    /// malformed endpoint, `http://` without `allow_http`).
    pub fn new(config: &S3Config) -> Result<Self, ArtifactError> {
        let credentials = config.credentials()?;
        if let Some(endpoint) = &config.endpoint
            && endpoint.starts_with("http://")
            && !config.allow_http
        {
            return Err(ArtifactError::Config(format!(
                "the endpoint {endpoint} is plain HTTP: set allow_http = true to use it"
            )));
        }
        let client = ClientOptions::new()
            .with_allow_http(config.allow_http)
            .with_connect_timeout(Duration::from_secs(5))
            // A request is one part or one download; a download cut by the timeout is resumed
            // where it stopped (object_store retries body errors, checking the ETag).
            .with_timeout(Duration::from_secs(120));
        let retry = RetryConfig {
            max_retries: 5,
            retry_timeout: Duration::from_secs(60),
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(credentials.key_id)
            .with_secret_access_key(credentials.secret)
            .with_allow_http(config.allow_http)
            .with_virtual_hosted_style_request(config.virtual_hosted_style)
            .with_client_options(client)
            .with_retry(retry);
        if let Some(token) = credentials.token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder
            .build()
            .map_err(|e| ArtifactError::Config(format!("the S3 client: {e}")))?;
        Ok(Self {
            store,
            prefix: config.prefix.clone(),
            part_size: config.part_size_mib as usize * 1024 * 1024,
            parts_in_flight: config.parts_in_flight as usize,
        })
    }

    /// The object's path in the bucket; `key` is valid (or empty, for the whole store).
    fn path(&self, key: &str) -> Path {
        let full = match (&self.prefix, key.is_empty()) {
            (Some(prefix), true) => prefix.clone(),
            (Some(prefix), false) => format!("{prefix}/{key}"),
            (None, _) => key.to_owned(),
        };
        // Valid keys are valid paths: validate_key is stricter than object_store's rule.
        Path::parse(full).expect("a valid key is a valid object path")
    }

    /// The key of an object path of this store.
    fn key_of<'a>(&self, path: &'a Path) -> &'a str {
        let raw = path.as_ref();
        match &self.prefix {
            Some(prefix) => raw
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(raw),
            None => raw,
        }
    }

    fn sha256_attribute(sha256: Sha256) -> Attributes {
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(SHA256_META.into()),
            sha256.to_string().into(),
        );
        attributes
    }

    /// The multipart path of a put whose first `first` bytes did not end the body.
    async fn put_multipart(
        &self,
        path: &Path,
        first: Vec<Bytes>,
        mut body: ByteStream,
        mut meter: Meter,
        limits: PutLimits,
    ) -> Result<Stored, ArtifactError> {
        let options = PutMultipartOptions {
            attributes: limits
                .sha256
                .map(Self::sha256_attribute)
                .unwrap_or_default(),
            ..PutMultipartOptions::default()
        };
        let upload = self
            .store
            .put_multipart_opts(path, options)
            .await
            .map_err(|e| backend(format!("starting the upload of {path}"), e))?;
        let mut upload = Upload(Some(WriteMultipart::new_with_chunk_size(
            upload,
            self.part_size,
        )));
        let writer = upload.0.as_mut().expect("set above");
        let streamed = async {
            for chunk in first {
                writer.put(chunk);
            }
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(ArtifactError::Body)?;
                meter.update(&chunk)?;
                // Holds the body back while the parts in flight are at the limit: memory stays
                // at about (parts_in_flight + 1) parts.
                writer
                    .wait_for_capacity(self.parts_in_flight)
                    .await
                    .map_err(|e| backend(format!("uploading a part of {path}"), e))?;
                writer.put(chunk);
            }
            // Every part sent but the last, before the hash decides whether to complete.
            writer
                .wait_for_capacity(0)
                .await
                .map_err(|e| backend(format!("uploading a part of {path}"), e))?;
            meter.finish()
        }
        .await;
        let writer = upload.0.take().expect("set above");
        match streamed {
            Ok(stored) => {
                writer
                    .finish()
                    .await
                    .map_err(|e| backend(format!("completing the upload of {path}"), e))?;
                Ok(stored)
            }
            Err(e) => {
                // Nothing becomes visible: the parts sent are dropped with the upload.
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "aborting the upload of {path}");
                }
                Err(e)
            }
        }
    }
}

/// A multipart upload that is aborted if the put is dropped before it ends (a request
/// cancelled by its timeout): S3 keeps the parts of an upload until it is completed or aborted.
struct Upload(Option<WriteMultipart>);

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(writer) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(e) = writer.abort().await {
                    tracing::warn!(error = %e, "aborting a cancelled upload");
                }
            });
        }
    }
}

fn backend(what: String, source: object_store::Error) -> ArtifactError {
    ArtifactError::Backend {
        what,
        source: Box::new(source),
    }
}

/// Maps a not-found answer to [`ArtifactError::NotFound`], anything else to a backend error.
fn not_found_or(key: &str, what: &str, error: object_store::Error) -> ArtifactError {
    match error {
        object_store::Error::NotFound { .. } => ArtifactError::NotFound {
            key: key.to_owned(),
        },
        other => backend(format!("{what} {key}"), other),
    }
}

fn recorded_sha256(attributes: &Attributes) -> Option<Sha256> {
    attributes
        .get(&Attribute::Metadata(SHA256_META.into()))
        .and_then(|value| value.as_ref().parse().ok())
}

#[async_trait]
impl ArtifactStore for S3 {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn put(
        &self,
        key: &str,
        mut body: ByteStream,
        limits: PutLimits,
    ) -> Result<Stored, ArtifactError> {
        validate_key(key)?;
        let path = self.path(key);
        let mut meter = Meter::new(limits);
        let mut first = Vec::new();
        let mut first_len = 0;
        while first_len < self.part_size {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(ArtifactError::Body)?;
                    meter.update(&chunk)?;
                    first_len += chunk.len();
                    first.push(chunk);
                }
                None => {
                    // It fits in one part: one request, with its hash.
                    let stored = meter.finish()?;
                    let options = PutOptions {
                        attributes: Self::sha256_attribute(stored.sha256),
                        ..PutOptions::default()
                    };
                    self.store
                        .put_opts(&path, PutPayload::from_iter(first), options)
                        .await
                        .map_err(|e| backend(format!("putting {key}"), e))?;
                    return Ok(stored);
                }
            }
        }
        self.put_multipart(&path, first, body, meter, limits).await
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Download, ArtifactError> {
        validate_key(key)?;
        let path = self.path(key);
        // A range no object can satisfy is not sent; the error needs the object's size.
        if let Some(range) = range
            && range.resolve(u64::MAX).is_err()
        {
            let size = self.head(key).await?.size;
            range.resolve(size)?;
        }
        let options = GetOptions {
            range: range.map(|range| match range {
                ByteRange::From(start) => GetRange::Offset(start),
                ByteRange::Bounded { start, end } => GetRange::Bounded(start..end),
                ByteRange::Suffix(n) => GetRange::Suffix(n),
            }),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&path, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ArtifactError::NotFound {
                    key: key.to_owned(),
                });
            }
            Err(e) => {
                // The server refuses a range past the end (416) in words object_store does not
                // type: tell it from a real failure by the object's size.
                if let Some(range) = range {
                    let size = self.head(key).await?.size;
                    range.resolve(size)?;
                }
                return Err(backend(format!("reading {key}"), e));
            }
        };
        let sha256 = recorded_sha256(&result.attributes);
        let size = result.meta.size;
        let range = result.range.clone();
        let stream = result.into_stream().map_err(io::Error::other).boxed();
        Ok(Download {
            size,
            range,
            sha256,
            stream,
        })
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, ArtifactError> {
        validate_key(key)?;
        // A GET with `head` (a HEAD request) answers the user metadata too, where `head()`
        // answers only the size.
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&self.path(key), options)
            .await
            .map_err(|e| not_found_or(key, "reading", e))?;
        Ok(ObjectInfo {
            key: key.to_owned(),
            size: result.meta.size,
            sha256: recorded_sha256(&result.attributes),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ArtifactError> {
        let prefix = validate_prefix(prefix)?;
        let path = self.path(prefix);
        let under = (!path.as_ref().is_empty()).then_some(&path);
        let mut out: Vec<ObjectInfo> = self
            .store
            .list(under)
            .map_ok(|meta| ObjectInfo {
                key: self.key_of(&meta.location).to_owned(),
                size: meta.size,
                sha256: None,
            })
            .try_collect()
            .await
            .map_err(|e| backend(format!("listing {prefix:?}"), e))?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn children(&self, prefix: &str) -> Result<Vec<String>, ArtifactError> {
        let prefix = validate_prefix(prefix)?;
        let path = self.path(prefix);
        let under = (!path.as_ref().is_empty()).then_some(&path);
        let listed = self
            .store
            .list_with_delimiter(under)
            .await
            .map_err(|e| backend(format!("listing {prefix:?}"), e))?;
        let last = |location: &object_store::path::Path| location.filename().map(str::to_owned);
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(last)
            .chain(
                listed
                    .objects
                    .iter()
                    .filter_map(|meta| last(&meta.location)),
            )
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn delete(&self, key: &str) -> Result<(), ArtifactError> {
        validate_key(key)?;
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(format!("deleting {key}"), e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, ArtifactError> {
        let prefix = validate_prefix(prefix)?;
        if prefix.is_empty() {
            return Err(ArtifactError::InvalidKey {
                key: String::new(),
                reason: "deleting everything is refused",
            });
        }
        let path = self.path(prefix);
        let locations = self
            .store
            .list(Some(&path))
            .map_ok(|meta| meta.location)
            .boxed();
        // Bulk deletes (DeleteObjects, up to 1,000 keys a request) as the listing pages come.
        let deleted = self.store.delete_stream(locations);
        deleted
            .try_fold(0u64, |n, _| async move { Ok(n + 1) })
            .await
            .map_err(|e| backend(format!("deleting under {prefix:?}"), e))
    }
}
