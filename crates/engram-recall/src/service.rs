//! `RecallService.Recall`.

use crate::{confidence, render};
use engram_core::{Embedder, HybridQuery, Kind, ScopeFilter, ScoredPoint, VectorStore, bm25};
use engram_proto::v1::recall_service_server::RecallService;
use engram_proto::v1::{Hit, HitKind, Hits, RecallMode, RecallRequest, RecallResponse, Usage};
use engram_rpc::Violations;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Limits and pool sizes of the recall service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallConfig {
    /// Hits when the request names none, active mode.
    pub default_top_k_active: usize,
    /// Hits when the request names none, deep mode.
    pub default_top_k_deep: usize,
    /// Largest `top_k` accepted by validation.
    pub max_top_k_request: usize,
    /// Largest number of hits actually returned.
    pub top_k_cap: usize,
    /// Candidates each retriever contributes to the fusion, active mode.
    pub prefetch_active: usize,
    /// Candidates each retriever contributes to the fusion, deep mode.
    pub prefetch_deep: usize,
    /// Longest query, in characters.
    pub max_query_chars: usize,
}

impl Default for RecallConfig {
    fn default() -> Self {
        Self {
            default_top_k_active: 15,
            default_top_k_deep: 25,
            max_top_k_request: 50,
            top_k_cap: 30,
            prefetch_active: 60,
            prefetch_deep: 200,
            max_query_chars: 4_000,
        }
    }
}

/// The recall service over any vector store and embedder.
pub struct RecallServiceImpl {
    store: Arc<dyn VectorStore>,
    embedder: Arc<dyn Embedder>,
    config: RecallConfig,
}

impl RecallServiceImpl {
    /// A service reading from `store`, embedding queries with `embedder`.
    pub fn new(
        store: Arc<dyn VectorStore>,
        embedder: Arc<dyn Embedder>,
        config: RecallConfig,
    ) -> Self {
        Self {
            store,
            embedder,
            config,
        }
    }

    fn validate(&self, req: &RecallRequest) -> Result<RecallMode, Status> {
        let mut v = Violations::new();
        if req.scope.as_ref().is_none_or(|s| s.org_id.is_empty()) {
            v.add("scope.org_id", "required: your org id (min length 1)");
        }
        if req.q.trim().is_empty() {
            v.add("q", "must not be empty");
        } else if req.q.chars().count() > self.config.max_query_chars {
            v.add(
                "q",
                format!(
                    "over the limit of {} characters",
                    self.config.max_query_chars
                ),
            );
        }
        if let Some(k) = req.top_k
            && (k < 1 || k as usize > self.config.max_top_k_request)
        {
            v.add(
                "top_k",
                format!("{k} is outside 1..={}", self.config.max_top_k_request),
            );
        }
        let mode = RecallMode::try_from(req.mode);
        if mode.is_err() {
            v.add(
                "mode",
                format!(
                    "unknown mode {}: use RECALL_MODE_ACTIVE or RECALL_MODE_DEEP",
                    req.mode
                ),
            );
        }
        v.into_result()?;
        Ok(match mode {
            Ok(RecallMode::Deep) => RecallMode::Deep,
            _ => RecallMode::Active,
        })
    }
}

/// Normalizes a hybrid (RRF) score so 1.0 means "first in both
/// retrievers" and 0.5 "first in one, absent from the other".
fn normalized(score: f32) -> f32 {
    (score / (2.0 / engram_core::RRF_K as f32)).clamp(0.0, 1.0)
}

fn hit(p: &ScoredPoint) -> Hit {
    let (kind, text) = match p.payload.kind {
        Kind::Turn => (HitKind::Turn, render::turn_text(&p.payload)),
        Kind::Observation => (HitKind::Observation, p.payload.text.clone()),
        Kind::Memory | Kind::Entity => (HitKind::Memory, p.payload.text.clone()),
    };
    Hit {
        id: p.payload.fragment_id.clone(),
        text,
        score: normalized(p.score),
        kind: kind as i32,
        timestamp: p.payload.ts_ms.to_string(),
    }
}

#[tonic::async_trait]
impl RecallService for RecallServiceImpl {
    async fn recall(
        &self,
        request: Request<RecallRequest>,
    ) -> Result<Response<RecallResponse>, Status> {
        let claims = engram_rpc::claims(&request)?;
        let req = request.into_inner();
        let mode = self.validate(&req)?;
        let s = req.scope.clone().unwrap_or_default();
        let scope =
            engram_auth::resolve_scope(&claims, &s.org_id, &s.user_id, &s.session_id, false)
                .map_err(engram_rpc::scope_status)?;

        let default_k = match mode {
            RecallMode::Deep => self.config.default_top_k_deep,
            _ => self.config.default_top_k_active,
        };
        let top_k = req
            .top_k
            .map_or(default_k, |k| k as usize)
            .min(self.config.top_k_cap);
        let prefetch = match mode {
            RecallMode::Deep => self.config.prefetch_deep,
            _ => self.config.prefetch_active,
        }
        .max(top_k * 2);

        let dense = self
            .embedder
            .embed(std::slice::from_ref(&req.q))
            .await
            .map_err(engram_rpc::embed_status)?
            .pop()
            .ok_or_else(|| Status::internal("embedder returned no vector"))?;
        let query = HybridQuery {
            filter: ScopeFilter {
                org_id: scope.org_id.clone(),
                user_id: Some(scope.user_id.clone()),
                session_id: Some(scope.session_id.clone()).filter(|s| !s.is_empty()),
                kinds: match mode {
                    RecallMode::Deep => vec![Kind::Turn, Kind::Observation, Kind::Memory],
                    _ => vec![Kind::Turn, Kind::Observation],
                },
                from_ms: None,
                until_ms: None,
            },
            dense,
            sparse: bm25::query_vector(&req.q),
            prefetch,
            limit: top_k,
        };
        let found = self
            .store
            .hybrid_search(&query)
            .await
            .map_err(engram_rpc::store_status)?;

        let best_cos = found
            .iter()
            .filter_map(|p| p.dense_score)
            .fold(None, |m: Option<f32>, c| Some(m.map_or(c, |m| m.max(c))));
        let agree = match (found.first().and_then(|p| p.dense_score), best_cos) {
            (Some(top), Some(best)) => top >= best,
            _ => false,
        };
        let mut hits = Hits::default();
        for p in &found {
            let h = hit(p);
            match p.payload.kind {
                Kind::Observation => hits.observations.push(h),
                _ => hits.turns.push(h),
            }
        }
        let tokens_out: u64 = hits
            .turns
            .iter()
            .chain(&hits.observations)
            .map(|h| self.embedder.count_tokens(&h.text) as u64)
            .sum();
        let timeline = req.include_timeline.then(|| {
            let payloads: Vec<_> = found.iter().map(|p| &p.payload).collect();
            render::timeline(&payloads)
        });
        tracing::info!(
            org_id = %scope.org_id,
            mode = mode.as_str_name(),
            top_k,
            hits = found.len(),
            "recalled"
        );
        Ok(Response::new(RecallResponse {
            hits: Some(hits),
            confidence: confidence(best_cos, agree),
            timeline,
            mode: mode as i32,
            usage: Some(Usage {
                tokens_in: self.embedder.count_tokens(&req.q) as u64,
                tokens_out,
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::normalized;
    use engram_core::RRF_K;

    /// A retriever's contribution at 0-based position `r` (Qdrant's RRF).
    fn rrf(r: usize) -> f32 {
        1.0 / (r + RRF_K) as f32
    }

    #[test]
    fn scores_span_zero_to_one_and_keep_order() {
        assert_eq!(normalized(rrf(0) + rrf(0)), 1.0);
        assert_eq!(normalized(rrf(0)), 0.5);
        let second = normalized(rrf(1));
        assert!(second < 0.5 && second > normalized(rrf(2)));
        assert!(normalized(rrf(0) + rrf(5)) < 1.0);
    }
}
