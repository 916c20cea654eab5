//! Softplus: `y = ln(1 + e^x)` (the stable kernel of `tensor::ops`, finite for every finite
//! `x`). Gradient: `dx = dy sigmoid(x)`.
//!
//! With it a per-row cross-entropy of a logit `z` against a label `r` is
//! `softplus(z) - r z`, and against the flipped label `1 - r` it is `softplus(-z) + r z`.

use tensor::ops;

use super::{Op, parts};
use crate::error::Result;
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// `ln(1 + e^x)` element-wise.
    pub fn softplus(&mut self, x: Var) -> Result<Var> {
        self.check("softplus", x)?;
        let ((n, c), (xo, _)) = (self.shape(x), self.slot(x));
        let (v, off) = self.push_overwritten(Op::Softplus { x }, n, c);
        let (before, out) = self.split_values(off, n * c);
        ops::softplus(&before[xo..xo + n * c], out);
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var) -> Result<()> {
    let s = t.slot(x);
    let (values, before, gy) = parts(t, &node);
    let xv = &values[s.0..s.0 + s.1];
    for ((g, &d), &xv) in before[s.0..s.0 + s.1].iter_mut().zip(gy).zip(xv) {
        *g += d * sigmoid(xv);
    }
    Ok(())
}

/// The logistic function of one value, without overflow for either sign.
fn sigmoid(x: f32) -> f32 {
    let z = (-x.abs()).exp();
    if x >= 0.0 {
        1.0 / (1.0 + z)
    } else {
        z / (1.0 + z)
    }
}
