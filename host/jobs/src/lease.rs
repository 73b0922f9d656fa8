//! Work one replica does at a time (scheduling, webhook delivery), held through a lease in the
//! store: [`Lease::acquire`] waits until this replica holds it, the holder calls
//! [`Lease::renew`] when [`Lease::renew_at`] comes (a third of the TTL), and gives the work up
//! when renewing says the lease is lost.

use std::sync::Arc;
use std::time::Duration;

use omni_store::LeaseStore;
use tokio::time::Instant;

/// A lease this replica takes, keeps and lets go.
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn LeaseStore>,
    name: &'static str,
    holder: String,
    ttl: Duration,
    renew_at: Instant,
}

impl Lease {
    /// Lease `name` in `store`, for `holder` (this replica), lasting `ttl` unless renewed.
    pub fn new(
        store: Arc<dyn LeaseStore>,
        name: &'static str,
        holder: String,
        ttl: Duration,
    ) -> Self {
        Lease {
            store,
            name,
            holder,
            ttl,
            renew_at: Instant::now(),
        }
    }

    fn period(&self) -> Duration {
        self.ttl / 3
    }

    /// Waits until this replica holds the lease, trying every third of its TTL.
    pub async fn acquire(&mut self) {
        loop {
            match self
                .store
                .acquire_lease(self.name, &self.holder, self.ttl)
                .await
            {
                Ok(Some(_)) => {
                    self.renew_at = Instant::now() + self.period();
                    tracing::info!(lease = self.name, holder = %self.holder, "this replica holds the lease");
                    return;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(lease = self.name, %error, "cannot take the lease");
                }
            }
            tokio::time::sleep(self.period()).await;
        }
    }

    /// When the lease is to be renewed next.
    pub fn renew_at(&self) -> Instant {
        self.renew_at
    }

    /// Renews the lease; `false` once it is lost: another replica holds it, or it could not be
    /// renewed until it was about to lapse (until then it is still ours, and is tried again
    /// sooner).
    pub async fn renew(&mut self) -> bool {
        let period = self.period();
        match self
            .store
            .acquire_lease(self.name, &self.holder, self.ttl)
            .await
        {
            Ok(Some(_)) => {
                self.renew_at = Instant::now() + period;
                true
            }
            Ok(None) => {
                tracing::warn!(lease = self.name, "the lease was lost to another replica");
                false
            }
            Err(error) => {
                tracing::warn!(lease = self.name, %error, "cannot renew the lease");
                if self.renew_at.elapsed() > self.ttl - period {
                    return false;
                }
                self.renew_at = Instant::now() + period / 3;
                true
            }
        }
    }

    /// Lets the lease go (the work stopped, or it was lost), then waits a third of its TTL, so
    /// that another replica may take it before this one tries again.
    pub async fn release(&mut self) {
        let _ = self.store.release_lease(self.name, &self.holder).await;
        tokio::time::sleep(self.period()).await;
    }
}
