//! Softplus: `y = ln(1 + e^x)` (the stable kernel of `tensor::ops`, finite for every finite
//! `x`). Gradient: `dx = dy sigmoid(x)`.
//!
//! With it a per-row cross-entropy of a logit `z` against a label `r` is
//! `softplus(z) - r z`, and against the flipped label `1 - r` it is `softplus(-z) + r z`.

use tensor::ops;

use super::{Op, Reads, elementwise_backward};
use crate::error::Result;
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// `ln(1 + e^x)` element-wise.
    pub fn softplus(&mut self, x: Var) -> Result<Var> {
        self.elementwise("softplus", Op::Softplus { x }, x, ops::softplus)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var) -> Result<()> {
    elementwise_backward(t, node, x, Reads::Input, |d, x| d * sigmoid(x))
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
