//! When retention runs: a minute after start, then every hour, and when an operator asks
//! (`POST /v1/storage/prune`). What a prune removes is `store::retention`'s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::live::Live;
use crate::model::time;
use crate::store::retention::{self, Pruned};
use crate::store::{Store, StoreError};
use crate::webhooks::Webhooks;

/// The first prune waits this long after start (the gateway's own start comes first).
const FIRST_PRUNE: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_secs(3600);

/// A cheap handle; clone it freely.
#[derive(Clone)]
pub struct Retention {
    store: Store,
    /// `storage.retention`, swapped by a reload; `None`: keep everything.
    keep: Live<Option<Duration>>,
    webhooks: Webhooks,
    /// One prune at a time; between prunes, the packs the last compaction left.
    retired: Arc<tokio::sync::Mutex<Vec<PathBuf>>>,
}

impl Retention {
    pub fn new(store: Store, keep: Live<Option<Duration>>, webhooks: Webhooks) -> Retention {
        Retention { store, keep, webhooks, retired: Arc::default() }
    }

    /// Prunes what is older than the retention now; `None` when none is set.
    pub async fn prune_now(&self) -> Result<Option<Pruned>, StoreError> {
        let Some(keep) = *self.keep.load() else { return Ok(None) };
        let mut retired = self.retired.lock().await;
        let cutoff = time::now_ms() - keep.as_millis() as i64;
        let pruned = retention::prune(&self.store, cutoff, self.webhooks.ids(), &mut retired).await?;
        let removed = [
            ("messages", pruned.messages),
            ("rejected", pruned.rejected),
            ("events", pruned.events),
            ("blobs", pruned.blobs),
            ("bytes", pruned.bytes_freed),
        ];
        for (what, count) in removed {
            metrics::counter!("switchboard_retention_removed_total", "what" => what).increment(count);
        }
        if let Some(consumer) = &pruned.held_back_by {
            tracing::warn!(consumer, "storage.retention: events older than the retention wait for webhook consumer `{consumer}` (down, or disabled by a 410: see GET /v1/webhooks/{consumer})");
        }
        if removed.iter().any(|(_, count)| *count > 0) {
            tracing::info!(
                messages = pruned.messages,
                rejected = pruned.rejected,
                events = pruned.events,
                events_pruned_through = pruned.events_pruned_through,
                blobs = pruned.blobs,
                packs_removed = pruned.packs_removed,
                packs_compacted = pruned.packs_compacted,
                bytes_freed = pruned.bytes_freed,
                "storage.retention: removed what was older than {}",
                time::rfc3339(cutoff)
            );
        }
        Ok(Some(pruned))
    }

    /// Prunes a minute after start and every hour after, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut wait = FIRST_PRUNE;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = EVERY;
            // Stopping midway loses nothing: each chunk is its own transaction, and a pack
            // written for a compaction that did not commit is swept at the next start.
            let pruned = tokio::select! {
                _ = shutdown.cancelled() => return,
                pruned = self.prune_now() => pruned,
            };
            if let Err(e) = pruned {
                tracing::warn!(error = %e, "storage.retention: the prune stopped; what it removed stays removed, the next goes on");
            }
        }
    }
}
