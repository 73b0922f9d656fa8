//! [`LeaseStore`] on redb: the single writer makes each take or release a compare-and-set.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use omni_store::{Lease, LeaseStore, Result};
use redb::ReadableTable;

use crate::tables::*;
use crate::{EmbeddedStore, delta};

#[async_trait]
impl LeaseStore for EmbeddedStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let name = name.to_owned();
        let holder = holder.to_owned();
        self.write(move |txn| {
            let mut leases = txn.open_table(LEASES)?;
            let now = Utc::now();
            let current: Option<StoredLease> = leases
                .get(name.as_str())?
                .map(|v| decode(v.value()))
                .transpose()?;
            if let Some(current) = current
                && current.holder != holder
                && current.expires_at > now
            {
                return Ok(None);
            }
            let lease = StoredLease {
                holder: holder.clone(),
                expires_at: now + delta(ttl),
            };
            leases.insert(name.as_str(), encode(&lease)?.as_slice())?;
            Ok(Some(Lease {
                name,
                holder,
                expires_at: lease.expires_at,
            }))
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool> {
        let name = name.to_owned();
        let holder = holder.to_owned();
        self.write(move |txn| {
            let mut leases = txn.open_table(LEASES)?;
            let current: Option<StoredLease> = leases
                .get(name.as_str())?
                .map(|v| decode(v.value()))
                .transpose()?;
            if current.is_some_and(|c| c.holder == holder) {
                leases.remove(name.as_str())?;
                Ok(true)
            } else {
                Ok(false)
            }
        })
        .await
    }
}
