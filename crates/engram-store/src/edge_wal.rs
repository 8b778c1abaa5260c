//! Keeping Qdrant Edge's own write-ahead log from growing forever.
//!
//! Edge 0.7.2 writes every update to a WAL in the shard's `wal` directory
//! and never reads it back: it has no replay on load and never
//! acknowledges entries, so the log is never truncated. It grows by about
//! 2.4 KB per written point (2.4 GB after a million), and opening the shard
//! reads all of it, which at a million points took most of a 14 s start and
//! left 2.4 GB of its pages resident. This store's own journal is the redo
//! log (see the `journal` module), and every open checkpoints the shard
//! before serving, so the WAL's old entries hold nothing anyone needs.
//!
//! Before the shard is loaded (on open, and when a maintenance pass finds
//! more than [`EdgeStoreOptions::wal_limit_bytes`] of old segments, by
//! reopening the shard), every closed WAL segment but the newest is
//! removed. The newest stays because the WAL numbers operations from its
//! first segment's start index, and those numbers become the points'
//! versions: a log numbered from 0 again would make the shard ignore every
//! later update of an existing point as outdated. Removing a prefix of
//! closed segments is exactly what the WAL's own truncation does.

#[cfg(doc)]
use crate::EdgeStoreOptions;
use crate::mapping;
use crate::store::{Inner, closed};
use engram_core::StoreError;
use qdrant_edge::EdgeShard;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The shard's WAL directory.
const WAL_DIR: &str = "wal";
/// Prefix of a closed segment's file name; the rest is its start index.
const CLOSED: &str = "closed-";

/// What [`trim`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trimmed {
    /// Closed segments removed.
    pub segments: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// The closed segments of the Edge WAL in `dir` but the newest: what
/// [`trim`] removes. A directory without a WAL has none.
fn old_segments(dir: &Path) -> Result<Vec<(PathBuf, u64)>, StoreError> {
    let wal = dir.join(WAL_DIR);
    let entries = match std::fs::read_dir(&wal) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&wal, e)),
    };
    let mut closed: Vec<(u64, PathBuf, u64)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io(&wal, e))?;
        let name = entry.file_name();
        // Names that are not `closed-<index>` are the WAL's open segments
        // or nothing of ours: left as they are.
        let Some(start) = name
            .to_str()
            .and_then(|n| n.strip_prefix(CLOSED))
            .and_then(|i| i.parse::<u64>().ok())
        else {
            continue;
        };
        let bytes = entry.metadata().map_err(|e| io(&wal, e))?.len();
        closed.push((start, entry.path(), bytes));
    }
    closed.sort_unstable_by_key(|(start, _, _)| *start);
    closed.pop();
    Ok(closed
        .into_iter()
        .map(|(_, path, bytes)| (path, bytes))
        .collect())
}

fn io(wal: &Path, e: std::io::Error) -> StoreError {
    StoreError::Internal(format!("cannot trim the WAL in {}: {e}", wal.display()))
}

/// Removes every closed segment of the Edge WAL in `dir` but the one with
/// the highest start index. Call only while no shard of `dir` is loaded.
pub(crate) fn trim(dir: &Path) -> Result<Trimmed, StoreError> {
    let wal = dir.join(WAL_DIR);
    let mut trimmed = Trimmed::default();
    for (path, bytes) in old_segments(dir)? {
        std::fs::remove_file(&path).map_err(|e| io(&wal, e))?;
        trimmed.segments += 1;
        trimmed.bytes += bytes;
    }
    if trimmed.segments > 0 {
        tracing::info!(
            dir = %dir.display(),
            segments = trimmed.segments,
            bytes = trimmed.bytes,
            "old segments of the shard's write-ahead log removed"
        );
        // The removals must not come back after a crash while later
        // segments stay: the WAL refuses a gap between closed segments.
        std::fs::File::open(&wal)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(&wal, e))?;
    }
    Ok(trimmed)
}

impl Inner {
    /// Reopens the shard when Edge's WAL holds more than the configured
    /// bytes of old segments, removing them in between; blocking. Calls
    /// wait meanwhile (the shard's write lock). The journal is empty
    /// afterwards and nothing is lost: the shard is checkpointed first.
    /// If the shard cannot be loaded again the store is closed (every call
    /// then answers unavailable, and the next start retries the load).
    pub(crate) fn trim_wal_if_over(&self) -> Result<(), StoreError> {
        let old: u64 = old_segments(&self.dir)?.iter().map(|(_, b)| b).sum();
        if old <= self.options.wal_limit_bytes {
            return Ok(());
        }
        let started = Instant::now();
        let mut guard = self.shard.write();
        let shard = guard.take().ok_or_else(closed)?;
        if let Err(err) = self.checkpoint_exclusive(&shard) {
            *guard = Some(shard);
            return Err(err);
        }
        // Dropping the shard releases its WAL (Edge flushes on drop).
        drop(shard);
        let trimmed = trim(&self.dir);
        let shard =
            EdgeShard::load(&self.dir, Some(mapping::edge_config(&self.options))).map_err(|e| {
                StoreError::Internal(format!(
                    "cannot reopen the shard in {} after trimming its WAL: {e}",
                    self.dir.display()
                ))
            })?;
        *guard = Some(shard);
        let trimmed = trimmed?;
        tracing::info!(
            dir = %self.dir.display(),
            segments = trimmed.segments,
            bytes = trimmed.bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "shard reopened to trim its write-ahead log"
        );
        Ok(())
    }

    /// A checkpoint while holding the shard exclusively (no optimizer can
    /// run: it needs the shard too).
    fn checkpoint_exclusive(&self, shard: &EdgeShard) -> Result<(), StoreError> {
        let _maintenance = self.maintenance.lock();
        self.checkpoint(shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join(WAL_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn keeps_the_newest_closed_segment_and_the_open_ones() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join(WAL_DIR);
        std::fs::create_dir(&wal).unwrap();
        // Indexes compare as numbers: closed-100 is newer than closed-27.
        for (name, len) in [
            ("closed-0", 10),
            ("closed-27", 20),
            ("closed-100", 30),
            ("open-4", 5),
            ("closed-x", 1),
        ] {
            std::fs::write(wal.join(name), vec![0u8; len]).unwrap();
        }
        let t = trim(dir.path()).unwrap();
        assert_eq!(
            t,
            Trimmed {
                segments: 2,
                bytes: 30
            }
        );
        assert_eq!(names(dir.path()), ["closed-100", "closed-x", "open-4"]);
        // Nothing more to remove the second time.
        assert_eq!(trim(dir.path()).unwrap(), Trimmed::default());
    }

    #[test]
    fn a_store_without_a_wal_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(trim(dir.path()).unwrap(), Trimmed::default());
    }
}
