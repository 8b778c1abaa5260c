//! The background task that keeps the shard optimized and checkpointed.
//!
//! Qdrant Edge runs no optimizer of its own: without this task every new
//! point stays in plain (unindexed) appendable segments and each search
//! scans them all, and the journal is never emptied.

use crate::store::{Inner, blocking};
use engram_core::StoreError;
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
    let tick = (when_idle / 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
    drop(inner);
    let mut last_pass = Instant::now();
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(tick) => {}
        }
        let Some(inner) = store.upgrade() else { return };
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
}
