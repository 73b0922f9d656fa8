//! Uploads: files submitted for jobs to use (sources too large for a request body, RPMs to
//! sign), kept by content. Their bytes are in the artifact store under
//! `uploads/<domain>/<sha256>`, their records in the store ([`omni_store::UploadIndex`]).
//!
//! A job uses an upload by naming it in its params: any JSON object with an `"upload"` member
//! is a reference, and its value must be the sha256 (64 hex digits) of an upload of the job's
//! domain (`{"upload": "9f86…", "mode": "0755"}`; the other members are the plugin's). A
//! submission whose references name no kept upload is refused with a field error at each one.
//!
//! Expiry: an upload is kept [`UploadPolicy::ttl`] after it was last sent, and
//! [`UploadPolicy::keep_with_jobs`] after a job that uses it was submitted (as long as the
//! store keeps finished jobs, by default), so a stored job's inputs outlive it no sooner than
//! its record. Bytes no record keeps are deleted by [`JobService::sweep_uploads`]: an object
//! seen without a record by two sweeps in a row (one that was stored a moment before its
//! record was written is seen with it by the next).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::TimeDelta;
use omni_artifacts::{ByteStream, Download, PutLimits, Sha256};
use omni_core::FieldError;
use omni_store::Upload;
use serde_json::Value;

use crate::{JobError, JobService};

/// How uploads are limited and kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadPolicy {
    /// The largest upload, in MiB.
    pub max_mib: u64,
    /// How long an upload is kept after it was last sent, while no job uses it.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How long an upload is kept after a job that uses it was submitted; `None` is
    /// [`DEFAULT_KEEP_WITH_JOBS`] (`omni serve` makes it the store's `job_ttl`, so a job's
    /// inputs are there as long as its record).
    #[serde(with = "humantime_serde")]
    pub keep_with_jobs: Option<Duration>,
}

/// How long an upload a job uses is kept, when nothing says: the stores' default `job_ttl`.
pub const DEFAULT_KEEP_WITH_JOBS: Duration = Duration::from_secs(30 * 24 * 3600);

impl Default for UploadPolicy {
    fn default() -> Self {
        UploadPolicy {
            max_mib: 4096,
            ttl: Duration::from_secs(24 * 3600),
            keep_with_jobs: None,
        }
    }
}

/// The key of an upload's bytes in the artifact store.
pub fn upload_key(domain: &str, sha256: &str) -> String {
    format!("uploads/{domain}/{sha256}")
}

/// Where an upload sent without its sha256 is staged while it is hashed.
const STAGING: &str = "staging";

/// One reference to an upload in a job's params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRef {
    /// The JSON pointer of its `upload` member (`/sources/big.tar.gz/upload`).
    pub path: String,
    /// The sha256 it names, lowercase.
    pub sha256: String,
}

/// Every upload reference in `params`, in document order, and the field errors of those that
/// are not a sha256.
pub fn upload_refs(params: &Value) -> (Vec<UploadRef>, Vec<FieldError>) {
    let mut refs = Vec::new();
    let mut errors = Vec::new();
    walk(params, &mut String::new(), &mut refs, &mut errors);
    (refs, errors)
}

fn walk(value: &Value, path: &mut String, refs: &mut Vec<UploadRef>, errors: &mut Vec<FieldError>) {
    let len = path.len();
    match value {
        Value::Object(map) => {
            if let Some(upload) = map.get("upload") {
                let at = format!("{path}/upload");
                match upload.as_str().map(str::parse::<Sha256>) {
                    Some(Ok(sha256)) => refs.push(UploadRef {
                        path: at,
                        sha256: sha256.to_string(),
                    }),
                    _ => errors.push(FieldError {
                        path: at,
                        message: "an upload is named by its sha256: 64 hex digits".into(),
                    }),
                }
            }
            for (key, value) in map {
                path.push('/');
                // JSON Pointer escapes (RFC 6901).
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                walk(value, path, refs, errors);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (index, value) in items.iter().enumerate() {
                path.push('/');
                path.push_str(&index.to_string());
                walk(value, path, refs, errors);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn later(delta: Duration) -> chrono::DateTime<chrono::Utc> {
    let delta = TimeDelta::from_std(delta).unwrap_or(TimeDelta::MAX);
    chrono::SubsecRound::trunc_subsecs(omni_store::now(), 3)
        .checked_add_signed(delta)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

impl JobService {
    /// Stores the bytes of `body` as an upload of `domain`, checked against `sha256` when the
    /// caller gave it, and keeps it [`UploadPolicy::ttl`] from now. Answers its record and
    /// whether it is new (an upload of the same bytes is the same upload, kept longer).
    ///
    /// # Errors
    /// [`JobError::Artifacts`] when the bytes are over the size limit or of another sha256
    /// (nothing is kept then), or the artifact store fails; [`JobError::Store`].
    pub async fn put_upload(
        &self,
        domain: &str,
        body: ByteStream,
        sha256: Option<Sha256>,
    ) -> Result<(Upload, bool), JobError> {
        let max_size = Some(self.uploads.max_mib.saturating_mul(1 << 20));
        let (stored, fresh) = match sha256 {
            Some(sha256) => {
                let key = upload_key(domain, &sha256.to_string());
                let fresh = self.get_upload(domain, &sha256.to_string()).await.is_err();
                let limits = PutLimits {
                    sha256: Some(sha256),
                    max_size,
                };
                (self.artifacts.put(&key, body, limits).await?, fresh)
            }
            None => self.put_staged(domain, body, max_size).await?,
        };
        let now = chrono::SubsecRound::trunc_subsecs(omni_store::now(), 3);
        let upload = self
            .store
            .put_upload(&Upload {
                domain: domain.to_owned(),
                sha256: stored.sha256.to_string(),
                size: stored.size,
                created_at: now,
                expires_at: later(self.uploads.ttl),
            })
            .await?;
        crate::metrics::upload_stored(stored.size, fresh);
        Ok((upload, fresh))
    }

    /// Stores an upload whose sha256 is known only once it is read: staged under a key of
    /// its own, then put under its content's key (unless an upload of those bytes is there)
    /// and the staged copy deleted.
    async fn put_staged(
        &self,
        domain: &str,
        body: ByteStream,
        max_size: Option<u64>,
    ) -> Result<(omni_artifacts::Stored, bool), JobError> {
        let staged = format!("{STAGING}/{}", omni_store::new_job_id());
        let stored = self
            .artifacts
            .put(
                &staged,
                body,
                PutLimits {
                    sha256: None,
                    max_size,
                },
            )
            .await?;
        let sha256 = stored.sha256.to_string();
        let key = upload_key(domain, &sha256);
        let there = matches!(
            self.artifacts.head(&key).await,
            Ok(info) if info.size == stored.size
        );
        let moved = if there {
            Ok(())
        } else {
            self.copy(&staged, &key, stored.sha256).await
        };
        if let Err(error) = self.artifacts.delete(&staged).await {
            tracing::warn!(key = staged, %error, "cannot delete a staged upload; the sweep will");
        }
        moved?;
        Ok((stored, !there))
    }

    async fn copy(&self, from: &str, to: &str, sha256: Sha256) -> Result<(), JobError> {
        let download = self.artifacts.get(from, None).await?;
        let limits = PutLimits {
            sha256: Some(sha256),
            max_size: Some(download.size),
        };
        self.artifacts.put(to, download.stream, limits).await?;
        Ok(())
    }

    /// The upload of `domain` with that sha256, if it is kept.
    ///
    /// # Errors
    /// [`JobError::NoSuchUpload`]; [`JobError::Store`].
    pub async fn get_upload(&self, domain: &str, sha256: &str) -> Result<Upload, JobError> {
        let missing = || JobError::NoSuchUpload {
            domain: domain.to_owned(),
            sha256: sha256.to_owned(),
        };
        let sha256 = sha256.parse::<Sha256>().map_err(|_| missing())?.to_string();
        self.store
            .get_upload(domain, &sha256)
            .await?
            .filter(|upload| upload.expires_at > omni_store::now())
            .ok_or_else(missing)
    }

    /// Opens the bytes of an upload of `domain`.
    ///
    /// # Errors
    /// [`JobError::NoSuchUpload`] (also when its record outlived its bytes);
    /// [`JobError::Artifacts`]; [`JobError::Store`].
    pub async fn open_upload(
        &self,
        domain: &str,
        sha256: &str,
    ) -> Result<(Upload, Download), JobError> {
        let upload = self.get_upload(domain, sha256).await?;
        match self
            .artifacts
            .get(&upload_key(domain, &upload.sha256), None)
            .await
        {
            Ok(download) => Ok((upload, download)),
            Err(omni_artifacts::ArtifactError::NotFound { .. }) => Err(JobError::NoSuchUpload {
                domain: domain.to_owned(),
                sha256: upload.sha256,
            }),
            Err(error) => Err(error.into()),
        }
    }

    /// Checks the upload references of a job's `params` (of `domain`) and keeps each upload
    /// they name as long as the job's record ([`UploadPolicy::keep_with_jobs`]). Answers the
    /// uploads, in the order of their first reference.
    ///
    /// # Errors
    /// [`JobError::BadUploads`] with a field error at each reference that is not a sha256 or
    /// names no kept upload of the domain; [`JobError::Store`].
    pub async fn keep_uploads(
        &self,
        domain: &str,
        params: &Value,
    ) -> Result<Vec<Upload>, JobError> {
        let (refs, mut errors) = upload_refs(params);
        let mut seen = BTreeSet::new();
        let mut uploads = Vec::new();
        for reference in refs {
            if !seen.insert(reference.sha256.clone()) {
                continue;
            }
            match self.get_upload(domain, &reference.sha256).await {
                Ok(upload) => {
                    let mut kept = upload.clone();
                    kept.expires_at = later(
                        self.uploads
                            .keep_with_jobs
                            .unwrap_or(DEFAULT_KEEP_WITH_JOBS),
                    );
                    uploads.push(self.store.put_upload(&kept).await?);
                }
                Err(JobError::NoSuchUpload { .. }) => errors.push(FieldError {
                    path: reference.path,
                    message: format!(
                        "no upload {} in domain {domain:?} (send it to POST /v1/uploads first; \
                         an upload no job uses expires)",
                        reference.sha256
                    ),
                }),
                Err(other) => return Err(other),
            }
        }
        if errors.is_empty() {
            Ok(uploads)
        } else {
            Err(JobError::BadUploads(errors))
        }
    }

    /// The uploads a stored job's params name, as the store keeps them (for its engine, which
    /// gives their bytes to the job's steps). A reference the store no longer keeps is an
    /// error: the job cannot run without it.
    ///
    /// # Errors
    /// [`JobError::NoSuchUpload`]; [`JobError::Store`].
    pub async fn job_uploads(&self, domain: &str, params: &Value) -> Result<Vec<Upload>, JobError> {
        let (refs, _) = upload_refs(params);
        let mut seen = BTreeSet::new();
        let mut uploads = Vec::new();
        for reference in refs {
            if seen.insert(reference.sha256.clone()) {
                let upload = self
                    .store
                    .get_upload(domain, &reference.sha256)
                    .await?
                    .ok_or_else(|| JobError::NoSuchUpload {
                        domain: domain.to_owned(),
                        sha256: reference.sha256.clone(),
                    })?;
                uploads.push(upload);
            }
        }
        Ok(uploads)
    }

    /// Deletes the bytes of uploads no record keeps (in every domain), and the staged copies
    /// of uploads older than a day; forgets expired records. `suspects` are the objects the
    /// previous sweep found without a record: only those still without one are deleted, and
    /// the set is replaced by this sweep's. Answers how many objects were deleted.
    ///
    /// # Errors
    /// [`JobError::Artifacts`], [`JobError::Store`]: the sweep stops there, and the next one
    /// goes on.
    pub async fn sweep_uploads(&self, suspects: &mut BTreeSet<String>) -> Result<u64, JobError> {
        let mut deleted = 0;
        let mut found = BTreeSet::new();
        for domain in self.artifacts.children("uploads").await? {
            self.store
                .forget_uploads(&domain, omni_store::now())
                .await?;
            let objects = self
                .artifacts
                .children(&format!("uploads/{domain}"))
                .await?;
            let kept: BTreeSet<String> = self
                .store
                .list_uploads(&domain)
                .await?
                .into_iter()
                .map(|upload| upload.sha256)
                .collect();
            for sha256 in objects.into_iter().filter(|s| !kept.contains(s)) {
                let key = upload_key(&domain, &sha256);
                if suspects.contains(&key) {
                    self.artifacts.delete(&key).await?;
                    tracing::info!(key, "deleted an upload no job uses");
                    deleted += 1;
                } else {
                    found.insert(key);
                }
            }
        }
        let day_ago = omni_store::now() - TimeDelta::days(1);
        for staged in self.artifacts.children(STAGING).await? {
            let old = omni_store::JobId::parse_str(&staged)
                .ok()
                .and_then(omni_store::id_time)
                .is_some_and(|t| t < day_ago);
            if old {
                self.artifacts
                    .delete(&format!("{STAGING}/{staged}"))
                    .await?;
                deleted += 1;
            }
        }
        *suspects = found;
        Ok(deleted)
    }

    /// The artifact store uploads are kept in, and how (for the API's limits).
    pub fn upload_policy(&self) -> UploadPolicy {
        self.uploads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_are_found_anywhere_with_their_pointers() {
        let sha = "ab".repeat(32);
        let params = json!({
            "spec": "Name: x",
            "sources": {
                "big/odd~name.tar.gz": {"upload": sha.to_uppercase(), "mode": "0644"},
                "small": "aGk="
            },
            "rpms": [{"upload": "not-a-sha"}, {"upload": 7}],
        });
        let (refs, errors) = upload_refs(&params);
        assert_eq!(
            refs,
            vec![UploadRef {
                path: "/sources/big~1odd~0name.tar.gz/upload".into(),
                sha256: sha,
            }]
        );
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/rpms/0/upload", "/rpms/1/upload"]);
    }
}
