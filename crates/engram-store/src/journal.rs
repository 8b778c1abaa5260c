//! The store's own redo journal, which is what makes an upsert durable on
//! return.
//!
//! Qdrant Edge 0.7.2 appends every operation to its WAL but never replays
//! that WAL when a shard is loaded: after a crash, only what
//! `EdgeShard::flush` wrote into the segments survives. Flushing every
//! segment on every upsert is slow, and `flush` panics instead of waiting
//! when an optimization holds the segment lock. So each upsert appends its
//! points here as one fsync'd JSON line, and the store periodically
//! checkpoints: flush the shard, then empty the journal. On open, whatever
//! the journal holds is upserted again; upserts are idempotent, so replaying
//! a batch the segments already hold is harmless.

use engram_core::{Point, PointPayload, SparseVector};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// File name of the journal inside the store directory.
pub(crate) const JOURNAL_FILE: &str = "engram-journal.jsonl";

/// One upsert call: replayed as a whole or not at all.
#[derive(Serialize, Deserialize)]
struct Record {
    points: Vec<JournalPoint>,
}

/// [`Point`] in a serializable form.
#[derive(Serialize, Deserialize)]
struct JournalPoint {
    fragment_id: String,
    payload: PointPayload,
    dense: Vec<f32>,
    sparse: SparseVector,
}

impl From<&Point> for JournalPoint {
    fn from(p: &Point) -> Self {
        Self {
            fragment_id: p.fragment_id.clone(),
            payload: p.payload.clone(),
            dense: p.dense.clone(),
            sparse: p.sparse.clone(),
        }
    }
}

impl From<JournalPoint> for Point {
    fn from(p: JournalPoint) -> Self {
        Self {
            fragment_id: p.fragment_id,
            payload: p.payload,
            dense: p.dense,
            sparse: p.sparse,
        }
    }
}

/// An append-only file of upsert batches not yet flushed into the shard.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    bytes: u64,
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and returns the batches it
    /// holds, oldest first.
    ///
    /// A last line without its newline is a write that crashed before its
    /// fsync returned, so it was never acknowledged and is dropped. A line
    /// that does not parse stops the replay there (with a warning): what
    /// follows cannot be trusted either. The unreadable tail is cut off.
    pub(crate) fn open(dir: &Path) -> io::Result<(Self, Vec<Vec<Point>>)> {
        let path = dir.join(JOURNAL_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut content = Vec::new();
        file.read_to_end(&mut content)?;

        let mut batches = Vec::new();
        // Offset just past the last line that parsed: everything after it is
        // cut off, so later appends never land behind a broken line.
        let mut valid = 0;
        while let Some(end) = content[valid..].iter().position(|b| *b == b'\n') {
            let line = &content[valid..valid + end];
            match serde_json::from_slice::<Record>(line) {
                Ok(record) => {
                    batches.push(record.points.into_iter().map(Point::from).collect());
                    valid += end + 1;
                }
                Err(err) => {
                    tracing::warn!(
                        path = %path.display(),
                        batches = batches.len(),
                        error = %err,
                        "journal line does not parse, replaying only the batches before it"
                    );
                    break;
                }
            }
        }
        if valid < content.len() {
            tracing::warn!(
                path = %path.display(),
                bytes = content.len() - valid,
                "cutting unreadable tail off the journal"
            );
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        let bytes = valid as u64;
        Ok((Self { file, path, bytes }, batches))
    }

    /// Appends one batch and waits until it is on disk.
    pub(crate) fn append(&mut self, points: &[Point]) -> io::Result<()> {
        let record = Record {
            points: points.iter().map(JournalPoint::from).collect(),
        };
        let mut line = serde_json::to_vec(&record).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write call per batch, so a crash tears at most the last line.
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.bytes += line.len() as u64;
        Ok(())
    }

    /// Empties the journal; call only once the shard holds every batch
    /// durably (after `EdgeShard::flush`).
    pub(crate) fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.bytes = 0;
        Ok(())
    }

    /// Bytes currently in the journal.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where the journal lives.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_core::Kind;

    fn point(n: u8) -> Point {
        let fragment_id = format!("{n:02x}").repeat(32);
        Point {
            fragment_id: fragment_id.clone(),
            payload: PointPayload {
                fragment_id,
                org_id: "org".into(),
                user_id: "u".into(),
                session_id: "s".into(),
                kind: Kind::Turn,
                role: None,
                text: format!("text {n}"),
                ts_ms: i64::from(n),
                job_id: "job".into(),
                source_ids: Vec::new(),
                metadata: serde_json::Map::new(),
            },
            dense: vec![0.1, 0.2, 0.3, f32::from(n)],
            sparse: SparseVector {
                indices: vec![1, 7],
                values: vec![0.5, 1.25],
            },
        }
    }

    #[test]
    fn batches_survive_reopen_until_reset() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, batches) = Journal::open(dir.path()).unwrap();
        assert!(batches.is_empty());
        j.append(&[point(1), point(2)]).unwrap();
        j.append(&[point(3)]).unwrap();
        drop(j);

        let (mut j, batches) = Journal::open(dir.path()).unwrap();
        assert_eq!(batches, vec![vec![point(1), point(2)], vec![point(3)]]);
        assert!(j.bytes() > 0);
        j.reset().unwrap();
        drop(j);

        let (j, batches) = Journal::open(dir.path()).unwrap();
        assert!(batches.is_empty());
        assert_eq!(j.bytes(), 0);
    }

    #[test]
    fn torn_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&[point(1)]).unwrap();
        drop(j);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap();
        f.write_all(b"{\"points\":[{\"fragm").unwrap();
        drop(f);

        let (mut j, batches) = Journal::open(dir.path()).unwrap();
        assert_eq!(batches, vec![vec![point(1)]]);
        // The torn tail is gone, so a later append is readable.
        j.append(&[point(2)]).unwrap();
        drop(j);
        let (_, batches) = Journal::open(dir.path()).unwrap();
        assert_eq!(batches, vec![vec![point(1)], vec![point(2)]]);
    }
}
