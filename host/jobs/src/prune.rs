//! Pruning the plugin versions no job needs: the kept components and template sets that no
//! stored job records, that do not serve and are not among the most recently used, and the
//! compile cache's code of what is no longer kept (`omni_core::Plugins::prune`). Each replica
//! keeps its own versions, so each prunes its own, against the jobs of the shared store.

use omni_core::{InUse, Pruned};
use omni_store::JobQuery;

use crate::{JobError, JobService};

impl JobService {
    /// The plugin versions and template sets the stored jobs record, read over every job.
    ///
    /// # Errors
    /// [`JobError::Store`].
    pub async fn versions_in_use(&self) -> Result<InUse, JobError> {
        let mut in_use = InUse::default();
        let mut query = JobQuery {
            limit: JobQuery::MAX_LIMIT,
            ..JobQuery::default()
        };
        loop {
            let page = self.store.list_jobs(&query).await?;
            for job in &page.items {
                in_use.components.insert(job.plugin.digest.clone());
                if let Some(templates) = &job.plugin.templates {
                    in_use.templates.insert(templates.clone());
                }
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(in_use),
            }
        }
    }

    /// Deletes the plugin versions and template sets no stored job records (and that do not
    /// serve and were not used lately), and the compile cache's code of what is gone.
    ///
    /// # Errors
    /// [`JobError::Store`] when the jobs cannot be read: nothing is deleted then.
    pub async fn prune_plugin_versions(&self) -> Result<Pruned, JobError> {
        let in_use = self.versions_in_use().await?;
        Ok(self.plugins.prune(&in_use).await)
    }

    /// Runs [`JobService::prune_plugin_versions`] every `interval` (the first at once), until
    /// the task is dropped.
    pub async fn prune_plugin_versions_every(self, interval: std::time::Duration) {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match self.prune_plugin_versions().await {
                Ok(pruned) if pruned != Pruned::default() => tracing::info!(
                    components = pruned.components,
                    template_sets = pruned.template_sets,
                    cache_files = pruned.cache_files,
                    "pruned plugin versions no job records"
                ),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot prune plugin versions; trying again later");
                }
            }
        }
    }
}
