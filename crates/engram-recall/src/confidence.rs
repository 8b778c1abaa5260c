//! Confidence that the hits hold what the query needs.
//!
//! A logistic model over four features of a result:
//! `confidence = 1 / (1 + exp(-(bias + w · x)))` with
//! `x = [cosine, agree, top_score, coverage]`:
//! - `cosine`: the best dense cosine among the direct hits (0 without one);
//! - `agree`: 1 when the fused first hit is also the best dense match;
//! - `top_score`: the first turn hit's score in [0, 1];
//! - `coverage`: the share of the query's content words found in the first
//!   three turns and their observations.
//!
//! The parameters are fitted by `bench calibrate` on the fit splits of
//! both development benchmarks together (LoCoMo conversations 1-5, event:
//! an evidence turn among the first 10 turn hits; RealMem people 1-5,
//! event: a gold session among the first 5) and reported on their report
//! splits in `BENCHMARKS.md`; each mode has its own, because deep results
//! carry more evidence for the same features.

/// Number of features.
pub const FEATURES: usize = 4;

/// Names of the features, in order (for reports and the explain header).
pub const FEATURE_NAMES: [&str; FEATURES] = ["cosine", "agree", "top_score", "coverage"];

/// Parameters of the logistic model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Intercept.
    pub bias: f64,
    /// One weight per feature; all non-negative, so confidence never falls
    /// when a feature rises.
    pub weights: [f64; FEATURES],
}

/// Fitted by `bench calibrate` on the fit splits of both development
/// benchmarks (LoCoMo conversations 1-5 and RealMem people 1-5, 1,725
/// queries), active mode; ECE on the report splits 0.038 (LoCoMo) and
/// 0.033 (RealMem), see BENCHMARKS.md. Agreement adds nothing once the top
/// score is known, so its weight is 0.
pub const ACTIVE: Calibration = Calibration {
    bias: -1.7436,
    weights: [0.7740, 0.0, 2.2320, 0.8949],
};

/// Fitted like [`ACTIVE`], deep mode, refitted for session likeness and
/// the conversation floor (1,725 fit queries); ECE on the report splits
/// 0.032 (LoCoMo) and 0.034 (RealMem).
pub const DEEP: Calibration = Calibration {
    bias: -1.6521,
    weights: [0.6966, 0.0, 3.4369, 1.9424],
};

/// The feature vector of a result; `None` cosine means no hit at all.
pub fn features(
    best_cosine: Option<f32>,
    agree: bool,
    top_score: f32,
    coverage: f32,
) -> [f64; FEATURES] {
    [
        f64::from(best_cosine.unwrap_or(0.0).clamp(-1.0, 1.0)),
        f64::from(u8::from(agree)),
        f64::from(top_score.clamp(0.0, 1.0)),
        f64::from(coverage.clamp(0.0, 1.0)),
    ]
}

impl Calibration {
    /// Confidence in [0, 1] for features `x`.
    pub fn confidence(&self, x: &[f64; FEATURES]) -> f64 {
        let z = self.bias + self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f64>();
        let p = 1.0 / (1.0 + (-z).exp());
        if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_monotone_for_both_modes() {
        for cal in [ACTIVE, DEEP] {
            assert!(cal.weights.iter().all(|w| *w >= 0.0));
            // Never falls when any feature rises, over a grid.
            for i in -10..=10 {
                let v = i as f32 / 10.0;
                let base = features(Some(v), false, v.abs(), v.abs());
                let c = cal.confidence(&base);
                assert!((0.0..=1.0).contains(&c), "{c}");
                for raised in [
                    features(Some(v + 0.1), false, v.abs(), v.abs()),
                    features(Some(v), true, v.abs(), v.abs()),
                    features(Some(v), false, v.abs() + 0.1, v.abs()),
                    features(Some(v), false, v.abs(), v.abs() + 0.1),
                ] {
                    assert!(cal.confidence(&raised) >= c);
                }
            }
            // Strictly rising in the main feature, the first hit's score.
            let mut last = -1.0;
            for i in 0..=10 {
                let c = cal.confidence(&features(Some(0.4), false, i as f32 / 10.0, 0.5));
                assert!(c > last, "not strictly monotone at top score {i}/10");
                last = c;
            }
            let extreme = Calibration {
                bias: 1e6,
                weights: cal.weights,
            };
            assert_eq!(
                extreme.confidence(&features(Some(1.0), true, 1.0, 1.0)),
                1.0
            );
            let x = features(Some(0.4), false, 0.5, 0.5);
            let y = features(Some(0.4), true, 0.9, 1.0);
            assert!(cal.confidence(&y) >= cal.confidence(&x));
        }
    }
}
