//! Pure statistics: latency percentiles, recall@k and calibration error.

use serde::Serialize;
use std::time::Duration;

/// An ingest phase: how many turns, how fast, and the latency per call.
#[derive(Debug, Clone, Serialize)]
pub struct IngestRun {
    /// Turns written.
    pub turns: usize,
    /// Remember calls.
    pub calls: usize,
    /// Wall time of the phase, seconds.
    pub seconds: f64,
    /// Turns per second over the phase.
    pub turns_per_sec: f64,
    /// Latency per Remember call.
    pub remember: Latency,
}

impl IngestRun {
    /// Summarizes `turns` written by calls of the given latencies in `seconds`.
    pub fn new(turns: usize, latencies: &[std::time::Duration], seconds: f64) -> Self {
        Self {
            turns,
            calls: latencies.len(),
            seconds,
            turns_per_sec: turns as f64 / seconds.max(1e-9),
            remember: Latency::of(latencies),
        }
    }
}

/// Latency of a series of calls, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Calls measured.
    pub n: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Slowest call.
    pub max_ms: f64,
}

impl Latency {
    /// Summarizes `samples` (any order).
    pub fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let total: Duration = sorted.iter().sum();
        Self {
            n: sorted.len(),
            p50_ms: ms(percentile(&sorted, 50.0)),
            p99_ms: ms(percentile(&sorted, 99.0)),
            mean_ms: ms(total) / sorted.len() as f64,
            max_ms: ms(sorted[sorted.len() - 1]),
        }
    }
}

/// Nearest-rank percentile `p` (0..=100) of ascending `sorted`; zero when
/// empty. Nearest rank never invents a value that was not measured.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Share of `evidence` found among the first `k` of `ranked` (partial
/// credit, as in the LoCoMo paper). `None` entries are hits that map to no
/// known turn. Zero when `evidence` is empty.
pub fn recall_at_k(evidence: &[String], ranked: &[Option<String>], k: usize) -> f64 {
    if evidence.is_empty() {
        return 0.0;
    }
    let top = &ranked[..k.min(ranked.len())];
    let found = evidence
        .iter()
        .filter(|e| top.iter().any(|r| r.as_deref() == Some(e.as_str())))
        .count();
    found as f64 / evidence.len() as f64
}

/// One equal-width confidence bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bin {
    /// Lower edge (inclusive).
    pub lo: f64,
    /// Upper edge (exclusive, except the last bin which includes 1.0).
    pub hi: f64,
    /// Predictions in the bin.
    pub n: usize,
    /// Mean confidence of those predictions.
    pub mean_confidence: f64,
    /// Share of them where the event happened.
    pub hit_rate: f64,
}

/// Calibration of a confidence against a binary event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Predictions scored.
    pub n: usize,
    /// Expected calibration error over equal-width bins.
    pub ece: f64,
    /// Mean confidence.
    pub mean_confidence: f64,
    /// Share of predictions where the event happened.
    pub hit_rate: f64,
    /// The bins (empty bins included, with zero counts).
    pub bins: Vec<Bin>,
}

/// Calibration of `(confidence, event happened)` pairs over `bins`
/// equal-width bins on [0, 1]: ECE = Σ (n_b / N) · |mean conf_b − hit rate_b|.
pub fn calibration(pairs: &[(f64, bool)], bins: usize) -> Calibration {
    let bins = bins.max(1);
    let mut acc = vec![(0usize, 0.0f64, 0usize); bins];
    for &(c, hit) in pairs {
        let c = c.clamp(0.0, 1.0);
        // Confidence 1.0 belongs to the last bin, not to a bin past the end.
        let b = ((c * bins as f64) as usize).min(bins - 1);
        acc[b].0 += 1;
        acc[b].1 += c;
        acc[b].2 += usize::from(hit);
    }
    let n = pairs.len();
    let mut ece = 0.0;
    let bins_out = acc
        .iter()
        .enumerate()
        .map(|(i, &(count, conf_sum, hits))| {
            let (mean_confidence, hit_rate) = if count == 0 {
                (0.0, 0.0)
            } else {
                (conf_sum / count as f64, hits as f64 / count as f64)
            };
            if n > 0 {
                ece += count as f64 / n as f64 * (mean_confidence - hit_rate).abs();
            }
            Bin {
                lo: i as f64 / bins as f64,
                hi: (i + 1) as f64 / bins as f64,
                n: count,
                mean_confidence,
                hit_rate,
            }
        })
        .collect();
    let mean = |f: &dyn Fn(&(f64, bool)) -> f64| {
        if n == 0 {
            0.0
        } else {
            pairs.iter().map(f).sum::<f64>() / n as f64
        }
    };
    Calibration {
        n,
        ece,
        mean_confidence: mean(&|p| p.0.clamp(0.0, 1.0)),
        hit_rate: mean(&|p| f64::from(u8::from(p.1))),
        bins: bins_out,
    }
}

/// Mean of `xs`, zero when empty.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&sorted, 50.0), ms(50));
        assert_eq!(percentile(&sorted, 99.0), ms(99));
        assert_eq!(percentile(&sorted, 100.0), ms(100));
        assert_eq!(percentile(&sorted, 0.0), ms(1));
        assert_eq!(percentile(&[ms(7)], 99.0), ms(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
        let l = Latency::of(&[ms(30), ms(10), ms(20)]);
        assert_eq!((l.n, l.p50_ms, l.p99_ms, l.max_ms), (3, 20.0, 30.0, 30.0));
        assert!((l.mean_ms - 20.0).abs() < 1e-9);
    }

    #[test]
    fn recall_gives_partial_credit_within_k() {
        let ev = vec!["D1:3".to_string(), "D2:1".to_string()];
        let ranked = vec![
            Some("D5:5".to_string()),
            None,
            Some("D1:3".to_string()),
            Some("D2:1".to_string()),
        ];
        assert_eq!(recall_at_k(&ev, &ranked, 2), 0.0);
        assert_eq!(recall_at_k(&ev, &ranked, 3), 0.5);
        assert_eq!(recall_at_k(&ev, &ranked, 25), 1.0);
        assert_eq!(recall_at_k(&[], &ranked, 5), 0.0);
        assert_eq!(recall_at_k(&ev, &[], 5), 0.0);
    }

    #[test]
    fn ece_of_perfect_and_overconfident_predictions() {
        // Confidence 0.25 and a 25 % hit rate, all in one bin: calibrated.
        let pairs: Vec<(f64, bool)> = (0..100).map(|i| (0.25, i % 4 == 0)).collect();
        let c = calibration(&pairs, 10);
        assert!(c.ece < 1e-9, "{}", c.ece);
        assert_eq!(c.bins[2].n, 100);
        assert!((c.hit_rate - 0.25).abs() < 1e-9);
        // Always 0.9 confident, right half the time: ECE 0.4.
        let pairs: Vec<(f64, bool)> = (0..10).map(|i| (0.9, i % 2 == 0)).collect();
        assert!((calibration(&pairs, 10).ece - 0.4).abs() < 1e-9);
        // Two bins: 0.05 → never (err 0.05), 1.0 → always (err 0); ECE 0.025.
        let pairs = [(0.05, false), (1.0, true)];
        let c = calibration(&pairs, 10);
        assert!((c.ece - 0.025).abs() < 1e-9, "{}", c.ece);
        assert_eq!((c.bins[0].n, c.bins[9].n), (1, 1));
        assert_eq!(calibration(&[], 10).ece, 0.0);
    }
}
