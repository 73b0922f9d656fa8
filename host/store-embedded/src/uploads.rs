//! [`UploadIndex`] on redb: upload records keyed by (domain, sha256), so a domain's records are
//! one range read; a write merges with the record there in its transaction, so the later expiry
//! wins whatever the order of the writes. Expired records are skipped on read once past the
//! grace and removed by [`UploadIndex::forget_uploads`].

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use omni_store::{Result, UPLOAD_GRACE, Upload, UploadIndex};
use redb::ReadableTable;

use crate::EmbeddedStore;
use crate::tables::*;

/// Whether `upload`'s record is still kept at `now` (not past its expiry and the grace).
fn kept(upload: &Upload, now: DateTime<Utc>) -> bool {
    let grace = TimeDelta::from_std(UPLOAD_GRACE).unwrap_or(TimeDelta::MAX);
    upload.expires_at + grace >= now
}

#[async_trait]
impl UploadIndex for EmbeddedStore {
    async fn put_upload(&self, upload: &Upload) -> Result<Upload> {
        let upload = upload.clone();
        self.write(move |txn| {
            let mut table = txn.open_table(UPLOADS)?;
            let key = (upload.domain.as_str(), upload.sha256.as_str());
            let merged = match table.get(key)? {
                Some(bytes) => {
                    let old = decode::<Upload>(bytes.value())?;
                    if kept(&old, omni_store::now()) {
                        upload.merged(&old)
                    } else {
                        upload.clone()
                    }
                }
                None => upload.clone(),
            };
            table.insert(key, encode(&merged)?.as_slice())?;
            Ok(merged)
        })
        .await
    }

    async fn get_upload(&self, domain: &str, sha256: &str) -> Result<Option<Upload>> {
        let (domain, sha256) = (domain.to_owned(), sha256.to_owned());
        self.read(move |txn| {
            let found = txn
                .open_table(UPLOADS)?
                .get((domain.as_str(), sha256.as_str()))?
                .map(|value| decode::<Upload>(value.value()))
                .transpose()?;
            Ok(found.filter(|upload| kept(upload, omni_store::now())))
        })
        .await
    }

    async fn list_uploads(&self, domain: &str) -> Result<Vec<Upload>> {
        let domain = domain.to_owned();
        self.read(move |txn| {
            let now = omni_store::now();
            let table = txn.open_table(UPLOADS)?;
            let mut uploads = Vec::new();
            for entry in table.range((domain.as_str(), "")..)? {
                let (key, value) = entry?;
                if key.value().0 != domain {
                    break;
                }
                let upload = decode::<Upload>(value.value())?;
                if kept(&upload, now) {
                    uploads.push(upload);
                }
            }
            Ok(uploads)
        })
        .await
    }

    async fn forget_uploads(&self, domain: &str, now: DateTime<Utc>) -> Result<u64> {
        let domain = domain.to_owned();
        self.write(move |txn| {
            let mut table = txn.open_table(UPLOADS)?;
            let mut gone = Vec::new();
            for entry in table.range((domain.as_str(), "")..)? {
                let (key, value) = entry?;
                let (entry_domain, sha256) = key.value();
                if entry_domain != domain {
                    break;
                }
                if !kept(&decode::<Upload>(value.value())?, now) {
                    gone.push(sha256.to_owned());
                }
            }
            for sha256 in &gone {
                table.remove((domain.as_str(), sha256.as_str()))?;
            }
            Ok(gone.len() as u64)
        })
        .await
    }
}
