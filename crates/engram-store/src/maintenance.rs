//! The background task that keeps the shard optimized and checkpointed.
//!
//! Qdrant Edge runs no optimizer of its own: without this task every new
//! point stays in plain (unindexed) appendable segments and each search
//! scans them all, and the journal is never emptied.

use crate::mapping::internal;
use crate::store::{Inner, blocking};
use engram_core::StoreError;
use qdrant_edge::EdgeShard;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Maintain at least this often while points are pending, so a trickle of
/// writes that is never idle long enough still gets checkpointed.
const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// Why a maintenance pass is due now, if it is.
fn due(
    pending: u64,
    idle_for: Duration,
    since_last: Duration,
    after_points: u64,
    when_idle: Duration,
) -> Option<&'static str> {
    if pending == 0 {
        None
    } else if pending >= after_points {
        Some("writes")
    } else if idle_for >= when_idle {
        Some("idle")
    } else if since_last >= MAX_INTERVAL {
        Some("interval")
    } else {
        None
    }
}

/// Whether an idle compaction is due: writes paused for `when_idle`, the
/// regular pass has taken every pending point, and no compaction ran since
/// the last write (`compacted_at`: the last write's time, in ms since the
/// store's epoch, when the previous compaction started).
fn compaction_due(
    when_idle: Option<Duration>,
    idle_for: Duration,
    pending: u64,
    last_write_ms: u64,
    compacted_at: Option<u64>,
) -> bool {
    when_idle.is_some_and(|w| idle_for >= w) && pending == 0 && compacted_at != Some(last_write_ms)
}

/// Runs until aborted (by close), until the store is dropped, or until it
/// finds the store closed.
///
/// It holds the store only weakly between passes: dropping the last
/// [`EdgeStore`](crate::EdgeStore) handle must release the shard (and its
/// WAL lock) at once, not whenever this task is next polled.
pub(crate) async fn run(store: Weak<Inner>, wake: Arc<Notify>) {
    let Some(inner) = store.upgrade() else { return };
    let when_idle = inner.options.optimize_when_idle;
    let after_points = inner.options.optimize_after_points;
    let compact_when_idle = inner.options.compact_when_idle;
    let tick = (when_idle / 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
    drop(inner);
    let mut last_pass = Instant::now();
    let mut compacted_at = None;
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(tick) => {}
        }
        let Some(inner) = store.upgrade() else { return };
        let last_write_ms = inner.last_write_ms.load(Ordering::Acquire);
        if compaction_due(
            compact_when_idle,
            inner.idle_for(),
            inner.pending.load(Ordering::Acquire),
            last_write_ms,
            compacted_at,
        ) {
            // Once per pause in writes, whatever the outcome: a failed
            // merge is not retried in a loop.
            compacted_at = Some(last_write_ms);
            match blocking("compaction", move || inner.compact()).await {
                Ok(_) => {}
                Err(StoreError::Unavailable(_)) => return,
                Err(err) => tracing::warn!(error = %err, "vector store compaction failed"),
            }
            continue;
        }
        let Some(reason) = due(
            inner.pending.load(Ordering::Acquire),
            inner.idle_for(),
            last_pass.elapsed(),
            after_points,
            when_idle,
        ) else {
            continue;
        };
        last_pass = Instant::now();
        match blocking("maintenance", move || inner.maintain(reason)).await {
            Ok(_) => {}
            Err(StoreError::Unavailable(_)) => {
                tracing::debug!("vector store closed, optimizer stops");
                return;
            }
            Err(err) => {
                tracing::warn!(reason, error = %err, "vector store maintenance failed");
                // Do not hammer a failing shard; the next pass retries.
                tokio::time::sleep(when_idle.max(Duration::from_secs(1))).await;
            }
        }
    }
}

impl Inner {
    /// Merges the shard down to `compact_segment_number` segments in one
    /// pass (see [`optimize_down_to`]) and checkpoints it; blocking.
    /// Returns whether a segment changed.
    pub(crate) fn compact(&self) -> Result<bool, StoreError> {
        self.optimize_and_checkpoint("compaction", Some(self.options.compact_segment_number))
    }
}

/// One optimizer pass with `target` segments, the optimizer's usual target
/// restored after it.
///
/// The lower target lives in the shard's optimizer configuration only for
/// the pass: should the process stop meanwhile, the next open configures
/// the shard from the options again. Searches and writes keep running
/// meanwhile (Edge builds the merged segment beside the old ones).
pub(crate) fn optimize_down_to(shard: &EdgeShard, target: usize) -> Result<bool, StoreError> {
    let usual = shard.config().optimizers.clone();
    let mut merging = usual.clone();
    merging.default_segment_number = Some(target);
    shard.set_optimizers_config(merging).map_err(internal)?;
    let optimized = shard.optimize().map_err(internal);
    shard.set_optimizers_config(usual).map_err(internal)?;
    optimized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_after_enough_points_or_idle_or_interval() {
        let s = Duration::from_secs;
        assert_eq!(due(0, s(100), s(100), 10, s(5)), None);
        assert_eq!(due(10, s(0), s(0), 10, s(5)), Some("writes"));
        assert_eq!(due(3, s(5), s(0), 10, s(5)), Some("idle"));
        assert_eq!(due(3, s(1), s(0), 10, s(5)), None);
        assert_eq!(due(3, s(1), s(60), 10, s(5)), Some("interval"));
    }

    #[test]
    fn compaction_once_per_pause_after_the_regular_pass() {
        let s = Duration::from_secs;
        let idle = Some(s(600));
        // Not idle long enough, or disabled.
        assert!(!compaction_due(idle, s(599), 0, 7, None));
        assert!(!compaction_due(None, s(9_999), 0, 7, None));
        // Points still pending: the regular pass goes first.
        assert!(!compaction_due(idle, s(600), 3, 7, None));
        assert!(compaction_due(idle, s(600), 0, 7, None));
        // Already done for this pause; due again after the next write.
        assert!(!compaction_due(idle, s(900), 0, 7, Some(7)));
        assert!(compaction_due(idle, s(600), 0, 8, Some(7)));
    }
}
