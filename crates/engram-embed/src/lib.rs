//! Sentence embeddings: all-MiniLM-L6-v2 on ONNX Runtime in process
//! ([`OrtEmbedder`], the default), or an OpenAI-compatible embeddings
//! service ([`OpenAiEmbedder`]).
//!
//! all-MiniLM-L6-v2 (int8 ONNX graph, 384 dimensions): BERT tokenization
//! truncated at 256 tokens and run in length-sorted sub-batches padded only
//! to their own longest input, mean pooling
//! over the attention mask, L2 normalization. ONNX Runtime is loaded at run
//! time (`load-dynamic`) from the library `scripts/setup.sh` extracts from
//! the pinned `onnxruntime` wheel, because `ort`'s own binary download
//! cannot work offline.

mod lanes;
mod openai;

pub use lanes::{LaneOptions, LaneStats, Lanes};
pub use openai::{OpenAiEmbedder, OpenAiEmbedderOptions};

use engram_core::{EmbedError, Embedder};
use ndarray::Array2;
use ort::session::Session;
use ort::value::TensorRef;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

/// Dimension of all-MiniLM-L6-v2 vectors.
pub const DIM: usize = 384;

/// The name stores filled by [`OrtEmbedder`] are tagged with.
pub const MODEL: &str = "all-MiniLM-L6-v2";

/// Most inputs one model run takes; larger batches are split after sorting
/// by length.
pub const SUB_BATCH: usize = 16;

/// Where the model files are and how to run them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrtEmbedderOptions {
    /// `model.onnx` of all-MiniLM-L6-v2.
    pub model: PathBuf,
    /// Its `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// `libonnxruntime.so`.
    pub runtime: PathBuf,
    /// ONNX Runtime intra-op threads.
    pub intra_threads: usize,
    /// Longest input in tokens; longer text is truncated.
    pub max_length: usize,
    /// Let ONNX Runtime's worker threads spin after a run, waiting for the
    /// next one. Off by default: a spinning thread holds a core for
    /// milliseconds after every embedding, which on a small machine is the
    /// core the search and the gRPC handling of the same call need.
    pub spinning: bool,
}

impl OrtEmbedderOptions {
    /// The layout `scripts/setup.sh` creates under `models_dir`.
    pub fn from_models_dir(models_dir: &Path) -> Self {
        Self {
            model: models_dir.join("all-MiniLM-L6-v2/model.onnx"),
            tokenizer: models_dir.join("all-MiniLM-L6-v2/tokenizer.json"),
            runtime: models_dir.join("onnxruntime/libonnxruntime.so"),
            intra_threads: 2,
            max_length: 256,
            spinning: false,
        }
    }
}

/// Why the model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A model file is missing.
    #[error("{0} not found: run scripts/setup.sh (or set embedder.models_dir)")]
    Missing(PathBuf),
    /// ONNX Runtime could not be initialized or the graph not loaded.
    #[error("onnx runtime: {0}")]
    Runtime(String),
    /// The tokenizer file is invalid.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// all-MiniLM-L6-v2 on ONNX Runtime.
#[derive(Clone)]
pub struct OrtEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    // `Session::run` needs `&mut`; one session serves all calls because ONNX
    // Runtime already spreads one batch over the intra-op threads.
    session: Mutex<Session>,
    tokenizer: Tokenizer,
    counter: Tokenizer,
    wants_token_types: bool,
}

static RUNTIME: OnceLock<Result<(), String>> = OnceLock::new();

impl OrtEmbedder {
    /// Loads the tokenizer and the ONNX graph. Blocking; call it from a
    /// blocking context.
    pub fn load(opts: OrtEmbedderOptions) -> Result<Self, LoadError> {
        for p in [&opts.model, &opts.tokenizer, &opts.runtime] {
            if !p.exists() {
                return Err(LoadError::Missing(p.clone()));
            }
        }
        RUNTIME
            .get_or_init(|| {
                ort::init_from(opts.runtime.display().to_string())
                    .with_name("engram")
                    .commit()
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(LoadError::Runtime)?;
        let session = Session::builder()
            .and_then(|b| b.with_intra_threads(opts.intra_threads.max(1)))
            .and_then(|b| b.with_intra_op_spinning(opts.spinning))
            .and_then(|b| b.with_inter_op_spinning(opts.spinning))
            .and_then(|b| b.commit_from_file(&opts.model))
            .map_err(|e| LoadError::Runtime(e.to_string()))?;
        let wants_token_types = session.inputs.iter().any(|i| i.name == "token_type_ids");
        let mut tokenizer = Tokenizer::from_file(&opts.tokenizer)
            .map_err(|e| LoadError::Tokenizer(e.to_string()))?;
        // The shipped tokenizer pads every input to 128; `embed_blocking`
        // pads each length-sorted sub-batch itself, to its own longest input.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: opts.max_length,
                ..TruncationParams::default()
            }))
            .map_err(|e| LoadError::Tokenizer(e.to_string()))?;
        let mut counter = tokenizer.clone();
        counter.with_padding(None);
        counter
            .with_truncation(None)
            .map_err(|e| LoadError::Tokenizer(e.to_string()))?;
        tracing::info!(model = %opts.model.display(), threads = opts.intra_threads, spinning = opts.spinning, "embedding model loaded");
        Ok(Self {
            inner: Arc::new(Inner {
                session: Mutex::new(session),
                tokenizer,
                counter,
                wants_token_types,
            }),
        })
    }

    /// Embeds a batch synchronously; vectors come back in input order.
    ///
    /// Inputs are sorted by token count and run in sub-batches of
    /// [`SUB_BATCH`], each padded to its own longest input: a batch of
    /// conversation turns mixes 5-token acknowledgements with 100-token
    /// stories, and padding everything to the longest wastes most of the
    /// transformer's work.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self
            .inner
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Internal(format!("tokenize: {e}")))?;
        let mut order: Vec<usize> = (0..enc.len()).collect();
        order.sort_by_key(|&i| enc[i].get_ids().len());
        let mut out = vec![Vec::new(); enc.len()];
        for chunk in order.chunks(SUB_BATCH) {
            let group: Vec<&Encoding> = chunk.iter().map(|&i| &enc[i]).collect();
            for (&i, v) in chunk.iter().zip(self.run(&group)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Runs the model on encodings of similar length, padding them (id 0,
    /// mask 0) to the longest.
    fn run(&self, enc: &[&Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let inner = &self.inner;
        let batch = enc.len();
        let len = enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let mut ids = Array2::<i64>::zeros((batch, len));
        let mut mask = Array2::<i64>::zeros((batch, len));
        let mut types = Array2::<i64>::zeros((batch, len));
        for (b, e) in enc.iter().enumerate() {
            for (t, ((id, m), ty)) in e
                .get_ids()
                .iter()
                .zip(e.get_attention_mask())
                .zip(e.get_type_ids())
                .enumerate()
            {
                ids[[b, t]] = i64::from(*id);
                mask[[b, t]] = i64::from(*m);
                types[[b, t]] = i64::from(*ty);
            }
        }
        let internal = |e: ort::Error| EmbedError::Internal(e.to_string());
        let mut session = inner.session.lock();
        let ids_t = TensorRef::from_array_view(&ids).map_err(internal)?;
        let mask_t = TensorRef::from_array_view(&mask).map_err(internal)?;
        let outputs = if inner.wants_token_types {
            let types_t = TensorRef::from_array_view(&types).map_err(internal)?;
            session.run(ort::inputs![
                "input_ids" => ids_t,
                "attention_mask" => mask_t,
                "token_type_ids" => types_t
            ])
        } else {
            session.run(ort::inputs!["input_ids" => ids_t, "attention_mask" => mask_t])
        }
        .map_err(internal)?;
        let (shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(internal)?;
        let dim = *shape.last().unwrap_or(&0) as usize;
        if dim != DIM || shape.len() != 3 {
            return Err(EmbedError::Internal(format!(
                "unexpected output shape {shape:?}"
            )));
        }
        let mut out = Vec::with_capacity(batch);
        for b in 0..batch {
            let mut v = vec![0f32; dim];
            for t in 0..len {
                if mask[[b, t]] == 0 {
                    continue;
                }
                let row = &data[(b * len + t) * dim..(b * len + t + 1) * dim];
                v.iter_mut().zip(row).for_each(|(a, x)| *a += x);
            }
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            // Mean pooling then L2 normalization: the division by the token
            // count cancels out in the norm, so the sum is normalized directly.
            v.iter_mut().for_each(|x| *x /= norm);
            out.push(v);
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl Embedder for OrtEmbedder {
    fn dim(&self) -> usize {
        DIM
    }

    fn model(&self) -> &str {
        MODEL
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let this = self.clone();
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || this.embed_blocking(&texts))
            .await
            .map_err(|e| EmbedError::Internal(e.to_string()))?
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.inner
            .counter
            .encode(text, false)
            .map(|e| e.get_ids().len())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedder() -> OrtEmbedder {
        let dir = std::env::var_os("ENGRAM_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"));
        OrtEmbedder::load(OrtEmbedderOptions::from_models_dir(&dir))
            .expect("model files missing: run scripts/setup.sh")
    }

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn vectors_are_unit_and_semantic() {
        let e = embedder();
        let texts: Vec<String> = [
            "I'm allergic to shellfish.",
            "any food restrictions?",
            "I bought a new car.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let v = e.embed_blocking(&texts).unwrap();
        assert_eq!(v[0].len(), DIM);
        assert!((cos(&v[0], &v[0]) - 1.0).abs() < 1e-4);
        assert!(cos(&v[0], &v[1]) > cos(&v[2], &v[1]) + 0.05);
        // Batching (with padding) must not change a vector.
        let single = e.embed_blocking(&texts[2..]).unwrap();
        assert!(cos(&single[0], &v[2]) > 0.9999);
        let n = e.count_tokens("I'm allergic to shellfish.");
        assert!((5..=10).contains(&n), "{n}");
    }

    #[test]
    fn large_mixed_batches_keep_input_order() {
        let e = embedder();
        // More than two sub-batches, lengths deliberately out of order.
        let texts: Vec<String> = (0..(2 * SUB_BATCH + 5))
            .map(|i| {
                format!(
                    "note {i}: {}",
                    "the weather was lovely ".repeat((i * 7) % 11)
                )
            })
            .collect();
        let batched = e.embed_blocking(&texts).unwrap();
        assert_eq!(batched.len(), texts.len());
        for (text, v) in texts.iter().zip(&batched) {
            let alone = e.embed_blocking(std::slice::from_ref(text)).unwrap();
            assert!(cos(&alone[0], v) > 0.9999, "{text}");
        }
    }
}
