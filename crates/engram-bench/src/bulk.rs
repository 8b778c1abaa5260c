//! `bench bulk`: a million fragments through the `VectorStore` port, and
//! what search, the optimizer, start-up and memory cost at that size.
//!
//! Runs in-process on Qdrant Edge (the embedded default), without a
//! server: the question is the store's, not the service's. Vectors come
//! from real embeddings: every LoCoMo turn and question is embedded once
//! with the real model, and fragment `i` gets the normalized blend of two
//! of them plus a little noise (seeded), so the million vectors spread like
//! sentence embeddings do rather than like random points. Payloads are
//! real too: the turn's text (and its BM25 vector), an org, one of many
//! users, a session, a timestamp and metadata `tier`.
//!
//! Measured: write throughput through `upsert`, the optimizer's time to
//! index everything, search latency (one user's memory, top 10, a real
//! question's vector and BM25 terms) after optimizing, the time to open the
//! store again, and this process's resident memory (the store is the only
//! large thing in it) per fragment beyond the texts.

use crate::dataset;
use crate::rng::Rng;
use crate::server::Memory;
use crate::stats::Latency;
use anyhow::Context;
use clap::Args;
use engram_core::{
    HybridQuery, Kind, Point, PointPayload, Role, ScopeFilter, VectorStore, bm25, ids,
};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of `bench bulk`.
#[derive(Debug, Clone, Args)]
pub struct BulkArgs {
    /// The LoCoMo data file (texts and questions).
    #[arg(long, default_value = "../shared/bench/locomo10.json")]
    pub data: PathBuf,
    /// The models directory (scripts/setup.sh).
    #[arg(long, default_value = "models")]
    pub models_dir: PathBuf,
    /// Fragments to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub fragments: usize,
    /// Fragments per user.
    #[arg(long, default_value_t = 100)]
    pub per_user: usize,
    /// Points per upsert call.
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Searches measured.
    #[arg(long, default_value_t = 1_000)]
    pub queries: usize,
    /// Store directory (a temporary one when unset; kept when set).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Scalar int8 quantization (the server default).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub quantization: bool,
    /// Keep the original dense vectors in memory-mapped files
    /// (`storage.dense_on_disk`); only rescored candidates are read.
    #[arg(long)]
    pub dense_on_disk: bool,
    /// Segments the optimizer merges the store into (`EdgeStoreOptions::
    /// segment_number`; the server's default is 8).
    #[arg(long, default_value_t = engram_store::EdgeStoreOptions::default().segment_number)]
    pub segments: usize,
    /// Run the optimizer after every this many points written, as the
    /// server does while it ingests (`optimize_after_points`, 2,000), so
    /// the segments are laid out as a server's that grew; 0: once, after
    /// all writes.
    #[arg(long, default_value_t = 0)]
    pub optimize_every: usize,
    /// After the searches, merge the store down to two segments as the
    /// server does once writes pause (`storage.compact_when_idle_secs`):
    /// time the pass, measure Recall's filter while it runs, and every
    /// search again after it.
    #[arg(long)]
    pub compact: bool,
    /// Search a store an earlier run left in `--dir` (same `--fragments`
    /// and `--per-user`) instead of writing one: for profiling searches.
    #[arg(long, requires = "dir")]
    pub search_only: bool,
    /// Tenant of the fragments, users `u0`, `u1`, … (`speed` makes a store
    /// `bench speed --grown` can search through a server: copy `--dir` to
    /// the server's `<data_dir>/qdrant`).
    #[arg(long, default_value = "bulk")]
    pub org: String,
    /// Seed of the blends and the query choice.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What `bench bulk` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BulkReport {
    /// Fragments written.
    pub fragments: usize,
    /// Users holding them.
    pub users: usize,
    /// Quantization on.
    pub quantization: bool,
    /// Original dense vectors memory-mapped rather than in RAM.
    pub dense_on_disk: bool,
    /// Seconds to embed the source texts (not part of the store's cost).
    pub embed_seconds: f64,
    /// Seconds of `upsert` calls.
    pub write_seconds: f64,
    /// Points per second through `upsert`.
    pub write_per_sec: f64,
    /// Segments of the store as searched.
    pub segments: usize,
    /// Seconds the optimizer took to index everything (all its runs).
    pub optimize_seconds: f64,
    /// Seconds to open the store again (journal replay, segment load).
    pub open_seconds: f64,
    /// One user's memory, top 10, after optimizing, store reopened.
    pub search: Latency,
    /// The same with the filter an active Recall sends (the user's
    /// conversation data and the memories the user may read).
    pub search_recall: Latency,
    /// The same, unfiltered by user (the whole tenant).
    pub search_tenant: Latency,
    /// The idle compaction (`--compact`).
    pub compaction: Option<Compaction>,
    /// Resident memory of the process before the store was opened, MiB.
    pub rss_before_mib: f64,
    /// Resident memory after reopening and searching, MiB.
    pub rss_after_mib: f64,
    /// (after − before) per fragment, bytes.
    pub bytes_per_fragment: f64,
    /// The anonymous part of it (heap: what must stay in RAM), bytes.
    pub anon_bytes_per_fragment: f64,
    /// The file-backed part (memory-mapped segment files, which the kernel
    /// may drop and read again), bytes.
    pub file_bytes_per_fragment: f64,
    /// Mean text length of the fragments, bytes.
    pub mean_text_bytes: f64,
}

/// What `bench bulk --compact` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Compaction {
    /// Seconds of the compaction pass.
    pub seconds: f64,
    /// Segments after it.
    pub segments: usize,
    /// Searches with Recall's filter, back to back while it ran.
    pub search_recall_during: Latency,
    /// One user's memory after it.
    pub search: Latency,
    /// Recall's filter after it.
    pub search_recall: Latency,
    /// The whole tenant after it.
    pub search_tenant: Latency,
}

fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Which points a measured search may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// One user's points.
    User,
    /// What an active Recall of one user may see.
    Recall,
    /// The whole tenant.
    Tenant,
}

/// Fragment `i`: text `j`, blended vector, payload of its user.
fn fragment(
    org: &str,
    i: usize,
    per_user: usize,
    texts: &[String],
    vectors: &[Vec<f32>],
    rng: &mut Rng,
) -> Point {
    let j = rng.below(texts.len());
    let k = rng.below(vectors.len());
    let w = 0.25 + 0.2 * rng.unit().abs();
    let dense = normalize(
        vectors[j]
            .iter()
            .zip(&vectors[k])
            .map(|(a, b)| (1.0 - w) * a + w * b + 0.02 * rng.unit())
            .collect(),
    );
    let (user, n) = (i / per_user, i % per_user);
    let scope = engram_core::Scope {
        org_id: org.into(),
        user_id: format!("u{user}"),
        session_id: format!("s{}", n / 20),
    };
    let ts_ms = 1_704_099_600_000 + (n as i64) * 60_000;
    let text = &texts[j];
    let fragment_id = ids::fragment_id(&scope, Role::User, &format!("{i}/{text}"), ts_ms);
    let mut metadata = serde_json::Map::new();
    metadata.insert("tier".into(), serde_json::json!(format!("t{}", i % 100)));
    Point {
        fragment_id: fragment_id.clone(),
        payload: PointPayload {
            fragment_id,
            org_id: scope.org_id,
            user_id: scope.user_id,
            session_id: scope.session_id,
            kind: Kind::Turn,
            role: Some(if n % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            }),
            text: text.clone(),
            ts_ms,
            job_id: format!("{i:032x}"),
            source_ids: Vec::new(),
            entity_kind: None,
            mentions: None,
            subject: None,
            event_ms: None,
            metadata,
            memory: None,
            tokens: None,
        },
        dense,
        sparse: bm25::document_vector(text),
    }
}

fn options(args: &BulkArgs) -> engram_store::EdgeStoreOptions {
    engram_store::EdgeStoreOptions {
        quantization: args.quantization,
        dense_on_disk: args.dense_on_disk,
        segment_number: args.segments,
        // As `engram serve` opens it on a 2-core machine.
        indexing_threads: std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
        // Writes are measured alone; the optimizer runs after them.
        optimize_after_points: u64::MAX,
        optimize_when_idle: Duration::from_secs(3_600),
        // Only `--compact` merges, at a known moment.
        compact_when_idle: None,
        ..engram_store::EdgeStoreOptions::default()
    }
}

/// What the write phase measured.
#[derive(Debug, Default)]
struct Written {
    /// Time inside `upsert` calls.
    write: Duration,
    /// Bytes of the fragments' texts.
    text_bytes: usize,
    /// Seconds of the optimizer run after the writes.
    optimize_seconds: f64,
}

/// Writes the fragments into a new store in `dir`, optimizes and closes it.
async fn write_store(
    args: &BulkArgs,
    dir: &std::path::Path,
    texts: &[String],
    vectors: &[Vec<f32>],
    rng: &mut Rng,
    count: &dyn Fn(&str) -> usize,
) -> anyhow::Result<Written> {
    let store = engram_store::EdgeStore::open(dir, options(args))?;
    let mut out = Written::default();
    let mut i = 0;
    while i < args.fragments {
        let end = (i + args.batch).min(args.fragments);
        let points: Vec<Point> = (i..end)
            .map(|f| {
                let mut p = fragment(&args.org, f, args.per_user, texts, vectors, rng);
                p.payload.count_tokens(count);
                p
            })
            .collect();
        out.text_bytes += points.iter().map(|p| p.payload.text.len()).sum::<usize>();
        let t = Instant::now();
        store.upsert(points).await?;
        out.write += t.elapsed();
        if args.optimize_every > 0 && end / args.optimize_every > i / args.optimize_every {
            let t = Instant::now();
            store.optimize_now().await?;
            out.optimize_seconds += t.elapsed().as_secs_f64();
        }
        i = end;
        if i % (args.fragments / 10).max(1) < args.batch {
            eprintln!(
                "bulk: {i} of {} written ({:.0} points/s)",
                args.fragments,
                i as f64 / out.write.as_secs_f64().max(1e-9)
            );
        }
    }
    let t = Instant::now();
    store.optimize_now().await?;
    out.optimize_seconds += t.elapsed().as_secs_f64();
    eprintln!("bulk: optimized in {:.0} s", out.optimize_seconds);
    store.close().await?;
    Ok(out)
}

/// Runs `bench bulk`.
pub async fn run(args: &BulkArgs) -> anyhow::Result<BulkReport> {
    anyhow::ensure!(
        args.fragments > 0 && args.per_user > 0 && args.batch > 0,
        "sizes must be positive"
    );
    let convs = dataset::load(&args.data)?;
    let texts: Vec<String> = convs
        .iter()
        .flat_map(|c| c.sessions.iter())
        .flat_map(|s| s.turns.iter().map(dataset::DialogTurn::indexed_text))
        .collect();
    let questions: Vec<String> = convs
        .iter()
        .flat_map(|c| c.qa.iter().map(|q| q.question.clone()))
        .collect();
    anyhow::ensure!(
        !texts.is_empty() && !questions.is_empty(),
        "no text in --data"
    );

    let started = Instant::now();
    let model = {
        let opts = engram_embed::OrtEmbedderOptions::from_models_dir(&args.models_dir);
        tokio::task::spawn_blocking(move || engram_embed::OrtEmbedder::load(opts))
            .await?
            .context("embedding model (run scripts/setup.sh)")?
    };
    let text_vectors = if args.search_only {
        Vec::new()
    } else {
        model.embed_blocking(&texts)?
    };
    let question_vectors = model.embed_blocking(&questions)?;
    let embed_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "bulk: embedded {} texts and {} questions in {embed_seconds:.0} s",
        texts.len(),
        questions.len()
    );

    let scratch = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| scratch.path().join("store"));
    let before = Memory::of_this_process();
    let rss_before = before.map_or(0.0, |m| m.rss_mib());
    let mut rng = Rng(args.seed);
    let written = if args.search_only {
        Written::default()
    } else {
        // Payloads carry their token counts, as the server writes them.
        let count = |text: &str| engram_core::Embedder::count_tokens(&model, text);
        write_store(args, &dir, &texts, &text_vectors, &mut rng, &count).await?
    };

    let t = Instant::now();
    let store = engram_store::EdgeStore::open(&dir, options(args))?;
    let open_seconds = t.elapsed().as_secs_f64();
    let segments = store.stats().await?.segments;
    let users = args.fragments.div_ceil(args.per_user);
    let searches = |reach: Reach, rng: &mut Rng| {
        (0..args.queries + 20)
            .map(|_| {
                let q = rng.below(questions.len());
                let mut filter = ScopeFilter::tenant(&args.org);
                if reach != Reach::Tenant {
                    filter.user_id = Some(format!("u{}", rng.below(users)));
                }
                if reach == Reach::Recall {
                    // What an active Recall asks: the user's turns,
                    // observations and memory chunks, and whatever stored
                    // memories the user may read.
                    filter.kinds = vec![Kind::Turn, Kind::Observation, Kind::Memory];
                    filter.memories = Some(engram_core::MemoryAccess::default());
                }
                HybridQuery {
                    filter,
                    dense: question_vectors[q].clone(),
                    sparse: bm25::query_vector(&questions[q]),
                    prefetch: 30,
                    limit: 10,
                }
            })
            .collect::<Vec<_>>()
    };
    let measure = async |queries: Vec<HybridQuery>| -> anyhow::Result<Latency> {
        let mut samples = Vec::with_capacity(queries.len());
        for (n, q) in queries.iter().enumerate() {
            let t = Instant::now();
            let hits = store.hybrid_search(q).await?;
            if n >= 20 {
                samples.push(t.elapsed());
            }
            anyhow::ensure!(!hits.is_empty(), "a search found nothing");
        }
        Ok(Latency::of(&samples))
    };
    let search = measure(searches(Reach::User, &mut rng)).await?;
    let search_recall = measure(searches(Reach::Recall, &mut rng)).await?;
    let search_tenant = measure(searches(Reach::Tenant, &mut rng)).await?;
    let compaction = if args.compact {
        let during = searches(Reach::Recall, &mut rng);
        let done = std::sync::atomic::AtomicBool::new(false);
        let t = Instant::now();
        let compacting = async {
            let merged = store.compact_now().await;
            done.store(true, std::sync::atomic::Ordering::Release);
            merged
        };
        let searching = async {
            let mut samples = Vec::new();
            for q in during.iter().cycle() {
                if done.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                let t = Instant::now();
                store.hybrid_search(q).await?;
                samples.push(t.elapsed());
            }
            anyhow::Ok(samples)
        };
        let (merged, samples) = tokio::join!(compacting, searching);
        merged?;
        let seconds = t.elapsed().as_secs_f64();
        let samples = samples?;
        eprintln!(
            "bulk: compacted in {seconds:.0} s ({} searches meanwhile)",
            samples.len()
        );
        Some(Compaction {
            seconds,
            segments: store.stats().await?.segments,
            search_recall_during: Latency::of(&samples),
            search: measure(searches(Reach::User, &mut rng)).await?,
            search_recall: measure(searches(Reach::Recall, &mut rng)).await?,
            search_tenant: measure(searches(Reach::Tenant, &mut rng)).await?,
        })
    } else {
        None
    };
    let after = Memory::of_this_process();
    let rss_after = after.map_or(0.0, |m| m.rss_mib());
    let grown = |f: fn(&Memory) -> u64| match (before, after) {
        (Some(b), Some(a)) => f(&a).saturating_sub(f(&b)) as f64 * 1024.0 / args.fragments as f64,
        _ => 0.0,
    };
    store.close().await?;
    let per = (rss_after - rss_before) * 1024.0 * 1024.0 / args.fragments as f64;
    Ok(BulkReport {
        fragments: args.fragments,
        users,
        quantization: args.quantization,
        dense_on_disk: args.dense_on_disk,
        embed_seconds,
        write_seconds: written.write.as_secs_f64(),
        // Zero when this run wrote nothing (`--search-only`).
        write_per_sec: if written.write.is_zero() {
            0.0
        } else {
            args.fragments as f64 / written.write.as_secs_f64()
        },
        optimize_seconds: written.optimize_seconds,
        segments,
        open_seconds,
        search,
        search_recall,
        search_tenant,
        compaction,
        rss_before_mib: rss_before,
        rss_after_mib: rss_after,
        bytes_per_fragment: per,
        anon_bytes_per_fragment: grown(|m| m.rss_anon_kib),
        file_bytes_per_fragment: grown(|m| m.rss_file_kib),
        // Unknown when searching an earlier run's store.
        mean_text_bytes: written.text_bytes as f64 / args.fragments as f64,
    })
}

impl BulkReport {
    /// A markdown summary.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## Bulk: {} fragments of {} users on Qdrant Edge (quantization {}, dense vectors {})\n",
            self.fragments,
            self.users,
            if self.quantization { "int8" } else { "off" },
            if self.dense_on_disk { "mmap" } else { "in RAM" }
        );
        let _ = writeln!(
            s,
            "| write points/s | optimize s | segments | open s | search p50 / p99 ms (one user) | (Recall's filter) | (tenant) | RSS before / after MiB | bytes per fragment (anon + file) | mean text bytes |"
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            s,
            "| {:.0} | {:.0} | {} | {:.1} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {:.0} / {:.0} | {:.0} ({:.0} + {:.0}) | {:.0} |",
            self.write_per_sec,
            self.optimize_seconds,
            self.segments,
            self.open_seconds,
            self.search.p50_ms,
            self.search.p99_ms,
            self.search_recall.p50_ms,
            self.search_recall.p99_ms,
            self.search_tenant.p50_ms,
            self.search_tenant.p99_ms,
            self.rss_before_mib,
            self.rss_after_mib,
            self.bytes_per_fragment,
            self.anon_bytes_per_fragment,
            self.file_bytes_per_fragment,
            self.mean_text_bytes
        );
        if let Some(c) = &self.compaction {
            let _ = writeln!(
                s,
                "\nCompaction: {:.0} s to {} segments; Recall's filter while it ran p50 / p99 {:.2} / {:.2} ms ({} searches). After it: one user {:.2} / {:.2}, Recall's filter {:.2} / {:.2}, tenant {:.2} / {:.2} ms.",
                c.seconds,
                c.segments,
                c.search_recall_during.p50_ms,
                c.search_recall_during.p99_ms,
                c.search_recall_during.n,
                c.search.p50_ms,
                c.search.p99_ms,
                c.search_recall.p50_ms,
                c.search_recall.p99_ms,
                c.search_tenant.p50_ms,
                c.search_tenant.p99_ms,
            );
        }
        s
    }
}
