//! Validation of the workspace requests: every problem at once, as field
//! violations, before any side effect.

use crate::MemoryConfig;
use engram_api::ApiError;
use engram_api::Violations;
use engram_core::MemoryType;
use engram_proto::v1::{self as pb, StoreMemoryRequest};

/// Longest title, in characters.
pub(crate) const MAX_TITLE_CHARS: usize = 500;
/// Most metadata keys of a memory.
pub(crate) const MAX_METADATA_KEYS: usize = 64;
/// Largest metadata object, in bytes of JSON.
pub(crate) const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Longest id a caller may send (user, collection, session).
pub(crate) const MAX_ID_CHARS: usize = 128;

/// The validated parts of a StoreMemory request.
#[derive(Debug)]
pub(crate) struct ValidStore {
    /// Who may read it.
    pub memory_type: MemoryType,
    /// Caller metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Characters of the text.
    pub chars: usize,
}

/// Checks an id a caller sends: not too long, no control characters.
pub(crate) fn check_id(v: &mut Violations, field: &str, value: &str) {
    if value.chars().count() > MAX_ID_CHARS {
        v.add(field, format!("at most {MAX_ID_CHARS} characters"));
    } else if value.chars().any(char::is_control) {
        v.add(field, "must not contain control characters");
    }
}

/// Validates a StoreMemory request.
pub(crate) fn store(
    req: &StoreMemoryRequest,
    config: &MemoryConfig,
) -> Result<ValidStore, ApiError> {
    let mut v = Violations::new();
    v.require_org("org_id", &req.org_id);
    check_id(&mut v, "user_id", &req.user_id);
    let chars = req.text.chars().count();
    if req.text.trim().is_empty() {
        v.add(
            "text",
            "required: the memory content (1 to 100,000 characters)",
        );
    } else if chars > config.max_text_chars {
        v.add(
            "text",
            format!(
                "{chars} characters is over the limit of {} characters",
                config.max_text_chars
            ),
        );
    }
    if req.title.chars().count() > MAX_TITLE_CHARS {
        v.add("title", format!("at most {MAX_TITLE_CHARS} characters"));
    }
    let memory_type = match pb::MemoryType::try_from(req.r#type) {
        Ok(pb::MemoryType::Unspecified | pb::MemoryType::User) => MemoryType::User,
        Ok(pb::MemoryType::Knowledge) => MemoryType::Knowledge,
        Ok(pb::MemoryType::Hive) => MemoryType::Hive,
        Err(_) => {
            v.add("type", format!("unknown memory type {}", req.r#type));
            MemoryType::User
        }
    };
    check_id(&mut v, "collection_id", &req.collection_id);
    let metadata = req
        .metadata
        .as_ref()
        .map(engram_proto::json::struct_to_json)
        .unwrap_or_default();
    if metadata.len() > MAX_METADATA_KEYS {
        v.add(
            "metadata",
            format!("at most {MAX_METADATA_KEYS} keys, got {}", metadata.len()),
        );
    }
    let bytes = serde_json::to_vec(&metadata).map_or(usize::MAX, |b| b.len());
    if bytes > MAX_METADATA_BYTES {
        v.add(
            "metadata",
            format!("at most {MAX_METADATA_BYTES} bytes of JSON, got {bytes}"),
        );
    }
    v.into_result()?;
    Ok(ValidStore {
        memory_type,
        metadata,
        chars,
    })
}

/// JSON with object keys sorted at every level, so equal metadata always
/// hashes alike whatever order the caller sent its keys in.
pub(crate) fn canonical_json(value: &serde_json::Value) -> String {
    fn sorted(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                serde_json::Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(sorted).collect())
            }
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: &ApiError) -> Vec<String> {
        e.violated_fields()
    }

    #[test]
    fn the_text_limit_is_named() {
        let config = MemoryConfig::default();
        let ok = StoreMemoryRequest {
            org_id: "org".into(),
            text: "x".repeat(100_000),
            ..Default::default()
        };
        assert_eq!(store(&ok, &config).unwrap().chars, 100_000);
        let long = StoreMemoryRequest {
            text: "x".repeat(100_001),
            ..ok.clone()
        };
        let err = store(&long, &config).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(fields(&err), ["text"]);
        assert!(err.to_string().contains("100000"), "{err}");
    }

    #[test]
    fn every_bad_field_is_reported() {
        let req = StoreMemoryRequest {
            text: " ".into(),
            title: "t".repeat(501),
            r#type: 9,
            collection_id: "c".repeat(200),
            ..Default::default()
        };
        let err = store(&req, &MemoryConfig::default()).unwrap_err();
        assert_eq!(
            fields(&err),
            ["org_id", "text", "title", "type", "collection_id"]
        );
    }

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: serde_json::Value = serde_json::json!({"b": 1, "a": {"y": 2, "x": [3]}});
        let b: serde_json::Value = serde_json::from_str(r#"{"a":{"x":[3],"y":2},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }
}
