//! Validation of `RememberRequest`: every problem is reported at once, as
//! field violations, before any side effect.

use crate::service::IngestConfig;
use engram_api::{ApiError, Violations};
use engram_core::Role;
use engram_proto::v1::RememberRequest;

/// A turn that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidTurn {
    /// Speaker.
    pub role: Role,
    /// Text as sent.
    pub text: String,
    /// Epoch milliseconds.
    pub ts_ms: i64,
    /// Caller-supplied observations (non-empty strings).
    pub observations: Vec<String>,
}

/// The validated parts of a request.
#[derive(Debug)]
pub struct ValidRemember {
    /// Turns in request order.
    pub turns: Vec<ValidTurn>,
    /// Write the active tier.
    pub write_active: bool,
    /// Write the passive tier.
    pub write_passive: bool,
}

/// Parses an RFC 3339 timestamp into epoch milliseconds.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("not an RFC 3339 timestamp ({e}); example: 2026-05-08T14:00:00Z"))
}

/// Validates `req` against the limits in `config`.
pub fn validate(req: &RememberRequest, config: &IngestConfig) -> Result<ValidRemember, ApiError> {
    let mut v = Violations::new();
    if req.scope.as_ref().is_none_or(|s| s.org_id.is_empty()) {
        v.add("scope.org_id", "required: your org id (min length 1)");
    }
    if req.turns.is_empty() {
        v.add("turns", "at least one turn is required");
    }
    if req.turns.len() > config.max_turns_per_call {
        v.add(
            "turns",
            format!("at most {} turns per call", config.max_turns_per_call),
        );
    }
    let mut turns = Vec::with_capacity(req.turns.len());
    for (i, t) in req.turns.iter().enumerate() {
        let role = t.role.parse::<Role>();
        if let Err(e) = &role {
            v.add(format!("turns[{i}].role"), e.clone());
        }
        let chars = t.text.chars().count();
        if t.text.trim().is_empty() {
            v.add(format!("turns[{i}].text"), "must not be empty");
        } else if chars > config.max_text_chars {
            v.add(
                format!("turns[{i}].text"),
                format!(
                    "{chars} characters is over the limit of {}",
                    config.max_text_chars
                ),
            );
        }
        let ts = if t.timestamp.is_empty() {
            v.add(
                format!("turns[{i}].timestamp"),
                "required: RFC 3339, e.g. 2026-05-08T14:00:00Z",
            );
            None
        } else {
            match parse_timestamp(&t.timestamp) {
                Ok(ms) => Some(ms),
                Err(e) => {
                    v.add(format!("turns[{i}].timestamp"), e);
                    None
                }
            }
        };
        for (j, o) in t.observations.iter().enumerate() {
            if o.trim().is_empty() {
                v.add(format!("turns[{i}].observations[{j}]"), "must not be empty");
            } else if o.chars().count() > config.max_text_chars {
                v.add(
                    format!("turns[{i}].observations[{j}]"),
                    format!("over the limit of {} characters", config.max_text_chars),
                );
            }
        }
        if let (Ok(role), Some(ts_ms)) = (role, ts) {
            turns.push(ValidTurn {
                role,
                text: t.text.clone(),
                ts_ms,
                observations: t.observations.clone(),
            });
        }
    }
    let opts = req.options.unwrap_or_default();
    let write_active = opts.write_active.unwrap_or(true);
    let write_passive = opts.write_passive.unwrap_or(true);
    if !write_active && !write_passive {
        v.add(
            "options",
            "at least one of write_active and write_passive must be true, or nothing would be stored",
        );
    }
    if let Some(m) = &req.metadata {
        let size = serde_json::to_string(&engram_proto::json::struct_to_json(m))
            .map(|s| s.len())
            .unwrap_or(usize::MAX);
        if size > config.max_metadata_bytes {
            v.add(
                "metadata",
                format!(
                    "{size} bytes of JSON is over the limit of {}",
                    config.max_metadata_bytes
                ),
            );
        }
    }
    v.into_result()?;
    Ok(ValidRemember {
        turns,
        write_active,
        write_passive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_proto::v1::{Scope, Turn};

    fn fields(e: &ApiError) -> Vec<String> {
        e.violated_fields()
    }

    fn turn(role: &str, text: &str, ts: &str) -> Turn {
        Turn {
            role: role.into(),
            text: text.into(),
            timestamp: ts.into(),
            observations: vec![],
        }
    }

    fn req(turns: Vec<Turn>) -> RememberRequest {
        RememberRequest {
            scope: Some(Scope {
                org_id: "org".into(),
                ..Default::default()
            }),
            turns,
            options: None,
            metadata: None,
        }
    }

    #[test]
    fn a_good_request_passes() {
        let r = validate(
            &req(vec![turn("user", "hi", "2026-05-08T14:00:00Z")]),
            &IngestConfig::default(),
        )
        .unwrap();
        assert_eq!(r.turns[0].ts_ms, 1_778_248_800_000);
        assert!(r.write_active && r.write_passive);
    }

    #[test]
    fn a_write_needs_at_least_one_tier() {
        let mut req = req(vec![turn("user", "hi", "2026-05-08T14:00:00Z")]);
        req.options = Some(engram_proto::v1::RememberOptions {
            write_active: Some(false),
            write_passive: Some(false),
        });
        let err = validate(&req, &IngestConfig::default()).unwrap_err();
        assert_eq!(fields(&err), ["options"]);
        req.options = Some(engram_proto::v1::RememberOptions {
            write_active: Some(false),
            write_passive: Some(true),
        });
        let r = validate(&req, &IngestConfig::default()).unwrap();
        assert!(!r.write_active && r.write_passive);
    }

    #[test]
    fn every_bad_field_is_named() {
        let cfg = IngestConfig {
            max_text_chars: 5,
            ..IngestConfig::default()
        };
        let mut r = req(vec![
            turn("robot", "", "yesterday"),
            turn("user", "too long text", "2026-05-08T14:00:00Z"),
        ]);
        r.scope = None;
        let s = validate(&r, &cfg).unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            fields(&s),
            [
                "scope.org_id",
                "turns[0].role",
                "turns[0].text",
                "turns[0].timestamp",
                "turns[1].text"
            ]
        );
        let s = validate(&req(vec![]), &cfg).unwrap_err();
        assert_eq!(fields(&s), ["turns"]);
    }

    mod hostile {
        use super::*;
        use engram_testkit::text::hostile_text;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                hostile_text(),
                Just("2026-05-08T14:00:00Z".to_string()),
                Just("user".to_string()),
                Just("assistant".to_string()),
                Just(String::new()),
            ]
        }

        fn turn() -> impl Strategy<Value = Turn> {
            (
                text(),
                text(),
                text(),
                proptest::collection::vec(text(), 0..3),
            )
                .prop_map(|(role, text, timestamp, observations)| Turn {
                    role,
                    text,
                    timestamp,
                    observations,
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Whatever a client sends, validation answers: a valid request,
            /// or INVALID_ARGUMENT naming at least one field.
            #[test]
            fn validation_of_hostile_requests(
                org in text(), user in text(), session in text(),
                turns in proptest::collection::vec(turn(), 0..6),
            ) {
                let req = RememberRequest {
                    scope: Some(Scope { org_id: org, user_id: user, session_id: session }),
                    turns,
                    options: None,
                    metadata: None,
                };
                let config = IngestConfig { max_text_chars: 40, max_turns_per_call: 4, ..IngestConfig::default() };
                match validate(&req, &config) {
                    Ok(valid) => {
                        prop_assert!(!valid.turns.is_empty() && valid.turns.len() <= 4);
                        for t in &valid.turns {
                            prop_assert!(t.text.chars().count() <= 40);
                        }
                    }
                    Err(status) => {
                        prop_assert_eq!(status.code(), tonic::Code::InvalidArgument);
                        prop_assert!(!fields(&status).is_empty(), "{:?}", status);
                    }
                }
            }

            #[test]
            fn timestamps_of_any_text(s in hostile_text()) {
                let _ = parse_timestamp(&s);
            }
        }
    }
}
