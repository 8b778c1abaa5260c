//! `bench memory`: StoreMemory throughput on 100,000-character documents,
//! and Recall latency with a selective metadata filter on a large store.
//!
//! Documents are stored one after the other; each is timed from the call
//! to `READY` (chunking, embedding, writing every chunk), which gives the
//! processing throughput in characters per second. The store is then grown
//! with active-only Remember calls (no enrichment, so growth is bounded by
//! embedding alone) whose metadata carries `tier = t<call % 100>`, and
//! Recall is measured without a filter and with `tier = t7` (1% of the
//! store) in the same user partition.

use crate::server::{Target, authed};
use crate::stats::Latency;
use anyhow::bail;
use clap::Args;
use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::memory_service_client::MemoryServiceClient;
use engram_proto::v1::recall_service_client::RecallServiceClient;
use engram_proto::v1::*;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Tenant of the run.
const ORG: &str = "bench_memory";

/// Options of `bench memory`.
#[derive(Debug, Clone, Args)]
pub struct MemoryArgs {
    /// 100,000-character documents to store.
    #[arg(long, default_value_t = 5)]
    pub documents: usize,
    /// Conversation fragments to grow the store to before measuring Recall.
    #[arg(long, default_value_t = 100_000)]
    pub fragments: usize,
    /// Turns per Remember call while growing.
    #[arg(long, default_value_t = 250)]
    pub batch: usize,
    /// Recall calls measured per filter setting.
    #[arg(long, default_value_t = 300)]
    pub queries: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What `bench memory` measured.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// Characters per document.
    pub document_chars: usize,
    /// StoreMemory call latency (returns at once, pending).
    pub store_call: Latency,
    /// Call to READY, per document.
    pub to_ready: Latency,
    /// Characters processed per second (all documents over their total
    /// time to ready).
    pub chars_per_sec: f64,
    /// Chunks per document.
    pub chunks_per_document: u32,
    /// Fragments in the store when Recall was measured.
    pub fragments: usize,
    /// Fragments matching the selective filter.
    pub filtered_fragments: usize,
    /// Recall (active, top_k 10) without a filter.
    pub recall_unfiltered: Latency,
    /// Recall with `tier = t7`.
    pub recall_filtered: Latency,
    /// The first Recall with `tier = t7`, which creates the payload index
    /// of `metadata.tier`, ms.
    pub first_filtered_ms: f64,
    /// Peak resident memory of the server, MiB.
    pub peak_mib: Option<f64>,
}

impl MemoryReport {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## StoreMemory: {} documents of {} characters ({} chunks each)\n",
            self.to_ready.n, self.document_chars, self.chunks_per_document
        );
        let _ = writeln!(
            s,
            "| StoreMemory call p50 / p99 ms | to READY p50 / p99 ms | characters/s | peak MiB |\n|---:|---:|---:|---:|\n| {:.1} / {:.1} | {:.0} / {:.0} | {:.0} | {} |\n",
            self.store_call.p50_ms,
            self.store_call.p99_ms,
            self.to_ready.p50_ms,
            self.to_ready.p99_ms,
            self.chars_per_sec,
            self.peak_mib.map_or("–".into(), |m| format!("{m:.0}")),
        );
        let _ = writeln!(
            s,
            "## Recall at {} fragments (one user), active top_k 10\n\n| filter | matching | p50 ms | p99 ms | mean ms |\n|---|---:|---:|---:|---:|\n| none | {} | {:.1} | {:.1} | {:.1} |\n| tier = t7 | {} | {:.1} | {:.1} | {:.1} |",
            self.fragments,
            self.fragments,
            self.recall_unfiltered.p50_ms,
            self.recall_unfiltered.p99_ms,
            self.recall_unfiltered.mean_ms,
            self.filtered_fragments,
            self.recall_filtered.p50_ms,
            self.recall_filtered.p99_ms,
            self.recall_filtered.mean_ms,
        );
        let _ = writeln!(
            s,
            "\nThe first filtered call (it creates the payload index of `metadata.tier`) took {:.0} ms.",
            self.first_filtered_ms
        );
        s
    }
}

const SUBJECTS: [&str; 10] = [
    "The committee",
    "Our vendor",
    "The audit team",
    "A reviewer",
    "The board",
    "My manager",
    "The new intern",
    "Our landlord",
    "The support desk",
    "A customer",
];
const VERBS: [&str; 10] = [
    "reviewed",
    "postponed",
    "approved",
    "questioned",
    "summarized",
    "rejected",
    "praised",
    "rescheduled",
    "forwarded",
    "documented",
];
const OBJECTS: [&str; 10] = [
    "the travel budget",
    "the hiring plan",
    "the office lease",
    "the security training",
    "the quarterly roadmap",
    "the pricing page",
    "the onboarding guide",
    "the backup policy",
    "the team offsite",
    "the parking rules",
];
const PLACES: [&str; 10] = [
    "in Lisbon",
    "in Oslo",
    "at the Berlin office",
    "over video",
    "in Austin",
    "in Nairobi",
    "at the warehouse",
    "in Kyoto",
    "at the cafe",
    "in Toronto",
];

/// The `i`-th distinct sentence (10,000 combinations, then numbered).
fn sentence(i: usize) -> String {
    format!(
        "{} {} {} {} on day {}.",
        SUBJECTS[i % 10],
        VERBS[(i / 10) % 10],
        OBJECTS[(i / 100) % 10],
        PLACES[(i / 1000) % 10],
        i / 10
    )
}

/// Document `d`: distinct sentences up to exactly `chars` characters.
fn document(d: usize, chars: usize) -> String {
    let mut out = String::new();
    let mut i = d * 7919;
    while out.len() < chars {
        out.push_str(&sentence(i));
        out.push(' ');
        i += 1;
    }
    out.truncate(chars);
    out
}

fn tier(value: &str) -> prost_types::Struct {
    prost_types::Struct {
        fields: [(
            "tier".to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue(value.into())),
            },
        )]
        .into(),
    }
}

/// Runs the benchmark against `target`.
pub async fn run(target: &Target, args: &MemoryArgs) -> anyhow::Result<MemoryReport> {
    const CHARS: usize = 100_000;
    let token = target.token(ORG, "bench")?;
    let channel = target.connect().await?;
    let mut memory = MemoryServiceClient::new(channel.clone());

    let mut calls = Vec::new();
    let mut ready = Vec::new();
    let mut chunks = 0;
    let started = Instant::now();
    for d in 0..args.documents {
        let t0 = Instant::now();
        let stored = memory
            .store_memory(authed(
                StoreMemoryRequest {
                    org_id: ORG.into(),
                    text: document(d, CHARS),
                    title: format!("Document {d}"),
                    ..Default::default()
                },
                &token,
            )?)
            .await?
            .into_inner();
        calls.push(t0.elapsed());
        loop {
            let s = memory
                .get_memory_status(authed(
                    GetMemoryStatusRequest {
                        memory_id: stored.memory_id.clone(),
                    },
                    &token,
                )?)
                .await?
                .into_inner();
            match s.status() {
                MemoryStatus::Ready => {
                    chunks = s.chunks;
                    break;
                }
                MemoryStatus::Failed => bail!("document {d} failed: {}", s.error),
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        ready.push(t0.elapsed());
        eprintln!("bench memory: document {d} ready in {:?}", t0.elapsed());
    }
    let chars_per_sec = (args.documents * CHARS) as f64 / started.elapsed().as_secs_f64();

    // Grow the store: active-only turns, one tier per call.
    let mut ingest = IngestServiceClient::new(channel.clone());
    let mut written = 0usize;
    let mut filtered = 0usize;
    let mut call = 0usize;
    while written < args.fragments {
        let n = args.batch.min(args.fragments - written);
        let value = format!("t{}", call % 100);
        if value == "t7" {
            filtered += n;
        }
        let turns = (written..written + n)
            .map(|i| Turn {
                role: "user".into(),
                text: sentence(i),
                timestamp: format!(
                    "2026-01-01T{:02}:{:02}:{:02}Z",
                    (i / 3600) % 24,
                    (i / 60) % 60,
                    i % 60
                ),
                observations: vec![],
            })
            .collect();
        ingest
            .remember(authed(
                RememberRequest {
                    scope: Some(Scope {
                        org_id: ORG.into(),
                        session_id: format!("s{}", call % 50),
                        ..Default::default()
                    }),
                    turns,
                    options: Some(RememberOptions {
                        write_active: Some(true),
                        write_passive: Some(false),
                    }),
                    metadata: Some(tier(&value)),
                },
                &token,
            )?)
            .await?;
        written += n;
        call += 1;
        if call.is_multiple_of(40) {
            eprintln!("bench memory: {written} fragments");
        }
    }

    // Let the store's optimizer (it runs once writes pause) finish first.
    eprintln!("bench memory: settling 20 s, then measuring Recall");
    tokio::time::sleep(std::time::Duration::from_secs(20)).await;
    let recall = RecallServiceClient::new(channel);
    let (recall_unfiltered, _) = measure(recall.clone(), &token, args.queries, None).await?;
    let selective = Filter {
        condition: Some(filter::Condition::Equals(Equals {
            key: "tier".into(),
            value: Some(prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("t7".into())),
            }),
        })),
    };
    let (recall_filtered, first_filtered) =
        measure(recall, &token, args.queries, Some(selective)).await?;
    Ok(MemoryReport {
        document_chars: CHARS,
        store_call: Latency::of(&calls),
        to_ready: Latency::of(&ready),
        chars_per_sec,
        chunks_per_document: chunks,
        fragments: written,
        filtered_fragments: filtered,
        recall_unfiltered,
        recall_filtered,
        first_filtered_ms: first_filtered.as_secs_f64() * 1000.0,
        peak_mib: target.memory().map(|m| m.hwm_mib()),
    })
}

/// Recall latency over `queries` calls (after 10 unmeasured ones), and the
/// latency of the first call (with a filter on a new key, it creates the
/// key's payload index).
async fn measure(
    mut recall: RecallServiceClient<tonic::transport::Channel>,
    token: &str,
    queries: usize,
    filter: Option<Filter>,
) -> anyhow::Result<(Latency, std::time::Duration)> {
    let mut samples = Vec::new();
    let mut first = std::time::Duration::ZERO;
    for q in 0..queries + 10 {
        let t0 = Instant::now();
        recall
            .recall(authed(
                RecallRequest {
                    scope: Some(Scope {
                        org_id: ORG.into(),
                        ..Default::default()
                    }),
                    q: sentence(q * 37 + 11),
                    top_k: Some(10),
                    filter: filter.clone(),
                    ..Default::default()
                },
                token,
            )?)
            .await?;
        if q == 0 {
            first = t0.elapsed();
        }
        if q >= 10 {
            samples.push(t0.elapsed());
        }
    }
    Ok((Latency::of(&samples), first))
}
