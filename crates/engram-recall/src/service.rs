//! `RecallService.Recall`.

use crate::idf::{Corpus, QueryTerms, TermStats};
use crate::{DeepParams, confidence, filter, render, search};
use engram_api::ApiError;
use engram_api::{Action, Violations};
use engram_auth::Claims;
use engram_core::{Collections, Cond, Embedder, Kind, MemoryAccess, VectorStore, ids};
use engram_proto::v1::recall_service_server::RecallService;
use engram_proto::v1::{
    Entity, Hit, HitKind, Hits, RecallMode, RecallRequest, RecallResponse, Usage,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// Limits and pool sizes of the recall service.
#[derive(Debug, Clone, PartialEq)]
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
    /// The deep pipeline's constants.
    pub deep: DeepParams,
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
            deep: DeepParams::default(),
        }
    }
}

/// How long a tenant's team collections are reused before they are read
/// again: membership changes reach Recall within this delay.
const TEAMS_TTL: Duration = Duration::from_secs(5);

/// Team collections of a tenant: (collection id, members).
type Teams = Arc<Vec<(String, Vec<String>)>>;

/// Most collection ids in one request.
const MAX_COLLECTIONS: usize = 32;

/// The recall service over any vector store and embedder.
pub struct RecallServiceImpl {
    store: Arc<dyn VectorStore>,
    embedder: Arc<dyn Embedder>,
    config: RecallConfig,
    collections: Option<Arc<dyn Collections>>,
    /// Team collections by tenant: (read at, collection id → members).
    teams: parking_lot::Mutex<HashMap<String, (Instant, Teams)>>,
    /// BM25 document frequencies of each user's memory.
    terms: TermStats,
    /// Model tokens of returned texts by fragment id, for `usage.tokens_out`
    /// of points written before their payload kept the count
    /// ([`engram_core::PointPayload::tokens`]). A fragment id digests its
    /// text, so a count never goes stale.
    token_counts: quick_cache::sync::Cache<String, u32>,
}

/// Fragments whose token counts are kept (about 100 bytes each).
const TOKEN_COUNTS: usize = 65_536;

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
            collections: None,
            teams: parking_lot::Mutex::new(HashMap::new()),
            terms: TermStats::new(),
            token_counts: quick_cache::sync::Cache::new(TOKEN_COUNTS),
        }
    }

    /// Model tokens of a returned point's `text`: the count its payload
    /// carries, or (for points written before payloads carried it) one
    /// counted once per id.
    fn tokens_of(&self, p: &engram_core::PointPayload, text: &str) -> u64 {
        if let Some(n) = p.tokens {
            return u64::from(n);
        }
        let id = p.fragment_id.as_str();
        if let Some(n) = self.token_counts.get(id) {
            return u64::from(n);
        }
        let n = u32::try_from(self.embedder.count_tokens(text)).unwrap_or(u32::MAX);
        self.token_counts.insert(id.to_owned(), n);
        u64::from(n)
    }

    /// Lets members read the memories of the team collections they belong to.
    pub fn with_collections(mut self, collections: Arc<dyn Collections>) -> Self {
        self.collections = Some(collections);
        self
    }

    /// The team collections of tenant `org` with their members, cached for
    /// [`TEAMS_TTL`].
    async fn teams(&self, org: &str) -> Result<Teams, ApiError> {
        let Some(collections) = &self.collections else {
            return Ok(Arc::new(Vec::new()));
        };
        if let Some((at, teams)) = self.teams.lock().get(org)
            && at.elapsed() < TEAMS_TTL
        {
            return Ok(Arc::clone(teams));
        }
        let teams: Teams = Arc::new(
            collections
                .list(org)
                .await
                .map_err(ApiError::from)?
                .into_iter()
                .map(|c| (c.collection_id, c.members))
                .collect(),
        );
        let mut cache = self.teams.lock();
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(org.to_owned(), (Instant::now(), Arc::clone(&teams)));
        Ok(teams)
    }

    /// What `user` may read beyond its own data, and the requested
    /// collections checked against it.
    async fn access(
        &self,
        org: &str,
        user: &str,
        admin: bool,
        requested: &[String],
    ) -> Result<MemoryAccess, ApiError> {
        let teams = self.teams(org).await?;
        let team_collections: Vec<String> = teams
            .iter()
            .filter(|(_, members)| admin || members.iter().any(|m| m == user))
            .map(|(id, _)| id.clone())
            .collect();
        let personal = ids::personal_collection(user);
        for id in requested {
            if *id != personal && !team_collections.contains(id) {
                return Err(engram_api::permission_denied(format!(
                    "collection {id:?} is not readable by this user"
                )));
            }
        }
        Ok(MemoryAccess { team_collections })
    }

    fn validate(&self, req: &RecallRequest) -> Result<(RecallMode, Option<Cond>), ApiError> {
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
        let metadata = req
            .filter
            .as_ref()
            .and_then(|f| filter::to_cond(f, "filter", &mut v));
        if req.collection_ids.len() > MAX_COLLECTIONS {
            v.add(
                "collection_ids",
                format!("at most {MAX_COLLECTIONS} collections"),
            );
        }
        for (i, c) in req.collection_ids.iter().enumerate() {
            if c.is_empty() || c.len() > 256 {
                v.add(format!("collection_ids[{i}]"), "1 to 256 characters");
            }
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
        let mode = match mode {
            Ok(RecallMode::Deep) => RecallMode::Deep,
            _ => RecallMode::Active,
        };
        Ok((mode, metadata))
    }
}

/// Request metadata key asking for the confidence features; the response
/// then carries them under the same key, comma-separated in the order of
/// [`crate::FEATURE_NAMES`] (the calibration bench reads them).
pub const EXPLAIN_KEY: &str = "x-engram-explain";

fn hit(r: &search::Ranked) -> Hit {
    let p = &r.payload;
    let kind = match p.kind {
        Kind::Turn => HitKind::Turn,
        Kind::Observation => HitKind::Observation,
        Kind::Memory | Kind::Entity => HitKind::Memory,
    };
    let text = p.returned_text();
    let memory = p.memory.as_ref();
    Hit {
        id: p.fragment_id.clone(),
        text,
        score: r.score,
        kind: kind as i32,
        timestamp: p.ts_ms.to_string(),
        source_ids: p.source_ids.clone(),
        memory_id: memory.map(|m| m.memory_id.clone()).unwrap_or_default(),
        title: memory.map(|m| m.title.clone()).unwrap_or_default(),
        collection_id: memory.map(|m| m.collection_id.clone()).unwrap_or_default(),
    }
}

fn entity(r: &search::Ranked) -> Entity {
    Entity {
        id: Some(r.payload.fragment_id.clone()),
        label: r.payload.text.clone(),
        score: r.score,
        kind: r
            .payload
            .entity_kind
            .map(|k| k.as_str().to_owned())
            .unwrap_or_default(),
        mentions: r.payload.mentions.unwrap_or(0),
    }
}

/// A Recall's answer, and the confidence features it was computed from
/// (in the order of [`crate::FEATURE_NAMES`]; gRPC callers asking with
/// [`EXPLAIN_KEY`] get them back).
#[derive(Debug, Clone)]
pub struct Recalled {
    /// What the caller is sent.
    pub response: RecallResponse,
    /// The features of the calibrated confidence.
    pub features: [f64; crate::FEATURES],
}

impl RecallServiceImpl {
    /// `Recall` for the caller of `claims`.
    pub async fn recall(&self, claims: &Claims, req: RecallRequest) -> Result<Recalled, ApiError> {
        let (mode, metadata) = self.validate(&req)?;
        let s = req.scope.clone().unwrap_or_default();
        let scope =
            engram_auth::resolve_scope(claims, &s.org_id, &s.user_id, &s.session_id, false)?;
        let role = engram_api::authorize(claims, Action::Read)?;
        engram_api::act_for(claims, role, &scope.user_id)?;
        let access = self
            .access(
                &scope.org_id,
                &scope.user_id,
                role.is_admin(),
                &req.collection_ids,
            )
            .await?;

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

        let corpora: &[Corpus] = match mode {
            RecallMode::Deep => &[Corpus::Text, Corpus::Observations, Corpus::Entities],
            _ => &[Corpus::Mixed],
        };
        // The term statistics are cached, so this is a lookup but for a
        // user's first search; then it runs beside the embedding.
        let (dense, terms) = tokio::join!(
            self.embedder.embed_queries(std::slice::from_ref(&req.q)),
            QueryTerms::weigh(
                &self.terms,
                &self.store,
                &scope.org_id,
                &scope.user_id,
                &req.q,
                corpora,
            ),
        );
        let dense = dense
            .map_err(ApiError::from)?
            .pop()
            .ok_or_else(|| ApiError::Internal("embedder returned no vector".to_owned()))?;
        let terms = terms.map_err(ApiError::from)?;
        let query = search::Query {
            store: self.store.as_ref(),
            org_id: &scope.org_id,
            user_id: &scope.user_id,
            session_id: Some(scope.session_id.as_str()).filter(|s| !s.is_empty()),
            q: &req.q,
            dense,
            terms,
            prefetch,
            top_k,
            now_ms: chrono::Utc::now().timestamp_millis(),
            access,
            metadata,
            collection_ids: req.collection_ids.clone(),
            deep: &self.config.deep,
        };
        let calibration = match mode {
            RecallMode::Deep => confidence::DEEP,
            _ => confidence::ACTIVE,
        };
        // The query's tokens (`usage.tokens_in`) are counted while the
        // store searches on a blocking thread, not after it on the call's
        // path. (Not beside the embedding: that would hold this worker, and
        // with it the wake-up of the embedding lane, for the count.)
        let (outcome, tokens_in) = tokio::join!(
            async {
                match mode {
                    RecallMode::Deep => search::deep(&query).await,
                    _ => search::active(&query).await,
                }
            },
            async { self.embedder.count_tokens(&req.q) as u64 },
        );
        let outcome = outcome.map_err(ApiError::from)?;

        let hits = Hits {
            turns: outcome.turns.iter().map(hit).collect(),
            observations: outcome.observations.iter().map(hit).collect(),
            entities: outcome.entities.iter().map(entity).collect(),
        };
        let tokens_out: u64 = outcome
            .turns
            .iter()
            .chain(&outcome.observations)
            .zip(hits.turns.iter().chain(&hits.observations))
            .map(|(r, h)| self.tokens_of(&r.payload, &h.text))
            .sum();
        let timeline = req.include_timeline.then(|| {
            let mut payloads: Vec<&engram_core::PointPayload> = outcome
                .turns
                .iter()
                .chain(&outcome.observations)
                .map(|r| &r.payload)
                .collect();
            payloads.extend(&outcome.context);
            render::timeline(&payloads)
        });
        let sig = outcome.signals;
        let x = confidence::features(sig.best_cosine, sig.agree, sig.top_score, sig.coverage);
        let confidence = if hits.turns.is_empty() && hits.observations.is_empty() {
            0.0
        } else {
            calibration.confidence(&x)
        };
        tracing::info!(
            org_id = %scope.org_id,
            mode = mode.as_str_name(),
            top_k,
            turns = hits.turns.len(),
            observations = hits.observations.len(),
            entities = hits.entities.len(),
            confidence,
            "recalled"
        );
        Ok(Recalled {
            response: RecallResponse {
                hits: Some(hits),
                confidence,
                timeline,
                mode: mode as i32,
                usage: Some(Usage {
                    tokens_in,
                    tokens_out,
                }),
            },
            features: x,
        })
    }
}

#[tonic::async_trait]
impl RecallService for RecallServiceImpl {
    async fn recall(
        &self,
        request: Request<RecallRequest>,
    ) -> Result<Response<RecallResponse>, Status> {
        let claims = engram_api::claims(&request)?;
        let explain = request.metadata().contains_key(EXPLAIN_KEY);
        let recalled = RecallServiceImpl::recall(self, &claims, request.into_inner()).await?;
        let mut response = Response::new(recalled.response);
        if explain {
            let text = recalled
                .features
                .iter()
                .map(|v| format!("{v:.6}"))
                .collect::<Vec<_>>()
                .join(",");
            if let Ok(value) = text.parse() {
                response.metadata_mut().insert(EXPLAIN_KEY, value);
            }
        }
        Ok(response)
    }
}
