//! Sigmoid: `y = 1 / (1 + e^-x)` (the stable kernel of `tensor::ops`).
//! Gradient from the output: `dx = dy y (1 - y)`.

use tensor::ops;

use super::{Op, Reads, elementwise_backward};
use crate::error::Result;
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// The logistic sigmoid, element-wise.
    pub fn sigmoid(&mut self, x: Var) -> Result<Var> {
        self.elementwise("sigmoid", Op::Sigmoid { x }, x, ops::sigmoid)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var) -> Result<()> {
    elementwise_backward(t, node, x, Reads::Output, |d, y| d * (y * (1.0 - y)))
}
