//! `bench calibrate`: one confidence model per mode for both development
//! benchmarks.
//!
//! Reads the JSON of a `bench locomo` and a `bench realmem` run, fits the
//! logistic model of each mode on the union of their fit splits (LoCoMo
//! conversations 1–5, RealMem people 1–5, each with its own event: an
//! evidence turn among the first 10 turn hits, a gold session among the
//! first 5 sessions) and reports the expected calibration error on each
//! report split, beside that of the confidence the server returned. The
//! fitted constants are printed for `engram-recall`'s `confidence.rs`.

use crate::stats;
use anyhow::Context;
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;

/// Bins of the calibration error, as in the benchmarks' own reports.
const ECE_BINS: usize = 10;
/// LoCoMo conversations `0..FIT_HALF` are the fit half.
const FIT_HALF: u64 = 5;

/// Options of `bench calibrate`.
#[derive(Debug, Clone, Args)]
pub struct CalibrateArgs {
    /// JSON written by `bench locomo --out`.
    #[arg(long)]
    pub locomo: PathBuf,
    /// JSON written by `bench realmem --out`.
    #[arg(long)]
    pub realmem: PathBuf,
}

/// One query's confidence features, the server's confidence and whether
/// the event happened.
struct Sample {
    features: Vec<f64>,
    confidence: f64,
    event: bool,
    fit: bool,
}

fn read(path: &PathBuf) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn locomo_samples(report: &Value, mode: &str) -> Vec<Sample> {
    let Some(m) = report["modes"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["mode"] == mode))
    else {
        return Vec::new();
    };
    m["questions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|q| Sample {
            features: numbers(&q["features"]),
            confidence: q["confidence"].as_f64().unwrap_or(0.0),
            event: numbers(&q["recall"]).get(1).is_some_and(|r| *r > 0.0),
            fit: q["conversation"].as_u64().is_some_and(|c| c < FIT_HALF),
        })
        .collect()
}

fn realmem_samples(report: &Value, mode: &str) -> Vec<Sample> {
    report["queries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| {
            let o = q["modes"].as_array()?.iter().find(|o| o["mode"] == mode)?;
            Some(Sample {
                features: numbers(&o["features"]),
                confidence: o["confidence"].as_f64().unwrap_or(0.0),
                event: o["recall"]["any_at_5"].as_bool().unwrap_or(false),
                fit: q["split"] == "fit",
            })
        })
        .collect()
}

fn ece(samples: &[&Sample], predict: impl Fn(&Sample) -> f64) -> f64 {
    let pairs: Vec<(f64, bool)> = samples.iter().map(|s| (predict(s), s.event)).collect();
    stats::calibration(&pairs, ECE_BINS).ece
}

/// Fits and prints, per mode.
pub fn run(args: &CalibrateArgs) -> anyhow::Result<String> {
    let locomo = read(&args.locomo)?;
    let realmem = read(&args.realmem)?;
    let mut out = String::from(
        "| mode | fit samples | LoCoMo report ECE (server → refit) | RealMem report ECE (server → refit) | bias | weights |\n|---|---:|---:|---:|---:|---|\n",
    );
    for mode in ["active", "deep"] {
        let l = locomo_samples(&locomo, mode);
        let r = realmem_samples(&realmem, mode);
        if l.is_empty() || r.is_empty() {
            continue;
        }
        let fit: Vec<(Vec<f64>, bool)> = l
            .iter()
            .chain(&r)
            .filter(|s| s.fit)
            .map(|s| (s.features.clone(), s.event))
            .collect();
        let model = crate::fit::fit(&fit);
        let lr: Vec<&Sample> = l.iter().filter(|s| !s.fit).collect();
        let rr: Vec<&Sample> = r.iter().filter(|s| !s.fit).collect();
        let server = |s: &Sample| s.confidence;
        let refit = |s: &Sample| model.predict(&s.features);
        out.push_str(&format!(
            "| {mode} | {} | {:.3} → {:.3} | {:.3} → {:.3} | {:.4} | {} |\n",
            fit.len(),
            ece(&lr, server),
            ece(&lr, refit),
            ece(&rr, server),
            ece(&rr, refit),
            model.bias,
            model
                .weights
                .iter()
                .map(|w| format!("{w:.4}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(out)
}
