//! `IngestService.Remember`.

use crate::validate::{ValidTurn, validate};
use engram_api::ApiError;
use engram_auth::Claims;
use engram_core::{
    Embedder, Job, JobStore, KeptEvent, Kind, OutboundMessage, PointPayload, Scope, TurnStream,
    VectorStore, bm25, ids,
};
use engram_proto::events::v1::{IngestedTurn, TurnsIngested};
use engram_proto::v1::ingest_service_server::IngestService;
use engram_proto::v1::{RememberRequest, RememberResponse, Usage};
use prost::Message;
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

/// The ingest service over any vector store, embedder, turn stream and job
/// store.
pub struct IngestServiceImpl {
    store: Arc<dyn VectorStore>,
    embedder: Arc<dyn Embedder>,
    stream: Arc<dyn TurnStream>,
    jobs: Arc<dyn JobStore>,
    config: IngestConfig,
    // BM25 average lengths of each user's turns.
    lengths: engram_core::CorpusLengths,
    // Writes of one session are serialized so that two concurrent copies of
    // the same request cannot both see a turn as new and both bill it.
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl IngestServiceImpl {
    /// A service writing active memory to `store` (embedded with
    /// `embedder`) and handing writes to enrichment through `stream`, with
    /// job records in `jobs`.
    pub fn new(
        store: Arc<dyn VectorStore>,
        embedder: Arc<dyn Embedder>,
        stream: Arc<dyn TurnStream>,
        jobs: Arc<dyn JobStore>,
        config: IngestConfig,
    ) -> Self {
        Self {
            store,
            embedder,
            stream,
            jobs,
            config,
            lengths: engram_core::CorpusLengths::new(),
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
    ///
    /// Order of effects: check the stream answers (before any side
    /// effect), keep the event in the job store's outbox, write the new
    /// turns, publish the event, record the job. Nothing is ever rolled
    /// back: a write that fails after keeping its event rolls forward
    /// instead (a retry publishes it again, or the sweeper does), because
    /// deleting turns could remove ones another replica has just
    /// acknowledged for the same request, and the stripe lock covers one
    /// process only. Every effect is idempotent (content-derived ids, the
    /// stream's duplicate window, create-if-absent job records), so two
    /// replicas writing the same request at once end in the same state.
    async fn write(
        &self,
        scope: Scope,
        turns: Vec<ValidTurn>,
        options: [bool; 2],
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<RememberResponse, ApiError> {
        let [write_active, write_passive] = options;
        let fragment_ids: Vec<String> = turns
            .iter()
            .map(|t| ids::fragment_id(&scope, t.role, &t.text, t.ts_ms))
            .collect();
        let job_id = ids::job_id(&scope, &fragment_ids, &options);
        // A turn repeated inside one request is stored, sent and billed once.
        let mut seen = HashSet::new();
        let unique: Vec<usize> = (0..turns.len())
            .filter(|&i| seen.insert(&fragment_ids[i]))
            .collect();

        let _guard = self.stripe(&scope).lock().await;
        // A job record exists once its event was published: the passive
        // tier of this exact write is already taken care of.
        let enqueued = if write_passive {
            self.stream.ready().await.map_err(ApiError::from)?;
            self.jobs
                .get(&job_id)
                .await
                .map_err(ApiError::from)?
                .is_some()
        } else {
            false
        };

        let publish = if write_passive && !enqueued {
            let event = event(
                &scope,
                &job_id,
                &turns,
                &unique,
                &fragment_ids,
                &metadata,
                write_active,
            );
            let payload = engram_proto::events::v1::Event {
                kind: Some(engram_proto::events::v1::event::Kind::Turns(event)),
            }
            .encode_to_vec();
            // Kept before anything else is written, so an event lost after
            // this point (a crash before the publish, a stream that loses
            // an acknowledged message) is published again by the sweeper.
            let kept = KeptEvent {
                job_id: job_id.clone(),
                org_id: scope.org_id.clone(),
                msg_id: job_id.clone(),
                payload,
                kept_ms: chrono::Utc::now().timestamp_millis(),
                republished_ms: None,
            };
            self.jobs.keep_event(&kept).await.map_err(ApiError::from)?;
            Some(kept.payload)
        } else {
            None
        };

        let mut written: Vec<String> = Vec::new();
        let mut tokens_in = 0u64;
        if write_active {
            let existing = self
                .store
                .existing(&scope.org_id, &fragment_ids)
                .await
                .map_err(ApiError::from)?;
            let new: Vec<usize> = unique
                .iter()
                .copied()
                .filter(|&i| !existing.contains(&fragment_ids[i]))
                .collect();
            if !new.is_empty() {
                let texts: Vec<String> = new.iter().map(|&i| turns[i].text.clone()).collect();
                let vectors = self.embedder.embed(&texts).await.map_err(ApiError::from)?;
                let payloads: Vec<PointPayload> = new
                    .iter()
                    .map(|&i| {
                        let t = &turns[i];
                        tokens_in += self.embedder.count_tokens(&t.text) as u64;
                        turn_payload(&scope, &fragment_ids[i], t, &job_id, &metadata)
                    })
                    .collect();
                let points = self
                    .lengths
                    .points(
                        self.store.as_ref(),
                        self.embedder.as_ref(),
                        payloads,
                        vectors,
                    )
                    .await
                    .map_err(ApiError::from)?;
                self.store.upsert(points).await.map_err(ApiError::from)?;
                written = new.iter().map(|&i| fragment_ids[i].clone()).collect();
            }
        } else if !enqueued {
            // Passive only: billed once per job, like active turns once per turn.
            tokens_in = unique
                .iter()
                .map(|&i| self.embedder.count_tokens(&turns[i].text) as u64)
                .sum();
        }

        if let Some(payload) = publish {
            let published = self
                .stream
                .publish(OutboundMessage {
                    msg_id: job_id.clone(),
                    job_id: job_id.clone(),
                    payload,
                    ..Default::default()
                })
                .await;
            if let Err(err) = published {
                // The turns and the kept event stay: a retry of this call
                // finds its turns stored and publishes again, and without
                // one the sweeper publishes the kept event.
                tracing::warn!(job_id = %job_id, stored = written.len(), error = %err, "cannot publish; the write will be completed by a retry or the sweeper");
                return Err(ApiError::from(err));
            }
            let job = Job::pending(
                job_id.clone(),
                scope.org_id.clone(),
                unique.len() as u32,
                chrono::Utc::now().timestamp_millis(),
            );
            // The event is durable now, and the consumer records the job
            // itself if this fails: the write has succeeded either way.
            if let Err(error) = self.jobs.create(&job).await {
                tracing::warn!(job_id = %job_id, %error, "cannot record pending job; the consumer will");
            }
        }
        tracing::info!(
            org_id = %scope.org_id,
            session_id = %scope.session_id,
            job_id = %job_id,
            turns = turns.len(),
            new = written.len(),
            enqueued = write_passive && !enqueued,
            tokens_in,
            "remembered turns"
        );
        Ok(RememberResponse {
            job_id: job_id.clone(),
            active_fragment_ids: if write_active {
                fragment_ids
            } else {
                Vec::new()
            },
            passive_job_id: write_passive.then_some(job_id),
            usage: Some(Usage {
                tokens_in,
                tokens_out: 0,
            }),
        })
    }
}

fn turn_payload(
    scope: &Scope,
    fragment_id: &str,
    t: &ValidTurn,
    job_id: &str,
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> PointPayload {
    PointPayload {
        fragment_id: fragment_id.to_owned(),
        org_id: scope.org_id.clone(),
        user_id: scope.user_id.clone(),
        session_id: scope.session_id.clone(),
        kind: Kind::Turn,
        role: Some(t.role),
        text: t.text.clone(),
        ts_ms: t.ts_ms,
        job_id: job_id.to_owned(),
        source_ids: Vec::new(),
        entity_kind: None,
        mentions: None,
        subject: None,
        event_ms: None,
        metadata: metadata.clone(),
        memory: None,
        tokens: None,
    }
}

fn event(
    scope: &Scope,
    job_id: &str,
    turns: &[ValidTurn],
    unique: &[usize],
    fragment_ids: &[String],
    metadata: &serde_json::Map<String, serde_json::Value>,
    active_written: bool,
) -> TurnsIngested {
    TurnsIngested {
        job_id: job_id.to_owned(),
        org_id: scope.org_id.clone(),
        user_id: scope.user_id.clone(),
        session_id: scope.session_id.clone(),
        turns: unique
            .iter()
            .map(|&i| IngestedTurn {
                fragment_id: fragment_ids[i].clone(),
                role: turns[i].role.as_str().to_owned(),
                text: turns[i].text.clone(),
                ts_ms: turns[i].ts_ms,
                observations: turns[i].observations.clone(),
            })
            .collect(),
        metadata: Some(engram_proto::json::json_to_struct(metadata)),
        ingested_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        active_written,
    }
}

impl IngestServiceImpl {
    /// `Remember` for the caller of `claims`: validated before any side
    /// effect, then the active write and the enrichment event.
    pub async fn remember(
        &self,
        claims: &Claims,
        req: RememberRequest,
    ) -> Result<RememberResponse, ApiError> {
        let valid = validate(&req, &self.config)?;
        let s = req.scope.unwrap_or_default();
        let scope = engram_auth::resolve_scope(claims, &s.org_id, &s.user_id, &s.session_id, true)?;
        let role = engram_api::authorize(claims, engram_api::Action::WriteOwn)?;
        engram_api::act_for(claims, role, &scope.user_id)?;
        let metadata = req
            .metadata
            .as_ref()
            .map(engram_proto::json::struct_to_json)
            .unwrap_or_default();
        self.write(
            scope,
            valid.turns,
            [valid.write_active, valid.write_passive],
            metadata,
        )
        .await
    }
}

#[tonic::async_trait]
impl IngestService for IngestServiceImpl {
    async fn remember(
        &self,
        request: Request<RememberRequest>,
    ) -> Result<Response<RememberResponse>, Status> {
        let claims = engram_api::claims(&request)?;
        Ok(Response::new(
            IngestServiceImpl::remember(self, &claims, request.into_inner()).await?,
        ))
    }
}
