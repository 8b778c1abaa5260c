//! The LLM extractor: asks an OpenAI-compatible chat endpoint (JSON mode)
//! for observations and entities, and falls back to the rules for any call
//! that fails or answers something other than the JSON it was asked for.

mod map;
mod prompt;
mod wire;

pub(crate) use map::given;

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderValue;

use crate::{ExtractError, ExtractUsage, Extraction, Extractor, RuleExtractor, TurnInput};

/// How to reach the model and how much to send it per call.
#[derive(Clone, PartialEq)]
pub struct LlmConfig {
    /// Base URL of an OpenAI-compatible API, e.g.
    /// `"http://127.0.0.1:8000/v1"`; requests go to
    /// `{url}/chat/completions`. `http` or `https`.
    pub url: String,
    /// The model name sent with each request.
    pub model: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Limit on each whole call (connect, request, answer).
    pub timeout: Duration,
    /// Batches with more turns are split into several calls.
    pub max_turns_per_call: usize,
    /// Limit, in characters, on the turn lines of one call's prompt (the
    /// fixed instructions not counted): a call that would exceed it is
    /// split further, and a single turn longer than it is truncated.
    pub max_input_chars: usize,
    /// `max_tokens` of each request: the limit on the answer's length.
    pub max_output_tokens: u32,
    /// Sampling temperature, 0 to 2; low values suit extraction.
    pub temperature: f32,
}

impl fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmConfig")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_turns_per_call", &self.max_turns_per_call)
            .field("max_input_chars", &self.max_input_chars)
            .field("max_output_tokens", &self.max_output_tokens)
            .field("temperature", &self.temperature)
            .finish()
    }
}

impl LlmConfig {
    /// Checks that the extractor can run with this configuration: an
    /// `http`/`https` URL with a host (and no query or fragment), a model
    /// name, a usable API key when one is set, a timeout and limits above
    /// zero, a temperature from 0 to 2.
    pub fn validate(&self) -> Result<(), ExtractError> {
        let config = |msg: String| Err(ExtractError::Config(msg));
        let url = match reqwest::Url::parse(&self.url) {
            Ok(url) => url,
            Err(e) => return config(format!("llm url {:?} is not a URL: {e}", self.url)),
        };
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return config(format!("llm url {:?} is not an http(s) URL", self.url));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return config(format!(
                "llm url {:?} must be a base URL, without query or fragment",
                self.url
            ));
        }
        if self.model.trim().is_empty() {
            return config("llm model is empty".to_owned());
        }
        if let Some(key) = &self.api_key
            && (key.is_empty() || HeaderValue::from_str(&format!("Bearer {key}")).is_err())
        {
            return config("llm api key is empty or not a valid header value".to_owned());
        }
        if self.timeout.is_zero() {
            return config("llm timeout is zero".to_owned());
        }
        if self.max_turns_per_call == 0 {
            return config("llm max_turns_per_call is zero".to_owned());
        }
        if self.max_input_chars == 0 {
            return config("llm max_input_chars is zero".to_owned());
        }
        if self.max_output_tokens == 0 {
            return config("llm max_output_tokens is zero".to_owned());
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return config(format!(
                "llm temperature {} is not between 0 and 2",
                self.temperature
            ));
        }
        Ok(())
    }

    /// `{url}/chat/completions`.
    fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.url.trim_end_matches('/'))
    }
}

/// Extracts through an OpenAI-compatible chat endpoint.
///
/// A batch is sent in calls of at most [`LlmConfig::max_turns_per_call`]
/// turns and [`LlmConfig::max_input_chars`] characters, one after another.
/// Each call asks for a JSON object (observations and entities), which is
/// parsed strictly and validated; when a call fails in any way — connect
/// error, timeout, error status, a body or answer that is not the JSON
/// asked for, an answer that does not check out — its turns go to the
/// fallback [`RuleExtractor`] instead, with a warning, and
/// [`Extraction::fallback`] says why. Caller-supplied observations are
/// always kept as given.
pub struct LlmExtractor {
    config: LlmConfig,
    endpoint: String,
    client: reqwest::Client,
    fallback: RuleExtractor,
}

impl fmt::Debug for LlmExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmExtractor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one call brought back.
struct CallOutcome {
    /// Tokens the response reported, even when its answer was unusable.
    usage: ExtractUsage,
    /// The mapped answer, or why the call failed.
    result: Result<Extraction, String>,
}

impl LlmExtractor {
    /// An extractor for `config` (validated) that falls back to `fallback`.
    pub fn new(config: LlmConfig, fallback: RuleExtractor) -> Result<Self, ExtractError> {
        config.validate()?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| ExtractError::Config(format!("llm http client: {e}")))?;
        Ok(LlmExtractor {
            endpoint: config.endpoint(),
            config,
            client,
            fallback,
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// One call for `turns` (a slice of the batch) with their prompt lines.
    async fn call(&self, turns: &[TurnInput], lines: &[String]) -> CallOutcome {
        let failed = |usage, reason: String| CallOutcome {
            usage,
            result: Err(reason),
        };
        let user = prompt::user_message(lines);
        let body = wire::ChatRequest::new(
            &self.config.model,
            self.config.temperature,
            self.config.max_output_tokens,
            prompt::SYSTEM,
            &user,
        );
        let mut request = self.client.post(&self.endpoint).json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return failed(ExtractUsage::default(), self.describe(&e)),
        };
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return failed(ExtractUsage::default(), self.describe(&e)),
        };
        if !status.is_success() {
            let snippet: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
            return failed(
                ExtractUsage::default(),
                format!("http status {status}: {}", snippet.trim()),
            );
        }
        let (usage, reply) = wire::parse_response(&bytes);
        let result = reply
            .and_then(|reply| wire::parse_answer(&reply))
            .and_then(|answer| map::to_extraction(turns, answer));
        CallOutcome { usage, result }
    }

    /// A reqwest error as a reason: timeouts by their limit, others with
    /// their causes (reqwest's own message names only the URL).
    fn describe(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("timed out after {:?}", self.config.timeout);
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

#[async_trait]
impl Extractor for LlmExtractor {
    fn name(&self) -> &'static str {
        "llm"
    }

    async fn extract(&self, turns: &[TurnInput]) -> Result<Extraction, ExtractError> {
        let calls = prompt::plan(
            turns,
            self.config.max_turns_per_call,
            self.config.max_input_chars,
        );
        let count = calls.len();
        let mut parts = Vec::with_capacity(count);
        let mut usage = ExtractUsage::default();
        let mut reasons = Vec::new();
        for (n, call) in calls.iter().enumerate() {
            let batch = &turns[call.range.clone()];
            let outcome = self.call(batch, &call.lines).await;
            usage.tokens_in += outcome.usage.tokens_in;
            usage.tokens_out += outcome.usage.tokens_out;
            match outcome.result {
                Ok(extraction) => parts.push(extraction),
                Err(reason) => {
                    tracing::warn!(
                        reason = %reason,
                        turns = batch.len(),
                        model = %self.config.model,
                        "llm extraction failed, using rules"
                    );
                    reasons.push(if count > 1 {
                        format!("call {} of {count}: {reason}", n + 1)
                    } else {
                        reason
                    });
                    parts.push(self.fallback.extract_sync(batch));
                }
            }
        }
        let mut out = map::merge(parts);
        out.usage.tokens_in += usage.tokens_in;
        out.usage.tokens_out += usage.tokens_out;
        out.fallback = (!reasons.is_empty()).then(|| reasons.join("; "));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LlmConfig {
        LlmConfig {
            url: "http://127.0.0.1:8000/v1".to_owned(),
            model: "qwen".to_owned(),
            api_key: Some("sk-test".to_owned()),
            timeout: Duration::from_secs(30),
            max_turns_per_call: 16,
            max_input_chars: 12_000,
            max_output_tokens: 1024,
            temperature: 0.0,
        }
    }

    #[test]
    fn config_validation() {
        assert!(config().validate().is_ok());
        assert_eq!(
            config().endpoint(),
            "http://127.0.0.1:8000/v1/chat/completions"
        );
        let trailing = LlmConfig {
            url: "https://api.example.com/v1/".to_owned(),
            ..config()
        };
        assert!(trailing.validate().is_ok());
        assert_eq!(
            trailing.endpoint(),
            "https://api.example.com/v1/chat/completions"
        );

        let bad: Vec<(&str, LlmConfig)> = vec![
            (
                "url",
                LlmConfig {
                    url: "127.0.0.1:8000".into(),
                    ..config()
                },
            ),
            (
                "url",
                LlmConfig {
                    url: "ftp://host/v1".into(),
                    ..config()
                },
            ),
            (
                "url",
                LlmConfig {
                    url: "http://host/v1?x=1".into(),
                    ..config()
                },
            ),
            (
                "url",
                LlmConfig {
                    url: String::new(),
                    ..config()
                },
            ),
            (
                "model",
                LlmConfig {
                    model: " ".into(),
                    ..config()
                },
            ),
            (
                "api key",
                LlmConfig {
                    api_key: Some(String::new()),
                    ..config()
                },
            ),
            (
                "api key",
                LlmConfig {
                    api_key: Some("a\nb".into()),
                    ..config()
                },
            ),
            (
                "timeout",
                LlmConfig {
                    timeout: Duration::ZERO,
                    ..config()
                },
            ),
            (
                "max_turns_per_call",
                LlmConfig {
                    max_turns_per_call: 0,
                    ..config()
                },
            ),
            (
                "max_input_chars",
                LlmConfig {
                    max_input_chars: 0,
                    ..config()
                },
            ),
            (
                "max_output_tokens",
                LlmConfig {
                    max_output_tokens: 0,
                    ..config()
                },
            ),
            (
                "temperature",
                LlmConfig {
                    temperature: -0.5,
                    ..config()
                },
            ),
            (
                "temperature",
                LlmConfig {
                    temperature: f32::NAN,
                    ..config()
                },
            ),
        ];
        for (what, c) in bad {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(what), "{what}: {err}");
            assert!(LlmExtractor::new(c, RuleExtractor::new()).is_err());
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let shown = format!("{:?}", config());
        assert!(!shown.contains("sk-test"));
        assert!(shown.contains("<redacted>"));
    }
}
