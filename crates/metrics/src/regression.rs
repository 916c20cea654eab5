//! Errors of a predicted value against a continuous target: mean squared error and mean
//! absolute error, optionally weighted per row.
//!
//! ```text
//! MSE = sum_i w_i (y_hat_i - y_i)^2 / sum_i w_i        MAE = sum_i w_i |y_hat_i - y_i| / sum_i w_i
//! ```
//!
//! Sums run in f64. [`RegressionErrors`] accumulates them batch by batch, so an evaluation
//! of millions of rows keeps three numbers, not the rows.

use serde::Serialize;

use crate::error::{MetricsError, Result, same_len};

/// Running sums of squared and absolute errors.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RegressionErrors {
    weight: f64,
    squared: f64,
    absolute: f64,
    rows: u64,
}

/// MSE and MAE of a set of rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RegressionReport {
    /// Rows seen.
    pub rows: u64,
    /// Mean squared error.
    pub mse: f64,
    /// Mean absolute error.
    pub mae: f64,
}

impl RegressionErrors {
    /// Adds rows: predictions, targets and optional non-negative weights, all of one length.
    pub fn push(
        &mut self,
        predicted: &[f32],
        target: &[f32],
        weights: Option<&[f32]>,
    ) -> Result<()> {
        same_len("targets", predicted.len(), target.len())?;
        if let Some(w) = weights {
            same_len("weights", predicted.len(), w.len())?;
        }
        for (what, v) in [("prediction", predicted), ("target", target)] {
            if let Some(index) = v.iter().position(|x| !x.is_finite()) {
                return Err(MetricsError::InvalidScore {
                    what,
                    index,
                    value: v[index],
                });
            }
        }
        if let Some(w) = weights
            && let Some(index) = w.iter().position(|x| !(x.is_finite() && *x >= 0.0))
        {
            return Err(MetricsError::InvalidScore {
                what: "weight",
                index,
                value: w[index],
            });
        }
        for (i, (&p, &y)) in predicted.iter().zip(target).enumerate() {
            let w = weights.map_or(1.0, |w| w[i] as f64);
            let d = p as f64 - y as f64;
            self.weight += w;
            self.squared += w * d * d;
            self.absolute += w * d.abs();
        }
        self.rows += predicted.len() as u64;
        Ok(())
    }

    /// The errors so far; an error when no row (or only zero weight) was seen.
    pub fn report(&self) -> Result<RegressionReport> {
        if self.weight <= 0.0 {
            return Err(MetricsError::Invalid(
                "regression errors need at least one row of positive weight".into(),
            ));
        }
        Ok(RegressionReport {
            rows: self.rows,
            mse: self.squared / self.weight,
            mae: self.absolute / self.weight,
        })
    }
}

/// MSE and MAE of `predicted` against `target` (unweighted).
pub fn regression_errors(predicted: &[f32], target: &[f32]) -> Result<RegressionReport> {
    let mut e = RegressionErrors::default();
    e.push(predicted, target, None)?;
    e.report()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_by_hand() {
        // Errors 1, -2, 0.5: squares 1, 4, 0.25 -> MSE 5.25 / 3 = 1.75; MAE 3.5 / 3.
        let r = regression_errors(&[2.0, 1.0, 3.5], &[1.0, 3.0, 3.0]).unwrap();
        assert_eq!(r.rows, 3);
        // Every value here is exact in binary, so the sums are too.
        assert_eq!((r.mse, r.mae), (1.75, 3.5 / 3.0));
        // Weights 2, 1, 0: MSE (2 + 4) / 3 = 2, MAE (2 + 2) / 3.
        let mut e = RegressionErrors::default();
        e.push(&[2.0, 1.0, 3.5], &[1.0, 3.0, 3.0], Some(&[2.0, 1.0, 0.0]))
            .unwrap();
        let r = e.report().unwrap();
        assert_eq!((r.mse, r.mae), (2.0, 4.0 / 3.0));
    }

    #[test]
    fn batches_add_up_to_the_whole_and_match_brute_force() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 100.0 - 20.0
        };
        let p: Vec<f32> = (0..1000).map(|_| next()).collect();
        let y: Vec<f32> = (0..1000).map(|_| next()).collect();
        let whole = regression_errors(&p, &y).unwrap();
        let mut e = RegressionErrors::default();
        for (a, b) in p.chunks(77).zip(y.chunks(77)) {
            e.push(a, b, None).unwrap();
        }
        assert_eq!(e.report().unwrap(), whole);
        // Brute force: every pair's error, summed in row order in f64 (the accumulator's
        // order too, so the figures agree exactly).
        let (mut sq, mut ab) = (0.0f64, 0.0f64);
        for i in 0..1000 {
            let d = p[i] as f64 - y[i] as f64;
            sq += d * d;
            ab += d.abs();
        }
        assert_eq!((whole.mse, whole.mae), (sq / 1000.0, ab / 1000.0));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert!(regression_errors(&[1.0], &[1.0, 2.0]).is_err());
        assert!(regression_errors(&[f32::NAN], &[1.0]).is_err());
        assert!(regression_errors(&[1.0], &[f32::INFINITY]).is_err());
        assert!(regression_errors(&[], &[]).is_err());
        let mut e = RegressionErrors::default();
        assert!(e.push(&[1.0], &[1.0], Some(&[-1.0])).is_err());
        assert!(e.push(&[1.0], &[1.0], Some(&[0.0])).is_ok());
        assert!(e.report().is_err(), "zero weight");
    }
}
