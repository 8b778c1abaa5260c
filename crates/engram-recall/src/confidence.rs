//! Confidence that the hits hold what the query needs.
//!
//! A logistic model over two features of the best hit:
//! `confidence = 1 / (1 + exp(-(W_COS * cos + W_AGREE * agree + BIAS)))`
//! where `cos` is the cosine similarity of the best dense match and
//! `agree` is 1 when the fused top hit is also the best dense match (both
//! retrievers agree), else 0. MiniLM cosines of relevant pairs sit around
//! 0.25–0.55, so the weights put 0.5 confidence near cosine 0.45. The
//! weights are set by hand here and are replaced by parameters fitted on
//! LoCoMo when confidence gets calibrated.

const W_COS: f64 = 10.0;
const W_AGREE: f64 = 0.5;
const BIAS: f64 = -4.75;

/// Confidence in [0, 1]; 0 when there is no hit.
pub fn confidence(best_cosine: Option<f32>, agree: bool) -> f64 {
    let Some(cos) = best_cosine else {
        return 0.0;
    };
    let z = W_COS * f64::from(cos.clamp(-1.0, 1.0)) + W_AGREE * f64::from(u8::from(agree)) + BIAS;
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_monotone_in_cosine() {
        let mut last = 0.0;
        for i in -10..=10 {
            let c = confidence(Some(i as f32 / 10.0), false);
            assert!((0.0..=1.0).contains(&c));
            assert!(c >= last);
            last = c;
        }
        assert_eq!(confidence(None, true), 0.0);
        assert!(confidence(Some(0.4), true) > confidence(Some(0.4), false));
    }
}
