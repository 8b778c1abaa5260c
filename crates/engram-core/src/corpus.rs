//! BM25 length statistics from each user's own stored memory.
//!
//! BM25 normalizes a document's term frequencies by its length against the
//! corpus average. One constant fits one kind of data (ten tokens suits
//! LoCoMo's chat turns; an assistant's answers run to hundreds), so the
//! average comes from the user whose memory is written: per tenant, user
//! and kind of point (turns and memory chunks, observations, entities are
//! three corpora of very different lengths). The first write of a user
//! that a process sees seeds the average from a sample of what the store
//! already holds for them; every write through the process then adds to
//! it. Document vectors are fixed when written, so the average a point was
//! written with is the one its user had then.

use crate::bm25;
use crate::filter::ScopeFilter;
use crate::model::{Kind, Point, PointPayload, SparseVector};
use crate::ports::{Embedder, StoreError, VectorStore};
use std::collections::HashMap;
use std::sync::Mutex;

/// Stored points read to seed a user's average.
pub const SEED_SAMPLE: usize = 256;

/// Users (× kinds) remembered before the table starts over; each entry is
/// a few dozen bytes, and a forgotten one is seeded again from the store.
const MAX_ENTRIES: usize = 100_000;

/// The corpora a user's points fall into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Corpus {
    Text,
    Observation,
    Entity,
}

impl Corpus {
    fn of(kind: Kind) -> Self {
        match kind {
            Kind::Turn | Kind::Memory => Corpus::Text,
            Kind::Observation => Corpus::Observation,
            Kind::Entity => Corpus::Entity,
        }
    }

    fn kinds(self) -> Vec<Kind> {
        match self {
            Corpus::Text => vec![Kind::Turn, Kind::Memory],
            Corpus::Observation => vec![Kind::Observation],
            Corpus::Entity => vec![Kind::Entity],
        }
    }
}

type Key = (String, String, Corpus);

#[derive(Debug, Default, Clone, Copy)]
struct Mean {
    sum: f64,
    n: u64,
}

impl Mean {
    fn add(&mut self, len: usize) {
        self.sum += len as f64;
        self.n += 1;
    }

    fn value(self) -> Option<f32> {
        (self.n > 0).then(|| (self.sum / self.n as f64) as f32)
    }
}

/// Average BM25 document lengths per tenant, user and kind of point.
#[derive(Debug, Default)]
pub struct CorpusLengths {
    means: Mutex<HashMap<Key, Mean>>,
}

impl CorpusLengths {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// BM25 document vectors for `payloads`, in order, each at the average
    /// length of its user's corpus including this batch. A user and kind not
    /// seen before is first seeded from up to [`SEED_SAMPLE`] of its stored
    /// points; with nothing stored either, the batch's own average is used.
    pub async fn document_vectors(
        &self,
        store: &dyn VectorStore,
        payloads: &[&PointPayload],
    ) -> Result<Vec<SparseVector>, StoreError> {
        let lens: Vec<usize> = payloads.iter().map(|p| bm25::doc_len(&p.text)).collect();
        let keys: Vec<Key> = payloads
            .iter()
            .map(|p| (p.org_id.clone(), p.user_id.clone(), Corpus::of(p.kind)))
            .collect();
        let mut unseen: Vec<&Key> = {
            let means = self.lock();
            keys.iter().filter(|k| !means.contains_key(*k)).collect()
        };
        unseen.sort();
        unseen.dedup();
        for key in unseen {
            let (org, user, corpus) = key;
            let filter = ScopeFilter {
                user_id: Some(user.clone()),
                kinds: corpus.kinds(),
                ..ScopeFilter::tenant(org.clone())
            };
            let stored = store.scroll(&filter, SEED_SAMPLE).await?;
            let mut mean = Mean::default();
            for p in &stored {
                mean.add(bm25::doc_len(&p.text));
            }
            let mut means = self.lock();
            if means.len() >= MAX_ENTRIES {
                means.clear();
            }
            // Another write may have seeded it meanwhile; keep that one.
            means.entry(key.clone()).or_insert(mean);
        }
        let mut means = self.lock();
        for (key, len) in keys.iter().zip(&lens) {
            means.entry(key.clone()).or_default().add(*len);
        }
        Ok(payloads
            .iter()
            .zip(&keys)
            .map(|(p, key)| {
                let avgdl = means
                    .get(key)
                    .and_then(|m| m.value())
                    .unwrap_or(bm25::DEFAULT_AVGDL);
                bm25::document_vector_at(&p.text, avgdl)
            })
            .collect())
    }

    /// `payloads` with their `dense` vectors (in the same order) as points,
    /// each with its BM25 vector from [`CorpusLengths::document_vectors`]
    /// and its [`PointPayload::tokens`] counted by `embedder` (the model of
    /// the write, whose tokens Recall bills).
    pub async fn points(
        &self,
        store: &dyn VectorStore,
        embedder: &dyn Embedder,
        payloads: Vec<PointPayload>,
        dense: Vec<Vec<f32>>,
    ) -> Result<Vec<Point>, StoreError> {
        let refs: Vec<&PointPayload> = payloads.iter().collect();
        let sparse = self.document_vectors(store, &refs).await?;
        Ok(payloads
            .into_iter()
            .zip(dense)
            .zip(sparse)
            .map(|((mut payload, dense), sparse)| {
                payload.count_tokens(|text| embedder.count_tokens(text));
                Point {
                    fragment_id: payload.fragment_id.clone(),
                    payload,
                    dense,
                    sparse,
                }
            })
            .collect())
    }

    /// The current average of a user's corpus of `kind`, if known.
    pub fn average(&self, org_id: &str, user_id: &str, kind: Kind) -> Option<f32> {
        self.lock()
            .get(&(org_id.to_owned(), user_id.to_owned(), Corpus::of(kind)))
            .and_then(|m| m.value())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Mean>> {
        // A poisoned table is only numbers; keep using it.
        self.means.lock().unwrap_or_else(|e| e.into_inner())
    }
}
