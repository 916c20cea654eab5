//! Weighted binary cross-entropy with logits, TensorFlow's
//! `weighted_cross_entropy_with_logits` reduced to a scalar.
//!
//! Per row, with logit `x`, label `y` in [0, 1], positive weight `p` and sample weight `w`:
//!
//! ```text
//! l = w [ p y softplus(-x) + (1 - y) softplus(x) ]
//!   = w [ (1 - y) x + (1 + (p - 1) y) softplus(-x) ]        (softplus(x) = x + softplus(-x))
//! softplus(-x) = ln(1 + e^-|x|) + max(-x, 0)                (never overflows)
//! loss = sum_rows l / denom                                 (denom = N by default)
//! dl/dx = w [ (1 - y) - (1 + (p - 1) y) sigmoid(-x) ] / denom
//! ```
//!
//! `denom` lets data-parallel workers each divide by the *whole* batch size, so that the
//! sum of their gradients is the gradient of the batch mean. The sum is taken in f64.

use super::{Op, parts};
use crate::error::{AutodiffError, Result, shape_err};
use crate::tape::{Node, Tape, Var};

/// Labels and weights for [`Tape::bce_with_logits`].
#[derive(Debug, Clone, Copy)]
pub struct BceTarget<'a> {
    /// One label per row, in [0, 1].
    pub labels: &'a [f32],
    /// Optional non-negative weight per row.
    pub weights: Option<&'a [f32]>,
    /// Weight of the positive class (`pos_weight`), positive.
    pub pos_weight: f32,
    /// Divisor of the summed loss; `None` means the number of rows.
    pub denom: Option<f32>,
}

fn softplus_neg(x: f64) -> f64 {
    (-x.abs()).exp().ln_1p() + (-x).max(0.0)
}

/// Runs the math library's functions that the cross-entropy calls (`exp` in `f64` and
/// `f32`, `ln_1p` in `f64`) once over every range of their arguments the loss can reach.
/// Their code and constants are pages of the shared math library, which the kernel maps
/// into the process at their first read, so a logit reaching a new range in a late
/// training step could fault a page there (`perf record -e minor-faults` showed a fault in
/// `log1p`'s constants inside a step of the test that counts the steady steps' faults). A
/// few milliseconds, once per trainer.
pub fn map_loss_math() {
    let mut acc = 0.0f64;
    // ln_1p's argument is exp(-|x|), in (0, 1]: every binary exponent down past the
    // subnormals, a few mantissas each.
    for e in 0..1100 {
        let scale = (-(e as f64)).exp2();
        for m in 0..64 {
            acc += ((1.0 + m as f64 / 64.0) * scale).ln_1p();
        }
    }
    // exp's argument is -|x|: down to where it underflows, in steps that reach every
    // entry of the table indexed by the reduced argument.
    for k in 0..=80_000 {
        let x = -(k as f64) * 0.01;
        acc += x.exp() + (x as f32).exp() as f64;
    }
    std::hint::black_box(acc);
}

impl Tape {
    /// The weighted cross-entropy of `logits: N x 1` against `target`, a `1 x 1` loss.
    pub fn bce_with_logits(&mut self, logits: Var, target: BceTarget<'_>) -> Result<Var> {
        self.check("bce_with_logits", logits)?;
        let (n, c) = self.shape(logits);
        let bad = |detail: String| AutodiffError::Invalid {
            op: "bce_with_logits",
            detail,
        };
        if c != 1 || target.labels.len() != n {
            return Err(shape_err(
                "bce_with_logits",
                (n, c),
                (target.labels.len(), 1),
                "logits N x 1 need N labels",
            ));
        }
        if let Some(r) = target.labels.iter().position(|y| !(0.0..=1.0).contains(y)) {
            return Err(bad(format!(
                "label of row {r} is {}, expected a value in [0, 1]",
                target.labels[r]
            )));
        }
        if let Some(w) = target.weights {
            if w.len() != n {
                return Err(bad(format!("{} weights for {n} rows", w.len())));
            }
            if let Some(r) = w.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
                return Err(bad(format!(
                    "weight of row {r} is {}, expected finite and >= 0",
                    w[r]
                )));
            }
        }
        if !(target.pos_weight.is_finite() && target.pos_weight > 0.0) {
            return Err(bad(format!(
                "pos_weight must be positive, got {}",
                target.pos_weight
            )));
        }
        let denom = target.denom.unwrap_or(n as f32);
        if !(denom.is_finite() && denom > 0.0) {
            return Err(bad(format!("denominator must be positive, got {denom}")));
        }
        let aux = self.aux.len();
        self.aux.extend_from_slice(target.labels);
        if let Some(w) = target.weights {
            self.aux.extend_from_slice(w);
        }
        let weighted = target.weights.is_some();
        let p = target.pos_weight;
        let (xo, _) = self.slot(logits);
        let (v, off) = self.push(
            Op::Bce {
                logits,
                aux,
                weighted,
                pos_weight: p,
                denom,
            },
            1,
            1,
        );
        let mut total = 0.0f64;
        for r in 0..n {
            let (x, y) = (self.values[xo + r] as f64, self.aux[aux + r] as f64);
            let w = if weighted {
                self.aux[aux + n + r] as f64
            } else {
                1.0
            };
            total += w * ((1.0 - y) * x + (1.0 + (p as f64 - 1.0) * y) * softplus_neg(x));
        }
        self.values[off] = (total / denom as f64) as f32;
        Ok(v)
    }
}

pub(super) fn backward(
    t: &mut Tape,
    node: Node,
    logits: Var,
    aux: usize,
    weighted: bool,
    p: f32,
    denom: f32,
) -> Result<()> {
    let s = t.slot(logits);
    let n = s.1;
    let labels_weights = std::mem::take(&mut t.aux);
    {
        let (values, before, gy) = parts(t, &node);
        let scale = gy[0] / denom;
        for r in 0..n {
            let (x, y) = (values[s.0 + r], labels_weights[aux + r]);
            let w = if weighted {
                labels_weights[aux + n + r]
            } else {
                1.0
            };
            // sigmoid(-x), stably
            let z = (-x.abs()).exp();
            let sig_neg = if x >= 0.0 {
                z / (1.0 + z)
            } else {
                1.0 / (1.0 + z)
            };
            before[s.0 + r] += scale * w * ((1.0 - y) - (1.0 + (p - 1.0) * y) * sig_neg);
        }
    }
    t.aux = labels_weights;
    Ok(())
}
