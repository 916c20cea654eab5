//! Sigmoid: `y = 1 / (1 + e^-x)` (the stable kernel of `tensor::ops`).
//! Gradient from the output: `dx = dy y (1 - y)`.

use tensor::ops;

use super::{Op, parts};
use crate::error::Result;
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// The logistic sigmoid, element-wise.
    pub fn sigmoid(&mut self, x: Var) -> Result<Var> {
        self.check("sigmoid", x)?;
        let ((n, c), (xo, _)) = (self.shape(x), self.slot(x));
        let (v, off) = self.push(Op::Sigmoid { x }, n, c);
        let (before, out) = self.split_values(off, n * c);
        ops::sigmoid(&before[xo..xo + n * c], out);
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var) -> Result<()> {
    let s = t.slot(x);
    let yo = node.off;
    let (values, before, gy) = parts(t, &node);
    let y = &values[yo..yo + gy.len()];
    for ((g, &d), &y) in before[s.0..s.0 + s.1].iter_mut().zip(gy).zip(y) {
        *g += d * (y * (1.0 - y));
    }
    Ok(())
}
