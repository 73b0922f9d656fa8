//! [`UploadIndex`] on Cassandra: one partition per domain (`uploads`), clustered by sha256, each
//! record the upload as JSON. A record is written `USING TIMESTAMP` its expiry (in
//! microseconds), so of two writes the one that keeps it longer wins whatever the order they
//! arrive in, and `USING TTL` until the grace after its expiry: Cassandra forgets it by itself.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use futures::TryStreamExt;

use omni_store::{Result, UPLOAD_GRACE, Upload, UploadIndex};

use crate::cql::{corrupt, unavailable};
use crate::{CassandraStore, to_json};

/// Cassandra's longest TTL (20 years), in seconds.
const MAX_TTL: i64 = 630_720_000;

fn grace() -> TimeDelta {
    TimeDelta::from_std(UPLOAD_GRACE).unwrap_or(TimeDelta::MAX)
}

fn decode(domain: &str, text: Option<String>) -> Result<Upload> {
    let text = text.ok_or_else(|| corrupt(format!("an upload of {domain} without its record")))?;
    serde_json::from_str(&text).map_err(|e| corrupt(format!("an upload of {domain}: {e}")))
}

#[async_trait]
impl UploadIndex for CassandraStore {
    async fn put_upload(&self, upload: &Upload) -> Result<Upload> {
        // The creation time is the first write's: read before writing. The expiry needs no
        // read: the write time decides.
        let merged = match self.get_upload(&upload.domain, &upload.sha256).await? {
            Some(old) => upload.merged(&old),
            None => upload.clone(),
        };
        let ttl = (merged.expires_at + grace() - omni_store::now()).num_seconds();
        if ttl <= 0 {
            // Past its grace already: nothing to keep.
            return Ok(merged);
        }
        let ttl = i32::try_from(ttl.min(MAX_TTL)).unwrap_or(i32::MAX);
        let written_at = merged.expires_at.timestamp_micros();
        self.inner
            .session
            .execute_unpaged(
                &self.inner.st.insert_upload,
                (
                    merged.domain.as_str(),
                    merged.sha256.as_str(),
                    to_json(&merged)?,
                    ttl,
                    written_at,
                ),
            )
            .await
            .map_err(|e| unavailable("writing an upload record", e))?;
        Ok(merged)
    }

    async fn get_upload(&self, domain: &str, sha256: &str) -> Result<Option<Upload>> {
        let rows = self
            .inner
            .session
            .execute_unpaged(&self.inner.st.get_upload, (domain, sha256))
            .await
            .map_err(|e| unavailable("reading an upload record", e))?
            .into_rows_result()
            .map_err(|e| unavailable("reading an upload record", e))?;
        let row: Option<(Option<String>,)> = rows
            .maybe_first_row()
            .map_err(|e| corrupt(format!("an upload of {domain}: {e}")))?;
        let now = omni_store::now();
        Ok(row
            .map(|(text,)| decode(domain, text))
            .transpose()?
            .filter(|upload| upload.expires_at + grace() >= now))
    }

    async fn list_uploads(&self, domain: &str) -> Result<Vec<Upload>> {
        let pager = self
            .inner
            .session
            .execute_iter(self.inner.st.list_uploads.clone(), (domain,))
            .await
            .map_err(|e| unavailable("reading upload records", e))?;
        let now = omni_store::now();
        let rows: Vec<(Option<String>,)> = pager
            .rows_stream::<(Option<String>,)>()
            .map_err(|e| corrupt(format!("uploads: {e}")))?
            .try_collect()
            .await
            .map_err(|e| unavailable("reading upload records", e))?;
        let mut uploads = Vec::with_capacity(rows.len());
        for (text,) in rows {
            let upload = decode(domain, text)?;
            if upload.expires_at + grace() >= now {
                uploads.push(upload);
            }
        }
        Ok(uploads)
    }

    async fn forget_uploads(&self, _domain: &str, _now: DateTime<Utc>) -> Result<u64> {
        // Every record is written with a TTL to the end of its grace.
        Ok(0)
    }
}
