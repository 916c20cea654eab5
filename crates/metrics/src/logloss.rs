//! Log loss and calibration of predicted probabilities.
//!
//! ```text
//! logloss     = -mean( y ln p + (1 - y) ln(1 - p) ),  p clipped to [eps, 1 - eps]
//! calibration = mean(p) / mean(y)                      (1 is perfectly calibrated)
//! ```
//!
//! Both are sums over the whole evaluation set, accumulated in f64.

use crate::error::{MetricsError, Result, check_labels, same_len};

/// Clipping used by [`log_loss`]: keeps a confident mistake finite (ln(1e-7) = -16.1).
pub const LOG_LOSS_EPS: f64 = 1e-7;

fn check_probs(probs: &[f32]) -> Result<()> {
    match probs.iter().position(|p| !(0.0..=1.0).contains(p)) {
        Some(index) => Err(MetricsError::InvalidScore {
            what: "probability",
            index,
            value: probs[index],
        }),
        None => Ok(()),
    }
}

/// Mean binary cross-entropy of probabilities `probs` against 0/1 `labels`.
pub fn log_loss(probs: &[f32], labels: &[f32]) -> Result<f64> {
    same_len("labels", probs.len(), labels.len())?;
    check_labels(labels)?;
    check_probs(probs)?;
    if probs.is_empty() {
        return Err(MetricsError::Invalid("log loss of an empty input".into()));
    }
    let total: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = (p as f64).clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
            if y == 1.0 { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    Ok(total / probs.len() as f64)
}

/// `mean(probs) / mean(labels)`; an error when there is no positive label.
pub fn calibration(probs: &[f32], labels: &[f32]) -> Result<f64> {
    same_len("labels", probs.len(), labels.len())?;
    check_labels(labels)?;
    check_probs(probs)?;
    let pos: f64 = labels.iter().map(|&y| y as f64).sum();
    if pos == 0.0 {
        return Err(MetricsError::SingleClass {
            what: "calibration",
            positives: 0,
            negatives: labels.len() as u64,
        });
    }
    Ok(probs.iter().map(|&p| p as f64).sum::<f64>() / pos)
}
