//! Which embedding model filled a store.
//!
//! Two models of the same dimension (all-MiniLM-L6-v2 and
//! multilingual-e5-small are both 384) produce vectors that fit the same
//! collection and mean nothing to each other: searching one model's
//! vectors with another's query finds noise, silently. So every store
//! records the model its vectors came from, a process whose embedder is a
//! different one refuses to start on it, and `engram reembed` moves a
//! store from one model to another.

use serde::{Deserialize, Serialize};

/// The model of every store written before stores were tagged: the only
/// embedder Engram had.
pub const UNTAGGED_MODEL: &str = "all-MiniLM-L6-v2";

/// What a store records about its vectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelTag {
    /// The model whose vectors the store holds.
    pub model: String,
    /// Set while `engram reembed` rewrites the store for this model: its
    /// vectors are then a mix of both, and only a re-run of the re-embedding
    /// may open it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reembedding_to: Option<String>,
}

impl ModelTag {
    /// A store filled by `model`.
    pub fn of(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            reembedding_to: None,
        }
    }

    /// Whether a process embedding with `model` may use the store named
    /// `store`; the error says what to do.
    pub fn check(&self, model: &str, store: &str) -> Result<(), String> {
        if let Some(to) = &self.reembedding_to {
            return Err(format!(
                "{store} is being re-embedded from {:?} to {to:?} and holds vectors of both: \
                 run `engram reembed` again with the embedder set to {to:?} to finish it",
                self.model
            ));
        }
        if self.model != model {
            return Err(format!(
                "{store} holds vectors of embedding model {:?}, but the embedder is {model:?}: \
                 set the embedder back to {:?}, or run `engram reembed` to re-embed the store \
                 with {model:?}",
                self.model, self.model
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatch_names_both_models_and_the_way_out() {
        let tag = ModelTag::of("all-MiniLM-L6-v2");
        assert!(tag.check("all-MiniLM-L6-v2", "store x").is_ok());
        let err = tag.check("multilingual-e5-small", "store x").unwrap_err();
        assert!(err.contains("all-MiniLM-L6-v2") && err.contains("multilingual-e5-small"));
        assert!(err.contains("engram reembed") && err.contains("store x"));
        let half = ModelTag {
            model: "a".into(),
            reembedding_to: Some("b".into()),
        };
        // Half re-embedded: neither model may use it.
        assert!(half.check("a", "s").is_err());
        assert!(half.check("b", "s").unwrap_err().contains("again"));
    }

    #[test]
    fn tags_round_trip_as_json() {
        let tag = ModelTag {
            model: "m".into(),
            reembedding_to: Some("n".into()),
        };
        let json = serde_json::to_string(&tag).unwrap();
        assert_eq!(serde_json::from_str::<ModelTag>(&json).unwrap(), tag);
        let plain: ModelTag = serde_json::from_str(r#"{"model":"m"}"#).unwrap();
        assert_eq!(plain, ModelTag::of("m"));
    }
}
