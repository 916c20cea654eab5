//! ReLU: `y = max(x, 0)`. Gradient: `dx = dy` where `x > 0`, else 0 (the subgradient 0
//! is taken at `x = 0`).

use tensor::ops;

use super::{Op, Reads, elementwise_backward};
use crate::error::Result;
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// `max(x, 0)` element-wise.
    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.elementwise("relu", Op::Relu { x }, x, ops::relu)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var) -> Result<()> {
    elementwise_backward(
        t,
        node,
        x,
        Reads::Input,
        |d, x| if x > 0.0 { d } else { 0.0 },
    )
}
