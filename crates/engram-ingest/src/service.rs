//! `IngestService.Remember`.

use crate::validate::{ValidTurn, validate};
use engram_core::{Embedder, Kind, Point, PointPayload, Scope, VectorStore, bm25, ids};
use engram_proto::v1::ingest_service_server::IngestService;
use engram_proto::v1::{RememberRequest, RememberResponse, Usage};
use std::collections::HashSet;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Limits of the ingest service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// Longest turn text, in characters.
    pub max_text_chars: usize,
    /// Most turns in one call.
    pub max_turns_per_call: usize,
    /// Largest metadata object, in bytes of JSON.
    pub max_metadata_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_text_chars: 16_000,
            max_turns_per_call: 512,
            max_metadata_bytes: 16 * 1024,
        }
    }
}

/// Number of lock stripes serializing writes of the same session.
const STRIPES: usize = 64;

/// The ingest service over any vector store and embedder.
pub struct IngestServiceImpl {
    store: Arc<dyn VectorStore>,
    embedder: Arc<dyn Embedder>,
    config: IngestConfig,
    // Writes of one session are serialized so that two concurrent copies of
    // the same request cannot both see a turn as new and both bill it.
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl IngestServiceImpl {
    /// A service writing to `store`, embedding with `embedder`.
    pub fn new(
        store: Arc<dyn VectorStore>,
        embedder: Arc<dyn Embedder>,
        config: IngestConfig,
    ) -> Self {
        Self {
            store,
            embedder,
            config,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    fn stripe(&self, scope: &Scope) -> &tokio::sync::Mutex<()> {
        let key = bm25::term_id(&format!(
            "{}\0{}\0{}",
            scope.org_id, scope.user_id, scope.session_id
        ));
        &self.stripes[key as usize % STRIPES]
    }

    /// Writes validated turns; returns the response.
    async fn write(
        &self,
        scope: Scope,
        turns: Vec<ValidTurn>,
        options: [bool; 2],
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<RememberResponse, Status> {
        let fragment_ids: Vec<String> = turns
            .iter()
            .map(|t| ids::fragment_id(&scope, t.role, &t.text, t.ts_ms))
            .collect();
        let job_id = ids::job_id(&scope, &fragment_ids, &options);

        let _guard = self.stripe(&scope).lock().await;
        let existing = self
            .store
            .existing(&scope.org_id, &fragment_ids)
            .await
            .map_err(engram_rpc::store_status)?;
        // A turn repeated inside one request is stored and billed once.
        let mut seen = HashSet::new();
        let new: Vec<(usize, &ValidTurn)> = turns
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                !existing.contains(&fragment_ids[*i]) && seen.insert(&fragment_ids[*i])
            })
            .collect();

        let mut tokens_in = 0u64;
        if !new.is_empty() {
            let texts: Vec<String> = new.iter().map(|(_, t)| t.text.clone()).collect();
            let vectors = self
                .embedder
                .embed(&texts)
                .await
                .map_err(engram_rpc::embed_status)?;
            let points: Vec<Point> = new
                .iter()
                .zip(vectors)
                .map(|((i, t), dense)| {
                    tokens_in += self.embedder.count_tokens(&t.text) as u64;
                    Point {
                        fragment_id: fragment_ids[*i].clone(),
                        payload: PointPayload {
                            fragment_id: fragment_ids[*i].clone(),
                            org_id: scope.org_id.clone(),
                            user_id: scope.user_id.clone(),
                            session_id: scope.session_id.clone(),
                            kind: Kind::Turn,
                            role: Some(t.role),
                            text: t.text.clone(),
                            ts_ms: t.ts_ms,
                            job_id: job_id.clone(),
                            source_ids: Vec::new(),
                            metadata: metadata.clone(),
                        },
                        dense,
                        sparse: bm25::document_vector(&t.text),
                    }
                })
                .collect();
            self.store
                .upsert(points)
                .await
                .map_err(engram_rpc::store_status)?;
        }
        tracing::info!(
            org_id = %scope.org_id,
            session_id = %scope.session_id,
            job_id = %job_id,
            turns = turns.len(),
            new = new.len(),
            tokens_in,
            "remembered turns"
        );
        Ok(RememberResponse {
            job_id,
            active_fragment_ids: fragment_ids,
            passive_job_id: None,
            usage: Some(Usage {
                tokens_in,
                tokens_out: 0,
            }),
        })
    }
}

#[tonic::async_trait]
impl IngestService for IngestServiceImpl {
    async fn remember(
        &self,
        request: Request<RememberRequest>,
    ) -> Result<Response<RememberResponse>, Status> {
        let claims = engram_rpc::claims(&request)?;
        let req = request.into_inner();
        let valid = validate(&req, &self.config)?;
        let s = req.scope.unwrap_or_default();
        let scope = engram_auth::resolve_scope(&claims, &s.org_id, &s.user_id, &s.session_id, true)
            .map_err(engram_rpc::scope_status)?;
        let metadata = req
            .metadata
            .as_ref()
            .map(crate::convert::struct_to_json)
            .unwrap_or_default();
        let resp = self
            .write(
                scope,
                valid.turns,
                [valid.write_active, valid.write_passive],
                metadata,
            )
            .await?;
        Ok(Response::new(resp))
    }
}
