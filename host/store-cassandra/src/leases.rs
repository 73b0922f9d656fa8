//! [`LeaseStore`] on Cassandra: one row per lease, taken, renewed and released by lightweight
//! transaction, with a TTL a little past its expiry.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{SubsecRound, TimeDelta};

use omni_store::{Lease, LeaseStore, Result};

use crate::cql::lwt;
use crate::{CassandraStore, ttl_secs};

#[async_trait]
impl LeaseStore for CassandraStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let session = &self.inner.session;
        let st = &self.inner.st;
        let span = TimeDelta::from_std(ttl).unwrap_or(TimeDelta::days(365 * 20));
        // The row outlives the lease by a second: Cassandra counts TTLs in whole seconds, and
        // a row must never vanish before `expires_at`, which is what decides.
        let row_ttl = i32::try_from(ttl.as_secs().saturating_add(2))
            .unwrap_or(i32::MAX)
            .min(ttl_secs(Duration::MAX));
        for _ in 0..4 {
            let now = omni_store::now();
            let expires_at = (now + span).trunc_subsecs(3);
            let lease = Lease {
                name: name.to_owned(),
                holder: holder.to_owned(),
                expires_at,
            };
            let answer = lwt(
                session,
                &st.insert_lease,
                (name, holder, expires_at, row_ttl),
                "taking a lease",
            )
            .await?;
            let current_holder = answer.text("holder");
            let current_expiry = answer.timestamp("expires_at");
            if answer.applied
                || (answer.retried
                    && current_holder == Some(holder)
                    && current_expiry == Some(expires_at))
            {
                return Ok(Some(lease));
            }
            let lapsed = current_expiry.is_none_or(|e| e <= now);
            if current_holder != Some(holder) && !lapsed {
                return Ok(None);
            }
            // Ours to renew, or lapsed: take it over if nobody did meanwhile.
            let renewed = lwt(
                session,
                &st.renew_lease,
                (
                    row_ttl,
                    holder,
                    expires_at,
                    name,
                    current_holder,
                    current_expiry,
                ),
                "renewing a lease",
            )
            .await?;
            if renewed.applied
                || (renewed.retried
                    && renewed.text("holder") == Some(holder)
                    && renewed.timestamp("expires_at") == Some(expires_at))
            {
                return Ok(Some(lease));
            }
        }
        // It changed hands under us every time: someone else is taking it.
        Ok(None)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool> {
        let answer = lwt(
            &self.inner.session,
            &self.inner.st.release_lease,
            (name, holder),
            "releasing a lease",
        )
        .await?;
        Ok(answer.applied || (answer.retried && answer.text("holder").is_none()))
    }
}
