//! Fitting the confidence model: logistic regression by Newton's method,
//! with the feature weights kept non-negative (a feature that rises never
//! lowers confidence) by dropping a negative weight and refitting.

use serde::Serialize;

/// A fitted logistic model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Logistic {
    /// Intercept.
    pub bias: f64,
    /// One weight per feature, all ≥ 0.
    pub weights: Vec<f64>,
}

impl Logistic {
    /// The predicted probability for features `x`.
    pub fn predict(&self, x: &[f64]) -> f64 {
        let z = self.bias + self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f64>();
        1.0 / (1.0 + (-z).exp())
    }
}

/// L2 penalty on the weights (not the bias): keeps the fit finite when a
/// feature separates the fit half perfectly.
const RIDGE: f64 = 1e-3;

/// Fits `P(y) = σ(b + w·x)` to `(x, y)` pairs with every `w ≥ 0`.
pub fn fit(samples: &[(Vec<f64>, bool)]) -> Logistic {
    let d = samples.first().map_or(0, |(x, _)| x.len());
    let mut free: Vec<bool> = vec![true; d];
    loop {
        let model = newton(samples, &free);
        match model
            .weights
            .iter()
            .enumerate()
            .filter(|(i, w)| free[*i] && **w < 0.0)
            .min_by(|a, b| a.1.total_cmp(b.1))
        {
            Some((i, _)) => free[i] = false,
            None => return model,
        }
    }
}

/// Unconstrained fit over the `free` features (the others fixed at 0).
fn newton(samples: &[(Vec<f64>, bool)], free: &[bool]) -> Logistic {
    let idx: Vec<usize> = (0..free.len()).filter(|&i| free[i]).collect();
    let p = idx.len() + 1;
    let mut beta = vec![0.0; p];
    for _ in 0..50 {
        let mut grad = vec![0.0; p];
        let mut hess = vec![vec![0.0; p]; p];
        for (x, y) in samples {
            let row: Vec<f64> = std::iter::once(1.0)
                .chain(idx.iter().map(|&i| x[i]))
                .collect();
            let z: f64 = row.iter().zip(&beta).map(|(a, b)| a * b).sum();
            let mu = 1.0 / (1.0 + (-z).exp());
            let w = (mu * (1.0 - mu)).max(1e-9);
            let r = f64::from(u8::from(*y)) - mu;
            for a in 0..p {
                grad[a] += r * row[a];
                for b in 0..p {
                    hess[a][b] += w * row[a] * row[b];
                }
            }
        }
        for a in 1..p {
            grad[a] -= RIDGE * beta[a];
            hess[a][a] += RIDGE;
        }
        let Some(step) = solve(hess, grad) else { break };
        let mut change = 0.0f64;
        for (b, s) in beta.iter_mut().zip(&step) {
            *b += s;
            change = change.max(s.abs());
        }
        if change < 1e-8 {
            break;
        }
    }
    let mut weights = vec![0.0; free.len()];
    for (k, &i) in idx.iter().enumerate() {
        weights[i] = beta[k + 1];
    }
    Logistic {
        bias: beta[0],
        weights,
    }
}

/// Solves `a · x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (done, rest) = a.split_at_mut(col + 1);
        let pivot_row = &done[col];
        for (i, row) in rest.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[col + 1 + i] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_model_and_keeps_weights_non_negative() {
        // y = 1 exactly when 3·x0 − 1.5 > u for a fixed pseudo-random u:
        // the fit must find a clearly positive weight on x0, and x1 (noise
        // anti-correlated by construction) must not get a negative weight.
        let mut samples = Vec::new();
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..4000 {
            let x0 = next();
            let u = next();
            let p = 1.0 / (1.0 + (-(3.0 * x0 - 1.5)).exp());
            let y = u < p;
            let x1 = if y { 0.2 } else { 0.8 } * next();
            samples.push((vec![x0, x1], y));
        }
        let m = fit(&samples);
        assert!((m.weights[0] - 3.0).abs() < 0.5, "{m:?}");
        assert_eq!(m.weights[1], 0.0, "{m:?}");
        let lo = m.predict(&[0.0, 0.0]);
        let hi = m.predict(&[1.0, 0.0]);
        assert!(lo < 0.5 && hi > 0.5 && (0.0..=1.0).contains(&lo));
    }
}
