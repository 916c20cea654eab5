//! Hyperbolic tangent. Gradient from the output: `dx = dy (1 - y^2)`.

use tensor::ops;

use super::{Op, Reads, elementwise_backward};
use crate::error::Result;
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// `tanh x`, element-wise.
    pub fn tanh(&mut self, x: Var) -> Result<Var> {
        self.elementwise("tanh", Op::Tanh { x }, x, ops::tanh)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var) -> Result<()> {
    elementwise_backward(t, node, x, Reads::Output, |d, y| d * (1.0 - y * y))
}
