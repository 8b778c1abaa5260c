//! What `bench speed` measured, and its markdown.

use super::load::RecallRun;
use crate::embed::Floor;
use crate::server::Memory;
use crate::stats::{IngestRun, Latency};
use serde::Serialize;
use std::fmt::Write as _;

/// One Recall measurement.
#[derive(Debug, Clone, Serialize)]
pub struct RecallCell {
    /// `active` or `deep`.
    pub mode: String,
    /// `top_k` of each call.
    pub top_k: i32,
    /// Concurrent clients.
    pub clients: usize,
    /// Latency per call.
    pub latency: Latency,
    /// Calls per second over the run.
    pub qps: f64,
    /// p50 minus the model's single-query p50, ms: what the service adds.
    pub over_floor_ms: f64,
    /// The model alone on the same queries, timed in step with the calls
    /// (one-client cells): its latency, and the cell's p50 minus its p50.
    pub paired_floor: Option<PairedFloor>,
    /// p50 over the model's single-query p50.
    pub floor_ratio: f64,
    /// Calls per second over the model's queries per second in calls of
    /// the floor's batch (the ceiling when concurrent calls share runs).
    pub qps_vs_model: f64,
}

/// The floor measured in step with a cell's calls.
#[derive(Debug, Clone, Serialize)]
pub struct PairedFloor {
    /// The model's latency on each call's query, right before the call.
    pub latency: Latency,
    /// The cell's p50 minus this floor's p50, ms.
    pub over_ms: f64,
}

impl RecallCell {
    pub(crate) fn new(
        mode: &str,
        top_k: i32,
        clients: usize,
        run: &RecallRun,
        floor: &Floor,
    ) -> Self {
        let latency = Latency::of(&run.latencies);
        let embed = floor.single_query.p50_ms;
        let qps = run.latencies.len() as f64 / run.wall.as_secs_f64().max(1e-9);
        let paired_floor = (!run.paired_floor.is_empty()).then(|| {
            let floor = Latency::of(&run.paired_floor);
            PairedFloor {
                over_ms: latency.p50_ms - floor.p50_ms,
                latency: floor,
            }
        });
        Self {
            mode: mode.to_owned(),
            top_k,
            clients,
            over_floor_ms: latency.p50_ms - embed,
            paired_floor,
            floor_ratio: latency.p50_ms / embed.max(1e-9),
            qps_vs_model: qps / floor.queries_per_sec.max(1e-9),
            qps,
            latency,
        }
    }

    /// A one-line summary for progress output.
    pub(crate) fn line(&self) -> String {
        format!(
            "{} top_k {} with {} client(s): p50 {:.2} ms (+{:.2} over the model{}), p99 {:.2} ms, {:.1} calls/s",
            self.mode,
            self.top_k,
            self.clients,
            self.latency.p50_ms,
            self.over_floor_ms,
            self.paired_floor
                .as_ref()
                .map_or_else(String::new, |p| format!(
                    ", +{:.2} over the paired model at {:.2}",
                    p.over_ms, p.latency.p50_ms
                )),
            self.latency.p99_ms,
            self.qps
        )
    }
}

/// Measurements at one store size.
#[derive(Debug, Clone, Serialize)]
pub struct SizeReport {
    /// Fragments in the store (of org `speed`).
    pub fragments: usize,
    /// Users holding them.
    pub users: usize,
    /// The growth step that reached this size (active memory only).
    pub ingest: IngestRun,
    /// Remember turns/s over the model's texts/s on the same texts.
    pub remember_vs_floor: f64,
    /// Recall cells: each mode and top_k with one client, then the
    /// concurrent runs.
    pub recall: Vec<RecallCell>,
    /// Recalls that returned no turn (should be none).
    pub empty_recalls: usize,
    /// Server memory after the measurements.
    pub memory: Option<Memory>,
}

/// Recall while the enrichment consumer drains a backlog.
#[derive(Debug, Clone, Serialize)]
pub struct BacklogReport {
    /// Turns written with enrichment.
    pub turns: usize,
    /// Their write phase.
    pub write: IngestRun,
    /// Active Recall measured right after.
    pub recall: RecallCell,
    /// Whether the last job of the backlog was still pending when the
    /// measurement ended (otherwise the backlog drained too early to load
    /// the whole measurement).
    pub still_draining: bool,
    /// Seconds from the first backlog write until its last job was done.
    pub drained_after_s: f64,
}

/// Everything `bench speed` measured.
#[derive(Debug, Clone, Serialize)]
pub struct SpeedReport {
    /// Server URL.
    pub endpoint: String,
    /// Turns per Remember call.
    pub batch: usize,
    /// Concurrent Remember clients.
    pub concurrency: usize,
    /// Recall calls per single-client cell.
    pub queries: usize,
    /// The embedding model alone, in process.
    pub floor: Floor,
    /// One entry per size.
    pub sizes: Vec<SizeReport>,
    /// The backlog phase after the last size.
    pub backlog: Option<BacklogReport>,
}

fn mem_cell(m: Option<Memory>, f: fn(&Memory) -> f64) -> String {
    m.map_or_else(|| "n/a".into(), |m| format!("{:.0}", f(&m)))
}

impl SpeedReport {
    /// The report as markdown tables.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let f = &self.floor;
        let _ = writeln!(s, "## Speed\n");
        let _ = writeln!(
            s,
            "Floor (the embedding model alone, in process): one query p50 {:.2} ms, p99 {:.2} ms; {} stored texts ({} tokens) in calls of {}: {:.1} texts/s, {:.0} tokens/s; the run's questions in calls of {}: {:.1} queries/s.\n",
            f.single_query.p50_ms,
            f.single_query.p99_ms,
            f.texts,
            f.tokens,
            f.batch,
            f.texts_per_sec,
            f.tokens_per_sec,
            f.batch,
            f.queries_per_sec
        );
        let _ = writeln!(
            s,
            "| fragments | Remember turns/s ({} clients × {} turns) | ÷ model texts/s | Remember p50 / p99 ms | VmHWM MiB | VmRSS MiB |",
            self.concurrency, self.batch
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|");
        for r in &self.sizes {
            let _ = writeln!(
                s,
                "| {} | {:.1} | {:.2} | {:.1} / {:.1} | {} | {} |",
                r.fragments,
                r.ingest.turns_per_sec,
                r.remember_vs_floor,
                r.ingest.remember.p50_ms,
                r.ingest.remember.p99_ms,
                mem_cell(r.memory, Memory::hwm_mib),
                mem_cell(r.memory, Memory::rss_mib),
            );
        }
        let _ = writeln!(
            s,
            "\n| fragments | mode | top_k | clients | p50 ms | p99 ms | p99 ÷ p50 | p50 − model p50 ms | paired model p50 ms | p50 − paired ms | p50 ÷ model p50 | calls/s | ÷ model queries/s |"
        );
        let _ = writeln!(
            s,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let row = |s: &mut String, fragments: String, c: &RecallCell| {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:+.2} | {} | {} | {:.2} | {:.1} | {:.2} |",
                fragments,
                c.mode,
                c.top_k,
                c.clients,
                c.latency.p50_ms,
                c.latency.p99_ms,
                c.latency.p99_ms / c.latency.p50_ms.max(1e-9),
                c.over_floor_ms,
                c.paired_floor
                    .as_ref()
                    .map_or_else(|| "".into(), |p| format!("{:.2}", p.latency.p50_ms)),
                c.paired_floor
                    .as_ref()
                    .map_or_else(|| "".into(), |p| format!("{:+.2}", p.over_ms)),
                c.floor_ratio,
                c.qps,
                c.qps_vs_model
            );
        };
        for r in &self.sizes {
            for c in &r.recall {
                row(&mut s, r.fragments.to_string(), c);
            }
        }
        if let Some(b) = &self.backlog {
            let quiet = self
                .sizes
                .last()
                .and_then(|r| {
                    r.recall.iter().find(|c| {
                        c.mode == b.recall.mode && c.top_k == b.recall.top_k && c.clients == 1
                    })
                })
                .map(|c| c.latency.p50_ms);
            row(&mut s, "backlog".into(), &b.recall);
            let _ = writeln!(
                s,
                "\nBacklog: {} turns written with enrichment at {:.1} turns/s; Recall p50 during the drain {:.2} ms{}; the last job was {} when the measurement ended; drained {:.0} s after the first write.",
                b.turns,
                b.write.turns_per_sec,
                b.recall.latency.p50_ms,
                quiet.map_or_else(String::new, |q| format!(
                    " = {:.2}× the quiet {:.2} ms",
                    b.recall.latency.p50_ms / q.max(1e-9),
                    q
                )),
                if b.still_draining {
                    "still pending"
                } else {
                    "already done"
                },
                b.drained_after_s
            );
        }
        let empty: usize = self.sizes.iter().map(|r| r.empty_recalls).sum();
        if empty > 0 {
            let _ = writeln!(s, "\n{empty} recalls returned no turn.");
        }
        s
    }
}
