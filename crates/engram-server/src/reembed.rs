//! `engram reembed`: moves a vector store to the configured embedding
//! model.
//!
//! Every point (turns, memory chunks, observations, entities) keeps its id
//! and payload; its dense vector is recomputed from its stored text, and
//! its BM25 vector at its user's average length. The store is tagged "re-embedding from A to B" before the
//! first point is rewritten, so a crash half-way leaves a store that no
//! process serves from (its vectors are a mix) and that a re-run finishes:
//! re-embedding a point twice gives the same vector. When every point is
//! done the tag becomes B. Stop the serving processes first; a store of
//! another dimension needs a new collection (or data directory), because
//! vectors of a new size do not fit the existing one.

use crate::{Config, ServerError, backends};
use engram_core::ModelTag;
use std::time::Instant;

/// Points read, embedded and written per step.
const PAGE: usize = 256;

/// What a re-embedding did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReembedReport {
    /// The model the store held before.
    pub from: String,
    /// The model it holds now.
    pub to: String,
    /// Points rewritten.
    pub points: u64,
}

/// Re-embeds the store `config` names with the embedder it names. A store
/// already tagged with that model is left as it is (`points` 0).
pub async fn reembed(config: &Config) -> Result<ReembedReport, ServerError> {
    let embedder = backends::load_embedder(config).await?;
    let store = backends::open_store(config, embedder.dim(), None).await?;
    let to = embedder.model().to_owned();
    let tag = store.model_tag().await?;
    let from = tag.model.clone();
    if tag.reembedding_to.is_none() && from == to {
        tracing::info!(model = %to, "store already holds vectors of this model; nothing to re-embed");
        store.close().await?;
        return Ok(ReembedReport {
            from,
            to,
            points: 0,
        });
    }
    if let Some(other) = tag.reembedding_to.as_ref().filter(|t| **t != to) {
        return Err(ServerError::Config(format!(
            "the store is half re-embedded from {from:?} to {other:?}: finish that first \
             (run engram reembed with the embedder set to {other:?})"
        )));
    }
    store
        .set_model_tag(&ModelTag {
            model: from.clone(),
            reembedding_to: Some(to.clone()),
        })
        .await?;
    let started = Instant::now();
    // BM25 vectors are rebuilt too, at each user's average length as the
    // store holds it (seeded per user from a sample, as ingest does).
    let lengths = engram_core::CorpusLengths::new();
    let mut points = 0u64;
    let mut cursor = None;
    loop {
        let (page, next) = store.scan(cursor, PAGE).await?;
        if !page.is_empty() {
            let texts: Vec<String> = page.iter().map(|p| p.text.clone()).collect();
            let vectors = embedder
                .embed(&texts)
                .await
                .map_err(|e| ServerError::Embed(e.to_string()))?;
            if vectors.len() != page.len() {
                return Err(ServerError::Embed(format!(
                    "asked for {} vectors, got {}",
                    page.len(),
                    vectors.len()
                )));
            }
            let rewritten = lengths
                .points(store.as_ref(), embedder.as_ref(), page, vectors)
                .await?;
            points += rewritten.len() as u64;
            store.upsert(rewritten).await?;
            tracing::info!(points, "re-embedding");
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    store.set_model_tag(&ModelTag::of(to.clone())).await?;
    store.close().await?;
    tracing::info!(%from, %to, points, elapsed_ms = started.elapsed().as_millis() as u64, "store re-embedded");
    Ok(ReembedReport { from, to, points })
}
