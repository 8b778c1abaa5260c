//! Settings of the Qdrant server store.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// Where the Qdrant server is and how the store lays out its collection.
///
/// Deserializable with every field optional and unknown fields refused, so
/// the server configuration can embed it as a `[qdrant]` section:
///
/// ```toml
/// [qdrant]
/// url = "http://qdrant:6334"
/// api_key = "..."
/// collection = "engram"
/// dense_dim = 384
/// timeout_ms = 5000
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QdrantOptions {
    /// The server's gRPC endpoint (port 6334 by default, not the REST port
    /// 6333); `https://` turns on TLS.
    pub url: String,
    /// Sent as the `api-key` header when set. Redacted from `Debug` output.
    pub api_key: Option<String>,
    /// The one collection all tenants share (multitenant by `org_id`).
    pub collection: String,
    /// Dimension of the `dense` vector (384 for all-MiniLM-L6-v2). Must
    /// match the collection when it already exists.
    pub dense_dim: usize,
    /// Longest time any single call (connect included) may take before it
    /// fails with `Unavailable`. Written `timeout_ms`, in milliseconds.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// The embedding model of the process (set from the embedder, not from
    /// config): a collection tagged with another one (or being
    /// re-embedded) fails provisioning, a new collection is tagged with it.
    /// `None` accepts any collection and tags nothing (`engram reembed`).
    #[serde(skip)]
    pub embedding_model: Option<String>,
    /// How the dense vectors are kept (quantization, on disk); set by the
    /// server from `[storage]`, shared with the embedded store.
    #[serde(skip)]
    pub dense: crate::mapping::DenseLayout,
}

impl Default for QdrantOptions {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:6334".into(),
            api_key: None,
            collection: "engram".into(),
            dense_dim: 384,
            timeout: Duration::from_secs(5),
            embedding_model: None,
            dense: crate::mapping::DenseLayout::default(),
        }
    }
}

impl fmt::Debug for QdrantOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Options end up in startup logs; the key must not.
        f.debug_struct("QdrantOptions")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("collection", &self.collection)
            .field("dense_dim", &self.dense_dim)
            .field("timeout", &self.timeout)
            .field("embedding_model", &self.embedding_model)
            .field("dense", &self.dense)
            .finish()
    }
}

/// A [`Duration`] as a whole number of milliseconds.
mod millis {
    use super::*;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        // Saturates instead of failing for durations beyond u64 ms, which
        // no configuration means.
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_defaults() {
        let o: QdrantOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(o, QdrantOptions::default());
        assert_eq!(o.url, "http://127.0.0.1:6334");
        assert_eq!(o.collection, "engram");
        assert_eq!(o.dense_dim, 384);
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(o.api_key, None);
    }

    #[test]
    fn timeout_is_written_in_milliseconds_and_round_trips() {
        let o: QdrantOptions =
            serde_json::from_str(r#"{"timeout_ms": 250, "collection": "c", "api_key": "k"}"#)
                .unwrap();
        assert_eq!(o.timeout, Duration::from_millis(250));
        assert_eq!(o.collection, "c");
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json["timeout_ms"], 250);
        assert_eq!(serde_json::from_value::<QdrantOptions>(json).unwrap(), o);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<QdrantOptions>(r#"{"timeout": 5}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn debug_hides_the_api_key() {
        let o = QdrantOptions {
            api_key: Some("s3cret".into()),
            ..QdrantOptions::default()
        };
        let shown = format!("{o:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
