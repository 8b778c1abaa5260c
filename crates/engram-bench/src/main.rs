//! `bench`: measures a real Engram server over gRPC.
//!
//! `bench locomo` scores retrieval on LoCoMo (recall@k by category, and the
//! calibration of the returned confidence); `bench speed` grows a store to
//! given sizes and measures ingest throughput, recall latency and server
//! memory; `bench enrich` measures the time from Remember to job ready
//! with the turn stream in the path; `bench consume` measures the
//! enrichment consumer alone, in-process; `bench memory` measures
//! StoreMemory on 100,000-character documents and Recall with a selective
//! metadata filter; `bench embed` times the embedding model alone, in
//! process (the floor of Recall and Remember); `bench realmem` scores session recall on RealMemBench,
//! online (each query asked before its session is written), with the
//! confidence calibration fitted and reported on separate people. By
//! default each run spawns the `engram` binary on a fresh data directory
//! and stops it at the end; `--addr` targets a running server.

mod bulk;
mod calibrate;
mod consume;
mod dataset;
mod embed;
mod enrich;
mod fit;
mod locomo;
mod memory;
mod realmem;
mod realmem_data;
mod realmem_report;
mod rng;
mod server;
mod speed;
mod stats;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::path::Path;

#[derive(Parser)]
#[command(name = "bench", about = "Benchmarks a real Engram server over gRPC")]
struct Cli {
    #[command(flatten)]
    server: server::ServerArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// LoCoMo retrieval: recall@5/10/25 by category, confidence calibration.
    Locomo(locomo::LocomoArgs),
    /// Recall and Remember against the embedding model alone, as the store
    /// grows, quiet and while enrichment drains a backlog.
    Speed(speed::SpeedArgs),
    /// A million fragments through the VectorStore port on Qdrant Edge,
    /// in-process: write, optimize, open, search and memory (no server).
    Bulk(bulk::BulkArgs),
    /// Remember → job ready latency and ingest throughput with the stream in the path.
    Enrich(enrich::EnrichArgs),
    /// Enrichment throughput of the consumer alone, in-process, on a LoCoMo backlog.
    Consume(consume::ConsumeArgs),
    /// The embedding model alone, in-process: single-query latency and
    /// batch throughput on LoCoMo text (no server).
    Embed(embed::EmbedArgs),
    /// StoreMemory throughput on 100,000-character documents; Recall with a
    /// selective metadata filter on a large store.
    Memory(memory::MemoryArgs),
    /// RealMem session recall any/all@5/10 (online), per fit/report split,
    /// by category; confidence calibration.
    Realmem(realmem::RealmemArgs),
    /// One confidence model per mode, fitted on the fit splits of a
    /// `locomo` and a `realmem` run's JSON, with its ECE on both report
    /// splits (no server).
    Calibrate(calibrate::CalibrateArgs),
}

fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// Prints a report's markdown and writes its JSON to `out`, when given.
fn emit(markdown: &str, out: Option<&Path>, report: &impl Serialize) -> anyhow::Result<()> {
    println!("{markdown}");
    match out {
        Some(out) => write_json(out, report),
        None => Ok(()),
    }
}

async fn run(target: &server::Target, command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Locomo(args) => {
            let report = locomo::run(target, args).await?;
            emit(&report.markdown(), args.out.as_deref(), &report)?;
        }
        Command::Enrich(args) => {
            let report = enrich::run(target, args).await?;
            emit(&report.markdown(), args.out.as_deref(), &report)?;
        }
        Command::Memory(args) => {
            let report = memory::run(target, args).await?;
            emit(&report.markdown(), args.out.as_deref(), &report)?;
        }
        Command::Realmem(args) => {
            let report = realmem::run(target, args).await?;
            emit(&report.markdown(), args.out.as_deref(), &report)?;
        }
        Command::Consume(_) => anyhow::bail!("bench consume runs in-process, without a server"),
        Command::Calibrate(_) => anyhow::bail!("bench calibrate reads files, without a server"),
        Command::Embed(_) => anyhow::bail!("bench embed runs in-process, without a server"),
        Command::Bulk(_) => anyhow::bail!("bench bulk runs in-process, without a server"),
        Command::Speed(args) => {
            let report = speed::run(target, args).await?;
            emit(&report.markdown(), args.out.as_deref(), &report)?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Calibrate(args) = &cli.command {
        println!("{}", calibrate::run(args)?);
        return Ok(());
    }
    // In-process commands: no server to start.
    if let Command::Consume(args) = &cli.command {
        let report = consume::run(args).await?;
        return emit(&report.markdown(), args.out.as_deref(), &report);
    }
    if let Command::Bulk(args) = &cli.command {
        let report = bulk::run(args).await?;
        return emit(&report.markdown(), args.out.as_deref(), &report);
    }
    if let Command::Embed(args) = &cli.command {
        let report = embed::run(args).await?;
        return emit(&report.markdown(), args.out.as_deref(), &report);
    }
    let target = server::Target::start(&cli.server).await?;
    // On Ctrl-C the run is dropped and the server is still stopped cleanly.
    let result = tokio::select! {
        r = run(&target, &cli.command) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let stopped = target.shutdown().await;
    result?;
    stopped
}
