//! Settings of the embedded store.

use std::time::Duration;

/// How an [`EdgeStore`](crate::EdgeStore) lays out its shard and when it
/// maintains it.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeStoreOptions {
    /// Dimension of the `dense` vector (384 for all-MiniLM-L6-v2). Must match
    /// the shard when it already exists.
    pub dense_dim: usize,
    /// Run the optimizer once this many points were written since its last
    /// run, even if writes keep coming.
    pub optimize_after_points: u64,
    /// Run the optimizer once writes have paused this long with points
    /// written since its last run.
    pub optimize_when_idle: Duration,
    /// Segment size (KB of vectors) above which the optimizer builds an HNSW
    /// index; `None` keeps Qdrant's default (10,000 KB, about 6,500 vectors of
    /// 384 dimensions). Smaller segments are searched exhaustively, which is
    /// exact and fast at that size.
    pub indexing_threshold_kb: Option<usize>,
    /// Segments the optimizer keeps before it merges the smallest ones.
    /// Qdrant's default (one per CPU) makes every indexing pass on a small
    /// machine merge *all* points into one segment and rebuild its HNSW
    /// graph, so ingest slows down as the store grows (61 s per pass at 44k
    /// points on 2 cores); more segments keep each pass to the new points.
    pub segment_number: usize,
    /// Once writes have paused this long, merge the shard down to
    /// `compact_segment_number` segments in one optimizer pass (then keep
    /// `segment_number` again for the next writes); `None` never does.
    /// Each segment is searched on its own, so the eight a growing store
    /// keeps cost every filtered search a third more at 100k points, and a
    /// tenant-wide one three times as much as two segments do; the merge
    /// rebuilds the merged segments' HNSW graphs, work worth doing only
    /// while nobody writes.
    pub compact_when_idle: Option<Duration>,
    /// Segments an idle compaction leaves (before Qdrant's segment size
    /// limit, which may keep more).
    pub compact_segment_number: usize,
    /// Threads an HNSW build may use; 0 lets Qdrant choose. On small machines
    /// a low value leaves cores to searches while an index is built.
    pub indexing_threads: usize,
    /// Scalar (int8) quantization of the dense vectors: HNSW-indexed
    /// segments keep a 1-byte-per-dimension copy in RAM that searches scan
    /// first, then rescore the best candidates with the original vectors
    /// (so results stay exact up to the oversampling). Changing it on an
    /// existing store takes effect as the optimizer rebuilds segments.
    pub quantization: bool,
    /// Keep the original dense vectors in memory-mapped files rather than
    /// in RAM: with quantization on, only the rescored candidates are read.
    pub dense_on_disk: bool,
    /// Bytes of old segments Qdrant Edge's write-ahead log may hold before
    /// a maintenance pass reopens the shard to remove them (Edge never
    /// truncates its log; see the `edge_wal` module). Reopening blocks
    /// calls for as long as loading the segments takes (8 s for a million
    /// points here), so the limit keeps it rare.
    pub wal_limit_bytes: u64,
    /// The embedding model of the process: a store tagged with another
    /// one (or being re-embedded) fails to open, a new store is tagged with
    /// it. `None` opens any store and tags nothing (`engram reembed`, tests).
    pub embedding_model: Option<String>,
}

impl Default for EdgeStoreOptions {
    fn default() -> Self {
        Self {
            dense_dim: 384,
            optimize_after_points: 2_000,
            optimize_when_idle: Duration::from_secs(5),
            indexing_threshold_kb: None,
            segment_number: 8,
            compact_when_idle: Some(Duration::from_secs(600)),
            compact_segment_number: 2,
            indexing_threads: 0,
            quantization: true,
            dense_on_disk: false,
            wal_limit_bytes: 1 << 30,
            embedding_model: None,
        }
    }
}
