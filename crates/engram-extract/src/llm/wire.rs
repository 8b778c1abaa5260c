//! What goes over the wire: the chat-completions request, the parts of the
//! response the extractor reads, and the JSON answer the model must give.

use serde::{Deserialize, Serialize};

use crate::ExtractUsage;

/// Body of `POST {url}/chat/completions`.
#[derive(Debug, Serialize)]
pub(super) struct ChatRequest<'a> {
    pub model: &'a str,
    pub temperature: f64,
    pub max_tokens: u32,
    pub response_format: ResponseFormat,
    pub messages: [ChatMessage<'a>; 2],
}

/// `{"type":"json_object"}`: JSON mode.
#[derive(Debug, Serialize)]
pub(super) struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// One chat message.
#[derive(Debug, Serialize)]
pub(super) struct ChatMessage<'a> {
    pub role: &'static str,
    pub content: &'a str,
}

impl<'a> ChatRequest<'a> {
    /// A JSON-mode request with a system and a user message.
    pub fn new(
        model: &'a str,
        temperature: f32,
        max_tokens: u32,
        system: &'a str,
        user: &'a str,
    ) -> Self {
        ChatRequest {
            model,
            // f32 → f64 widening would send 0.10000000149011612 for 0.1.
            temperature: (f64::from(temperature) * 1000.0).round() / 1000.0,
            max_tokens,
            response_format: ResponseFormat {
                kind: "json_object",
            },
            messages: [
                ChatMessage {
                    role: "system",
                    content: system,
                },
                ChatMessage {
                    role: "user",
                    content: user,
                },
            ],
        }
    }
}

/// The parts of a chat-completions response the extractor reads; anything
/// else the server sends is ignored.
#[derive(Debug, Deserialize)]
struct ChatResponse {
    choices: Option<Vec<Choice>>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Option<ChoiceMessage>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
}

/// The first choice of a response.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Reply {
    /// The message content (the model's answer).
    pub content: String,
    /// Why generation stopped (`"stop"`, `"length"`, ...), when given.
    pub finish_reason: Option<String>,
}

/// Reads a 2xx response body: the token usage it reports (zero when absent,
/// counted even when the rest is unusable) and the first choice's content.
pub(super) fn parse_response(body: &[u8]) -> (ExtractUsage, Result<Reply, String>) {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => {
            return (
                ExtractUsage::default(),
                Err(format!("response body is not JSON: {e}")),
            );
        }
    };
    let usage = usage_of(&value);
    let response: ChatResponse = match serde_json::from_value(value) {
        Ok(response) => response,
        Err(e) => {
            return (
                usage,
                Err(format!("response is not a chat completion: {e}")),
            );
        }
    };
    let Some(choice) = response.choices.and_then(|c| c.into_iter().next()) else {
        return (usage, Err("response has no choices".to_owned()));
    };
    let Some(content) = choice.message.and_then(|m| m.content) else {
        return (
            usage,
            Err("response choice has no message content".to_owned()),
        );
    };
    let reply = Reply {
        content,
        finish_reason: choice.finish_reason,
    };
    (usage, Ok(reply))
}

/// `usage.prompt_tokens` / `usage.completion_tokens`, each zero when absent.
fn usage_of(value: &serde_json::Value) -> ExtractUsage {
    let count = |field: &str| {
        value
            .get("usage")
            .and_then(|u| u.get(field))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    ExtractUsage {
        tokens_in: count("prompt_tokens"),
        tokens_out: count("completion_tokens"),
    }
}

/// The JSON object the system prompt asks for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Answer {
    pub observations: Vec<AnswerObservation>,
    pub entities: Vec<AnswerEntity>,
}

/// One observation as the model states it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnswerObservation {
    /// Index of the source turn within the call's batch.
    pub turn: usize,
    pub subject: String,
    pub category: String,
    pub text: String,
    /// `YYYY-MM-DD`, `YYYY-MM`, `YYYY` or null (or absent).
    #[serde(default)]
    pub date: Option<String>,
}

/// One entity as the model states it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnswerEntity {
    pub label: String,
    pub kind: String,
    /// Indices of the turns (within the batch) that mention it.
    pub turns: Vec<usize>,
}

/// Parses the model's content as an [`Answer`]. A Markdown code fence
/// around the object (some servers add one even in JSON mode) is ignored.
pub(super) fn parse_answer(reply: &Reply) -> Result<Answer, String> {
    let text = strip_fence(reply.content.trim());
    serde_json::from_str(text).map_err(|e| {
        if reply.finish_reason.as_deref() == Some("length") {
            format!("answer cut off at max_output_tokens: {e}")
        } else {
            format!("answer is not the expected JSON: {e}")
        }
    })
}

/// "```json\n{...}\n```" → "{...}"; anything else unchanged.
fn strip_fence(text: &str) -> &str {
    let Some(inner) = text
        .strip_prefix("```")
        .and_then(|rest| rest.strip_suffix("```"))
    else {
        return text;
    };
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    inner.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(content: &str) -> Reply {
        Reply {
            content: content.to_owned(),
            finish_reason: Some("stop".to_owned()),
        }
    }

    #[test]
    fn request_shape() {
        let req = ChatRequest::new("m", 0.1, 512, "sys", "usr");
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "model": "m",
                "temperature": 0.1,
                "max_tokens": 512,
                "response_format": {"type": "json_object"},
                "messages": [
                    {"role": "system", "content": "sys"},
                    {"role": "user", "content": "usr"}
                ]
            })
        );
    }

    #[test]
    fn response_usage_counted_even_without_choices() {
        let body = br#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#;
        let (usage, reply) = parse_response(body);
        assert_eq!(
            usage,
            ExtractUsage {
                tokens_in: 7,
                tokens_out: 3
            }
        );
        assert_eq!(reply.unwrap_err(), "response has no choices");

        let (usage, reply) = parse_response(b"<html>");
        assert_eq!(usage, ExtractUsage::default());
        assert!(reply.unwrap_err().contains("not JSON"));

        let body = br#"{"choices":[{"message":{"content":null}}]}"#;
        assert!(parse_response(body).1.is_err());

        let body = br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"{}"},"finish_reason":"stop"}]}"#;
        let (usage, reply) = parse_response(body);
        assert_eq!(usage, ExtractUsage::default());
        assert_eq!(reply.unwrap(), self::reply("{}"));
    }

    #[test]
    fn answer_is_strict() {
        let ok = r#"{"observations":[{"turn":0,"subject":"User","category":"health","text":"User is allergic to shellfish.","date":null}],"entities":[{"label":"Ana","kind":"person","turns":[0]}]}"#;
        let answer = parse_answer(&reply(ok)).unwrap();
        assert_eq!(answer.observations.len(), 1);
        assert_eq!(answer.entities[0].turns, vec![0]);

        // The date may be left out.
        let no_date = r#"{"observations":[{"turn":0,"subject":"User","category":"health","text":"x."}],"entities":[]}"#;
        assert!(
            parse_answer(&reply(no_date)).unwrap().observations[0]
                .date
                .is_none()
        );

        // Fenced.
        let fenced = format!("```json\n{ok}\n```");
        assert!(parse_answer(&reply(&fenced)).is_ok());

        for bad in [
            "{not json",
            r#"{"observations":[]}"#,
            r#"{"observations":[],"entities":[],"extra":1}"#,
            r#"{"observations":[{"turn":0,"subject":"U","category":"x","text":"t","confidence":0.9}],"entities":[]}"#,
            r#"{"observations":[{"turn":-1,"subject":"U","category":"x","text":"t"}],"entities":[]}"#,
            r#"{"observations":[],"entities":[{"label":"A","kind":"person"}]}"#,
        ] {
            assert!(parse_answer(&reply(bad)).is_err(), "{bad}");
        }

        let cut = Reply {
            content: r#"{"observations":[{"tu"#.to_owned(),
            finish_reason: Some("length".to_owned()),
        };
        assert!(
            parse_answer(&cut)
                .unwrap_err()
                .contains("max_output_tokens")
        );
    }
}
