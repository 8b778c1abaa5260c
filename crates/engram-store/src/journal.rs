//! The store's own redo journal, which is what makes an upsert (or a
//! delete) durable on return.
//!
//! Qdrant Edge 0.7.2 appends every operation to its WAL but never replays
//! that WAL when a shard is loaded: after a crash, only what
//! `EdgeShard::flush` wrote into the segments survives. Flushing every
//! segment on every upsert is slow, and `flush` panics instead of waiting
//! when an optimization holds the segment lock. So each upsert appends its
//! points here as one fsync'd JSON line, each delete the fragment ids it
//! removes, and the store periodically checkpoints: flush the shard, then
//! empty the journal. On open, whatever the journal holds is applied again,
//! in order.
//!
//! Replaying is safe from whatever state the shard was flushed in, because
//! every entry fixes the state of the points it names regardless of what was
//! there before (an upsert writes the whole point, a delete removes it): after
//! the replay each point is as the last entry naming it left it. Deletes must
//! be journaled too, or a crash after a delete would replay an earlier upsert
//! and bring the points back.

use engram_core::{Point, PointPayload, SparseVector};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// File name of the journal inside the store directory.
pub(crate) const JOURNAL_FILE: &str = "engram-journal.jsonl";

/// One line of the journal: one upsert or delete call, replayed as a whole
/// or not at all.
///
/// Journals written before deletes were journaled hold only `points`, so
/// both fields default when absent. A record with both is replayed as its
/// upsert followed by its delete (the store writes one or the other).
#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(default)]
    points: Vec<JournalPoint>,
    /// Fragment ids removed by a delete; their tenant was checked before
    /// the record was written, so replay removes them unconditionally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delete: Option<Vec<String>>,
}

/// One journaled operation, as replayed on open.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Entry {
    /// Points written by an upsert.
    Upsert(Vec<Point>),
    /// Fragment ids removed by a delete.
    Delete(Vec<String>),
}

impl Record {
    /// The operations of this record, in replay order.
    fn into_entries(self) -> impl Iterator<Item = Entry> {
        let upsert = (!self.points.is_empty())
            .then(|| Entry::Upsert(self.points.into_iter().map(Point::from).collect()));
        upsert.into_iter().chain(self.delete.map(Entry::Delete))
    }
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

/// An append-only file of operations not yet flushed into the shard.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    bytes: u64,
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and returns the operations it
    /// holds, oldest first.
    ///
    /// A last line without its newline is a write that crashed before its
    /// fsync returned, so it was never acknowledged and is dropped. A line
    /// that does not parse stops the replay there (with a warning): what
    /// follows cannot be trusted either. The unreadable tail is cut off.
    pub(crate) fn open(dir: &Path) -> io::Result<(Self, Vec<Entry>)> {
        let path = dir.join(JOURNAL_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut content = Vec::new();
        file.read_to_end(&mut content)?;

        let mut entries = Vec::new();
        // Offset just past the last line that parsed: everything after it is
        // cut off, so later appends never land behind a broken line.
        let mut valid = 0;
        while let Some(end) = content[valid..].iter().position(|b| *b == b'\n') {
            let line = &content[valid..valid + end];
            match serde_json::from_slice::<Record>(line) {
                Ok(record) => {
                    entries.extend(record.into_entries());
                    valid += end + 1;
                }
                Err(err) => {
                    tracing::warn!(
                        path = %path.display(),
                        entries = entries.len(),
                        error = %err,
                        "journal line does not parse, replaying only the entries before it"
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
        Ok((Self { file, path, bytes }, entries))
    }

    /// Appends one upsert batch and waits until it is on disk.
    pub(crate) fn append(&mut self, points: &[Point]) -> io::Result<()> {
        self.write(&Record {
            points: points.iter().map(JournalPoint::from).collect(),
            delete: None,
        })
    }

    /// Appends one delete (of fragment ids already checked to belong to the
    /// caller's tenant) and waits until it is on disk.
    pub(crate) fn append_delete(&mut self, fragment_ids: &[String]) -> io::Result<()> {
        self.write(&Record {
            points: Vec::new(),
            delete: Some(fragment_ids.to_vec()),
        })
    }

    fn write(&mut self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write call per record, so a crash tears at most the last line.
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.bytes += line.len() as u64;
        Ok(())
    }

    /// Empties the journal; call only once the shard holds every entry
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
            payload: PointPayload::new(
                fragment_id,
                engram_core::Scope {
                    org_id: "org".into(),
                    user_id: "u".into(),
                    session_id: "s".into(),
                },
                Kind::Turn,
                format!("text {n}"),
                i64::from(n),
                "job".into(),
            ),
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
        let (mut j, entries) = Journal::open(dir.path()).unwrap();
        assert!(entries.is_empty());
        j.append(&[point(1), point(2)]).unwrap();
        j.append(&[point(3)]).unwrap();
        drop(j);

        let (mut j, entries) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            entries,
            vec![
                Entry::Upsert(vec![point(1), point(2)]),
                Entry::Upsert(vec![point(3)])
            ]
        );
        assert!(j.bytes() > 0);
        j.reset().unwrap();
        drop(j);

        let (j, entries) = Journal::open(dir.path()).unwrap();
        assert!(entries.is_empty());
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

        let (mut j, entries) = Journal::open(dir.path()).unwrap();
        assert_eq!(entries, vec![Entry::Upsert(vec![point(1)])]);
        // The torn tail is gone, so a later append is readable.
        j.append(&[point(2)]).unwrap();
        drop(j);
        let (_, entries) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            entries,
            vec![Entry::Upsert(vec![point(1)]), Entry::Upsert(vec![point(2)])]
        );
    }

    #[test]
    fn deletes_are_replayed_in_order_with_upserts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&[point(1), point(2)]).unwrap();
        j.append_delete(&[point(1).fragment_id]).unwrap();
        j.append(&[point(1)]).unwrap();
        j.append_delete(&[]).unwrap();
        drop(j);

        let (_, entries) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            entries,
            vec![
                Entry::Upsert(vec![point(1), point(2)]),
                Entry::Delete(vec![point(1).fragment_id]),
                Entry::Upsert(vec![point(1)]),
                Entry::Delete(Vec::new()),
            ]
        );
    }

    #[test]
    fn journals_written_before_deletes_still_replay() {
        // The line format of the upsert-only journal: `{"points":[...]}`.
        let dir = tempfile::tempdir().unwrap();
        let old = serde_json::json!({
            "points": [{
                "fragment_id": point(1).fragment_id,
                "payload": serde_json::to_value(&point(1).payload).unwrap(),
                "dense": point(1).dense,
                "sparse": {"indices": [1, 7], "values": [0.5, 1.25]},
            }]
        });
        std::fs::write(dir.path().join(JOURNAL_FILE), format!("{old}\n")).unwrap();

        let (_, entries) = Journal::open(dir.path()).unwrap();
        assert_eq!(entries, vec![Entry::Upsert(vec![point(1)])]);
    }

    #[test]
    fn a_record_with_points_and_deletes_replays_the_upsert_first() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.write(&Record {
            points: vec![JournalPoint::from(&point(1))],
            delete: Some(vec![point(1).fragment_id]),
        })
        .unwrap();
        drop(j);
        let (_, entries) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            entries,
            vec![
                Entry::Upsert(vec![point(1)]),
                Entry::Delete(vec![point(1).fragment_id])
            ]
        );
    }
}
